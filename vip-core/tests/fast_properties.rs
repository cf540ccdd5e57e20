//! Property test of fenced fast failover: random schedules of 2–5
//! controllers with heartbeats (some nodes without, as in a mixed
//! cluster) on the in-memory store and segment, with paused time and the
//! faults of the issue: node crashes (power off), daemon kills with the
//! host up, hangs (SIGSTOP-like), link cuts of any node, heartbeat loss
//! while ARP passes, API partitions, restarts.
//!
//! Asserted on every schedule:
//! - never two nodes whose kernels answer for the VIP at once (held with
//!   the link up);
//! - no VIP without a successful lease write: whenever a node adds the
//!   VIP, the last write to the store was its own;
//! - `leaseTransitions` counts the holder changes;
//! - once the faults end, exactly one node leads and holds the VIP within
//!   a bound.

#![allow(clippy::needless_range_loop)]

mod common;

use std::time::Duration;

use common::{
    Lab, assert_added_after_own_write, assert_no_answer_overlap, check_transitions, name, rt, vip,
};
use proptest::prelude::*;
use tokio::time::Instant;

const MS: fn(u64) -> Duration = Duration::from_millis;

#[derive(Debug, Clone)]
enum Fault {
    /// Power off; back after the delay (the daemon restarts, as kubelet
    /// would).
    NodeCrash(u64),
    /// SIGKILL of the daemon, the host up; restarted after the delay.
    DaemonKill(u64),
    /// SIGSTOP for the delay, then SIGCONT.
    Hang(u64),
    /// The node's link down for the delay.
    LinkCut(u64),
    /// The node's heartbeats dropped for the delay, ARP passing.
    BeatLoss(u64),
    /// The node cut from the API for the delay.
    Partition(u64),
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        (0u64..4000).prop_map(Fault::NodeCrash),
        (0u64..4000).prop_map(Fault::DaemonKill),
        (10u64..6000).prop_map(Fault::Hang),
        prop_oneof![10u64..400, 400u64..6000].prop_map(Fault::LinkCut),
        (10u64..6000).prop_map(Fault::BeatLoss),
        (100u64..6000).prop_map(Fault::Partition),
    ]
}

#[derive(Debug, Clone)]
struct Schedule {
    nodes: usize,
    latencies: Vec<u64>,
    /// Nodes without a heartbeat channel.
    silent: Vec<bool>,
    events: Vec<(u64, usize, Fault)>,
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (2usize..=5).prop_flat_map(|n| {
        (
            Just(n),
            prop::collection::vec(0u64..20, n),
            prop::collection::vec(prop::bool::weighted(0.15), n),
            prop::collection::vec((0u64..20_000, 0..n, fault()), 1..10),
        )
            .prop_map(|(nodes, latencies, silent, mut events)| {
                events.sort_by_key(|e| e.0);
                Schedule {
                    nodes,
                    latencies,
                    silent,
                    events,
                }
            })
    })
}

fn config() -> ProptestConfig {
    // Each case simulates about 30 s of 2-5 nodes beating 100 times a
    // second: a few hundred milliseconds of CPU, so fewer cases than the
    // other properties (FAST_PROPTEST_CASES for a longer run).
    let cases = std::env::var("FAST_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

#[derive(Debug)]
enum Later {
    PowerOn(usize),
    Restart(usize),
    Thaw(usize),
    LinkUp(usize),
    BeatsBack(usize),
    Heal(usize),
}

async fn run_schedule(s: Schedule) {
    let mut lab = Lab::new(s.nodes);
    lab.fast = true;
    lab.no_heartbeats = (0..s.nodes).filter(|&i| s.silent[i]).collect();
    for (i, l) in s.latencies.iter().enumerate() {
        lab.nodes[i].backend.set_latency(MS(*l));
    }
    let t0 = Instant::now();
    for i in 0..s.nodes {
        lab.start(i);
    }
    let mut later: Vec<(Instant, Later)> = vec![];
    let mut events = s.events.iter().peekable();
    let mut busy = vec![false; s.nodes];
    let end_faults = t0 + MS(20_000);
    while Instant::now() < end_faults || !later.is_empty() {
        let now = Instant::now();
        while let Some((at, i, f)) = events.peek() {
            if t0 + MS(*at) > now {
                break;
            }
            let (i, f) = (*i, f.clone());
            events.next();
            // One fault at a time per node keeps the schedule meaningful.
            if busy[i] {
                continue;
            }
            busy[i] = true;
            let node = name(i);
            match f {
                Fault::NodeCrash(d) => {
                    lab.power_off(i);
                    later.push((now + MS(d), Later::PowerOn(i)));
                }
                Fault::DaemonKill(d) => {
                    lab.crash(i);
                    later.push((now + MS(d), Later::Restart(i)));
                }
                Fault::Hang(d) => {
                    lab.freeze(i, true);
                    later.push((now + MS(d), Later::Thaw(i)));
                }
                Fault::LinkCut(d) => {
                    lab.net.set_carrier(&node, false);
                    later.push((now + MS(d), Later::LinkUp(i)));
                }
                Fault::BeatLoss(d) => {
                    lab.net.filter_heartbeats(&node, true);
                    later.push((now + MS(d), Later::BeatsBack(i)));
                }
                Fault::Partition(d) => {
                    lab.nodes[i].backend.set_partitioned(true);
                    later.push((now + MS(d), Later::Heal(i)));
                }
            }
        }
        let now = Instant::now();
        let (due, rest): (Vec<_>, Vec<_>) = later.into_iter().partition(|(t, _)| *t <= now);
        later = rest;
        for (_, l) in due {
            match l {
                Later::PowerOn(i) => {
                    lab.net.power_on(&name(i));
                    lab.start(i);
                    busy[i] = false;
                }
                Later::Restart(i) => {
                    lab.start(i);
                    busy[i] = false;
                }
                Later::Thaw(i) => {
                    lab.freeze(i, false);
                    busy[i] = false;
                }
                Later::LinkUp(i) => {
                    lab.net.set_carrier(&name(i), true);
                    busy[i] = false;
                }
                Later::BeatsBack(i) => {
                    lab.net.filter_heartbeats(&name(i), false);
                    busy[i] = false;
                }
                Later::Heal(i) => {
                    lab.nodes[i].backend.set_partitioned(false);
                    busy[i] = false;
                }
            }
        }
        tokio::time::sleep(MS(5)).await;
    }
    // The faults are over: one leader within the lease duration, two
    // retries and the latencies (health never failed here).
    let healed = Instant::now();
    let bound = MS(5_000 + 2_000 + 500);
    let settled = lab
        .run_until(bound, |l| {
            let leaders = l.leaders();
            leaders.len() == 1 && l.net.holders(vip()) == [name(leaders[0])]
        })
        .await;
    assert!(settled, "no single leader {bound:?} after the faults ended");
    tokio::time::sleep(MS(2_000)).await;
    let leaders = lab.leaders();
    assert_eq!(leaders.len(), 1, "exactly one leader at the end");
    assert_eq!(lab.holder(), Some(name(leaders[0])));
    assert_eq!(lab.net.holders(vip()), [name(leaders[0])]);
    let _ = healed;

    assert_no_answer_overlap(&lab.net);
    assert_added_after_own_write(&lab.net, &lab.store);
    check_transitions(&lab);
    for i in 0..s.nodes {
        if lab.running(i) {
            lab.crash(i);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fast_failover_never_lets_two_kernels_answer(s in schedule()) {
        rt().block_on(run_schedule(s));
    }
}
