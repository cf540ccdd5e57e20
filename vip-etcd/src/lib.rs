//! etcd for `vip`: the election backend on an etcd v3 key, kube-vip's
//! `--leaderElectionType=etcd`.
//!
//! With it the VIP does not depend on the API server being up: the record
//! lives in etcd, reached with mutual TLS from the three files kube-vip
//! takes (`--etcdCACert`, `--etcdCert`, `--etcdKey`) at `--etcdEndpoints`.
//! [`EtcdBackend`] implements [`vip_core::LockBackend`] by the book, so the
//! elector and controller keep every safety rule they have over the Lease:
//! see [`backend`] for the transactions and the TTL argument.
//! [`EtcdHeartbeatKeys`] keeps the key of authenticated heartbeats next to
//! the election key, and names the cluster by etcd's cluster id.
//!
//! vip and kube-vip cannot share an etcd election: kube-vip campaigns with
//! etcd's `concurrency` election under the prefix `<namespace>-<lease>/`,
//! vip keeps one record at the key `<namespace>-<lease>`. Migrate all
//! control-plane nodes at once when electing through etcd.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use vip_core::LockBackend;
//! use vip_etcd::{EtcdBackend, EtcdConfig, election_key, parse_endpoints};
//!
//! let config = EtcdConfig::for_retry_period(
//!     parse_endpoints("http://127.0.0.1:2379", false)?,
//!     None,
//!     election_key("kube-system", "plndr-cp-lock"),
//!     std::time::Duration::from_secs(1),
//! );
//! let backend = EtcdBackend::connect(config).await?;
//! println!("{:?}", backend.get().await?);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod backend;
pub mod config;
pub mod heartbeat_key;
pub mod record;

pub use backend::{EtcdBackend, map_error};
pub use config::{EtcdConfig, EtcdError, TlsFiles, election_key, parse_endpoints};
pub use heartbeat_key::EtcdHeartbeatKeys;
