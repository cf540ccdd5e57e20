//! The resource verbs: get, list, watch, create, update, patch, delete.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::route::param;
use super::table::{table, wants_table};
use super::{Body, current_fault, json_response, stalled};
use crate::testapi::status::Status;
use crate::testapi::store::{Event, Kind, Selectors, check_strict, view_event};
use crate::testapi::{Fault, ListenerState, Shared};

pub(super) async fn read_json(req: Request<Incoming>) -> Result<Value, Status> {
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
pub(super) async fn serve_resource(
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
    // Unknown fields are dropped, unless the client asks for strict
    // validation (kubectl does): then they are a 400 naming the field.
    let strict = |body: &Value| match param(q, "fieldValidation") {
        Some("Strict") => check_strict(kind, body),
        _ => Ok(()),
    };
    match verb {
        "get" => Ok(json_response(
            StatusCode::OK,
            &store.get(kind, ns, &name_or(name))?,
        )),
        "list" => {
            let sel = Selectors::parse(kind, param(q, "fieldSelector"), param(q, "labelSelector"))?;
            let (items, rv) = store.list(kind, namespace, &sel);
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if wants_table(accept)
                && let Some(t) = table(kind, &items, rv, jiff::Timestamp::now())
            {
                return Ok(json_response(StatusCode::OK, &t));
            }
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
            let mut sel =
                Selectors::parse(kind, param(q, "fieldSelector"), param(q, "labelSelector"))?;
            if let Some(n) = name {
                sel = Selectors::parse(
                    kind,
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
            strict(&body)?;
            Ok(json_response(
                StatusCode::CREATED,
                &store.create(kind, ns, body)?,
            ))
        }
        "update" => {
            let body = read_json(req).await?;
            strict(&body)?;
            // A replace that creates (Leases, Events) answers 201.
            let code = match store.get(kind, ns, &name_or(name)) {
                Ok(_) => StatusCode::OK,
                Err(_) => StatusCode::CREATED,
            };
            Ok(json_response(
                code,
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
            let (strategic, apply) = match content_type.as_str() {
                "application/merge-patch+json" => (false, false),
                "application/strategic-merge-patch+json" => (true, false),
                "application/apply-patch+yaml" => (true, true),
                _ => return Err(Status::unsupported_media_type()),
            };
            let body = read_json(req).await?;
            strict(&body)?;
            // Server-side apply, simplified: the applied configuration (JSON,
            // as kubectl sends it) creates the object or is merged into it;
            // no field ownership, so no conflicts and no removal of fields
            // an earlier apply set (see the stand-in's documented
            // differences).
            if apply && store.get(kind, ns, &name_or(name)).is_err() {
                return Ok(json_response(
                    StatusCode::CREATED,
                    &store.create(kind, ns, body)?,
                ));
            }
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

pub(super) fn event_line(etype: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": etype, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

pub(super) struct WatchState {
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
