//! Fenced fast failover, the deciding side: which heartbeats arm this
//! follower, when the holder counts as silent, the probe schedule and the
//! stagger, the leader's yield to a higher term, and what the leader's
//! heartbeats say. The sender task is in `heartbeat.rs`.
//!
//! The safety argument, which the property tests check:
//!
//! - The lease stays the only authority: a follower adds the VIP only after
//!   its compare-and-swap on the record version it last observed succeeds,
//!   and a leader puts back a VIP that went away only after a renewal
//!   succeeded *after* it went (never from memory). Of two nodes writing
//!   over the same version, exactly one wins.
//! - A follower is armed only by a heartbeat of the observed holder, term
//!   and record version (each heartbeat names the version its sender last
//!   wrote), and a leader sends heartbeats only while its VIP is present
//!   and its lease valid. So an armed follower knows the holder had its
//!   VIP after the very write it would replace; a holder that renews after
//!   its VIP went away is not replaced early until it is heard again.
//! - A silent holder is replaced only if nobody answers for the VIP: a
//!   daemon that is dead or hung on a live host keeps answering until its
//!   kernel's lifetime removes the VIP, and only then is it replaced.
//! - A leader whose carrier goes removes the VIP at once (a link that comes
//!   back must not bring a stale VIP with it), and yields at once when it
//!   hears a higher term from another holder or its renewal conflicts.
//!
//! [`FastFailover`] decides without IO; the `impl Run` below carries its
//! decisions out (probe, compare-and-swap, take over, yield). A rule about
//! which heartbeats count (authentication, replay) belongs in
//! [`FastFailover::on_beat`], before a beat arms anything.

use std::time::Duration;

use tokio::time::Instant;

use super::heartbeat::BeatPlan;
use super::run::Run;
use super::{ControllerEvent, FastFailoverPolicy, Role, StepDownReason};
use crate::backend::VersionedRecord;
use crate::election::Attempt;
use crate::heartbeat::{ElectionId, HeardBeat, Heartbeat, version_tag};
use crate::model::MacAddr;

/// The last heartbeat heard from the observed holder and term.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Heard {
    holder: String,
    term: u32,
    version: u64,
    at: Instant,
    interval: Duration,
}

/// What a heartbeat asks of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BeatDecision {
    /// This leader heard a higher term from another holder: a follower
    /// took the lease over. Yield.
    Yield {
        /// The new holder.
        to: String,
        /// Its term.
        term: u32,
    },
}

/// What else gates a follower's fast takeover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gate {
    /// This node follows.
    pub(super) follower: bool,
    /// Healthy, with carrier.
    pub(super) eligible: bool,
    /// This node is cordoned (it leaves takeovers to others).
    pub(super) cordoned: bool,
    /// No attempt before this.
    pub(super) hold_off_until: Option<Instant>,
}

/// Fast failover's state: the holder heard, and when to probe again.
#[derive(Debug)]
pub(super) struct FastFailover {
    /// A channel and a positive interval.
    on: bool,
    policy: FastFailoverPolicy,
    identity: String,
    heard: Option<Heard>,
    /// A follower that found the VIP still answering probes again then.
    next_probe: Option<Instant>,
}

impl FastFailover {
    pub(super) fn new(on: bool, policy: FastFailoverPolicy, identity: &str) -> Self {
        Self {
            on,
            policy,
            identity: identity.to_string(),
            heard: None,
            next_probe: None,
        }
    }

    /// Whether fast failover is on.
    pub(super) fn on(&self) -> bool {
        self.on
    }

    /// Forget the holder heard (on every way out of leadership).
    pub(super) fn reset(&mut self) {
        self.heard = None;
        self.next_probe = None;
    }

    /// A heartbeat heard while this node has `role` and observes
    /// `observed`. A follower is armed by the observed holder's term; a
    /// leader yields to a higher term of another holder.
    pub(super) fn on_beat(
        &mut self,
        beat: &Heartbeat,
        role: Role,
        observed: Option<&VersionedRecord>,
        now: Instant,
    ) -> Option<BeatDecision> {
        match role {
            Role::Leader
                if beat.holder != self.identity
                    && beat.term > observed.map_or(0, |r| r.record.lease_transitions) =>
            {
                Some(BeatDecision::Yield {
                    to: beat.holder.clone(),
                    term: beat.term,
                })
            }
            Role::Follower => {
                let r = observed?;
                if !r.record.is_released()
                    && beat.holder == r.record.holder_identity
                    && beat.term == r.record.lease_transitions
                {
                    self.heard = Some(Heard {
                        holder: beat.holder.clone(),
                        term: beat.term,
                        version: beat.version,
                        at: now,
                        interval: beat.interval.max(Duration::from_millis(1)),
                    });
                    self.next_probe = None;
                }
                None
            }
            _ => None,
        }
    }

    /// When the observed holder counts as silent: `misses` of its
    /// intervals (and a quarter, for jitter) after its last heartbeat,
    /// which must name the observed record's version. `None` when not
    /// armed.
    pub(super) fn silent_at(&self, observed: Option<&VersionedRecord>) -> Option<Instant> {
        let r = observed?;
        let h = self.heard.as_ref()?;
        if r.record.is_released()
            || r.record.holder_identity == self.identity
            || h.holder != r.record.holder_identity
            || h.term != r.record.lease_transitions
            || h.version != version_tag(&r.version)
        {
            return None;
        }
        Some(h.at + h.interval * self.policy.misses + h.interval / 4)
    }

    /// When the holder was last heard.
    pub(super) fn last_heard(&self) -> Option<Instant> {
        self.heard.as_ref().map(|h| h.at)
    }

    /// This follower's stagger for `term`: 0, 1 or 2 steps, from a hash of
    /// its identity and the term (so no node is always first).
    fn stagger(&self, term: u32) -> Duration {
        let h =
            ElectionId::of(&self.identity).0 ^ u64::from(term).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.policy.stagger * ((h % 3) as u32)
    }

    /// When this follower should probe and try a fenced takeover, if it
    /// should at all.
    pub(super) fn due(&self, observed: Option<&VersionedRecord>, gate: Gate) -> Option<Instant> {
        if !self.on || !gate.follower || !gate.eligible || gate.cordoned {
            return None;
        }
        let silent = self.silent_at(observed)?;
        let term = observed?.record.lease_transitions;
        let mut due = silent + self.stagger(term);
        if let Some(p) = self.next_probe {
            due = due.max(p);
        }
        if let Some(h) = gate.hold_off_until {
            due = due.max(h);
        }
        Some(due)
    }

    /// The VIP still answered a probe: probe again one interval later.
    pub(super) fn declined(&mut self, now: Instant) {
        self.next_probe = Some(now + self.policy.heartbeat);
    }

    /// The compare-and-swap failed: try again at `at`.
    pub(super) fn retry_at(&mut self, at: Instant) {
        self.next_probe = Some(at);
    }

    /// What this leader's heartbeats say, if it may send any: only while
    /// its VIPs are present (`addresses_expire` is when the kernel may
    /// remove them) and its lease valid (until `valid_until`).
    pub(super) fn plan(
        &self,
        election: ElectionId,
        leading: Option<&VersionedRecord>,
        valid_until: Option<Instant>,
        present: bool,
        addresses_expire: Option<Instant>,
    ) -> Option<BeatPlan> {
        if !self.on || !present {
            return None;
        }
        let valid = valid_until?;
        Some(BeatPlan {
            election,
            holder: self.identity.clone(),
            term: leading.map_or(0, |r| r.record.lease_transitions),
            version: leading.map_or(0, |r| version_tag(&r.version)),
            interval: self.policy.heartbeat,
            until: addresses_expire.map_or(valid, |e| e.min(valid)),
        })
    }
}

impl Run {
    /// Start or extend the heartbeats of this leader, as
    /// [`FastFailover::plan`] allows.
    pub(super) fn start_heartbeats(&mut self) {
        if self.lease.role != Role::Leader {
            return;
        }
        let plan = self.fast.plan(
            self.config.election,
            self.elector.observed_record(),
            self.elector.valid_until(),
            self.vips.present,
            self.vips.expire,
        );
        if let Some(plan) = plan {
            self.beacon.send(plan);
        }
    }

    /// A heartbeat heard on the segment.
    pub(super) async fn on_beat(&mut self, hb: HeardBeat) {
        self.report.event(&ControllerEvent::HeartbeatHeard {
            holder: hb.beat.holder.clone(),
            term: hb.beat.term,
        });
        let decision = self.fast.on_beat(
            &hb.beat,
            self.lease.role,
            self.elector.observed_record(),
            Instant::now(),
        );
        if let Some(BeatDecision::Yield { to, term }) = decision {
            self.count(|c| c.yields += 1);
            self.emit(ControllerEvent::Yielded { to, term });
            self.step_down(StepDownReason::Superseded, false).await;
        }
    }

    /// When this follower should try a fast takeover, if at all.
    pub(super) fn fast_due(&self) -> Option<Instant> {
        let gate = Gate {
            follower: self.lease.role == Role::Follower,
            eligible: self.eligible(),
            cordoned: self.cordon.state().cordoned,
            hold_off_until: self.lease.hold_off_until,
        };
        self.fast.due(self.elector.observed_record(), gate)
    }

    /// Probe every VIP at once; the first MAC that answered for any. A
    /// probe that cannot be sent counts as an answer (no takeover blind).
    async fn probe_vips(&self) -> Option<MacAddr> {
        let iface = self.vips.interface.clone()?;
        let timeout = self.config.fast_failover.probe_timeout;
        let mut set = tokio::task::JoinSet::new();
        for vip in &self.vips.list {
            let (announcer, iface, addr) = (self.announcer.clone(), iface.clone(), vip.addr());
            set.spawn(async move { announcer.probe(&iface, addr, timeout).await });
        }
        let mut answered = None;
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(Some(mac))) => answered = answered.or(Some(mac)),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "probing the VIP failed; no fast takeover");
                    answered = answered.or(Some(iface.mac));
                }
                Err(_) => answered = answered.or(Some(iface.mac)),
            }
        }
        answered
    }

    /// The holder is silent: probe, and if nobody answers, take the lease
    /// by compare-and-swap; then add, burst and beat.
    pub(super) async fn fast_takeover(&mut self) {
        let Some(silent_at) = self.fast.silent_at(self.elector.observed_record()) else {
            return;
        };
        let Some(holder) = self.elector.observed_holder().map(str::to_string) else {
            return;
        };
        let last_heard = self.fast.last_heard().unwrap_or(silent_at);
        if let Some(mac) = self.probe_vips().await {
            self.count(|c| c.fast_takeovers_declined += 1);
            self.emit(ControllerEvent::FastTakeoverDeclined {
                holder,
                answered_by: mac,
            });
            // Keep probing: take over the moment the answers stop.
            self.fast.declined(Instant::now());
            return;
        }
        // A heartbeat may have come while we probed.
        while let Some(hb) = self.inputs.try_beat() {
            self.on_beat(hb).await;
        }
        if self
            .fast
            .silent_at(self.elector.observed_record())
            .is_none_or(|s| Instant::now() < s)
        {
            return;
        }
        let before = self.elector.observed_holder().map(str::to_string);
        let r = self.elector.try_take_over().await;
        self.note_holder(before);
        match r {
            Ok(Attempt::Leading { .. }) => {
                let term = self
                    .elector
                    .observed_record()
                    .map_or(0, |r| r.record.lease_transitions);
                self.count(|c| c.fast_takeovers += 1);
                self.emit(ControllerEvent::FastTakeover {
                    from: holder,
                    term,
                    silent: Instant::now().saturating_duration_since(last_heard),
                });
                self.become_leader(true).await;
            }
            Ok(Attempt::Held { .. }) => {}
            Err(e) => {
                tracing::debug!(error = %e, "fast takeover failed");
                self.fast
                    .retry_at(Instant::now() + self.config.timings.retry_period());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LeaderRecord;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> FastFailoverPolicy {
        FastFailoverPolicy {
            heartbeat: 10 * MS,
            misses: 3,
            probe_timeout: 20 * MS,
            stagger: 5 * MS,
        }
    }

    fn record(holder: &str, term: u32, version: &str) -> VersionedRecord {
        VersionedRecord {
            record: LeaderRecord {
                holder_identity: holder.into(),
                lease_transitions: term,
                ..LeaderRecord::default()
            },
            version: version.into(),
        }
    }

    fn beat(holder: &str, term: u32, version: &str) -> Heartbeat {
        Heartbeat {
            election: ElectionId(1),
            holder: holder.into(),
            term,
            sequence: 0,
            version: version_tag(version),
            interval: 10 * MS,
        }
    }

    const OPEN: Gate = Gate {
        follower: true,
        eligible: true,
        cordoned: false,
        hold_off_until: None,
    };

    #[test]
    fn a_follower_is_armed_only_by_the_observed_holder_term_and_version() {
        let now = Instant::now();
        let r = record("a", 4, "v7");
        let mut f = FastFailover::new(true, policy(), "me");
        assert_eq!(f.due(Some(&r), OPEN), None, "nothing heard");
        for b in [beat("b", 4, "v7"), beat("a", 3, "v7")] {
            assert_eq!(f.on_beat(&b, Role::Follower, Some(&r), now), None);
            assert_eq!(f.silent_at(Some(&r)), None, "{b:?} must not arm");
        }
        // The right holder and term, an older version: heard, not armed.
        f.on_beat(&beat("a", 4, "v6"), Role::Follower, Some(&r), now);
        assert_eq!(f.silent_at(Some(&r)), None);
        f.on_beat(&beat("a", 4, "v7"), Role::Follower, Some(&r), now);
        // Three misses and a quarter of the interval.
        assert_eq!(
            f.silent_at(Some(&r)),
            Some(now + 32 * MS + 500 * Duration::from_micros(1))
        );
        let due = f.due(Some(&r), OPEN).unwrap();
        assert!(due >= f.silent_at(Some(&r)).unwrap());
        assert!(
            due <= f.silent_at(Some(&r)).unwrap() + 10 * MS,
            "at most two staggers"
        );
        // A new version (the holder renewed) disarms until heard again.
        assert_eq!(f.silent_at(Some(&record("a", 4, "v8"))), None);
        // A released record, or this node's own, never arms.
        assert_eq!(f.silent_at(Some(&record("", 4, "v7"))), None);
    }

    #[test]
    fn the_gate_and_the_probe_schedule_bound_the_due_time() {
        let now = Instant::now();
        let r = record("a", 1, "v1");
        let mut f = FastFailover::new(true, policy(), "me");
        f.on_beat(&beat("a", 1, "v1"), Role::Follower, Some(&r), now);
        let due = f.due(Some(&r), OPEN).unwrap();
        for closed in [
            Gate {
                follower: false,
                ..OPEN
            },
            Gate {
                eligible: false,
                ..OPEN
            },
            Gate {
                cordoned: true,
                ..OPEN
            },
        ] {
            assert_eq!(f.due(Some(&r), closed), None, "{closed:?}");
        }
        let later = now + Duration::from_secs(1);
        let held = Gate {
            hold_off_until: Some(later),
            ..OPEN
        };
        assert_eq!(f.due(Some(&r), held), Some(later));
        f.declined(later);
        assert_eq!(f.due(Some(&r), OPEN), Some(later + 10 * MS));
        // A new heartbeat clears the probe schedule.
        f.on_beat(&beat("a", 1, "v1"), Role::Follower, Some(&r), now);
        assert_eq!(f.due(Some(&r), OPEN), Some(due));
        f.reset();
        assert_eq!(f.due(Some(&r), OPEN), None);
        let off = FastFailover::new(false, policy(), "me");
        assert_eq!(off.due(Some(&r), OPEN), None);
    }

    #[test]
    fn a_leader_yields_only_to_a_higher_term_of_another_holder() {
        let now = Instant::now();
        let mine = record("me", 5, "v9");
        let mut f = FastFailover::new(true, policy(), "me");
        for b in [beat("b", 5, "x"), beat("b", 4, "x"), beat("me", 9, "x")] {
            assert_eq!(f.on_beat(&b, Role::Leader, Some(&mine), now), None, "{b:?}");
        }
        assert_eq!(
            f.on_beat(&beat("b", 6, "x"), Role::Leader, Some(&mine), now),
            Some(BeatDecision::Yield {
                to: "b".into(),
                term: 6
            })
        );
        assert_eq!(
            f.on_beat(&beat("b", 6, "x"), Role::Starting, Some(&mine), now),
            None
        );
    }

    #[test]
    fn heartbeats_are_planned_only_with_the_vip_present_and_the_lease_valid() {
        let now = Instant::now();
        let mine = record("me", 2, "v3");
        let f = FastFailover::new(true, policy(), "me");
        let valid = Some(now + Duration::from_secs(5));
        let early = now + Duration::from_secs(3);
        assert_eq!(f.plan(ElectionId(1), Some(&mine), valid, false, None), None);
        assert_eq!(f.plan(ElectionId(1), Some(&mine), None, true, None), None);
        let p = f
            .plan(ElectionId(1), Some(&mine), valid, true, Some(early))
            .unwrap();
        assert_eq!(
            (p.holder.as_str(), p.term, p.version),
            ("me", 2, version_tag("v3"))
        );
        assert_eq!(p.until, early, "the earlier of the two ends");
        let off = FastFailover::new(false, policy(), "me");
        assert_eq!(
            off.plan(ElectionId(1), Some(&mine), valid, true, None),
            None
        );
    }
}
