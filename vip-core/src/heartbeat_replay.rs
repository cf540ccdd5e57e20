//! The replay rule of authenticated heartbeats, as a small pure type for
//! the controller to apply to verified beats.
//!
//! A captured frame verifies forever (its code does not expire), so a
//! verified beat is still dropped as a replay when it does not advance
//! what was heard from its holder: per holder, beats must come in
//! strictly increasing (term, sequence) order. That drops a beat of an
//! older term, and a beat of the same term whose sequence is not newer
//! than the last one heard; the record version needs no order of its own
//! (a tag, not a counter): within a term it travels in frames whose
//! sequence keeps rising, so an old record version only comes back in an
//! old frame, which the sequence already refuses.
//!
//! Only verified beats reach the guard, so only key holders (the cluster's
//! nodes) create entries: the table stays as small as the cluster.
//!
//! A holder that restarts and re-acquires its own lease keeps its term
//! (`leaseTransitions` counts holder changes), so its sequence must not
//! restart from 0, or its beats would be refused as replays until the next
//! term (fast failover would fall back to Lease expiry, never trust a
//! stale beat): the sender should start each term's sequence from the
//! wall clock (for example microseconds since the epoch).

use std::collections::BTreeMap;

use crate::heartbeat::Heartbeat;

/// The newest (term, sequence) heard from each holder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayGuard {
    last: BTreeMap<String, (u32, u64)>,
}

/// Whether a beat of `term` and `sequence` is a replay after `last`, the
/// newest (term, sequence) heard from its holder (`None`: none yet).
pub fn is_replay(last: Option<(u32, u64)>, term: u32, sequence: u64) -> bool {
    last.is_some_and(|newest| (term, sequence) <= newest)
}

impl ReplayGuard {
    /// Admit `beat` (true, and remember it as its holder's newest) or
    /// refuse it as a replay (false, nothing changes).
    pub fn admit(&mut self, beat: &Heartbeat) -> bool {
        let last = self.last.get(&beat.holder).copied();
        if is_replay(last, beat.term, beat.sequence) {
            return false;
        }
        self.last
            .insert(beat.holder.clone(), (beat.term, beat.sequence));
        true
    }

    /// The newest (term, sequence) heard from `holder`.
    pub fn newest(&self, holder: &str) -> Option<(u32, u64)> {
        self.last.get(holder).copied()
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
    fn the_rule() {
        let mut g = ReplayGuard::default();
        assert!(g.admit(&beat("a", 3, 10, 1)));
        assert!(!g.admit(&beat("a", 3, 10, 1)), "the same frame again");
        assert!(!g.admit(&beat("a", 3, 9, 1)), "an older sequence");
        assert!(!g.admit(&beat("a", 2, 99, 7)), "an older term");
        assert!(g.admit(&beat("a", 3, 11, 2)), "newer, a new record version");
        assert!(
            !g.admit(&beat("a", 3, 10, 1)),
            "the old record version's frame"
        );
        assert!(g.admit(&beat("a", 4, 0, 3)), "a new term starts over");
        assert!(g.admit(&beat("b", 1, 0, 1)), "holders are apart");
        assert_eq!(g.newest("a"), Some((4, 0)));
        assert_eq!(g.newest("c"), None);
        assert!(!is_replay(None, 0, 0));
    }

    proptest! {
        /// Whatever an adversary replays, reorders or repeats, the beats
        /// admitted from each holder strictly increase in (term,
        /// sequence), and no frame is admitted twice.
        #[test]
        fn admitted_beats_strictly_advance(
            frames in proptest::collection::vec((0usize..3, 0u32..4, 0u64..20), 0..200)
        ) {
            let holders = ["a", "b", "c"];
            let mut g = ReplayGuard::default();
            let mut admitted: BTreeMap<&str, Vec<(u32, u64)>> = BTreeMap::new();
            for (h, term, seq) in frames {
                if g.admit(&beat(holders[h], term, seq, 0)) {
                    admitted.entry(holders[h]).or_default().push((term, seq));
                }
            }
            for seen in admitted.values() {
                prop_assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
            }
        }
    }
}
