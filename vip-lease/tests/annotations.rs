//! `vip_leaseannotations`: the backend puts its annotations on the Lease
//! it creates and re-applies them on every renewal and takeover, and
//! annotations other writers add (here with raw API requests as another
//! user) survive all of it.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{access, held, lab};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use vip_core::LockBackend;
use vip_lease::{LeaseBackend, LeaseConfig, LeaseName};
use vip_testkit::testapi::{Kind, TestApi};

const T: Duration = Duration::from_secs(2);

fn ours() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("example.com/owner".to_string(), "platform".to_string()),
        ("team".to_string(), "infra".to_string()),
    ])
}

async fn annotated_backend(api: &TestApi, listener: usize, user: &str) -> LeaseBackend {
    let config = LeaseConfig {
        lease: LeaseName::default(),
        request_timeout: T,
        annotations: ours(),
        ..LeaseConfig::default()
    };
    LeaseBackend::new(&access(api, listener, user).await, config).expect("backend")
}

/// The Lease's annotations as the API server stores them.
fn stored(api: &TestApi) -> serde_json::Value {
    api.store()
        .get(Kind::Lease, "kube-system", "plndr-cp-lock")
        .unwrap()["metadata"]["annotations"]
        .clone()
}

/// The Leases of kube-system as user `other` sees them (another writer).
async fn other_writer(api: &TestApi) -> Api<Lease> {
    let client = access(api, 0, "other")
        .await
        .client(&vip_lease::ClientOptions::requests(T))
        .unwrap();
    Api::namespaced(client, "kube-system")
}

/// A merge patch of the Lease's annotations by another client (`writer`).
async fn patch_annotations(writer: &Api<Lease>, annotations: serde_json::Value) {
    writer
        .patch(
            "plndr-cp-lock",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
        )
        .await
        .expect("the other writer's patch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotations_are_applied_kept_across_renewals_and_hand_overs_and_others_survive() {
    let api = lab(2, &["node-a", "node-b", "other"]).await;
    let a = annotated_backend(&api, 0, "node-a").await;
    let b = annotated_backend(&api, 1, "node-b").await;
    let writer = other_writer(&api).await;

    // Created with ours.
    let mut v = a.create(&held("node-a", 0)).await.unwrap();
    assert_eq!(
        stored(&api),
        json!({"example.com/owner": "platform", "team": "infra"})
    );

    // Someone else annotates; a's renewals keep it.
    patch_annotations(&writer, json!({"backup.example.com/last": "2026-12-01"})).await;
    for _ in 0..3 {
        let current = a.get().await.unwrap().unwrap();
        v = a.update(&current, &held("node-a", 0)).await.unwrap();
    }
    let want = json!({
        "example.com/owner": "platform",
        "team": "infra",
        "backup.example.com/last": "2026-12-01",
    });
    assert_eq!(stored(&api), want);

    // a releases, b takes over: both annotations sets still there.
    a.update(&v, &common::released(0)).await.unwrap();
    let current = b.get().await.unwrap().unwrap();
    let v = b.update(&current, &held("node-b", 1)).await.unwrap();
    assert_eq!(v.record.holder_identity, "node-b");
    assert_eq!(stored(&api), want);

    // Ours removed or changed by someone: the next renewal puts them back,
    // and leaves the other writer's alone.
    patch_annotations(
        &writer,
        json!({"team": null, "example.com/owner": "someone-else"}),
    )
    .await;
    assert_eq!(
        stored(&api),
        json!({"example.com/owner": "someone-else", "backup.example.com/last": "2026-12-01"})
    );
    let current = b.get().await.unwrap().unwrap();
    b.update(&current, &held("node-b", 1)).await.unwrap();
    assert_eq!(stored(&api), want);
}

/// Without annotations configured, the backend writes none and touches
/// none of others'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_annotations_configured_writes_none() {
    let api = lab(1, &["node-a", "other"]).await;
    let a = common::backend(&api, 0, "node-a", T).await;
    let writer = other_writer(&api).await;
    a.create(&held("node-a", 0)).await.unwrap();
    assert!(stored(&api).is_null(), "{}", stored(&api));
    patch_annotations(&writer, json!({"note": "kept"})).await;
    let current = a.get().await.unwrap().unwrap();
    a.update(&current, &held("node-a", 0)).await.unwrap();
    assert_eq!(stored(&api), json!({"note": "kept"}));
}
