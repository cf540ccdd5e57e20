//! The VIPs on the interface: which, where, whether they are present and
//! until when the kernel keeps them (their valid lifetime, invariant 8),
//! the carrier, and what a link event asks of the controller.
//!
//! [`Vips`] decides; the `impl Run` below adds, refreshes and removes.

use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::run::Run;
use super::{ControllerConfig, ControllerEvent, Failure, Role};
use crate::address::{LinkEvent, Presence};
use crate::model::{Interface, VipAddress};

/// The VIPs and the interface they live on.
#[derive(Debug)]
pub(super) struct Vips {
    /// The VIPs.
    pub(super) list: Vec<VipAddress>,
    /// Once resolved.
    pub(super) interface: Option<Interface>,
    /// The VIPs are on the interface (as this node put them).
    pub(super) present: bool,
    /// The earliest moment the kernel may remove the VIPs: when the last
    /// refresh was sent plus the lifetime it set.
    pub(super) expire: Option<Instant>,
    /// Leader (fast failover): the VIP went (carrier loss, a removal) and
    /// comes back only after a successful renewal.
    pub(super) readd_pending: bool,
    carrier_down_since: Option<Instant>,
    lease_duration: Duration,
    kernel_lag: Duration,
    lifetime_margin: Duration,
    carrier_grace: Duration,
}

/// What a link event asks of a leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkAction {
    /// Nothing.
    Nothing,
    /// Fast failover, carrier lost: withdraw the VIPs (keeping the lease)
    /// until a renewal shows nobody took over.
    Withdraw,
    /// Fast failover: put the VIPs back only after a successful renewal,
    /// renewing at once (stopping the heartbeats first, if asked).
    ReaddAfterRenewal {
        /// Stop sending heartbeats now.
        stop_beats: bool,
    },
    /// Put the VIPs back now, announcing as a burst (always, if asked;
    /// else only when one had to be re-added).
    Restore {
        /// Burst even if nothing was re-added.
        burst: bool,
    },
}

impl Vips {
    pub(super) fn new(config: &ControllerConfig) -> Self {
        Self {
            list: config.vips.addresses().to_vec(),
            interface: None,
            present: false,
            expire: None,
            readd_pending: false,
            carrier_down_since: None,
            lease_duration: config.timings.lease_duration(),
            kernel_lag: config.kernel_lag,
            lifetime_margin: config.lifetime_margin,
            carrier_grace: config.carrier_grace,
        }
    }

    /// The address lifetime to set at `now`, given the last renewal's
    /// send time: it ends, with the kernel's lag, before anyone else may
    /// take the lease. Whole seconds; `None` when there is no room left.
    pub(super) fn lifetime(&self, renew_sent: Option<Instant>, now: Instant) -> Option<Duration> {
        let end = renew_sent? + self.lease_duration;
        let room = end
            .checked_duration_since(now)?
            .checked_sub(self.kernel_lag + self.lifetime_margin)?;
        let secs = room.as_secs();
        (secs >= 1).then(|| Duration::from_secs(secs))
    }

    /// The VIPs are on the interface until at least `expire`.
    pub(super) fn placed(&mut self, expire: Option<Instant>) {
        self.present = true;
        self.expire = expire;
    }

    /// The VIPs are off the interface.
    pub(super) fn gone(&mut self) {
        self.present = false;
        self.expire = None;
    }

    /// Whether the interface has carrier.
    pub(super) fn carrier_up(&self) -> bool {
        self.carrier_down_since.is_none()
    }

    /// When a leader whose carrier stays down steps down.
    pub(super) fn carrier_deadline(&self) -> Option<Instant> {
        self.carrier_down_since.map(|s| s + self.carrier_grace)
    }

    /// Whether `addr` is one of the VIPs.
    pub(super) fn holds(&self, addr: IpAddr) -> bool {
        self.list.iter().any(|v| v.addr() == addr)
    }

    /// A link event at `now`: the carrier's new state when it changed, and
    /// what a node in `role` (with fast failover `fast`) must do.
    pub(super) fn on_link(
        &mut self,
        ev: &LinkEvent,
        role: Role,
        fast: bool,
        now: Instant,
    ) -> (Option<bool>, LinkAction) {
        let leader = role == Role::Leader;
        match ev {
            LinkEvent::CarrierDown => {
                let changed = self.carrier_down_since.is_none();
                if changed {
                    self.carrier_down_since = Some(now);
                }
                // Followers take over within milliseconds of our silence:
                // a link that comes back must not bring a stale VIP with
                // it. It returns after a renewal.
                let action = if fast && leader {
                    LinkAction::Withdraw
                } else {
                    LinkAction::Nothing
                };
                (changed.then_some(false), action)
            }
            LinkEvent::CarrierUp => {
                let changed = self.carrier_down_since.take().is_some();
                let action = match (leader, fast) {
                    (false, _) => LinkAction::Nothing,
                    // Never from memory: renew first; a follower may have
                    // taken over meanwhile.
                    (true, true) => LinkAction::ReaddAfterRenewal { stop_beats: false },
                    // A link-down may have flushed addresses (IPv6 by
                    // default): put them back, then burst again, since the
                    // segment may have forgotten us.
                    (true, false) => LinkAction::Restore { burst: true },
                };
                (changed.then_some(true), action)
            }
            LinkEvent::AddressRemoved(addr) => {
                // While the carrier is down, carrier-up puts it back.
                let action = if !leader || !self.carrier_up() || !self.holds(*addr) {
                    LinkAction::Nothing
                } else if fast {
                    // Gone by its lifetime (a stall) or by someone else:
                    // back only after a successful renewal.
                    LinkAction::ReaddAfterRenewal { stop_beats: true }
                } else {
                    LinkAction::Restore { burst: false }
                };
                (None, action)
            }
        }
    }
}

impl Run {
    /// Put every VIP on the interface with a fresh lifetime. Returns
    /// whether any had to be (re-)added, or `Err` if the invariant cannot
    /// be kept.
    pub(super) async fn refresh_addresses(&mut self, first: bool) -> Result<bool, ()> {
        let Some(iface) = self.vips.interface.clone() else {
            return Err(());
        };
        let mut added = false;
        let mut earliest: Option<Instant> = None;
        for vip in self.vips.list.clone() {
            if !self.elector.is_leading(Instant::now()) {
                return Err(());
            }
            let Some(lifetime) = self
                .vips
                .lifetime(self.elector.last_renew_sent(), Instant::now())
            else {
                self.emit(ControllerEvent::Error {
                    error: Failure::plain(
                        "no room left for the VIP's lifetime before the lease may be taken",
                    ),
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
                        error: Failure::new(format!("adding {vip} to {}", iface.name), e),
                    });
                    return Err(());
                }
            }
        }
        self.vips.placed(earliest);
        Ok(added)
    }

    /// Remove every VIP from the interface (`why` words a failure);
    /// returns those removed and the failures.
    pub(super) async fn remove_addresses(&mut self, why: &str) -> (Vec<IpAddr>, Vec<Failure>) {
        let mut removed = vec![];
        let mut errors = vec![];
        if let Some(iface) = self.vips.interface.clone() {
            for vip in self.vips.list.clone() {
                match self.addresses.ensure_absent(&iface, &vip).await {
                    Ok(true) => {
                        removed.push(vip.addr());
                        self.emit(ControllerEvent::AddressRemoved {
                            address: vip.addr(),
                            stale: false,
                        });
                    }
                    Ok(false) => {}
                    Err(e) => {
                        let error = Failure::new(format!("removing {vip}{why}"), e);
                        self.emit(ControllerEvent::Error {
                            error: error.clone(),
                        });
                        errors.push(error);
                    }
                }
            }
        }
        self.vips.gone();
        (removed, errors)
    }

    /// Invariant 3: a follower holds no VIP.
    pub(super) async fn reconcile_follower(&mut self) {
        let Some(iface) = self.vips.interface.clone() else {
            return;
        };
        for vip in self.vips.list.clone() {
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
                        error: Failure::new(format!("removing stale {vip}"), e),
                    }),
                },
                Err(e) => self.emit(ControllerEvent::Error {
                    error: Failure::new(format!("checking {vip}"), e),
                }),
            }
        }
        self.vips.present = false;
    }

    /// A link or address event: report the carrier, carry out the action.
    pub(super) async fn on_link(&mut self, ev: LinkEvent) {
        let (carrier, action) =
            self.vips
                .on_link(&ev, self.lease.role, self.fast.on(), Instant::now());
        if let Some(up) = carrier {
            self.update_status(|s| s.carrier_up = up);
            self.emit(ControllerEvent::CarrierChanged { up });
        }
        match action {
            LinkAction::Nothing => {}
            LinkAction::Withdraw => self.withdraw_until_renewed().await,
            LinkAction::ReaddAfterRenewal { stop_beats } => {
                if stop_beats {
                    self.beacon.stop();
                }
                self.vips.readd_pending = true;
                self.lease.next_renew = Instant::now();
            }
            LinkAction::Restore { burst } => {
                self.keep_addresses(burst).await;
            }
        }
    }

    /// Fast failover, on carrier loss: stop beating and announcing and
    /// remove the VIPs, but keep the lease; the next successful renewal
    /// puts them back (or shows that a follower took over).
    async fn withdraw_until_renewed(&mut self) {
        self.beacon.stop();
        self.announcements.stop();
        self.vips.readd_pending = true;
        if self.vips.interface.is_none() {
            return;
        }
        self.remove_addresses(" after carrier loss").await;
        self.update_status(|s| s.addresses_present = false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{InterfaceSelector, NodeIdentity, Timings, VipSpec};

    const S: Duration = Duration::from_secs(1);

    fn vips() -> Vips {
        let mut config = ControllerConfig::new(
            NodeIdentity::new("a").unwrap(),
            "198.18.0.10".parse::<VipSpec>().unwrap(),
            InterfaceSelector::Auto,
            Timings::new(15 * S, 10 * S, 2 * S).unwrap(),
        );
        config.kernel_lag = S;
        config.lifetime_margin = S;
        config.carrier_grace = 3 * S;
        Vips::new(&config)
    }

    #[test]
    fn the_lifetime_ends_before_the_lease_may_be_taken() {
        let v = vips();
        let t = Instant::now();
        assert_eq!(v.lifetime(None, t), None);
        // 15 s lease, 2 s of lag and margin: 13 s, less what has passed,
        // rounded down to whole seconds.
        assert_eq!(v.lifetime(Some(t), t), Some(13 * S));
        assert_eq!(v.lifetime(Some(t), t + S / 2), Some(12 * S));
        assert_eq!(v.lifetime(Some(t), t + 12 * S), Some(S));
        assert_eq!(v.lifetime(Some(t), t + 12 * S + S / 2), None);
        assert_eq!(v.lifetime(Some(t), t + 20 * S), None);
    }

    #[test]
    fn link_events_by_role_and_mode() {
        let t = Instant::now();
        let mut v = vips();
        let vip: IpAddr = "198.18.0.10".parse().unwrap();
        let other: IpAddr = "198.18.0.11".parse().unwrap();
        let removed = LinkEvent::AddressRemoved(vip);
        assert_eq!(
            v.on_link(&removed, Role::Leader, false, t),
            (None, LinkAction::Restore { burst: false })
        );
        assert_eq!(
            v.on_link(&removed, Role::Leader, true, t),
            (None, LinkAction::ReaddAfterRenewal { stop_beats: true })
        );
        assert_eq!(
            v.on_link(&LinkEvent::AddressRemoved(other), Role::Leader, false, t)
                .1,
            LinkAction::Nothing
        );
        assert_eq!(
            v.on_link(&removed, Role::Follower, false, t).1,
            LinkAction::Nothing
        );
        // Carrier down: reported once; a fast leader withdraws.
        assert_eq!(
            v.on_link(&LinkEvent::CarrierDown, Role::Leader, true, t),
            (Some(false), LinkAction::Withdraw)
        );
        assert_eq!(
            v.on_link(&LinkEvent::CarrierDown, Role::Leader, false, t + S),
            (None, LinkAction::Nothing)
        );
        assert_eq!(v.carrier_deadline(), Some(t + 3 * S), "from the first loss");
        // While it is down, a removal waits for carrier-up.
        assert_eq!(
            v.on_link(&removed, Role::Leader, false, t).1,
            LinkAction::Nothing
        );
        assert_eq!(
            v.on_link(&LinkEvent::CarrierUp, Role::Leader, true, t),
            (
                Some(true),
                LinkAction::ReaddAfterRenewal { stop_beats: false }
            )
        );
        assert_eq!(v.carrier_deadline(), None);
        assert_eq!(
            v.on_link(&LinkEvent::CarrierUp, Role::Leader, false, t),
            (None, LinkAction::Restore { burst: true })
        );
    }
}
