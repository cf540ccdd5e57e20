//! IPv6 neighbour discovery (RFC 4861) as vip sends and reads it: whole
//! Ethernet frames carrying an IPv6 header and an ICMPv6 neighbour
//! advertisement (NA) or solicitation (NS).
//!
//! - The *unsolicited NA* announces a VIP: flags R=0, S=0, O=1, the target
//!   link-layer address option set to our MAC, sent to `ff02::1`
//!   (Ethernet `33:33:00:00:00:01`) with hop limit 255. Its IPv6 source is
//!   the VIP itself, as for the kernel's own unsolicited NAs
//!   (`ndisc_send_na` picks the target as source when it is assigned to the
//!   interface), which needs no lookup of the link-local address.
//! - The *DAD-style NS* probes whether anyone holds an address (RFC 4862
//!   §5.4.2): IPv6 source `::`, destination the target's solicited-node
//!   multicast group, no source link-layer option. A holder answers with an
//!   NA to `ff02::1`, which every listener on the segment sees.
//!
//! Parsing enforces the RFC 4861 §7.1 validity checks that concern these
//! messages: hop limit 255, ICMPv6 code 0, a correct checksum, a
//! non-multicast target, options of non-zero length that fit, S=0 on an NA
//! to a multicast destination, and no source link-layer option on an NS
//! from `::`. Options other than the link-layer address are skipped (and not
//! kept, so only frames vip itself can emit round-trip byte for byte).

use std::net::Ipv6Addr;

use pnet_packet::ethernet::{EtherType, EthernetPacket, MutableEthernetPacket};
use pnet_packet::icmpv6::ndp::{
    MutableNeighborAdvertPacket, MutableNeighborSolicitPacket, NeighborAdvertFlags,
    NeighborAdvertPacket, NeighborSolicitPacket,
};
use pnet_packet::icmpv6::{Icmpv6Code, Icmpv6Packet, Icmpv6Types};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};
use vip_core::MacAddr;

use super::{ETHERNET_HEADER_LEN, ETHERTYPE_IPV6, mac_from_pnet, mac_to_pnet};

/// Length of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// Length of an NA or NS without options.
pub const ND_MESSAGE_LEN: usize = 24;
/// Length of an Ethernet link-layer address option.
pub const LL_OPTION_LEN: usize = 8;
/// The shortest frame [`NdpFrame::new_checked`] accepts.
pub const MIN_FRAME_LEN: usize = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + ND_MESSAGE_LEN;
/// ICMPv6 type of a neighbour solicitation.
pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
/// ICMPv6 type of a neighbour advertisement.
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;
/// NDP option type: source link-layer address.
pub const OPTION_SOURCE_LL: u8 = 1;
/// NDP option type: target link-layer address.
pub const OPTION_TARGET_LL: u8 = 2;
/// The all-nodes multicast address `ff02::1`.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// Hop limit of every neighbour discovery message.
pub const HOP_LIMIT: u8 = 255;

const IPPROTO_ICMPV6: u8 = 58;

/// Why bytes are not a valid neighbour discovery frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NdpError {
    /// Fewer bytes than the headers or the IPv6 payload length need.
    #[error("neighbour discovery frame truncated: {len} bytes, {needed} needed")]
    Truncated {
        /// The number of bytes given.
        len: usize,
        /// The number needed.
        needed: usize,
    },
    /// The EtherType is not IPv6.
    #[error("not an IPv6 frame: EtherType {ethertype:#06x}")]
    NotIpv6 {
        /// The EtherType found.
        ethertype: u16,
    },
    /// The IP version field is not 6.
    #[error("IP version {0} in an IPv6 frame")]
    Version(u8),
    /// The IPv6 next header is not ICMPv6 (extension headers are not
    /// followed: neighbour discovery never uses them).
    #[error("IPv6 next header {0} is not ICMPv6")]
    NotIcmpv6(u8),
    /// An ICMPv6 message that is not an NS or NA.
    #[error("ICMPv6 type {0} is not a neighbour solicitation or advertisement")]
    NotNeighborDiscovery(u8),
    /// The ICMPv6 code is not 0.
    #[error("ICMPv6 code {0} in a neighbour discovery message")]
    Code(u8),
    /// The hop limit is not 255: the message may come from off-link.
    #[error("hop limit {0} in a neighbour discovery message (255 required)")]
    HopLimit(u8),
    /// The ICMPv6 checksum does not match.
    #[error("ICMPv6 checksum {found:#06x}, expected {expected:#06x}")]
    Checksum {
        /// The checksum computed.
        expected: u16,
        /// The checksum in the frame.
        found: u16,
    },
    /// The target address is multicast.
    #[error("multicast target address {0}")]
    MulticastTarget(Ipv6Addr),
    /// An NA with S=1 sent to a multicast address.
    #[error("solicited neighbour advertisement sent to multicast {0}")]
    SolicitedToMulticast(Ipv6Addr),
    /// An NS from `::` carrying a source link-layer address option.
    #[error("neighbour solicitation from :: with a source link-layer address option")]
    UnspecifiedWithSourceOption,
    /// An option of length zero.
    #[error("neighbour discovery option of type {0} with length 0")]
    ZeroLengthOption(u8),
    /// An option that does not fit in the message.
    #[error("neighbour discovery option of type {kind} runs {needed} bytes past the message")]
    OptionTruncated {
        /// The option type.
        kind: u8,
        /// How many bytes are missing.
        needed: usize,
    },
    /// The output buffer is too small.
    #[error("buffer of {len} bytes too small for a frame of {needed}")]
    BufferTooSmall {
        /// The buffer's length.
        len: usize,
        /// The frame's length.
        needed: usize,
    },
}

/// A checked, zero-copy view of a received neighbour discovery frame.
///
/// [`new_checked`](Self::new_checked) validates the Ethernet, IPv6 and
/// ICMPv6 headers and the checksum; accessors then never fail.
#[derive(Debug)]
pub struct NdpFrame<'a> {
    eth: EthernetPacket<'a>,
    ip: Ipv6Packet<'a>,
    icmp: &'a [u8],
}

impl<'a> NdpFrame<'a> {
    /// Check `bytes`. Bytes past the IPv6 payload length (Ethernet padding)
    /// are ignored.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, NdpError> {
        let len = bytes.len();
        let truncated = |needed| NdpError::Truncated { len, needed };
        if len < MIN_FRAME_LEN {
            return Err(truncated(MIN_FRAME_LEN));
        }
        let eth = EthernetPacket::new(&bytes[..ETHERNET_HEADER_LEN])
            .ok_or(truncated(ETHERNET_HEADER_LEN))?;
        let ethertype = eth.get_ethertype().0;
        if ethertype != ETHERTYPE_IPV6 {
            return Err(NdpError::NotIpv6 { ethertype });
        }
        let ip_start = ETHERNET_HEADER_LEN;
        let header = Ipv6Packet::new(&bytes[ip_start..ip_start + IPV6_HEADER_LEN])
            .ok_or(truncated(MIN_FRAME_LEN))?;
        if header.get_version() != 6 {
            return Err(NdpError::Version(header.get_version()));
        }
        if header.get_next_header().0 != IPPROTO_ICMPV6 {
            return Err(NdpError::NotIcmpv6(header.get_next_header().0));
        }
        let payload_len = usize::from(header.get_payload_length());
        let icmp_start = ip_start + IPV6_HEADER_LEN;
        let end = icmp_start + payload_len;
        if payload_len < ND_MESSAGE_LEN {
            return Err(truncated(icmp_start + ND_MESSAGE_LEN));
        }
        if end > len {
            return Err(truncated(end));
        }
        let ip = Ipv6Packet::new(&bytes[ip_start..end]).ok_or(truncated(end))?;
        let icmp = &bytes[icmp_start..end];
        let kind = icmp[0];
        if kind != TYPE_NEIGHBOR_SOLICIT && kind != TYPE_NEIGHBOR_ADVERT {
            return Err(NdpError::NotNeighborDiscovery(kind));
        }
        if icmp[1] != 0 {
            return Err(NdpError::Code(icmp[1]));
        }
        if ip.get_hop_limit() != HOP_LIMIT {
            return Err(NdpError::HopLimit(ip.get_hop_limit()));
        }
        let found = u16::from_be_bytes([icmp[2], icmp[3]]);
        let expected = icmpv6_checksum(icmp, ip.get_source(), ip.get_destination());
        if found != expected {
            return Err(NdpError::Checksum { expected, found });
        }
        Ok(Self { eth, ip, icmp })
    }

    /// Ethernet destination.
    pub fn eth_destination(&self) -> MacAddr {
        mac_from_pnet(self.eth.get_destination())
    }

    /// Ethernet source.
    pub fn eth_source(&self) -> MacAddr {
        mac_from_pnet(self.eth.get_source())
    }

    /// IPv6 source.
    pub fn ip_source(&self) -> Ipv6Addr {
        self.ip.get_source()
    }

    /// IPv6 destination.
    pub fn ip_destination(&self) -> Ipv6Addr {
        self.ip.get_destination()
    }

    /// ICMPv6 type: 135 (NS) or 136 (NA).
    pub fn icmp_type(&self) -> u8 {
        self.icmp[0]
    }

    /// The NA flag byte (R, S, O in the top bits); 0 for an NS.
    pub fn flags(&self) -> u8 {
        if self.icmp_type() == TYPE_NEIGHBOR_ADVERT {
            self.icmp[4]
        } else {
            0
        }
    }

    /// The target address.
    pub fn target(&self) -> Ipv6Addr {
        let mut t = [0u8; 16];
        t.copy_from_slice(&self.icmp[8..ND_MESSAGE_LEN]);
        Ipv6Addr::from(t)
    }

    /// The options, raw.
    pub fn options(&self) -> &'a [u8] {
        &self.icmp[ND_MESSAGE_LEN..]
    }

    /// The ICMPv6 message (header, body and options).
    pub fn icmp_bytes(&self) -> &'a [u8] {
        self.icmp
    }
}

/// The ICMPv6 checksum of `icmp` (its checksum field is skipped) with the
/// IPv6 pseudo-header.
fn icmpv6_checksum(icmp: &[u8], source: Ipv6Addr, destination: Ipv6Addr) -> u16 {
    match Icmpv6Packet::new(icmp) {
        Some(p) => pnet_packet::icmpv6::checksum(&p, &source, &destination),
        None => 0,
    }
}

/// Find the Ethernet link-layer address option of type `wanted`.
fn link_layer_option(options: &[u8], wanted: u8) -> Result<Option<MacAddr>, NdpError> {
    let mut rest = options;
    let mut found = None;
    while !rest.is_empty() {
        let kind = rest[0];
        let Some(&units) = rest.get(1) else {
            return Err(NdpError::OptionTruncated { kind, needed: 1 });
        };
        let len = usize::from(units) * 8;
        if len == 0 {
            return Err(NdpError::ZeroLengthOption(kind));
        }
        if len > rest.len() {
            return Err(NdpError::OptionTruncated {
                kind,
                needed: len - rest.len(),
            });
        }
        if kind == wanted && len == LL_OPTION_LEN && found.is_none() {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&rest[2..8]);
            found = Some(MacAddr(mac));
        }
        rest = &rest[len..];
    }
    Ok(found)
}

/// The solicited-node multicast address of `address` (RFC 4291 §2.7.1).
pub fn solicited_node(address: Ipv6Addr) -> Ipv6Addr {
    let o = address.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet multicast address of an IPv6 multicast group (RFC 2464 §7).
pub fn multicast_mac(group: Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// A parsed neighbour advertisement frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeighborAdvertRepr {
    /// Ethernet destination.
    pub eth_destination: MacAddr,
    /// Ethernet source.
    pub eth_source: MacAddr,
    /// IPv6 source.
    pub ip_source: Ipv6Addr,
    /// IPv6 destination.
    pub ip_destination: Ipv6Addr,
    /// R: the sender is a router.
    pub router: bool,
    /// S: sent in answer to a solicitation.
    pub solicited: bool,
    /// O: override existing cache entries.
    pub override_flag: bool,
    /// The address advertised.
    pub target: Ipv6Addr,
    /// The target link-layer address option.
    pub target_mac: Option<MacAddr>,
}

impl NeighborAdvertRepr {
    /// The unsolicited NA that announces `vip` at `mac`: to `ff02::1`, S=0,
    /// O=1, with the target link-layer address option.
    pub fn unsolicited(mac: MacAddr, vip: Ipv6Addr) -> Self {
        Self {
            eth_destination: multicast_mac(ALL_NODES),
            eth_source: mac,
            ip_source: vip,
            ip_destination: ALL_NODES,
            router: false,
            solicited: false,
            override_flag: true,
            target: vip,
            target_mac: Some(mac),
        }
    }

    fn flags(&self) -> u8 {
        let mut f = 0;
        if self.router {
            f |= NeighborAdvertFlags::Router;
        }
        if self.solicited {
            f |= NeighborAdvertFlags::Solicited;
        }
        if self.override_flag {
            f |= NeighborAdvertFlags::Override;
        }
        f
    }
}

/// A parsed neighbour solicitation frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeighborSolicitRepr {
    /// Ethernet destination.
    pub eth_destination: MacAddr,
    /// Ethernet source.
    pub eth_source: MacAddr,
    /// IPv6 source (`::` for duplicate address detection).
    pub ip_source: Ipv6Addr,
    /// IPv6 destination.
    pub ip_destination: Ipv6Addr,
    /// The address asked about.
    pub target: Ipv6Addr,
    /// The source link-layer address option.
    pub source_mac: Option<MacAddr>,
}

impl NeighborSolicitRepr {
    /// The duplicate-address-detection solicitation for `target`, sent from
    /// `mac`: IPv6 source `::`, destination the solicited-node group.
    pub fn dad(mac: MacAddr, target: Ipv6Addr) -> Self {
        let group = solicited_node(target);
        Self {
            eth_destination: multicast_mac(group),
            eth_source: mac,
            ip_source: Ipv6Addr::UNSPECIFIED,
            ip_destination: group,
            target,
            source_mac: None,
        }
    }
}

/// A neighbour discovery message vip sends or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdpRepr {
    /// ICMPv6 type 136.
    Advert(NeighborAdvertRepr),
    /// ICMPv6 type 135.
    Solicit(NeighborSolicitRepr),
}

impl NdpRepr {
    /// Parse a checked frame.
    pub fn parse(frame: &NdpFrame<'_>) -> Result<Self, NdpError> {
        let target = frame.target();
        if target.is_multicast() {
            return Err(NdpError::MulticastTarget(target));
        }
        let (eth_destination, eth_source) = (frame.eth_destination(), frame.eth_source());
        let (ip_source, ip_destination) = (frame.ip_source(), frame.ip_destination());
        if frame.icmp_type() == TYPE_NEIGHBOR_ADVERT {
            let na = NeighborAdvertPacket::new(frame.icmp_bytes()).ok_or(NdpError::Truncated {
                len: frame.icmp_bytes().len(),
                needed: ND_MESSAGE_LEN,
            })?;
            let flags = na.get_flags();
            let solicited = flags & NeighborAdvertFlags::Solicited != 0;
            if solicited && ip_destination.is_multicast() {
                return Err(NdpError::SolicitedToMulticast(ip_destination));
            }
            Ok(NdpRepr::Advert(NeighborAdvertRepr {
                eth_destination,
                eth_source,
                ip_source,
                ip_destination,
                router: flags & NeighborAdvertFlags::Router != 0,
                solicited,
                override_flag: flags & NeighborAdvertFlags::Override != 0,
                target: na.get_target_addr(),
                target_mac: link_layer_option(frame.options(), OPTION_TARGET_LL)?,
            }))
        } else {
            let ns = NeighborSolicitPacket::new(frame.icmp_bytes()).ok_or(NdpError::Truncated {
                len: frame.icmp_bytes().len(),
                needed: ND_MESSAGE_LEN,
            })?;
            let source_mac = link_layer_option(frame.options(), OPTION_SOURCE_LL)?;
            if ip_source.is_unspecified() && source_mac.is_some() {
                return Err(NdpError::UnspecifiedWithSourceOption);
            }
            Ok(NdpRepr::Solicit(NeighborSolicitRepr {
                eth_destination,
                eth_source,
                ip_source,
                ip_destination,
                target: ns.get_target_addr(),
                source_mac,
            }))
        }
    }

    /// Check and parse raw bytes.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, NdpError> {
        Self::parse(&NdpFrame::new_checked(bytes)?)
    }

    fn link_layer(&self) -> Option<MacAddr> {
        match self {
            NdpRepr::Advert(na) => na.target_mac,
            NdpRepr::Solicit(ns) => ns.source_mac,
        }
    }

    /// Length of the ICMPv6 message.
    fn icmp_len(&self) -> usize {
        ND_MESSAGE_LEN + self.link_layer().map_or(0, |_| LL_OPTION_LEN)
    }

    /// Length of the whole frame.
    pub fn buffer_len(&self) -> usize {
        ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + self.icmp_len()
    }

    /// Write the frame, with a correct checksum, into the first
    /// [`buffer_len`](Self::buffer_len) bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), NdpError> {
        let needed = self.buffer_len();
        let len = buf.len();
        let small = NdpError::BufferTooSmall { len, needed };
        if len < needed {
            return Err(small);
        }
        let (eth_dst, eth_src, ip_src, ip_dst, target) = match self {
            NdpRepr::Advert(na) => (
                na.eth_destination,
                na.eth_source,
                na.ip_source,
                na.ip_destination,
                na.target,
            ),
            NdpRepr::Solicit(ns) => (
                ns.eth_destination,
                ns.eth_source,
                ns.ip_source,
                ns.ip_destination,
                ns.target,
            ),
        };
        let buf = &mut buf[..needed];
        let (eth_bytes, rest) = buf.split_at_mut(ETHERNET_HEADER_LEN);
        let mut eth = MutableEthernetPacket::new(eth_bytes).ok_or(small)?;
        eth.set_destination(mac_to_pnet(eth_dst));
        eth.set_source(mac_to_pnet(eth_src));
        eth.set_ethertype(EtherType(ETHERTYPE_IPV6));

        let icmp_len = self.icmp_len();
        let (ip_bytes, icmp) = rest.split_at_mut(IPV6_HEADER_LEN);
        let mut ip = MutableIpv6Packet::new(ip_bytes).ok_or(small)?;
        ip.set_version(6);
        ip.set_traffic_class(0);
        ip.set_flow_label(0);
        // At most 32 bytes: fits.
        ip.set_payload_length(icmp_len as u16);
        ip.set_next_header(IpNextHeaderProtocols::Icmpv6);
        ip.set_hop_limit(HOP_LIMIT);
        ip.set_source(ip_src);
        ip.set_destination(ip_dst);

        let (message, option) = icmp.split_at_mut(ND_MESSAGE_LEN);
        match self {
            NdpRepr::Advert(na) => {
                let mut p = MutableNeighborAdvertPacket::new(message).ok_or(small)?;
                p.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
                p.set_icmpv6_code(Icmpv6Code(0));
                p.set_checksum(0);
                p.set_flags(na.flags());
                p.set_reserved(0);
                p.set_target_addr(target);
            }
            NdpRepr::Solicit(_) => {
                let mut p = MutableNeighborSolicitPacket::new(message).ok_or(small)?;
                p.set_icmpv6_type(Icmpv6Types::NeighborSolicit);
                p.set_icmpv6_code(Icmpv6Code(0));
                p.set_checksum(0);
                p.set_reserved(0);
                p.set_target_addr(target);
            }
        }
        if let Some(mac) = self.link_layer() {
            option[0] = match self {
                NdpRepr::Advert(_) => OPTION_TARGET_LL,
                NdpRepr::Solicit(_) => OPTION_SOURCE_LL,
            };
            option[1] = 1; // in units of 8 bytes
            option[2..8].copy_from_slice(&mac.0);
        }
        let sum = icmpv6_checksum(icmp, ip_src, ip_dst);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        Ok(())
    }

    /// The frame as bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.buffer_len()];
        // The buffer has exactly buffer_len bytes, the only failure of emit.
        let _ = self.emit(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);

    fn vip() -> Ipv6Addr {
        "2001:db8::10".parse().unwrap()
    }

    // Hand-assembled; checksum 0x9afc computed by hand over the RFC 8200
    // pseudo-header (src 2001:db8::10, dst ff02::1, length 32, next header
    // 58) and the message.
    const UNSOLICITED_NA: [u8; 86] = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01, // Ethernet dst: IPv6 multicast ff02::1
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, // Ethernet src
        0x86, 0xdd, // EtherType IPv6
        0x60, 0x00, 0x00, 0x00, // version 6, class 0, flow 0
        0x00, 0x20, // payload length 32
        0x3a, // next header ICMPv6
        0xff, // hop limit 255
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x10, // src = VIP
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x01, // dst ff02::1
        0x88, 0x00, // type 136, code 0
        0x9a, 0xfc, // checksum
        0x20, 0x00, 0x00, 0x00, // R=0 S=0 O=1, reserved
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x10, // target
        0x02, 0x01, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, // option TLLA, len 1, MAC
    ];

    // Checksum 0x4ccf by hand: src ::, dst ff02::1:ff00:10, length 24.
    const DAD_NS: [u8; 78] = [
        0x33, 0x33, 0xff, 0x00, 0x00, 0x10, // Ethernet dst: solicited-node group
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, // Ethernet src
        0x86, 0xdd, //
        0x60, 0x00, 0x00, 0x00, //
        0x00, 0x18, // payload length 24
        0x3a, 0xff, //
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // src ::
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0x00, 0x00, 0x10, // dst
        0x87, 0x00, // type 135, code 0
        0x4c, 0xcf, // checksum
        0x00, 0x00, 0x00, 0x00, // reserved
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x10, // target
    ];

    #[test]
    fn golden_bytes() {
        let na = NdpRepr::Advert(NeighborAdvertRepr::unsolicited(MAC, vip()));
        assert_eq!(na.to_vec(), UNSOLICITED_NA);
        let ns = NdpRepr::Solicit(NeighborSolicitRepr::dad(MAC, vip()));
        assert_eq!(ns.to_vec(), DAD_NS);
    }

    #[test]
    fn golden_parse() {
        let NdpRepr::Advert(na) = NdpRepr::parse_bytes(&UNSOLICITED_NA).unwrap() else {
            panic!("not an NA");
        };
        assert!(na.override_flag && !na.solicited && !na.router);
        assert_eq!(na.target, vip());
        assert_eq!(na.target_mac, Some(MAC));
        let NdpRepr::Solicit(ns) = NdpRepr::parse_bytes(&DAD_NS).unwrap() else {
            panic!("not an NS");
        };
        assert_eq!(ns, NeighborSolicitRepr::dad(MAC, vip()));
        let mut padded = DAD_NS.to_vec();
        padded.extend_from_slice(&[0; 10]);
        assert_eq!(NdpRepr::parse_bytes(&padded).unwrap(), NdpRepr::Solicit(ns));
    }

    #[test]
    fn helpers() {
        assert_eq!(
            solicited_node("2001:db8::abcd:1234".parse().unwrap()),
            "ff02::1:ffcd:1234".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            multicast_mac("ff02::1:ffcd:1234".parse().unwrap()),
            MacAddr([0x33, 0x33, 0xff, 0xcd, 0x12, 0x34])
        );
    }

    /// Rewrite the checksum after a mutation, so the check under test is
    /// reached.
    fn fix_checksum(frame: &mut [u8]) {
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[22..38]).unwrap());
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[38..54]).unwrap());
        let sum = icmpv6_checksum(&frame[54..], src, dst);
        frame[56..58].copy_from_slice(&sum.to_be_bytes());
    }

    #[test]
    fn refusals() {
        let f = UNSOLICITED_NA;
        assert!(matches!(
            NdpRepr::parse_bytes(&f[..77]),
            Err(NdpError::Truncated { needed: 78, .. })
        ));
        assert!(matches!(
            NdpRepr::parse_bytes(&f[..85]),
            Err(NdpError::Truncated { needed: 86, .. })
        ));
        let mut b = f;
        b[13] = 0x00;
        assert_eq!(
            NdpRepr::parse_bytes(&b),
            Err(NdpError::NotIpv6 { ethertype: 0x8600 })
        );
        let mut b = f;
        b[14] = 0x40;
        assert_eq!(NdpRepr::parse_bytes(&b), Err(NdpError::Version(4)));
        let mut b = f;
        b[20] = 0; // hop-by-hop options
        assert_eq!(NdpRepr::parse_bytes(&b), Err(NdpError::NotIcmpv6(0)));
        let mut b = f;
        b[21] = 64;
        assert_eq!(NdpRepr::parse_bytes(&b), Err(NdpError::HopLimit(64)));
        let mut b = f;
        b[57] ^= 1;
        assert_eq!(
            NdpRepr::parse_bytes(&b),
            Err(NdpError::Checksum {
                expected: 0x9afc,
                found: 0x9afd
            })
        );
        let mut b = f;
        b[54] = 128; // echo request
        fix_checksum(&mut b);
        assert_eq!(
            NdpRepr::parse_bytes(&b),
            Err(NdpError::NotNeighborDiscovery(128))
        );
        let mut b = f;
        b[55] = 1;
        fix_checksum(&mut b);
        assert_eq!(NdpRepr::parse_bytes(&b), Err(NdpError::Code(1)));
        let mut b = f;
        b[58] = 0x60; // S=1 to ff02::1
        fix_checksum(&mut b);
        assert!(matches!(
            NdpRepr::parse_bytes(&b),
            Err(NdpError::SolicitedToMulticast(_))
        ));
        let mut b = f;
        b[62] = 0xff; // target ff01:...
        fix_checksum(&mut b);
        assert!(matches!(
            NdpRepr::parse_bytes(&b),
            Err(NdpError::MulticastTarget(_))
        ));
        let mut b = f;
        b[79] = 0; // option length 0
        fix_checksum(&mut b);
        assert_eq!(NdpRepr::parse_bytes(&b), Err(NdpError::ZeroLengthOption(2)));
        let mut b = f;
        b[79] = 2; // option claims 16 bytes, 8 present
        fix_checksum(&mut b);
        assert_eq!(
            NdpRepr::parse_bytes(&b),
            Err(NdpError::OptionTruncated { kind: 2, needed: 8 })
        );
        let mut ns = NeighborSolicitRepr::dad(MAC, vip());
        ns.source_mac = Some(MAC);
        let b = NdpRepr::Solicit(ns).to_vec();
        assert_eq!(
            NdpRepr::parse_bytes(&b),
            Err(NdpError::UnspecifiedWithSourceOption)
        );
        let mut small = [0u8; 85];
        assert_eq!(
            NdpRepr::Advert(NeighborAdvertRepr::unsolicited(MAC, vip())).emit(&mut small),
            Err(NdpError::BufferTooSmall {
                len: 85,
                needed: 86
            })
        );
    }

    #[test]
    fn unknown_options_are_skipped() {
        // An NA with a nonce option (type 14, 8 bytes) before the TLLA.
        let mut b = UNSOLICITED_NA[..78].to_vec();
        b.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]);
        b.extend_from_slice(&UNSOLICITED_NA[78..]);
        b[19] = 40;
        fix_checksum(&mut b);
        let NdpRepr::Advert(na) = NdpRepr::parse_bytes(&b).unwrap() else {
            panic!("not an NA");
        };
        assert_eq!(na.target_mac, Some(MAC));
    }

    fn mac() -> impl Strategy<Value = MacAddr> {
        any::<[u8; 6]>().prop_map(MacAddr)
    }

    fn unicast() -> impl Strategy<Value = Ipv6Addr> {
        any::<u128>()
            .prop_map(Ipv6Addr::from)
            .prop_filter("unicast", |a| !a.is_multicast())
    }

    fn any_ip() -> impl Strategy<Value = Ipv6Addr> {
        any::<u128>().prop_map(Ipv6Addr::from)
    }

    prop_compose! {
        fn advert()(d in mac(), s in mac(), src in any_ip(), dst in any_ip(), r in any::<bool>(),
                    sol in any::<bool>(), o in any::<bool>(), t in unicast(), tm in proptest::option::of(mac()))
                    -> NdpRepr {
            NdpRepr::Advert(NeighborAdvertRepr {
                eth_destination: d, eth_source: s, ip_source: src, ip_destination: dst,
                router: r, solicited: sol && !dst.is_multicast(), override_flag: o,
                target: t, target_mac: tm,
            })
        }
    }

    prop_compose! {
        fn solicit()(d in mac(), s in mac(), src in any_ip(), dst in any_ip(), t in unicast(),
                     sm in proptest::option::of(mac())) -> NdpRepr {
            NdpRepr::Solicit(NeighborSolicitRepr {
                eth_destination: d, eth_source: s, ip_source: src, ip_destination: dst,
                target: t, source_mac: if src.is_unspecified() { None } else { sm },
            })
        }
    }

    proptest! {
        #[test]
        fn round_trip(r in prop_oneof![advert(), solicit()]) {
            prop_assert_eq!(NdpRepr::parse_bytes(&r.to_vec()), Ok(r));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = NdpRepr::parse_bytes(&bytes);
        }

        #[test]
        fn mutated_frames_never_panic(idx in 0usize..86, val in any::<u8>(), cut in 0usize..=86, fix in any::<bool>()) {
            let mut b = UNSOLICITED_NA;
            b[idx] = val;
            if fix { fix_checksum(&mut b); }
            let _ = NdpRepr::parse_bytes(&b[..cut]);
            let _ = NdpRepr::parse_bytes(&b);
        }
    }
}
