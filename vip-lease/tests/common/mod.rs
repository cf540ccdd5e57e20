//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use vip_core::LeaderRecord;
use vip_lease::testapi::{TestApi, TestApiConfig};
use vip_lease::{ClusterAccess, LeaseBackend, LeaseConfig, LeaseName};

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
    let now = vip_core::micro_now();
    LeaderRecord {
        holder_identity: holder.to_owned(),
        lease_duration_seconds: 5,
        acquire_time: Some(now),
        renew_time: Some(now),
        lease_transitions: transitions,
    }
}

/// A release as client-go writes it: empty holder, duration 1 s, the
/// transitions kept.
pub fn released(transitions: u32) -> LeaderRecord {
    let now = vip_core::micro_now();
    LeaderRecord {
        holder_identity: String::new(),
        lease_duration_seconds: 1,
        acquire_time: Some(now),
        renew_time: Some(now),
        lease_transitions: transitions,
    }
}

/// client-go's MicroTime text of `t`.
pub fn micro_text(t: SystemTime) -> String {
    serde_json::to_value(vip_lease::lease::to_micro_time(t))
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
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
