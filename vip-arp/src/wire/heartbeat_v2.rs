//! Version 2 of the layer-2 heartbeat: authenticated and scoped to one
//! cluster.
//!
//! Addressing (destination [`HEARTBEAT_MAC`](super::heartbeat::HEARTBEAT_MAC), the sender's source MAC,
//! EtherType 0x88B5) and magic are those of version 1
//! ([`super::heartbeat`]). What changes:
//!
//! - the frame ends with an **authentication code**: HMAC-SHA256 under the
//!   cluster's heartbeat key (`vip_core::heartbeat_auth`), over every byte
//!   before it, Ethernet destination, source and EtherType included,
//!   truncated to 16 bytes ([`TAG_LEN`]);
//! - a **key id** names the key, so a key can be rotated;
//! - the **election** is the cluster-scoped id of
//!   `vip_core::heartbeat_scope` (cluster identity, lock, VIPs), no longer
//!   the hash of the lock's name alone.
//!
//! A 128-bit tag: a forger who cannot read the key must guess it, one
//! frame per guess, and each guess succeeds with probability 2^-128; at
//! 10 million frames a second (a saturated 10 Gb/s link) that is still
//! beyond 10^24 years. 128 bits is the truncation NIST SP 800-107 and RFC
//! 4868's HMAC-SHA-256-128 use; it keeps the frame 16 bytes shorter than
//! the full tag (every follower reads 100 of them a second).
//!
//! # Layout
//!
//! Offsets from the start of the Ethernet frame; integers big-endian.
//!
//! | offset | length | field | value |
//! |---|---|---|---|
//! | 0 | 6 | destination MAC | [`HEARTBEAT_MAC`](super::heartbeat::HEARTBEAT_MAC) |
//! | 6 | 6 | source MAC | the sender's |
//! | 12 | 2 | EtherType | `0x88B5` |
//! | 14 | 4 | magic | `b"VIPH"` |
//! | 18 | 1 | version | 2 ([`VERSION`]) |
//! | 19 | 1 | flags | 0 (reserved: sent as 0, covered by the code, otherwise ignored) |
//! | 20 | 4 | key id | `HeartbeatKey::id` of the signing key |
//! | 24 | 8 | election | the election scope |
//! | 32 | 4 | term | the holder's `leaseTransitions` |
//! | 36 | 8 | sequence | counts up from 0 within one term |
//! | 44 | 8 | record version | `vip_core::version_tag` of the record version the sender last wrote |
//! | 52 | 4 | interval | the sender's heartbeat interval, ms, ≥ 1 |
//! | 56 | 1 | holder length *n* | 1..=253 |
//! | 57 | *n* | holder | the holder identity, UTF-8 |
//! | 57 + *n* | 16 | code | HMAC-SHA256(key, bytes 0 .. 57 + *n*), first 16 bytes |
//!
//! A frame is exactly 57 + *n* + 16 bytes: 74 ([`MIN_FRAME_LEN`], above
//! Ethernet's 60-byte minimum, so never padded) to 326 ([`MAX_FRAME_LEN`]).
//! Any other length is refused, so every byte of an accepted frame is
//! covered by the code.
//!
//! # Receiving
//!
//! [`verify`] takes the bytes, the key and the election the receiver
//! belongs to, and returns the beat or a [`DropReason`]: malformed, old
//! version (a version 1 frame: never trusted after an upgrade, so a
//! mixed-version cluster falls back to Lease expiry), other election,
//! unknown key, bad code. Replays (a verified frame heard again) are the
//! controller's to drop; see `vip_core::heartbeat_auth`.

use std::fmt;

use subtle::ConstantTimeEq;
use vip_core::{DropKind, ElectionId, HeardBeat, Heartbeat, HeartbeatKey, MacAddr};

use super::heartbeat::{HeartbeatError, HeartbeatRepr, MAX_HOLDER_LEN};
use super::heartbeat_fields::{self, Layout};

/// The version this module reads and writes.
pub const VERSION: u8 = 2;
/// The length of the truncated authentication code.
pub const TAG_LEN: usize = 16;
/// Length of everything before the holder identity.
pub const HEADER_LEN: usize = LAYOUT.header_len();
/// The shortest frame: a one-byte holder.
pub const MIN_FRAME_LEN: usize = HEADER_LEN + 1 + TAG_LEN;
/// The longest frame: a 253-byte holder.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_HOLDER_LEN + TAG_LEN;

const KEY_ID_AT: usize = 20;

/// Where version 2 keeps the fields it shares with version 1.
const LAYOUT: Layout = Layout {
    version: VERSION,
    election: 24,
};

/// A heartbeat key ready for HMAC-SHA256, with its id.
#[derive(Clone)]
pub struct BeatKey {
    id: u32,
    key: ring::hmac::Key,
}

impl fmt::Debug for BeatKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BeatKey {{ id: {:08x}, .. }}", self.id)
    }
}

impl BeatKey {
    /// The signing and verifying form of `key`.
    pub fn new(key: &HeartbeatKey) -> Self {
        Self {
            id: key.id(),
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.bytes()),
        }
    }

    /// The key id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The truncated code of `signed`.
    fn tag(&self, signed: &[u8]) -> [u8; TAG_LEN] {
        heartbeat_fields::be(ring::hmac::sign(&self.key, signed).as_ref(), 0)
    }
}

/// A checked, zero-copy view of a received version 2 heartbeat: lengths,
/// EtherType, magic, version, interval, holder length and UTF-8 are
/// validated, so no accessor can panic. The code is not verified by the
/// view; [`verify`] does that.
#[derive(Debug, Clone)]
pub struct SignedFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SignedFrame<T> {
    /// Check that `buffer` holds exactly one version 2 heartbeat. A
    /// version 1 frame is [`HeartbeatError::Version`]`(1)`.
    pub fn new_checked(buffer: T) -> Result<Self, HeartbeatError> {
        let (bytes, len) = (buffer.as_ref(), buffer.as_ref().len());
        let truncated = HeartbeatError::Truncated {
            len,
            needed: MIN_FRAME_LEN,
        };
        if len <= heartbeat_fields::VERSION_AT {
            return Err(truncated);
        }
        heartbeat_fields::check_head(bytes, VERSION)?;
        if len < MIN_FRAME_LEN {
            return Err(truncated);
        }
        if len > MAX_FRAME_LEN {
            return Err(HeartbeatError::Oversized { len });
        }
        let n = heartbeat_fields::check_lengths(bytes, &LAYOUT)?;
        let expected = HEADER_LEN + n + TAG_LEN;
        if len != expected {
            return Err(HeartbeatError::Length { len, expected });
        }
        heartbeat_fields::holder_checked(bytes, &LAYOUT)?;
        Ok(Self { buffer })
    }

    heartbeat_fields::shared_accessors!(LAYOUT);

    /// The id of the key that signed the frame.
    pub fn key_id(&self) -> u32 {
        u32::from_be_bytes(heartbeat_fields::be(self.bytes(), KEY_ID_AT))
    }

    /// Where the code starts: after the holder.
    fn tag_at(&self) -> usize {
        HEADER_LEN + self.holder().len()
    }

    /// The bytes the code covers: everything before it.
    pub fn signed_bytes(&self) -> &[u8] {
        self.bytes().get(..self.tag_at()).unwrap_or_default()
    }

    /// The code as received.
    pub fn tag(&self) -> [u8; TAG_LEN] {
        heartbeat_fields::be(self.bytes(), self.tag_at())
    }

    /// Whether the code is right for `key` (compared in constant time).
    pub fn code_matches(&self, key: &BeatKey) -> bool {
        bool::from(key.tag(self.signed_bytes()).ct_eq(&self.tag()))
    }
}

/// A parsed version 2 heartbeat: the fields it shares with version 1 and
/// the key id (the reserved flags and the code are not kept;
/// [`emit`](Self::emit) signs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignedRepr<'a> {
    /// The beat: Ethernet addresses, election scope, term, sequence,
    /// record version, interval, holder.
    pub beat: HeartbeatRepr<'a>,
    /// The id of the signing key.
    pub key_id: u32,
}

impl<'a> SignedRepr<'a> {
    /// The frame a node with MAC `source` sends for `beat` under `key`, to
    /// [`HEARTBEAT_MAC`](super::heartbeat::HEARTBEAT_MAC). The interval is sent in whole milliseconds; it
    /// must be 1 ms to `u32::MAX` ms, and the holder 1 to 253 bytes.
    pub fn new(
        source: MacAddr,
        beat: &'a Heartbeat,
        key: &BeatKey,
    ) -> Result<Self, HeartbeatError> {
        Ok(Self {
            beat: HeartbeatRepr::new(source, beat)?,
            key_id: key.id(),
        })
    }

    /// Parse a checked frame (its code unverified); the holder borrows
    /// from its bytes.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &SignedFrame<&'a T>) -> Self {
        let bytes: &'a [u8] = frame.buffer.as_ref();
        Self {
            beat: heartbeat_fields::parse(bytes, &LAYOUT),
            key_id: frame.key_id(),
        }
    }

    /// The frame's length: header, holder and code.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.beat.holder.len() + TAG_LEN
    }

    /// Write the frame into the first [`buffer_len`](Self::buffer_len)
    /// bytes of `buf` and sign it with `key` (whose id must be
    /// [`key_id`](Self::key_id)); returns that length.
    pub fn emit(&self, buf: &mut [u8], key: &BeatKey) -> Result<usize, HeartbeatError> {
        self.beat.check()?;
        if key.id() != self.key_id {
            return Err(HeartbeatError::KeyId {
                frame: self.key_id,
                key: key.id(),
            });
        }
        let needed = self.buffer_len();
        let len = buf.len();
        let Some(out) = buf.get_mut(..needed) else {
            return Err(HeartbeatError::BufferTooSmall { len, needed });
        };
        let end = heartbeat_fields::emit(&self.beat, &LAYOUT, out);
        out[KEY_ID_AT..KEY_ID_AT + 4].copy_from_slice(&self.key_id.to_be_bytes());
        let tag = key.tag(&out[..end]);
        out[end..].copy_from_slice(&tag);
        Ok(needed)
    }

    /// The signed frame as bytes.
    pub fn to_vec(&self, key: &BeatKey) -> Result<Vec<u8>, HeartbeatError> {
        let mut out = vec![0u8; self.buffer_len()];
        self.emit(&mut out, key)?;
        Ok(out)
    }

    /// The heartbeat it carries, as heard from its Ethernet source.
    pub fn to_heard(&self) -> HeardBeat {
        self.beat.to_heard()
    }
}

/// Why a received frame was dropped instead of heard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// Not a well-formed version 2 heartbeat.
    #[error("malformed heartbeat: {0}")]
    Malformed(HeartbeatError),
    /// A version 1 (unauthenticated) frame: never trusted.
    #[error("version 1 heartbeat (unauthenticated), ignored")]
    OldVersion,
    /// Signed for another election (another cluster, lock or VIP set).
    #[error("heartbeat of another election {0}")]
    OtherElection(ElectionId),
    /// Signed with a key id this node does not hold (a rotation, or
    /// another cluster's key).
    #[error("heartbeat signed with unknown key id {0:08x}")]
    UnknownKey(u32),
    /// The code does not verify: forged or altered.
    #[error("heartbeat authentication code does not verify")]
    BadCode,
}

impl DropReason {
    /// The counter it goes into.
    pub fn kind(&self) -> DropKind {
        match self {
            Self::Malformed(_) => DropKind::Malformed,
            Self::OldVersion => DropKind::OldVersion,
            Self::OtherElection(_) => DropKind::OtherElection,
            Self::UnknownKey(_) => DropKind::UnknownKey,
            Self::BadCode => DropKind::BadCode,
        }
    }
}

/// Check, then verify `bytes` under `key` for the election `election`:
/// the beat, or why it is dropped. The election and key id are compared
/// before the code (they only ever cause a drop), the code in constant
/// time.
pub fn verify<'a>(
    bytes: &'a [u8],
    key: &BeatKey,
    election: ElectionId,
) -> Result<SignedRepr<'a>, DropReason> {
    let frame = SignedFrame::new_checked(bytes).map_err(|e| match e {
        HeartbeatError::Version(1) => DropReason::OldVersion,
        e => DropReason::Malformed(e),
    })?;
    if frame.election() != election {
        return Err(DropReason::OtherElection(frame.election()));
    }
    if frame.key_id() != key.id() {
        return Err(DropReason::UnknownKey(frame.key_id()));
    }
    if !frame.code_matches(key) {
        return Err(DropReason::BadCode);
    }
    Ok(SignedRepr::parse(&frame))
}

/// A leader's pre-built frame for one term: everything but the sequence
/// and the code is written once; [`next`](Self::next) writes the sequence,
/// signs, and hands out the bytes. No allocation per beat.
#[derive(Debug, Clone)]
pub struct BeatTemplate {
    frame: [u8; MAX_FRAME_LEN],
    len: usize,
    key: BeatKey,
}

impl BeatTemplate {
    /// The frame of `repr` (its sequence is replaced on every beat) under
    /// `key`.
    pub fn new(repr: &SignedRepr<'_>, key: BeatKey) -> Result<Self, HeartbeatError> {
        let mut frame = [0u8; MAX_FRAME_LEN];
        let len = repr.emit(&mut frame, &key)?;
        Ok(Self { frame, len, key })
    }

    /// The signed frame with sequence `sequence`.
    pub fn next(&mut self, sequence: u64) -> &[u8] {
        let end = self.len - TAG_LEN;
        self.frame[LAYOUT.sequence()..LAYOUT.sequence() + 8]
            .copy_from_slice(&sequence.to_be_bytes());
        let tag = self.key.tag(&self.frame[..end]);
        self.frame[end..self.len].copy_from_slice(&tag);
        &self.frame[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::heartbeat::tests::{Parts, beat, fit, repr_of as v1_repr_of, repr_parts};
    use proptest::prelude::*;
    use std::time::Duration;

    const MAC: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);
    const ELECTION: ElectionId = ElectionId(0x0123_4567_89ab_cdef);

    // Written out field by field from the layout table; the key is the
    // bytes 0x00..=0x1f, its id and the code computed independently with
    // Python's hmac module.
    const GOLDEN: [u8; 79] = [
        0x03, 0x76, 0x69, 0x70, 0x00, 0x01, // destination: HEARTBEAT_MAC
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, // source: the sender
        0x88, 0xb5, // EtherType: Local Experimental 1
        b'V', b'I', b'P', b'H', // magic
        0x02, // version
        0x00, // flags
        0x3d, 0xb3, 0x05, 0xd6, // key id
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, // election
        0x00, 0x00, 0x00, 0x07, // term 7
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x2c, // sequence 300
        0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10, // record version tag
        0x00, 0x00, 0x00, 0x0a, // interval 10 ms
        0x06, // holder length
        b'n', b'o', b'd', b'e', b'-', b'1', // holder
        0x34, 0xb6, 0x17, 0x3d, 0xa9, 0x31, 0x65, 0xdc, // code
        0x77, 0x99, 0x06, 0x46, 0x80, 0x5a, 0xee, 0x3f,
    ];

    fn key() -> BeatKey {
        BeatKey::new(&HeartbeatKey::new(std::array::from_fn(|i| i as u8)))
    }

    fn other_key() -> BeatKey {
        BeatKey::new(&HeartbeatKey::new([0x5a; 32]))
    }

    #[test]
    fn golden_bytes() {
        let (beat, key) = (beat(), key());
        let repr = SignedRepr::new(MAC, &beat, &key).unwrap();
        assert_eq!(repr.buffer_len(), GOLDEN.len());
        assert_eq!(repr.to_vec(&key).unwrap(), GOLDEN);
        let mut buf = [0xffu8; MAX_FRAME_LEN];
        assert_eq!(repr.emit(&mut buf, &key), Ok(GOLDEN.len()));
        assert_eq!(&buf[..GOLDEN.len()], &GOLDEN[..]);
        // The template gives the same bytes for the same sequence.
        let start = SignedRepr {
            beat: HeartbeatRepr {
                sequence: 0,
                ..repr.beat
            },
            ..repr
        };
        let mut template = BeatTemplate::new(&start, key).unwrap();
        assert_eq!(template.next(300), &GOLDEN[..]);
    }

    #[test]
    fn golden_verify() {
        let (beat, key) = (beat(), key());
        let heard = verify(&GOLDEN, &key, ELECTION).unwrap();
        assert_eq!(heard, SignedRepr::new(MAC, &beat, &key).unwrap());
        assert_eq!(heard.to_heard(), HeardBeat { beat, from: MAC });
        let view = SignedFrame::new_checked(&GOLDEN[..]).unwrap();
        assert_eq!((view.flags(), view.key_id()), (0, 0x3db3_05d6));
        assert_eq!(view.holder(), "node-1");
        assert_eq!(view.signed_bytes(), &GOLDEN[..63]);
        assert_eq!(view.into_inner(), &GOLDEN[..]);
    }

    #[test]
    fn drop_reasons() {
        let key = key();
        assert_eq!(
            verify(&GOLDEN, &key, ElectionId(1)),
            Err(DropReason::OtherElection(ELECTION))
        );
        assert_eq!(
            verify(&GOLDEN, &other_key(), ELECTION),
            Err(DropReason::UnknownKey(0x3db3_05d6))
        );
        // A forger who knows the layout but not the key.
        let mut forged = GOLDEN;
        forged[35] = 0xff; // term 255
        assert_eq!(verify(&forged, &key, ELECTION), Err(DropReason::BadCode));
        // Signed with another key under our key id.
        let beat = beat();
        let repr = SignedRepr::new(MAC, &beat, &other_key()).unwrap();
        let mut relabelled = repr.to_vec(&other_key()).unwrap();
        relabelled[20..24].copy_from_slice(&key.id().to_be_bytes());
        assert_eq!(
            verify(&relabelled, &key, ELECTION),
            Err(DropReason::BadCode)
        );
        assert_eq!(
            verify(&[0u8; 10], &key, ELECTION),
            Err(DropReason::Malformed(HeartbeatError::Truncated {
                len: 10,
                needed: MIN_FRAME_LEN
            }))
        );
        assert_eq!(DropReason::BadCode.kind(), DropKind::BadCode);
    }

    #[test]
    fn version_1_frames_are_old_never_trusted() {
        let beat = beat();
        let v1 = HeartbeatRepr::new(MAC, &beat).unwrap().to_vec().unwrap();
        assert_eq!(verify(&v1, &key(), ELECTION), Err(DropReason::OldVersion));
        assert_eq!(DropReason::OldVersion.kind(), DropKind::OldVersion);
        // And a version 2 frame is not version 1 either.
        assert_eq!(
            HeartbeatRepr::parse_bytes(&GOLDEN),
            Err(HeartbeatError::Version(2))
        );
    }

    #[test]
    fn refusals() {
        use HeartbeatError as E;
        let check = |b: &[u8]| SignedFrame::new_checked(b).map(|_| ());
        assert_eq!(
            check(&GOLDEN[..78]),
            Err(E::Length {
                len: 78,
                expected: 79
            })
        );
        let mut long = GOLDEN.to_vec();
        long.push(0);
        assert_eq!(
            check(&long),
            Err(E::Length {
                len: 80,
                expected: 79
            })
        );
        long.resize(MAX_FRAME_LEN + 1, 0);
        assert_eq!(
            check(&long),
            Err(E::Oversized {
                len: MAX_FRAME_LEN + 1
            })
        );
        assert_eq!(
            check(&GOLDEN[..73]),
            Err(E::Truncated {
                len: 73,
                needed: 74
            })
        );
        let mut b = GOLDEN;
        b[12] = 0x08;
        assert_eq!(check(&b), Err(E::NotHeartbeat { ethertype: 0x08b5 }));
        let mut b = GOLDEN;
        b[17] = b'X';
        assert_eq!(check(&b), Err(E::Magic { found: *b"VIPX" }));
        let mut b = GOLDEN;
        b[18] = 3;
        assert_eq!(check(&b), Err(E::Version(3)));
        let mut b = GOLDEN;
        b[52..56].fill(0);
        assert_eq!(check(&b), Err(E::Interval { ms: 0 }));
        let mut b = GOLDEN;
        b[56] = 0;
        assert_eq!(check(&b), Err(E::HolderLength(0)));
        let mut b = GOLDEN;
        b[58] = 0xff;
        assert!(matches!(check(&b), Err(E::HolderUtf8(_))));
        let (beat, key) = (beat(), key());
        let repr = SignedRepr::new(MAC, &beat, &key).unwrap();
        assert_eq!(
            repr.emit(&mut [0u8; 78], &key),
            Err(E::BufferTooSmall {
                len: 78,
                needed: 79
            })
        );
        assert_eq!(
            repr.to_vec(&other_key()),
            Err(E::KeyId {
                frame: key.id(),
                key: other_key().id()
            })
        );
        let empty = Heartbeat {
            holder: String::new(),
            ..beat.clone()
        };
        assert_eq!(SignedRepr::new(MAC, &empty, &key), Err(E::HolderLength(0)));
        let fast = Heartbeat {
            interval: Duration::from_micros(999),
            ..beat
        };
        assert_eq!(
            SignedRepr::new(MAC, &fast, &key),
            Err(E::Interval { ms: 0 })
        );
    }

    fn repr_of<'a>(parts: &Parts, holder: &'a str) -> SignedRepr<'a> {
        SignedRepr {
            beat: v1_repr_of(parts, holder),
            key_id: key().id(),
        }
    }

    proptest! {
        #[test]
        fn round_trip(parts in repr_parts()) {
            let holder = fit(parts.6.clone());
            let r = repr_of(&parts, &holder);
            let key = key();
            let bytes = r.to_vec(&key).unwrap();
            prop_assert!(bytes.len() >= MIN_FRAME_LEN && bytes.len() <= MAX_FRAME_LEN);
            prop_assert_eq!(verify(&bytes, &key, r.beat.election), Ok(r));
        }

        #[test]
        fn any_flipped_bit_fails_verification(parts in repr_parts(), bit in any::<prop::sample::Index>()) {
            let holder = fit(parts.6.clone());
            let r = repr_of(&parts, &holder);
            let key = key();
            let mut bytes = r.to_vec(&key).unwrap();
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify(&bytes, &key, r.beat.election).is_err());
        }

        #[test]
        fn the_template_signs_every_sequence(parts in repr_parts(), seqs in proptest::collection::vec(any::<u64>(), 1..8)) {
            let holder = fit(parts.6.clone());
            let r = repr_of(&parts, &holder);
            let mut template = BeatTemplate::new(&r, key()).unwrap();
            for q in seqs {
                let bytes = template.next(q).to_vec();
                let want = SignedRepr { beat: HeartbeatRepr { sequence: q, ..r.beat }, ..r };
                prop_assert_eq!(&bytes, &want.to_vec(&key()).unwrap());
                prop_assert_eq!(verify(&bytes, &key(), r.beat.election), Ok(want));
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..340)) {
            let _ = verify(&bytes, &key(), ELECTION);
            let _ = SignedFrame::new_checked(&bytes[..]).map(|f| (f.holder().len(), f.tag(), f.code_matches(&key())));
        }

        #[test]
        fn mutated_valid_frames_never_panic(idx in 0usize..GOLDEN.len(), val in any::<u8>(), cut in 0usize..=GOLDEN.len()) {
            let mut b = GOLDEN;
            b[idx] = val;
            let r = verify(&b[..cut], &key(), ELECTION);
            prop_assert!(r.is_err() || (cut == GOLDEN.len() && b == GOLDEN));
        }
    }
}
