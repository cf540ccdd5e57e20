//! The layer-2 heartbeat of fenced fast failover, as vip sends and reads it.
//!
//! While it leads, a node sends one of these frames every heartbeat
//! interval on the VIP's interface (see `vip_core::heartbeat`); followers
//! listen for them.
//!
//! # Addressing
//!
//! - **Destination** [`HEARTBEAT_MAC`] `03:76:69:70:00:01`: a *locally
//!   administered multicast* address (first octet `0x03`: the group bit and
//!   the local bit set), so it belongs to no vendor and no standard
//!   protocol. A multicast group rather than broadcast, because the NIC of
//!   every host that has not joined the group filters the frame in
//!   hardware, while a broadcast interrupts every host on the segment 100
//!   times a second. Switches without multicast snooping flood it within
//!   the segment like a broadcast, so it reaches every node; like every
//!   layer-2 frame it never leaves the segment. Not one of the
//!   `01:80:c2:00:00:0x` addresses, which 802.1D bridges consume instead
//!   of forwarding.
//! - **Source**: the sender's MAC, which followers learn the holder's
//!   interface by.
//! - **EtherType** [`ETHERTYPE_HEARTBEAT`] `0x88B5`: IEEE 802 Local
//!   Experimental EtherType 1, reserved for exactly this kind of private
//!   protocol.
//!
//! # Layout
//!
//! Offsets from the start of the Ethernet frame; integers big-endian.
//!
//! | offset | length | field | value |
//! |---|---|---|---|
//! | 0 | 6 | destination MAC | [`HEARTBEAT_MAC`] |
//! | 6 | 6 | source MAC | the sender's |
//! | 12 | 2 | EtherType | `0x88B5` |
//! | 14 | 4 | magic | `b"VIPH"` ([`MAGIC`]) |
//! | 18 | 1 | version | 1 ([`VERSION`]) |
//! | 19 | 1 | flags | 0 (reserved: sent as 0, ignored on receipt) |
//! | 20 | 8 | election | `ElectionId` (FNV-1a 64 of the lock's name) |
//! | 28 | 4 | term | the holder's `leaseTransitions` |
//! | 32 | 8 | sequence | counts up from 0 within one term |
//! | 40 | 8 | record version | `vip_core::version_tag` of the record version the sender last wrote |
//! | 48 | 4 | interval | the sender's heartbeat interval, ms, ≥ 1 |
//! | 52 | 1 | holder length *n* | 1..=253 |
//! | 53 | *n* | holder | the holder identity, UTF-8 |
//! | 53 + *n* | | padding | zeros up to the 60-byte Ethernet minimum |
//!
//! A frame is therefore 60 ([`MIN_FRAME_LEN`]) to 306 ([`MAX_FRAME_LEN`])
//! bytes. Trailing bytes after the holder are padding and are ignored; a
//! frame longer than [`MAX_FRAME_LEN`] is refused. Any other magic or
//! version is a parse error, so a follower ignores the frames of a newer
//! format instead of misreading them; a new format gets a new version.

use std::str::Utf8Error;

use vip_core::{ElectionId, HeardBeat, Heartbeat, MacAddr};

use super::heartbeat_fields::{self, Layout};

/// The heartbeat's destination: locally administered multicast.
pub const HEARTBEAT_MAC: MacAddr = MacAddr([0x03, 0x76, 0x69, 0x70, 0x00, 0x01]);
/// IEEE 802 Local Experimental EtherType 1.
pub const ETHERTYPE_HEARTBEAT: u16 = 0x88b5;
/// The first four payload bytes of every heartbeat.
pub const MAGIC: [u8; 4] = *b"VIPH";
/// The only version this code reads and writes.
pub const VERSION: u8 = 1;
/// The longest holder identity (a DNS name's maximum).
pub const MAX_HOLDER_LEN: usize = 253;
/// Length of everything before the holder identity.
pub const HEADER_LEN: usize = 53;
/// The shortest frame sent: Ethernet's minimum (without the FCS).
pub const MIN_FRAME_LEN: usize = 60;
/// The longest frame accepted: a 253-byte holder and no padding.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_HOLDER_LEN;

/// Where version 1 keeps its fields.
pub(super) const LAYOUT: Layout = Layout {
    version: VERSION,
    election: 20,
};

/// Why bytes are not a heartbeat vip understands, or a heartbeat cannot be
/// written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// Fewer bytes than the frame's header and holder need.
    #[error("heartbeat frame truncated: {len} bytes, {needed} needed")]
    Truncated {
        /// The number of bytes given.
        len: usize,
        /// The number needed.
        needed: usize,
    },
    /// More bytes than the longest heartbeat.
    #[error("heartbeat frame oversized: {len} bytes, at most {MAX_FRAME_LEN} expected")]
    Oversized {
        /// The number of bytes given.
        len: usize,
    },
    /// The EtherType is not 0x88B5.
    #[error("not a heartbeat frame: EtherType {ethertype:#06x}, expected 0x88b5")]
    NotHeartbeat {
        /// The EtherType found.
        ethertype: u16,
    },
    /// The payload does not start with [`MAGIC`] (another 0x88B5 protocol).
    #[error("not a vip heartbeat: magic {found:02x?}, expected \"VIPH\"")]
    Magic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// A version other than [`VERSION`].
    #[error("unsupported heartbeat version {0}, expected {VERSION}")]
    Version(u8),
    /// A holder length of 0 or more than [`MAX_HOLDER_LEN`].
    #[error("heartbeat holder length {0}, expected 1..={MAX_HOLDER_LEN}")]
    HolderLength(usize),
    /// The holder identity is not UTF-8.
    #[error("heartbeat holder identity is not UTF-8")]
    HolderUtf8(#[source] Utf8Error),
    /// An interval of 0 ms, or more than `u32::MAX` ms.
    #[error("heartbeat interval {ms} ms, expected 1..=4294967295 ms")]
    Interval {
        /// The interval, in whole milliseconds.
        ms: u128,
    },
    /// A version 2 frame whose length is not exactly header, holder and
    /// code.
    #[error("heartbeat frame of {len} bytes, its holder length makes it {expected}")]
    Length {
        /// The number of bytes given.
        len: usize,
        /// The length the holder length byte implies.
        expected: usize,
    },
    /// A version 2 frame to be signed with a key other than the one it
    /// names.
    #[error("heartbeat names key id {frame:08x} but is signed with key id {key:08x}")]
    KeyId {
        /// The key id in the frame.
        frame: u32,
        /// The signing key's id.
        key: u32,
    },
    /// The output buffer is too small.
    #[error("buffer of {len} bytes too small for a heartbeat frame of {needed}")]
    BufferTooSmall {
        /// The buffer's length.
        len: usize,
        /// The frame's length.
        needed: usize,
    },
}

/// A checked, zero-copy view of a received heartbeat frame.
///
/// After [`new_checked`](Self::new_checked) succeeds, every accessor is
/// infallible: lengths, EtherType, magic, version, interval, holder length
/// and the holder's UTF-8 have all been validated.
#[derive(Debug, Clone)]
pub struct HeartbeatFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HeartbeatFrame<T> {
    /// Check that `buffer` holds one whole version-1 heartbeat.
    pub fn new_checked(buffer: T) -> Result<Self, HeartbeatError> {
        let bytes = buffer.as_ref();
        let len = bytes.len();
        if len < HEADER_LEN {
            return Err(HeartbeatError::Truncated {
                len,
                needed: HEADER_LEN,
            });
        }
        if len > MAX_FRAME_LEN {
            return Err(HeartbeatError::Oversized { len });
        }
        heartbeat_fields::check_head(bytes, VERSION)?;
        heartbeat_fields::check_lengths(bytes, &LAYOUT)?;
        heartbeat_fields::holder_checked(bytes, &LAYOUT)?;
        Ok(Self { buffer })
    }

    heartbeat_fields::shared_accessors!(LAYOUT);
}

/// A parsed heartbeat frame: every field that carries meaning (the
/// reserved flags and the padding are not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeartbeatRepr<'a> {
    /// Ethernet destination ([`HEARTBEAT_MAC`] when built by
    /// [`new`](Self::new)).
    pub eth_destination: MacAddr,
    /// Ethernet source: the sender's MAC.
    pub eth_source: MacAddr,
    /// The election.
    pub election: ElectionId,
    /// The sender's term.
    pub term: u32,
    /// The sequence number within the term.
    pub sequence: u64,
    /// The tag of the record version the sender last wrote.
    pub record_version: u64,
    /// The sender's interval, whole milliseconds, at least 1.
    pub interval_ms: u32,
    /// The holder identity, 1 to 253 bytes.
    pub holder: &'a str,
}

impl<'a> HeartbeatRepr<'a> {
    /// The frame a node with MAC `source` sends for `beat`, to
    /// [`HEARTBEAT_MAC`]. The interval is sent in whole milliseconds
    /// (a fraction is dropped); it must be 1 ms to `u32::MAX` ms, and the
    /// holder 1 to 253 bytes.
    pub fn new(source: MacAddr, beat: &'a Heartbeat) -> Result<Self, HeartbeatError> {
        let ms = beat.interval.as_millis();
        let interval_ms = u32::try_from(ms)
            .ok()
            .filter(|ms| *ms > 0)
            .ok_or(HeartbeatError::Interval { ms })?;
        let repr = Self {
            eth_destination: HEARTBEAT_MAC,
            eth_source: source,
            election: beat.election,
            term: beat.term,
            sequence: beat.sequence,
            record_version: beat.version,
            interval_ms,
            holder: &beat.holder,
        };
        repr.check()?;
        Ok(repr)
    }

    /// Refuse a holder of 0 or more than 253 bytes and a 0 ms interval.
    pub(super) fn check(&self) -> Result<(), HeartbeatError> {
        let n = self.holder.len();
        if n == 0 || n > MAX_HOLDER_LEN {
            return Err(HeartbeatError::HolderLength(n));
        }
        if self.interval_ms == 0 {
            return Err(HeartbeatError::Interval { ms: 0 });
        }
        Ok(())
    }

    /// Parse a checked frame; the holder borrows from its bytes.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &HeartbeatFrame<&'a T>) -> Self {
        let bytes: &'a [u8] = frame.buffer.as_ref();
        heartbeat_fields::parse(bytes, &LAYOUT)
    }

    /// Check and parse raw bytes.
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Self, HeartbeatError> {
        Ok(Self::parse(&HeartbeatFrame::new_checked(bytes)?))
    }

    /// The frame's length: header and holder, padded to [`MIN_FRAME_LEN`].
    pub fn buffer_len(&self) -> usize {
        (HEADER_LEN + self.holder.len()).max(MIN_FRAME_LEN)
    }

    /// Write the frame, padding included, into the first
    /// [`buffer_len`](Self::buffer_len) bytes of `buf`; returns that length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, HeartbeatError> {
        self.check()?;
        let needed = self.buffer_len();
        let len = buf.len();
        let Some(out) = buf.get_mut(..needed) else {
            return Err(HeartbeatError::BufferTooSmall { len, needed });
        };
        let end = heartbeat_fields::emit(self, &LAYOUT, out);
        out[end..].fill(0);
        Ok(needed)
    }

    /// The frame as bytes.
    pub fn to_vec(&self) -> Result<Vec<u8>, HeartbeatError> {
        let mut out = vec![0u8; self.buffer_len()];
        self.emit(&mut out)?;
        Ok(out)
    }

    /// The heartbeat it carries, as heard from its Ethernet source.
    pub fn to_heard(&self) -> HeardBeat {
        HeardBeat {
            beat: Heartbeat {
                election: self.election,
                holder: self.holder.to_string(),
                term: self.term,
                sequence: self.sequence,
                version: self.record_version,
                interval: std::time::Duration::from_millis(u64::from(self.interval_ms)),
            },
            from: self.eth_source,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    const MAC: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);

    // Written out field by field from the layout table.
    const GOLDEN: [u8; MIN_FRAME_LEN] = [
        0x03, 0x76, 0x69, 0x70, 0x00, 0x01, // destination: HEARTBEAT_MAC
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, // source: the sender
        0x88, 0xb5, // EtherType: Local Experimental 1
        b'V', b'I', b'P', b'H', // magic
        0x01, // version
        0x00, // flags
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, // election
        0x00, 0x00, 0x00, 0x07, // term 7
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x2c, // sequence 300
        0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10, // record version tag
        0x00, 0x00, 0x00, 0x0a, // interval 10 ms
        0x06, // holder length
        b'n', b'o', b'd', b'e', b'-', b'1', // holder
        0,    // padding to 60 bytes
    ];

    /// The beat of the golden frames (both versions).
    pub(in crate::wire) fn beat() -> Heartbeat {
        Heartbeat {
            election: ElectionId(0x0123_4567_89ab_cdef),
            holder: "node-1".into(),
            term: 7,
            sequence: 300,
            version: 0xfedc_ba98_7654_3210,
            interval: Duration::from_millis(10),
        }
    }

    #[test]
    fn golden_bytes() {
        let beat = beat();
        let repr = HeartbeatRepr::new(MAC, &beat).unwrap();
        assert_eq!(repr.buffer_len(), MIN_FRAME_LEN);
        assert_eq!(repr.to_vec().unwrap(), GOLDEN);
        // Into a bigger, dirty buffer: the same 60 bytes, length returned.
        let mut buf = [0xffu8; MAX_FRAME_LEN];
        assert_eq!(repr.emit(&mut buf), Ok(MIN_FRAME_LEN));
        assert_eq!(&buf[..MIN_FRAME_LEN], &GOLDEN[..]);
    }

    #[test]
    fn golden_parse() {
        let beat = beat();
        let parsed = HeartbeatRepr::parse_bytes(&GOLDEN).unwrap();
        assert_eq!(parsed, HeartbeatRepr::new(MAC, &beat).unwrap());
        assert_eq!(parsed.eth_destination, HEARTBEAT_MAC);
        assert_eq!(parsed.to_heard(), HeardBeat { beat, from: MAC });
        let view = HeartbeatFrame::new_checked(&GOLDEN[..]).unwrap();
        assert_eq!(view.flags(), 0);
        assert_eq!(view.holder(), "node-1");
        assert_eq!(view.into_inner(), &GOLDEN[..]);
        // Without padding (veth does not pad), and with reserved flags set.
        assert_eq!(HeartbeatRepr::parse_bytes(&GOLDEN[..59]), Ok(parsed));
        let mut flagged = GOLDEN;
        flagged[19] = 0x80;
        assert_eq!(HeartbeatRepr::parse_bytes(&flagged), Ok(parsed));
    }

    #[test]
    fn a_longest_holder_fills_the_largest_frame() {
        let beat = Heartbeat {
            holder: "h".repeat(MAX_HOLDER_LEN),
            ..beat()
        };
        let bytes = HeartbeatRepr::new(MAC, &beat).unwrap().to_vec().unwrap();
        assert_eq!(bytes.len(), MAX_FRAME_LEN);
        assert_eq!(
            HeartbeatRepr::parse_bytes(&bytes).unwrap().holder.len(),
            MAX_HOLDER_LEN
        );
    }

    #[test]
    fn refusals() {
        use HeartbeatError as E;
        assert_eq!(
            HeartbeatRepr::parse_bytes(&GOLDEN[..52]),
            Err(E::Truncated {
                len: 52,
                needed: HEADER_LEN
            })
        );
        // The holder runs past the end.
        assert_eq!(
            HeartbeatRepr::parse_bytes(&GOLDEN[..58]),
            Err(E::Truncated {
                len: 58,
                needed: 59
            })
        );
        let mut big = GOLDEN.to_vec();
        big.resize(MAX_FRAME_LEN + 1, 0);
        assert_eq!(
            HeartbeatRepr::parse_bytes(&big),
            Err(E::Oversized {
                len: MAX_FRAME_LEN + 1
            })
        );
        let mut b = GOLDEN;
        b[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(
            HeartbeatRepr::parse_bytes(&b),
            Err(E::NotHeartbeat { ethertype: 0x0806 })
        );
        let mut b = GOLDEN;
        b[17] = b'X';
        assert_eq!(
            HeartbeatRepr::parse_bytes(&b),
            Err(E::Magic { found: *b"VIPX" })
        );
        let mut b = GOLDEN;
        b[18] = 2;
        assert_eq!(HeartbeatRepr::parse_bytes(&b), Err(E::Version(2)));
        let mut b = GOLDEN;
        b[48..52].fill(0);
        assert_eq!(HeartbeatRepr::parse_bytes(&b), Err(E::Interval { ms: 0 }));
        for n in [0u8, 254, 255] {
            let mut b = [0u8; MAX_FRAME_LEN];
            b[..GOLDEN.len()].copy_from_slice(&GOLDEN);
            b[52] = n;
            assert_eq!(
                HeartbeatRepr::parse_bytes(&b),
                Err(E::HolderLength(usize::from(n)))
            );
        }
        let mut b = GOLDEN;
        b[54] = 0xff; // never valid in UTF-8
        assert!(matches!(
            HeartbeatRepr::parse_bytes(&b),
            Err(E::HolderUtf8(_))
        ));
        let mut b = GOLDEN;
        b[57..59].copy_from_slice(&[0xc3, 0x28]); // bad continuation byte
        assert!(matches!(
            HeartbeatRepr::parse_bytes(&b),
            Err(E::HolderUtf8(_))
        ));
    }

    #[test]
    fn unsendable_beats_are_refused() {
        use HeartbeatError as E;
        let empty = Heartbeat {
            holder: String::new(),
            ..beat()
        };
        assert_eq!(HeartbeatRepr::new(MAC, &empty), Err(E::HolderLength(0)));
        let long = Heartbeat {
            holder: "h".repeat(254),
            ..beat()
        };
        assert_eq!(HeartbeatRepr::new(MAC, &long), Err(E::HolderLength(254)));
        let fast = Heartbeat {
            interval: Duration::from_micros(999),
            ..beat()
        };
        assert_eq!(HeartbeatRepr::new(MAC, &fast), Err(E::Interval { ms: 0 }));
        let slow = Heartbeat {
            interval: Duration::from_millis(u64::from(u32::MAX) + 1),
            ..beat()
        };
        assert_eq!(
            HeartbeatRepr::new(MAC, &slow),
            Err(E::Interval {
                ms: u128::from(u32::MAX) + 1
            })
        );
        let beat = beat();
        let repr = HeartbeatRepr::new(MAC, &beat).unwrap();
        let mut small = [0u8; 59];
        assert_eq!(
            repr.emit(&mut small),
            Err(E::BufferTooSmall {
                len: 59,
                needed: 60
            })
        );
        let bad = HeartbeatRepr {
            interval_ms: 0,
            ..repr
        };
        assert_eq!(bad.to_vec(), Err(E::Interval { ms: 0 }));
        // Sub-millisecond fractions are dropped.
        let odd = Heartbeat {
            interval: Duration::from_micros(10_900),
            ..beat
        };
        assert_eq!(HeartbeatRepr::new(MAC, &odd).unwrap().interval_ms, 10);
    }

    /// The fields of a representation, the holder not yet cut to size.
    pub(in crate::wire) type Parts = ([u8; 6], [u8; 6], u64, u32, (u64, u64), u32, String);

    pub(in crate::wire) fn repr_parts() -> impl Strategy<Value = Parts> {
        (
            any::<[u8; 6]>(),
            any::<[u8; 6]>(),
            any::<u64>(),
            any::<u32>(),
            (any::<u64>(), any::<u64>()),
            1u32..,
            // Any Unicode, cut to at most 253 bytes below.
            "\\PC{1,120}",
        )
    }

    /// The representation of `parts` with `holder` (cut by [`fit`]).
    pub(in crate::wire) fn repr_of<'a>(
        (d, s, e, t, (q, v), i, _): &Parts,
        holder: &'a str,
    ) -> HeartbeatRepr<'a> {
        HeartbeatRepr {
            eth_destination: MacAddr(*d),
            eth_source: MacAddr(*s),
            election: ElectionId(*e),
            term: *t,
            sequence: *q,
            record_version: *v,
            interval_ms: *i,
            holder,
        }
    }

    pub(in crate::wire) fn fit(mut holder: String) -> String {
        while holder.len() > MAX_HOLDER_LEN {
            holder.pop();
        }
        holder
    }

    proptest! {
        #[test]
        fn round_trip(parts in repr_parts()) {
            let holder = fit(parts.6.clone());
            let r = repr_of(&parts, &holder);
            let bytes = r.to_vec().unwrap();
            prop_assert_eq!(bytes.len(), r.buffer_len());
            prop_assert!(bytes.len() >= MIN_FRAME_LEN && bytes.len() <= MAX_FRAME_LEN);
            prop_assert_eq!(HeartbeatRepr::parse_bytes(&bytes), Ok(r));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..320)) {
            if let Ok(r) = HeartbeatRepr::parse_bytes(&bytes) {
                // What parses re-emits to a frame that parses the same.
                let again = r.to_vec().unwrap();
                prop_assert_eq!(HeartbeatRepr::parse_bytes(&again), Ok(r));
            }
        }

        #[test]
        fn mutated_valid_frames_never_panic(idx in 0usize..MIN_FRAME_LEN, val in any::<u8>(), cut in 0usize..=MIN_FRAME_LEN) {
            let mut b = GOLDEN;
            b[idx] = val;
            let _ = HeartbeatRepr::parse_bytes(&b[..cut]);
            if let Ok(r) = HeartbeatRepr::parse_bytes(&b) {
                let again = r.to_vec().unwrap();
                prop_assert_eq!(HeartbeatRepr::parse_bytes(&again), Ok(r));
            }
        }
    }
}
