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
