//! Property test of fast failover against an adversary on the segment:
//! random schedules in which a host outside the cluster forges frames
//! (wrong key under the cluster's key id, an unknown key, a tampered
//! capture), floods them, replays captured frames late, in bursts and out
//! of order, and a second cluster with the default lock name and its own
//! key beats with ever higher terms, on the in-memory segment with paused
//! time.
//!
//! Asserted on every schedule:
//! - while only the adversary acts, the leader keeps the lease and its VIP
//!   (no step-down, no yield, no takeover, the VIP answered by it alone at
//!   every sample), and every follower counted what it dropped;
//! - then the leader's host powers off while the adversary replays every
//!   frame it captured, again and again: a follower still takes over by
//!   fast failover (a replay never re-arms it), and one node leads with
//!   the VIP;
//! - throughout: never two kernels answering for the VIP, no VIP without
//!   its adder's own successful write, `leaseTransitions` counts the
//!   holder changes.

mod common;

use std::time::Duration;

use common::{
    Lab, assert_added_after_own_write, assert_no_answer_overlap, check_transitions, name, rt, vip,
};
use proptest::prelude::*;
use tokio::time::Instant;
use vip_core::testutil::MemoryFrame;
use vip_core::{
    ControllerEvent, DropKind, ElectionId, Heartbeat, HeartbeatKey, MacAddr, election_scope,
    version_tag,
};

const MS: fn(u64) -> Duration = Duration::from_millis;

const FORGER: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x66]);

#[derive(Debug, Clone)]
enum Attack {
    /// `count` frames naming `holder` (a node, or "intruder") with the
    /// leader's term plus `ahead`, signed with a key the forger made up;
    /// `spoof_id`: under the cluster key's id (a bad code) or its own (an
    /// unknown key).
    Forge {
        holder: usize,
        ahead: u32,
        spoof_id: bool,
        count: usize,
    },
    /// A captured frame with its term raised, its code kept.
    Tamper { pick: usize, ahead: u32 },
    /// `count` captured frames from `pick` on, in reverse order if
    /// `reversed`.
    Replay {
        pick: usize,
        count: usize,
        reversed: bool,
    },
    /// A second cluster (same lock name, its own uid and key) beating with
    /// a term `ahead` of ours.
    OtherCluster { ahead: u32, count: usize },
}

fn attack() -> impl Strategy<Value = Attack> {
    prop_oneof![
        (0usize..5, 0u32..1000, any::<bool>(), 1usize..60).prop_map(
            |(holder, ahead, spoof_id, count)| Attack::Forge {
                holder,
                ahead,
                spoof_id,
                count
            }
        ),
        (any::<usize>(), 1u32..50).prop_map(|(pick, ahead)| Attack::Tamper { pick, ahead }),
        (any::<usize>(), 1usize..300, any::<bool>()).prop_map(|(pick, count, reversed)| {
            Attack::Replay {
                pick,
                count,
                reversed,
            }
        }),
        (1u32..1000, 1usize..30).prop_map(|(ahead, count)| Attack::OtherCluster { ahead, count }),
    ]
}

#[derive(Debug, Clone)]
struct Schedule {
    nodes: usize,
    attacks: Vec<(u64, Attack)>,
    /// Replays during the crash: (pick, count, reversed) every 5 ms.
    crash_replays: (usize, usize, bool),
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        2usize..=4,
        prop::collection::vec((0u64..5_000, attack()), 1..25),
        (any::<usize>(), 1usize..200, any::<bool>()),
    )
        .prop_map(|(nodes, mut attacks, crash_replays)| {
            attacks.sort_by_key(|a| a.0);
            Schedule {
                nodes,
                attacks,
                crash_replays,
            }
        })
}

fn config() -> ProptestConfig {
    let cases = std::env::var("FAST_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// The adversary: what it captured, and the other cluster's key and scope.
struct Adversary {
    cluster_key: HeartbeatKey,
    election: ElectionId,
    other_key: HeartbeatKey,
    other_election: ElectionId,
    forged_key: HeartbeatKey,
}

impl Adversary {
    fn beat(&self, election: ElectionId, holder: String, term: u32, sequence: u64) -> Heartbeat {
        Heartbeat {
            election,
            holder,
            term,
            sequence,
            version: version_tag("forged"),
            interval: MS(10),
        }
    }

    /// Carry out `attack` on `lab`'s segment; `term` is the leader's term.
    fn strike(&self, lab: &Lab, attack: &Attack, term: u32) {
        match attack {
            Attack::Forge {
                holder,
                ahead,
                spoof_id,
                count,
            } => {
                let holder = if *holder < lab.nodes.len() {
                    name(*holder)
                } else {
                    "intruder".into()
                };
                for seq in 0..*count {
                    let b = self.beat(self.election, holder.clone(), term + ahead, seq as u64);
                    let mut f = MemoryFrame::signed(&b, FORGER, &self.forged_key);
                    if *spoof_id {
                        f.key_id = self.cluster_key.id();
                    }
                    lab.net.inject_beat(&f);
                }
            }
            Attack::Tamper { pick, ahead } => {
                let captured = lab.net.captured_beats();
                if let Some(f) = captured.get(pick % captured.len().max(1)) {
                    let mut t = f.clone();
                    t.beat.term += ahead;
                    lab.net.inject_beat(&t);
                }
            }
            Attack::Replay {
                pick,
                count,
                reversed,
            } => replay(lab, *pick, *count, *reversed),
            Attack::OtherCluster { ahead, count } => {
                for seq in 0..*count {
                    let b = self.beat(
                        self.other_election,
                        "other-0".into(),
                        term + ahead,
                        seq as u64,
                    );
                    let f = MemoryFrame::signed(&b, MacAddr([2, 0, 0, 0, 1, 1]), &self.other_key);
                    lab.net.inject_beat(&f);
                }
            }
        }
    }
}

/// Inject `count` captured frames from `pick` on (wrapping).
fn replay(lab: &Lab, pick: usize, count: usize, reversed: bool) {
    let captured = lab.net.captured_beats();
    if captured.is_empty() {
        return;
    }
    let start = pick % captured.len();
    let mut frames: Vec<&MemoryFrame> = captured.iter().cycle().skip(start).take(count).collect();
    if reversed {
        frames.reverse();
    }
    for f in frames {
        lab.net.inject_beat(f);
    }
}

fn yields_or_step_downs(lab: &Lab) -> Vec<(String, ControllerEvent)> {
    lab.events
        .events()
        .into_iter()
        .filter(|(_, _, e)| {
            matches!(
                e,
                ControllerEvent::Yielded { .. }
                    | ControllerEvent::SteppedDown { .. }
                    | ControllerEvent::FastTakeover { .. }
            )
        })
        .map(|(_, n, e)| (n, e))
        .collect()
}

async fn run_schedule(s: Schedule) {
    let mut lab = Lab::new(s.nodes);
    lab.fast = true;
    lab.start(0);
    assert_eq!(lab.wait_leader(MS(2_000)).await, Some(0), "node-0 leads");
    for i in 1..s.nodes {
        lab.start(i);
    }
    tokio::time::sleep(MS(2_000)).await;
    let (cluster_key, election) = lab.heartbeat_auth().await;
    let vips = [vip()];
    let adversary = Adversary {
        cluster_key,
        election,
        other_key: HeartbeatKey::new([0x0c; 32]),
        other_election: election_scope("another-cluster-uid", "vip", &vips).unwrap(),
        forged_key: HeartbeatKey::new([0x66; 32]),
    };
    assert_ne!(adversary.other_election, election);
    let term = lab.store.current().unwrap().record.lease_transitions;

    // Phase 1: the adversary alone. The leader keeps the lease and the VIP.
    let t0 = Instant::now();
    let mut attacks = s.attacks.iter().peekable();
    while Instant::now() < t0 + MS(5_500) {
        while let Some((at, a)) = attacks.peek() {
            if t0 + MS(*at) > Instant::now() {
                break;
            }
            adversary.strike(&lab, a, term);
            attacks.next();
        }
        assert_eq!(lab.net.holders(vip()), [name(0)], "the VIP stays on node-0");
        tokio::time::sleep(MS(5)).await;
    }
    assert_eq!(lab.leaders(), [0]);
    assert_eq!(
        yields_or_step_downs(&lab),
        vec![],
        "the adversary moved the lease"
    );
    let forged = s.attacks.iter().any(|(_, a)| {
        matches!(
            a,
            Attack::Forge { .. } | Attack::Tamper { .. } | Attack::OtherCluster { .. }
        )
    });
    for i in 1..s.nodes {
        let drops = lab.nodes[i]
            .handle
            .as_ref()
            .unwrap()
            .heartbeat_drops()
            .snapshot();
        if forged {
            assert!(
                drops.by_sender.contains_key(&FORGER)
                    || drops.total.get(DropKind::OtherElection) > 0
                    || drops.total.get(DropKind::BadCode) > 0,
                "node-{i} counted no forged frame: {drops:?}"
            );
        }
        assert_eq!(drops.others.total(), 0, "few senders, none lumped");
    }

    // Phase 2: node-0's host dies; the adversary replays all it captured.
    lab.power_off(0);
    let crashed = Instant::now();
    let (pick, count, reversed) = s.crash_replays;
    let taken = lab
        .run_until(MS(3_000), |l| {
            replay(l, pick, count, reversed);
            l.leaders().len() == 1 && l.leaders() != [0]
        })
        .await;
    assert!(taken, "no takeover after the leader's crash");
    let fast = lab
        .events
        .events()
        .into_iter()
        .any(|(at, _, e)| at >= crashed && matches!(e, ControllerEvent::FastTakeover { .. }));
    assert!(fast, "the takeover was not by fast failover");
    let settled = lab
        .run_until(MS(2_000), |l| {
            let leaders = l.leaders();
            leaders.len() == 1 && l.net.holders(vip()) == [name(leaders[0])]
        })
        .await;
    assert!(settled, "the new leader does not hold the VIP");

    assert_no_answer_overlap(&lab.net);
    assert_added_after_own_write(&lab.net, &lab.store);
    check_transitions(&lab);
    for i in 1..s.nodes {
        if lab.running(i) {
            lab.crash(i);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn an_adversary_on_the_segment_moves_nothing(s in schedule()) {
        rt().block_on(run_schedule(s));
    }
}
