//! # vip-arp
//!
//! Layer 2 of `vip` against the real kernel.
//!
//! - [`wire`]: ARP, IPv6 neighbour discovery and heartbeat frames (checked
//!   views and parsed representations, never panicking on any input);
//! - [`announcer`]: [`PacketAnnouncer`], the `vip_core::Announcer` over
//!   `AF_PACKET` sockets (announcements, RFC 5227 probes, conflict
//!   listener);
//! - [`heartbeat`]: [`PacketHeartbeats`], the `vip_core::HeartbeatChannel`
//!   over `AF_PACKET` sockets: the leader's layer-2 heartbeat of fenced fast
//!   failover, sent to a multicast MAC with EtherType 0x88B5 and heard
//!   through a BPF filter;
//! - [`signed_heartbeat`]: [`SignedHeartbeats`], the authenticated
//!   (version 2) heartbeat: signed with the cluster's key when sent,
//!   verified when heard, drops counted by reason and sender;
//! - [`netlink`]: [`NetlinkAddressManager`], the `vip_core::AddressManager`
//!   over rtnetlink (addresses with lifetimes, interface auto-detection,
//!   link and address events).
//!
//! Its kernel tests build their networks with the namespace lab of
//! `vip-testkit` (`vip_testkit::netns`).
#![deny(missing_docs)]

pub mod announcer;
mod detect;
pub mod heartbeat;
pub mod netlink;
mod packet;
pub mod signed_heartbeat;
mod sys;
pub mod wire;

pub use announcer::PacketAnnouncer;
pub use heartbeat::PacketHeartbeats;
pub use netlink::NetlinkAddressManager;
pub use signed_heartbeat::{SignedHeartbeats, SignedSubscription};
pub use sys::packet_sockaddr;
