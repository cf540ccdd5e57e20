//! The admin endpoint: plain HTTP/1.1 on a loopback address, so another
//! process (the `vip demo`, the e2e suite) can steer a running
//! `vip-testapi`. Bodies are JSON.
//!
//! | request | effect |
//! |---|---|
//! | `GET /state` | listeners (index, address, fault), users, resourceVersion, counters |
//! | `GET /counters` | `[{"listener":0,"user":"node-a","verb":"update","resource":"leases","count":12}, …]` |
//! | `PUT /listeners/<i>/fault` with a [`Fault`] | set listener `i`'s fault, e.g. `{"kind":"stall"}`, `{"kind":"latency","ms":300}`, `{"kind":"error","code":500}`, `{"kind":"refuse"}`, `{"kind":"unready"}` |
//! | `DELETE /listeners/<i>/fault` | lift it |
//! | `PUT /users/<name>/fault` with a [`Fault`] | fault every request made with that user's token |
//! | `DELETE /users/<name>/fault` | lift it |
//! | `POST /nodes` with `{"name":"cp-1","controlPlane":true,"ready":true,"unschedulable":false}` | create or replace a Node |
//! | `POST /compact` | forget the watch history (watches from older versions get 410) |
//! | `POST /shutdown` | stop the process |
//!
//! Answers: 200 with JSON, 204 for a change, 400/404 with `{"error": …}`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::{Fault, ListenerHandle, Shared, set_token_fault};

/// What the admin endpoint steers.
#[derive(Debug, Clone)]
pub(crate) struct AdminHandles {
    pub(crate) shared: Arc<Shared>,
    pub(crate) listeners: Vec<ListenerHandle>,
}

type Body = Full<Bytes>;

fn reply(code: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(v).unwrap_or_default(),
    )));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response<Body> {
    reply(code, &json!({"error": msg.into()}))
}

/// Serves until the stand-in shuts down.
pub(crate) async fn serve(listener: TcpListener, h: AdminHandles) {
    let mut shutdown = h.shared.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let h = h.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let h = h.clone();
                async move { Ok::<_, Infallible>(handle(&h, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeBody {
    name: String,
    #[serde(default = "yes")]
    control_plane: bool,
    #[serde(default = "yes")]
    ready: bool,
    #[serde(default)]
    unschedulable: bool,
}

fn yes() -> bool {
    true
}

fn counters_json(shared: &Shared) -> Value {
    let c = shared
        .counters
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Value::Array(
        c.entries
            .iter()
            .map(|((l, u, v, r), n)| json!({"listener": l, "user": u, "verb": v, "resource": r, "count": n}))
            .collect(),
    )
}

async fn body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))
}

/// The fault a `PUT` sets (its JSON body), or `None` for a `DELETE`; a
/// response for a body that is not a fault.
async fn fault_of(
    method: &Method,
    req: Request<Incoming>,
) -> Result<Option<Fault>, Response<Body>> {
    if *method != Method::PUT {
        return Ok(None);
    }
    match serde_json::from_slice::<Fault>(&body(req).await?) {
        Ok(f) => Ok(Some(f)),
        Err(e) => Err(error(StatusCode::BAD_REQUEST, format!("not a fault: {e}"))),
    }
}

async fn handle(h: &AdminHandles, req: Request<Incoming>) -> Response<Body> {
    let path: Vec<String> = req
        .uri()
        .path()
        .trim_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect();
    let segs: Vec<&str> = path.iter().map(String::as_str).collect();
    let method = req.method().clone();
    match (&method, segs.as_slice()) {
        (&Method::GET, ["state"]) => {
            let listeners: Vec<Value> = h
                .listeners
                .iter()
                .enumerate()
                .map(|(i, l)| json!({"index": i, "addr": l.addr().to_string(), "fault": l.fault()}))
                .collect();
            let users: Vec<String> = h
                .shared
                .tokens
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .map(|t| t.name.clone())
                .collect();
            let user_faults: serde_json::Map<String, Value> = h
                .shared
                .token_faults
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .map(|(u, f)| (u.clone(), serde_json::to_value(f).unwrap_or_default()))
                .collect();
            reply(
                StatusCode::OK,
                &json!({"listeners": listeners, "users": users, "userFaults": user_faults,
                        "resourceVersion": h.shared.store.resource_version().to_string(),
                        "counters": counters_json(&h.shared)}),
            )
        }
        (&Method::GET, ["counters"]) => reply(StatusCode::OK, &counters_json(&h.shared)),
        (&Method::PUT | &Method::DELETE, ["listeners", i, "fault"]) => {
            let Some(l) = i.parse::<usize>().ok().and_then(|i| h.listeners.get(i)) else {
                return error(StatusCode::NOT_FOUND, format!("no listener {i}"));
            };
            let fault = match fault_of(&method, req).await {
                Ok(f) => f,
                Err(r) => return r,
            };
            l.set_fault(fault);
            reply(StatusCode::OK, &json!({"listener": i, "fault": fault}))
        }
        (&Method::PUT | &Method::DELETE, ["users", user, "fault"]) => {
            let user = (*user).to_owned();
            let known = h
                .shared
                .tokens
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .any(|t| t.name == user);
            if !known {
                return error(StatusCode::NOT_FOUND, format!("no user {user}"));
            }
            let fault = match fault_of(&method, req).await {
                Ok(f) => f,
                Err(r) => return r,
            };
            set_token_fault(&h.shared, &user, fault);
            reply(StatusCode::OK, &json!({"user": user, "fault": fault}))
        }
        (&Method::POST, ["nodes"]) => {
            let n = match body(req)
                .await
                .map(|b| serde_json::from_slice::<NodeBody>(&b))
            {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("not a node: {e}")),
                Err(r) => return r,
            };
            match h
                .shared
                .store
                .put_node(&n.name, n.control_plane, n.ready, n.unschedulable)
            {
                Ok(obj) => reply(StatusCode::OK, &obj),
                Err(s) => reply(
                    StatusCode::from_u16(s.code).unwrap_or(StatusCode::BAD_REQUEST),
                    &serde_json::to_value(&s).unwrap_or_default(),
                ),
            }
        }
        (&Method::POST, ["compact"]) => {
            h.shared.store.compact();
            reply(
                StatusCode::OK,
                &json!({"compactedAt": h.shared.store.resource_version().to_string()}),
            )
        }
        (&Method::POST, ["shutdown"]) => {
            h.shared.shutdown.send_replace(true);
            reply(StatusCode::OK, &json!({"shutdown": true}))
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "unknown admin request; see the vip_testkit::testapi::admin docs",
        ),
    }
}
