//! The heartbeat seam: the leader's liveness on the segment, for fenced
//! fast failover.
//!
//! While it leads, a node sends a small layer-2 [`Heartbeat`] every
//! heartbeat interval on the VIP's interface. Followers listen and note,
//! per holder and term, when they last heard one. A follower that has heard
//! the current holder's term and then misses a few heartbeats probes the
//! VIP on the segment; only when nobody answers does it try to take the
//! lease, by a compare-and-swap on the record it last observed. The lease
//! stays the only authority: no path adds the VIP without a successful
//! write, and a holder that sends no heartbeats (a kube-vip, the feature
//! off, a switch that drops them) is replaced only when its lease expires.
//!
//! Heartbeats are authenticated (version 2 frames, see
//! [`crate::heartbeat_auth`]): a channel delivers only beats whose code
//! verifies under the cluster's key and whose election scope
//! ([`crate::heartbeat_scope`]) is this cluster's, and counts every other
//! frame in a [`HeartbeatDrops`] table. The controller then drops replays
//! ([`crate::heartbeat_replay`]). A node without the key sends and trusts no
//! beat: fast failover stays off and the lease's expiry fails over.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::announce::AnnounceError;
use crate::heartbeat_auth::HeartbeatKey;
use crate::heartbeat_drops::HeartbeatDrops;
use crate::model::{Interface, MacAddr};

/// Errors of a [`HeartbeatChannel`].
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    /// The heartbeat cannot be put in a frame (an empty or over-long
    /// holder, an interval out of range); nothing was sent.
    #[error("the heartbeat of {holder:?} cannot be framed for {interface}")]
    Frame {
        /// The interface.
        interface: String,
        /// The holder the heartbeat names.
        holder: String,
        /// What the wire format refused.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The packet socket failed (opening it, sending).
    #[error(transparent)]
    Socket(#[from] AnnounceError),
}

/// Which election a heartbeat belongs to: the 64-bit FNV-1a hash of the
/// lock's name (`namespace/name` for a Lease), so that two clusters on
/// one segment never mistake each other's heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ElectionId(pub u64);

impl ElectionId {
    /// The id of the lock named `name` (e.g. `kube-system/plndr-cp-lock`).
    pub fn of(name: &str) -> Self {
        Self(fnv1a64(name))
    }
}

/// FNV-1a, 64 bits.
pub fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The heartbeat's name for a record version (the Lease's
/// `resourceVersion`): its FNV-1a hash.
pub fn version_tag(version: &str) -> u64 {
    fnv1a64(version)
}

impl std::fmt::Display for ElectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One heartbeat, as the leader sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The election.
    pub election: ElectionId,
    /// The holder identity of the record the sender holds.
    pub holder: String,
    /// The sender's term: `leaseTransitions` of the record it holds.
    pub term: u32,
    /// Counts up from 0 within one term.
    pub sequence: u64,
    /// [`version_tag`] of the record version the sender last wrote (its
    /// latest renewal). A follower heeds a heartbeat only for the version
    /// it observed: a holder that wrote a new version after its VIP went
    /// away must be heard again before it may be replaced early.
    pub version: u64,
    /// The sender's heartbeat interval, so that followers count misses at
    /// the sender's own rate.
    pub interval: Duration,
}

/// A heartbeat heard on the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeardBeat {
    /// The heartbeat.
    pub beat: Heartbeat,
    /// The Ethernet source it came from.
    pub from: MacAddr,
}

impl Heartbeat {
    /// Whether `other` is this beat but for its sequence (what a sender's
    /// pre-built frame depends on).
    pub fn same_but_sequence(&self, other: &Heartbeat) -> bool {
        self.election == other.election
            && self.term == other.term
            && self.version == other.version
            && self.interval == other.interval
            && self.holder == other.holder
    }
}

/// A synchronous sender of one leader's heartbeats on one interface and
/// key, driven from a dedicated thread: one `sendto` per beat, no future,
/// no allocation while only the sequence changes.
pub trait BeatSink: Send + 'static {
    /// Send `beat` now (a full socket buffer is an error, not a wait).
    fn send(&mut self, beat: &Heartbeat) -> Result<(), HeartbeatError>;
}

/// Sends and hears authenticated heartbeats on an interface.
///
/// Implementations: `vip_arp::SignedHeartbeats` (`AF_PACKET`, version 2
/// frames) and the in-memory segment of `testutil` (feature `test-util`).
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait HeartbeatChannel: Send + Sync + 'static {
    /// Send one heartbeat on `interface`, signed with `key`. A channel may
    /// keep the signed frame of the last (holder, term, record version)
    /// and only rewrite the sequence and the code.
    async fn send(
        &self,
        interface: &Interface,
        beat: &Heartbeat,
        key: &HeartbeatKey,
    ) -> Result<(), HeartbeatError>;

    /// Heartbeats of `election` heard on `interface` from other hosts
    /// whose code verifies under `key` (the interface's own frames are
    /// never delivered). Every other frame is counted in `drops` by reason
    /// and sender. A full receiver drops beats; a closed one ends the
    /// subscription.
    async fn subscribe(
        &self,
        interface: &Interface,
        key: &HeartbeatKey,
        election: ElectionId,
        drops: Arc<HeartbeatDrops>,
    ) -> Result<mpsc::Receiver<HeardBeat>, HeartbeatError>;

    /// A [`BeatSink`] on `interface` signing with `key`, for the leader's
    /// dedicated sender thread (opened here, on the caller's thread and so
    /// in its network namespace). `None`, the default: the controller
    /// sends through [`send`](Self::send) from a task on tokio's clock
    /// (in-memory channels, paused-time tests).
    fn beat_sink(
        &self,
        _interface: &Interface,
        _key: &HeartbeatKey,
    ) -> Result<Option<Box<dyn BeatSink>>, HeartbeatError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn election_ids_are_fnv1a_64() {
        // FNV-1a 64 test vectors.
        assert_eq!(ElectionId::of("").0, 0xcbf2_9ce4_8422_2325);
        assert_eq!(ElectionId::of("a").0, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(ElectionId::of("foobar").0, 0x8594_4171_f739_67e8);
        assert_ne!(
            ElectionId::of("kube-system/plndr-cp-lock"),
            ElectionId::of("kube-system/kube-vip-cp")
        );
        assert_eq!(ElectionId(0xab).to_string(), "00000000000000ab");
    }
}
