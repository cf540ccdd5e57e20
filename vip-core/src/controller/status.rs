//! What the controller tells the world: its role, why it stepped down,
//! the events it emits, its counters and status, and its shutdown report.

use std::error::Error;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::announce::Conflict;
use crate::model::{Interface, MacAddr};

/// The controller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Resolving the interface and reading the record.
    Starting,
    /// Not leading; never holds the VIP.
    Follower,
    /// Holds the lease and the VIP.
    Leader,
    /// Shutting down.
    Stopping,
    /// Stopped.
    Stopped,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Starting => "starting",
            Self::Follower => "follower",
            Self::Leader => "leader",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        })
    }
}

/// Why the leader stepped down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDownReason {
    /// No successful renewal within the renew deadline.
    RenewDeadline,
    /// Someone else holds the lease now.
    LeaseLost,
    /// The local control plane is unhealthy.
    Unhealthy,
    /// The node is cordoned and another node can take over.
    Cordoned,
    /// The VIP's interface has had no carrier for the carrier grace.
    CarrierDown,
    /// The address could not be added or kept.
    AddressFailure,
    /// Shutdown was requested.
    Shutdown,
    /// A heartbeat of a higher term from another holder was heard: a
    /// follower took the lease over (fast failover).
    Superseded,
}

impl std::fmt::Display for StepDownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::RenewDeadline => "renew deadline passed",
            Self::LeaseLost => "lease lost to another holder",
            Self::Unhealthy => "local API server unhealthy",
            Self::Cordoned => "node cordoned",
            Self::CarrierDown => "carrier down",
            Self::AddressFailure => "address could not be kept",
            Self::Shutdown => "shutdown",
            Self::Superseded => "superseded by a newer leader's heartbeat",
        })
    }
}

/// Something the controller did or saw; delivered to an [`Observer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerEvent {
    /// The lease was acquired (or kept after a restart).
    Acquired {
        /// Whether it was taken from someone else or from nobody (`false`:
        /// this node already held it, e.g. after a restart).
        new: bool,
    },
    /// A renewal succeeded.
    Renewed {
        /// Its round trip.
        latency: Duration,
    },
    /// A renewal failed.
    RenewFailed {
        /// Why.
        error: Failure,
    },
    /// Leadership ended.
    SteppedDown {
        /// Why.
        reason: StepDownReason,
        /// Whether the lease was released.
        released: bool,
    },
    /// A VIP was announced once.
    Announced {
        /// The VIP.
        address: IpAddr,
    },
    /// An announcement failed.
    AnnounceFailed {
        /// The VIP.
        address: IpAddr,
        /// Why.
        error: Failure,
    },
    /// A VIP was added.
    AddressAdded {
        /// The VIP.
        address: IpAddr,
    },
    /// A VIP was removed (step-down or stale).
    AddressRemoved {
        /// The VIP.
        address: IpAddr,
        /// Whether it was a stale address found on a follower.
        stale: bool,
    },
    /// A VIP removed by someone else was put back.
    AddressRestored {
        /// The VIP.
        address: IpAddr,
    },
    /// Another host claims one of our VIPs.
    Conflict(Conflict),
    /// A defensive announcement was sent for a claimed VIP.
    Defended {
        /// The VIP.
        address: IpAddr,
    },
    /// The local control plane's health changed.
    HealthChanged {
        /// Healthy now.
        healthy: bool,
        /// The last failure, when unhealthy.
        reason: Option<String>,
    },
    /// The carrier changed.
    CarrierChanged {
        /// Up now.
        up: bool,
    },
    /// The record's holder changed, as observed.
    HolderChanged {
        /// The new holder (empty when released).
        holder: String,
    },
    /// This leader sent a heartbeat.
    HeartbeatSent,
    /// A heartbeat of this election was heard from another node.
    HeartbeatHeard {
        /// The holder it names.
        holder: String,
        /// Its term.
        term: u32,
    },
    /// The holder's heartbeats stopped but its VIP still answered a probe:
    /// no early takeover (the daemon is dead or hung, its host is up).
    FastTakeoverDeclined {
        /// The silent holder.
        holder: String,
        /// Who answered for the VIP.
        answered_by: MacAddr,
    },
    /// The holder's heartbeats stopped, nobody answered for the VIP, and
    /// this node took the lease by compare-and-swap (followed by
    /// [`Acquired`](Self::Acquired)).
    FastTakeover {
        /// The silent holder replaced.
        from: String,
        /// This node's term.
        term: u32,
        /// How long the holder had been silent.
        silent: Duration,
    },
    /// This leader heard a heartbeat of a higher term from another holder
    /// and yields (followed by [`SteppedDown`](Self::SteppedDown)).
    Yielded {
        /// The new holder.
        to: String,
        /// Its term.
        term: u32,
    },
    /// A non-fatal error (interface resolution, removal, subscription).
    Error {
        /// What failed.
        error: Failure,
    },
}

/// A failure the controller reports: what it was doing, and why (the
/// error it got, as its [`source`](Error::source)). Displays as what it
/// was doing; [`chain`](Self::chain) adds every cause, for logs.
#[derive(Debug, Clone)]
pub struct Failure {
    what: String,
    cause: Option<Arc<dyn Error + Send + Sync>>,
}

impl Failure {
    /// Doing `what` failed with `cause`.
    pub fn new(what: impl Into<String>, cause: impl Error + Send + Sync + 'static) -> Self {
        Self {
            what: what.into(),
            cause: Some(Arc::new(cause)),
        }
    }

    /// A failure of its own, without a cause.
    pub fn plain(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            cause: None,
        }
    }

    /// What the controller was doing.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The failure and every cause, joined by `: `.
    pub fn chain(&self) -> String {
        let mut out = self.what.clone();
        let mut next = self.source();
        while let Some(e) = next {
            out.push_str(": ");
            out.push_str(&e.to_string());
            next = e.source();
        }
        out
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

impl Error for Failure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cause.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// Equal when they read the same, causes included.
impl PartialEq for Failure {
    fn eq(&self, other: &Self) -> bool {
        self.chain() == other.chain()
    }
}

impl Eq for Failure {}

impl From<&str> for Failure {
    fn from(what: &str) -> Self {
        Self::plain(what)
    }
}

impl From<String> for Failure {
    fn from(what: String) -> Self {
        Self::plain(what)
    }
}

/// Receives every [`ControllerEvent`], synchronously, in order (metrics,
/// logs, tests). Keep it cheap.
pub trait Observer: Send + Sync + 'static {
    /// One event.
    fn on_event(&self, event: &ControllerEvent);
}

/// Counters of what the controller did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Leaderships begun.
    pub acquisitions: u64,
    /// Successful renewals.
    pub renewals: u64,
    /// Failed renewal attempts.
    pub renewal_failures: u64,
    /// Leaderships ended.
    pub step_downs: u64,
    /// Single announcements sent.
    pub announcements: u64,
    /// Foreign claims seen while leading.
    pub conflicts: u64,
    /// Defensive announcements.
    pub defences: u64,
    /// VIPs put back after someone removed them.
    pub address_restores: u64,
    /// Stale VIPs removed while following.
    pub stale_removals: u64,
    /// Leaderships taken by fast failover.
    pub fast_takeovers: u64,
    /// Fast takeovers not made because the VIP still answered.
    pub fast_takeovers_declined: u64,
    /// Leaderships given up on hearing a higher term.
    pub yields: u64,
}

/// What observers see of the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub identity: String,
    /// The role.
    pub role: Role,
    /// Since when.
    pub role_since: Instant,
    /// The holder as last observed (empty: released; `None`: unknown).
    pub holder: Option<String>,
    /// The interface, once resolved.
    pub interface: Option<Interface>,
    /// When the last successful renewal was sent.
    pub last_renewal: Option<Instant>,
    /// Until when this node may lead without another renewal.
    pub valid_until: Option<Instant>,
    /// The local control plane's health (`None` until first checked).
    pub healthy: Option<bool>,
    /// This node is cordoned.
    pub cordoned: bool,
    /// The interface has carrier.
    pub carrier_up: bool,
    /// The VIPs are on this node.
    pub addresses_present: bool,
    /// The last time the loop made progress (for a liveness probe).
    pub last_progress: Instant,
    /// Counters.
    pub counters: Counters,
}

/// What shutdown did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// The node was leading when asked to stop.
    pub was_leader: bool,
    /// VIPs removed.
    pub removed: Vec<IpAddr>,
    /// The lease was released.
    pub released: bool,
    /// What failed on the way.
    pub errors: Vec<Failure>,
    /// How long it took.
    pub elapsed: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_its_cause_as_source_and_logs_the_chain() {
        let io = std::io::Error::other("disk on fire");
        let f = Failure::new("adding 198.18.0.10/32 to eth0", io);
        assert_eq!(f.to_string(), "adding 198.18.0.10/32 to eth0");
        assert_eq!(f.source().unwrap().to_string(), "disk on fire");
        assert_eq!(f.chain(), "adding 198.18.0.10/32 to eth0: disk on fire");
        let plain = Failure::from("no room left");
        assert!(plain.source().is_none());
        assert_eq!(plain.chain(), "no room left");
        assert_eq!(f.clone(), f);
        assert_ne!(Failure::plain(f.what()), f, "the cause counts");
    }
}
