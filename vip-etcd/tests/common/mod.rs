//! Helpers shared by the integration tests against a real etcd.
#![allow(dead_code)]

use std::time::Duration;

use tokio::time::Instant;
use vip_core::LeaderRecord;
use vip_etcd::{EtcdBackend, EtcdConfig, TlsFiles};
use vip_testkit::etcd::{ClientTls, EtcdCluster};

/// The election key of the tests.
pub const KEY: &str = "kube-system-plndr-cp-lock";

/// The fixture's TLS files as the backend takes them.
pub fn tls(files: &ClientTls) -> TlsFiles {
    TlsFiles {
        ca: files.ca.clone(),
        cert: files.cert.clone(),
        key: files.key.clone(),
    }
}

/// A backend on `endpoints` with `files`, each request bounded by 750 ms.
pub async fn backend_at(endpoints: Vec<String>, files: &ClientTls) -> EtcdBackend {
    let config = EtcdConfig {
        endpoints,
        tls: Some(tls(files)),
        key: KEY.to_owned(),
        request_timeout: Duration::from_millis(750),
    };
    EtcdBackend::connect(config).await.expect("backend")
}

/// A backend on every member of `cluster`.
pub async fn backend(cluster: &EtcdCluster) -> EtcdBackend {
    backend_at(cluster.endpoints(), cluster.client_tls()).await
}

/// A record held by `holder`, renewed now.
pub fn held(holder: &str, lease_duration_seconds: u32, transitions: u32) -> LeaderRecord {
    vip_core::testutil::held_record(holder, lease_duration_seconds, transitions)
}

/// The released record the elector writes.
pub fn released(transitions: u32) -> LeaderRecord {
    vip_core::testutil::released_record(transitions)
}

/// Poll `f` every 20 ms until it holds or `limit` passes; the last answer.
pub async fn until(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f().await
}
