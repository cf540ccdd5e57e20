//! Real `vip manager` processes electing through a real etcd (three
//! members, one per node, each node's `127.0.0.1:2379` forwarded to its
//! member, as on a kubeadm or k3s control plane with stacked etcd): a leader
//! crash and a graceful hand-over, asserted from the observer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vip_core::LockBackend;
use vip_etcd::{EtcdBackend, EtcdConfig, TlsFiles, election_key};

use vip_e2e::{LEASE, Scenario};
use vip_testkit::etcd::EtcdCluster;
use vip_testkit::lab::VIP;

const V4: IpAddr = IpAddr::V4(VIP);
const SETTLE: Duration = Duration::from_secs(15);

/// The scenario's lab with every manager electing through `cluster`.
async fn etcd_scenario(name: &'static str) -> Option<(Scenario, EtcdCluster)> {
    let mut s = Scenario::new(name, &[V4], Duration::from_secs(60)).await?;
    let cluster = EtcdCluster::start_or_skip(3).await?;
    for i in 0..3 {
        let member: SocketAddr = cluster
            .endpoint(i)
            .and_then(|e| e.strip_prefix("https://").map(str::to_owned))
            .and_then(|a| a.parse().ok())
            .expect("a member address");
        s.forward_local(i, 2379, member).expect("forward etcd");
    }
    let tls = cluster.client_tls().clone();
    for (k, v) in [
        ("vip_leaderelectiontype", "etcd".to_string()),
        ("vip_etcdcacert", tls.ca.display().to_string()),
        ("vip_etcdcert", tls.cert.display().to_string()),
        ("vip_etcdkey", tls.key.display().to_string()),
        ("vip_etcdendpoints", "127.0.0.1:2379".to_string()),
        (
            "RUST_LOG",
            "vip_core=debug,vip_etcd=debug,vip_lease=debug,vip=debug".to_string(),
        ),
    ] {
        s.env.insert(k.into(), v);
    }
    // The holder, for the lab's checks, from the etcd record (watched).
    let backend = EtcdBackend::connect(EtcdConfig {
        endpoints: cluster.endpoints(),
        tls: Some(TlsFiles {
            ca: tls.ca.clone(),
            cert: tls.cert.clone(),
            key: tls.key.clone(),
        }),
        key: election_key("kube-system", "plndr-cp-lock"),
        request_timeout: Duration::from_millis(750),
    })
    .await
    .expect("an etcd client");
    let watch = backend.watch().expect("the etcd backend watches");
    s.holder_source = Some(Arc::new(move || {
        watch
            .borrow()
            .as_ref()
            .map(|r| r.record.holder_identity.clone())
            .filter(|h| !h.is_empty())
    }));
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
