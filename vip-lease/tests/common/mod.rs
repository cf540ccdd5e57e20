//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use vip_core::LeaderRecord;
use vip_lease::{ClusterAccess, LeaseBackend, LeaseConfig, LeaseName};
use vip_testkit::testapi::{TestApi, TestApiConfig};

/// A stand-in with `listeners` listeners and users `node-a`, `node-b`, …
pub async fn lab(listeners: usize, users: &[&str]) -> TestApi {
    TestApi::start(
        TestApiConfig::default()
            .listeners(listeners)
            .tokens(users.iter().copied()),
    )
    .await
    .expect("stand-in starts")
}

/// Access for `user` through `listener`.
pub async fn access(api: &TestApi, listener: usize, user: &str) -> ClusterAccess {
    let path = api.kubeconfig_for(listener, user).expect("kubeconfig");
    ClusterAccess::from_kubeconfig_file(&path, None)
        .await
        .expect("access")
}

/// A backend for `user` through `listener` with a `timeout` request bound.
pub async fn backend(
    api: &TestApi,
    listener: usize,
    user: &str,
    timeout: Duration,
) -> LeaseBackend {
    let config = LeaseConfig {
        lease: LeaseName::default(),
        request_timeout: timeout,
        ..LeaseConfig::default()
    };
    LeaseBackend::new(&access(api, listener, user).await, config).expect("backend")
}

/// A record held by `holder`, renewed now.
pub fn held(holder: &str, transitions: u32) -> LeaderRecord {
    vip_core::testutil::held_record(holder, 5, transitions)
}

/// A release as client-go writes it: empty holder, duration 1 s, the
/// transitions kept.
pub fn released(transitions: u32) -> LeaderRecord {
    vip_core::testutil::released_record(transitions)
}

/// client-go's MicroTime text of `t`.
pub fn micro_text(t: SystemTime) -> String {
    serde_json::to_value(vip_lease::lease::to_micro_time(t))
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

/// The Events in `namespace` that the stand-in holds, selected by these
/// field labels, oldest first (names sort by time).
pub fn stored_events(api: &TestApi, namespace: &str, fields: &str) -> Vec<serde_json::Value> {
    use vip_testkit::testapi::{Kind, Selectors};
    let sel = Selectors::parse(Kind::Event, Some(fields), None).expect("a valid selector");
    api.store().list(Kind::Event, Some(namespace), &sel).0
}

/// Waits (bounded) until `f` is true.
pub async fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
