//! Counts of dropped heartbeat frames, by reason and by sender, for
//! metrics and `vip status`.
//!
//! The channel (`vip-arp`) counts what fails verification; the controller
//! counts replays ([`DropKind::Replay`]) into the same table. The table
//! keeps at most [`MAX_SENDERS`] senders: a forger can make up any source
//! MAC, so later senders are counted together under "others" instead of
//! growing memory without bound. The totals always count everything.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::model::MacAddr;

/// The most senders counted one by one.
pub const MAX_SENDERS: usize = 64;

/// Why a heartbeat frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropKind {
    /// Not a well-formed heartbeat of the current version.
    Malformed,
    /// A version 1 (unauthenticated) frame.
    OldVersion,
    /// Another election (another cluster, lock or VIP set).
    OtherElection,
    /// Signed with a key id this node does not hold.
    UnknownKey,
    /// The authentication code does not verify.
    BadCode,
    /// Verified, but not newer than what was already heard.
    Replay,
}

impl DropKind {
    /// Every kind, in label order.
    pub const ALL: [DropKind; 6] = [
        Self::Malformed,
        Self::OldVersion,
        Self::OtherElection,
        Self::UnknownKey,
        Self::BadCode,
        Self::Replay,
    ];

    /// A short stable name, for metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::OldVersion => "old_version",
            Self::OtherElection => "other_election",
            Self::UnknownKey => "unknown_key",
            Self::BadCode => "bad_code",
            Self::Replay => "replay",
        }
    }
}

/// Dropped frames, one count per [`DropKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DropCounts([u64; 6]);

impl DropCounts {
    /// The count of `kind`.
    pub fn get(&self, kind: DropKind) -> u64 {
        self.0[kind as usize]
    }

    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    fn add(&mut self, kind: DropKind) {
        let n = &mut self.0[kind as usize];
        *n = n.saturating_add(1);
    }
}

/// A copy of the table at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DropSnapshot {
    /// Everything dropped.
    pub total: DropCounts,
    /// The first [`MAX_SENDERS`] senders, by Ethernet source.
    pub by_sender: BTreeMap<MacAddr, DropCounts>,
    /// Senders beyond the first [`MAX_SENDERS`], together.
    pub others: DropCounts,
}

/// The shared drop table (one per subscription).
#[derive(Debug, Default)]
pub struct HeartbeatDrops(Mutex<DropSnapshot>);

impl HeartbeatDrops {
    fn lock(&self) -> MutexGuard<'_, DropSnapshot> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count one frame from `from` dropped for `kind`.
    pub fn count(&self, from: MacAddr, kind: DropKind) {
        let mut table = self.lock();
        table.total.add(kind);
        let known = table.by_sender.len();
        match table.by_sender.get_mut(&from) {
            Some(counts) => counts.add(kind),
            None if known < MAX_SENDERS => table.by_sender.entry(from).or_default().add(kind),
            None => table.others.add(kind),
        }
    }

    /// The table now.
    pub fn snapshot(&self) -> DropSnapshot {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_by_reason_and_sender() {
        let drops = HeartbeatDrops::default();
        let (a, b) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        drops.count(a, DropKind::BadCode);
        drops.count(a, DropKind::BadCode);
        drops.count(b, DropKind::OldVersion);
        let s = drops.snapshot();
        assert_eq!(s.total.get(DropKind::BadCode), 2);
        assert_eq!(s.total.total(), 3);
        assert_eq!(s.by_sender[&a].get(DropKind::BadCode), 2);
        assert_eq!(s.by_sender[&b].get(DropKind::OldVersion), 1);
        assert_eq!(s.others, DropCounts::default());
        let labels: Vec<_> = DropKind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(
            labels,
            [
                "malformed",
                "old_version",
                "other_election",
                "unknown_key",
                "bad_code",
                "replay"
            ]
        );
    }

    proptest! {
        #[test]
        fn the_table_is_bounded_and_the_totals_exact(
            drops in proptest::collection::vec((any::<[u8; 6]>(), 0usize..6), 0..300)
        ) {
            let table = HeartbeatDrops::default();
            for (mac, k) in &drops {
                table.count(MacAddr(*mac), DropKind::ALL[*k]);
            }
            let s = table.snapshot();
            prop_assert!(s.by_sender.len() <= MAX_SENDERS);
            prop_assert_eq!(s.total.total(), drops.len() as u64);
            let per_sender: u64 = s.by_sender.values().map(DropCounts::total).sum();
            prop_assert_eq!(per_sender + s.others.total(), drops.len() as u64);
            for kind in DropKind::ALL {
                let want = drops.iter().filter(|(_, k)| DropKind::ALL[*k] == kind).count() as u64;
                prop_assert_eq!(s.total.get(kind), want);
            }
        }
    }
}
