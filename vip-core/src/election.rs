//! The election engine: client-go's leader election, written once against
//! [`LockBackend`].
//!
//! - Expiry is judged only from local monotonic observation: a candidate
//!   notes when it last saw the record change and may take the lease when
//!   `observed + leaseDurationSeconds` has passed. Remote timestamps are
//!   never compared with the local clock.
//! - The leader's own validity runs from the moment it *sent* its last
//!   successful renewal plus the renew deadline.
//! - `acquireTime` is set on acquisition; `leaseTransitions` is incremented
//!   when the holder changes to this node from someone else (client-go).
//! - Release writes an empty holder, `leaseDurationSeconds: 1` and the same
//!   transitions (client-go's `ReleaseOnCancel`).
//!
//! All time is [`tokio::time::Instant`], so tests run with paused time.

use std::time::Duration;

use tokio::time::Instant;

use crate::backend::{
    BackendError, LeaderRecord, LockBackend, RecordWatch, VersionedRecord, micro_now,
};
use crate::model::{NodeIdentity, Timings};

/// Errors of an election attempt.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// The backend failed.
    #[error("{operation} of the leader record failed")]
    Backend {
        /// `get`, `create`, `update` or `release`.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BackendError,
    },
}

impl ElectionError {
    fn backend(operation: &'static str, source: BackendError) -> Self {
        Self::Backend { operation, source }
    }

    /// The backend error underneath.
    pub fn backend_error(&self) -> &BackendError {
        match self {
            Self::Backend { source, .. } => source,
        }
    }
}

/// What an attempt to acquire or renew found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// This node holds the lease; it was acquired now (`true`) or renewed
    /// (`false`).
    Leading {
        /// Whether the lease was newly acquired (the holder was someone
        /// else, or nobody).
        acquired: bool,
    },
    /// Someone else holds a lease that is still valid by local observation.
    Held {
        /// The holder.
        holder: String,
        /// When it may be taken, by local observation, if nothing changes.
        expires: Instant,
    },
}

/// The election engine of one node: what it observed and whether it leads.
#[derive(Debug)]
pub struct Elector<B: ?Sized> {
    backend: std::sync::Arc<B>,
    identity: NodeIdentity,
    timings: Timings,
    request_timeout: Duration,
    observed: Option<Observation>,
    leading: Option<Leadership>,
}

#[derive(Debug, Clone)]
struct Observation {
    current: Option<VersionedRecord>,
    at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Leadership {
    /// When the last successful renewal (or the acquisition) was sent.
    renew_sent: Instant,
    /// When leadership began.
    since: Instant,
}

impl<B: LockBackend + ?Sized> Elector<B> {
    /// An elector for `identity` on `backend`, each request bounded by
    /// `request_timeout` (keep it below the retry period).
    pub fn new(
        backend: std::sync::Arc<B>,
        identity: NodeIdentity,
        timings: Timings,
        request_timeout: Duration,
    ) -> Self {
        Self {
            backend,
            identity,
            timings,
            request_timeout,
            observed: None,
            leading: None,
        }
    }

    /// The identity this elector writes.
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// The timings.
    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// The backend.
    pub fn backend(&self) -> &std::sync::Arc<B> {
        &self.backend
    }

    /// A watch of the record, if the backend can watch.
    pub fn watch(&self) -> Option<RecordWatch> {
        self.backend.watch()
    }

    /// Whether this elector believes it leads and its lease is still valid
    /// at `now` by its own conservative clock.
    pub fn is_leading(&self, now: Instant) -> bool {
        self.valid_until().is_some_and(|v| now < v)
    }

    /// Until when this node may act as leader: the send time of its last
    /// successful renewal plus the renew deadline. `None` when not leading.
    pub fn valid_until(&self) -> Option<Instant> {
        self.leading
            .map(|l| l.renew_sent + self.timings.renew_deadline())
    }

    /// The send time of the last successful renewal (or acquisition).
    pub fn last_renew_sent(&self) -> Option<Instant> {
        self.leading.map(|l| l.renew_sent)
    }

    /// When this node's current leadership began.
    pub fn leading_since(&self) -> Option<Instant> {
        self.leading.map(|l| l.since)
    }

    /// The holder in the last observed record (empty when released).
    pub fn observed_holder(&self) -> Option<&str> {
        self.observed
            .as_ref()
            .and_then(|o| o.current.as_ref())
            .map(|r| r.record.holder_identity.as_str())
    }

    /// The last observed record.
    pub fn observed_record(&self) -> Option<&VersionedRecord> {
        self.observed.as_ref().and_then(|o| o.current.as_ref())
    }

    /// When the observed lease may be taken if nothing changes: observed
    /// change time plus the record's lease duration. `None` when free or
    /// never observed.
    pub fn observed_expiry(&self) -> Option<Instant> {
        let o = self.observed.as_ref()?;
        let r = o.current.as_ref()?;
        if r.record.is_released() {
            return None;
        }
        Some(o.at + Duration::from_secs(u64::from(r.record.lease_duration_seconds)))
    }

    /// Forget leadership without touching the backend (the lease was lost,
    /// or the leader stepped down and will release separately).
    pub fn forget_leadership(&mut self) {
        self.leading = None;
    }

    /// Take in a record seen outside an attempt (a watch event). The
    /// observation time moves only when the record changed. Returns whether
    /// it changed.
    pub fn observe(&mut self, current: Option<VersionedRecord>, now: Instant) -> bool {
        let changed = match &self.observed {
            None => true,
            Some(o) => o.current.as_ref().map(|r| &r.record) != current.as_ref().map(|r| &r.record),
        };
        if changed {
            self.observed = Some(Observation { current, at: now });
        } else if let Some(o) = &mut self.observed {
            // Same record: keep the observation time, take the newer version.
            o.current = current;
        }
        if let Some(r) = self.observed_record()
            && r.record.holder_identity != self.identity.as_str()
        {
            // Someone else holds or released it: we do not lead.
            self.leading = None;
        }
        changed
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        fut: impl std::future::Future<Output = Result<T, BackendError>>,
    ) -> Result<T, ElectionError> {
        match tokio::time::timeout(self.request_timeout, fut).await {
            Ok(r) => r.map_err(|e| ElectionError::backend(operation, e)),
            Err(_) => Err(ElectionError::backend(
                operation,
                BackendError::Timeout(self.request_timeout),
            )),
        }
    }

    /// client-go's `tryAcquireOrRenew`: renew if leading (fast path on the
    /// cached record, then a fresh read on conflict), else read, and take
    /// the lease if it is free, expired by local observation, or already
    /// ours.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, ElectionError> {
        let sent = Instant::now();
        // Fast path: the leader updates its cached record directly.
        if self.leading.is_some()
            && let Some(current) = self.observed_record().cloned()
            && current.record.holder_identity == self.identity.as_str()
        {
            let next = self.next_record(Some(&current.record));
            match self
                .bounded("update", self.backend.update(&current, &next))
                .await
            {
                Ok(written) => return Ok(self.won(written, sent, false)),
                Err(ElectionError::Backend {
                    source: BackendError::Conflict | BackendError::NotFound,
                    ..
                }) => {
                    tracing::debug!("optimistic renewal conflicted, reading the record again");
                }
                Err(e) => return Err(e),
            }
        }
        // Follower fast path: a record already observed (from a watch) that
        // is free or expired is taken in one round trip; a conflict means
        // someone else was quicker, and the read below tells who.
        if self.leading.is_none()
            && let Some(current) = self.observed_record().cloned()
            && current.record.holder_identity != self.identity.as_str()
            && (current.record.is_released() || self.observed_expiry().is_some_and(|e| sent >= e))
        {
            let next = self.next_record(Some(&current.record));
            match self
                .bounded("update", self.backend.update(&current, &next))
                .await
            {
                Ok(written) => return Ok(self.won(written, sent, true)),
                Err(ElectionError::Backend {
                    source: BackendError::Conflict | BackendError::NotFound,
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        // Slow path: read, decide, write.
        let sent = if self.leading.is_some() {
            sent
        } else {
            Instant::now()
        };
        let current = self.bounded("get", self.backend.get()).await?;
        let now = Instant::now();
        self.observe(current.clone(), now);
        let Some(current) = current else {
            let record = self.next_record(None);
            let written = self.bounded("create", self.backend.create(&record)).await?;
            return Ok(self.won(written, sent, true));
        };
        let holder = current.record.holder_identity.clone();
        let ours = holder == self.identity.as_str();
        if !holder.is_empty() && !ours {
            let expires = self.observed_expiry().unwrap_or(now);
            if now < expires {
                self.leading = None;
                return Ok(Attempt::Held { holder, expires });
            }
        }
        let next = self.next_record(Some(&current.record));
        let written = self
            .bounded("update", self.backend.update(&current, &next))
            .await?;
        Ok(self.won(written, sent, !ours))
    }

    /// Fenced takeover (fast failover): replace the record last observed,
    /// held by someone else, by a compare-and-swap on its version, with
    /// this node as holder, `leaseTransitions` + 1 and a new
    /// `acquireTime`, whatever its expiry by local observation. Only the
    /// write that succeeds makes a leader: on a conflict the record is read
    /// again and [`Attempt::Held`] names whoever holds it now.
    ///
    /// The caller is responsible for the fence: it has heard the holder's
    /// heartbeats stop and nobody answers for the VIP.
    pub async fn try_take_over(&mut self) -> Result<Attempt, ElectionError> {
        let sent = Instant::now();
        let Some(current) = self.observed_record().cloned() else {
            return self.try_acquire_or_renew().await;
        };
        if current.record.holder_identity == self.identity.as_str() {
            return self.try_acquire_or_renew().await;
        }
        let next = self.next_record(Some(&current.record));
        match self
            .bounded("update", self.backend.update(&current, &next))
            .await
        {
            Ok(written) => Ok(self.won(written, sent, true)),
            Err(ElectionError::Backend {
                source: BackendError::Conflict | BackendError::NotFound,
                ..
            }) => {
                let now = Instant::now();
                let current = self.bounded("get", self.backend.get()).await?;
                self.observe(current.clone(), now);
                self.leading = None;
                let holder = current
                    .map(|c| c.record.holder_identity)
                    .unwrap_or_default();
                let expires = self.observed_expiry().unwrap_or(now);
                Ok(Attempt::Held { holder, expires })
            }
            Err(e) => Err(e),
        }
    }

    /// The record this node writes over `old` (`None`: a first create).
    fn next_record(&self, old: Option<&LeaderRecord>) -> LeaderRecord {
        let now = micro_now();
        let me = self.identity.as_str();
        match old {
            None => LeaderRecord {
                holder_identity: me.to_string(),
                lease_duration_seconds: self.timings.lease_duration_seconds(),
                acquire_time: Some(now),
                renew_time: Some(now),
                lease_transitions: 0,
            },
            // Renewal: keep acquireTime and transitions.
            Some(old) if old.holder_identity == me => LeaderRecord {
                holder_identity: me.to_string(),
                lease_duration_seconds: self.timings.lease_duration_seconds(),
                acquire_time: old.acquire_time.or(Some(now)),
                renew_time: Some(now),
                lease_transitions: old.lease_transitions,
            },
            // Acquisition from someone else or from a released record:
            // client-go increments whenever the stored holder differs.
            Some(old) => LeaderRecord {
                holder_identity: me.to_string(),
                lease_duration_seconds: self.timings.lease_duration_seconds(),
                acquire_time: Some(now),
                renew_time: Some(now),
                lease_transitions: old.lease_transitions.saturating_add(1),
            },
        }
    }

    fn won(&mut self, written: VersionedRecord, sent: Instant, acquired: bool) -> Attempt {
        let now = Instant::now();
        let since = match (acquired, self.leading) {
            (false, Some(l)) => l.since,
            _ => now,
        };
        self.observed = Some(Observation {
            current: Some(written),
            at: now,
        });
        self.leading = Some(Leadership {
            renew_sent: sent,
            since,
        });
        Attempt::Leading { acquired }
    }

    /// Release the lease if the last observed record names this node:
    /// write an empty holder with `leaseDurationSeconds: 1`, as client-go
    /// does, so watching candidates take it at once. Leadership is
    /// forgotten whatever the outcome. Returns whether a release was
    /// written.
    pub async fn release(&mut self) -> Result<bool, ElectionError> {
        self.leading = None;
        let Some(current) = self.observed_record().cloned() else {
            return Ok(false);
        };
        if current.record.holder_identity != self.identity.as_str() {
            return Ok(false);
        }
        let now = micro_now();
        let released = LeaderRecord {
            holder_identity: String::new(),
            lease_duration_seconds: 1,
            acquire_time: Some(now),
            renew_time: Some(now),
            lease_transitions: current.record.lease_transitions,
        };
        let written = self
            .bounded("release", self.backend.update(&current, &released))
            .await?;
        self.observe(Some(written), Instant::now());
        Ok(true)
    }

    /// Read the record and observe it, without writing.
    pub async fn refresh(&mut self) -> Result<Option<VersionedRecord>, ElectionError> {
        let current = self.bounded("get", self.backend.get()).await?;
        self.observe(current.clone(), Instant::now());
        Ok(current)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::MockLockBackend;
    use crate::testutil::MemoryStore;

    fn id(s: &str) -> NodeIdentity {
        NodeIdentity::new(s).unwrap()
    }

    fn elector(store: &MemoryStore, name: &str) -> Elector<crate::testutil::MemoryBackend> {
        Elector::new(
            Arc::new(store.client(name)),
            id(name),
            Timings::default(),
            Duration::from_millis(500),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn first_candidate_creates_the_record() {
        let store = MemoryStore::new();
        let mut a = elector(&store, "a");
        assert_eq!(
            a.try_acquire_or_renew().await.unwrap(),
            Attempt::Leading { acquired: true }
        );
        let r = store.current().unwrap().record;
        assert_eq!(r.holder_identity, "a");
        assert_eq!(r.lease_duration_seconds, 5);
        assert_eq!(r.lease_transitions, 0);
        assert!(r.acquire_time.is_some() && r.renew_time == r.acquire_time);
        assert!(a.is_leading(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_lease_is_taken_only_after_the_observed_lease_duration() {
        let store = MemoryStore::new();
        let mut a = elector(&store, "a");
        let mut b = elector(&store, "b");
        a.try_acquire_or_renew().await.unwrap();
        let start = Instant::now();
        let Attempt::Held { holder, expires } = b.try_acquire_or_renew().await.unwrap() else {
            panic!("b must not acquire a fresh lease");
        };
        assert_eq!(holder, "a");
        assert_eq!(expires, start + Duration::from_secs(5));
        tokio::time::advance(Duration::from_millis(4999)).await;
        assert!(matches!(
            b.try_acquire_or_renew().await.unwrap(),
            Attempt::Held { .. }
        ));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            b.try_acquire_or_renew().await.unwrap(),
            Attempt::Leading { acquired: true }
        );
        let r = store.current().unwrap().record;
        assert_eq!(r.holder_identity, "b");
        assert_eq!(r.lease_transitions, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_restarts_the_observers_clock() {
        let store = MemoryStore::new();
        let mut a = elector(&store, "a");
        let mut b = elector(&store, "b");
        a.try_acquire_or_renew().await.unwrap();
        b.try_acquire_or_renew().await.unwrap();
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(
            a.try_acquire_or_renew().await.unwrap(),
            Attempt::Leading { acquired: false }
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        // 6 s after b first saw it, but only 2 s after the renewal b sees now.
        assert!(matches!(
            b.try_acquire_or_renew().await.unwrap(),
            Attempt::Held { .. }
        ));
        let r = store.current().unwrap().record;
        assert_eq!((r.holder_identity.as_str(), r.lease_transitions), ("a", 0));
    }

    #[tokio::test(start_paused = true)]
    async fn release_lets_the_next_candidate_in_at_once() {
        let store = MemoryStore::new();
        let mut a = elector(&store, "a");
        let mut b = elector(&store, "b");
        a.try_acquire_or_renew().await.unwrap();
        b.try_acquire_or_renew().await.unwrap();
        assert!(a.release().await.unwrap());
        assert!(!a.is_leading(Instant::now()));
        let r = store.current().unwrap().record;
        assert_eq!(
            (
                r.holder_identity.as_str(),
                r.lease_duration_seconds,
                r.lease_transitions
            ),
            ("", 1, 0)
        );
        assert_eq!(
            b.try_acquire_or_renew().await.unwrap(),
            Attempt::Leading { acquired: true }
        );
        assert_eq!(store.current().unwrap().record.lease_transitions, 1);
        // A second release by a, who no longer holds it, writes nothing.
        assert!(!a.release().await.unwrap());
        assert_eq!(store.current().unwrap().record.holder_identity, "b");
    }

    #[tokio::test(start_paused = true)]
    async fn a_restarted_holder_renews_without_a_transition() {
        let store = MemoryStore::new();
        let mut a = elector(&store, "a");
        a.try_acquire_or_renew().await.unwrap();
        let acquired_at = store.current().unwrap().record.acquire_time;
        tokio::time::advance(Duration::from_secs(2)).await;
        let mut a2 = elector(&store, "a");
        assert_eq!(
            a2.try_acquire_or_renew().await.unwrap(),
            Attempt::Leading { acquired: false }
        );
        let r = store.current().unwrap().record;
        assert_eq!(r.acquire_time, acquired_at);
        assert_eq!(r.lease_transitions, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn validity_runs_from_the_send_time_of_the_renewal() {
        let store = MemoryStore::new();
        let client = store.client("a");
        client.set_latency(Duration::from_millis(200));
        let mut a = Elector::new(
            Arc::new(client),
            id("a"),
            Timings::default(),
            Duration::from_millis(900),
        );
        let sent = Instant::now();
        a.try_acquire_or_renew().await.unwrap();
        // get + create, each 200 ms: validity still counts from the send.
        assert_eq!(Instant::now(), sent + Duration::from_millis(400));
        assert_eq!(a.valid_until(), Some(sent + Duration::from_secs(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_race_is_a_conflict_not_leadership() {
        let mut mock = MockLockBackend::new();
        let rec = VersionedRecord {
            record: LeaderRecord::default(),
            version: "1".into(),
        };
        let r2 = rec.clone();
        mock.expect_get().returning(move || Ok(Some(r2.clone())));
        mock.expect_update()
            .returning(|_, _| Err(BackendError::Conflict));
        let mut a = Elector::new(
            Arc::new(mock),
            id("a"),
            Timings::default(),
            Duration::from_millis(500),
        );
        let err = a.try_acquire_or_renew().await.unwrap_err();
        assert!(matches!(err.backend_error(), BackendError::Conflict));
        assert!(!a.is_leading(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_backend_times_out() {
        let store = MemoryStore::new();
        let client = store.client("a");
        client.set_partitioned(true);
        let mut a = Elector::new(
            Arc::new(client),
            id("a"),
            Timings::default(),
            Duration::from_millis(500),
        );
        let t0 = Instant::now();
        let err = a.try_acquire_or_renew().await.unwrap_err();
        assert!(matches!(err.backend_error(), BackendError::Timeout(_)));
        assert_eq!(Instant::now() - t0, Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fenced_takeover_replaces_a_valid_lease_by_compare_and_swap() {
        let store = MemoryStore::new();
        let mut a = elector(&store, "a");
        let mut b = elector(&store, "b");
        let mut c = elector(&store, "c");
        a.try_acquire_or_renew().await.unwrap();
        b.refresh().await.unwrap();
        c.refresh().await.unwrap();
        // Well within a's lease: b takes it over by CAS on what it saw.
        assert_eq!(
            b.try_take_over().await.unwrap(),
            Attempt::Leading { acquired: true }
        );
        let r = store.current().unwrap().record;
        assert_eq!((r.holder_identity.as_str(), r.lease_transitions), ("b", 1));
        assert!(r.acquire_time.is_some());
        // c saw a's record: its swap conflicts, it reads b and follows.
        let Attempt::Held { holder, .. } = c.try_take_over().await.unwrap() else {
            panic!("only one write may win");
        };
        assert_eq!(holder, "b");
        assert_eq!(store.current().unwrap().record.holder_identity, "b");
        assert_eq!(store.log().len(), 2, "the losing swap wrote nothing");
        // a's renewal now conflicts and shows b.
        assert!(matches!(
            a.try_acquire_or_renew().await.unwrap(),
            Attempt::Held { .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_conflict_after_a_takeover_means_lost() {
        let store = MemoryStore::new();
        let mut a = elector(&store, "a");
        let mut b = elector(&store, "b");
        a.try_acquire_or_renew().await.unwrap();
        b.try_acquire_or_renew().await.unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(matches!(
            b.try_acquire_or_renew().await.unwrap(),
            Attempt::Leading { acquired: true }
        ));
        // a still thinks it leads (stale), tries its fast path, conflicts,
        // reads, and sees b: held.
        assert!(matches!(
            a.try_acquire_or_renew().await.unwrap(),
            Attempt::Held { .. }
        ));
        assert!(!a.is_leading(Instant::now()));
    }
}
