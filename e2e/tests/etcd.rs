//! Real `vip manager` processes electing through a real etcd (three
//! members, one per node, each node's `127.0.0.1:2379` forwarded to its
//! member, as on a kubeadm or k3s control plane with stacked etcd): a node
//! crash (fenced fast failover through etcd), a daemon kill and a graceful
//! hand-over, asserted from the observer.

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

/// A fast takeover, with room for a loaded CI machine (the benchmark
/// measures tens of milliseconds); a lease expiry takes 5 s.
const FAST: Duration = Duration::from_millis(1500);

/// Node crash (port down, daemon killed): fenced fast failover through
/// etcd. The followers hear the heartbeats stop, probe, find nobody, and
/// take the record over by a compare-and-swap on its etcd revision; the
/// new leader answers well before the lease would have expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e01_etcd_node_crash_fast_failover() {
    let Some((mut s, cluster)) = etcd_scenario("e01_etcd_node_crash").await else {
        return;
    };
    s.start_all();
    let old = s.settle(SETTLE).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let heard = s
        .metric(old, "vip_heartbeats_sent_total")
        .expect("metrics of the leader")
        .unwrap_or(0.0);
    assert!(heard > 50.0, "the leader sent {heard} heartbeats");
    let t0 = Instant::now();
    s.set_link(old, false).expect("port down");
    s.kill(old).await.expect("SIGKILL");
    let new = s
        .settle_on(Duration::from_secs(20), "another node takes over", |i| {
            i != old
        })
        .await;
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    let first_new = seen.first_answer(V4, s.mac(new), t0).expect("new answered");
    assert!(
        first_new - t0 <= FAST,
        "the new leader answered {:?} after the crash (a lease expiry is {LEASE:?})",
        first_new - t0
    );
    let fast = s
        .metric(new, "vip_fast_takeovers_total")
        .expect("metrics of the new leader")
        .unwrap_or(0.0);
    assert_eq!(fast, 1.0, "the new leader's fast takeovers");
    s.finish().await;
    drop(cluster);
}

/// The daemon killed with the host up: its kernel keeps the VIP (and
/// answers) until the address lifetime ends, so the followers decline to
/// take over while it answers, then take over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e03_etcd_daemon_kill() {
    let Some((mut s, cluster)) = etcd_scenario("e03_etcd_daemon_kill").await else {
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
