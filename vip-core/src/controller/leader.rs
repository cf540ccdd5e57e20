//! The leader's round: take over (add, burst, beat), renew and refresh
//! the address lifetime, keep the VIPs, announce, hand over when cordoned.
//! What each step decides lives with its concern (`leadership.rs`,
//! `vips.rs`, `announce.rs`, `cordon.rs`, `fast.rs`); this file runs them
//! in order.

use tokio::time::{Instant, sleep_until};

use super::run::Run;
use super::{ControllerEvent, Role, StepDownReason};
use crate::election::Attempt;

impl Run {
    /// Invariant 4 while leading: put back any VIP that went, with a fresh
    /// lifetime, and announce anew as a burst if one had to be re-added (or
    /// `always`). Steps down when a VIP cannot be kept; returns whether
    /// this node still leads.
    pub(super) async fn keep_addresses(&mut self, always: bool) -> bool {
        match self.refresh_addresses(false).await {
            Ok(added) => {
                self.vips.readd_pending = false;
                self.start_heartbeats();
                if added || always {
                    self.announcements.start_burst();
                    self.announce_all().await;
                }
                true
            }
            Err(()) => {
                self.step_down(StepDownReason::AddressFailure, true).await;
                false
            }
        }
    }

    /// This node holds the lease: add the VIPs, beat, announce as a burst.
    pub(super) async fn become_leader(&mut self, new: bool) {
        self.cordon.lease_not_free();
        self.lease.role = Role::Leader;
        self.lease.next_renew = self.elector.last_renew_sent().unwrap_or_else(Instant::now)
            + self.config.timings.retry_period();
        if self.refresh_addresses(true).await.is_err() {
            self.step_down(StepDownReason::AddressFailure, true).await;
            return;
        }
        self.vips.readd_pending = false;
        self.start_heartbeats();
        // Announce at once, then the rest of the burst.
        self.announcements.start_burst();
        self.announce_all().await;
        self.count(|c| c.acquisitions += 1);
        self.emit(ControllerEvent::Acquired { new });
        self.set_role(Role::Leader);
        if let Some((after, backoff)) = self.cordon.on_acquired(Instant::now()) {
            tracing::warn!(
                ?after,
                ?backoff,
                "cordon hand-over found no taker; keeping the VIP"
            );
        }
    }

    pub(super) async fn leader_timer(&mut self, now: Instant) {
        // Invariant 1: never past our own validity.
        let Some(valid_until) = self.elector.valid_until() else {
            self.step_down(StepDownReason::LeaseLost, false).await;
            return;
        };
        if now >= valid_until {
            self.step_down(StepDownReason::RenewDeadline, true).await;
            return;
        }
        if self.vips.carrier_deadline().is_some_and(|d| now >= d) {
            self.step_down(StepDownReason::CarrierDown, true).await;
            return;
        }
        if now >= self.lease.next_renew {
            self.lease.next_renew = now + self.config.timings.retry_period();
            let attempt = tokio::select! {
                a = self.attempt() => a,
                () = sleep_until(valid_until) => None,
            };
            match attempt {
                Some(Attempt::Leading { .. }) => {
                    // Someone may have removed it meanwhile; after a
                    // carrier loss or a removal (fast failover) it comes
                    // back now, with a burst, this renewal being the proof
                    // that nobody took over.
                    let burst = self.vips.readd_pending;
                    if !self.keep_addresses(burst).await {
                        return;
                    }
                    let (last, valid) =
                        (self.elector.last_renew_sent(), self.elector.valid_until());
                    self.update_status(|s| {
                        s.last_renewal = last;
                        s.valid_until = valid;
                    });
                    if self.cordon.wants_handover(Instant::now()) {
                        self.handover().await;
                        return;
                    }
                }
                Some(Attempt::Held { .. }) => {
                    self.step_down(StepDownReason::LeaseLost, false).await;
                    return;
                }
                None => {
                    if Instant::now() >= valid_until {
                        self.step_down(StepDownReason::RenewDeadline, true).await;
                        return;
                    }
                }
            }
        }
        if self.announcements.due(Instant::now()) {
            self.announce_all().await;
        }
    }

    /// Cordoned: step down and leave the lease to an uncordoned node.
    pub(super) async fn handover(&mut self) {
        self.step_down(StepDownReason::Cordoned, true).await;
        self.cordon.handed_over(Instant::now());
    }
}
