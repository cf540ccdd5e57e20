//! [`EtcdBackend`]: the [`LockBackend`] on one etcd key.
//!
//! - **Version** = the key's `mod_revision`, as a decimal string.
//! - **get** reads the key; no key is no record.
//! - **create** = `Txn(create_revision(key) == 0 → put(key, record, lease))`;
//!   a failed compare is [`BackendError::AlreadyExists`].
//! - **update** = `Txn(mod_revision(key) == version → put(key, record,
//!   lease))`; a failed compare is [`BackendError::Conflict`] when the key
//!   exists, [`BackendError::NotFound`] when it does not. This is the
//!   compare-and-swap the elector relies on, as `resourceVersion` is for
//!   the Lease.
//! - **release** (an update writing an empty holder): the same compare,
//!   then the key is *deleted* in the Txn and its lease revoked; the
//!   returned record is the released one at the delete's revision. Watchers
//!   see the key vanish (`None`) at once.
//! - **watch** reads the key, then watches it from the next revision;
//!   a broken stream resumes from the last revision seen, a compacted one
//!   reads the key again.
//!
//! # Why the etcd lease TTL cannot end a leadership early
//!
//! Every write grants a *fresh* etcd lease with TTL = the record's lease
//! duration and attaches the key to it; the lease of the version replaced
//! is revoked after the Txn succeeded (it no longer holds the key, so the
//! revoke deletes nothing). The grant is sent after the elector took its
//! `renew_sent` instant, and etcd counts the TTL from when it grants, so
//! the key can expire no earlier than `renew_sent + lease duration`. The
//! leader's VIP lifetime ends at `renew_sent + renew deadline` (invariant 8
//! of the design), before that; a candidate that takes the key after it
//! expired therefore never overlaps a leader that still believes in its
//! renewal. etcd only ever extends a lease (a new etcd leader re-arms every
//! TTL; the server may raise a TTL below its minimum), never shortens it.
//!
//! Every request is bounded by [`EtcdConfig::request_timeout`]; errors are
//! typed like the Lease backend's and name the endpoints.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, KeyValue,
    PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::watch;
use vip_core::backend::{publish, spawn_record_watch};
use vip_core::{
    BackendError, LeaderRecord, LockBackend, RecordWatch, VersionedRecord, WatchBackoff,
};

use crate::config::{EtcdConfig, EtcdError};
use crate::record;

/// gRPC status codes this backend tells apart.
const CANCELLED: i32 = 1;
const DEADLINE_EXCEEDED: i32 = 4;
const PERMISSION_DENIED: i32 = 7;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

/// The etcd election backend.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use vip_core::LockBackend;
/// use vip_etcd::{EtcdBackend, EtcdConfig, TlsFiles, election_key, parse_endpoints};
///
/// let tls = TlsFiles {
///     ca: "/etc/kubernetes/pki/etcd/ca.crt".into(),
///     cert: "/etc/kubernetes/pki/apiserver-etcd-client.crt".into(),
///     key: "/etc/kubernetes/pki/apiserver-etcd-client.key".into(),
/// };
/// let config = EtcdConfig::for_retry_period(
///     parse_endpoints("127.0.0.1:2379", true)?,
///     Some(tls),
///     election_key("kube-system", "plndr-cp-lock"),
///     Duration::from_secs(1),
/// );
/// let backend = EtcdBackend::connect(config).await?;
/// println!("{}: {:?}", backend.describe(), backend.get().await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EtcdBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: EtcdConfig,
    /// get/create/update/release and the lease calls.
    requests: Client,
    /// The watch (its own connection, so a renewal never queues behind it).
    watcher: Client,
}

impl EtcdBackend {
    /// A backend with two clients (requests, watch) for `config`. The
    /// TLS files are read here; the connection is made on first use, so
    /// an unreachable etcd shows as [`BackendError::Transport`] later.
    pub async fn connect(config: EtcdConfig) -> Result<Self, EtcdError> {
        let tls = config.tls.as_ref().map(|t| t.load()).transpose()?;
        let t = config.request_timeout;
        let options = || {
            let o = ConnectOptions::new()
                .with_connect_timeout(t)
                .with_keep_alive(Duration::from_secs(1), t.max(Duration::from_millis(500)))
                .with_keep_alive_while_idle(true);
            match &tls {
                Some(tls) => o.with_tls(tls.clone()),
                None => o,
            }
        };
        let client_err = |source| EtcdError::Client {
            endpoints: config.endpoint_list(),
            source,
        };
        let requests = Client::connect(&config.endpoints, Some(options()))
            .await
            .map_err(client_err)?;
        let watcher = Client::connect(&config.endpoints, Some(options()))
            .await
            .map_err(client_err)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                requests,
                watcher,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EtcdConfig {
        &self.inner.config
    }
}

/// The whole source chain of an error in one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let s = err.to_string().replace(['\n', '\r'], " ");
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

fn looks_like_tls(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "certificate",
        "unknownissuer",
        "handshake",
        "unknown ca",
        "bad certificate",
    ]
    .iter()
    .any(|w| t.contains(w))
}

fn tls_refused(endpoints: &str, text: &str) -> BackendError {
    BackendError::Unauthorized {
        code: 401,
        message: format!(
            "etcd {endpoints} refused the TLS handshake (check etcdCACert, etcdCert, etcdKey): {text}"
        ),
    }
}

fn transport(endpoints: &str, text: &str, e: etcd_client::Error) -> BackendError {
    let t = text.to_ascii_lowercase();
    // Under TLS 1.3 a server that refuses the client certificate closes
    // the connection after the handshake: all the client sees is that.
    let hint = if t.contains("broken pipe") || t.contains("connection closed") {
        " (if this persists, etcd may refuse the client certificate: check etcdCert, etcdKey)"
    } else {
        ""
    };
    BackendError::Transport {
        message: format!("etcd {endpoints}: {text}{hint}"),
        source: Some(Box::new(e)),
    }
}

/// Maps a client error to the backend's error, naming the endpoints:
/// gRPC `Unauthenticated` / `PermissionDenied` and refused certificates are
/// [`BackendError::Unauthorized`] (401 / 403), connection problems
/// [`BackendError::Transport`], other gRPC answers [`BackendError::Api`]
/// with the gRPC code.
pub fn map_error(endpoints: &str, e: etcd_client::Error) -> BackendError {
    let text = chain(&e);
    match &e {
        etcd_client::Error::GRpcStatus(status) => {
            let code = status.code() as i32;
            let over_transport = std::error::Error::source(status)
                .is_some_and(|s| s.downcast_ref::<tonic::transport::Error>().is_some());
            match code {
                UNAUTHENTICATED | PERMISSION_DENIED => BackendError::Unauthorized {
                    code: if code == UNAUTHENTICATED { 401 } else { 403 },
                    message: format!("etcd {endpoints}: {text}"),
                },
                _ if looks_like_tls(&text) => tls_refused(endpoints, &text),
                CANCELLED | DEADLINE_EXCEEDED | UNAVAILABLE => transport(endpoints, &text, e),
                _ if over_transport => transport(endpoints, &text, e),
                _ => BackendError::Api {
                    code: u16::try_from(code).unwrap_or(0),
                    message: format!("etcd {endpoints}: {text}"),
                },
            }
        }
        _ if looks_like_tls(&text) => tls_refused(endpoints, &text),
        _ => transport(endpoints, &text, e),
    }
}

fn parse_version(version: &str) -> Option<i64> {
    version.parse::<i64>().ok().filter(|v| *v > 0)
}

fn versioned(kv: &KeyValue, endpoints: &str) -> Result<VersionedRecord, BackendError> {
    let record = record::decode(kv.value()).map_err(|e| BackendError::Api {
        code: 0,
        message: format!(
            "etcd {endpoints}: key {:?} does not hold a vip leader record: {}",
            String::from_utf8_lossy(kv.key()),
            chain(&e)
        ),
    })?;
    Ok(VersionedRecord {
        record,
        version: kv.mod_revision().to_string(),
    })
}

impl Inner {
    fn endpoints(&self) -> String {
        self.config.endpoint_list()
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, BackendError> {
        match tokio::time::timeout(self.config.request_timeout, fut).await {
            Ok(r) => r.map_err(|e| map_error(&self.endpoints(), e)),
            Err(_) => Err(BackendError::Timeout(self.config.request_timeout)),
        }
    }

    async fn grant(&self, record: &LeaderRecord) -> Result<i64, BackendError> {
        let ttl = i64::from(record.lease_duration_seconds.max(1));
        let mut lease = self.requests.lease_client();
        let granted = self.bounded(lease.grant(ttl, None)).await?;
        Ok(granted.id())
    }

    /// Revoke a lease that holds no key any more (or a granted one that was
    /// not used), off the caller's path; it expires on its own if this
    /// fails.
    fn revoke_later(self: &Arc<Self>, id: i64) {
        if id == 0 {
            return;
        }
        let inner = self.clone();
        tokio::spawn(async move {
            let mut lease = inner.requests.lease_client();
            if let Err(e) = inner.bounded(lease.revoke(id)).await {
                tracing::debug!(lease = id, error = %e, "etcd: revoke failed; the lease will expire");
            }
        });
    }

    /// The outcome of a failed compare: whether the key exists (from the
    /// Txn's else branch, a get).
    fn key_exists(responses: &[TxnOpResponse]) -> bool {
        responses.iter().any(|r| match r {
            TxnOpResponse::Get(g) => !g.kvs().is_empty(),
            _ => false,
        })
    }

    async fn put_if(
        self: &Arc<Self>,
        compare: Compare,
        record: &LeaderRecord,
    ) -> Result<Result<(VersionedRecord, i64), bool>, BackendError> {
        let key = self.config.key.as_str();
        let lease = self.grant(record).await?;
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(
                key,
                record::encode(record),
                Some(PutOptions::new().with_lease(lease).with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let mut kv = self.requests.kv_client();
        let resp = match self.bounded(kv.txn(txn)).await {
            Ok(r) => r,
            Err(e) => {
                // The Txn may or may not have applied; if it did, the key
                // holds this lease and revoking it would delete the key:
                // leave the lease to expire.
                return Err(e);
            }
        };
        if !resp.succeeded() {
            self.revoke_later(lease);
            return Ok(Err(Self::key_exists(&resp.op_responses())));
        }
        let revision = resp.header().map_or(0, |h| h.revision());
        let previous_lease = resp
            .op_responses()
            .iter()
            .find_map(|r| match r {
                TxnOpResponse::Put(p) => p.prev_key().map(KeyValue::lease),
                _ => None,
            })
            .unwrap_or(0);
        if previous_lease != lease {
            self.revoke_later(previous_lease);
        }
        Ok(Ok((
            VersionedRecord {
                record: record.clone(),
                version: revision.to_string(),
            },
            lease,
        )))
    }

    async fn delete_if(
        self: &Arc<Self>,
        version: i64,
        record: &LeaderRecord,
    ) -> Result<VersionedRecord, BackendError> {
        let key = self.config.key.as_str();
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, version)])
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let mut kv = self.requests.kv_client();
        let resp = self.bounded(kv.txn(txn)).await?;
        let responses = resp.op_responses();
        if !resp.succeeded() {
            return Err(if Self::key_exists(&responses) {
                BackendError::Conflict
            } else {
                BackendError::NotFound
            });
        }
        for r in &responses {
            if let TxnOpResponse::Delete(d) = r {
                for kv in d.prev_kvs() {
                    self.revoke_later(kv.lease());
                }
            }
        }
        Ok(VersionedRecord {
            record: record.clone(),
            version: resp.header().map_or(0, |h| h.revision()).to_string(),
        })
    }
}

#[async_trait]
impl LockBackend for EtcdBackend {
    async fn get(&self) -> Result<Option<VersionedRecord>, BackendError> {
        let mut kv = self.inner.requests.kv_client();
        let key = self.inner.config.key.clone();
        let resp = self.inner.bounded(kv.get(key, None)).await?;
        resp.kvs()
            .first()
            .map(|kv| versioned(kv, &self.inner.endpoints()))
            .transpose()
    }

    async fn create(&self, record: &LeaderRecord) -> Result<VersionedRecord, BackendError> {
        let compare = Compare::create_revision(self.inner.config.key.as_str(), CompareOp::Equal, 0);
        match self.inner.put_if(compare, record).await? {
            Ok((written, _)) => Ok(written),
            Err(_) => Err(BackendError::AlreadyExists),
        }
    }

    async fn update(
        &self,
        current: &VersionedRecord,
        record: &LeaderRecord,
    ) -> Result<VersionedRecord, BackendError> {
        let Some(version) = parse_version(&current.version) else {
            // Not a revision this backend wrote: the record is not at it.
            return Err(BackendError::Conflict);
        };
        if record.is_released() {
            return self.inner.delete_if(version, record).await;
        }
        let compare =
            Compare::mod_revision(self.inner.config.key.as_str(), CompareOp::Equal, version);
        match self.inner.put_if(compare, record).await? {
            Ok((written, _)) => Ok(written),
            Err(true) => Err(BackendError::Conflict),
            Err(false) => Err(BackendError::NotFound),
        }
    }

    fn watch(&self) -> Option<RecordWatch> {
        let inner = self.inner.clone();
        spawn_record_watch(|tx| run_watch(inner, tx))
    }

    fn describe(&self) -> String {
        format!(
            "etcd key {} at {}",
            self.inner.config.key,
            self.inner.endpoints()
        )
    }
}

/// Keeps the record watch alive for as long as its receiver lives: read
/// the key (publishing it or `None`), watch from the revision after the
/// read; a stream that breaks is re-opened from the revision after the
/// last one seen, a compacted one starts over with a read.
async fn run_watch(inner: Arc<Inner>, tx: watch::Sender<Option<VersionedRecord>>) {
    let key = inner.config.key.clone();
    let endpoints = inner.endpoints();
    let mut next: Option<i64> = None;
    let mut backoff = WatchBackoff::default();
    loop {
        if tx.is_closed() {
            return;
        }
        let from = match next {
            Some(rev) => rev,
            None => {
                let mut kv = inner.watcher.kv_client();
                let got = tokio::select! {
                    _ = tx.closed() => return,
                    r = inner.bounded(kv.get(key.clone(), Some(GetOptions::new()))) => r,
                };
                match got {
                    Ok(resp) => {
                        let value = match resp.kvs().first().map(|kv| versioned(kv, &endpoints)) {
                            Some(Ok(v)) => Some(v),
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "etcd watch: unreadable record");
                                None
                            }
                            None => None,
                        };
                        publish(&tx, value);
                        resp.header().map_or(0, |h| h.revision()) + 1
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "etcd watch: read failed");
                        if backoff.sleep_or_closed(&tx).await {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        next = Some(from);
        let mut watch_client = inner.watcher.watch_client();
        let opened = tokio::select! {
            _ = tx.closed() => return,
            r = inner.bounded(watch_client.watch(key.clone(), Some(WatchOptions::new().with_start_revision(from)))) => r,
        };
        let mut stream = match opened {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "etcd watch: cannot open");
                if backoff.sleep_or_closed(&tx).await {
                    return;
                }
                continue;
            }
        };
        loop {
            let msg = tokio::select! {
                _ = tx.closed() => return,
                m = stream.message() => m,
            };
            match msg {
                Ok(Some(resp)) => {
                    if resp.compact_revision() > 0 {
                        tracing::debug!(
                            compacted = resp.compact_revision(),
                            "etcd watch: compacted; reading again"
                        );
                        next = None;
                        break;
                    }
                    if resp.canceled() {
                        tracing::debug!(reason = resp.cancel_reason(), "etcd watch: canceled");
                        break;
                    }
                    for event in resp.events() {
                        let Some(kv) = event.kv() else { continue };
                        next = Some(kv.mod_revision() + 1);
                        match event.event_type() {
                            EventType::Put => match versioned(kv, &endpoints) {
                                Ok(v) => {
                                    publish(&tx, Some(v));
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "etcd watch: unreadable record");
                                    publish(&tx, None);
                                }
                            },
                            EventType::Delete => {
                                publish(&tx, None);
                            }
                        }
                    }
                    backoff.reset();
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %map_error(&endpoints, e), "etcd watch stream failed");
                    break;
                }
            }
        }
        if backoff.sleep_or_closed(&tx).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_positive_revisions() {
        assert_eq!(parse_version("42"), Some(42));
        assert_eq!(parse_version("0"), None);
        assert_eq!(parse_version("abc"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn tls_failures_read_as_tls() {
        assert!(looks_like_tls("invalid peer certificate: UnknownIssuer"));
        assert!(looks_like_tls("received fatal alert: UnknownCA handshake"));
        assert!(!looks_like_tls(
            "tcp connect error: Connection refused (os error 111)"
        ));
    }
}
