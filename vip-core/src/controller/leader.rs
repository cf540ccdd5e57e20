//! The leader half: take over (add, burst), renew and refresh the
//! address lifetime, announce, defend against foreign claims, hand over
//! when cordoned.

use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use super::run::Run;
use super::{ControllerEvent, Role, StepDownReason};
use crate::address::Presence;
use crate::announce::Conflict;
use crate::election::Attempt;

impl Run {
    /// The address lifetime to set right now, given the last renewal's
    /// send time: it ends, with the kernel's lag, before anyone else may
    /// take the lease. `None` when there is no room left.
    pub(super) fn address_lifetime(&self) -> Option<Duration> {
        let sent = self.elector.last_renew_sent()?;
        let end = sent + self.config.timings.lease_duration();
        let room = end
            .checked_duration_since(Instant::now())?
            .checked_sub(self.config.kernel_lag + self.config.lifetime_margin)?;
        let secs = room.as_secs();
        (secs >= 1).then(|| Duration::from_secs(secs))
    }

    /// Put every VIP on the interface with a fresh lifetime. Returns
    /// whether any had to be (re-)added, or `Err` if the invariant cannot
    /// be kept.
    pub(super) async fn refresh_addresses(&mut self, first: bool) -> Result<bool, ()> {
        let Some(iface) = self.interface.clone() else {
            return Err(());
        };
        let mut added = false;
        let mut earliest: Option<Instant> = None;
        for vip in self.vips.clone() {
            if !self.elector.is_leading(Instant::now()) {
                return Err(());
            }
            let Some(lifetime) = self.address_lifetime() else {
                self.emit(ControllerEvent::Error {
                    error: "no room left for the VIP's lifetime before the lease may be taken"
                        .into(),
                });
                return Err(());
            };
            // The kernel removes it no earlier than this.
            let expires = Instant::now() + lifetime;
            let result = self
                .addresses
                .ensure_present(&iface, &vip, Some(lifetime))
                .await;
            if result.is_ok() {
                earliest = Some(earliest.map_or(expires, |e| e.min(expires)));
            }
            match result {
                Ok(Presence::Added) => {
                    added = true;
                    if first {
                        self.emit(ControllerEvent::AddressAdded {
                            address: vip.addr(),
                        });
                    } else {
                        self.count(|c| c.address_restores += 1);
                        self.emit(ControllerEvent::AddressRestored {
                            address: vip.addr(),
                        });
                    }
                }
                Ok(Presence::Refreshed) => {}
                Err(e) => {
                    self.emit(ControllerEvent::Error {
                        error: format!("adding {vip} to {}: {e}", iface.name),
                    });
                    return Err(());
                }
            }
        }
        self.addresses_present = true;
        self.addresses_expire = earliest;
        Ok(added)
    }

    /// Invariant 4 while leading: put back any VIP that went, with a fresh
    /// lifetime, and announce anew as a burst if one had to be re-added (or
    /// `always`). Steps down when a VIP cannot be kept; returns whether
    /// this node still leads.
    pub(super) async fn keep_addresses(&mut self, always: bool) -> bool {
        match self.refresh_addresses(false).await {
            Ok(added) => {
                self.readd_pending = false;
                self.start_heartbeats();
                if added || always {
                    self.burst_left = self.config.announce.burst_count;
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

    pub(super) async fn become_leader(&mut self, new: bool) {
        self.free_since = None;
        self.role = Role::Leader;
        self.next_renew = self.elector.last_renew_sent().unwrap_or_else(Instant::now)
            + self.config.timings.retry_period();
        match self.refresh_addresses(true).await {
            Ok(_) => {}
            Err(()) => {
                self.step_down(StepDownReason::AddressFailure, true).await;
                return;
            }
        }
        self.readd_pending = false;
        self.start_heartbeats();
        // Announce at once, then the rest of the burst.
        self.burst_left = self.config.announce.burst_count;
        self.announce_all().await;
        self.count(|c| c.acquisitions += 1);
        self.emit(ControllerEvent::Acquired { new });
        self.set_role(Role::Leader);
        if let Some(t) = self.handed_over_at.take()
            && self.cordon_state().cordoned
        {
            // A hand-over found no taker: back off before the next one.
            self.handover_backoff = (self.handover_backoff * 2).clamp(
                self.config.handover_backoff,
                self.config.handover_backoff * 16,
            );
            self.handover_blocked_until = Some(Instant::now() + self.handover_backoff);
            tracing::warn!(after = ?Instant::now().duration_since(t), backoff = ?self.handover_backoff, "cordon hand-over found no taker; keeping the VIP");
        }
    }

    /// Fast failover, on carrier loss: stop beating and announcing and
    /// remove the VIPs, but keep the lease; the next successful renewal
    /// puts them back (or shows that a follower took over).
    pub(super) async fn withdraw_until_renewed(&mut self) {
        self.stop_heartbeats();
        self.next_announce = None;
        self.burst_left = 0;
        self.readd_pending = true;
        let Some(iface) = self.interface.clone() else {
            return;
        };
        for vip in self.vips.clone() {
            match self.addresses.ensure_absent(&iface, &vip).await {
                Ok(true) => self.emit(ControllerEvent::AddressRemoved {
                    address: vip.addr(),
                    stale: false,
                }),
                Ok(false) => {}
                Err(e) => self.emit(ControllerEvent::Error {
                    error: format!("removing {vip} after carrier loss: {e}"),
                }),
            }
        }
        self.addresses_present = false;
        self.addresses_expire = None;
        let present = self.addresses_present;
        self.update_status(|s| s.addresses_present = present);
    }

    /// One announcement of every VIP; schedules the next. Nothing while
    /// the VIPs are not on the interface (never claim what the kernel
    /// would not answer for).
    pub(super) async fn announce_all(&mut self) {
        let Some(iface) = self.interface.clone() else {
            return;
        };
        if !self.addresses_present {
            self.next_announce = None;
            return;
        }
        for vip in self.vips.clone() {
            match self.announcer.announce(&iface, vip.addr()).await {
                Ok(()) => {
                    self.count(|c| c.announcements += 1);
                    self.emit(ControllerEvent::Announced {
                        address: vip.addr(),
                    });
                }
                Err(e) => self.emit(ControllerEvent::AnnounceFailed {
                    address: vip.addr(),
                    error: e.to_string(),
                }),
            }
        }
        let now = Instant::now();
        self.burst_left = self.burst_left.saturating_sub(1);
        self.next_announce = Some(if self.burst_left > 0 {
            now + self.config.announce.burst_spacing
        } else {
            now + self.config.announce.refresh
        });
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
        if let Some(since) = self.carrier_down_since
            && now >= since + self.config.carrier_grace
        {
            self.step_down(StepDownReason::CarrierDown, true).await;
            return;
        }
        if now >= self.next_renew {
            self.next_renew = now + self.config.timings.retry_period();
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
                    let burst = self.readd_pending;
                    if !self.keep_addresses(burst).await {
                        return;
                    }
                    let (last, valid) =
                        (self.elector.last_renew_sent(), self.elector.valid_until());
                    self.update_status(|s| {
                        s.last_renewal = last;
                        s.valid_until = valid;
                    });
                    if self.cordon_wants_handover(Instant::now()) {
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
        if self.next_announce.is_some_and(|a| Instant::now() >= a) {
            self.announce_all().await;
        }
    }

    pub(super) fn cordon_wants_handover(&self, now: Instant) -> bool {
        let c = self.cordon_state();
        c.cordoned
            && c.schedulable_peers > 0
            && self.handover_blocked_until.is_none_or(|b| now >= b)
    }

    pub(super) async fn handover(&mut self) {
        self.step_down(StepDownReason::Cordoned, true).await;
        let now = Instant::now();
        self.handed_over_at = Some(now);
        self.free_since = Some(now);
    }

    pub(super) async fn on_claim(&mut self, c: Conflict) {
        if self.role != Role::Leader {
            return;
        }
        self.count(|k| k.conflicts += 1);
        let address = c.address;
        self.emit(ControllerEvent::Conflict(c));
        let now = Instant::now();
        let may = self
            .last_defence
            .get(&address)
            .is_none_or(|t| now >= *t + self.config.defence_interval);
        if may && let Some(iface) = self.interface.clone() {
            self.last_defence.insert(address, now);
            if self.announcer.announce(&iface, address).await.is_ok() {
                self.count(|k| {
                    k.defences += 1;
                    k.announcements += 1;
                });
                self.emit(ControllerEvent::Defended { address });
            }
        }
    }
}
