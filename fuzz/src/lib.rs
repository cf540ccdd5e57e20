//! Fuzz target bodies; replayed as ordinary tests on stable.
//!
//! Each function takes arbitrary bytes and panics only when an invariant of
//! the code under test breaks (a parser panicking, or a round trip that
//! does not return what was built).
#![deny(missing_docs)]

use std::net::{Ipv4Addr, Ipv6Addr};

use vip_arp::wire::Claim;
use vip_arp::wire::arp::{ArpFrame, ArpOp, ArpRepr, FRAME_LEN};
use vip_arp::wire::heartbeat::{
    HEADER_LEN, HeartbeatFrame, HeartbeatRepr, MAX_FRAME_LEN, MIN_FRAME_LEN,
};
use vip_arp::wire::heartbeat_v2::{BeatKey, SignedFrame, SignedRepr, TAG_LEN, verify};
use vip_arp::wire::ndp::{NdpFrame, NdpRepr, NeighborAdvertRepr, NeighborSolicitRepr};
use vip_core::{ElectionId, HeartbeatKey, MacAddr};

/// The ARP parser: checked view, every accessor, the representation, and
/// the claim classifier. What parses must re-emit to the same bytes.
pub fn arp_parser(data: &[u8]) {
    let _ = Claim::from_frame(data);
    let Ok(view) = ArpFrame::new_checked(data) else {
        return;
    };
    let _ = (
        view.eth_destination(),
        view.eth_source(),
        view.operation(),
        view.sender_mac(),
        view.sender_ip(),
        view.target_mac(),
        view.target_ip(),
        view.arp_bytes(),
    );
    if let Ok(repr) = ArpRepr::parse(&view) {
        assert_eq!(&repr.to_bytes()[..], &data[..FRAME_LEN], "re-emit differs");
        let _ = repr.claimed();
    }
}

/// The neighbour discovery parser: checked view, accessors, representation,
/// claim classifier. What parses must re-emit to something that parses to
/// the same representation (unknown options are dropped, so bytes may
/// differ).
pub fn ndp_parser(data: &[u8]) {
    let _ = Claim::from_frame(data);
    let Ok(view) = NdpFrame::new_checked(data) else {
        return;
    };
    let _ = (
        view.eth_destination(),
        view.eth_source(),
        view.ip_source(),
        view.ip_destination(),
        view.icmp_type(),
        view.flags(),
        view.target(),
        view.options(),
    );
    if let Ok(repr) = NdpRepr::parse(&view) {
        let bytes = repr.to_vec();
        assert_eq!(NdpRepr::parse_bytes(&bytes), Ok(repr), "round trip differs");
    }
}

/// The heartbeat parser: checked view, every accessor, the representation.
/// What parses must re-emit to a frame of 60 to 298 bytes that parses to
/// the same representation and keeps the input's meaningful bytes (all but
/// the reserved flags and the padding).
pub fn heartbeat_parser(data: &[u8]) {
    let Ok(view) = HeartbeatFrame::new_checked(data) else {
        return;
    };
    let _ = (
        view.eth_destination(),
        view.eth_source(),
        view.flags(),
        view.election(),
        view.term(),
        view.sequence(),
        view.record_version(),
        view.interval_ms(),
        view.holder(),
    );
    let repr = HeartbeatRepr::parse(&view);
    let bytes = repr.to_vec().expect("a parsed heartbeat re-emits");
    assert!((MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&bytes.len()));
    assert_eq!(
        HeartbeatRepr::parse_bytes(&bytes),
        Ok(repr),
        "round trip differs"
    );
    let end = HEADER_LEN + repr.holder.len();
    assert_eq!(&bytes[..19], &data[..19], "header differs");
    assert_eq!(&bytes[20..end], &data[20..end], "fields differ");
    let _ = repr.to_heard();
}

/// The key of the `heartbeat_v2` target: the bytes 0x00..=0x1f, the key
/// of the wire format's golden frame, so the seed corpus verifies.
pub const FUZZ_KEY: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31,
];
/// The election of the `heartbeat_v2` target (the golden frame's).
pub const FUZZ_ELECTION: ElectionId = ElectionId(0x0123_4567_89ab_cdef);

/// The version 2 heartbeat parser and verifier, on two paths:
///
/// - the raw bytes under [`FUZZ_KEY`]: never a panic, and what verifies
///   re-signs to exactly the input (every byte is covered by the code);
/// - the same fields re-signed with the right key id and code (whenever
///   the input has the shape of a frame), so the accepted path is explored
///   too: the re-signed frame verifies to the same fields, and with any one
///   bit flipped (chosen by the input) it is refused.
pub fn heartbeat_v2(data: &[u8]) {
    let key = BeatKey::new(&HeartbeatKey::new(FUZZ_KEY));
    if let Ok(repr) = verify(data, &key, FUZZ_ELECTION) {
        let again = repr.to_vec(&key).expect("a verified heartbeat re-signs");
        assert_eq!(again, data, "a verified frame re-signs differently");
        let _ = repr.to_heard();
    }
    let Ok(view) = SignedFrame::new_checked(data) else {
        return;
    };
    // Every accessor of the view (the shared ones are read by parse).
    let _ = (view.flags(), view.tag(), view.code_matches(&key));
    let claimed = SignedRepr::parse(&view);
    let resigned = SignedRepr {
        key_id: key.id(),
        ..claimed
    };
    let mut bytes = resigned.to_vec(&key).expect("a checked frame re-signs");
    assert_eq!(bytes.len(), data.len());
    assert_eq!(
        verify(&bytes, &key, resigned.beat.election),
        Ok(resigned),
        "a re-signed frame does not verify"
    );
    assert_eq!(&bytes[..bytes.len() - TAG_LEN], {
        let mut signed = view.signed_bytes().to_vec();
        signed[19] = 0; // flags are sent as 0
        signed[20..24].copy_from_slice(&key.id().to_be_bytes());
        signed
    });
    let bit = data.iter().fold(0usize, |a, b| {
        a.wrapping_mul(31).wrapping_add(usize::from(*b))
    }) % (bytes.len() * 8);
    bytes[bit / 8] ^= 1 << (bit % 8);
    assert!(
        verify(&bytes, &key, resigned.beat.election).is_err(),
        "a frame with bit {bit} flipped verifies"
    );
}

/// Reads fields out of fuzz input, zero-padding when it runs out.
struct Fields<'a> {
    data: &'a [u8],
}

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        out
    }

    fn byte(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    fn mac(&mut self) -> MacAddr {
        MacAddr(self.take())
    }

    fn v4(&mut self) -> Ipv4Addr {
        Ipv4Addr::from(self.take::<4>())
    }

    fn v6(&mut self) -> Ipv6Addr {
        Ipv6Addr::from(self.take::<16>())
    }

    /// A non-multicast IPv6 address (the parser refuses multicast targets).
    fn unicast_v6(&mut self) -> Ipv6Addr {
        let mut o = self.take::<16>();
        if o[0] == 0xff {
            o[0] = 0xfe;
        }
        Ipv6Addr::from(o)
    }
}

/// Build a frame from fields taken out of `data`, emit it, parse it back,
/// and require the same representation: parse(build(x)) == x.
pub fn builder_round_trip(data: &[u8]) {
    let mut f = Fields { data };
    let selector = f.byte();
    match selector % 3 {
        0 => {
            let repr = ArpRepr {
                eth_destination: f.mac(),
                eth_source: f.mac(),
                operation: if selector & 0x80 == 0 {
                    ArpOp::Request
                } else {
                    ArpOp::Reply
                },
                sender_mac: f.mac(),
                sender_ip: f.v4(),
                target_mac: f.mac(),
                target_ip: f.v4(),
            };
            let bytes = repr.to_bytes();
            assert_eq!(ArpRepr::parse_bytes(&bytes), Ok(repr));
            // Ethernet padding does not change the meaning.
            let mut padded = bytes.to_vec();
            padded.resize(60, 0);
            assert_eq!(ArpRepr::parse_bytes(&padded), Ok(repr));
        }
        1 => {
            let flags = f.byte();
            let ip_destination = f.v6();
            let repr = NdpRepr::Advert(NeighborAdvertRepr {
                eth_destination: f.mac(),
                eth_source: f.mac(),
                ip_source: f.v6(),
                ip_destination,
                router: flags & 1 != 0,
                solicited: flags & 2 != 0 && !ip_destination.is_multicast(),
                override_flag: flags & 4 != 0,
                target: f.unicast_v6(),
                target_mac: (flags & 8 != 0).then(|| f.mac()),
            });
            assert_eq!(NdpRepr::parse_bytes(&repr.to_vec()), Ok(repr));
        }
        _ => {
            let flags = f.byte();
            let ip_source = f.v6();
            let repr = NdpRepr::Solicit(NeighborSolicitRepr {
                eth_destination: f.mac(),
                eth_source: f.mac(),
                ip_source,
                ip_destination: f.v6(),
                target: f.unicast_v6(),
                source_mac: (flags & 1 != 0 && !ip_source.is_unspecified()).then(|| f.mac()),
            });
            assert_eq!(NdpRepr::parse_bytes(&repr.to_vec()), Ok(repr));
        }
    }
}
