//! The etcd backend against a real etcd (the testkit's cluster): races,
//! compare-and-swap, expiry, release, watch, a killed member, a wrong
//! certificate and an unreachable endpoint.

mod common;

use std::time::Duration;

use common::{backend, backend_at, held, released, until};
use vip_core::{BackendError, LockBackend};
use vip_testkit::etcd::EtcdCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_candidates_race_and_exactly_one_wins_each_round() {
    let Some(cluster) = EtcdCluster::start_or_skip(1).await else {
        return;
    };
    let names = ["node-a", "node-b", "node-c"];
    let mut backends = vec![];
    for _ in names {
        backends.push(backend(&cluster).await);
    }
    // Round 1: all create at once.
    let results = futures_join(names.iter().zip(&backends).map(|(n, b)| {
        let record = held(n, 5, 0);
        let b = b.clone();
        async move { b.create(&record).await }
    }))
    .await;
    let winners: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        assert!(matches!(r, Err(BackendError::AlreadyExists)), "{r:?}");
    }
    let current = backends[0].get().await.unwrap().expect("a record");
    assert_eq!(Some(&current), winners[0].as_ref().ok());

    // Round 2: all update the same version at once.
    let results = futures_join(names.iter().zip(&backends).map(|(n, b)| {
        let record = held(n, 5, 1);
        let b = b.clone();
        let current = current.clone();
        async move { b.update(&current, &record).await }
    }))
    .await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        assert!(matches!(r, Err(BackendError::Conflict)), "{r:?}");
    }
    assert_eq!(backends[1].get().await.unwrap().as_ref(), Some(winners[0]));
}

/// Run the futures concurrently, results in order.
async fn futures_join<F, T>(futs: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = vec![];
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_compare_and_swap_on_the_revision() {
    let Some(cluster) = EtcdCluster::start_or_skip(1).await else {
        return;
    };
    let a = backend(&cluster).await;
    let b = backend(&cluster).await;
    assert_eq!(a.get().await.unwrap(), None);
    let v1 = a.create(&held("node-a", 5, 0)).await.unwrap();
    assert!(matches!(
        b.create(&held("node-b", 5, 0)).await,
        Err(BackendError::AlreadyExists)
    ));
    let v2 = a.update(&v1, &held("node-a", 5, 0)).await.unwrap();
    assert!(
        v2.version.parse::<i64>().unwrap() > v1.version.parse::<i64>().unwrap(),
        "{v1:?} {v2:?}"
    );
    // b names the old version: conflict, nothing written.
    assert!(matches!(
        b.update(&v1, &held("node-b", 5, 1)).await,
        Err(BackendError::Conflict)
    ));
    assert_eq!(b.get().await.unwrap(), Some(v2.clone()));
    // A version that is not a revision is not the current one either.
    let bogus = vip_core::VersionedRecord {
        version: "not-a-revision".into(),
        ..v2.clone()
    };
    assert!(matches!(
        b.update(&bogus, &held("node-b", 5, 1)).await,
        Err(BackendError::Conflict)
    ));
    // Released (deleted): an update of the old version finds no record.
    let gone = a.update(&v2, &released(0)).await.unwrap();
    assert!(gone.record.is_released());
    assert_eq!(a.get().await.unwrap(), None);
    assert!(matches!(
        b.update(&v2, &held("node-b", 5, 1)).await,
        Err(BackendError::NotFound)
    ));
    assert!(matches!(
        b.update(&gone, &held("node-b", 5, 1)).await,
        Err(BackendError::NotFound)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_not_renewed_expires_with_its_lease_and_another_takes_it() {
    let Some(cluster) = EtcdCluster::start_or_skip(1).await else {
        return;
    };
    let a = backend(&cluster).await;
    let b = backend(&cluster).await;
    let written = a.create(&held("node-a", 2, 0)).await.unwrap();
    assert_eq!(b.get().await.unwrap(), Some(written));
    // Renewals grant a fresh lease each time; the replaced ones are
    // revoked without touching the key.
    let mut current = a.get().await.unwrap().unwrap();
    for _ in 0..3 {
        current = a.update(&current, &held("node-a", 2, 0)).await.unwrap();
    }
    assert_eq!(b.get().await.unwrap(), Some(current));
    let leases = async || {
        let mut c = etcd_admin(&cluster).await;
        c.leases().await.unwrap().leases().len()
    };
    assert!(
        until(Duration::from_secs(5), async || leases().await == 1).await,
        "the replaced leases are revoked"
    );
    // Nobody renews: etcd deletes the key when the TTL runs out.
    assert!(
        until(Duration::from_secs(10), async || b
            .get()
            .await
            .unwrap()
            .is_none())
        .await,
        "the key expired"
    );
    let taken = b.create(&held("node-b", 2, 1)).await.unwrap();
    assert_eq!(taken.record.holder_identity, "node-b");
}

/// A plain client of the cluster, for checks behind the backend's back.
async fn etcd_admin(cluster: &EtcdCluster) -> etcd_client::Client {
    let files = cluster.client_tls();
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    let tls = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(read(&files.ca)))
        .identity(etcd_client::Identity::from_pem(
            read(&files.cert),
            read(&files.key),
        ));
    etcd_client::Client::connect(
        cluster.endpoints(),
        Some(etcd_client::ConnectOptions::new().with_tls(tls)),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_deletes_the_key_revokes_the_lease_and_a_watcher_sees_it_free_at_once() {
    let Some(cluster) = EtcdCluster::start_or_skip(1).await else {
        return;
    };
    let a = backend(&cluster).await;
    let b = backend(&cluster).await;
    let mut watch = b.watch().expect("the etcd backend watches");
    assert!(
        until(Duration::from_secs(5), async || watch
            .borrow_and_update()
            .is_none())
        .await
    );
    let v1 = a.create(&held("node-a", 5, 0)).await.unwrap();
    // The watch delivers the create and each renewal.
    tokio::time::timeout(
        Duration::from_secs(5),
        watch.wait_for(|r| r.as_ref() == Some(&v1)),
    )
    .await
    .expect("watch sees the create")
    .unwrap();
    let v2 = a.update(&v1, &held("node-a", 5, 0)).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        watch.wait_for(|r| r.as_ref() == Some(&v2)),
    )
    .await
    .expect("watch sees the renewal")
    .unwrap();

    a.update(&v2, &released(0)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), watch.wait_for(Option::is_none))
        .await
        .expect("watch sees the release")
        .unwrap();
    // Free at once: b takes it without waiting for any TTL.
    let taken = b.create(&held("node-b", 5, 1)).await.unwrap();
    assert_eq!(taken.record.holder_identity, "node-b");
    // a's lease was revoked; only b's is left.
    let mut admin = etcd_admin(&cluster).await;
    let key_lease = admin
        .get(common::KEY, None)
        .await
        .unwrap()
        .kvs()
        .first()
        .map(|kv| kv.lease())
        .unwrap();
    assert!(
        until(Duration::from_secs(5), async || {
            let ids: Vec<i64> = admin
                .clone()
                .leases()
                .await
                .unwrap()
                .leases()
                .iter()
                .map(|l| l.id())
                .collect();
            ids == [key_lease]
        })
        .await,
        "the released lease is revoked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_does_not_stop_renewals_or_the_watch() {
    let Some(mut cluster) = EtcdCluster::start_or_skip(3).await else {
        return;
    };
    let a = backend(&cluster).await;
    let b = backend(&cluster).await;
    let mut watch = b.watch().unwrap();
    let mut current = a.create(&held("node-a", 5, 0)).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        watch.wait_for(|r| r.as_ref() == Some(&current)),
    )
    .await
    .expect("watch sees the create")
    .unwrap();
    for killed in [0, 1] {
        cluster.kill(killed).unwrap();
        // The next renewals may fail while the client leaves the dead
        // member; within a few retries they succeed on the others.
        let mut renewed = None;
        for _ in 0..20 {
            match a.update(&current, &held("node-a", 5, 0)).await {
                Ok(v) => {
                    renewed = Some(v);
                    break;
                }
                Err(BackendError::Transport { .. } | BackendError::Timeout(_)) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("renewal after killing member {killed}: {e}"),
            }
        }
        current = renewed.expect("renewed on the remaining members");
        tokio::time::timeout(
            Duration::from_secs(10),
            watch.wait_for(|r| r.as_ref() == Some(&current)),
        )
        .await
        .expect("the watch follows on another member")
        .unwrap();
        cluster.restart(killed).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_certificate_is_unauthorized_in_one_line_naming_the_endpoint() {
    let Some(cluster) = EtcdCluster::start_or_skip(1).await else {
        return;
    };
    let endpoint = cluster.endpoint(0).unwrap();
    // The foreign CA and client: neither side trusts the other.
    let foreign = backend_at(vec![endpoint.clone()], cluster.foreign_tls()).await;
    // The right CA, a client certificate the server does not trust.
    let mut stranger = cluster.foreign_tls().clone();
    stranger.ca = cluster.client_tls().ca.clone();
    let stranger = backend_at(vec![endpoint.clone()], &stranger).await;
    let e = foreign.get().await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, BackendError::Unauthorized { .. }), "{e:?}");
    assert!(text.contains(&endpoint), "{text}");
    assert!(!text.contains('\n'), "{text}");
    assert!(text.contains("etcdCACert"), "{text}");
    // Under TLS 1.3 the server refuses the client certificate after the
    // handshake: the client sees the connection close, and says so.
    let e = stranger.get().await.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(
            e,
            BackendError::Unauthorized { .. } | BackendError::Transport { .. }
        ),
        "{e:?}"
    );
    assert!(text.contains(&endpoint), "{text}");
    assert!(!text.contains('\n'), "{text}");
    assert!(text.contains("etcdCert"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_a_transport_error_naming_it() {
    let Some(cluster) = EtcdCluster::start_or_skip(1).await else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("https://127.0.0.1:{port}");
    let b = backend_at(vec![endpoint.clone()], cluster.client_tls()).await;
    let e = b.get().await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, BackendError::Transport { .. }), "{e:?}");
    assert!(text.contains(&endpoint), "{text}");
    assert!(!text.contains('\n'), "{text}");
}
