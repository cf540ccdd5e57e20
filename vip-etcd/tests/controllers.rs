//! The vip-core controller over the etcd backend against a real etcd,
//! in the shape of `vip-lease/tests/controllers.rs`: three controllers
//! (in-memory data plane) elect one; a graceful stop hands over; the whole
//! etcd cluster stopped makes the leader step down before anyone else could
//! hold the VIP, and once etcd is back the VIP comes back on one node.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use vip_core::testutil::{HeldInterval, MemoryNetwork, RecordingObserver};
use vip_core::{
    Controller, ControllerConfig, ControllerEvent, ControllerHandle, InterfaceSelector,
    LockBackend, MacAddr, NodeIdentity, Role, StepDownReason, Timings,
};
use vip_testkit::etcd::EtcdCluster;

const USERS: [&str; 3] = ["node-a", "node-b", "node-c"];
const VIP: &str = "198.18.0.100";

async fn start(
    cluster: &EtcdCluster,
    net: &MemoryNetwork,
    obs: &RecordingObserver,
    i: usize,
) -> ControllerHandle {
    let name = USERS[i];
    let backend = common::backend(cluster).await;
    let (addresses, announcer) = net.node(name, MacAddr([2, 0, 0, 0, 0, i as u8 + 1]));
    let config = ControllerConfig::new(
        NodeIdentity::new(name).unwrap(),
        VIP.parse().unwrap(),
        InterfaceSelector::named("eth0").unwrap(),
        Timings::default(),
    );
    Controller::new(
        config,
        Arc::new(backend),
        Arc::new(addresses),
        Arc::new(announcer),
    )
    .with_observer(Arc::new(obs.for_node(name)))
    .spawn()
    .unwrap()
}

async fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    common::until(limit, async || f()).await
}

fn leaders(handles: &[Option<ControllerHandle>]) -> Vec<usize> {
    (0..handles.len())
        .filter(|&i| {
            handles[i]
                .as_ref()
                .is_some_and(|h| h.status().borrow().role == Role::Leader)
        })
        .collect()
}

/// No two nodes ever held the VIP at the same time.
fn assert_never_two(intervals: &[HeldInterval]) {
    for (i, a) in intervals.iter().enumerate() {
        for b in &intervals[i + 1..] {
            if a.node == b.node {
                continue;
            }
            let a_end = a.end.unwrap_or_else(Instant::now);
            let b_end = b.end.unwrap_or_else(Instant::now);
            assert!(
                a_end <= b.start || b_end <= a.start,
                "{} and {} overlapped: {a:?} {b:?}",
                a.node,
                b.node
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_controllers_elect_one_hand_over_and_survive_etcd_going_away() {
    let Some(mut cluster) = EtcdCluster::start_or_skip(3).await else {
        return;
    };
    let net = MemoryNetwork::default();
    let obs = RecordingObserver::new("lab");
    let vip: IpAddr = VIP.parse().unwrap();
    let mut handles = vec![];
    for i in 0..3 {
        handles.push(Some(start(&cluster, &net, &obs, i).await));
    }
    let ok = wait_for(Duration::from_secs(10), || leaders(&handles).len() == 1).await;
    if !ok {
        for h in handles.iter().flatten() {
            eprintln!("{:?}", h.status().borrow());
        }
        eprintln!("{:#?}", obs.events());
    }
    assert!(ok, "one leader");
    let first = leaders(&handles)[0];
    assert_eq!(net.holders(vip), [USERS[first]]);

    // A graceful stop releases (deletes the key): another node takes over.
    let report = handles[first].take().unwrap().shutdown().await;
    assert!(report.released, "{report:?}");
    assert!(
        wait_for(Duration::from_secs(5), || leaders(&handles).len() == 1).await,
        "a new leader after the hand-over"
    );
    let second = leaders(&handles)[0];
    assert_ne!(second, first);
    assert!(
        wait_for(Duration::from_secs(5), || net.holders(vip)
            == [USERS[second]])
        .await
    );
    handles[first] = Some(start(&cluster, &net, &obs, first).await);

    // The whole etcd cluster goes away: the leader cannot renew and must
    // step down by its renew deadline; nobody can take over meanwhile.
    cluster.stop_all().unwrap();
    let cut = Instant::now();
    assert!(
        wait_for(Duration::from_secs(10), || leaders(&handles).is_empty()
            && net.holders(vip).is_empty())
        .await,
        "the leader stepped down without etcd"
    );
    let downs: Vec<_> = obs
        .events()
        .into_iter()
        .filter(|(t, n, e)| {
            *t >= cut && n == USERS[second] && matches!(e, ControllerEvent::SteppedDown { .. })
        })
        .map(|(_, _, e)| e)
        .collect();
    assert_eq!(
        downs,
        [ControllerEvent::SteppedDown {
            reason: StepDownReason::RenewDeadline,
            released: false
        }]
    );

    // etcd comes back (same data): the VIP comes back on exactly one node.
    cluster.start_all().await.unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || leaders(&handles).len() == 1
            && net.holders(vip).len() == 1)
        .await,
        "the VIP is back"
    );
    let third = leaders(&handles)[0];
    assert_eq!(net.holders(vip), [USERS[third]]);
    assert_never_two(&net.intervals());

    let record = common::backend(&cluster)
        .await
        .get()
        .await
        .unwrap()
        .expect("the record");
    assert_eq!(record.record.holder_identity, USERS[third]);
    assert_eq!(record.record.lease_duration_seconds, 5);
    for h in handles.into_iter().flatten() {
        h.shutdown().await;
    }
    assert_never_two(&net.intervals());
}
