//! The HTTPS side: accept loop, faults, authentication, routing.

mod discovery;
mod openapi;
mod resource;
mod route;
mod table;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::status::Status;
use super::store::Kind;
use super::{Fault, ListenerState, Role, Shared, latency};
use discovery::{coordination_group, health, resource_list};
use resource::serve_resource;
use route::{Route, query, route, verb};

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
        Route::CoreV1 => json_response(
            StatusCode::OK,
            &resource_list(
                "v1",
                &[
                    (Kind::Node, &["no"]),
                    (Kind::Event, &["ev"]),
                    (Kind::Secret, &[]),
                ],
            ),
        ),
        Route::CoordinationV1 => json_response(
            StatusCode::OK,
            &resource_list("coordination.k8s.io/v1", &[(Kind::Lease, &[])]),
        ),
        Route::Unknown => status_response(&Status::no_such_path()),
        Route::OpenApiIndex => json_response(StatusCode::OK, &openapi::index()),
        Route::OpenApi(gv) => match openapi::document(&gv) {
            Some(doc) => json_response(StatusCode::OK, &doc),
            None => status_response(&Status::no_such_path()),
        },
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
            let no_secrets =
                kind == Kind::Secret && token.as_ref().is_some_and(|t| t.role == Role::NoSecrets);
            if forbidden || no_secrets {
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
