//! The election backend seam: a store for one leader record with optimistic
//! concurrency. It holds no timing logic; the [`Elector`](crate::Elector)
//! does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

/// The leader record, field for field a `coordination.k8s.io/v1` Lease spec
/// as client-go's `LeaderElectionRecord` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaderRecord {
    /// The holder's identity; empty when the lease is released.
    pub holder_identity: String,
    /// How long candidates wait after the last observed change before they
    /// may take the lease.
    pub lease_duration_seconds: u32,
    /// When the current holder acquired the lease (MicroTime precision).
    pub acquire_time: Option<SystemTime>,
    /// When the holder last renewed (MicroTime precision).
    pub renew_time: Option<SystemTime>,
    /// How many times the lease changed hands.
    pub lease_transitions: u32,
}

impl LeaderRecord {
    /// Whether nobody holds the lease (client-go: empty holder identity).
    pub fn is_released(&self) -> bool {
        self.holder_identity.is_empty()
    }
}

/// A record together with the backend's version of it (the Lease's
/// `metadata.resourceVersion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedRecord {
    /// The record.
    pub record: LeaderRecord,
    /// Opaque version; an update must name the version it replaces.
    pub version: String,
}

/// The latest record as a watching backend sees it: `None` while there is
/// no record. A closed channel means the watch ended; the elector then
/// polls.
pub type RecordWatch = tokio::sync::watch::Receiver<Option<VersionedRecord>>;

/// Publish `value` on a watch channel unless it equals the current value;
/// returns whether it was sent. The backends' record watches (and other
/// list-and-watch loops) publish through this, so a receiver wakes only on
/// a change.
pub fn publish<T: PartialEq>(tx: &tokio::sync::watch::Sender<T>, value: T) -> bool {
    tx.send_if_modified(|cur| {
        if *cur == value {
            false
        } else {
            *cur = value;
            true
        }
    })
}

/// Start a backend's record watch on the current tokio runtime: `run`
/// gets the sender and keeps the watch alive for as long as a receiver
/// lives. `None` outside a runtime (the elector then polls).
pub fn spawn_record_watch<Fut>(
    run: impl FnOnce(tokio::sync::watch::Sender<Option<VersionedRecord>>) -> Fut,
) -> Option<RecordWatch>
where
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let (tx, rx) = tokio::sync::watch::channel(None);
    handle.spawn(run(tx));
    Some(rx)
}

/// The back-off of a watch loop that failed: 100 ms, doubling up to 2 s,
/// back to 100 ms once the loop makes progress ([`reset`](Self::reset)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: Self::MIN }
    }
}

impl WatchBackoff {
    /// The first wait.
    pub const MIN: Duration = Duration::from_millis(100);
    /// The longest wait.
    pub const MAX: Duration = Duration::from_secs(2);

    /// The wait now; the next one doubles (up to [`MAX`](Self::MAX)).
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }

    /// Progress: the next wait is [`MIN`](Self::MIN) again.
    pub fn reset(&mut self) {
        self.next = Self::MIN;
    }

    /// Sleep for the next wait unless `tx`'s receivers all go away first:
    /// then `true` (the loop ends).
    pub async fn sleep_or_closed<T>(&mut self, tx: &tokio::sync::watch::Sender<T>) -> bool {
        let wait = self.next_wait();
        tokio::select! {
            _ = tx.closed() => true,
            _ = tokio::time::sleep(wait) => false,
        }
    }
}

/// Errors of an election backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The record changed since the version the update named (HTTP 409
    /// Conflict).
    #[error("the record was changed by someone else (conflict)")]
    Conflict,
    /// Create found a record already there (HTTP 409 AlreadyExists).
    #[error("the record already exists")]
    AlreadyExists,
    /// Update found no record (HTTP 404).
    #[error("the record does not exist")]
    NotFound,
    /// The request did not complete in time.
    #[error("the request timed out after {0:?}")]
    Timeout(Duration),
    /// The backend refused our credentials (HTTP 401) or permissions
    /// (HTTP 403): a different kubeconfig or RBAC is needed.
    #[error("the backend refused access (HTTP {code}): {message}")]
    Unauthorized {
        /// 401 or 403.
        code: u16,
        /// The backend's message.
        message: String,
    },
    /// The backend answered with an error.
    #[error("the backend refused the request: {message}")]
    Api {
        /// HTTP status or backend code.
        code: u16,
        /// The backend's message.
        message: String,
    },
    /// The backend could not be reached.
    #[error("the backend could not be reached: {message}")]
    Transport {
        /// What went wrong.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// A store for one leader record with optimistic concurrency.
///
/// Implementations: the Kubernetes Lease (`vip-lease`) and the in-memory
/// store of `testutil` (feature `test-util`).
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait LockBackend: Send + Sync + 'static {
    /// The record and its version, or `None` when there is no record.
    async fn get(&self) -> Result<Option<VersionedRecord>, BackendError>;

    /// Create the record; [`BackendError::AlreadyExists`] when one exists.
    async fn create(&self, record: &LeaderRecord) -> Result<VersionedRecord, BackendError>;

    /// Replace the record if it is still at `current.version`;
    /// [`BackendError::Conflict`] otherwise.
    async fn update(
        &self,
        current: &VersionedRecord,
        record: &LeaderRecord,
    ) -> Result<VersionedRecord, BackendError>;

    /// A watch of the record, if the backend can watch. Called once per
    /// elector, from within a tokio runtime (implementations spawn a task
    /// there); the backend keeps it alive (resuming, re-listing) for as
    /// long as the receiver lives.
    fn watch(&self) -> Option<RecordWatch> {
        None
    }

    /// A short description for logs, e.g. `lease kube-system/plndr-cp-lock`.
    fn describe(&self) -> String;
}

/// Wall-clock now truncated to microseconds, the precision of a Kubernetes
/// MicroTime. Only ever written into records, never compared with another
/// node's time.
pub fn micro_now() -> SystemTime {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    UNIX_EPOCH + Duration::from_micros(d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_backoff_doubles_to_its_bound_and_resets() {
        let mut b = WatchBackoff::default();
        let waits: Vec<_> = (0..7).map(|_| b.next_wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 2000, 2000]);
        b.reset();
        assert_eq!(b.next_wait(), WatchBackoff::MIN);
    }

    #[tokio::test(start_paused = true)]
    async fn the_watch_backoff_ends_when_the_receivers_go() {
        let (tx, rx) = tokio::sync::watch::channel(0);
        let mut b = WatchBackoff::default();
        assert!(!b.sleep_or_closed(&tx).await);
        drop(rx);
        assert!(b.sleep_or_closed(&tx).await);
    }

    #[test]
    fn publish_wakes_only_on_a_change() {
        let (tx, mut rx) = tokio::sync::watch::channel(1);
        rx.borrow_and_update();
        assert!(!publish(&tx, 1));
        assert!(!rx.has_changed().unwrap());
        assert!(publish(&tx, 2));
        assert!(rx.has_changed().unwrap());
    }
}
