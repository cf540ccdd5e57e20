//! # vip-core
//!
//! The model, the backend traits, the election engine and the controller of
//! `vip`. No sockets: only tokio time and sync.
//!
//! - [`model`]: VIP addresses, interface selector, timings, node identity.
//! - [`names`]: the one validator of Kubernetes names (DNS labels and
//!   subdomains).
//! - The seams: [`LockBackend`] (the leader record), [`AddressManager`]
//!   (the VIP on an interface), [`Announcer`] (the segment),
//!   [`HealthProbe`] (the local control plane), [`HeartbeatChannel`] (the
//!   leader's liveness on the segment, for fast failover) and
//!   [`CordonWatch`].
//! - [`Elector`]: client-go's leader election over a [`LockBackend`].
//! - [`Controller`]: the state machine that keeps the VIP on exactly one
//!   healthy node.
//! - `testutil` (feature `test-util`): in-memory parts with fault
//!   injection, and mockall mocks of every trait (`Mock*`).
//!
//! ## Embedding
//!
//! A working controller composed from the in-memory parts (feature
//! `test-util`); production code passes the Lease backend of `vip-lease`
//! and the netlink and packet-socket parts of `vip-arp` instead.
//!
//! ```
//! # #[cfg(feature = "test-util")]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::sync::Arc;
//! use vip_core::testutil::{MemoryNetwork, MemoryStore};
//! use vip_core::{Controller, ControllerConfig, InterfaceSelector, MacAddr, NodeIdentity, Role, Timings, VipSpec};
//!
//! let store = MemoryStore::new();
//! let net = MemoryNetwork::default();
//! let (addresses, announcer) = net.node("alpha-1", MacAddr([2, 0, 0, 0, 0, 1]));
//! let config = ControllerConfig::new(
//!     NodeIdentity::new("alpha-1").unwrap(),
//!     "198.18.0.100".parse::<VipSpec>().unwrap(),
//!     InterfaceSelector::named("end0").unwrap(),
//!     Timings::default(),
//! );
//! let handle = Controller::new(config, Arc::new(store.client("alpha-1")), Arc::new(addresses), Arc::new(announcer))
//!     .spawn()
//!     .unwrap();
//! let mut status = handle.status();
//! status.wait_for(|s| s.role == Role::Leader).await.unwrap();
//! assert_eq!(net.holders("198.18.0.100".parse().unwrap()), ["alpha-1"]);
//! assert_eq!(store.current().unwrap().record.holder_identity, "alpha-1");
//!
//! let report = handle.shutdown().await;
//! assert!(report.was_leader && report.released);
//! assert!(net.holders("198.18.0.100".parse().unwrap()).is_empty());
//! # }
//! # #[cfg(not(feature = "test-util"))]
//! # fn main() {}
//! ```
#![deny(missing_docs)]

pub mod address;
pub mod announce;
pub mod backend;
pub mod controller;
pub mod cordon;
pub mod election;
pub mod health;
pub mod heartbeat;
pub mod heartbeat_auth;
#[cfg(any(test, feature = "test-util"))]
pub mod heartbeat_auth_mem;
pub mod heartbeat_drops;
pub mod heartbeat_replay;
pub mod heartbeat_scope;
pub mod model;
pub mod names;
#[cfg(any(test, feature = "test-util"))]
pub mod testutil;

pub use address::{AddressError, AddressManager, LinkEvent, Presence};
pub use announce::{AnnounceError, Announcer, Conflict};
pub use backend::{
    BackendError, LeaderRecord, LockBackend, RecordWatch, VersionedRecord, WatchBackoff, micro_now,
};
pub use controller::{
    AnnouncePolicy, Controller, ControllerConfig, ControllerError, ControllerEvent,
    ControllerHandle, Counters, Failure, FastFailoverPolicy, HealthPolicy, Observer, Role,
    ShutdownReport, Status, StepDownReason,
};
pub use cordon::{CordonState, CordonWatch};
pub use election::{Attempt, ElectionError, Elector};
pub use health::{HealthError, HealthProbe};
pub use heartbeat::{
    BeatSink, ElectionId, HeardBeat, Heartbeat, HeartbeatChannel, HeartbeatError, version_tag,
};
pub use heartbeat_auth::{
    HEARTBEAT_KEY_LEN, HeartbeatAuth, HeartbeatKey, HeartbeatKeyError, HeartbeatKeySource,
    PresharedKey,
};
pub use heartbeat_drops::{DropCounts, DropKind, DropSnapshot, HeartbeatDrops};
pub use heartbeat_replay::{ReplayGuard, is_replay};
pub use heartbeat_scope::{ScopeError, election_scope};
pub use model::{
    Interface, InterfaceSelector, MacAddr, ModelError, NodeIdentity, Timings, VipAddress, VipSpec,
};

#[cfg(any(test, feature = "test-util"))]
pub use address::MockAddressManager;
#[cfg(any(test, feature = "test-util"))]
pub use announce::MockAnnouncer;
#[cfg(any(test, feature = "test-util"))]
pub use backend::MockLockBackend;
#[cfg(any(test, feature = "test-util"))]
pub use health::MockHealthProbe;
#[cfg(any(test, feature = "test-util"))]
pub use heartbeat::MockHeartbeatChannel;
