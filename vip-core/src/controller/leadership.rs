//! The lease and leadership: the role, when to renew, poll or campaign
//! next, the hold-off after a failure or a step-down, and the way out of
//! leadership (invariant 2).
//!
//! [`Leadership`] decides when; the `impl Run` below runs election
//! attempts and steps down. The leader's and the follower's rounds are in
//! `leader.rs` and `follower.rs`.

use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::run::Run;
use super::{ControllerEvent, Failure, Role, StepDownReason};
use crate::backend::{BackendError, VersionedRecord};
use crate::election::Attempt;
use crate::model::Timings;

/// The role and the schedule of election attempts.
#[derive(Debug)]
pub(super) struct Leadership {
    pub(super) role: Role,
    /// Leader: next renewal. Follower: next poll or attempt.
    pub(super) next_renew: Instant,
    /// No follower attempt before this (after an error or a step-down), so
    /// a persistent failure never spins.
    pub(super) hold_off_until: Option<Instant>,
    /// The last election attempt failed because another write came first.
    pub(super) lost_race: bool,
    retry: Duration,
    lease_duration: Duration,
}

impl Leadership {
    pub(super) fn new(timings: &Timings, now: Instant) -> Self {
        Self {
            role: Role::Starting,
            next_renew: now,
            hold_off_until: None,
            lost_race: false,
            retry: timings.retry_period(),
            lease_duration: timings.lease_duration(),
        }
    }

    /// Leadership ended at `now` for `reason`: follow (or stop), and pause
    /// before campaigning, so the others get the first chance and a
    /// failure never spins (a lease duration after an address failure).
    pub(super) fn stepped_down(&mut self, reason: StepDownReason, now: Instant) {
        self.role = role_after(reason);
        self.next_renew = now + self.retry;
        self.hold_off_until = Some(
            now + if reason == StepDownReason::AddressFailure {
                self.lease_duration
            } else {
                self.retry
            },
        );
    }

    /// An attempt failed at `now`: none before a retry period.
    pub(super) fn hold_off(&mut self, now: Instant) {
        self.hold_off_until = Some(now + self.retry);
    }

    /// Whether this follower is still holding off at `now`.
    pub(super) fn holding_off(&self, now: Instant) -> bool {
        self.hold_off_until.is_some_and(|h| now < h)
    }

    /// When a follower's regular work (reconcile, poll, campaign) is due.
    /// `available_at`: when the watched lease may be taken (`None` when
    /// polling); `not_before`: the cordon's hold-back.
    pub(super) fn follower_due(
        &self,
        eligible: bool,
        available_at: Option<Instant>,
        not_before: Option<Instant>,
    ) -> Instant {
        let mut d = self.next_renew;
        if eligible {
            let mut due = available_at.unwrap_or(self.next_renew);
            if let Some(n) = not_before {
                due = due.max(n);
            }
            if let Some(h) = self.hold_off_until {
                due = due.max(h);
            }
            // Reconcile at least every retry period.
            d = d.min(due);
        }
        d
    }
}

/// The role after stepping down for `reason`.
pub(super) fn role_after(reason: StepDownReason) -> Role {
    if reason == StepDownReason::Shutdown {
        Role::Stopping
    } else {
        Role::Follower
    }
}

/// When the observed lease may be taken by local observation: now when it
/// is free, `identity`'s, or was never observed; else at its `expiry`.
pub(super) fn lease_available_at(
    observed: Option<&VersionedRecord>,
    identity: &str,
    expiry: Option<Instant>,
    now: Instant,
) -> Instant {
    match observed {
        None => now,
        Some(r) if r.record.is_released() => now,
        Some(r) if r.record.holder_identity == identity => now,
        Some(_) => expiry.unwrap_or(now),
    }
}

impl Run {
    /// Run one election attempt, emitting what it found.
    pub(super) async fn attempt(&mut self) -> Option<Attempt> {
        let before = self.elector.observed_holder().map(str::to_string);
        let sent = Instant::now();
        let r = self.elector.try_acquire_or_renew().await;
        self.note_holder(before);
        match r {
            Ok(a) => {
                self.lease.lost_race = false;
                if matches!(a, Attempt::Leading { acquired: false })
                    && self.lease.role == Role::Leader
                {
                    self.count(|c| c.renewals += 1);
                    self.emit(ControllerEvent::Renewed {
                        latency: Instant::now() - sent,
                    });
                }
                Some(a)
            }
            Err(e) => {
                self.lease.lost_race = matches!(
                    e.backend_error(),
                    BackendError::Conflict | BackendError::AlreadyExists
                );
                if self.lease.role == Role::Leader {
                    self.count(|c| c.renewal_failures += 1);
                    self.emit(ControllerEvent::RenewFailed {
                        error: Failure::new("renewing the lease", e),
                    });
                } else {
                    tracing::debug!(error = %e, "election attempt failed");
                }
                None
            }
        }
    }

    /// Report the holder after the elector observed the record.
    pub(super) fn note_holder(&mut self, before: Option<String>) {
        let after = self.elector.observed_holder().map(str::to_string);
        if after != before
            && let Some(holder) = after.clone()
        {
            self.emit(ControllerEvent::HolderChanged { holder });
        }
        let holder = after;
        self.update_status(|s| s.holder = holder);
    }

    /// When the observed lease may be taken by local observation.
    pub(super) fn lease_available_at(&self, now: Instant) -> Instant {
        lease_available_at(
            self.elector.observed_record(),
            self.config.identity.as_str(),
            self.elector.observed_expiry(),
            now,
        )
    }

    /// Invariant 2: stop announcing, remove, release (bounded), follow.
    pub(super) async fn step_down(
        &mut self,
        reason: StepDownReason,
        release: bool,
    ) -> (Vec<IpAddr>, bool, Vec<Failure>) {
        // 1. Stop announcing (heartbeats first).
        self.beacon.stop();
        self.announcements.stop();
        self.fast.reset();
        self.vips.readd_pending = false;
        self.lease.role = role_after(reason);
        // 2. Remove the addresses.
        let (removed, mut errors) = self.remove_addresses("").await;
        // 3. Release, bounded.
        let mut released = false;
        if release {
            match tokio::time::timeout(self.config.release_timeout, self.elector.release()).await {
                Ok(Ok(r)) => released = r,
                Ok(Err(e)) => errors.push(Failure::new("releasing the lease", e)),
                Err(_) => errors.push(Failure::plain(format!(
                    "releasing the lease: no answer within {:?}",
                    self.config.release_timeout
                ))),
            }
        }
        self.elector.forget_leadership();
        self.count(|c| c.step_downs += 1);
        self.emit(ControllerEvent::SteppedDown { reason, released });
        // 4. Carry on as a follower, after a pause.
        self.lease.stepped_down(reason, Instant::now());
        let role = self.lease.role;
        self.set_role(role);
        (removed, released, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LeaderRecord;

    const S: Duration = Duration::from_secs(1);

    fn leadership(now: Instant) -> Leadership {
        Leadership::new(&Timings::new(15 * S, 10 * S, 2 * S).unwrap(), now)
    }

    #[test]
    fn stepping_down_pauses_longer_after_an_address_failure() {
        let t = Instant::now();
        let mut l = leadership(t);
        l.stepped_down(StepDownReason::RenewDeadline, t);
        assert_eq!(
            (l.role, l.next_renew, l.hold_off_until),
            (Role::Follower, t + 2 * S, Some(t + 2 * S))
        );
        assert!(l.holding_off(t + S) && !l.holding_off(t + 2 * S));
        l.stepped_down(StepDownReason::AddressFailure, t);
        assert_eq!(l.hold_off_until, Some(t + 15 * S));
        l.stepped_down(StepDownReason::Shutdown, t);
        assert_eq!(l.role, Role::Stopping);
    }

    #[test]
    fn a_follower_is_due_at_the_latest_of_its_gates_and_at_least_every_retry() {
        let t = Instant::now();
        let mut l = leadership(t);
        l.next_renew = t + 2 * S;
        assert_eq!(
            l.follower_due(false, Some(t), None),
            t + 2 * S,
            "ineligible: reconcile only"
        );
        assert_eq!(l.follower_due(true, None, None), t + 2 * S, "polling");
        assert_eq!(
            l.follower_due(true, Some(t + S), None),
            t + S,
            "watching: at expiry"
        );
        assert_eq!(
            l.follower_due(true, Some(t + 9 * S), None),
            t + 2 * S,
            "never later than the retry"
        );
        assert_eq!(
            l.follower_due(true, Some(t), Some(t + S)),
            t + S,
            "cordon grace"
        );
        l.hold_off(t);
        assert_eq!(l.follower_due(true, Some(t), None), t + 2 * S);
    }

    #[test]
    fn a_lease_is_available_when_free_ours_unseen_or_expired() {
        let t = Instant::now();
        let rec = |holder: &str| VersionedRecord {
            record: LeaderRecord {
                holder_identity: holder.into(),
                ..LeaderRecord::default()
            },
            version: "1".into(),
        };
        let later = Some(t + 5 * S);
        assert_eq!(lease_available_at(None, "me", later, t), t);
        assert_eq!(lease_available_at(Some(&rec("")), "me", later, t), t);
        assert_eq!(lease_available_at(Some(&rec("me")), "me", later, t), t);
        assert_eq!(
            lease_available_at(Some(&rec("b")), "me", later, t),
            t + 5 * S
        );
        assert_eq!(lease_available_at(Some(&rec("b")), "me", None, t), t);
    }
}
