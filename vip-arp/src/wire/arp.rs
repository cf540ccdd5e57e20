//! ARP over Ethernet (RFC 826) as vip sends and reads it.
//!
//! - Announcements (RFC 5227 §3): the *request* form has sender and target
//!   protocol address both the VIP and a zero target hardware address; the
//!   *reply* form has the target hardware address set to our own MAC (the
//!   RFC 5944 §4.6 reading, what kube-vip and many switches expect). Both go
//!   to the Ethernet broadcast address, because some devices honour only one
//!   opcode.
//! - Probes (RFC 5227 §2.1.1): a request with sender protocol address
//!   `0.0.0.0`, so that no listener updates its cache from it.
//!
//! Only Ethernet (hardware type 1, 6-byte addresses) carrying IPv4 (0x0800,
//! 4-byte addresses) is accepted; any other ARP is refused by
//! [`ArpFrame::new_checked`].

use std::net::Ipv4Addr;

use pnet_packet::Packet;
use pnet_packet::arp::{
    ArpHardwareTypes, ArpOperation, ArpOperations, ArpPacket, MutableArpPacket,
};
use pnet_packet::ethernet::{EtherType, EtherTypes, EthernetPacket, MutableEthernetPacket};
use vip_core::MacAddr;

use super::{ETHERNET_HEADER_LEN, ETHERTYPE_ARP, mac_from_pnet, mac_to_pnet};

/// Length of the ARP payload for Ethernet/IPv4.
pub const ARP_LEN: usize = 28;
/// Length of a whole ARP frame: Ethernet header plus ARP payload. Shorter
/// than Ethernet's 60-byte minimum, which the driver pads, as for the
/// kernel's own ARP.
pub const FRAME_LEN: usize = ETHERNET_HEADER_LEN + ARP_LEN;

/// Why bytes are not an Ethernet/IPv4 ARP frame vip understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArpError {
    /// Fewer bytes than a whole frame.
    #[error("ARP frame truncated: {len} bytes, {FRAME_LEN} needed")]
    Truncated {
        /// The number of bytes given.
        len: usize,
    },
    /// The EtherType is not ARP.
    #[error("not an ARP frame: EtherType {ethertype:#06x}")]
    NotArp {
        /// The EtherType found.
        ethertype: u16,
    },
    /// ARP for another hardware or protocol type (e.g. InfiniBand).
    #[error(
        "unsupported ARP: hardware type {htype}, protocol {ptype:#06x}, address lengths {hlen}/{plen} (only Ethernet/IPv4 6/4)"
    )]
    Unsupported {
        /// Hardware type.
        htype: u16,
        /// Protocol type.
        ptype: u16,
        /// Hardware address length.
        hlen: u8,
        /// Protocol address length.
        plen: u8,
    },
    /// An opcode other than request (1) or reply (2).
    #[error("unsupported ARP operation {0}")]
    Operation(u16),
    /// The output buffer is too small.
    #[error("buffer of {len} bytes too small for an ARP frame of {FRAME_LEN}")]
    BufferTooSmall {
        /// The buffer's length.
        len: usize,
    },
}

/// A checked, zero-copy view of a received ARP frame.
///
/// After [`new_checked`](Self::new_checked) succeeds, every accessor is
/// infallible.
#[derive(Debug)]
pub struct ArpFrame<'a> {
    eth: EthernetPacket<'a>,
    arp: ArpPacket<'a>,
}

impl<'a> ArpFrame<'a> {
    /// Check that `bytes` hold a whole Ethernet/IPv4 ARP frame. Trailing
    /// bytes (Ethernet padding) are allowed and ignored.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, ArpError> {
        let truncated = ArpError::Truncated { len: bytes.len() };
        if bytes.len() < FRAME_LEN {
            return Err(truncated);
        }
        let eth = EthernetPacket::new(&bytes[..ETHERNET_HEADER_LEN]).ok_or(truncated)?;
        let ethertype = eth.get_ethertype().0;
        if ethertype != ETHERTYPE_ARP {
            return Err(ArpError::NotArp { ethertype });
        }
        let arp = ArpPacket::new(&bytes[ETHERNET_HEADER_LEN..FRAME_LEN]).ok_or(truncated)?;
        let (htype, ptype) = (arp.get_hardware_type().0, arp.get_protocol_type().0);
        let (hlen, plen) = (arp.get_hw_addr_len(), arp.get_proto_addr_len());
        if htype != ArpHardwareTypes::Ethernet.0
            || ptype != EtherTypes::Ipv4.0
            || hlen != 6
            || plen != 4
        {
            return Err(ArpError::Unsupported {
                htype,
                ptype,
                hlen,
                plen,
            });
        }
        Ok(Self { eth, arp })
    }

    /// Ethernet destination.
    pub fn eth_destination(&self) -> MacAddr {
        mac_from_pnet(self.eth.get_destination())
    }

    /// Ethernet source.
    pub fn eth_source(&self) -> MacAddr {
        mac_from_pnet(self.eth.get_source())
    }

    /// The raw ARP opcode.
    pub fn operation(&self) -> u16 {
        self.arp.get_operation().0
    }

    /// Sender hardware address (SHA).
    pub fn sender_mac(&self) -> MacAddr {
        mac_from_pnet(self.arp.get_sender_hw_addr())
    }

    /// Sender protocol address (SPA).
    pub fn sender_ip(&self) -> Ipv4Addr {
        self.arp.get_sender_proto_addr()
    }

    /// Target hardware address (THA).
    pub fn target_mac(&self) -> MacAddr {
        mac_from_pnet(self.arp.get_target_hw_addr())
    }

    /// Target protocol address (TPA).
    pub fn target_ip(&self) -> Ipv4Addr {
        self.arp.get_target_proto_addr()
    }

    /// The 28 ARP bytes.
    pub fn arp_bytes(&self) -> &[u8] {
        self.arp.packet()
    }
}

/// ARP opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOp {
    /// 1: request.
    Request,
    /// 2: reply.
    Reply,
}

impl ArpOp {
    fn to_pnet(self) -> ArpOperation {
        match self {
            ArpOp::Request => ArpOperations::Request,
            ArpOp::Reply => ArpOperations::Reply,
        }
    }
}

/// A parsed Ethernet/IPv4 ARP frame: every field of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Ethernet destination.
    pub eth_destination: MacAddr,
    /// Ethernet source.
    pub eth_source: MacAddr,
    /// Request or reply.
    pub operation: ArpOp,
    /// Sender hardware address (SHA).
    pub sender_mac: MacAddr,
    /// Sender protocol address (SPA).
    pub sender_ip: Ipv4Addr,
    /// Target hardware address (THA).
    pub target_mac: MacAddr,
    /// Target protocol address (TPA).
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// The RFC 5227 announcement, request form: broadcast, SPA = TPA =
    /// `vip`, THA zero.
    pub fn announce_request(mac: MacAddr, vip: Ipv4Addr) -> Self {
        Self {
            eth_destination: MacAddr::BROADCAST,
            eth_source: mac,
            operation: ArpOp::Request,
            sender_mac: mac,
            sender_ip: vip,
            target_mac: MacAddr::ZERO,
            target_ip: vip,
        }
    }

    /// The announcement, reply form: broadcast, SPA = TPA = `vip`, THA =
    /// our own MAC.
    pub fn announce_reply(mac: MacAddr, vip: Ipv4Addr) -> Self {
        Self {
            operation: ArpOp::Reply,
            target_mac: mac,
            ..Self::announce_request(mac, vip)
        }
    }

    /// The RFC 5227 probe for `address`: broadcast request, SPA `0.0.0.0`,
    /// THA zero, TPA the address probed.
    pub fn probe(mac: MacAddr, address: Ipv4Addr) -> Self {
        Self {
            sender_ip: Ipv4Addr::UNSPECIFIED,
            target_ip: address,
            ..Self::announce_request(mac, address)
        }
    }

    /// Parse a checked frame.
    pub fn parse(frame: &ArpFrame<'_>) -> Result<Self, ArpError> {
        let operation = match frame.operation() {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            other => return Err(ArpError::Operation(other)),
        };
        Ok(Self {
            eth_destination: frame.eth_destination(),
            eth_source: frame.eth_source(),
            operation,
            sender_mac: frame.sender_mac(),
            sender_ip: frame.sender_ip(),
            target_mac: frame.target_mac(),
            target_ip: frame.target_ip(),
        })
    }

    /// Check and parse raw bytes.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, ArpError> {
        Self::parse(&ArpFrame::new_checked(bytes)?)
    }

    /// The frame's length: [`FRAME_LEN`].
    pub fn buffer_len(&self) -> usize {
        FRAME_LEN
    }

    /// Write the frame into the first [`FRAME_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), ArpError> {
        let len = buf.len();
        if len < FRAME_LEN {
            return Err(ArpError::BufferTooSmall { len });
        }
        let (head, rest) = buf.split_at_mut(ETHERNET_HEADER_LEN);
        let mut eth = MutableEthernetPacket::new(head).ok_or(ArpError::BufferTooSmall { len })?;
        eth.set_destination(mac_to_pnet(self.eth_destination));
        eth.set_source(mac_to_pnet(self.eth_source));
        eth.set_ethertype(EtherType(ETHERTYPE_ARP));
        let mut arp =
            MutableArpPacket::new(&mut rest[..ARP_LEN]).ok_or(ArpError::BufferTooSmall { len })?;
        arp.set_hardware_type(ArpHardwareTypes::Ethernet);
        arp.set_protocol_type(EtherTypes::Ipv4);
        arp.set_hw_addr_len(6);
        arp.set_proto_addr_len(4);
        arp.set_operation(self.operation.to_pnet());
        arp.set_sender_hw_addr(mac_to_pnet(self.sender_mac));
        arp.set_sender_proto_addr(self.sender_ip);
        arp.set_target_hw_addr(mac_to_pnet(self.target_mac));
        arp.set_target_proto_addr(self.target_ip);
        Ok(())
    }

    /// The frame as bytes.
    pub fn to_bytes(&self) -> [u8; FRAME_LEN] {
        let mut out = [0u8; FRAME_LEN];
        // The buffer has exactly FRAME_LEN bytes, the only failure of emit.
        let _ = self.emit(&mut out);
        out
    }

    /// The address this frame shows its sender using: the SPA, unless it is
    /// `0.0.0.0` (a probe).
    pub fn claimed(&self) -> Option<Ipv4Addr> {
        (!self.sender_ip.is_unspecified()).then_some(self.sender_ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

    // Hand-assembled from RFC 826 / RFC 5227 field by field.
    const REQUEST: [u8; FRAME_LEN] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // Ethernet destination: broadcast
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, // Ethernet source: our MAC
        0x08, 0x06, // EtherType ARP
        0x00, 0x01, // HTYPE Ethernet
        0x08, 0x00, // PTYPE IPv4
        0x06, 0x04, // HLEN, PLEN
        0x00, 0x01, // OPER request
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, // SHA
        198, 18, 0, 10, // SPA = VIP
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // THA zero (RFC 5227)
        198, 18, 0, 10, // TPA = VIP
    ];
    const REPLY: [u8; FRAME_LEN] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, //
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, //
        0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, //
        0x00, 0x02, // OPER reply
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, // SHA
        198, 18, 0, 10, // SPA
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, // THA = own MAC
        198, 18, 0, 10, // TPA
    ];
    const PROBE: [u8; FRAME_LEN] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, //
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, //
        0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, //
        0x00, 0x01, // request
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, // SHA
        0, 0, 0, 0, // SPA 0.0.0.0
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // THA zero
        198, 18, 0, 10, // TPA = probed address
    ];

    #[test]
    fn golden_bytes() {
        assert_eq!(ArpRepr::announce_request(MAC, VIP).to_bytes(), REQUEST);
        assert_eq!(ArpRepr::announce_reply(MAC, VIP).to_bytes(), REPLY);
        assert_eq!(ArpRepr::probe(MAC, VIP).to_bytes(), PROBE);
    }

    #[test]
    fn golden_parse() {
        let r = ArpRepr::parse_bytes(&REPLY).unwrap();
        assert_eq!(r, ArpRepr::announce_reply(MAC, VIP));
        assert_eq!(r.claimed(), Some(VIP));
        assert_eq!(ArpRepr::parse_bytes(&PROBE).unwrap().claimed(), None);
        // Ethernet padding to 60 bytes is accepted.
        let mut padded = REQUEST.to_vec();
        padded.resize(60, 0);
        assert_eq!(
            ArpRepr::parse_bytes(&padded).unwrap(),
            ArpRepr::announce_request(MAC, VIP)
        );
        let view = ArpFrame::new_checked(&padded).unwrap();
        assert_eq!(view.arp_bytes(), &REQUEST[14..]);
    }

    #[test]
    fn refusals() {
        assert_eq!(
            ArpRepr::parse_bytes(&REQUEST[..41]),
            Err(ArpError::Truncated { len: 41 })
        );
        let mut b = REQUEST;
        b[12] = 0x08;
        b[13] = 0x00;
        assert_eq!(
            ArpRepr::parse_bytes(&b),
            Err(ArpError::NotArp { ethertype: 0x0800 })
        );
        let mut b = REQUEST;
        b[15] = 32; // InfiniBand
        b[18] = 20;
        assert!(matches!(
            ArpRepr::parse_bytes(&b),
            Err(ArpError::Unsupported {
                htype: 32,
                hlen: 20,
                ..
            })
        ));
        let mut b = REQUEST;
        b[21] = 3; // RARP request
        assert_eq!(ArpRepr::parse_bytes(&b), Err(ArpError::Operation(3)));
        let mut small = [0u8; 41];
        assert_eq!(
            ArpRepr::announce_request(MAC, VIP).emit(&mut small),
            Err(ArpError::BufferTooSmall { len: 41 })
        );
    }

    fn mac() -> impl Strategy<Value = MacAddr> {
        any::<[u8; 6]>().prop_map(MacAddr)
    }

    fn repr() -> impl Strategy<Value = ArpRepr> {
        (
            mac(),
            mac(),
            any::<bool>(),
            mac(),
            any::<u32>(),
            mac(),
            any::<u32>(),
        )
            .prop_map(|(d, s, req, sm, si, tm, ti)| ArpRepr {
                eth_destination: d,
                eth_source: s,
                operation: if req { ArpOp::Request } else { ArpOp::Reply },
                sender_mac: sm,
                sender_ip: Ipv4Addr::from(si),
                target_mac: tm,
                target_ip: Ipv4Addr::from(ti),
            })
    }

    proptest! {
        #[test]
        fn round_trip(r in repr()) {
            prop_assert_eq!(ArpRepr::parse_bytes(&r.to_bytes()), Ok(r));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(r) = ArpRepr::parse_bytes(&bytes) {
                // What parses re-emits to the same 42 bytes.
                prop_assert_eq!(&r.to_bytes()[..], &bytes[..FRAME_LEN]);
            }
        }

        #[test]
        fn mutated_valid_frames_never_panic(idx in 0usize..FRAME_LEN, val in any::<u8>(), cut in 0usize..=FRAME_LEN) {
            let mut b = REQUEST;
            b[idx] = val;
            let _ = ArpRepr::parse_bytes(&b[..cut]);
            let _ = ArpRepr::parse_bytes(&b);
        }
    }
}
