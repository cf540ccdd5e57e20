//! The address manager seam: make a VIP present or absent on an interface,
//! resolve the interface, report link and address events.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::model::{Interface, InterfaceSelector, VipAddress, VipSpec};

/// Errors of an address manager.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    /// The named interface does not exist.
    #[error("interface {name:?} not found")]
    NoSuchInterface {
        /// The name looked for.
        name: String,
    },
    /// Auto-detection found no interface or more than one.
    #[error("cannot choose an interface for {vips}: {reason}; candidates: [{}]", candidates.join(", "))]
    Ambiguous {
        /// The VIPs the interface was looked for.
        vips: String,
        /// Why none was chosen.
        reason: String,
        /// What was considered.
        candidates: Vec<String>,
    },
    /// Adding the VIP would make it the only address of its family on the
    /// interface (kube-vip #682: kubelet then adopts the VIP as node IP).
    #[error(
        "refusing to add {vip} to {interface}: it would be the only {family} address there, and kubelet or the CNI would adopt it as the node IP"
    )]
    WouldBeOnlyAddress {
        /// The VIP.
        vip: VipAddress,
        /// The interface.
        interface: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
    /// Permission denied (CAP_NET_ADMIN missing).
    #[error("permission denied on {operation}: CAP_NET_ADMIN is needed")]
    PermissionDenied {
        /// What was attempted.
        operation: String,
    },
    /// The kernel refused the request.
    #[error("{operation} failed: {message}")]
    Kernel {
        /// What was attempted.
        operation: String,
        /// The kernel's answer.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// What [`AddressManager::ensure_present`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The address was not there and was added.
    Added,
    /// The address was there; its lifetime was refreshed.
    Refreshed,
}

/// An event on the VIP's interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The carrier went down (or the link was set down).
    CarrierDown,
    /// The carrier came back.
    CarrierUp,
    /// A VIP address was removed, by someone else or by its lifetime.
    AddressRemoved(IpAddr),
}

/// Makes VIPs present or absent on an interface.
///
/// Implementations: netlink (`vip-arp`) and the in-memory manager of
/// `testutil` (feature `test-util`).
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait AddressManager: Send + Sync + 'static {
    /// Resolve the selector to an interface: the named one, or the one
    /// whose connected prefix contains the VIPs, else the default-route one.
    async fn resolve(
        &self,
        selector: &InterfaceSelector,
        vips: &VipSpec,
    ) -> Result<Interface, AddressError>;

    /// Make `vip` present with preferred lifetime 0 and the given valid
    /// lifetime (whole seconds; `None` means forever), or refresh that
    /// lifetime if it is already there. Idempotent.
    async fn ensure_present(
        &self,
        interface: &Interface,
        vip: &VipAddress,
        valid_lifetime: Option<Duration>,
    ) -> Result<Presence, AddressError>;

    /// Make `vip` absent. Returns whether it was there. Idempotent.
    async fn ensure_absent(
        &self,
        interface: &Interface,
        vip: &VipAddress,
    ) -> Result<bool, AddressError>;

    /// Whether `vip` is on the interface now.
    async fn is_present(
        &self,
        interface: &Interface,
        vip: &VipAddress,
    ) -> Result<bool, AddressError>;

    /// Link and address events of the interface, for the given VIPs.
    async fn subscribe(
        &self,
        interface: &Interface,
        vips: &VipSpec,
    ) -> Result<mpsc::Receiver<LinkEvent>, AddressError>;
}
