//! # vip-arp
//!
//! Layer 2 of `vip` against the real kernel.
//!
//! - [`wire`]: ARP and IPv6 neighbour discovery frames (checked views and
//!   parsed representations, never panicking on any input);
//! - [`announcer`]: [`PacketAnnouncer`], the `vip_core::Announcer` over
//!   `AF_PACKET` sockets (announcements, RFC 5227 probes, conflict
//!   listener);
//! - [`netlink`]: [`NetlinkAddressManager`], the `vip_core::AddressManager`
//!   over rtnetlink (addresses with lifetimes, interface auto-detection,
//!   link and address events);
//! - `netns` (feature `lab`): the network-namespace lab the tests, `vip demo`
//!   and the e2e suite build their networks with.
#![deny(missing_docs)]

pub mod announcer;
mod detect;
pub mod netlink;
#[cfg(feature = "lab")]
pub mod netns;
mod packet;
mod sys;
pub mod wire;

pub use announcer::PacketAnnouncer;
pub use netlink::NetlinkAddressManager;
