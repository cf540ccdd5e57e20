//! # vip-lease
//!
//! Kubernetes for `vip`:
//!
//! - [`LeaseBackend`]: the election backend ([`vip_core::LockBackend`]) on a
//!   `coordination.k8s.io/v1` Lease, record for record what client-go's
//!   `LeaseLock` writes, so kube-vip, client-go and `kubectl get lease` read
//!   the same object (default `kube-system/plndr-cp-lock`);
//! - [`ClusterAccess`]: kubeconfig discovery for a static pod, and the
//!   control-plane mode that talks to `https://127.0.0.1:<port>`;
//! - [`ReadyzProbe`]: the local API server's `/readyz` as a
//!   [`vip_core::HealthProbe`];
//! - [`spawn_cordon_watch`]: this node's cordon state as a
//!   [`vip_core::CordonWatch`];
//! - [`LeaseHeartbeatKeys`]: the key of authenticated heartbeats, in a
//!   Secret next to the Lease, and the Lease's uid as cluster identity
//!   ([`vip_core::HeartbeatKeySource`]);
//! - [`events`]: Kubernetes Events for every leadership change, on the
//!   Lease and on the Node ([`EventRecorder`], a [`vip_core::Observer`]
//!   that never blocks).
//!
//! Its tests run against the API-server stand-in of `vip-testkit`
//! (`vip_testkit::testapi`).
//!
//! Each part builds its own client from the [`ClusterAccess`], so lease
//! renewals never wait behind a watch, a health check or a node list.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use vip_lease::*;
//!
//! let access = ClusterAccess::discover(&DiscoveryOptions::from_env(None).control_plane(6443)).await?;
//! let lease = LeaseName::parse("plndr-cp-lock", "kube-system")?;
//! let backend = LeaseBackend::new(&access, LeaseConfig::for_retry_period(lease, Duration::from_secs(1)))?;
//! let probe = ReadyzProbe::new(&access, HealthConfig::default())?;
//! let (cordon, _task) = spawn_cordon_watch(&access, CordonConfig::new("cp-1"))?;
//! # let _ = (backend, probe, cordon);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod access;
pub mod cordon;
pub mod events;
mod follow;
pub mod health;
pub mod heartbeat_key;
pub mod lease;

pub use access::{
    AccessError, ClientOptions, ClusterAccess, DiscoveryOptions, KubeconfigSource, LocalApi, Tried,
    VerifyName,
};
pub use cordon::{CONTROL_PLANE_LABEL, CordonConfig, CordonError, spawn_cordon_watch};
pub use events::{
    EventCounts, EventMetrics, EventRecorder, EventsConfig, EventsError, spawn_event_recorder,
};
pub use health::{HealthConfig, HealthSetupError, ReadyzProbe};
pub use heartbeat_key::LeaseHeartbeatKeys;
pub use lease::{
    DEFAULT_LEASE_NAME, DEFAULT_LEASE_NAMESPACE, LeaseBackend, LeaseConfig, LeaseError, LeaseName,
};
