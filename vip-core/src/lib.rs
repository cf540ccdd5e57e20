//! # vip-core
//!
//! The model, the backend traits, the election engine and the controller of
//! `vip`. No sockets: only tokio time and sync.
#![deny(missing_docs)]

pub mod address;
pub mod announce;
pub mod backend;
pub mod cordon;
pub mod health;
pub mod model;

pub use address::{AddressError, AddressManager, LinkEvent, Presence};
pub use announce::{AnnounceError, Announcer, Conflict};
pub use backend::{
    BackendError, LeaderRecord, LockBackend, RecordWatch, VersionedRecord, micro_now,
};
pub use cordon::{CordonState, CordonWatch};
pub use health::{HealthError, HealthProbe};
pub use model::{
    Interface, InterfaceSelector, MacAddr, ModelError, NodeIdentity, Timings, VipAddress, VipSpec,
};
