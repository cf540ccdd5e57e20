//! The cordon: a cordoned leader hands over to an uncordoned node (backing
//! off when nobody takes it), and a cordoned follower leaves a free lease
//! to the uncordoned nodes for the cordon grace, so the VIP is never left
//! ownerless when every node is cordoned.
//!
//! [`Cordon`] owns the cordon watch and decides; the leader carries out
//! the hand-over (`leader.rs`).

use std::time::Duration;

use tokio::time::Instant;

use crate::cordon::{CordonState, CordonWatch};

/// The cordon watch and the hand-over's state.
#[derive(Debug)]
pub(super) struct Cordon {
    watch: CordonWatch,
    /// The watch has not ended.
    pub(super) open: bool,
    grace: Duration,
    backoff_base: Duration,
    /// No hand-over before this (the last one found no taker).
    blocked_until: Option<Instant>,
    backoff: Duration,
    handed_over_at: Option<Instant>,
    /// When this follower first saw the lease free or expired.
    free_since: Option<Instant>,
}

impl Cordon {
    pub(super) fn new(watch: CordonWatch, grace: Duration, backoff_base: Duration) -> Self {
        Self {
            watch,
            open: true,
            grace,
            backoff_base,
            blocked_until: None,
            backoff: Duration::ZERO,
            handed_over_at: None,
            free_since: None,
        }
    }

    /// The cordon state now.
    pub(super) fn state(&self) -> CordonState {
        *self.watch.borrow()
    }

    /// Wait for the watch to change; `false` when it ended.
    pub(super) async fn changed(&mut self) -> bool {
        self.watch.changed().await.is_ok()
    }

    /// Take the changed state: uncordoning forgets the hand-over's back-off.
    pub(super) fn take_change(&mut self) -> CordonState {
        let c = *self.watch.borrow_and_update();
        if !c.cordoned {
            self.blocked_until = None;
            self.backoff = Duration::ZERO;
            self.handed_over_at = None;
        }
        c
    }

    /// Whether a leader should hand over at `now`: cordoned, someone to
    /// take it, and not backing off.
    pub(super) fn wants_handover(&self, now: Instant) -> bool {
        let c = self.state();
        c.cordoned && c.schedulable_peers > 0 && self.blocked_until.is_none_or(|b| now >= b)
    }

    /// This leader handed over at `now`.
    pub(super) fn handed_over(&mut self, now: Instant) {
        self.handed_over_at = Some(now);
        self.free_since = Some(now);
    }

    /// This node leads (again) at `now`. A hand-over that found no taker
    /// backs off, doubling up to 16 times the base: returns how long ago it
    /// was and the back-off now.
    pub(super) fn on_acquired(&mut self, now: Instant) -> Option<(Duration, Duration)> {
        let t = self.handed_over_at.take()?;
        if !self.state().cordoned {
            return None;
        }
        self.backoff = (self.backoff * 2).clamp(self.backoff_base, self.backoff_base * 16);
        self.blocked_until = Some(now + self.backoff);
        Some((now.duration_since(t), self.backoff))
    }

    /// The lease is not free (taken by this node or another, or this node
    /// may not take it): the grace starts afresh next time.
    pub(super) fn lease_not_free(&mut self) {
        self.free_since = None;
    }

    /// A cordoned follower that found the lease free at `now`: whether it
    /// still leaves it to the uncordoned nodes (within the grace since it
    /// first saw it free).
    pub(super) fn holds_back(&mut self, now: Instant) -> bool {
        let since = *self.free_since.get_or_insert(now);
        now < since + self.grace
    }

    /// A cordoned follower campaigns no earlier than this.
    pub(super) fn campaign_not_before(&self) -> Option<Instant> {
        if self.state().cordoned {
            self.free_since.map(|f| f + self.grace)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::watch;

    const S: Duration = Duration::from_secs(1);

    fn cordon(state: CordonState) -> (watch::Sender<CordonState>, Cordon) {
        let (tx, rx) = watch::channel(state);
        (tx, Cordon::new(rx, 3 * S, 10 * S))
    }

    const CORDONED: CordonState = CordonState {
        cordoned: true,
        schedulable_peers: 1,
    };

    #[test]
    fn a_handover_that_finds_no_taker_backs_off_doubling() {
        let t = Instant::now();
        let (tx, mut c) = cordon(CORDONED);
        assert!(c.wants_handover(t));
        c.handed_over(t);
        assert_eq!(c.on_acquired(t + S), Some((S, 10 * S)));
        assert!(!c.wants_handover(t + 10 * S));
        assert!(c.wants_handover(t + 11 * S));
        let backoffs: Vec<_> = (0..5)
            .map(|_| {
                c.handed_over(t);
                c.on_acquired(t).unwrap().1
            })
            .collect();
        assert_eq!(backoffs, [20 * S, 40 * S, 80 * S, 160 * S, 160 * S]);
        // Acquired without a hand-over: nothing to back off from.
        assert_eq!(c.on_acquired(t), None);
        // Uncordoning forgets it all.
        tx.send(CordonState::default()).unwrap();
        assert!(!c.take_change().cordoned);
        tx.send(CORDONED).unwrap();
        c.take_change();
        assert!(c.wants_handover(t));
    }

    #[test]
    fn nobody_to_hand_over_to_keeps_the_vip() {
        let (_tx, c) = cordon(CordonState {
            cordoned: true,
            schedulable_peers: 0,
        });
        assert!(!c.wants_handover(Instant::now()));
        let (_tx, c) = cordon(CordonState::default());
        assert!(!c.wants_handover(Instant::now()));
    }

    #[test]
    fn a_cordoned_follower_holds_back_for_the_grace() {
        let t = Instant::now();
        let (tx, mut c) = cordon(CORDONED);
        assert_eq!(c.campaign_not_before(), None, "not seen free yet");
        assert!(c.holds_back(t));
        assert!(c.holds_back(t + 2 * S));
        assert_eq!(c.campaign_not_before(), Some(t + 3 * S));
        assert!(!c.holds_back(t + 3 * S));
        c.lease_not_free();
        assert!(c.holds_back(t + 4 * S), "the grace starts afresh");
        tx.send(CordonState::default()).unwrap();
        c.take_change();
        assert_eq!(
            c.campaign_not_before(),
            None,
            "an uncordoned node does not wait"
        );
    }
}
