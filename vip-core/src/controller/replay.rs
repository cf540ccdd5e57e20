//! The replay rule of fast failover: which verified heartbeats are new.
//!
//! The channel delivers only beats whose code verifies under the cluster's
//! key (see [`crate::heartbeat_auth`]), but a verified frame can be
//! captured and sent again, late or out of order. The code covers every
//! field, so a replayed frame can only repeat what its sender once said.
//! [`Replays::admit`] drops it when:
//!
//! - its term is older than the newest term heard from anyone (terms only
//!   grow: a beat of an older term comes from a superseded leader or a
//!   capture);
//! - its (holder, term) is known and its sequence is not newer than the
//!   last one heard for it;
//! - for that (holder, term), it names a record version that an
//!   already-heard newer beat replaced.
//!
//! One exception keeps a restarted sender from being muted for the rest of
//! its term (a daemon that restarts and renews its own lease keeps the term
//! and starts its sequence at 0): a sequence that is not newer is accepted
//! when the beat names a record version not heard before in this term and
//! that the backend shows as the current one (`observed`). A replay cannot
//! name a version written after its capture.
//!
//! The state is small: one entry per holder heard (verified senders are
//! cluster members), at most [`MAX_HOLDERS`], the oldest term forgotten
//! first; per holder at most [`MAX_OLD_VERSIONS`] replaced versions.

use std::collections::BTreeMap;

use crate::heartbeat::Heartbeat;

/// The most holders remembered.
pub(super) const MAX_HOLDERS: usize = 64;

/// The most replaced record versions remembered per holder and term.
pub(super) const MAX_OLD_VERSIONS: usize = 8;

/// Why a verified beat is a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replay {
    /// Its term is older than one already heard.
    Term,
    /// Its sequence is not newer than the last one of its holder and term.
    Sequence,
    /// It names a record version its holder has since replaced.
    Version,
}

/// What was last heard from one holder.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Last {
    term: u32,
    sequence: u64,
    version: u64,
    /// Versions of this term replaced by a newer beat, oldest first.
    replaced: Vec<u64>,
}

impl Last {
    fn of(beat: &Heartbeat) -> Self {
        Self {
            term: beat.term,
            sequence: beat.sequence,
            version: beat.version,
            replaced: vec![],
        }
    }

    /// Move on to `beat` of the same term.
    fn advance(&mut self, beat: &Heartbeat) {
        if beat.version != self.version && !self.replaced.contains(&self.version) {
            if self.replaced.len() == MAX_OLD_VERSIONS {
                self.replaced.remove(0);
            }
            self.replaced.push(self.version);
        }
        self.sequence = beat.sequence;
        self.version = beat.version;
    }
}

/// The newest heartbeats heard, per holder.
#[derive(Debug, Default)]
pub(super) struct Replays {
    newest_term: Option<u32>,
    by_holder: BTreeMap<String, Last>,
}

impl Replays {
    /// Admit `beat` (and remember it) or say why it is a replay.
    /// `observed` is the version tag of the record this node observes, if
    /// any: a sequence restart naming it is accepted (see the module doc).
    pub(super) fn admit(&mut self, beat: &Heartbeat, observed: Option<u64>) -> Result<(), Replay> {
        if self.newest_term.is_some_and(|t| beat.term < t) {
            return Err(Replay::Term);
        }
        match self.by_holder.get_mut(&beat.holder) {
            Some(last) if last.term > beat.term => return Err(Replay::Term),
            Some(last) if last.term == beat.term => {
                if last.replaced.contains(&beat.version) {
                    return Err(Replay::Version);
                }
                let restarted = beat.version != last.version && observed == Some(beat.version);
                if beat.sequence <= last.sequence && !restarted {
                    return Err(Replay::Sequence);
                }
                last.advance(beat);
            }
            _ => {
                if !self.by_holder.contains_key(&beat.holder) && self.by_holder.len() >= MAX_HOLDERS
                {
                    self.forget_oldest();
                }
                self.by_holder.insert(beat.holder.clone(), Last::of(beat));
            }
        }
        self.newest_term = Some(self.newest_term.map_or(beat.term, |t| t.max(beat.term)));
        Ok(())
    }

    fn forget_oldest(&mut self) {
        let oldest = self
            .by_holder
            .iter()
            .min_by_key(|(_, l)| l.term)
            .map(|(h, _)| h.clone());
        if let Some(h) = oldest {
            self.by_holder.remove(&h);
        }
    }

    /// How many holders are remembered.
    #[cfg(test)]
    pub(super) fn holders(&self) -> usize {
        self.by_holder.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat::ElectionId;
    use proptest::prelude::*;
    use std::time::Duration;

    fn beat(holder: &str, term: u32, sequence: u64, version: u64) -> Heartbeat {
        Heartbeat {
            election: ElectionId(1),
            holder: holder.into(),
            term,
            sequence,
            version,
            interval: Duration::from_millis(10),
        }
    }

    #[test]
    fn sequences_terms_and_versions_only_move_forward() {
        let mut r = Replays::default();
        assert_eq!(r.admit(&beat("a", 2, 0, 10), None), Ok(()));
        assert_eq!(r.admit(&beat("a", 2, 1, 10), None), Ok(()));
        assert_eq!(r.admit(&beat("a", 2, 1, 10), None), Err(Replay::Sequence));
        assert_eq!(r.admit(&beat("a", 2, 0, 10), None), Err(Replay::Sequence));
        // A renewal: a new version with the next sequence.
        assert_eq!(r.admit(&beat("a", 2, 2, 11), None), Ok(()));
        assert_eq!(
            r.admit(&beat("a", 2, 9, 10), None),
            Err(Replay::Version),
            "a replaced version never comes back"
        );
        // A new term from another holder; the old term is over for all.
        assert_eq!(r.admit(&beat("b", 3, 0, 20), None), Ok(()));
        assert_eq!(r.admit(&beat("a", 2, 50, 11), None), Err(Replay::Term));
        assert_eq!(r.admit(&beat("c", 1, 0, 1), None), Err(Replay::Term));
        assert_eq!(r.admit(&beat("b", 3, 1, 20), None), Ok(()));
    }

    #[test]
    fn a_restarted_sender_is_heard_again_only_with_the_observed_new_version() {
        let mut r = Replays::default();
        r.admit(&beat("a", 4, 500, 30), None).unwrap();
        // Restarted: sequence 0, a version not heard, but not the observed
        // one (a capture of something else): dropped.
        assert_eq!(
            r.admit(&beat("a", 4, 0, 31), Some(30)),
            Err(Replay::Sequence)
        );
        // The version the backend shows: heard again.
        assert_eq!(r.admit(&beat("a", 4, 0, 31), Some(31)), Ok(()));
        assert_eq!(r.admit(&beat("a", 4, 1, 31), Some(31)), Ok(()));
        // The old life's frames are replays now.
        assert_eq!(
            r.admit(&beat("a", 4, 501, 30), Some(31)),
            Err(Replay::Version)
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut r = Replays::default();
        for i in 0..(MAX_HOLDERS as u32 + 20) {
            r.admit(&beat(&format!("n{i}"), 7 + i, 0, 1), None).unwrap();
        }
        assert_eq!(r.holders(), MAX_HOLDERS);
        let mut one = Replays::default();
        for v in 0..100 {
            one.admit(&beat("a", 1, v, v), None).unwrap();
        }
        assert_eq!(one.by_holder["a"].replaced.len(), MAX_OLD_VERSIONS);
    }

    proptest! {
        /// Whatever order frames arrive in, and however often, every frame
        /// is admitted at most once, and the admitted frames of one holder
        /// and term have strictly growing sequences.
        #[test]
        fn replays_are_never_admitted_twice(
            frames in proptest::collection::vec((0usize..3, 0u32..4, 0u64..20), 1..200),
        ) {
            let mut r = Replays::default();
            let mut admitted: Vec<Heartbeat> = vec![];
            for (h, term, seq) in frames {
                // A sender's version is a function of its sequence (one
                // renewal every 5 beats), as on the wire.
                let b = beat(["a", "b", "c"][h], term, seq, u64::from(term) * 100 + seq / 5);
                if r.admit(&b, None).is_ok() {
                    prop_assert!(!admitted.contains(&b), "{b:?} admitted twice");
                    if let Some(prev) = admitted
                        .iter()
                        .rev()
                        .find(|p| p.holder == b.holder && p.term == b.term)
                    {
                        prop_assert!(b.sequence > prev.sequence);
                    }
                    let newest = admitted.iter().map(|p| p.term).max();
                    prop_assert!(newest.is_none_or(|t| b.term >= t));
                    admitted.push(b);
                }
            }
        }
    }
}
