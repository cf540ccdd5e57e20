//! The election backend on a `coordination.k8s.io/v1` Lease.
//!
//! [`LeaseBackend`] implements [`vip_core::LockBackend`] exactly the way
//! client-go's `LeaseLock` uses the Lease: `GET`, `POST` (409 AlreadyExists
//! means another candidate created it first) and `PUT` of the whole object
//! carrying `metadata.resourceVersion` (409 Conflict means somebody else wrote
//! in between). The record fields map one to one onto the Lease spec
//! ([`record_to_spec`], [`spec_to_record`]); times are MicroTime, written as
//! RFC 3339 with six fractional digits and `Z`, exactly as client-go writes
//! them.
//!
//! The backend owns two clients built from the same [`ClusterAccess`]: one
//! for get/create/update, one for the watch. Neither is shared with the
//! health probe or the cordon watch, so a renewal never waits behind other
//! traffic of this process. Every request is bounded by
//! [`LeaseConfig::request_timeout`] (which must stay below the retry period)
//! and never retried behind the elector's back.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event, ListSemantic};
use tokio::sync::watch;
use vip_core::backend::{publish, spawn_record_watch};
use vip_core::names::{self, DnsNameError};
use vip_core::{BackendError, LeaderRecord, LockBackend, RecordWatch, VersionedRecord};

use crate::access::{AccessError, ClientOptions, ClusterAccess};
use crate::follow::{follow, new_refusal, refusal};

/// kube-vip's default Lease namespace.
pub const DEFAULT_LEASE_NAMESPACE: &str = "kube-system";
/// kube-vip's default control-plane Lease name.
pub const DEFAULT_LEASE_NAME: &str = "plndr-cp-lock";

/// Errors of this module (construction and configuration; runtime errors
/// are [`BackendError`]s).
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The lease name or namespace is not a valid Kubernetes name.
    #[error("invalid lease name {value:?}: {reason}")]
    InvalidName {
        /// What was given.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The request timeout is not below the retry period.
    #[error("the lease request timeout {timeout:?} must be below the retry period {retry:?}")]
    TimeoutNotBelowRetry {
        /// The request timeout.
        timeout: Duration,
        /// The retry period.
        retry: Duration,
    },
    /// A client could not be built.
    #[error("cannot build the lease client")]
    Client(#[source] AccessError),
}

/// The namespace and name of the Lease.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseName {
    /// The namespace, e.g. `kube-system`.
    pub namespace: String,
    /// The name, e.g. `plndr-cp-lock`.
    pub name: String,
}

impl Default for LeaseName {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_LEASE_NAMESPACE.to_owned(),
            name: DEFAULT_LEASE_NAME.to_owned(),
        }
    }
}

impl fmt::Display for LeaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl LeaseName {
    /// A validated namespace and name.
    pub fn new(namespace: &str, name: &str) -> Result<Self, LeaseError> {
        names::check_dns_label(namespace).map_err(|e| name_error(namespace, false, e))?;
        names::check_dns_subdomain(name).map_err(|e| name_error(name, true, e))?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// Parses `name` or `namespace/name` (kube-vip HEAD accepts both in
    /// `vip_leasename`); a bare name lives in `default_namespace`
    /// (kube-vip's `cp_namespace`).
    pub fn parse(value: &str, default_namespace: &str) -> Result<Self, LeaseError> {
        match value.split_once('/') {
            Some((ns, name)) => Self::new(ns, name),
            None => Self::new(default_namespace, value),
        }
    }
}

fn invalid(value: &str, reason: &'static str) -> LeaseError {
    LeaseError::InvalidName {
        value: value.to_owned(),
        reason,
    }
}

/// Words a refusal of the namespace (a DNS label) or the name (a DNS
/// subdomain) as client-go does.
fn name_error(value: &str, subdomain: bool, e: DnsNameError) -> LeaseError {
    let short = matches!(e, DnsNameError::Empty | DnsNameError::TooLong { .. });
    invalid(
        value,
        match (subdomain, short) {
            (false, true) => "must be 1 to 63 characters",
            (false, false) => {
                "must consist of lower case alphanumeric characters or '-', and start and end with an alphanumeric character"
            }
            (true, true) => "must be 1 to 253 characters",
            (true, false) => {
                "must be lower case alphanumeric characters, '-' or '.', each part starting and ending with an alphanumeric character"
            }
        },
    )
}

/// How the backend talks to the Lease.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Which Lease.
    pub lease: LeaseName,
    /// Bound of one get/create/update request; must be below the retry
    /// period so one hung request cannot eat a whole renewal round.
    pub request_timeout: Duration,
    /// Server-side timeout of one watch request (`timeoutSeconds`); the
    /// watch is re-opened from the last resourceVersion when it ends.
    pub watch_timeout: Duration,
    /// Labels put on the Lease when this backend creates it.
    pub labels: BTreeMap<String, String>,
    /// Annotations put on the Lease when this backend creates it and
    /// re-applied on every update (kube-vip's `vip_leaseannotations`):
    /// ours are set to these values, everyone else's are kept.
    pub annotations: BTreeMap<String, String>,
}

impl Default for LeaseConfig {
    /// `kube-system/plndr-cp-lock`, a 750 ms request timeout (kube-vip's
    /// default retry period is 1 s).
    fn default() -> Self {
        Self {
            lease: LeaseName::default(),
            request_timeout: Duration::from_millis(750),
            watch_timeout: Duration::from_secs(60),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }
}

impl LeaseConfig {
    /// The defaults with the request timeout derived from the retry
    /// period: three quarters of it, at least 50 ms.
    pub fn for_retry_period(lease: LeaseName, retry: Duration) -> Self {
        Self {
            lease,
            request_timeout: (retry * 3 / 4).max(Duration::from_millis(50)),
            ..Self::default()
        }
    }

    /// Refuses a request timeout that is not below `retry`.
    pub fn check(&self, retry: Duration) -> Result<(), LeaseError> {
        if self.request_timeout >= retry {
            return Err(LeaseError::TimeoutNotBelowRetry {
                timeout: self.request_timeout,
                retry,
            });
        }
        Ok(())
    }
}

/// A wall-clock time as a MicroTime (truncated to microseconds).
pub fn to_micro_time(t: SystemTime) -> MicroTime {
    let micros = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    };
    let ts = jiff::Timestamp::from_microsecond(micros).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    MicroTime(ts)
}

/// A MicroTime as a wall-clock time.
pub fn from_micro_time(t: &MicroTime) -> SystemTime {
    SystemTime::from(t.0)
}

/// The record as the Lease spec client-go writes
/// (`LeaderElectionRecordToLeaseSpec`): all five fields set, an empty
/// holder written as `""`. Fields the record does not carry (`strategy`,
/// `preferredHolder`) are kept from `base`, the spec being replaced.
pub fn record_to_spec(record: &LeaderRecord, base: Option<&LeaseSpec>) -> LeaseSpec {
    let mut spec = base.cloned().unwrap_or_default();
    spec.holder_identity = Some(record.holder_identity.clone());
    spec.lease_duration_seconds =
        Some(i32::try_from(record.lease_duration_seconds).unwrap_or(i32::MAX));
    spec.acquire_time = record.acquire_time.map(to_micro_time);
    spec.renew_time = record.renew_time.map(to_micro_time);
    spec.lease_transitions = Some(i32::try_from(record.lease_transitions).unwrap_or(i32::MAX));
    spec
}

/// The record a Lease spec holds (client-go `LeaseSpecToLeaderElectionRecord`):
/// missing fields read as empty/zero, negative numbers as zero.
pub fn spec_to_record(spec: Option<&LeaseSpec>) -> LeaderRecord {
    let Some(spec) = spec else {
        return LeaderRecord::default();
    };
    LeaderRecord {
        holder_identity: spec.holder_identity.clone().unwrap_or_default(),
        lease_duration_seconds: spec
            .lease_duration_seconds
            .map_or(0, |s| u32::try_from(s).unwrap_or(0)),
        acquire_time: spec.acquire_time.as_ref().map(from_micro_time),
        renew_time: spec.renew_time.as_ref().map(from_micro_time),
        lease_transitions: spec
            .lease_transitions
            .map_or(0, |s| u32::try_from(s).unwrap_or(0)),
    }
}

/// The versioned record of a Lease object.
pub fn versioned(lease: &Lease) -> VersionedRecord {
    VersionedRecord {
        record: spec_to_record(lease.spec.as_ref()),
        version: lease.metadata.resource_version.clone().unwrap_or_default(),
    }
}

/// Maps a kube error to the backend's error: a 409 with reason
/// `AlreadyExists` (create) is [`BackendError::AlreadyExists`], any other
/// 409 (update) [`BackendError::Conflict`], 404 [`BackendError::NotFound`],
/// 401/403 [`BackendError::Unauthorized`], other API answers
/// [`BackendError::Api`], everything else (connect,
/// TLS, read) [`BackendError::Transport`].
pub fn map_kube_error(err: kube::Error) -> BackendError {
    match err {
        kube::Error::Api(status) => {
            if status.is_already_exists() {
                BackendError::AlreadyExists
            } else if status.code == 409 {
                BackendError::Conflict
            } else if status.code == 404 {
                BackendError::NotFound
            } else if status.code == 401 || status.code == 403 {
                BackendError::Unauthorized {
                    code: status.code,
                    message: if status.message.is_empty() {
                        status.reason.clone()
                    } else {
                        status.message.clone()
                    },
                }
            } else {
                BackendError::Api {
                    code: status.code,
                    message: if status.message.is_empty() {
                        status.reason.clone()
                    } else {
                        status.message.clone()
                    },
                }
            }
        }
        other => BackendError::Transport {
            message: other.to_string(),
            source: Some(Box::new(other)),
        },
    }
}

/// Sets `ours` on `meta`'s annotations, keeping every other annotation.
pub fn apply_annotations(meta: &mut ObjectMeta, ours: &BTreeMap<String, String>) {
    if ours.is_empty() {
        return;
    }
    let all = meta.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in ours {
        all.insert(k.clone(), v.clone());
    }
}

/// Objects this backend saw recently, so a replace starts from the full
/// object at the version it names (keeping labels, annotations and fields
/// others wrote).
#[derive(Debug, Default)]
struct Seen {
    objects: VecDeque<Lease>,
}

impl Seen {
    const CAPACITY: usize = 8;

    fn remember(&mut self, lease: &Lease) {
        let rv = lease.metadata.resource_version.as_deref();
        if rv.is_none()
            || self
                .objects
                .iter()
                .any(|l| l.metadata.resource_version.as_deref() == rv)
        {
            return;
        }
        if self.objects.len() == Self::CAPACITY {
            self.objects.pop_front();
        }
        self.objects.push_back(lease.clone());
    }

    fn at(&self, version: &str) -> Option<&Lease> {
        self.objects
            .iter()
            .rev()
            .find(|l| l.metadata.resource_version.as_deref() == Some(version))
    }

    fn latest(&self) -> Option<&Lease> {
        self.objects.back()
    }
}

#[derive(Debug)]
struct Inner {
    api: Api<Lease>,
    watch_api: Api<Lease>,
    config: LeaseConfig,
    seen: Mutex<Seen>,
}

impl Inner {
    fn remember(&self, lease: &Lease) {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remember(lease);
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, BackendError> {
        match tokio::time::timeout(self.config.request_timeout, fut).await {
            Ok(r) => r.map_err(map_kube_error),
            Err(_) => Err(BackendError::Timeout(self.config.request_timeout)),
        }
    }
}

/// The Kubernetes Lease backend of the election.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use vip_core::LockBackend;
/// use vip_lease::{ClusterAccess, DiscoveryOptions, LeaseBackend, LeaseConfig, LeaseName};
///
/// let access = ClusterAccess::discover(&DiscoveryOptions::from_env(None).control_plane(6443)).await?;
/// let lease = LeaseName::parse("plndr-cp-lock", "kube-system")?;
/// let backend = LeaseBackend::new(&access, LeaseConfig::for_retry_period(lease, std::time::Duration::from_secs(1)))?;
/// let current = backend.get().await?;
/// println!("{}: {current:?}", backend.describe());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LeaseBackend {
    inner: Arc<Inner>,
}

impl LeaseBackend {
    /// A backend with its own two clients (requests, watch) from `access`.
    pub fn new(access: &ClusterAccess, config: LeaseConfig) -> Result<Self, LeaseError> {
        let request_client = access
            .client(&ClientOptions::requests(config.request_timeout))
            .map_err(LeaseError::Client)?;
        let watch_client = access
            .client(&ClientOptions::watch(config.request_timeout))
            .map_err(LeaseError::Client)?;
        let ns = config.lease.namespace.clone();
        Ok(Self {
            inner: Arc::new(Inner {
                api: Api::namespaced(request_client, &ns),
                watch_api: Api::namespaced(watch_client, &ns),
                config,
                seen: Mutex::new(Seen::default()),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LeaseConfig {
        &self.inner.config
    }

    /// The last full Lease object this backend saw (by get, create, update
    /// or watch), if any.
    pub fn last_seen(&self) -> Option<Lease> {
        self.inner
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .latest()
            .cloned()
    }
}

#[async_trait]
impl LockBackend for LeaseBackend {
    async fn get(&self) -> Result<Option<VersionedRecord>, BackendError> {
        let name = &self.inner.config.lease.name;
        let lease = self.inner.bounded(self.inner.api.get_opt(name)).await?;
        Ok(lease.map(|l| {
            self.inner.remember(&l);
            versioned(&l)
        }))
    }

    async fn create(&self, record: &LeaderRecord) -> Result<VersionedRecord, BackendError> {
        let config = &self.inner.config;
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.lease.name.clone()),
                namespace: Some(config.lease.namespace.clone()),
                labels: (!config.labels.is_empty()).then(|| config.labels.clone()),
                annotations: (!config.annotations.is_empty()).then(|| config.annotations.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(record_to_spec(record, None)),
        };
        let created = self
            .inner
            .bounded(self.inner.api.create(&PostParams::default(), &lease))
            .await?;
        self.inner.remember(&created);
        Ok(versioned(&created))
    }

    async fn update(
        &self,
        current: &VersionedRecord,
        record: &LeaderRecord,
    ) -> Result<VersionedRecord, BackendError> {
        let config = &self.inner.config;
        let base = {
            let seen = self
                .inner
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // The object at the named version; else the newest one we know
            // (its metadata is the best guess, and the resourceVersion
            // precondition below makes a stale guess fail with Conflict).
            seen.at(&current.version).or(seen.latest()).cloned()
        };
        let mut lease = base.unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(config.lease.name.clone()),
                namespace: Some(config.lease.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: None,
        });
        lease.metadata.resource_version = Some(current.version.clone());
        lease.metadata.managed_fields = None;
        apply_annotations(&mut lease.metadata, &config.annotations);
        lease.spec = Some(record_to_spec(record, lease.spec.as_ref()));
        let updated = self
            .inner
            .bounded(
                self.inner
                    .api
                    .replace(&config.lease.name, &PostParams::default(), &lease),
            )
            .await?;
        self.inner.remember(&updated);
        Ok(versioned(&updated))
    }

    fn watch(&self) -> Option<RecordWatch> {
        let inner = self.inner.clone();
        spawn_record_watch(|tx| run_watch(inner, tx))
    }

    fn describe(&self) -> String {
        format!("lease {}", self.inner.config.lease)
    }
}

/// Keeps the record watch alive for as long as its receiver lives, on
/// kube's watcher ([`follow`]): list the Lease by field selector (a quorum
/// read), publish it (or `None`), then watch from the list's
/// resourceVersion; a watch that ends resumes, an expired one (410)
/// lists again. Needs `list` and `watch` on the Lease's name (RBAC
/// authorises a list or watch by the `metadata.name` field selector with
/// `resourceNames`); a refusal is one warning, and followers then hear a
/// release only at their next retry.
async fn run_watch(inner: Arc<Inner>, tx: watch::Sender<Option<VersionedRecord>>) {
    let timeout_secs =
        u32::try_from(inner.config.watch_timeout.as_secs().max(1)).unwrap_or(u32::MAX);
    let config = watcher::Config::default()
        .fields(&format!("metadata.name={}", inner.config.lease.name))
        .timeout(timeout_secs)
        .list_semantic(ListSemantic::MostRecent);
    // Events stop arriving without the stream ending when the connection is
    // black-holed: give up on a silent watch after the server timeout plus
    // a margin.
    let idle = inner.config.watch_timeout + Duration::from_secs(5);
    let mut relist = Relist::default();
    let mut refused: Option<String> = None;
    follow(inner.watch_api.clone(), config, idle, &tx, |r| match r {
        Ok(event) => {
            refused = None;
            if let Event::InitApply(l) | Event::Apply(l) = &event {
                inner.remember(l);
            }
            if let Some(state) = relist.apply(event) {
                publish(&tx, state.as_ref().map(versioned));
            }
        }
        Err(e) => {
            if let Some(line) = new_refusal(&mut refused, &e) {
                tracing::warn!(lease = %inner.config.lease, error = %line, "lease watch: cannot list or watch the Lease; a release is heard at the next retry (`vip manifest rbac` has the rule)");
            } else if refusal(&e).is_none() {
                tracing::debug!(error = %e, lease = %inner.config.lease, "lease watch failed; backing off");
            }
        }
    })
    .await;
}

/// The Lease as the watcher's events show it: `Some(state)` when there is
/// something to publish (`state` is the Lease, or `None` when there is
/// none). A (re)list publishes once, at its end.
#[derive(Debug, Default)]
struct Relist {
    /// While a (re)list is under way: the Lease it found, if any.
    listing: Option<Option<Lease>>,
}

impl Relist {
    fn apply(&mut self, event: Event<Lease>) -> Option<Option<Lease>> {
        match event {
            Event::Init => {
                self.listing = Some(None);
                None
            }
            Event::InitApply(l) => {
                if let Some(found) = self.listing.as_mut() {
                    *found = Some(l);
                }
                None
            }
            Event::InitDone => self.listing.take(),
            Event::Apply(l) => Some(Some(l)),
            Event::Delete(_) => Some(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_parse_both_forms() {
        assert_eq!(
            LeaseName::parse("plndr-cp-lock", "kube-system").unwrap(),
            LeaseName::default()
        );
        let n = LeaseName::parse("vip/cp.lock", "kube-system").unwrap();
        assert_eq!((n.namespace.as_str(), n.name.as_str()), ("vip", "cp.lock"));
        assert!(LeaseName::parse("Bad", "kube-system").is_err());
        assert!(LeaseName::parse("a/b/c", "kube-system").is_err());
        assert!(LeaseName::parse("ns.x/b", "kube-system").is_err());
        assert!(LeaseName::parse("", "kube-system").is_err());
        assert_eq!(
            LeaseName::default().to_string(),
            "kube-system/plndr-cp-lock"
        );
    }

    #[test]
    fn micro_time_is_written_like_client_go() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let json = serde_json::to_value(to_micro_time(t)).unwrap();
        assert_eq!(json, "2023-11-14T22:13:20.123456Z");
        let whole = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            serde_json::to_value(to_micro_time(whole)).unwrap(),
            "2023-11-14T22:13:20.000000Z"
        );
        let back: MicroTime = serde_json::from_value("2023-11-14T22:13:20.123456Z".into()).unwrap();
        assert_eq!(
            from_micro_time(&back),
            UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456)
        );
    }

    #[test]
    fn record_round_trips_through_the_spec() {
        let record = LeaderRecord {
            holder_identity: "node-a".into(),
            lease_duration_seconds: 5,
            acquire_time: Some(UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_001)),
            renew_time: Some(UNIX_EPOCH + Duration::from_micros(1_700_000_004_500_000)),
            lease_transitions: 3,
        };
        let base = LeaseSpec {
            preferred_holder: Some("node-b".into()),
            strategy: Some("OldestEmulationVersion".into()),
            ..LeaseSpec::default()
        };
        let spec = record_to_spec(&record, Some(&base));
        assert_eq!(spec.preferred_holder.as_deref(), Some("node-b"));
        assert_eq!(spec_to_record(Some(&spec)), record);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["holderIdentity"], "node-a");
        assert_eq!(json["leaseDurationSeconds"], 5);
        assert_eq!(json["leaseTransitions"], 3);
        assert_eq!(json["renewTime"], "2023-11-14T22:13:24.500000Z");
        // A released record still writes the empty holder, like client-go.
        let released = record_to_spec(&LeaderRecord::default(), None);
        let json = serde_json::to_value(&released).unwrap();
        assert_eq!(json["holderIdentity"], "");
        assert!(json.get("acquireTime").is_none());
        assert_eq!(spec_to_record(None), LeaderRecord::default());
    }

    #[test]
    fn our_annotations_are_set_and_others_kept() {
        let mut meta = ObjectMeta {
            annotations: Some(BTreeMap::from([
                ("theirs".to_string(), "1".to_string()),
                ("ours".to_string(), "stale".to_string()),
            ])),
            ..ObjectMeta::default()
        };
        let ours = BTreeMap::from([("ours".to_string(), "fresh".to_string())]);
        apply_annotations(&mut meta, &ours);
        let got = meta.annotations.unwrap();
        assert_eq!(got["theirs"], "1");
        assert_eq!(got["ours"], "fresh");
        let mut bare = ObjectMeta::default();
        apply_annotations(&mut bare, &BTreeMap::new());
        assert!(bare.annotations.is_none(), "none of ours: nothing written");
        apply_annotations(&mut bare, &ours);
        assert_eq!(bare.annotations.unwrap()["ours"], "fresh");
    }

    fn lease(rv: &str) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("plndr-cp-lock".into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            spec: None,
        }
    }

    #[test]
    fn a_relist_publishes_once_at_its_end_and_events_at_once() {
        let mut r = Relist::default();
        let rv = |p: Option<Option<Lease>>| p.map(|l| l.and_then(|l| l.metadata.resource_version));
        assert_eq!(r.apply(Event::Init), None);
        assert_eq!(r.apply(Event::InitApply(lease("5"))), None);
        assert_eq!(rv(r.apply(Event::InitDone)), Some(Some("5".into())));
        assert_eq!(
            rv(r.apply(Event::Apply(lease("6")))),
            Some(Some("6".into()))
        );
        assert_eq!(rv(r.apply(Event::Delete(lease("7")))), Some(None));
        // A relist that finds no Lease publishes None.
        assert_eq!(r.apply(Event::Init), None);
        assert_eq!(rv(r.apply(Event::InitDone)), Some(None));
        // An InitDone without its Init publishes nothing.
        assert_eq!(r.apply(Event::InitDone), None);
    }

    #[test]
    fn retry_bound_is_enforced() {
        let c = LeaseConfig::for_retry_period(LeaseName::default(), Duration::from_secs(1));
        assert_eq!(c.request_timeout, Duration::from_millis(750));
        assert!(c.check(Duration::from_secs(1)).is_ok());
        assert!(c.check(Duration::from_millis(750)).is_err());
    }
}
