//! The in-memory election store: records, a store shared by many
//! electors, its faults (latency, partition, failed writes) and the
//! backend each elector uses.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backend::{BackendError, LeaderRecord, LockBackend, RecordWatch, VersionedRecord};

use super::lock;

/// A record held by `holder` for `lease_duration_seconds`, acquired and
/// renewed now (wall clock, as a backend stores it), after `transitions`
/// hand-overs.
pub fn held_record(holder: &str, lease_duration_seconds: u32, transitions: u32) -> LeaderRecord {
    let now = crate::micro_now();
    LeaderRecord {
        holder_identity: holder.to_owned(),
        lease_duration_seconds,
        acquire_time: Some(now),
        renew_time: Some(now),
        lease_transitions: transitions,
    }
}

/// A release as client-go (and the elector) writes it: empty holder,
/// duration 1 s, times now, the transitions kept.
pub fn released_record(transitions: u32) -> LeaderRecord {
    LeaderRecord {
        lease_duration_seconds: 1,
        ..held_record("", 1, transitions)
    }
}

/// One write to the [`MemoryStore`], as the store saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteEvent {
    /// When the write was applied.
    pub at: Instant,
    /// The client that wrote it.
    pub by: String,
    /// The record written.
    pub record: LeaderRecord,
    /// The version it got.
    pub version: String,
}

#[derive(Debug, Default)]
struct StoreState {
    current: Option<VersionedRecord>,
    next_version: u64,
    log: Vec<WriteEvent>,
}

#[derive(Debug)]
struct StoreInner {
    state: Mutex<StoreState>,
    tx: watch::Sender<Option<VersionedRecord>>,
}

/// An in-memory leader-record store shared by many electors, each through
/// its own [`MemoryBackend`] client with its own faults.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<StoreInner>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        let (tx, _) = watch::channel(None);
        Self {
            inner: Arc::new(StoreInner {
                state: Mutex::new(StoreState::default()),
                tx,
            }),
        }
    }

    /// A client named `name` (the name is only recorded in the log).
    pub fn client(&self, name: &str) -> MemoryBackend {
        let (faults, _) = watch::channel(Faults::default());
        MemoryBackend {
            store: self.clone(),
            name: name.to_string(),
            faults: Arc::new(faults),
            watchable: true,
        }
    }

    /// The current record.
    pub fn current(&self) -> Option<VersionedRecord> {
        lock(&self.inner.state).current.clone()
    }

    /// Every write so far, in order.
    pub fn log(&self) -> Vec<WriteEvent> {
        lock(&self.inner.state).log.clone()
    }

    /// Forget the write log (the current record stays), so that a long
    /// run's memory is the code's under test, not the log's.
    ///
    /// ```
    /// use vip_core::LeaderRecord;
    /// use vip_core::testutil::MemoryStore;
    /// let store = MemoryStore::new();
    /// let record = LeaderRecord { holder_identity: "a".into(), ..Default::default() };
    /// store.put("kubectl", record);
    /// assert_eq!(store.log().len(), 1);
    /// store.clear_log();
    /// assert!(store.log().is_empty());
    /// assert_eq!(store.current().unwrap().record.holder_identity, "a");
    /// ```
    pub fn clear_log(&self) {
        let mut st = lock(&self.inner.state);
        st.log.clear();
        st.log.shrink_to_fit();
    }

    /// Write a record directly, as another implementation (kube-vip,
    /// `kubectl`) would.
    pub fn put(&self, by: &str, record: LeaderRecord) -> VersionedRecord {
        let mut st = lock(&self.inner.state);
        Self::apply(&self.inner, &mut st, by, record)
    }

    fn apply(
        inner: &StoreInner,
        st: &mut StoreState,
        by: &str,
        record: LeaderRecord,
    ) -> VersionedRecord {
        st.next_version += 1;
        let v = VersionedRecord {
            record: record.clone(),
            version: st.next_version.to_string(),
        };
        st.current = Some(v.clone());
        st.log.push(WriteEvent {
            at: Instant::now(),
            by: by.to_string(),
            record,
            version: v.version.clone(),
        });
        inner.tx.send_replace(Some(v.clone()));
        v
    }
}

/// Faults of one [`MemoryBackend`] client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Round-trip latency of every request (half before the store applies
    /// it, half after), and delay of watch events.
    pub latency: Duration,
    /// Requests hang forever and watch events stop (a network partition).
    pub partitioned: bool,
    /// The next this many requests fail with a transport error.
    pub fail_next: u32,
    /// Requests wait until this is cleared, then go on (a stopped
    /// process: nothing is lost, everything is late).
    pub frozen: bool,
}

/// A handle to change a client's faults after the client was moved into
/// an elector.
#[derive(Debug, Clone)]
pub struct FaultHandle(Arc<watch::Sender<Faults>>);

impl FaultHandle {
    /// Set the round-trip latency.
    pub fn set_latency(&self, latency: Duration) {
        self.0.send_modify(|f| f.latency = latency);
    }

    /// Partition the client from the store, or heal it.
    pub fn set_partitioned(&self, partitioned: bool) {
        self.0.send_modify(|f| f.partitioned = partitioned);
    }

    /// Freeze the client (requests wait) or thaw it.
    pub fn set_frozen(&self, frozen: bool) {
        self.0.send_modify(|f| f.frozen = frozen);
    }

    /// Fail the next `n` requests.
    pub fn fail_next(&self, n: u32) {
        self.0.send_modify(|f| f.fail_next = n);
    }

    /// The current faults.
    pub fn get(&self) -> Faults {
        self.0.borrow().clone()
    }
}

/// One client of a [`MemoryStore`]; implements [`LockBackend`], with watch.
#[derive(Debug)]
pub struct MemoryBackend {
    store: MemoryStore,
    name: String,
    faults: Arc<watch::Sender<Faults>>,
    watchable: bool,
}

impl MemoryBackend {
    /// A handle to this client's faults.
    pub fn faults(&self) -> FaultHandle {
        FaultHandle(self.faults.clone())
    }

    /// Set the round-trip latency.
    pub fn set_latency(&self, latency: Duration) {
        self.faults().set_latency(latency);
    }

    /// Partition the client from the store, or heal it.
    pub fn set_partitioned(&self, partitioned: bool) {
        self.faults().set_partitioned(partitioned);
    }

    /// This client without watch support (followers must poll).
    pub fn without_watch(mut self) -> Self {
        self.watchable = false;
        self
    }

    async fn stall_if_partitioned(&self) {
        let mut faults = self.faults.subscribe();
        let _ = faults.wait_for(|f| !f.frozen).await;
        if self.faults.borrow().partitioned {
            std::future::pending::<()>().await;
        }
    }

    async fn request<T>(
        &self,
        f: impl FnOnce(&StoreInner, &mut StoreState) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let half = self.faults.borrow().latency / 2;
        self.stall_if_partitioned().await;
        tokio::time::sleep(half).await;
        self.stall_if_partitioned().await;
        let fail = {
            let mut fail = false;
            self.faults.send_if_modified(|f| {
                if f.fail_next > 0 {
                    f.fail_next -= 1;
                    fail = true;
                }
                fail
            });
            fail
        };
        if fail {
            tokio::time::sleep(half).await;
            return Err(BackendError::Transport {
                message: "injected failure".into(),
                source: None,
            });
        }
        let r = {
            let mut st = lock(&self.store.inner.state);
            f(&self.store.inner, &mut st)
        };
        tokio::time::sleep(half).await;
        // The answer is lost if the partition began meanwhile.
        self.stall_if_partitioned().await;
        r
    }
}

#[async_trait]
impl LockBackend for MemoryBackend {
    async fn get(&self) -> Result<Option<VersionedRecord>, BackendError> {
        self.request(|_, st| Ok(st.current.clone())).await
    }

    async fn create(&self, record: &LeaderRecord) -> Result<VersionedRecord, BackendError> {
        let name = self.name.clone();
        self.request(move |inner, st| {
            if st.current.is_some() {
                return Err(BackendError::AlreadyExists);
            }
            Ok(MemoryStore::apply(inner, st, &name, record.clone()))
        })
        .await
    }

    async fn update(
        &self,
        current: &VersionedRecord,
        record: &LeaderRecord,
    ) -> Result<VersionedRecord, BackendError> {
        let name = self.name.clone();
        self.request(move |inner, st| match &st.current {
            None => Err(BackendError::NotFound),
            Some(c) if c.version != current.version => Err(BackendError::Conflict),
            Some(_) => Ok(MemoryStore::apply(inner, st, &name, record.clone())),
        })
        .await
    }

    fn watch(&self) -> Option<RecordWatch> {
        if !self.watchable {
            return None;
        }
        let mut src = self.store.inner.tx.subscribe();
        let mut faults = self.faults.subscribe();
        let initial = if faults.borrow().partitioned {
            None
        } else {
            src.borrow_and_update().clone()
        };
        let (tx, rx) = watch::channel(initial);
        tokio::spawn(async move {
            // Each change travels on its own, one half round trip late, in
            // order (a pipelined stream, not one event at a time).
            let mut in_flight: std::collections::VecDeque<(Instant, Option<VersionedRecord>)> =
                std::collections::VecDeque::new();
            loop {
                let next = in_flight.front().map(|(t, _)| *t);
                tokio::select! {
                    r = src.changed() => {
                        if r.is_err() { break }
                        let v = src.borrow_and_update().clone();
                        let (partitioned, delay) = {
                            let f = faults.borrow();
                            (f.partitioned, f.latency / 2)
                        };
                        if !partitioned {
                            in_flight.push_back((Instant::now() + delay, v));
                        }
                    }
                    r = faults.changed() => {
                        if r.is_err() { break }
                        let (partitioned, delay) = {
                            let f = faults.borrow_and_update();
                            (f.partitioned, f.latency / 2)
                        };
                        if partitioned {
                            in_flight.clear();
                        } else {
                            // Healed: the stream resumes with the current state.
                            let v = src.borrow().clone();
                            in_flight.push_back((Instant::now() + delay, v));
                        }
                    }
                    () = async { tokio::time::sleep_until(next.unwrap_or_else(Instant::now)).await }, if next.is_some() => {
                        if let Some((_, v)) = in_flight.pop_front() {
                            tx.send_if_modified(|cur| {
                                if *cur != v {
                                    *cur = v;
                                    true
                                } else {
                                    false
                                }
                            });
                        }
                    }
                    () = tx.closed() => break,
                }
            }
        });
        Some(rx)
    }

    fn describe(&self) -> String {
        format!("memory store (client {})", self.name)
    }
}
