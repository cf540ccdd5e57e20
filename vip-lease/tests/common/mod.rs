//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use vip_core::LeaderRecord;
use vip_lease::{ClusterAccess, LeaseBackend, LeaseConfig, LeaseName};
use vip_testkit::api::{Api, Flavor};
use vip_testkit::testapi::{TestApi, TestApiConfig};

/// Runs one async test body `fn(Flavor)` against both servers, as the
/// tests `<body>::stand_in` and `<body>::real` (the real one skips loudly
/// without a kube-apiserver, and fails under `CI=true`).
#[macro_export]
macro_rules! on_both {
    ($($body:ident),+ $(,)?) => {$(
        mod $body {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stand_in() {
                super::$body(vip_testkit::api::Flavor::StandIn).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn real() {
                super::$body(vip_testkit::api::Flavor::Real).await
            }
        }
    )+};
}

/// Where a user's kubeconfig for a server comes from: the stand-in or
/// either server behind [`Api`].
pub trait Kubeconfigs {
    /// The kubeconfig of `user` on server (listener) `i`.
    fn kubeconfig(&self, i: usize, user: &str) -> std::path::PathBuf;
}

impl Kubeconfigs for TestApi {
    fn kubeconfig(&self, i: usize, user: &str) -> std::path::PathBuf {
        self.kubeconfig_for(i, user).expect("kubeconfig")
    }
}

impl Kubeconfigs for Api {
    fn kubeconfig(&self, i: usize, user: &str) -> std::path::PathBuf {
        self.kubeconfig_for(i, user).expect("kubeconfig")
    }
}

/// The `flavor` server with `servers` servers and admin users `users`
/// (`None`: skipped, see [`Api::start_or_skip`]).
pub async fn lab_on(flavor: Flavor, servers: usize, users: &[&str]) -> Option<Api> {
    let config = TestApiConfig::default()
        .listeners(servers)
        .tokens(users.iter().copied());
    Api::start_or_skip(flavor, config).await
}

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
pub async fn access(api: &impl Kubeconfigs, listener: usize, user: &str) -> ClusterAccess {
    let path = api.kubeconfig(listener, user);
    ClusterAccess::from_kubeconfig_file(&path, None)
        .await
        .expect("access")
}

/// A backend for `user` through `listener` with a `timeout` request bound.
pub async fn backend(
    api: &impl Kubeconfigs,
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

/// The Events in `namespace` the server holds, selected by these field
/// labels, through its API, oldest first (names sort by time).
pub async fn listed_events(api: &Api, namespace: &str, fields: &str) -> Vec<serde_json::Value> {
    api.list(vip_testkit::testapi::Kind::Event, namespace, fields)
        .await
        .expect("list Events")
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
