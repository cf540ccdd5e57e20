//! The etcd backend's heartbeat key source against a real etcd: racing
//! nodes get one key, the cluster id names the cluster, and a missing
//! permission is one clear error.

mod common;

use common::{KEY, backend};
use etcd_client::{Client, ConnectOptions, Permission, TlsOptions};
use vip_core::{HeartbeatKeyError, HeartbeatKeySource};
use vip_testkit::etcd::EtcdCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_nodes_get_one_key_and_the_cluster_id() {
    let Some(cluster) = EtcdCluster::start_or_skip(1).await else {
        return;
    };
    let mut sources = Vec::new();
    for _ in 0..4 {
        sources.push(backend(&cluster).await.heartbeat_keys());
    }
    assert_eq!(sources[0].key(), format!("{KEY}/heartbeat-key"));
    let racers: Vec<_> = sources
        .iter()
        .cloned()
        .map(|s| tokio::spawn(async move { s.heartbeat_auth().await }))
        .collect();
    let mut auths = Vec::new();
    for racer in racers {
        auths.push(racer.await.unwrap().unwrap());
    }
    assert!(auths.windows(2).all(|w| w[0] == w[1]), "{auths:?}");
    let cluster_id = &auths[0].cluster;
    assert!(
        cluster_id.starts_with("etcd-") && cluster_id.len() == 21,
        "{cluster_id}"
    );
    // Stored as the raw 32 bytes, without an etcd lease.
    let mut client = raw_client(&cluster).await;
    let got = client.get(sources[0].key(), None).await.unwrap();
    let kv = &got.kvs()[0];
    assert_eq!(kv.value(), auths[0].key.bytes());
    assert_eq!(kv.lease(), 0);

    // Another cluster: another id and another key.
    let Some(other) = EtcdCluster::start_or_skip(1).await else {
        return;
    };
    let theirs = backend(&other)
        .await
        .heartbeat_keys()
        .heartbeat_auth()
        .await
        .unwrap();
    assert_ne!(theirs.cluster, *cluster_id);
    assert_ne!(theirs.key, auths[0].key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_stored_key_is_refused_not_replaced() {
    let Some(cluster) = EtcdCluster::start_or_skip(1).await else {
        return;
    };
    let source = backend(&cluster).await.heartbeat_keys();
    let mut client = raw_client(&cluster).await;
    client.put(source.key(), "short", None).await.unwrap();
    let err = source.shared_key().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "fast failover off: heartbeat key etcd key \"{KEY}/heartbeat-key\" is invalid: 5 bytes, expected 32"
        )
    );
    let kept = client.get(source.key(), None).await.unwrap();
    assert_eq!(kept.kvs()[0].value(), b"short");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_is_one_clear_error() {
    let Some(cluster) = EtcdCluster::start_or_skip(1).await else {
        return;
    };
    // Authentication on; the client certificate's user ("vip", its CN)
    // may touch the election key only, not the heartbeat key under it.
    let mut admin = raw_client(&cluster).await;
    admin.role_add("root").await.unwrap();
    admin.user_add("root", "root-password", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.role_add("election").await.unwrap();
    admin
        .role_grant_permission("election", Permission::read_write(KEY))
        .await
        .unwrap();
    admin.user_add("vip", "vip-password", None).await.unwrap();
    admin.user_grant_role("vip", "election").await.unwrap();
    admin.auth_enable().await.unwrap();

    let source = backend(&cluster).await.heartbeat_keys();
    // The election key is still readable: the cluster id comes through.
    assert!(source.cluster_identity().await.is_ok());
    let err = source.heartbeat_auth().await.unwrap_err();
    assert!(
        matches!(err, HeartbeatKeyError::Forbidden { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with(&format!(
            "fast failover off: not allowed to create or read etcd key \"{KEY}/heartbeat-key\""
        )),
        "{text}"
    );
    assert!(text.contains("permission denied"), "{text}");
}

async fn raw_client(cluster: &EtcdCluster) -> Client {
    let files = cluster.client_tls();
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    let tls = TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(read(&files.ca)))
        .identity(etcd_client::Identity::from_pem(
            read(&files.cert),
            read(&files.key),
        ));
    Client::connect(
        cluster.endpoints(),
        Some(ConnectOptions::new().with_tls(tls)),
    )
    .await
    .unwrap()
}
