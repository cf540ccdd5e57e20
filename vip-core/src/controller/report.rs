//! What the controller tells the world as it runs: the status channel and
//! the observer (with the logs of the events that matter to an operator).

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use super::run::Run;
use super::{ControllerEvent, Counters, Observer, Role, Status};

/// The status channel and the observer.
pub(super) struct Report {
    pub(super) status: watch::Sender<Status>,
    pub(super) observer: Option<Arc<dyn Observer>>,
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Report")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl Report {
    /// Log `event` and deliver it to the observer.
    pub(super) fn emit(&self, event: ControllerEvent) {
        match &event {
            ControllerEvent::SteppedDown { reason, released } => {
                tracing::warn!(%reason, released, "stepped down: leadership ended")
            }
            ControllerEvent::Acquired { new } => tracing::info!(new, "became leader"),
            ControllerEvent::Conflict(c) => {
                tracing::warn!(address = %c.address, mac = %c.mac, "another host claims our VIP")
            }
            ControllerEvent::HealthChanged { healthy, reason } => {
                tracing::info!(
                    healthy,
                    reason = reason.as_deref().unwrap_or(""),
                    "local API server health changed"
                )
            }
            ControllerEvent::HolderChanged { holder } => {
                tracing::info!(%holder, "lease holder changed")
            }
            ControllerEvent::AddressRemoved {
                address,
                stale: true,
            } => {
                tracing::warn!(%address, "removed a stale VIP from this follower")
            }
            ControllerEvent::AddressRestored { address } => {
                tracing::warn!(%address, "VIP was removed by someone else; restored")
            }
            ControllerEvent::RenewFailed { error } => {
                tracing::warn!(error = %error.chain(), "renewal failed")
            }
            ControllerEvent::Error { error } => tracing::warn!(error = %error.chain(), "error"),
            ControllerEvent::CarrierChanged { up } => tracing::info!(up, "carrier changed"),
            other => tracing::debug!(event = ?other, "controller event"),
        }
        self.event(&event);
    }

    /// Deliver `event` to the observer only (no log: frequent events).
    pub(super) fn event(&self, event: &ControllerEvent) {
        if let Some(o) = &self.observer {
            o.on_event(event);
        }
    }

    /// Change the status (and note the progress).
    pub(super) fn update(&self, f: impl FnOnce(&mut Status)) {
        self.status.send_modify(|s| {
            f(s);
            s.last_progress = Instant::now();
        });
    }
}

impl Run {
    /// [`Report::emit`].
    pub(super) fn emit(&self, event: ControllerEvent) {
        self.report.emit(event);
    }

    /// [`Report::update`].
    pub(super) fn update_status(&self, f: impl FnOnce(&mut Status)) {
        self.report.update(f);
    }

    /// Count something in the status.
    pub(super) fn count(&self, f: impl FnOnce(&mut Counters)) {
        self.update_status(|s| f(&mut s.counters));
    }

    /// Take `role` and report it with the lease's and the VIPs' state.
    pub(super) fn set_role(&mut self, role: Role) {
        self.lease.role = role;
        let holder = self.elector.observed_holder().map(str::to_string);
        let (last, valid) = (self.elector.last_renew_sent(), self.elector.valid_until());
        let present = self.vips.present;
        self.update_status(|s| {
            if s.role != role {
                s.role = role;
                s.role_since = Instant::now();
            }
            s.holder = holder;
            s.last_renewal = last;
            s.valid_until = valid;
            s.addresses_present = present;
        });
    }
}
