//! The HTTPS side: accept loop, faults, authentication, routing.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use super::status::Status;
use super::store::{Event, Kind, Selectors, view_event};
use super::{Fault, ListenerState, Role, Shared, latency};

pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Returned by the service to close a connection without an answer.
#[derive(Debug)]
pub(crate) struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for Dropped {}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

fn respond(code: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    respond(
        code,
        "application/json",
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

pub(crate) fn status_response(s: &Status) -> Response<Body> {
    let code = StatusCode::from_u16(s.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = respond(code, "application/json", s.to_json());
    if s.code == 429 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}

/// Accepts connections until shutdown; while the listener is refused its
/// socket is closed (the kernel refuses connections) and re-bound after.
pub(crate) async fn run_listener(shared: Arc<Shared>, st: Arc<ListenerState>, first: TcpListener) {
    let mut listener = Some(first);
    let mut faults = st.fault.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let refused = matches!(*faults.borrow_and_update(), Some(Fault::Refuse));
        if refused {
            listener = None;
            tokio::select! {
                r = faults.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let l = match listener.take() {
            Some(l) => l,
            None => match TcpListener::bind(st.addr).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(addr = %st.addr, error = %e, "vip-testapi: cannot re-bind; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        tokio::select! {
            r = faults.changed() => {
                if r.is_err() { return }
                listener = Some(l);
            }
            _ = shutdown.changed() => return,
            accepted = l.accept() => {
                listener = Some(l);
                if let Ok((tcp, _)) = accepted {
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(serve_connection(shared.clone(), st.clone(), tcp));
                }
            }
        }
    }
}

async fn serve_connection(shared: Arc<Shared>, st: Arc<ListenerState>, tcp: tokio::net::TcpStream) {
    let mut faults = st.fault.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    // A stalled listener accepts but never answers: hold the connection
    // unread until the stall is lifted, then drop it.
    if matches!(*faults.borrow_and_update(), Some(Fault::Stall)) {
        tokio::select! {
            _ = faults.wait_for(|f| !matches!(f, Some(Fault::Stall))) => {}
            _ = shutdown.changed() => {}
        }
        return;
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(shared.tls.clone());
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(t)) => t,
        _ => return,
    };
    let svc_shared = shared.clone();
    let svc_st = st.clone();
    let svc = service_fn(move |req| handle(svc_shared.clone(), svc_st.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), svc);
    tokio::select! {
        _ = conn => {}
        _ = faults.wait_for(|f| matches!(f, Some(Fault::Refuse))) => {}
        _ = shutdown.changed() => {}
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Health(&'static str),
    Version,
    Api,
    Apis,
    CoreV1,
    CoordinationGroup,
    CoordinationV1,
    Namespace(String),
    Resource {
        kind: Kind,
        namespace: Option<String>,
        name: Option<String>,
        watch_path: bool,
    },
    Unknown,
}

fn route(path: &str) -> Route {
    let path = path.trim_end_matches('/');
    match path {
        "/healthz" => return Route::Health("healthz"),
        "/livez" => return Route::Health("livez"),
        "/readyz" => return Route::Health("readyz"),
        "/version" => return Route::Version,
        "/api" => return Route::Api,
        "/apis" => return Route::Apis,
        "/api/v1" => return Route::CoreV1,
        "/apis/coordination.k8s.io" => return Route::CoordinationGroup,
        "/apis/coordination.k8s.io/v1" => return Route::CoordinationV1,
        _ => {}
    }
    if let Some(ns) = path.strip_prefix("/api/v1/namespaces/")
        && !ns.is_empty()
        && !ns.contains('/')
    {
        return Route::Namespace(percent_decode(ns));
    }
    let (kind, rest) = if let Some(rest) = path.strip_prefix("/api/v1/") {
        (Kind::Node, rest)
    } else if let Some(rest) = path.strip_prefix("/apis/coordination.k8s.io/v1/") {
        (Kind::Lease, rest)
    } else {
        return Route::Unknown;
    };
    let mut segs: Vec<&str> = rest.split('/').collect();
    let watch_path = segs.first() == Some(&"watch");
    if watch_path {
        segs.remove(0);
    }
    let mut namespace = None;
    if segs.first() == Some(&"namespaces") && segs.len() >= 3 {
        if !kind.namespaced() {
            return Route::Unknown;
        }
        namespace = Some(percent_decode(segs[1]));
        segs.drain(..2);
    }
    match segs.as_slice() {
        [plural] if *plural == kind.plural() => Route::Resource {
            kind,
            namespace,
            name: None,
            watch_path,
        },
        [plural, name] if *plural == kind.plural() && !name.is_empty() => Route::Resource {
            kind,
            namespace,
            name: Some(percent_decode(name)),
            watch_path,
        },
        _ => Route::Unknown,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The Kubernetes verb of a request (or the lower-case method for
/// non-resource paths).
fn verb(method: &Method, route: &Route, q: &[(String, String)]) -> Option<&'static str> {
    let Route::Resource {
        name, watch_path, ..
    } = route
    else {
        return Some(if method == Method::GET {
            "get"
        } else {
            "other"
        });
    };
    let watch = *watch_path || matches!(param(q, "watch"), Some("true" | "1"));
    Some(match (method, name.is_some()) {
        (&Method::GET, _) if watch => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => return None,
    })
}

fn current_fault(shared: &Shared, st: &ListenerState, user: Option<&str>) -> Option<Fault> {
    let listener = *st.fault.borrow();
    match listener {
        Some(Fault::Unready) | None => user.and_then(|u| shared.token_fault(u)).or(listener),
        other => other,
    }
}

/// Waits while the request is stalled; then the connection is dropped.
async fn stalled(shared: &Shared, st: &ListenerState, user: Option<&str>) -> Dropped {
    let mut l = st.fault.subscribe();
    let mut t = shared.token_fault_gen.subscribe();
    let mut sd = shared.shutdown.subscribe();
    while matches!(current_fault(shared, st, user), Some(Fault::Stall)) {
        tokio::select! {
            r = l.changed() => if r.is_err() { break },
            r = t.changed() => if r.is_err() { break },
            _ = sd.changed() => break,
        }
    }
    Dropped
}

/// Applies a fault: `Ok(Some(response))` answers with an error,
/// `Ok(None)` goes on, `Err` drops the connection.
async fn apply_fault(
    shared: &Shared,
    st: &ListenerState,
    user: Option<&str>,
    fault: Option<Fault>,
) -> Result<Option<Response<Body>>, Dropped> {
    match fault {
        None | Some(Fault::Unready) => Ok(None),
        Some(Fault::Latency { ms }) => {
            tokio::time::sleep(latency(ms)).await;
            Ok(None)
        }
        Some(Fault::Error { code }) => Ok(Some(status_response(&Status::injected(code)))),
        Some(Fault::Stall) => Err(stalled(shared, st, user).await),
        Some(Fault::Refuse) => Err(Dropped),
    }
}

async fn handle(
    shared: Arc<Shared>,
    st: Arc<ListenerState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Dropped> {
    let route = route(req.uri().path());
    let q = query(&req);
    let verb = verb(req.method(), &route, &q);
    let resource_label = match &route {
        Route::Resource { kind, .. } => kind.plural().to_owned(),
        _ => req.uri().path().to_owned(),
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let token = bearer.as_ref().and_then(|b| {
        shared
            .tokens
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|t| &t.token == b)
            .cloned()
    });
    let user = token.as_ref().map(|t| t.name.clone());
    shared.count(
        st.index,
        user.as_deref().unwrap_or("-"),
        verb.unwrap_or("other"),
        &resource_label,
    );

    // The listener's fault first (it is "the network"), then the token's.
    let listener_fault = *st.fault.borrow();
    if let Some(r) = apply_fault(&shared, &st, user.as_deref(), listener_fault).await? {
        return Ok(r);
    }
    if bearer.is_some() && token.is_none() {
        return Ok(status_response(&Status::unauthorized()));
    }
    let anonymous_ok = matches!(route, Route::Health(_) | Route::Version);
    if token.is_none() && !anonymous_ok {
        return Ok(status_response(&Status::unauthorized()));
    }
    if let Some(u) = &user {
        let token_fault = shared.token_fault(u);
        if let Some(r) = apply_fault(&shared, &st, Some(u), token_fault).await? {
            return Ok(r);
        }
    }
    let forbidden = token.as_ref().is_some_and(|t| t.role == Role::Forbidden);

    Ok(match route {
        Route::Health(which) => health(which, &st, &q),
        Route::Version => json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-vip-testapi", "gitCommit": "0000000000000000000000000000000000000000",
                    "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc", "platform": "linux/amd64"}),
        ),
        Route::Api => json_response(
            StatusCode::OK,
            &json!({"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": st.addr.to_string()}]}),
        ),
        Route::Apis => json_response(
            StatusCode::OK,
            &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [coordination_group()]}),
        ),
        Route::CoordinationGroup => {
            let mut g = coordination_group();
            g["kind"] = "APIGroup".into();
            g["apiVersion"] = "v1".into();
            json_response(StatusCode::OK, &g)
        }
        Route::CoreV1 => json_response(StatusCode::OK, &resource_list("v1", Kind::Node, &["no"])),
        Route::CoordinationV1 => json_response(
            StatusCode::OK,
            &resource_list("coordination.k8s.io/v1", Kind::Lease, &[]),
        ),
        Route::Unknown => status_response(&Status::no_such_path()),
        Route::Namespace(ns) => {
            if forbidden {
                return Ok(status_response(&Status::forbidden(
                    &user.unwrap_or_default(),
                    "get",
                    Kind::Node,
                    "",
                    None,
                )));
            }
            if req.method() != Method::GET {
                status_response(&Status::method_not_allowed(req.method().as_str()))
            } else if shared.store.namespace_exists(&ns) {
                json_response(
                    StatusCode::OK,
                    &json!({"kind": "Namespace", "apiVersion": "v1",
                            "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
                )
            } else {
                status_response(&Status::namespace_not_found(&ns))
            }
        }
        Route::Resource {
            kind,
            namespace,
            name,
            ..
        } => {
            let Some(verb) = verb else {
                return Ok(status_response(&Status::method_not_allowed(
                    req.method().as_str(),
                )));
            };
            if forbidden {
                let user = user.unwrap_or_default();
                return Ok(status_response(&Status::forbidden(
                    &user,
                    verb,
                    kind,
                    name.as_deref().unwrap_or(""),
                    namespace.as_deref(),
                )));
            }
            let ns = namespace.clone().unwrap_or_default();
            serve_resource(
                &shared,
                &st,
                user.as_deref(),
                verb,
                kind,
                namespace.as_deref(),
                &ns,
                name.as_deref(),
                &q,
                req,
            )
            .await
            .unwrap_or_else(|s| status_response(&s))
        }
    })
}

fn health(which: &'static str, st: &ListenerState, q: &[(String, String)]) -> Response<Body> {
    let unready = which == "readyz" && matches!(*st.fault.borrow(), Some(Fault::Unready));
    let verbose = q.iter().any(|(k, _)| k == "verbose");
    if unready {
        return respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[+]informer-sync ok\nreadyz check failed\n",
        );
    }
    if verbose {
        respond(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            format!("[+]ping ok\n[+]log ok\n[+]etcd ok\n{which} check passed\n"),
        )
    } else {
        respond(StatusCode::OK, "text/plain; charset=utf-8", "ok")
    }
}

fn coordination_group() -> Value {
    json!({"name": "coordination.k8s.io",
           "versions": [{"groupVersion": "coordination.k8s.io/v1", "version": "v1"}],
           "preferredVersion": {"groupVersion": "coordination.k8s.io/v1", "version": "v1"}})
}

fn resource_list(group_version: &str, kind: Kind, short: &[&str]) -> Value {
    let mut r = json!({"name": kind.plural(), "singularName": kind.kind().to_lowercase(), "namespaced": kind.namespaced(),
        "kind": kind.kind(), "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]});
    if !short.is_empty() {
        r["shortNames"] = json!(short);
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": [r]})
}

async fn read_json(req: Request<Incoming>) -> Result<Value, Status> {
    let body = Limited::new(req.into_body(), 3 * 1024 * 1024)
        .collect()
        .await
        .map_err(|e| Status::bad_request(format!("cannot read the request body: {e}")))?
        .to_bytes();
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body)
        .map_err(|e| Status::bad_request(format!("the request body is not JSON: {e}")))
}

#[allow(clippy::too_many_arguments)]
async fn serve_resource(
    shared: &Arc<Shared>,
    st: &Arc<ListenerState>,
    user: Option<&str>,
    verb: &str,
    kind: Kind,
    namespace: Option<&str>,
    ns: &str,
    name: Option<&str>,
    q: &[(String, String)],
    req: Request<Incoming>,
) -> Result<Response<Body>, Status> {
    let store = &shared.store;
    if kind.namespaced() && namespace.is_none() && !matches!(verb, "list" | "watch") {
        return Err(Status::no_such_path());
    }
    let name_or = |n: Option<&str>| n.unwrap_or_default().to_owned();
    match verb {
        "get" => Ok(json_response(
            StatusCode::OK,
            &store.get(kind, ns, &name_or(name))?,
        )),
        "list" => {
            let sel = Selectors::parse(param(q, "fieldSelector"), param(q, "labelSelector"))?;
            let (items, rv) = store.list(kind, namespace, &sel);
            let items: Vec<Value> = items
                .into_iter()
                .map(|mut o| {
                    if let Some(m) = o.as_object_mut() {
                        m.remove("kind");
                        m.remove("apiVersion");
                    }
                    o
                })
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": kind.list_kind(), "apiVersion": kind.api_version(),
                        "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
            ))
        }
        "watch" => {
            let mut sel = Selectors::parse(param(q, "fieldSelector"), param(q, "labelSelector"))?;
            if let Some(n) = name {
                sel = Selectors::parse(
                    Some(&format!(
                        "metadata.name={n}{}",
                        param(q, "fieldSelector")
                            .map(|f| format!(",{f}"))
                            .unwrap_or_default()
                    )),
                    param(q, "labelSelector"),
                )?;
            }
            let from =
                match param(q, "resourceVersion").filter(|v| !v.is_empty()) {
                    None => None,
                    Some(v) => Some(v.parse::<u64>().map_err(|_| {
                        Status::bad_request(format!("invalid resource version: {v}"))
                    })?),
                };
            let timeout = param(q, "timeoutSeconds")
                .and_then(|t| t.parse::<u64>().ok())
                .map_or(Duration::from_secs(1800), Duration::from_secs);
            let lines: VecDeque<Bytes> = VecDeque::new();
            let state = match store.watch(kind, namespace, &sel, from) {
                Ok(start) => WatchState {
                    initial: start
                        .initial
                        .into_iter()
                        .map(|(t, o)| event_line(t, &o))
                        .collect(),
                    live: Some(start.live),
                    kind,
                    namespace: namespace.map(str::to_owned),
                    sel,
                    deadline: tokio::time::Instant::now() + timeout,
                    shared: shared.clone(),
                    st: st.clone(),
                    user: user.map(str::to_owned),
                },
                Err(status) => {
                    let mut l = lines;
                    l.push_back(event_line(
                        "ERROR",
                        &serde_json::to_value(&status).unwrap_or_default(),
                    ));
                    WatchState {
                        initial: l,
                        live: None,
                        kind,
                        namespace: None,
                        sel,
                        deadline: tokio::time::Instant::now() + timeout,
                        shared: shared.clone(),
                        st: st.clone(),
                        user: user.map(str::to_owned),
                    }
                }
            };
            let stream = futures::stream::unfold(state, |mut s| async move {
                let line = s.next_line().await?;
                Some((Ok::<_, Infallible>(Frame::data(line)), s))
            });
            let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            Ok(r)
        }
        "create" => {
            let body = read_json(req).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &store.create(kind, ns, body)?,
            ))
        }
        "update" => {
            let body = read_json(req).await?;
            Ok(json_response(
                StatusCode::OK,
                &store.update(kind, ns, &name_or(name), body)?,
            ))
        }
        "patch" => {
            let content_type = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned();
            let strategic = match content_type.as_str() {
                "application/merge-patch+json" => false,
                "application/strategic-merge-patch+json" => true,
                _ => return Err(Status::unsupported_media_type()),
            };
            let body = read_json(req).await?;
            Ok(json_response(
                StatusCode::OK,
                &store.patch(kind, ns, &name_or(name), &body, strategic)?,
            ))
        }
        "delete" => {
            let body = read_json(req).await?;
            let precondition = body["preconditions"]["resourceVersion"]
                .as_str()
                .map(str::to_owned);
            let old = store.delete(kind, ns, &name_or(name), precondition.as_deref())?;
            let mut details = json!({"name": name_or(name), "kind": kind.plural(), "uid": old["metadata"]["uid"]});
            if !kind.group().is_empty() {
                details["group"] = kind.group().into();
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
            ))
        }
        other => Err(Status::method_not_allowed(other)),
    }
}

fn event_line(etype: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": etype, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

struct WatchState {
    initial: VecDeque<Bytes>,
    live: Option<broadcast::Receiver<Arc<Event>>>,
    kind: Kind,
    namespace: Option<String>,
    sel: Selectors,
    deadline: tokio::time::Instant,
    shared: Arc<Shared>,
    st: Arc<ListenerState>,
    user: Option<String>,
}

impl WatchState {
    /// The next line of the stream, `None` to end it. Faults act on open
    /// watches too: a stall freezes the stream (then drops it), a refusal
    /// ends it.
    async fn next_line(&mut self) -> Option<Bytes> {
        let mut lf = self.st.fault.subscribe();
        let mut tf = self.shared.token_fault_gen.subscribe();
        let mut sd = self.shared.shutdown.subscribe();
        loop {
            match current_fault(&self.shared, &self.st, self.user.as_deref()) {
                Some(Fault::Refuse) => return None,
                Some(Fault::Stall) => {
                    stalled(&self.shared, &self.st, self.user.as_deref()).await;
                    return None;
                }
                _ => {}
            }
            if let Some(line) = self.initial.pop_front() {
                return Some(line);
            }
            let live = self.live.as_mut()?;
            tokio::select! {
                _ = tokio::time::sleep_until(self.deadline) => return None,
                r = lf.changed() => if r.is_err() { return None },
                r = tf.changed() => if r.is_err() { return None },
                _ = sd.changed() => return None,
                ev = live.recv() => match ev {
                    Ok(ev) => {
                        if let Some((t, obj)) = view_event(&ev, self.kind, self.namespace.as_deref(), &self.sel) {
                            return Some(event_line(t, &obj));
                        }
                    }
                    // A watcher that fell behind is closed, as the real
                    // server does; the client re-watches.
                    Err(_) => return None,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/plndr-cp-lock"),
            Route::Resource {
                kind: Kind::Lease,
                namespace: Some("kube-system".into()),
                name: Some("plndr-cp-lock".into()),
                watch_path: false
            }
        );
        assert_eq!(
            route("/apis/coordination.k8s.io/v1/watch/namespaces/kube-system/leases"),
            Route::Resource {
                kind: Kind::Lease,
                namespace: Some("kube-system".into()),
                name: None,
                watch_path: true
            }
        );
        assert_eq!(
            route("/api/v1/nodes/n1"),
            Route::Resource {
                kind: Kind::Node,
                namespace: None,
                name: Some("n1".into()),
                watch_path: false
            }
        );
        assert_eq!(route("/api/v1/namespaces/x/nodes"), Route::Unknown);
        assert_eq!(route("/apis/apps/v1"), Route::Unknown);
        assert_eq!(route("/readyz"), Route::Health("readyz"));
        assert_eq!(
            percent_decode("metadata.name%3Dplndr-cp-lock"),
            "metadata.name=plndr-cp-lock"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
