//! Property tests over random schedules of 2–5 controllers on the in-memory
//! store and segment, with paused time: random latencies, crashes (with
//! and without restart), partitions, graceful stops and health flips.
//!
//! Asserted on every schedule:
//! - no two nodes hold the VIP at the same instant;
//! - no running follower holds the VIP (sampled every 5 ms);
//! - a node's VIP never outlives the last renewal it wrote by more than the
//!   lease duration (the kernel-lifetime backstop);
//! - `leaseTransitions` counts the holder changes;
//! - once faults stop and a healthy candidate exists, exactly one node leads
//!   and holds the VIP within a bounded time.
//!
//! Focused properties: a crashed leader's expired lease is taken within
//! lease duration + 2 × retry; a released lease is taken within one round
//! trip of the fastest watching follower.

#![allow(clippy::needless_range_loop)]

mod common;

use std::time::Duration;

use common::{Lab, assert_no_overlap, check_transitions, name, rt, vip};
use proptest::prelude::*;
use tokio::time::Instant;
use vip_core::Role;

const MS: fn(u64) -> Duration = Duration::from_millis;

#[derive(Debug, Clone)]
enum Fault {
    Crash,
    CrashAndRestart(u64),
    Stop(u64),
    Partition(u64),
    Unhealthy(u64),
    Latency(u64),
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::Crash),
        (0u64..3000).prop_map(Fault::CrashAndRestart),
        (0u64..3000).prop_map(Fault::Stop),
        (100u64..8000).prop_map(Fault::Partition),
        (100u64..8000).prop_map(Fault::Unhealthy),
        (0u64..300).prop_map(Fault::Latency),
    ]
}

#[derive(Debug, Clone)]
struct Schedule {
    nodes: usize,
    latencies: Vec<u64>,
    events: Vec<(u64, usize, Fault)>,
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (2usize..=5).prop_flat_map(|n| {
        (
            Just(n),
            prop::collection::vec(0u64..200, n),
            prop::collection::vec((0u64..30_000, 0..n, fault()), 0..10),
        )
            .prop_map(|(nodes, latencies, mut events)| {
                events.sort_by_key(|e| e.0);
                Schedule {
                    nodes,
                    latencies,
                    events,
                }
            })
    })
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Per-node lifecycle actions still to come, by time.
#[derive(Debug)]
enum Later {
    Restart(usize),
    Heal(usize),
    Healthy(usize),
}

async fn run_schedule(s: Schedule) {
    let mut lab = Lab::new(s.nodes);
    for (i, l) in s.latencies.iter().enumerate() {
        lab.nodes[i].backend.set_latency(MS(*l));
    }
    let t0 = Instant::now();
    for i in 0..s.nodes {
        lab.start(i);
    }
    let mut later: Vec<(Instant, Later)> = vec![];
    let mut events = s.events.iter().peekable();
    let end_faults = t0 + MS(30_000);
    // Drive the schedule, sampling invariants every 5 ms.
    while Instant::now() < end_faults || !later.is_empty() {
        let now = Instant::now();
        while let Some((at, i, f)) = events.peek() {
            if t0 + MS(*at) > now {
                break;
            }
            let (i, f) = (*i, f.clone());
            events.next();
            match f {
                Fault::Crash => lab.crash(i),
                Fault::CrashAndRestart(d) => {
                    if lab.running(i) {
                        lab.crash(i);
                        later.push((now + MS(d), Later::Restart(i)));
                    }
                }
                Fault::Stop(d) => {
                    if lab.running(i) {
                        let r = lab.stop(i).await;
                        assert!(
                            r.errors.is_empty() || lab.nodes[i].backend.faults().get().partitioned,
                            "{r:?}"
                        );
                        later.push((Instant::now() + MS(d), Later::Restart(i)));
                    }
                }
                Fault::Partition(d) => {
                    lab.nodes[i].backend.set_partitioned(true);
                    later.push((now + MS(d), Later::Heal(i)));
                }
                Fault::Unhealthy(d) => {
                    lab.nodes[i].health.set_healthy(false);
                    later.push((now + MS(d), Later::Healthy(i)));
                }
                Fault::Latency(l) => lab.nodes[i].backend.set_latency(MS(l)),
            }
        }
        let now = Instant::now();
        let (due, rest): (Vec<_>, Vec<_>) = later.into_iter().partition(|(t, _)| *t <= now);
        later = rest;
        for (_, l) in due {
            match l {
                Later::Restart(i) => {
                    if !lab.running(i) {
                        lab.start(i)
                    }
                }
                Later::Heal(i) => lab.nodes[i].backend.set_partitioned(false),
                Later::Healthy(i) => lab.nodes[i].health.set_healthy(true),
            }
        }
        check_followers(&lab);
        tokio::time::sleep(MS(5)).await;
    }
    // Faults are over. Make sure a healthy candidate exists.
    if !(0..s.nodes).any(|i| lab.running(i)) {
        lab.start(0);
    }
    let healed = Instant::now();
    // Health needs up to 4 s to come back (2 good checks 2 s apart); then
    // lease duration + 2 retries,
    // plus latencies.
    let bound = MS(4_000 + 5_000 + 2_000 + 1_000);
    let mut settled = None;
    while Instant::now() < healed + bound + MS(3_000) {
        check_followers(&lab);
        let leaders = lab.leaders();
        if settled.is_none() && leaders.len() == 1 && lab.net.holders(vip()) == [name(leaders[0])] {
            settled = Some(Instant::now());
        }
        tokio::time::sleep(MS(5)).await;
    }
    let settled =
        settled.unwrap_or_else(|| panic!("no single leader by {bound:?} after the faults ended"));
    assert!(
        settled <= healed + bound,
        "settled {:?} after the faults ended",
        settled - healed
    );
    let leaders = lab.leaders();
    assert_eq!(leaders.len(), 1, "exactly one leader at the end");
    assert_eq!(lab.holder(), Some(name(leaders[0])));
    assert_eq!(lab.net.holders(vip()), [name(leaders[0])]);

    assert_no_overlap(&lab.net);
    check_lifetimes(&lab);
    check_transitions(&lab);
    for i in 0..s.nodes {
        if lab.running(i) {
            lab.crash(i);
        }
    }
}

/// No running follower holds the VIP.
fn check_followers(lab: &Lab) {
    let holders = lab.net.holders(vip());
    for (i, n) in lab.nodes.iter().enumerate() {
        if lab.role(i) == Some(Role::Follower) {
            assert!(
                !holders.contains(&n.name),
                "follower {} holds the VIP",
                n.name
            );
        }
    }
}

/// A node's VIP goes no later than the lease duration after the last
/// record it wrote as holder (invariant 8: the kernel lifetime ends before
/// anyone else may take the lease).
fn check_lifetimes(lab: &Lab) {
    let log = lab.store.log();
    for iv in lab.net.intervals() {
        let Some(end) = iv.end else { continue };
        let last = log
            .iter()
            .filter(|w| w.at <= end && w.record.holder_identity == iv.node)
            .map(|w| w.at)
            .next_back()
            .expect("a node held the VIP without ever writing the record");
        assert!(
            end <= last + Duration::from_secs(5),
            "{iv:?} outlived its last renewal at {last:?}"
        );
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_schedules_keep_the_invariants(s in schedule()) {
        rt().block_on(run_schedule(s));
    }

    #[test]
    fn an_expired_lease_is_taken_within_lease_duration_plus_two_retries(
        n in 2usize..=5,
        latencies in prop::collection::vec(0u64..200, 5),
        crash_at in 1000u64..10_000,
        watch in any::<bool>(),
    ) {
        rt().block_on(async move {
            let mut lab = Lab::new(n);
            if !watch {
                for i in 0..n {
                    lab.nodes[i].backend = std::sync::Arc::new(lab.store.client(&name(i)).without_watch());
                }
            }
            for i in 0..n {
                lab.nodes[i].backend.set_latency(MS(latencies[i]));
                lab.start(i);
            }
            let first = lab.wait_leader(MS(3000)).await.expect("a first leader");
            tokio::time::sleep(MS(crash_at)).await;
            lab.crash(first);
            let last = lab.store.log().last().unwrap().clone();
            assert_eq!(last.record.holder_identity, name(first));
            assert!(lab.run_until(MS(9000), |l| l.leaders().len() == 1).await);
            let log = lab.store.log();
            let k = log.iter().position(|w| *w == last).unwrap();
            let taken = &log[k + 1];
            assert_ne!(taken.record.holder_identity, name(first));
            let bound = Duration::from_secs(5 + 2);
            assert!(taken.at - last.at <= bound, "taken {:?} after the last renewal", taken.at - last.at);
            assert_no_overlap(&lab.net);
        });
    }

    #[test]
    fn a_released_lease_is_taken_within_one_round_trip(
        n in 2usize..=5,
        latencies in prop::collection::vec(0u64..200, 5),
        stop_at in 1000u64..10_000,
    ) {
        rt().block_on(async move {
            let mut lab = Lab::new(n);
            for i in 0..n {
                lab.nodes[i].backend.set_latency(MS(latencies[i]));
                lab.start(i);
            }
            let first = lab.wait_leader(MS(3000)).await.expect("a first leader");
            tokio::time::sleep(MS(stop_at)).await;
            let report = lab.stop(first).await;
            assert!(report.released, "{report:?}");
            let k = lab.store.log().iter().rposition(|w| w.record.holder_identity.is_empty()).unwrap();
            assert!(lab.run_until(MS(2000), |l| l.leaders().len() == 1).await);
            let log = lab.store.log();
            let (release, taken) = (&log[k], &log[k + 1]);
            assert!(!taken.record.holder_identity.is_empty());
            // The winner's watch brings the release in half its round trip,
            // its update lands in the other half (paused time rounds each
            // of those sleeps up to the next millisecond).
            let fastest = (0..n).filter(|&i| i != first).map(|i| latencies[i]).min().unwrap();
            let slowest = (0..n).filter(|&i| i != first).map(|i| latencies[i]).max().unwrap();
            let waited = taken.at - release.at;
            assert!(waited >= MS(fastest) && waited <= MS(slowest) + MS(3), "taken {waited:?} after the release; round trips {fastest}..{slowest} ms");
            assert_no_overlap(&lab.net);
        });
    }
}
