//! Controller transitions and the order of operations on every exit path,
//! with paused time over the in-memory parts (and mocks where a part must
//! fail).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Lab, assert_no_overlap, name, vip};
use tokio::time::Instant;
use vip_core::testutil::{MemoryNetwork, MemoryStore};
use vip_core::{
    AddressError, Controller, ControllerConfig, ControllerEvent, CordonState, InterfaceSelector,
    LeaderRecord, MacAddr, MockAddressManager, MockAnnouncer, NodeIdentity, Role, StepDownReason,
    Timings, micro_now,
};

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

/// The operations of `node` after the first one matching `from`.
fn ops_after(lab: &Lab, node: &str, from: usize) -> Vec<String> {
    lab.journal.of(node).into_iter().skip(from).collect()
}

/// Invariant 2's order in a list of operations: no announcement after the
/// first removal, and a release (if any) only after every removal.
fn assert_exit_order(ops: &[String], expect_release: bool) {
    let first_remove = ops
        .iter()
        .position(|o| o.starts_with("remove"))
        .expect("the VIP was removed");
    assert!(
        !ops[first_remove..]
            .iter()
            .any(|o| o.starts_with("announce") || o.starts_with("add")),
        "announced or added after removal: {ops:?}"
    );
    let release = ops.iter().position(|o| o == "release");
    if expect_release {
        let release = release.expect("the lease was released");
        let last_remove = ops.iter().rposition(|o| o.starts_with("remove")).unwrap();
        assert!(last_remove < release, "released before removing: {ops:?}");
    } else {
        assert_eq!(release, None, "released a lease it did not hold: {ops:?}");
    }
}

fn stepped_down(lab: &Lab, node: &str) -> Vec<StepDownReason> {
    lab.events_of(node)
        .into_iter()
        .filter_map(|(_, e)| match e {
            ControllerEvent::SteppedDown { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn takeover_adds_then_bursts_then_refreshes() {
    let mut lab = Lab::new(1);
    let t0 = Instant::now();
    lab.start(0);
    assert_eq!(lab.wait_leader(S(2)).await, Some(0));
    tokio::time::sleep(S(8)).await;
    let ops = lab.journal.of("node-0");
    assert_eq!(ops[0], "create holder=node-0");
    assert!(
        ops[1].starts_with("add 198.18.0.100 lifetime=Some(3s)"),
        "{ops:?}"
    );
    assert_eq!(ops[2], "announce 198.18.0.100");
    // Burst: 3 within the first second, then every 3 s.
    let ann: Vec<Duration> = lab.net.announcements().iter().map(|a| a.at - t0).collect();
    let first = ann[0];
    let rel: Vec<Duration> = ann.iter().map(|t| *t - first).collect();
    assert_eq!(
        &rel[..5],
        &[MS(0), MS(400), MS(800), MS(3800), MS(6800)],
        "{ann:?}"
    );
    // Every renewal refreshes the lifetime (invariant 8).
    let refreshes = ops
        .iter()
        .filter(|o| o.starts_with("refresh 198.18.0.100 lifetime=Some(3s)"))
        .count();
    assert!(refreshes >= 7, "{ops:?}");
    let st = lab.status(0);
    assert!(st.addresses_present && st.counters.renewals >= 7 && st.counters.acquisitions == 1);
}

#[tokio::test(start_paused = true)]
async fn a_follower_never_holds_the_vip_and_a_stale_one_is_removed_at_start() {
    let mut lab = Lab::new(2);
    lab.start(0);
    lab.wait_leader(S(2)).await.unwrap();
    // node-1 crashed earlier and left the VIP behind (no lifetime).
    lab.net.add_stale("node-1", vip());
    lab.start(1);
    tokio::time::sleep(S(1)).await;
    assert_eq!(lab.net.holders(vip()), ["node-0"]);
    assert_eq!(lab.status(1).counters.stale_removals, 1);
    assert_eq!(lab.role(1), Some(Role::Follower));
    // And on every reconcile: someone adds it behind its back.
    lab.net.add_stale("node-1", vip());
    tokio::time::sleep(MS(1100)).await;
    assert_eq!(lab.net.holders(vip()), ["node-0"]);
    assert_eq!(lab.status(1).counters.stale_removals, 2);
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_withdraws_removes_releases_and_the_follower_takes_over_at_once() {
    let mut lab = Lab::led(2).await;
    let from = lab.journal.of("node-0").len();
    let t = Instant::now();
    let report = lab.stop(0).await;
    assert!(
        report.was_leader && report.released && report.errors.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.removed, vec![vip()]);
    assert_exit_order(&ops_after(&lab, "node-0", from), true);
    // Watched release: taken without waiting for a poll.
    assert!(lab.run_until(MS(50), |l| l.leaders() == [1]).await);
    assert!(Instant::now() - t < MS(50));
    assert_eq!(lab.holder().as_deref(), Some("node-1"));
    assert_eq!(lab.store.current().unwrap().record.lease_transitions, 1);
    assert_no_overlap(&lab.net);
}

#[tokio::test(start_paused = true)]
async fn a_partitioned_leader_steps_down_at_its_renew_deadline_before_anyone_takes_over() {
    let lab = Lab::led(2).await;
    let from = lab.journal.of("node-0").len();
    lab.nodes[0].backend.set_partitioned(true);
    let last_write = lab.store.log().last().unwrap().at;
    assert!(lab.run_until(S(10), |l| l.leaders() == [1]).await);
    // node-0 is out by its renew deadline (3 s after its last successful
    // send), node-1 is in no earlier than the lease duration after it
    // observed the last renewal.
    let removed = lab
        .net
        .actions()
        .into_iter()
        .find(|a| a.node == "node-0" && a.at > last_write)
        .unwrap();
    let taken = lab
        .store
        .log()
        .into_iter()
        .find(|w| w.record.holder_identity == "node-1")
        .unwrap();
    assert!(removed.at <= last_write + S(3), "{removed:?}");
    assert!(taken.at >= last_write + S(5), "{taken:?} {last_write:?}");
    assert_exit_order(&ops_after(&lab, "node-0", from), false);
    assert_eq!(
        stepped_down(&lab, "node-0"),
        [StepDownReason::RenewDeadline]
    );
    assert_no_overlap(&lab.net);
    // Losing leadership never ends the task: healed, it follows.
    lab.nodes[0].backend.set_partitioned(false);
    tokio::time::sleep(S(3)).await;
    assert_eq!(lab.role(0), Some(Role::Follower));
    assert_eq!(lab.net.holders(vip()), ["node-1"]);
}

#[tokio::test(start_paused = true)]
async fn a_crashed_leaders_vip_expires_by_its_lifetime_before_another_node_adds_it() {
    let mut lab = Lab::new(2);
    lab.start(0);
    lab.wait_leader(S(2)).await.unwrap();
    lab.start(1);
    tokio::time::sleep(MS(2500)).await;
    let last_write = lab.store.log().last().unwrap().at;
    lab.crash(0);
    assert!(lab.run_until(S(10), |l| l.leaders() == [1]).await);
    let iv = lab.net.intervals();
    let old = iv.iter().find(|i| i.node == "node-0").unwrap();
    let new = iv.iter().find(|i| i.node == "node-1").unwrap();
    let gone = old.end.expect("the kernel deleted it");
    assert!(
        gone <= last_write + S(5) - MS(100),
        "old VIP lived until {gone:?}, last write {last_write:?}"
    );
    assert!(gone <= new.start);
    // Failover within lease duration + 2 retries of the last renewal.
    assert!(new.start <= last_write + S(5) + S(2), "{new:?}");
    assert_no_overlap(&lab.net);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_holder_keeps_its_vip() {
    let mut lab = Lab::led(2).await;
    lab.crash(0);
    tokio::time::sleep(MS(500)).await;
    let from = lab.journal.of("node-0").len();
    lab.start(0);
    assert!(
        lab.run_until(S(1), |l| l.role(0) == Some(Role::Leader))
            .await
    );
    let ops = ops_after(&lab, "node-0", from);
    assert_eq!(ops[0], "update holder=node-0");
    assert!(
        ops[1].starts_with("refresh 198.18.0.100"),
        "kept, not re-added: {ops:?}"
    );
    assert!(!ops.iter().any(|o| o.starts_with("remove")), "{ops:?}");
    assert_eq!(lab.store.current().unwrap().record.lease_transitions, 0);
    assert_eq!(
        lab.net
            .intervals()
            .iter()
            .filter(|i| i.node == "node-0")
            .count(),
        1
    );
    assert_no_overlap(&lab.net);
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_leader_hands_over_and_an_unhealthy_node_does_not_campaign() {
    let lab = Lab::led(2).await;
    let from = lab.journal.of("node-0").len();
    lab.nodes[0].health.set_healthy(false);
    // 3 failed checks 2 s apart, then out, released, node-1 in.
    let t = Instant::now();
    assert!(lab.run_until(S(7), |l| l.leaders() == [1]).await);
    assert!(
        Instant::now() - t > S(3),
        "not before the third failed check"
    );
    assert_exit_order(&ops_after(&lab, "node-0", from), true);
    assert_eq!(stepped_down(&lab, "node-0"), [StepDownReason::Unhealthy]);
    // Now node-1 goes unhealthy too while node-0 still is: nobody
    // campaigns, the VIP goes.
    lab.nodes[1].health.set_healthy(false);
    assert!(lab.run_until(S(7), |l| l.leaders().is_empty()).await);
    tokio::time::sleep(S(10)).await;
    assert!(lab.leaders().is_empty());
    assert!(lab.net.holders(vip()).is_empty());
    // node-0 recovers (2 good checks) and takes the released lease.
    lab.nodes[0].health.set_healthy(true);
    assert!(lab.run_until(S(5), |l| l.leaders() == [0]).await);
    assert_no_overlap(&lab.net);
}

#[tokio::test(start_paused = true)]
async fn a_cordoned_leader_hands_over_only_when_someone_can_take_it() {
    let lab = Lab::led(2).await;
    // Every node cordoned: nobody to hand over to; the VIP stays.
    lab.nodes[0].cordon.send_replace(CordonState {
        cordoned: true,
        schedulable_peers: 0,
    });
    lab.nodes[1].cordon.send_replace(CordonState {
        cordoned: true,
        schedulable_peers: 0,
    });
    tokio::time::sleep(S(10)).await;
    assert_eq!(lab.leaders(), [0]);
    assert_eq!(lab.net.holders(vip()), ["node-0"]);
    // node-1 uncordoned: node-0 hands over.
    let from = lab.journal.of("node-0").len();
    lab.nodes[1].cordon.send_replace(CordonState {
        cordoned: false,
        schedulable_peers: 0,
    });
    lab.nodes[0].cordon.send_replace(CordonState {
        cordoned: true,
        schedulable_peers: 1,
    });
    assert!(lab.run_until(S(1), |l| l.leaders() == [1]).await);
    assert_exit_order(&ops_after(&lab, "node-0", from), true);
    assert_eq!(stepped_down(&lab, "node-0"), [StepDownReason::Cordoned]);
    assert_no_overlap(&lab.net);
}

#[tokio::test(start_paused = true)]
async fn a_cordon_hand_over_without_taker_retakes_the_vip_and_backs_off() {
    let lab = Lab::led(2).await;
    // node-1 looks schedulable but its API is unhealthy: no taker.
    lab.nodes[1].health.set_healthy(false);
    tokio::time::sleep(S(7)).await;
    lab.nodes[0].cordon.send_replace(CordonState {
        cordoned: true,
        schedulable_peers: 1,
    });
    assert!(lab.run_until(S(1), |l| l.leaders().is_empty()).await);
    // After the cordon grace (lease duration) node-0 takes it back...
    assert!(lab.run_until(S(7), |l| l.leaders() == [0]).await);
    // ...and does not hand over again for the back-off (30 s).
    tokio::time::sleep(S(25)).await;
    assert_eq!(lab.leaders(), [0]);
    assert_eq!(stepped_down(&lab, "node-0").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn foreign_claims_are_counted_and_defended_at_a_bounded_rate() {
    let mut lab = Lab::new(1);
    lab.start(0);
    lab.wait_leader(S(2)).await.unwrap();
    tokio::time::sleep(S(2)).await;
    let before = lab.status(0).counters;
    // A storm: 100 claims over one second.
    for _ in 0..100 {
        lab.net
            .inject_claim(vip(), MacAddr([2, 0xde, 0xad, 0, 0, 1]));
        tokio::time::sleep(MS(10)).await;
    }
    let after = lab.status(0).counters;
    assert_eq!(after.conflicts - before.conflicts, 100);
    let defences = after.defences - before.defences;
    assert!(
        (1..=2).contains(&defences),
        "defended {defences} times in 1 s"
    );
    assert_eq!(lab.leaders(), [0], "a claim alone does not end leadership");
}

#[tokio::test(start_paused = true)]
async fn an_address_removed_by_someone_else_is_restored_and_announced() {
    let mut lab = Lab::new(1);
    lab.start(0);
    lab.wait_leader(S(2)).await.unwrap();
    tokio::time::sleep(S(4)).await;
    let from = lab.journal.of("node-0").len();
    lab.net.remove_external("node-0", vip());
    tokio::time::sleep(MS(1)).await;
    assert_eq!(lab.net.holders(vip()), ["node-0"]);
    let ops = ops_after(&lab, "node-0", from);
    assert!(ops[0].starts_with("add 198.18.0.100"), "{ops:?}");
    assert_eq!(ops[1], "announce 198.18.0.100");
    assert_eq!(lab.status(0).counters.address_restores, 1);
}

#[tokio::test(start_paused = true)]
async fn carrier_up_re_announces_and_a_long_carrier_loss_hands_over() {
    let mut lab = Lab::new(2);
    lab.start(0);
    lab.wait_leader(S(2)).await.unwrap();
    lab.start(1);
    tokio::time::sleep(S(4)).await;
    lab.net.set_carrier("node-0", false);
    tokio::time::sleep(S(1)).await;
    let from = lab.journal.of("node-0").len();
    lab.net.set_carrier("node-0", true);
    tokio::time::sleep(MS(1)).await;
    let ops = ops_after(&lab, "node-0", from);
    assert!(ops[0].starts_with("refresh 198.18.0.100"), "{ops:?}");
    assert_eq!(ops[1], "announce 198.18.0.100");
    assert_eq!(lab.leaders(), [0]);
    // Down for longer than the grace (renew deadline): hand over.
    let from = lab.journal.of("node-0").len();
    lab.net.set_carrier("node-0", false);
    assert!(lab.run_until(S(5), |l| l.leaders() == [1]).await);
    assert_exit_order(&ops_after(&lab, "node-0", from), true);
    assert_eq!(stepped_down(&lab, "node-0"), [StepDownReason::CarrierDown]);
    assert_no_overlap(&lab.net);
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_is_left_at_once_without_a_release() {
    let mut lab = Lab::new(1);
    lab.start(0);
    lab.wait_leader(S(2)).await.unwrap();
    tokio::time::sleep(S(2)).await;
    let from = lab.journal.of("node-0").len();
    // Someone (kubectl, another implementation) writes another holder.
    let mut r = lab.store.current().unwrap().record;
    r.holder_identity = "intruder".into();
    lab.store.put("intruder", r);
    tokio::time::sleep(MS(1)).await;
    assert_eq!(lab.role(0), Some(Role::Follower));
    assert_exit_order(&ops_after(&lab, "node-0", from), false);
    assert_eq!(stepped_down(&lab, "node-0"), [StepDownReason::LeaseLost]);
}

#[tokio::test(start_paused = true)]
async fn a_kube_vip_holder_is_respected_until_its_lease_expires() {
    let mut lab = Lab::new(1);
    let now = micro_now();
    lab.store.put(
        "kube-vip",
        LeaderRecord {
            holder_identity: "alpha-2".into(),
            lease_duration_seconds: 15,
            acquire_time: Some(now),
            renew_time: Some(now),
            lease_transitions: 7,
        },
    );
    let t0 = Instant::now();
    lab.start(0);
    assert!(lab.run_until(S(20), |l| l.leaders() == [0]).await);
    let waited = Instant::now() - t0;
    assert!(
        waited >= S(15) && waited < S(15) + MS(50),
        "took it after {waited:?}"
    );
    assert_eq!(lab.store.current().unwrap().record.lease_transitions, 8);
}

#[tokio::test(start_paused = true)]
async fn followers_without_a_watch_poll_and_still_take_over() {
    let store = MemoryStore::new();
    let net = MemoryNetwork::default();
    let mut handles = vec![];
    for i in 0..2 {
        let (a, n) = net.node(&name(i), MacAddr([2, 0, 0, 0, 0, i as u8]));
        let c = ControllerConfig::new(
            NodeIdentity::new(&name(i)).unwrap(),
            "198.18.0.100".parse().unwrap(),
            InterfaceSelector::Auto,
            Timings::default(),
        );
        let b = store.client(&name(i)).without_watch();
        handles.push(
            Controller::new(c, Arc::new(b), Arc::new(a), Arc::new(n))
                .spawn()
                .unwrap(),
        );
        tokio::time::sleep(S(1)).await;
    }
    let h0 = handles.remove(0);
    assert_eq!(h0.status().borrow().role, Role::Leader);
    let t = Instant::now();
    h0.shutdown().await;
    let mut s1 = handles[0].status();
    s1.wait_for(|s| s.role == Role::Leader).await.unwrap();
    assert!(Instant::now() - t <= S(1), "a poll every retry period");
}

#[tokio::test(start_paused = true)]
async fn an_address_that_cannot_be_added_means_stepping_down_with_release() {
    let store = MemoryStore::new();
    let net = MemoryNetwork::default();
    let (_, announcer) = net.node("a", MacAddr([2, 0, 0, 0, 0, 1]));
    let mut addresses = MockAddressManager::new();
    addresses.expect_resolve().returning(|_, _| {
        Ok(vip_core::Interface {
            name: "eth0".into(),
            index: 2,
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
        })
    });
    addresses
        .expect_subscribe()
        .returning(|_, _| Ok(tokio::sync::mpsc::channel(1).1));
    addresses.expect_is_present().returning(|_, _| Ok(false));
    addresses.expect_ensure_absent().returning(|_, _| Ok(false));
    addresses.expect_ensure_present().returning(|_, vip, _| {
        Err(AddressError::WouldBeOnlyAddress {
            vip: *vip,
            interface: "eth0".into(),
            family: "IPv4",
        })
    });
    let c = ControllerConfig::new(
        NodeIdentity::new("a").unwrap(),
        "198.18.0.100".parse().unwrap(),
        InterfaceSelector::Auto,
        Timings::default(),
    );
    let obs = vip_core::testutil::RecordingObserver::new("a");
    let h = Controller::new(
        c,
        Arc::new(store.client("a")),
        Arc::new(addresses),
        Arc::new(announcer),
    )
    .with_observer(Arc::new(obs.clone()))
    .spawn()
    .unwrap();
    tokio::time::sleep(MS(100)).await;
    let evs: Vec<_> = obs.events().into_iter().map(|(_, _, e)| e).collect();
    assert!(
        evs.contains(&ControllerEvent::SteppedDown {
            reason: StepDownReason::AddressFailure,
            released: true
        }),
        "{evs:?}"
    );
    assert!(
        net.announcements().is_empty(),
        "never announced an address it does not hold"
    );
    assert_eq!(store.current().unwrap().record.holder_identity, "");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn announce_failures_are_reported_not_fatal() {
    let store = MemoryStore::new();
    let net = MemoryNetwork::default();
    let (addresses, _) = net.node("a", MacAddr([2, 0, 0, 0, 0, 1]));
    let mut announcer = MockAnnouncer::new();
    announcer
        .expect_subscribe_conflicts()
        .returning(|_, _| Ok(tokio::sync::mpsc::channel(1).1));
    announcer.expect_announce().returning(|i, _| {
        Err(vip_core::AnnounceError::PermissionDenied {
            interface: i.name.clone(),
        })
    });
    let c = ControllerConfig::new(
        NodeIdentity::new("a").unwrap(),
        "198.18.0.100".parse().unwrap(),
        InterfaceSelector::Auto,
        Timings::default(),
    );
    let h = Controller::new(
        c,
        Arc::new(store.client("a")),
        Arc::new(addresses),
        Arc::new(announcer),
    )
    .spawn()
    .unwrap();
    tokio::time::sleep(S(2)).await;
    assert_eq!(h.status().borrow().role, Role::Leader);
    assert_eq!(h.status().borrow().counters.announcements, 0);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_is_bounded_when_the_backend_hangs() {
    let mut lab = Lab::new(1);
    lab.start(0);
    lab.wait_leader(S(2)).await.unwrap();
    tokio::time::sleep(S(1)).await;
    lab.nodes[0].backend.set_partitioned(true);
    let t = Instant::now();
    let from = lab.journal.of("node-0").len();
    let report = lab.stop(0).await;
    assert!(Instant::now() - t <= S(2), "took {:?}", Instant::now() - t);
    assert!(report.was_leader && !report.released && report.removed == vec![vip()]);
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert_exit_order(&ops_after(&lab, "node-0", from), false);
}

#[tokio::test(start_paused = true)]
async fn dual_stack_vips_move_together() {
    let mut lab = Lab::with_vips(2, "198.18.0.100,2001:db8::100".parse().unwrap());
    lab.start(0);
    lab.wait_leader(S(2)).await.unwrap();
    lab.start(1);
    tokio::time::sleep(S(1)).await;
    let v6: std::net::IpAddr = "2001:db8::100".parse().unwrap();
    assert_eq!(lab.net.holders(v6), ["node-0"]);
    lab.stop(0).await;
    assert!(lab.run_until(S(1), |l| l.leaders() == [1]).await);
    assert_eq!(lab.net.holders(v6), ["node-1"]);
    assert_eq!(lab.net.holders(vip()), ["node-1"]);
    assert_no_overlap(&lab.net);
}

#[test]
fn configurations_that_cannot_keep_the_lifetime_invariant_are_refused() {
    let c = ControllerConfig::new(
        NodeIdentity::new("a").unwrap(),
        "198.18.0.100".parse().unwrap(),
        InterfaceSelector::Auto,
        Timings::new(S(3), S(2), S(1)).unwrap(),
    );
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("lease_duration") && e.contains("at least 4 s"),
        "{e}"
    );
    let mut c = ControllerConfig::new(
        NodeIdentity::new("a").unwrap(),
        "198.18.0.100".parse().unwrap(),
        InterfaceSelector::Auto,
        Timings::default(),
    );
    assert!(c.validate().is_ok());
    assert_eq!(c.max_address_lifetime(), S(3));
    c.request_timeout = S(1);
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("request_timeout")
    );
}

#[tokio::test(start_paused = true)]
async fn a_link_flap_that_flushed_the_vip_puts_it_back_at_carrier_up() {
    let mut lab = Lab::with_vips(1, "2001:db8::100".parse().unwrap());
    lab.start(0);
    lab.wait_leader(S(2)).await.unwrap();
    tokio::time::sleep(S(2)).await;
    let v6: std::net::IpAddr = "2001:db8::100".parse().unwrap();
    // Link down: the kernel flushes the IPv6 VIP.
    lab.net.set_carrier("node-0", false);
    lab.net.remove_external("node-0", v6);
    tokio::time::sleep(MS(500)).await;
    assert!(
        lab.net.holders(v6).is_empty(),
        "not re-added while the link is down"
    );
    let from = lab.journal.of("node-0").len();
    lab.net.set_carrier("node-0", true);
    tokio::time::sleep(MS(1)).await;
    assert_eq!(lab.net.holders(v6), ["node-0"]);
    let ops = ops_after(&lab, "node-0", from);
    assert!(ops[0].starts_with("add 2001:db8::100"), "{ops:?}");
    assert_eq!(ops[1], "announce 2001:db8::100");
    assert_eq!(lab.leaders(), [0]);
}
