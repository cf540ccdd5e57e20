//! # vip-bin
//!
//! The `vip` binary's crate. As a library it offers the throwaway cluster
//! lab that `vip demo`, the e2e suite and the failover benchmark share
//! (feature `demo`): network namespaces on a bridge, the API-server
//! stand-in with one local endpoint per node, real `vip manager`
//! processes, a pinging client and an ARP observer.
#![deny(missing_docs)]

#[cfg(feature = "demo")]
pub mod lab;
