//! The test fixtures of `vip`, in one place: whatever a test, the demo, the
//! e2e suite or a benchmark needs to stand in for the world around the
//! daemon.
//!
//! The production daemon never links this crate (`publish = false`;
//! `vip-bin` takes it only with its `demo` feature, which the production
//! build leaves out; everything else takes it as a dev-dependency or a
//! benchmark tool).
//!
//! | module | fixture |
//! | --- | --- |
//! | [`testapi`] | an API-server stand-in (HTTPS, discovery, Leases, Nodes, Events, watch, fault injection), also the `vip-testapi` binary |
//! | [`netns`] | network namespaces, veth pairs, bridges, running code inside a namespace (needs root) |
//! | [`lab`] | a throwaway cluster on top of both: N nodes running real `vip manager` (or keepalived), a client, an ARP/NDP observer |
//! | [`etcd`] | a real etcd cluster (one or three members) on loopback, or one member per lab namespace, with mutual TLS |
//! | [`placement`] | where a fixture's process runs: the host's loopback or a lab namespace |
//! | [`api`] | one test body, two servers: the stand-in or the real `kube-apiserver` behind one type |
//! | [`apiserver`] | the real `kube-apiserver`, built from the `k8s.io/kubernetes` Go module, over a real etcd |
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

pub mod api;
pub mod apiserver;
pub mod etcd;
pub mod lab;
pub mod netns;
mod pki;
pub mod placement;
mod sys;
pub mod testapi;
