//! The stand-in against the real kube-apiserver, request by request: each
//! difference found between them (and fixed in the stand-in) is pinned
//! here by sending the same request to both and checking the same answer
//! (status code, reason, the message's substance). The list of
//! differences, fixed or deliberately kept, is in
//! `vip-testkit/src/testapi/DIFFERENCES.md`.

mod common;

use common::lab_on;
use serde_json::{Value, json};
use vip_testkit::api::{Api, Flavor};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";

on_both!(
    a_replace_of_a_gone_lease_naming_a_version_is_a_conflict,
    a_versionless_replace_creates_an_absent_lease,
    coordinated_leader_election_fields_are_dropped,
    the_openapi_v3_index_leads_kubectl_to_server_side_validation,
    strict_field_validation_names_the_unknown_field,
    an_unknown_field_label_is_refused_naming_it,
    server_side_apply_creates_then_merges,
    a_watch_from_a_dropped_version_is_410_expired,
);

/// `(status code, body)` of a request as the admin (through server 0).
async fn send(
    api: &Api,
    method: &str,
    path: &str,
    content_type: &str,
    body: Value,
) -> (u16, Value) {
    let (code, bytes) = send_via(api.admin(), method, path, content_type, body).await;
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// `(status code, raw body)` of a request through `client`.
async fn send_via(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Value,
) -> (u16, Vec<u8>) {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .expect("an answer");
    let code = response.status().as_u16();
    let bytes = response.into_body().collect_bytes().await.unwrap();
    (code, bytes.to_vec())
}

fn lease(name: &str, extra: Value) -> Value {
    let mut l = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": name, "namespace": "kube-system"},
                       "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 5}});
    if let (Some(l), Some(extra)) = (l.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            l.insert(k.clone(), v.clone());
        }
    }
    l
}

const JSON: &str = "application/json";

async fn a_replace_of_a_gone_lease_naming_a_version_is_a_conflict(flavor: Flavor) {
    let Some(api) = lab_on(flavor, 1, &["admin"]).await else {
        return;
    };
    let (code, created) = send(&api, "POST", LEASES, JSON, lease("gone", json!({}))).await;
    assert_eq!(code, 201, "{created}");
    let (code, _) = send(&api, "DELETE", &format!("{LEASES}/gone"), JSON, Value::Null).await;
    assert_eq!(code, 200);
    let (code, status) = send(&api, "PUT", &format!("{LEASES}/gone"), JSON, created).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (409, Some("Conflict")),
        "{status}"
    );
}

async fn a_versionless_replace_creates_an_absent_lease(flavor: Flavor) {
    let Some(api) = lab_on(flavor, 1, &["admin"]).await else {
        return;
    };
    let path = format!("{LEASES}/fresh");
    let (code, obj) = send(&api, "PUT", &path, JSON, lease("fresh", json!({}))).await;
    assert_eq!(code, 201, "{obj}");
    assert_eq!(obj["spec"]["holderIdentity"], "node-a");
    let (code, _) = send(&api, "GET", &path, JSON, Value::Null).await;
    assert_eq!(code, 200);
}

async fn coordinated_leader_election_fields_are_dropped(flavor: Flavor) {
    let Some(api) = lab_on(flavor, 1, &["admin"]).await else {
        return;
    };
    let mut body = lease("cle", json!({}));
    body["spec"]["preferredHolder"] = "node-z".into();
    body["spec"]["strategy"] = "OldestEmulationVersion".into();
    let (code, obj) = send(&api, "POST", LEASES, JSON, body).await;
    assert_eq!(code, 201, "{obj}");
    assert_eq!(obj["spec"]["preferredHolder"], Value::Null, "{obj}");
    assert_eq!(obj["spec"]["strategy"], Value::Null, "{obj}");
}

async fn the_openapi_v3_index_leads_kubectl_to_server_side_validation(flavor: Flavor) {
    let Some(api) = lab_on(flavor, 1, &["admin"]).await else {
        return;
    };
    let (code, index) = send(&api, "GET", "/openapi/v3", JSON, Value::Null).await;
    assert_eq!(code, 200);
    for gv in ["api/v1", "apis/coordination.k8s.io/v1"] {
        let url = index["paths"][gv]["serverRelativeURL"]
            .as_str()
            .unwrap_or_else(|| panic!("{gv} in the index: {index}"));
        let (code, doc) = send(&api, "GET", url, JSON, Value::Null).await;
        assert_eq!(code, 200, "{url}");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{url}");
        // What kubectl looks for: the PATCH of the kind, taking
        // fieldValidation.
        let kind = if gv == "api/v1" { "Node" } else { "Lease" };
        let patch = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|p| p.get("patch"))
            .find(|op| op["x-kubernetes-group-version-kind"]["kind"] == kind)
            .unwrap_or_else(|| panic!("a PATCH of {kind} in {url}"));
        let takes = |name: &str| {
            patch["parameters"].as_array().unwrap().iter().any(|p| {
                p["name"] == name
                    || p["$ref"]
                        .as_str()
                        .is_some_and(|r| r.to_lowercase().contains(&name.to_lowercase()))
            })
        };
        assert!(takes("fieldValidation"), "{patch}");
    }
}

async fn strict_field_validation_names_the_unknown_field(flavor: Flavor) {
    let Some(api) = lab_on(flavor, 1, &["admin"]).await else {
        return;
    };
    let mut body = lease("strict", json!({}));
    body["spec"]["colour"] = "blue".into();
    let (code, status) = send(
        &api,
        "POST",
        &format!("{LEASES}?fieldValidation=Strict"),
        JSON,
        body.clone(),
    )
    .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (400, Some("BadRequest")),
        "{status}"
    );
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("strict decoding error: unknown field \"spec.colour\""),
        "{message}"
    );
    // Without it, the field is dropped and the object created.
    let (code, obj) = send(&api, "POST", LEASES, JSON, body).await;
    assert_eq!(code, 201, "{obj}");
    assert_eq!(obj["spec"]["colour"], Value::Null);
}

async fn an_unknown_field_label_is_refused_naming_it(flavor: Flavor) {
    let Some(api) = lab_on(flavor, 1, &["admin"]).await else {
        return;
    };
    let (code, status) = send(
        &api,
        "GET",
        "/api/v1/namespaces/default/events?fieldSelector=spec.colour%3Dblue",
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (400, Some("BadRequest")),
        "{status}"
    );
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("field label not supported: spec.colour"),
        "{status}"
    );
}

async fn server_side_apply_creates_then_merges(flavor: Flavor) {
    let Some(api) = lab_on(flavor, 1, &["admin"]).await else {
        return;
    };
    let path = format!("{LEASES}/applied?fieldManager=test");
    let apply = "application/apply-patch+yaml";
    let (code, obj) = send(&api, "PATCH", &path, apply, lease("applied", json!({}))).await;
    assert_eq!(code, 201, "{obj}");
    let body = lease(
        "applied",
        json!({"metadata": {"name": "applied", "namespace": "kube-system", "labels": {"a": "b"}}}),
    );
    let (code, obj) = send(&api, "PATCH", &path, apply, body).await;
    assert_eq!(code, 200, "{obj}");
    assert_eq!(obj["metadata"]["labels"]["a"], "b");
    assert_eq!(obj["spec"]["holderIdentity"], "node-a");
}

async fn a_watch_from_a_dropped_version_is_410_expired(flavor: Flavor) {
    let Some(mut api) = lab_on(flavor, 2, &["admin"]).await else {
        return;
    };
    let (code, created) = send(&api, "POST", LEASES, JSON, lease("old", json!({}))).await;
    assert_eq!(code, 201, "{created}");
    let old = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    for holder in ["node-b", "node-c", "node-d"] {
        let patch = json!({"spec": {"holderIdentity": holder}});
        let (code, _) = send(
            &api,
            "PATCH",
            &format!("{LEASES}/old"),
            "application/merge-patch+json",
            patch,
        )
        .await;
        assert_eq!(code, 200);
    }
    // Drop the history: the stand-in trims it; the real etcd is compacted
    // and server 1 restarted (its watch cache starts at the present).
    api.cut(1).await.unwrap();
    api.compact().await.unwrap();
    api.heal(1).await.unwrap();
    let other = vip_testkit::api::client_for(&api.kubeconfig_for(1, "admin").unwrap())
        .await
        .unwrap();
    let path = format!(
        "{LEASES}?watch=true&resourceVersion={old}&timeoutSeconds=2&fieldSelector=metadata.name%3Dold"
    );
    let (code, body) = send_via(&other, "GET", &path, JSON, Value::Null).await;
    // Both answer 200 and end the stream with one ERROR event: 410 Expired.
    let text = String::from_utf8(body).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap_or("null")).unwrap();
    assert_eq!(code, 200, "{text}");
    assert_eq!(first["type"], "ERROR", "{text}");
    assert_eq!(first["object"]["code"], 410, "{text}");
    assert_eq!(first["object"]["reason"], "Expired", "{text}");
    assert!(
        first["object"]["message"]
            .as_str()
            .unwrap()
            .contains("too old resource version"),
        "{text}"
    );
}
