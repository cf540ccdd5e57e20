//! Where a request goes: paths, query parameters, verbs.

use http::{Method, Request};
use hyper::body::Incoming;

use super::Kind;

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    Health(&'static str),
    Version,
    Api,
    Apis,
    CoreV1,
    CoordinationGroup,
    CoordinationV1,
    Namespace(String),
    /// `/openapi/v3`.
    OpenApiIndex,
    /// `/openapi/v3/<group version>`.
    OpenApi(String),
    Resource {
        kind: Kind,
        namespace: Option<String>,
        name: Option<String>,
        watch_path: bool,
    },
    Unknown,
}

pub(super) fn route(path: &str) -> Route {
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
        "/openapi/v3" => return Route::OpenApiIndex,
        _ => {}
    }
    if let Some(gv) = path.strip_prefix("/openapi/v3/") {
        return Route::OpenApi(gv.to_owned());
    }
    if let Some(ns) = path.strip_prefix("/api/v1/namespaces/")
        && !ns.is_empty()
        && !ns.contains('/')
    {
        return Route::Namespace(percent_decode(ns));
    }
    let (kinds, rest): (&[Kind], &str) = if let Some(rest) = path.strip_prefix("/api/v1/") {
        (&[Kind::Node, Kind::Event, Kind::Secret], rest)
    } else if let Some(rest) = path.strip_prefix("/apis/coordination.k8s.io/v1/") {
        (&[Kind::Lease], rest)
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
        namespace = Some(percent_decode(segs[1]));
        segs.drain(..2);
    }
    let Some(kind) = kinds
        .iter()
        .copied()
        .find(|k| segs.first() == Some(&k.plural()))
    else {
        return Route::Unknown;
    };
    if namespace.is_some() && !kind.namespaced() {
        return Route::Unknown;
    }
    match segs.as_slice() {
        [_] => Route::Resource {
            kind,
            namespace,
            name: None,
            watch_path,
        },
        [_, name] if !name.is_empty() => Route::Resource {
            kind,
            namespace,
            name: Some(percent_decode(name)),
            watch_path,
        },
        _ => Route::Unknown,
    }
}

pub(super) fn percent_decode(s: &str) -> String {
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

pub(super) fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
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

pub(super) fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The Kubernetes verb of a request (or the lower-case method for
/// non-resource paths).
pub(super) fn verb(method: &Method, route: &Route, q: &[(String, String)]) -> Option<&'static str> {
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
        assert_eq!(
            route("/api/v1/namespaces/kube-system/events/plndr-cp-lock.1"),
            Route::Resource {
                kind: Kind::Event,
                namespace: Some("kube-system".into()),
                name: Some("plndr-cp-lock.1".into()),
                watch_path: false
            }
        );
        assert_eq!(
            route("/api/v1/events"),
            Route::Resource {
                kind: Kind::Event,
                namespace: None,
                name: None,
                watch_path: false
            }
        );
        assert_eq!(route("/api/v1/namespaces/x/pods"), Route::Unknown);
        assert_eq!(route("/apis/apps/v1"), Route::Unknown);
        assert_eq!(route("/readyz"), Route::Health("readyz"));
        assert_eq!(
            percent_decode("metadata.name%3Dplndr-cp-lock"),
            "metadata.name=plndr-cp-lock"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
