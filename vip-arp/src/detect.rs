//! Interface auto-detection, as a pure function of the kernel's links,
//! addresses and default routes (gathered by [`crate::netlink`]).
//!
//! The rule (`docs/configuration.md`, `vip_interface`): the interface
//! whose connected prefix contains the VIPs; else the interface of the
//! default route (IPv4 first, then IPv6, as kube-vip); and when that leaves
//! no interface or several, an [`AddressError::Ambiguous`] that lists the
//! candidates.

use std::collections::BTreeSet;
use std::net::IpAddr;

use vip_core::{AddressError, VipAddress};

/// A link as auto-detection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkInfo {
    pub(crate) index: u32,
    pub(crate) name: String,
    pub(crate) loopback: bool,
}

/// An address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AddrInfo {
    pub(crate) index: u32,
    pub(crate) addr: IpAddr,
    pub(crate) prefix: u8,
}

/// Whether `net/prefix` contains `addr` (same family only).
pub(crate) fn contains(net: IpAddr, prefix: u8, addr: IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let p = u32::from(prefix.min(32));
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let p = u32::from(prefix.min(128));
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

fn name_of(links: &[LinkInfo], index: u32) -> String {
    links
        .iter()
        .find(|l| l.index == index)
        .map_or_else(|| format!("#{index}"), |l| l.name.clone())
}

/// Choose the interface for `vips`. `default_v4`/`default_v6` are the
/// interface indexes of the main table's default routes (all next hops).
pub(crate) fn choose(
    vips: &[VipAddress],
    links: &[LinkInfo],
    addrs: &[AddrInfo],
    default_v4: &[u32],
    default_v6: &[u32],
) -> Result<u32, AddressError> {
    let usable = |index: u32| links.iter().any(|l| l.index == index && !l.loopback);
    let spec = vips
        .iter()
        .map(|v| v.addr().to_string())
        .collect::<Vec<_>>()
        .join(",");

    // 1. Connected prefixes containing a VIP. An address equal to the VIP
    // is not a connected prefix (it may be our own, left by a crash).
    let mut connected: BTreeSet<u32> = BTreeSet::new();
    let mut why: Vec<String> = Vec::new();
    for vip in vips {
        for a in addrs {
            if usable(a.index) && a.addr != vip.addr() && contains(a.addr, a.prefix, vip.addr()) {
                connected.insert(a.index);
                why.push(format!(
                    "{} ({}/{})",
                    name_of(links, a.index),
                    a.addr,
                    a.prefix
                ));
            }
        }
    }
    match connected.len() {
        1 => return Ok(*connected.iter().next().unwrap_or(&0)),
        0 => {}
        _ => {
            why.dedup();
            return Err(AddressError::Ambiguous {
                vips: spec,
                reason: "connected prefixes on several interfaces contain the VIPs".into(),
                candidates: why,
            });
        }
    }

    // 2. The default route's interface, IPv4 first, then IPv6.
    for defaults in [default_v4, default_v6] {
        let set: BTreeSet<u32> = defaults.iter().copied().filter(|i| usable(*i)).collect();
        match set.len() {
            0 => continue,
            1 => return Ok(*set.iter().next().unwrap_or(&0)),
            _ => {
                return Err(AddressError::Ambiguous {
                    vips: spec,
                    reason: "no connected prefix contains the VIPs, and the default route leaves by several interfaces".into(),
                    candidates: set.iter().map(|i| name_of(links, *i)).collect(),
                });
            }
        }
    }
    Err(AddressError::Ambiguous {
        vips: spec,
        reason:
            "no connected prefix contains the VIPs and there is no default route; set vip_interface"
                .into(),
        candidates: links
            .iter()
            .filter(|l| !l.loopback)
            .map(|l| l.name.clone())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> Vec<LinkInfo> {
        vec![
            LinkInfo {
                index: 1,
                name: "lo".into(),
                loopback: true,
            },
            LinkInfo {
                index: 2,
                name: "end0".into(),
                loopback: false,
            },
            LinkInfo {
                index: 3,
                name: "wan0".into(),
                loopback: false,
            },
        ]
    }

    fn addr(index: u32, a: &str, prefix: u8) -> AddrInfo {
        AddrInfo {
            index,
            addr: a.parse().unwrap(),
            prefix,
        }
    }

    fn vips(s: &str) -> Vec<VipAddress> {
        s.split(',').map(|v| v.parse().unwrap()).collect()
    }

    #[test]
    fn contains_prefixes() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(contains(a("198.18.0.1"), 24, a("198.18.0.200")));
        assert!(!contains(a("198.18.0.1"), 24, a("198.18.1.1")));
        assert!(contains(a("198.18.0.1"), 0, a("10.0.0.1")));
        assert!(contains(a("2001:db8::1"), 64, a("2001:db8::ffff")));
        assert!(!contains(a("2001:db8::1"), 64, a("2001:db8:1::1")));
        assert!(!contains(a("2001:db8::1"), 0, a("198.18.0.1")));
    }

    #[test]
    fn connected_prefix_wins_over_default_route() {
        let addrs = [addr(2, "198.18.0.1", 24), addr(3, "198.19.0.1", 24)];
        let i = choose(&vips("198.18.0.140"), &links(), &addrs, &[3], &[]).unwrap();
        assert_eq!(i, 2);
        let i = choose(&vips("198.19.0.140"), &links(), &addrs, &[2], &[]).unwrap();
        assert_eq!(i, 3);
    }

    #[test]
    fn own_stale_vip_is_not_a_connected_prefix() {
        let addrs = [addr(3, "198.18.0.140", 32), addr(2, "198.18.0.1", 24)];
        assert_eq!(
            choose(&vips("198.18.0.140"), &links(), &addrs, &[3], &[]).unwrap(),
            2
        );
    }

    #[test]
    fn default_route_then_ipv6_default() {
        let addrs = [addr(2, "198.18.0.1", 24)];
        assert_eq!(
            choose(&vips("203.0.113.7"), &links(), &addrs, &[3], &[2]).unwrap(),
            3
        );
        assert_eq!(
            choose(&vips("203.0.113.7"), &links(), &addrs, &[], &[2]).unwrap(),
            2
        );
    }

    #[test]
    fn ambiguity_lists_candidates() {
        let addrs = [addr(2, "198.18.0.1", 16), addr(3, "198.18.5.1", 24)];
        let e = choose(&vips("198.18.5.9"), &links(), &addrs, &[], &[]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("end0 (198.18.0.1/16)"), "{text}");
        assert!(text.contains("wan0 (198.18.5.1/24)"), "{text}");
        let e = choose(&vips("203.0.113.7"), &links(), &addrs, &[2, 3], &[]).unwrap_err();
        let AddressError::Ambiguous { candidates, .. } = e else {
            panic!("{e}")
        };
        assert_eq!(candidates, ["end0", "wan0"]);
        let e = choose(&vips("203.0.113.7"), &links(), &addrs, &[], &[]).unwrap_err();
        let AddressError::Ambiguous {
            candidates, reason, ..
        } = e
        else {
            panic!("{e}")
        };
        assert_eq!(candidates, ["end0", "wan0"]);
        assert!(reason.contains("no default route"), "{reason}");
    }

    #[test]
    fn loopback_is_never_chosen() {
        let addrs = [addr(1, "198.18.0.1", 24)];
        assert!(choose(&vips("198.18.0.5"), &links(), &addrs, &[1], &[]).is_err());
    }

    #[test]
    fn dual_stack_on_one_or_two_interfaces() {
        let addrs = [addr(2, "198.18.0.1", 24), addr(2, "2001:db8::1", 64)];
        assert_eq!(
            choose(&vips("198.18.0.9,2001:db8::9"), &links(), &addrs, &[], &[]).unwrap(),
            2
        );
        let addrs = [addr(2, "198.18.0.1", 24), addr(3, "2001:db8::1", 64)];
        assert!(choose(&vips("198.18.0.9,2001:db8::9"), &links(), &addrs, &[], &[]).is_err());
    }
}
