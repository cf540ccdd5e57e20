//! The Lease backend's heartbeat key source against the API-server
//! stand-in: one key per cluster however many nodes race for it, the
//! Lease's uid as cluster identity, and a missing permission as one clear
//! error (that one on the real server too).

mod common;

use std::time::Duration;

use common::{Kubeconfigs, access, backend, held, lab};
use serde_json::json;
use vip_core::{HeartbeatKeyError, HeartbeatKeySource, LockBackend, election_scope};
use vip_lease::{LeaseHeartbeatKeys, LeaseName};
use vip_testkit::api::{Api, Flavor};
use vip_testkit::testapi::{Kind, Role, TestApiConfig, TokenSpec};

const T: Duration = Duration::from_secs(2);

async fn keys(api: &impl Kubeconfigs, listener: usize, user: &str) -> LeaseHeartbeatKeys {
    LeaseHeartbeatKeys::new(&access(api, listener, user).await, LeaseName::default(), T)
        .expect("key source")
}

/// The Lease, held by node-a.
async fn create_lease(api: &impl Kubeconfigs) {
    let lease = backend(api, 0, "node-a", T).await;
    lease.create(&held("node-a", 0)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_nodes_get_one_key_and_the_lease_uid() {
    let users = ["node-a", "node-b", "node-c"];
    let api = lab(3, &users).await;
    let mut sources = Vec::new();
    for (i, u) in users.iter().enumerate() {
        sources.push(keys(&api, i, u).await);
    }
    // No Lease yet: the cluster identity is not known, and says so.
    let err = sources[0].cluster_identity().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("does not exist yet"), "{err}");

    create_lease(&api).await;
    let results = futures::future::join_all(sources.iter().map(|s| s.heartbeat_auth())).await;
    let auths: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
    assert!(auths.windows(2).all(|w| w[0] == w[1]), "{auths:?}");
    let uid = api
        .store()
        .get(Kind::Lease, "kube-system", "plndr-cp-lock")
        .unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(auths[0].cluster, uid);
    // One Secret, next to the Lease, holding exactly the key.
    let secret = api
        .store()
        .get(Kind::Secret, "kube-system", "plndr-cp-lock-heartbeat")
        .unwrap();
    let stored = secret["data"]["key"].as_str().unwrap();
    assert_eq!(stored.len(), 44, "32 bytes in base64: {stored}");
    assert_eq!(secret["type"], "Opaque");
    // Every node that found it missing tried once; one of them won.
    let creates = api.counters().get("create", "secrets");
    assert!((1..=3).contains(&creates), "{creates} creates");
    // Asking again reads, never creates.
    assert_eq!(sources[1].shared_key().await.unwrap(), auths[0].key);
    assert_eq!(api.counters().get("create", "secrets"), creates);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_with_default_names_get_different_scopes_and_keys() {
    let vips = ["198.18.0.10".parse().unwrap()];
    let mut scopes = Vec::new();
    for _ in 0..2 {
        let api = lab(1, &["node-a"]).await;
        create_lease(&api).await;
        let auth = keys(&api, 0, "node-a")
            .await
            .heartbeat_auth()
            .await
            .unwrap();
        let scope = election_scope(&auth.cluster, "kube-system/plndr-cp-lock", &vips).unwrap();
        scopes.push((scope, auth.key));
    }
    assert_ne!(scopes[0].0, scopes[1].0);
    assert_ne!(scopes[0].1, scopes[1].1);
}

on_both!(a_missing_secret_permission_is_one_clear_error);

/// On the real server the `NoSecrets` token is bound to a ClusterRole of
/// everything but Secrets (the fixture's `roles.rs`), as an RBAC role
/// without the heartbeat key's rules would be.
async fn a_missing_secret_permission_is_one_clear_error(flavor: Flavor) {
    let config = TestApiConfig::default().token(TokenSpec {
        role: Role::NoSecrets,
        ..TokenSpec::admin("node-a")
    });
    let Some(api) = Api::start_or_skip(flavor, config).await else {
        return;
    };
    create_lease(&api).await;
    let source = keys(&api, 0, "node-a").await;
    // The Lease is still readable: the election itself is unaffected.
    assert!(source.cluster_identity().await.is_ok());
    let err = source.heartbeat_auth().await.unwrap_err();
    assert!(
        matches!(err, HeartbeatKeyError::Forbidden { .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    let text = err.to_string();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with(
            "fast failover off: not allowed to get secret kube-system/plndr-cp-lock-heartbeat (HTTP 403: "
        ),
        "{text}"
    );
    // The server's refusal names the verb and the resource, as RBAC does.
    assert!(
        text.contains("cannot get resource \"secrets\"")
            && text.contains("`vip manifest rbac` has the rule"),
        "{text}"
    );
    assert!(
        text.contains("failover by lease expiry still works"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_stored_key_is_refused_not_replaced() {
    let api = lab(1, &["node-a"]).await;
    api.store()
        .create(
            Kind::Secret,
            "kube-system",
            json!({"metadata": {"name": "plndr-cp-lock-heartbeat"}, "data": {"key": "c2hvcnQ="}}),
        )
        .unwrap();
    let err = keys(&api, 0, "node-a")
        .await
        .shared_key()
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "fast failover off: heartbeat key secret kube-system/plndr-cp-lock-heartbeat data \"key\" is invalid: 5 bytes, expected 32"
    );
    // Still the operator's Secret: nothing was overwritten.
    let kept = api
        .store()
        .get(Kind::Secret, "kube-system", "plndr-cp-lock-heartbeat")
        .unwrap();
    assert_eq!(kept["data"]["key"], "c2hvcnQ=");
}
