//! Health endpoints and API discovery documents.

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::{Body, Kind, respond};
use crate::testapi::{Fault, ListenerState};

pub(super) fn health(
    which: &'static str,
    st: &ListenerState,
    q: &[(String, String)],
) -> Response<Body> {
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

pub(super) fn coordination_group() -> Value {
    json!({"name": "coordination.k8s.io",
           "versions": [{"groupVersion": "coordination.k8s.io/v1", "version": "v1"}],
           "preferredVersion": {"groupVersion": "coordination.k8s.io/v1", "version": "v1"}})
}

/// An `APIResourceList` of `kinds`, each with its short names.
pub(super) fn resource_list(group_version: &str, kinds: &[(Kind, &[&str])]) -> Value {
    let resources: Vec<Value> = kinds
        .iter()
        .map(|(kind, short)| {
            let mut r = json!({"name": kind.plural(), "singularName": kind.kind().to_lowercase(), "namespaced": kind.namespaced(),
                "kind": kind.kind(), "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]});
            if !short.is_empty() {
                r["shortNames"] = json!(short);
            }
            r
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}
