//! The replay rule of authenticated heartbeats: which verified beats are
//! new. A pure type ([`ReplayGuard`]) that the controller's fast failover
//! applies to every verified beat before it arms a follower or makes a
//! leader yield.
//!
//! A captured frame verifies forever (its code does not expire), so a
//! verified beat is still dropped as a replay when it does not advance
//! what was heard from its holder: per holder, admitted beats strictly
//! increase in (term, sequence). That drops a beat of an older term, and a
//! beat of the same term whose sequence is not newer than the last one
//! heard. A record version is a tag, not a counter, but within a term it
//! travels in frames whose sequence keeps rising; the guard also remembers
//! the versions a holder replaced in its term and drops a beat naming one
//! ([`Replay::Version`]).
//!
//! One exception keeps a restarted sender from being muted for the rest of
//! its term (a daemon that restarts and renews its own lease keeps the term
//! and starts its sequence at 0): a sequence that is not newer is accepted
//! when the beat names a record version not heard before in this term and
//! that the backend shows as the current one (`observed`). A replay cannot
//! name a version written after its capture.
//!
//! Only verified beats reach the guard, so only key holders (the cluster's
//! nodes) create entries; still the table keeps at most [`MAX_HOLDERS`]
//! (the oldest term forgotten first) and per holder at most
//! [`MAX_OLD_VERSIONS`] replaced versions.

use std::collections::BTreeMap;

use crate::heartbeat::Heartbeat;

/// The most holders remembered.
pub const MAX_HOLDERS: usize = 64;

/// The most replaced record versions remembered per holder and term.
pub const MAX_OLD_VERSIONS: usize = 8;

/// Why a verified beat is a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Its term is older than one already heard from its holder.
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

/// Whether a beat of `term` and `sequence` is a replay after `last`, the
/// newest (term, sequence) heard from its holder (`None`: none yet), by
/// the order alone.
pub fn is_replay(last: Option<(u32, u64)>, term: u32, sequence: u64) -> bool {
    last.is_some_and(|newest| (term, sequence) <= newest)
}

/// The newest heartbeats heard, per holder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayGuard {
    by_holder: BTreeMap<String, Last>,
}

impl ReplayGuard {
    /// Admit `beat` (and remember it) or say why it is a replay.
    /// `observed` is the version tag of the record this node observes, if
    /// any: a sequence restart naming it is accepted (see the module doc).
    pub fn admit(&mut self, beat: &Heartbeat, observed: Option<u64>) -> Result<(), Replay> {
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
        Ok(())
    }

    /// The newest (term, sequence) heard from `holder`.
    pub fn newest(&self, holder: &str) -> Option<(u32, u64)> {
        self.by_holder.get(holder).map(|l| (l.term, l.sequence))
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
    pub fn holders(&self) -> usize {
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
        let mut r = ReplayGuard::default();
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
        // An older term of the same holder; holders are apart.
        assert_eq!(r.admit(&beat("a", 1, 99, 5), None), Err(Replay::Term));
        assert_eq!(r.admit(&beat("b", 3, 0, 20), None), Ok(()));
        assert_eq!(r.admit(&beat("b", 3, 1, 20), None), Ok(()));
        assert_eq!(r.admit(&beat("a", 3, 0, 30), None), Ok(()), "a new term");
        assert_eq!(r.newest("a"), Some((3, 0)));
        assert_eq!(r.newest("c"), None);
        assert!(!is_replay(None, 0, 0));
        assert!(is_replay(Some((3, 5)), 3, 5));
        assert!(!is_replay(Some((3, 5)), 4, 0));
    }

    #[test]
    fn a_restarted_sender_is_heard_again_only_with_the_observed_new_version() {
        let mut r = ReplayGuard::default();
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
        let mut r = ReplayGuard::default();
        for i in 0..(MAX_HOLDERS as u32 + 20) {
            r.admit(&beat(&format!("n{i}"), 7 + i, 0, 1), None).unwrap();
        }
        assert_eq!(r.holders(), MAX_HOLDERS);
        let mut one = ReplayGuard::default();
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
            let mut r = ReplayGuard::default();
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
                    let newest = admitted.iter().filter(|p| p.holder == b.holder).map(|p| p.term).max();
                    prop_assert!(newest.is_none_or(|t| b.term >= t));
                    admitted.push(b);
                }
            }
        }
    }
}
