//! Fenced fast failover on the in-memory segment, with paused time: each
//! fault of the issue once, asserted on what the segment saw (two kernels
//! answering at once is a failure), on the lease writes and on the events.

mod common;

use std::time::Duration;

use common::{Lab, assert_added_after_own_write, assert_no_answer_overlap, name, vip};
use tokio::time::Instant;
use vip_core::{ControllerEvent, Role, StepDownReason};

const MS: fn(u64) -> Duration = Duration::from_millis;

/// Three nodes with heartbeats, node-0 leading and heard by the others.
async fn led() -> Lab {
    let mut lab = Lab::new(3);
    lab.fast = true;
    lab.start(0);
    lab.wait_leader(MS(2000)).await.expect("node-0 leads");
    lab.start(1);
    lab.start(2);
    tokio::time::sleep(MS(2000)).await;
    assert_eq!(lab.leaders(), [0]);
    lab
}

/// The first write after `from` by a node other than `old`, and when.
fn taken_after(lab: &Lab, old: usize, from: Instant) -> Option<(Instant, String, u32)> {
    lab.store
        .log()
        .into_iter()
        .find(|w| w.at >= from && w.by != name(old) && !w.record.holder_identity.is_empty())
        .map(|w| (w.at, w.record.holder_identity, w.record.lease_transitions))
}

fn fast_takeovers(lab: &Lab) -> Vec<(String, ControllerEvent)> {
    lab.events
        .events()
        .into_iter()
        .filter(|(_, _, e)| matches!(e, ControllerEvent::FastTakeover { .. }))
        .map(|(_, n, e)| (n, e))
        .collect()
}

fn declined(lab: &Lab) -> usize {
    lab.events
        .events()
        .iter()
        .filter(|(_, _, e)| matches!(e, ControllerEvent::FastTakeoverDeclined { .. }))
        .count()
}

fn check(lab: &Lab) {
    assert_no_answer_overlap(&lab.net);
    assert_added_after_own_write(&lab.net, &lab.store);
}

#[tokio::test(start_paused = true)]
async fn a_crashed_leader_is_replaced_within_tens_of_milliseconds() {
    let mut lab = led().await;
    assert!(lab.net.beats_sent("node-0") > 100, "the leader beats");
    let t0 = Instant::now();
    lab.power_off(0);
    assert!(lab.run_until(MS(1000), |l| l.leaders().len() == 1).await);
    let (at, holder, term) = taken_after(&lab, 0, t0).expect("a takeover");
    // 3 misses of 10 ms, a 10 ms probe, at most two 5 ms stagger steps.
    assert!(at - t0 <= MS(60), "taken {:?} after the crash", at - t0);
    assert_eq!(term, 1, "leaseTransitions + 1");
    let new = lab.leaders()[0];
    assert_eq!(holder, name(new));
    assert_eq!(lab.net.holders(vip()), [name(new)]);
    assert_eq!(fast_takeovers(&lab).len(), 1);
    assert_eq!(lab.status(new).counters.fast_takeovers, 1);
    // The other follower follows the new leader's heartbeats; nothing moves.
    tokio::time::sleep(MS(10_000)).await;
    assert_eq!(lab.leaders(), [new]);
    assert_eq!(fast_takeovers(&lab).len(), 1);
    check(&lab);
}

#[tokio::test(start_paused = true)]
async fn a_dead_daemon_on_a_live_host_is_replaced_only_when_its_kernel_drops_the_vip() {
    let mut lab = led().await;
    let t0 = Instant::now();
    lab.crash(0);
    assert!(lab.run_until(MS(8000), |l| l.leaders().len() == 1).await);
    let (at, _, _) = taken_after(&lab, 0, t0).expect("a takeover");
    // The VIP still answered from node-0's kernel, so nobody took over
    // early; the takeover follows the kernel's removal closely.
    let gone = lab
        .net
        .intervals()
        .into_iter()
        .find(|i| i.node == "node-0")
        .and_then(|i| i.end)
        .expect("node-0's kernel dropped the VIP");
    assert!(at >= gone, "taken while node-0 still answered");
    assert!(
        at - gone <= MS(40),
        "taken {:?} after the kernel dropped it",
        at - gone
    );
    assert!(at - t0 < MS(4500), "faster than the lease (5 s)");
    assert!(declined(&lab) > 0, "declined while the VIP answered");
    check(&lab);
}

#[tokio::test(start_paused = true)]
async fn a_hung_leader_yields_and_never_steals_the_vip_back() {
    let lab = led().await;
    let t0 = Instant::now();
    lab.freeze(0, true);
    assert!(
        lab.run_until(MS(8000), |l| l.leaders().iter().any(|&i| i != 0))
            .await
    );
    let (at, _, _) = taken_after(&lab, 0, t0).expect("a takeover");
    assert!(at - t0 > MS(2000), "not while node-0's kernel answered");
    tokio::time::sleep(MS(500)).await;
    lab.freeze(0, false);
    tokio::time::sleep(MS(5000)).await;
    let leaders = lab.leaders();
    assert_eq!(leaders.len(), 1);
    assert_ne!(leaders[0], 0);
    assert_eq!(lab.net.holders(vip()), [name(leaders[0])]);
    check(&lab);
}

#[tokio::test(start_paused = true)]
async fn a_short_freeze_costs_nothing() {
    let lab = led().await;
    lab.freeze(0, true);
    tokio::time::sleep(MS(300)).await;
    lab.freeze(0, false);
    tokio::time::sleep(MS(3000)).await;
    assert_eq!(
        lab.leaders(),
        [0],
        "the VIP answered throughout: no takeover"
    );
    assert!(declined(&lab) > 0);
    assert!(fast_takeovers(&lab).is_empty());
    check(&lab);
}

async fn link_cut(d: Duration) {
    let lab = led().await;
    let t0 = Instant::now();
    lab.net.set_carrier("node-0", false);
    tokio::time::sleep(MS(1)).await;
    // The leader withdrew at once: a link that comes back brings no VIP.
    assert!(lab.net.holders(vip()).is_empty() || lab.leaders() != [0]);
    tokio::time::sleep(d).await;
    lab.net.set_carrier("node-0", true);
    tokio::time::sleep(MS(5000)).await;
    let (at, _, _) = taken_after(&lab, 0, t0).expect("a takeover");
    assert!(at - t0 <= MS(60), "taken {:?} after the cut", at - t0);
    let leaders = lab.leaders();
    assert_eq!(leaders.len(), 1);
    assert_ne!(leaders[0], 0, "node-0 follows the node that replaced it");
    assert_eq!(lab.net.holders(vip()), [name(leaders[0])]);
    check(&lab);
}

#[tokio::test(start_paused = true)]
async fn a_leader_cut_off_for_300_ms_is_replaced_and_follows() {
    link_cut(MS(300)).await;
}

#[tokio::test(start_paused = true)]
async fn a_leader_cut_off_for_5_s_is_replaced_and_follows() {
    link_cut(MS(5000)).await;
}

#[tokio::test(start_paused = true)]
async fn filtered_heartbeats_with_arp_passing_move_nothing() {
    let mut lab = led().await;
    lab.net.filter_heartbeats("node-0", true);
    tokio::time::sleep(MS(10_000)).await;
    assert_eq!(lab.leaders(), [0]);
    assert!(fast_takeovers(&lab).is_empty());
    assert!(declined(&lab) > 0, "the followers probed and were answered");
    // Then the leader crashes: its lease expires the old way.
    let t0 = Instant::now();
    lab.power_off(0);
    assert!(lab.run_until(MS(8000), |l| l.leaders().len() == 1).await);
    let (at, _, _) = taken_after(&lab, 0, t0).expect("a takeover");
    assert!(at - t0 > MS(1000), "no heartbeats heard: lease expiry");
    check(&lab);
}

#[tokio::test(start_paused = true)]
async fn a_leader_without_heartbeats_is_replaced_at_lease_expiry() {
    let mut lab = Lab::new(3);
    lab.fast = true;
    lab.no_heartbeats = vec![0];
    lab.start(0);
    lab.wait_leader(MS(2000)).await.expect("node-0 leads");
    lab.start(1);
    lab.start(2);
    tokio::time::sleep(MS(2000)).await;
    let t0 = Instant::now();
    lab.power_off(0);
    assert!(lab.run_until(MS(8000), |l| l.leaders().len() == 1).await);
    let (at, _, _) = taken_after(&lab, 0, t0).expect("a takeover");
    assert!(at - t0 > MS(2000), "taken {:?} after the crash", at - t0);
    assert!(fast_takeovers(&lab).is_empty());
    // The new leader beats, so from now on failover is fast.
    let new = lab.leaders()[0];
    tokio::time::sleep(MS(2000)).await;
    let t1 = Instant::now();
    lab.power_off(new);
    let other = if new == 1 { 2 } else { 1 };
    let ok = lab
        .run_until(MS(1000), |l| l.leaders().iter().any(|&i| i != new))
        .await;
    assert!(
        ok,
        "node-{other} took over {:?}",
        lab.events_of(&name(other)).last()
    );
    let (at, _, _) = taken_after(&lab, new, t1).expect("a second takeover");
    assert!(
        at - t1 <= MS(60),
        "second takeover {:?} after the crash",
        at - t1
    );
    check(&lab);
}

#[tokio::test(start_paused = true)]
async fn an_api_partition_of_the_leader_is_replaced_at_its_renew_deadline() {
    let lab = led().await;
    let t0 = Instant::now();
    lab.nodes[0].backend.set_partitioned(true);
    assert!(
        lab.run_until(MS(8000), |l| l.leaders().iter().any(|&i| i != 0))
            .await
    );
    let (at, _, _) = taken_after(&lab, 0, t0).expect("a takeover");
    // The leader withdraws at its renew deadline (<= 3 s after its last
    // renewal) and falls silent; the followers need not wait for the
    // lease (5 s).
    assert!(
        at - t0 < MS(3200),
        "taken {:?} after the partition",
        at - t0
    );
    assert_eq!(fast_takeovers(&lab).len(), 1);
    check(&lab);
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_hears_a_higher_term_yields_at_once() {
    let lab = led().await;
    let before = lab.store.current().unwrap();
    // Another node wrote the lease (term + 1) and beats; node-0's next
    // renewal is up to a second away, but the heartbeat arrives first.
    lab.nodes[1].backend.set_partitioned(true);
    // node-0's watch lags: the heartbeat arrives before the record.
    lab.nodes[0].backend.set_latency(MS(400));
    let mut rec = before.record.clone();
    rec.holder_identity = "node-9".into();
    rec.lease_transitions += 1;
    let written = lab.store.put("node-9", rec);
    let intruder = lab
        .net
        .heartbeats("node-9", vip_core::MacAddr([2, 0, 0, 0, 0, 9]));
    let iface = vip_core::Interface {
        name: "eth0".into(),
        index: 2,
        mac: vip_core::MacAddr([2, 0, 0, 0, 0, 9]),
    };
    let (key, election) = lab.heartbeat_auth().await;
    use vip_core::HeartbeatChannel;
    intruder
        .send(
            &iface,
            &vip_core::Heartbeat {
                election,
                holder: "node-9".into(),
                term: before.record.lease_transitions + 1,
                sequence: 0,
                version: vip_core::version_tag(&written.version),
                interval: MS(10),
            },
            &key,
        )
        .await
        .unwrap();
    tokio::time::sleep(MS(1)).await;
    assert_ne!(lab.role(0), Some(Role::Leader));
    assert!(lab.net.holders(vip()).is_empty());
    let events = lab.events_of("node-0");
    assert!(events.iter().any(|(_, e)| matches!(
        e,
        ControllerEvent::SteppedDown {
            reason: StepDownReason::Superseded,
            released: false
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn without_heartbeats_nothing_changes() {
    let mut lab = Lab::new(3);
    lab.start(0);
    lab.wait_leader(MS(2000)).await.expect("node-0 leads");
    lab.start(1);
    lab.start(2);
    tokio::time::sleep(MS(2000)).await;
    assert_eq!(lab.net.beats_sent("node-0"), 0);
    let t0 = Instant::now();
    lab.power_off(0);
    assert!(lab.run_until(MS(8000), |l| l.leaders().len() == 1).await);
    let (at, _, _) = taken_after(&lab, 0, t0).expect("a takeover");
    assert!(at - t0 > MS(2000));
    check(&lab);
}
