//! Announcements and conflicts: the burst on takeover, the periodic
//! refresh, and the bounded defence against foreign claims.
//!
//! [`Announcements`] decides when; the `impl Run` below sends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::run::Run;
use super::{AnnouncePolicy, ControllerEvent, Failure, Role};
use crate::announce::Conflict;

/// When to announce next, how much of the burst is left, and when each VIP
/// was last defended.
#[derive(Debug)]
pub(super) struct Announcements {
    policy: AnnouncePolicy,
    defence_interval: Duration,
    next: Option<Instant>,
    burst_left: u32,
    last_defence: HashMap<IpAddr, Instant>,
}

impl Announcements {
    pub(super) fn new(policy: AnnouncePolicy, defence_interval: Duration) -> Self {
        Self {
            policy,
            defence_interval,
            next: None,
            burst_left: 0,
            last_defence: HashMap::new(),
        }
    }

    /// The next announcement, if any is scheduled.
    pub(super) fn next(&self) -> Option<Instant> {
        self.next
    }

    /// Whether an announcement is due at `now`.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.next.is_some_and(|a| now >= a)
    }

    /// The next round starts a burst.
    pub(super) fn start_burst(&mut self) {
        self.burst_left = self.policy.burst_count;
    }

    /// No more announcements (leadership or the VIP went).
    pub(super) fn stop(&mut self) {
        self.next = None;
        self.burst_left = 0;
    }

    /// Nothing scheduled until the next round is sent (the VIPs are
    /// away); the burst left is kept.
    pub(super) fn pause(&mut self) {
        self.next = None;
    }

    /// A round was sent at `now`: the rest of the burst, then the refresh.
    pub(super) fn sent(&mut self, now: Instant) {
        self.burst_left = self.burst_left.saturating_sub(1);
        self.next = Some(if self.burst_left > 0 {
            now + self.policy.burst_spacing
        } else {
            now + self.policy.refresh
        });
    }

    /// Whether `address` may be defended at `now` (at most once per
    /// defence interval); notes the defence when it may.
    pub(super) fn defend(&mut self, address: IpAddr, now: Instant) -> bool {
        let may = self
            .last_defence
            .get(&address)
            .is_none_or(|t| now >= *t + self.defence_interval);
        if may {
            self.last_defence.insert(address, now);
        }
        may
    }
}

impl Run {
    /// One announcement of every VIP; schedules the next. Nothing while
    /// the VIPs are not on the interface (never claim what the kernel
    /// would not answer for).
    pub(super) async fn announce_all(&mut self) {
        let Some(iface) = self.vips.interface.clone() else {
            return;
        };
        if !self.vips.present {
            self.announcements.pause();
            return;
        }
        for vip in self.vips.list.clone() {
            match self.announcer.announce(&iface, vip.addr()).await {
                Ok(()) => {
                    self.count(|c| c.announcements += 1);
                    self.emit(ControllerEvent::Announced {
                        address: vip.addr(),
                    });
                }
                Err(e) => self.emit(ControllerEvent::AnnounceFailed {
                    address: vip.addr(),
                    error: Failure::new("announcing", e),
                }),
            }
        }
        self.announcements.sent(Instant::now());
    }

    /// A foreign claim of one of our VIPs: counted, and defended at a
    /// bounded rate while leading.
    pub(super) async fn on_claim(&mut self, c: Conflict) {
        if self.lease.role != Role::Leader {
            return;
        }
        self.count(|k| k.conflicts += 1);
        let address = c.address;
        self.emit(ControllerEvent::Conflict(c));
        let Some(iface) = self.vips.interface.clone() else {
            return;
        };
        if self.announcements.defend(address, Instant::now())
            && self.announcer.announce(&iface, address).await.is_ok()
        {
            self.count(|k| {
                k.defences += 1;
                k.announcements += 1;
            });
            self.emit(ControllerEvent::Defended { address });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> AnnouncePolicy {
        AnnouncePolicy {
            burst_count: 3,
            burst_spacing: 100 * MS,
            refresh: 10_000 * MS,
        }
    }

    #[test]
    fn a_burst_then_the_refresh() {
        let t = Instant::now();
        let mut a = Announcements::new(policy(), 500 * MS);
        assert_eq!(a.next(), None);
        assert!(!a.due(t));
        a.start_burst();
        let spacing: Vec<_> = (0..4)
            .map(|i| {
                let now = t + i * MS;
                a.sent(now);
                a.next().unwrap() - now
            })
            .collect();
        assert_eq!(spacing, [100 * MS, 100 * MS, 10_000 * MS, 10_000 * MS]);
        assert!(a.due(t + 10_003 * MS));
        a.stop();
        assert_eq!(a.next(), None);
        a.sent(t);
        assert_eq!(
            a.next(),
            Some(t + 10_000 * MS),
            "a stopped burst stays stopped"
        );
    }

    #[test]
    fn defence_is_rate_limited_per_address() {
        let t = Instant::now();
        let (x, y): (IpAddr, IpAddr) = (
            "198.18.0.1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        );
        let mut a = Announcements::new(policy(), 500 * MS);
        assert!(a.defend(x, t));
        assert!(!a.defend(x, t + 499 * MS));
        assert!(a.defend(y, t + 499 * MS), "each address on its own");
        assert!(a.defend(x, t + 500 * MS));
    }
}
