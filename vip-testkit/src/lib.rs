//! The test fixtures of `vip`, in one place: whatever a test, the demo, the
//! e2e suite or a benchmark needs to stand in for the world around the
//! daemon.
//!
//! This crate is never a dependency of the production daemon build
//! (`publish = false`; only dev-dependencies and test tools use it).
//!
//! | module | fixture |
//! | --- | --- |
//! | [`etcd`] | a real etcd cluster (one or three members) on loopback with mutual TLS |
//!
//! The API-server stand-in (today `vip_lease::testapi`) and the network
//! namespace labs (today `vip_arp::netns`, `vip_bin::lab`) move here as
//! `vip_testkit::testapi`, `vip_testkit::netns` and `vip_testkit::lab`,
//! keeping their names.
//!
//! ```no_run
//! # async fn run() -> Result<(), vip_testkit::etcd::EtcdFixtureError> {
//! use vip_testkit::etcd::EtcdCluster;
//!
//! let cluster = EtcdCluster::start(3).await?;
//! println!("etcd at {}", cluster.endpoints().join(","));
//! let tls = cluster.client_tls();
//! println!("ca {} cert {} key {}", tls.ca.display(), tls.cert.display(), tls.key.display());
//! // Dropping the cluster kills the members and removes their directory.
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod etcd;
