//! A minimal but valid OpenAPI v3 description of what the stand-in serves,
//! for `kubectl create -f` and `kubectl apply`.
//!
//! kubectl (1.27 and later) asks `GET /openapi/v3` for the index of group
//! versions, then the group version's document, and looks there for the
//! PATCH operation of the object's group/version/kind: when it takes the
//! `fieldValidation` query parameter, kubectl leaves validation to the
//! server (`fieldValidation=Strict`, which the stand-in honours) instead of
//! downloading a schema. Without this index kubectl fell back to
//! `/openapi/v2` and failed ("failed to download openapi").
//!
//! The PATCH operations list the merge-patch media types only (no
//! strategic merge patch), so client-side `kubectl apply` computes its
//! patch from the types compiled into kubectl rather than from schemas
//! this document does not carry. The stand-in serves no `/openapi/v2`.

use serde_json::{Map, Value, json};

use crate::testapi::store::Kind;

/// The group versions described, with their kinds.
const GROUP_VERSIONS: [(&str, &[Kind]); 2] = [
    ("api/v1", &[Kind::Node, Kind::Event]),
    ("apis/coordination.k8s.io/v1", &[Kind::Lease]),
];

/// The version tag in the documents' URLs (the real server appends a hash
/// of each document, which changes with it; these documents never change
/// within one build).
const HASH: &str = "vip-testapi-1";

/// `GET /openapi/v3`: the index of group-version documents.
pub(super) fn index() -> Value {
    let paths: Map<String, Value> = GROUP_VERSIONS
        .iter()
        .map(|(gv, _)| {
            (
                (*gv).to_owned(),
                json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={HASH}")}),
            )
        })
        .collect();
    json!({ "paths": paths })
}

/// `GET /openapi/v3/<group version>`: its document, or `None` for a group
/// version the stand-in does not serve.
pub(super) fn document(path: &str) -> Option<Value> {
    let (gv, kinds) = GROUP_VERSIONS
        .iter()
        .find(|(gv, _)| path.trim_start_matches('/') == *gv)?;
    let mut paths = Map::new();
    for &kind in *kinds {
        let base = format!("/{gv}");
        let scope = if kind.namespaced() {
            format!("{base}/namespaces/{{namespace}}/{}", kind.plural())
        } else {
            format!("{base}/{}", kind.plural())
        };
        let gvk = json!({"group": kind.group(), "version": "v1", "kind": kind.kind()});
        let op = |action: &str, verb: &str, query: &[&str]| {
            let mut parameters: Vec<Value> = query
                .iter()
                .map(|q| json!({"name": q, "in": "query", "schema": {"type": "string"}}))
                .collect();
            if kind.namespaced() {
                parameters.push(path_param("namespace"));
            }
            json!({
                "operationId": format!("{verb}{}", kind.kind()),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": parameters,
                "responses": {"200": {"description": "OK"}},
            })
        };
        let writes = ["dryRun", "fieldManager", "fieldValidation"];
        let mut collection = json!({
            "get": op("list", "list", &["fieldSelector", "labelSelector", "resourceVersion", "timeoutSeconds", "watch"]),
            "post": op("post", "create", &writes),
        });
        with_body(&mut collection["post"], &["application/json"]);
        let mut item = json!({
            "get": op("get", "read", &[]),
            "put": op("put", "replace", &writes),
            "patch": op("patch", "patch", &["dryRun", "fieldManager", "fieldValidation", "force"]),
            "delete": op("delete", "delete", &[]),
        });
        with_body(&mut item["put"], &["application/json"]);
        with_body(
            &mut item["patch"],
            &[
                "application/merge-patch+json",
                "application/apply-patch+yaml",
            ],
        );
        for method in ["get", "put", "patch", "delete"] {
            if let Some(params) = item[method]["parameters"].as_array_mut() {
                params.push(path_param("name"));
            }
        }
        paths.insert(scope.clone(), collection);
        paths.insert(format!("{scope}/{{name}}"), item);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "vip-testapi", "version": "v1.32.0-vip-testapi"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

fn with_body(op: &mut Value, media: &[&str]) {
    let content: Map<String, Value> = media
        .iter()
        .map(|m| ((*m).to_owned(), json!({"schema": {"type": "object"}})))
        .collect();
    op["requestBody"] = json!({"required": true, "content": content});
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_names_each_document_and_each_document_takes_field_validation() {
        let index = index();
        for (gv, kinds) in GROUP_VERSIONS {
            let url = index["paths"][gv]["serverRelativeURL"].as_str().unwrap();
            let path = url
                .strip_prefix("/openapi/v3/")
                .unwrap()
                .split('?')
                .next()
                .unwrap();
            let doc = document(path).unwrap();
            assert_eq!(doc["openapi"], "3.0.0");
            for kind in kinds {
                let patch = doc["paths"]
                    .as_object()
                    .unwrap()
                    .values()
                    .filter_map(|p| p.get("patch"))
                    .find(|op| op["x-kubernetes-group-version-kind"]["kind"] == kind.kind())
                    .unwrap();
                assert!(
                    patch["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
                );
            }
        }
        assert!(document("apis/apps/v1").is_none());
    }
}
