//! Wire formats: whole Ethernet frames for ARP ([`arp`]), IPv6 neighbour
//! discovery ([`ndp`]) and vip's layer-2 heartbeat ([`heartbeat`], and its
//! authenticated version 2, [`heartbeat_v2`]).
//!
//! Every format follows smoltcp's split:
//!
//! - a *checked view* over received bytes (`ArpFrame::new_checked`,
//!   `NdpFrame::new_checked`, `HeartbeatFrame::new_checked`) that validates
//!   lengths and fixed fields once, so no accessor can panic afterwards;
//! - a *representation* (`ArpRepr`, `NdpRepr`, `HeartbeatRepr`) with
//!   `parse` (from a checked view) and `emit` (into a buffer of at least
//!   `buffer_len()` bytes), such that `parse(emit(x)) == x` for every
//!   representation.
//!
//! Frames are complete Ethernet II frames, because the announcer sends on an
//! `AF_PACKET`/`SOCK_RAW` socket: that lets it set the multicast destination
//! MAC of IPv6 neighbour discovery itself, and lets the listener see the
//! Ethernet source of every frame it receives. No function here panics on
//! any input; the fuzz targets in `fuzz/` hold that.

pub mod arp;
pub mod heartbeat;
mod heartbeat_fields;
pub mod heartbeat_v2;
pub mod ndp;

use std::net::IpAddr;

use vip_core::MacAddr;

/// Length of an Ethernet II header (no 802.1Q tag).
pub const ETHERNET_HEADER_LEN: usize = 14;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// pnet's MAC type converts to and from `[u8; 6]` (it is not re-exported by
/// pnet_packet, hence the generic signatures).
pub(crate) fn mac_from_pnet<M: Into<[u8; 6]>>(mac: M) -> MacAddr {
    MacAddr(mac.into())
}

pub(crate) fn mac_to_pnet<M: From<[u8; 6]>>(mac: MacAddr) -> M {
    M::from(mac.0)
}

/// An address that a received frame shows its sender to be using.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Claim {
    /// The address claimed.
    pub address: IpAddr,
    /// The hardware address that claims it.
    pub mac: MacAddr,
}

impl Claim {
    /// What a received frame claims, if anything:
    ///
    /// - any ARP request or reply with a sender protocol address other than
    ///   `0.0.0.0` claims that address for its sender hardware address (RFC
    ///   5227 probes, whose sender address is `0.0.0.0`, claim nothing);
    /// - a neighbour advertisement claims its target for its target
    ///   link-layer address (the Ethernet source when the option is absent);
    /// - a neighbour solicitation with a specified source address claims that
    ///   source for its source link-layer address (or the Ethernet source);
    ///   a duplicate-address-detection solicitation (source `::`) claims
    ///   nothing.
    ///
    /// Anything else, and anything malformed, is `None`.
    pub fn from_frame(frame: &[u8]) -> Option<Claim> {
        if let Ok(view) = arp::ArpFrame::new_checked(frame) {
            let repr = arp::ArpRepr::parse(&view).ok()?;
            return repr.claimed().map(|address| Claim {
                address: IpAddr::V4(address),
                mac: repr.sender_mac,
            });
        }
        let view = ndp::NdpFrame::new_checked(frame).ok()?;
        match ndp::NdpRepr::parse(&view).ok()? {
            ndp::NdpRepr::Advert(na) => Some(Claim {
                address: IpAddr::V6(na.target),
                mac: na.target_mac.unwrap_or(na.eth_source),
            }),
            ndp::NdpRepr::Solicit(ns) if !ns.ip_source.is_unspecified() => Some(Claim {
                address: IpAddr::V6(ns.ip_source),
                mac: ns.source_mac.unwrap_or(ns.eth_source),
            }),
            ndp::NdpRepr::Solicit(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const OWN: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);

    #[test]
    fn claims_of_each_kind() {
        let vip4 = Ipv4Addr::new(198, 18, 0, 10);
        let frame = arp::ArpRepr::announce_request(OWN, vip4).to_bytes();
        assert_eq!(
            Claim::from_frame(&frame),
            Some(Claim {
                address: vip4.into(),
                mac: OWN
            })
        );
        let frame = arp::ArpRepr::probe(OWN, vip4).to_bytes();
        assert_eq!(Claim::from_frame(&frame), None);

        let vip6: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let frame = ndp::NdpRepr::Advert(ndp::NeighborAdvertRepr::unsolicited(OWN, vip6)).to_vec();
        assert_eq!(
            Claim::from_frame(&frame),
            Some(Claim {
                address: vip6.into(),
                mac: OWN
            })
        );
        let frame = ndp::NdpRepr::Solicit(ndp::NeighborSolicitRepr::dad(OWN, vip6)).to_vec();
        assert_eq!(Claim::from_frame(&frame), None);

        let mut ns = ndp::NeighborSolicitRepr::dad(OWN, vip6);
        ns.ip_source = "2001:db8::99".parse().unwrap();
        ns.source_mac = Some(MacAddr([2, 0, 0, 0, 0, 0x99]));
        let frame = ndp::NdpRepr::Solicit(ns).to_vec();
        assert_eq!(
            Claim::from_frame(&frame),
            Some(Claim {
                address: "2001:db8::99".parse().unwrap(),
                mac: MacAddr([2, 0, 0, 0, 0, 0x99])
            })
        );
        assert_eq!(Claim::from_frame(&[]), None);
        assert_eq!(Claim::from_frame(&frame[..frame.len() - 1]), None);
    }
}
