//! The follower's round: hold no VIP, follow the record, campaign when the
//! lease is free or expired by local observation (and the cordon lets it).
//! Its fast takeover is in `fast.rs`.

use tokio::time::Instant;

use super::run::Run;
use super::{Role, StepDownReason};
use crate::election::Attempt;

impl Run {
    /// When the follower's regular work (reconcile, poll, campaign) is due.
    pub(super) fn follower_due(&self) -> Instant {
        let available_at = self
            .inputs
            .watching()
            .then(|| self.lease_available_at(Instant::now()));
        self.lease.follower_due(
            self.eligible(),
            available_at,
            self.cordon.campaign_not_before(),
        )
    }

    pub(super) async fn follower_timer(&mut self, now: Instant) {
        self.reconcile_follower().await;
        self.lease.next_renew = now + self.config.timings.retry_period();
        if !self.eligible() {
            self.cordon.lease_not_free();
            return;
        }
        let cordoned = self.cordon.state().cordoned;
        let watching = self.inputs.watching();
        if cordoned && !watching {
            // Poll, to learn whether the lease is free before waiting.
            let before = self.elector.observed_holder().map(str::to_string);
            if self.elector.refresh().await.is_err() {
                return;
            }
            self.note_holder(before);
        }
        let now = Instant::now();
        if self.lease.holding_off(now) {
            return;
        }
        if watching || cordoned {
            if now < self.lease_available_at(now) {
                self.cordon.lease_not_free();
                return;
            }
            let mine = self.elector.observed_holder() == Some(self.config.identity.as_str());
            // Leave a free lease to uncordoned nodes for a while.
            if cordoned && !mine && self.cordon.holds_back(now) {
                return;
            }
        }
        match self.attempt().await {
            Some(Attempt::Leading { acquired }) => self.become_leader(acquired).await,
            Some(Attempt::Held { .. }) => {}
            // A lost race (someone else's write came first) is no failure:
            // the watch or the next poll tells who won, without a pause.
            None if self.lease.lost_race => {}
            None => self.lease.hold_off(Instant::now()),
        }
    }

    /// The watched record changed.
    pub(super) async fn on_record(&mut self) {
        let Some(current) = self.inputs.take_record() else {
            return;
        };
        if self.lease.role == Role::Leader
            && current
                .as_ref()
                .is_some_and(|r| r.record.holder_identity == self.config.identity.as_str())
        {
            // Our own writes, possibly late: the elector knows them already.
            return;
        }
        let before = self.elector.observed_holder().map(str::to_string);
        let was_leading = self.lease.role == Role::Leader;
        self.elector.observe(current, Instant::now());
        self.note_holder(before);
        if was_leading && self.elector.valid_until().is_none() {
            // Someone else holds it now: out at once.
            self.step_down(StepDownReason::LeaseLost, false).await;
            return;
        }
        if self.lease.role == Role::Follower
            && self
                .elector
                .observed_record()
                .is_none_or(|r| r.record.is_released())
        {
            // A released (or deleted) lease is taken at once.
            self.follower_timer(Instant::now()).await;
        }
    }
}
