//! Tests against the real kernel, in network namespaces each test creates
//! (see `vip_testkit::netns`). They need root; without it they skip loudly,
//! and with `CI=true` they fail.

mod address;
mod announce;
mod heartbeat;
mod lab;
mod signed_heartbeat;

use std::net::IpAddr;
use std::time::Duration;

use vip_core::{MacAddr, VipAddress};

/// Generous bound for anything the kernel should do "at once".
pub const PROMPTLY: Duration = Duration::from_secs(3);
/// Bound for a whole async body run in a namespace.
pub const BODY_LIMIT: Duration = Duration::from_secs(30);

/// A MAC nobody on the segment has, to pre-seed neighbour entries with.
pub const STALE_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x99]);

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn vip(s: &str) -> VipAddress {
    s.parse().unwrap()
}

/// Skip the test (loudly) unless root; fail instead under `CI=true`.
#[macro_export]
macro_rules! needs_root {
    ($name:expr) => {
        if !vip_testkit::netns::require_root($name) {
            return;
        }
    };
}
