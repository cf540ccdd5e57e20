//! # vip-arp
//!
//! Layer 2 of `vip` against the real kernel.
//!
//! - [`wire`]: ARP, IPv6 neighbour discovery and heartbeat frames (checked
//!   views and parsed representations, never panicking on any input);
//! - [`announcer`]: [`PacketAnnouncer`], the `vip_core::Announcer` over
//!   `AF_PACKET` sockets (announcements, RFC 5227 probes, conflict
//!   listener);
//! - [`heartbeat`]: [`PacketHeartbeats`], version 1 (unauthenticated)
//!   layer-2 heartbeats over `AF_PACKET` sockets, sent to a multicast MAC
//!   with EtherType 0x88B5 and heard through a BPF filter; kept for what
//!   old nodes send;
//! - [`signed_heartbeat`]: [`SignedHeartbeats`], the
//!   `vip_core::HeartbeatChannel` of fenced fast failover: authenticated
//!   (version 2) heartbeats, signed with the cluster's key when sent,
//!   verified when heard, drops counted by reason and sender;
//! - [`tap`]: [`HeartbeatTap`], heartbeat frames as raw bytes (captures,
//!   forgeries, replays in tests);
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
pub mod tap;
pub mod wire;

pub use announcer::PacketAnnouncer;
pub use heartbeat::PacketHeartbeats;
pub use netlink::NetlinkAddressManager;
pub use signed_heartbeat::{SignedHeartbeats, SignedSubscription};
pub use sys::packet_sockaddr;
pub use tap::HeartbeatTap;
