//! What versions 1 and 2 of the heartbeat share: the Ethernet header,
//! magic and version, and the same fields (election, term, sequence,
//! record version, interval, holder) at offsets of their own. One
//! [`Layout`] per version; checking, reading and writing those fields is
//! written once here.

use vip_core::{ElectionId, MacAddr};

use super::heartbeat::{ETHERTYPE_HEARTBEAT, HeartbeatError, HeartbeatRepr, MAGIC, MAX_HOLDER_LEN};

const ETHERTYPE_AT: usize = 12;
const MAGIC_AT: usize = 14;
pub(super) const VERSION_AT: usize = 18;
pub(super) const FLAGS_AT: usize = 19;

/// Where one version keeps the shared fields: both versions write them in
/// the same order, from the election on (8 bytes election, 4 term, 8
/// sequence, 8 record version, 4 interval, 1 holder length, the holder).
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    /// The version byte.
    pub(super) version: u8,
    /// Where the election starts.
    pub(super) election: usize,
}

impl Layout {
    pub(super) const fn term(&self) -> usize {
        self.election + 8
    }

    pub(super) const fn sequence(&self) -> usize {
        self.term() + 4
    }

    pub(super) const fn record(&self) -> usize {
        self.sequence() + 8
    }

    pub(super) const fn interval(&self) -> usize {
        self.record() + 8
    }

    pub(super) const fn holder_len(&self) -> usize {
        self.interval() + 4
    }

    /// Where the holder identity starts.
    pub(super) const fn header_len(&self) -> usize {
        self.holder_len() + 1
    }
}

/// `N` big-endian bytes at `at`, zeros past the end (never a panic).
pub(super) fn be<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

/// Check EtherType, magic and version (`bytes` holds at least 19 bytes).
pub(super) fn check_head(bytes: &[u8], version: u8) -> Result<(), HeartbeatError> {
    let ethertype = u16::from_be_bytes(be(bytes, ETHERTYPE_AT));
    if ethertype != ETHERTYPE_HEARTBEAT {
        return Err(HeartbeatError::NotHeartbeat { ethertype });
    }
    let found: [u8; 4] = be(bytes, MAGIC_AT);
    if found != MAGIC {
        return Err(HeartbeatError::Magic { found });
    }
    let v = be::<1>(bytes, VERSION_AT)[0];
    if v != version {
        return Err(HeartbeatError::Version(v));
    }
    Ok(())
}

/// Check the interval and the holder length; returns the holder length.
pub(super) fn check_lengths(bytes: &[u8], layout: &Layout) -> Result<usize, HeartbeatError> {
    let ms = u32::from_be_bytes(be(bytes, layout.interval()));
    if ms == 0 {
        return Err(HeartbeatError::Interval { ms: 0 });
    }
    let n = usize::from(be::<1>(bytes, layout.holder_len())[0]);
    if n == 0 || n > MAX_HOLDER_LEN {
        return Err(HeartbeatError::HolderLength(n));
    }
    Ok(n)
}

/// The holder identity: `Err` when it runs past the end or is not UTF-8.
pub(super) fn holder_checked<'a>(
    bytes: &'a [u8],
    layout: &Layout,
) -> Result<&'a str, HeartbeatError> {
    let n = usize::from(be::<1>(bytes, layout.holder_len())[0]);
    let start = layout.header_len();
    let holder = bytes
        .get(start..start + n)
        .ok_or(HeartbeatError::Truncated {
            len: bytes.len(),
            needed: start + n,
        })?;
    std::str::from_utf8(holder).map_err(HeartbeatError::HolderUtf8)
}

/// The holder of a checked frame (the empty fallback is unreachable and
/// only keeps this panic-free).
pub(super) fn holder<'a>(bytes: &'a [u8], layout: &Layout) -> &'a str {
    holder_checked(bytes, layout).unwrap_or_default()
}

/// Every shared field of a checked frame.
pub(super) fn parse<'a>(bytes: &'a [u8], layout: &Layout) -> HeartbeatRepr<'a> {
    HeartbeatRepr {
        eth_destination: MacAddr(be(bytes, 0)),
        eth_source: MacAddr(be(bytes, 6)),
        election: ElectionId(u64::from_be_bytes(be(bytes, layout.election))),
        term: u32::from_be_bytes(be(bytes, layout.term())),
        sequence: u64::from_be_bytes(be(bytes, layout.sequence())),
        record_version: u64::from_be_bytes(be(bytes, layout.record())),
        interval_ms: u32::from_be_bytes(be(bytes, layout.interval())),
        holder: holder(bytes, layout),
    }
}

/// Write the header and the shared fields of `repr` (checked by the
/// caller: holder 1 to 253 bytes) into `out`, which holds at least
/// `header_len + holder` bytes; the bytes between the flags and the
/// election (v2's key id) are left to the caller. Returns where the holder
/// ends.
pub(super) fn emit(repr: &HeartbeatRepr<'_>, layout: &Layout, out: &mut [u8]) -> usize {
    let fields: [(usize, &[u8]); 10] = [
        (0, &repr.eth_destination.0),
        (6, &repr.eth_source.0),
        (ETHERTYPE_AT, &ETHERTYPE_HEARTBEAT.to_be_bytes()),
        (MAGIC_AT, &MAGIC),
        (VERSION_AT, &[layout.version, 0]),
        (layout.election, &repr.election.0.to_be_bytes()),
        (layout.term(), &repr.term.to_be_bytes()),
        (layout.sequence(), &repr.sequence.to_be_bytes()),
        (layout.record(), &repr.record_version.to_be_bytes()),
        (layout.interval(), &repr.interval_ms.to_be_bytes()),
    ];
    for (at, bytes) in fields {
        out[at..at + bytes.len()].copy_from_slice(bytes);
    }
    // The caller checked the length (at most 253).
    out[layout.holder_len()] = repr.holder.len() as u8;
    let end = layout.header_len() + repr.holder.len();
    out[layout.header_len()..end].copy_from_slice(repr.holder.as_bytes());
    end
}

/// The accessors of a checked view over `$layout`: everything a version's
/// frame carries in common.
macro_rules! shared_accessors {
    ($layout:expr) => {
        fn bytes(&self) -> &[u8] {
            self.buffer.as_ref()
        }

        /// Ethernet destination.
        pub fn eth_destination(&self) -> MacAddr {
            MacAddr(heartbeat_fields::be(self.bytes(), 0))
        }

        /// Ethernet source: the sender.
        pub fn eth_source(&self) -> MacAddr {
            MacAddr(heartbeat_fields::be(self.bytes(), 6))
        }

        /// The flags byte (reserved; 0 from this version's senders).
        pub fn flags(&self) -> u8 {
            heartbeat_fields::be::<1>(self.bytes(), heartbeat_fields::FLAGS_AT)[0]
        }

        /// The election.
        pub fn election(&self) -> ElectionId {
            ElectionId(u64::from_be_bytes(heartbeat_fields::be(
                self.bytes(),
                $layout.election,
            )))
        }

        /// The sender's term.
        pub fn term(&self) -> u32 {
            u32::from_be_bytes(heartbeat_fields::be(self.bytes(), $layout.term()))
        }

        /// The sequence number within the term.
        pub fn sequence(&self) -> u64 {
            u64::from_be_bytes(heartbeat_fields::be(self.bytes(), $layout.sequence()))
        }

        /// The tag of the record version the sender last wrote.
        pub fn record_version(&self) -> u64 {
            u64::from_be_bytes(heartbeat_fields::be(self.bytes(), $layout.record()))
        }

        /// The sender's interval in milliseconds (at least 1).
        pub fn interval_ms(&self) -> u32 {
            u32::from_be_bytes(heartbeat_fields::be(self.bytes(), $layout.interval()))
        }

        /// The holder identity (validated UTF-8, 1 to 253 bytes).
        pub fn holder(&self) -> &str {
            heartbeat_fields::holder(self.bytes(), &$layout)
        }

        /// The underlying buffer.
        pub fn into_inner(self) -> T {
            self.buffer
        }
    };
}
pub(super) use shared_accessors;
