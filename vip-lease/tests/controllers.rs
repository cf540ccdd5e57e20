//! The vip-core controller over the real Lease backend, against the
//! stand-in and the real kube-apiserver alike: three electors (in-memory
//! data plane), each through its own server, a partitioned leader that must
//! step down before anyone else takes over, and the Lease `kubectl` would
//! show afterwards. The partition is the stand-in's stalled token (every
//! request of the leader hangs) or, on the real server, the leader's own
//! API server killed (every request is refused).

mod common;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use vip_core::testutil::{MemoryNetwork, RecordingObserver};
use vip_core::{Controller, ControllerEvent, ControllerHandle, MacAddr, Role, StepDownReason};
use vip_testkit::api::{Api, Flavor};
use vip_testkit::testapi::Fault;

const USERS: [&str; 3] = ["node-a", "node-b", "node-c"];

async fn start(
    api: &Api,
    net: &MemoryNetwork,
    obs: &RecordingObserver,
    i: usize,
) -> ControllerHandle {
    let name = USERS[i];
    let backend = common::backend(api, i, name, Duration::from_millis(750)).await;
    let (addresses, announcer) = net.node(name, MacAddr([2, 0, 0, 0, 0, i as u8 + 1]));
    let config = vip_core::testutil::lab_controller_config(name);
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
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
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

on_both!(three_controllers_elect_one_and_a_partitioned_leader_leaves_before_anyone_takes_over);

async fn three_controllers_elect_one_and_a_partitioned_leader_leaves_before_anyone_takes_over(
    flavor: Flavor,
) {
    let Some(mut api) = common::lab_on(flavor, 3, &USERS).await else {
        return;
    };
    let net = MemoryNetwork::default();
    let obs = RecordingObserver::new("lab");
    let mut handles = vec![];
    for i in 0..3 {
        handles.push(Some(start(&api, &net, &obs, i).await));
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
    let vip = "198.18.0.100".parse().unwrap();
    assert_eq!(net.holders(vip), [USERS[first]]);

    // Partition the leader from its API server (it stays on the segment).
    match api.stand_in() {
        Some(s) => s.set_token_fault(USERS[first], Some(Fault::Stall)),
        None => api.cut(first).await.unwrap(),
    }
    let cut = Instant::now();
    assert!(
        wait_for(Duration::from_secs(15), || leaders(&handles).len() == 1
            && leaders(&handles)[0] != first)
        .await,
        "a new leader"
    );
    let old_end = net
        .intervals()
        .iter()
        .find(|iv| iv.node == USERS[first])
        .and_then(|iv| iv.end)
        .expect("the partitioned leader removed its VIP");
    let new_start = net
        .intervals()
        .iter()
        .find(|iv| iv.node != USERS[first])
        .map(|iv| iv.start)
        .unwrap();
    assert!(
        old_end <= new_start,
        "withdrawn at {:?}, taken at {:?}",
        old_end - cut,
        new_start - cut
    );
    assert!(
        old_end - cut <= Duration::from_secs(3) + Duration::from_millis(200),
        "out within the renew deadline"
    );
    let downs: Vec<_> = obs
        .events()
        .into_iter()
        .filter(|(_, n, e)| n == USERS[first] && matches!(e, ControllerEvent::SteppedDown { .. }))
        .map(|(_, _, e)| e)
        .collect();
    assert_eq!(
        downs,
        [ControllerEvent::SteppedDown {
            reason: StepDownReason::RenewDeadline,
            released: false
        }]
    );

    // Heal; the old leader follows. A graceful stop of the new leader hands over.
    match api.stand_in() {
        Some(s) => s.set_token_fault(USERS[first], None),
        None => api.heal(first).await.unwrap(),
    }
    let second = leaders(&handles)[0];
    let report = handles[second].take().unwrap().shutdown().await;
    assert!(report.released, "{report:?}");
    assert!(wait_for(Duration::from_secs(5), || leaders(&handles).len() == 1).await);
    let third = leaders(&handles)[0];
    assert_ne!(third, second);

    let lease = api
        .get(
            vip_testkit::testapi::Kind::Lease,
            "kube-system",
            "plndr-cp-lock",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], USERS[third]);
    assert_eq!(lease["spec"]["leaseTransitions"], 2);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 5);
    // And kubectl reads the same.
    let kubeconfig = api.kubeconfig_for(0, USERS[0]).unwrap();
    match std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "lease", "-n", "kube-system", "plndr-cp-lock", "-o"])
        .arg("jsonpath={.spec.holderIdentity} {.spec.leaseTransitions}")
        .env("HOME", std::env::temp_dir())
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("{} 2", USERS[third])
            );
        }
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "kubectl is needed in CI: {e}"
            );
            eprintln!("SKIPPED the kubectl cross-check: kubectl not runnable ({e})");
        }
    }
    for h in handles.into_iter().flatten() {
        h.shutdown().await;
    }
}
