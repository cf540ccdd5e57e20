//! Fenced fast failover: the leader's heartbeat sender, and the follower's
//! side (which heartbeats arm it, when the holder counts as silent, the
//! probe, the stagger and the compare-and-swap takeover).
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

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use super::run::Run;
use super::{ControllerEvent, Observer, Role, StepDownReason};
use crate::election::Attempt;
use crate::heartbeat::{ElectionId, HeardBeat, Heartbeat, HeartbeatChannel, version_tag};
use crate::model::{Interface, MacAddr};

/// What the sender task sends, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BeatPlan {
    pub(super) election: ElectionId,
    pub(super) holder: String,
    pub(super) term: u32,
    /// [`version_tag`](crate::version_tag) of the record last written.
    pub(super) version: u64,
    pub(super) interval: Duration,
    /// No heartbeat at or after this instant: the earlier of the lease's
    /// validity and the VIP's earliest kernel expiry.
    pub(super) until: Instant,
}

/// The last heartbeat heard from the observed holder and term.
#[derive(Debug, Clone)]
pub(super) struct Heard {
    pub(super) holder: String,
    pub(super) term: u32,
    pub(super) version: u64,
    pub(super) at: Instant,
    pub(super) interval: Duration,
}

/// A task aborted when this is dropped.
#[derive(Debug)]
pub(super) struct AbortOnDrop(pub(super) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The sender: one heartbeat every interval while the plan says so. A new
/// holder or term starts at once, with sequence 0; a new record version (a
/// renewal) is sent at once too, so followers hear it before they could
/// miss it.
pub(super) fn spawn_sender(
    channel: Arc<dyn HeartbeatChannel>,
    interface: Interface,
    mut plan: watch::Receiver<Option<BeatPlan>>,
    observer: Option<Arc<dyn Observer>>,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut term: Option<(String, u32)> = None;
        let mut version = None;
        let mut sequence = 0u64;
        let mut next = Instant::now();
        let mut warned = false;
        loop {
            let current = plan.borrow_and_update().clone();
            let now = Instant::now();
            let Some(p) = current.filter(|p| now < p.until) else {
                // Idle until a new plan; the next one starts at once.
                term = None;
                version = None;
                if plan.changed().await.is_err() {
                    return;
                }
                continue;
            };
            if term.as_ref() != Some(&(p.holder.clone(), p.term)) {
                term = Some((p.holder.clone(), p.term));
                sequence = 0;
                next = now;
            }
            if version != Some(p.version) {
                version = Some(p.version);
                next = now;
            }
            if now >= next {
                let beat = Heartbeat {
                    election: p.election,
                    holder: p.holder.clone(),
                    term: p.term,
                    sequence,
                    version: p.version,
                    interval: p.interval,
                };
                sequence += 1;
                match channel.send(&interface, &beat).await {
                    Ok(()) => {
                        warned = false;
                        if let Some(o) = &observer {
                            o.on_event(&ControllerEvent::HeartbeatSent);
                        }
                    }
                    Err(e) if !warned => {
                        warned = true;
                        tracing::warn!(error = %e, "sending a heartbeat failed");
                    }
                    Err(_) => {}
                }
                next += p.interval;
                if next <= Instant::now() {
                    // Late (a stall): resume the rhythm from now.
                    next = Instant::now() + p.interval;
                }
            }
            tokio::select! {
                () = sleep_until(next.min(p.until)) => {}
                r = plan.changed() => if r.is_err() { return },
            }
        }
    }))
}

impl Run {
    /// Whether fast failover is on (a channel and a positive interval).
    pub(super) fn fast(&self) -> bool {
        self.heartbeats.is_some()
    }

    /// The leader's term: `leaseTransitions` of the record it holds.
    fn term(&self) -> u32 {
        self.elector
            .observed_record()
            .map_or(0, |r| r.record.lease_transitions)
    }

    /// The tag of the record version observed (for a leader: written).
    fn version(&self) -> u64 {
        self.elector
            .observed_record()
            .map_or(0, |r| version_tag(&r.version))
    }

    /// Start or extend the heartbeats of this leader: only while its VIPs
    /// are present and its lease valid.
    pub(super) fn start_heartbeats(&mut self) {
        if !self.fast() || self.role != Role::Leader || !self.addresses_present {
            return;
        }
        let Some(valid) = self.elector.valid_until() else {
            return;
        };
        let until = self.addresses_expire.map_or(valid, |e| e.min(valid));
        let plan = BeatPlan {
            election: self.config.election,
            holder: self.config.identity.to_string(),
            term: self.term(),
            version: self.version(),
            interval: self.config.fast_failover.heartbeat,
            until,
        };
        self.beat_plan.send_if_modified(|p| {
            if p.as_ref() == Some(&plan) {
                false
            } else {
                *p = Some(plan);
                true
            }
        });
    }

    /// Stop this node's heartbeats (the first step of every way out, and
    /// of a VIP gone missing).
    pub(super) fn stop_heartbeats(&mut self) {
        self.beat_plan.send_if_modified(|p| p.take().is_some());
    }

    /// A heartbeat heard on the segment.
    pub(super) async fn on_beat(&mut self, hb: HeardBeat) {
        if let Some(o) = &self.observer {
            o.on_event(&ControllerEvent::HeartbeatHeard {
                holder: hb.beat.holder.clone(),
                term: hb.beat.term,
            });
        }
        match self.role {
            Role::Leader
                if hb.beat.holder != self.config.identity.as_str()
                    && hb.beat.term > self.term() =>
            {
                self.count(|c| c.yields += 1);
                self.emit(ControllerEvent::Yielded {
                    to: hb.beat.holder.clone(),
                    term: hb.beat.term,
                });
                self.step_down(StepDownReason::Superseded, false).await;
            }
            Role::Follower => {
                let Some(r) = self.elector.observed_record() else {
                    return;
                };
                if !r.record.is_released()
                    && hb.beat.holder == r.record.holder_identity
                    && hb.beat.term == r.record.lease_transitions
                {
                    self.heard = Some(Heard {
                        holder: hb.beat.holder,
                        term: hb.beat.term,
                        version: hb.beat.version,
                        at: Instant::now(),
                        interval: hb.beat.interval.max(Duration::from_millis(1)),
                    });
                    self.next_probe = None;
                }
            }
            _ => {}
        }
    }

    /// This follower's stagger for `term`: 0, 1 or 2 steps, from a hash of
    /// its identity and the term (so no node is always first).
    fn stagger(&self, term: u32) -> Duration {
        let h = ElectionId::of(self.config.identity.as_str()).0
            ^ u64::from(term).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.config.fast_failover.stagger * ((h % 3) as u32)
    }

    /// When the observed holder counts as silent: `misses` of its
    /// intervals (and a quarter, for jitter) after its last heartbeat,
    /// which must name the observed record's version. `None` when not
    /// armed.
    fn silent_at(&self) -> Option<Instant> {
        let r = self.elector.observed_record()?;
        let h = self.heard.as_ref()?;
        if r.record.is_released()
            || r.record.holder_identity == self.config.identity.as_str()
            || h.holder != r.record.holder_identity
            || h.term != r.record.lease_transitions
            || h.version != version_tag(&r.version)
        {
            return None;
        }
        Some(h.at + h.interval * self.config.fast_failover.misses + h.interval / 4)
    }

    /// When this follower should probe and try a fenced takeover, if it
    /// should at all.
    pub(super) fn fast_due(&self) -> Option<Instant> {
        if !self.fast()
            || self.role != Role::Follower
            || !self.eligible()
            || self.cordon_state().cordoned
        {
            return None;
        }
        let silent = self.silent_at()?;
        let term = self.elector.observed_record()?.record.lease_transitions;
        let mut due = silent + self.stagger(term);
        if let Some(p) = self.next_probe {
            due = due.max(p);
        }
        if let Some(h) = self.hold_off_until {
            due = due.max(h);
        }
        Some(due)
    }

    /// Probe every VIP at once; the first MAC that answered for any. A
    /// probe that cannot be sent counts as an answer (no takeover blind).
    async fn probe_vips(&self) -> Option<MacAddr> {
        let iface = self.interface.clone()?;
        let timeout = self.config.fast_failover.probe_timeout;
        let mut set = tokio::task::JoinSet::new();
        for vip in &self.vips {
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
        let Some(silent_at) = self.silent_at() else {
            return;
        };
        let Some(holder) = self.elector.observed_holder().map(str::to_string) else {
            return;
        };
        let last_heard = self.heard.as_ref().map_or(silent_at, |h| h.at);
        if let Some(mac) = self.probe_vips().await {
            self.count(|c| c.fast_takeovers_declined += 1);
            self.emit(ControllerEvent::FastTakeoverDeclined {
                holder,
                answered_by: mac,
            });
            // Keep probing: take over the moment the answers stop.
            self.next_probe = Some(Instant::now() + self.config.fast_failover.heartbeat);
            return;
        }
        // A heartbeat may have come while we probed.
        while let Some(rx) = self.beats.as_mut() {
            match rx.try_recv() {
                Ok(hb) => self.on_beat(hb).await,
                Err(_) => break,
            }
        }
        if self.silent_at().is_none_or(|s| Instant::now() < s) {
            return;
        }
        let before = self.elector.observed_holder().map(str::to_string);
        let r = self.elector.try_take_over().await;
        self.note_holder(before);
        match r {
            Ok(Attempt::Leading { .. }) => {
                let term = self.term();
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
                self.next_probe = Some(Instant::now() + self.config.timings.retry_period());
            }
        }
    }
}
