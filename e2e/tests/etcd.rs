//! Real `vip manager` processes electing through a real etcd (three
//! members, one per node, each node's `127.0.0.1:2379` forwarded to its
//! member, as on a kubeadm or k3s control plane with stacked etcd): a leader
//! crash and a graceful hand-over, asserted from the observer.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use vip_etcd::TlsFiles;

use vip_e2e::{LEASE, Scenario};
use vip_testkit::etcd::EtcdCluster;
use vip_testkit::lab::VIP;

const V4: IpAddr = IpAddr::V4(VIP);
const SETTLE: Duration = Duration::from_secs(15);

/// The scenario's lab with every manager electing through `cluster`.
async fn etcd_scenario(name: &'static str) -> Option<(Scenario, EtcdCluster)> {
    let mut s = Scenario::new(name, &[V4], Duration::from_secs(60)).await?;
    let cluster = EtcdCluster::start_or_skip(3).await?;
    let tls = cluster.client_tls().clone();
    s.elect_through_etcd(
        &cluster.endpoints(),
        TlsFiles {
            ca: tls.ca,
            cert: tls.cert,
            key: tls.key,
        },
    )
    .await
    .expect("electing through etcd");
    s.env.insert(
        "RUST_LOG".into(),
        "vip_core=debug,vip_etcd=debug,vip_lease=debug,vip=debug".into(),
    );
    Some((s, cluster))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e01_etcd_leader_crash() {
    let Some((mut s, cluster)) = etcd_scenario("e01_etcd_leader_crash").await else {
        return;
    };
    s.start_all();
    let old = s.settle(SETTLE).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t0 = Instant::now();
    s.signal(old, libc::SIGKILL).expect("SIGKILL");
    s.wait(old, Duration::from_secs(5)).await.expect("reaped");
    let new = s
        .settle_on(Duration::from_secs(20), "another node takes over", |i| {
            i != old
        })
        .await;
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    let last_old = seen.last_answer(V4, s.mac(old)).expect("old answered");
    let first_new = seen.first_answer(V4, s.mac(new), t0).expect("new answered");
    assert!(
        last_old < first_new,
        "the old leader answered until +{:?}, the new one from +{:?}",
        last_old - t0,
        first_new - t0
    );
    assert!(
        last_old - t0 <= LEASE + Duration::from_secs(1),
        "the old leader's kernel answered {:?} after the crash",
        last_old - t0
    );
    s.finish().await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e02_etcd_graceful_handover() {
    let Some((mut s, cluster)) = etcd_scenario("e02_etcd_graceful_handover").await else {
        return;
    };
    s.start_all();
    let old = s.settle(SETTLE).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t0 = Instant::now();
    s.signal(old, libc::SIGTERM).expect("SIGTERM");
    let code = s.wait(old, Duration::from_secs(5)).await.expect("exit");
    assert_eq!(code, Some(0), "vip exited with {code:?} after SIGTERM");
    s.settle_on(Duration::from_secs(10), "hand-over", |i| i != old)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    let silence = seen.longest_silence(V4, t0, Instant::now());
    assert!(
        silence < Duration::from_secs(2),
        "the observer saw no owner for {silence:?}"
    );
    s.finish().await;
    drop(cluster);
}
