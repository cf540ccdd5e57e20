//! The announcer seam: tell the segment where a VIP lives, probe whether an
//! address is in use, and report foreign claims of our VIPs.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::model::{Interface, MacAddr};

/// Errors of an announcer.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// Permission denied (CAP_NET_RAW missing).
    #[error("permission denied opening a packet socket on {interface}: CAP_NET_RAW is needed")]
    PermissionDenied {
        /// The interface.
        interface: String,
    },
    /// A socket operation failed.
    #[error("{operation} on {interface} failed")]
    Io {
        /// What was attempted.
        operation: &'static str,
        /// The interface.
        interface: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Another host claiming one of our VIPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The VIP claimed.
    pub address: IpAddr,
    /// The MAC address that claimed it.
    pub mac: MacAddr,
}

/// Announces VIPs on the segment and listens for other claims.
///
/// Implementations: raw AF_PACKET sockets (`vip-arp`) and the recording
/// announcer of `testutil` (feature `test-util`).
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait Announcer: Send + Sync + 'static {
    /// Announce `vip` once: for IPv4 a gratuitous ARP in both forms (request
    /// and reply), for IPv6 an unsolicited neighbour advertisement.
    async fn announce(&self, interface: &Interface, vip: IpAddr) -> Result<(), AnnounceError>;

    /// Ask the segment who has `address` (RFC 5227 probe for IPv4,
    /// neighbour solicitation for IPv6); the MAC that answered within
    /// `timeout`, or `None`.
    async fn probe(
        &self,
        interface: &Interface,
        address: IpAddr,
        timeout: Duration,
    ) -> Result<Option<MacAddr>, AnnounceError>;

    /// Claims of any of `vips` from a MAC other than the interface's own.
    async fn subscribe_conflicts(
        &self,
        interface: &Interface,
        vips: &[IpAddr],
    ) -> Result<mpsc::Receiver<Conflict>, AnnounceError>;
}
