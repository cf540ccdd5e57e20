//! The follower half: never hold the VIP, watch the record, campaign
//! when the lease is free or expired by local observation.

use tokio::time::Instant;

use super::run::Run;
use super::{ControllerEvent, Role, StepDownReason};
use crate::election::Attempt;

impl Run {
    /// Invariant 3: a follower holds no VIP.
    pub(super) async fn reconcile_follower(&mut self) {
        let Some(iface) = self.interface.clone() else {
            return;
        };
        for vip in self.vips.clone() {
            match self.addresses.is_present(&iface, &vip).await {
                Ok(false) => {}
                Ok(true) => match self.addresses.ensure_absent(&iface, &vip).await {
                    Ok(_) => {
                        self.count(|c| c.stale_removals += 1);
                        self.emit(ControllerEvent::AddressRemoved {
                            address: vip.addr(),
                            stale: true,
                        });
                    }
                    Err(e) => self.emit(ControllerEvent::Error {
                        error: format!("removing stale {vip}: {e}"),
                    }),
                },
                Err(e) => self.emit(ControllerEvent::Error {
                    error: format!("checking {vip}: {e}"),
                }),
            }
        }
        self.addresses_present = false;
    }

    pub(super) async fn follower_timer(&mut self, now: Instant) {
        self.reconcile_follower().await;
        self.next_renew = now + self.config.timings.retry_period();
        if !self.eligible() {
            self.free_since = None;
            return;
        }
        let cordoned = self.cordon_state().cordoned;
        let watching = self.record_watch.is_some();
        if cordoned && !watching {
            // Poll, to learn whether the lease is free before waiting.
            let before = self.elector.observed_holder().map(str::to_string);
            if self.elector.refresh().await.is_err() {
                return;
            }
            self.note_holder(before);
        }
        let now = Instant::now();
        if self.hold_off_until.is_some_and(|h| now < h) {
            return;
        }
        if watching || cordoned {
            if now < self.lease_available_at(now) {
                self.free_since = None;
                return;
            }
            let mine = self.elector.observed_holder() == Some(self.config.identity.as_str());
            if cordoned && !mine {
                // Leave a free lease to uncordoned nodes for a while.
                let since = *self.free_since.get_or_insert(now);
                if now < since + self.config.cordon_grace {
                    return;
                }
            }
        }
        match self.attempt().await {
            Some(Attempt::Leading { acquired }) => self.become_leader(acquired).await,
            Some(Attempt::Held { .. }) => {}
            // A lost race (someone else's write came first) is no failure:
            // the watch or the next poll tells who won, without a pause.
            None if self.lost_race => {}
            None => self.hold_off_until = Some(Instant::now() + self.config.timings.retry_period()),
        }
    }

    pub(super) async fn on_record(&mut self) {
        let Some(w) = self.record_watch.as_mut() else {
            return;
        };
        let current = w.borrow_and_update().clone();
        if self.role == Role::Leader
            && current
                .as_ref()
                .is_some_and(|r| r.record.holder_identity == self.config.identity.as_str())
        {
            // Our own writes, possibly late: the elector knows them already.
            return;
        }
        let before = self.elector.observed_holder().map(str::to_string);
        let was_leading = self.role == Role::Leader;
        self.elector.observe(current, Instant::now());
        self.note_holder(before);
        if was_leading && self.elector.valid_until().is_none() {
            // Someone else holds it now: out at once.
            self.step_down(StepDownReason::LeaseLost, false).await;
            return;
        }
        if self.role == Role::Follower
            && self
                .elector
                .observed_record()
                .is_none_or(|r| r.record.is_released())
        {
            // A released (or deleted) lease is taken at once.
            self.follower_timer(Instant::now()).await;
        }
    }

    /// When the observed lease may be taken by local observation: now when
    /// it is free, ours, or was never observed; else at its expiry.
    pub(super) fn lease_available_at(&self, now: Instant) -> Instant {
        match self.elector.observed_record() {
            None => now,
            Some(r) if r.record.is_released() => now,
            Some(r) if r.record.holder_identity == self.config.identity.as_str() => now,
            Some(_) => self.elector.observed_expiry().unwrap_or(now),
        }
    }
}
