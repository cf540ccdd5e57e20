//! [`EtcdHeartbeatKeys`]: the heartbeat key and cluster identity of the
//! etcd backend (see `vip_core::heartbeat_auth` for the design).
//!
//! - **Cluster identity**: etcd's cluster id (every response header
//!   carries it; it is fixed when the cluster is bootstrapped and differs
//!   between clusters), read with a count-only get of the election key,
//!   written `etcd-<16 hex digits>`.
//! - **Key**: 32 random bytes at `<election key>/heartbeat-key`, created by
//!   one transaction: `create_revision == 0 → put`, otherwise `get`. Two
//!   nodes racing both run it; etcd serialises them, so one writes and the
//!   other reads what it wrote: every node ends with the same key. The key
//!   has no etcd lease: it outlives leaderships.
//!
//! Permissions: with etcd authentication on, the node's user needs
//! read-write on that key (a prefix grant on the election key covers it).
//! Without it the source answers [`HeartbeatKeyError::Forbidden`] in one
//! line: fast failover stays off, failover by the record's expiry still
//! works.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use vip_core::{BackendError, HeartbeatKey, HeartbeatKeyError, HeartbeatKeySource};

use crate::backend::{EtcdBackend, map_error};

/// The suffix of the heartbeat key under the election key.
pub const HEARTBEAT_KEY_SUFFIX: &str = "/heartbeat-key";

/// The heartbeat key source of the etcd backend.
#[derive(Clone)]
pub struct EtcdHeartbeatKeys {
    client: Client,
    endpoints: String,
    election_key: String,
    key: String,
    timeout: Duration,
}

impl std::fmt::Debug for EtcdHeartbeatKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdHeartbeatKeys")
            .field("endpoints", &self.endpoints)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl EtcdBackend {
    /// The heartbeat key source of this backend's election, on its request
    /// connection.
    pub fn heartbeat_keys(&self) -> EtcdHeartbeatKeys {
        let config = &self.inner.config;
        EtcdHeartbeatKeys {
            client: self.inner.requests.clone(),
            endpoints: config.endpoint_list(),
            election_key: config.key.clone(),
            key: format!("{}{HEARTBEAT_KEY_SUFFIX}", config.key),
            timeout: config.request_timeout,
        }
    }
}

impl EtcdHeartbeatKeys {
    /// The etcd key that holds the heartbeat key.
    pub fn key(&self) -> &str {
        &self.key
    }

    async fn bounded<T>(
        &self,
        what: String,
        fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, HeartbeatKeyError> {
        let err = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => map_error(&self.endpoints, e),
            Err(_) => BackendError::Timeout(self.timeout),
        };
        Err(match err {
            BackendError::Unauthorized { code, .. } => HeartbeatKeyError::Forbidden {
                what,
                detail: format!(
                    "etcd {}: {}",
                    self.endpoints,
                    if code == 403 {
                        "permission denied"
                    } else {
                        "unauthenticated"
                    }
                ),
            },
            other => HeartbeatKeyError::Unavailable {
                what,
                detail: other.to_string().replace('\n', " "),
            },
        })
    }
}

#[async_trait]
impl HeartbeatKeySource for EtcdHeartbeatKeys {
    async fn cluster_identity(&self) -> Result<String, HeartbeatKeyError> {
        let what = format!("read etcd key {:?}", self.election_key);
        let mut kv = self.client.kv_client();
        let resp = self
            .bounded(
                what.clone(),
                kv.get(
                    self.election_key.as_str(),
                    Some(GetOptions::new().with_count_only()),
                ),
            )
            .await?;
        match resp.header().map(|h| h.cluster_id()) {
            Some(id) if id != 0 => Ok(format!("etcd-{id:016x}")),
            _ => Err(HeartbeatKeyError::Unavailable {
                what,
                detail: "the response carries no cluster id".into(),
            }),
        }
    }

    async fn shared_key(&self) -> Result<HeartbeatKey, HeartbeatKeyError> {
        let fresh = HeartbeatKey::generate()?;
        let key = self.key.as_str();
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, fresh.bytes().to_vec(), None)])
            .or_else([TxnOp::get(key, None)]);
        let mut kv = self.client.kv_client();
        let resp = self
            .bounded(format!("create or read etcd key {key:?}"), kv.txn(txn))
            .await?;
        if resp.succeeded() {
            return Ok(fresh);
        }
        let what = format!("etcd key {key:?}");
        let stored = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        });
        match stored {
            Some(bytes) => HeartbeatKey::from_slice(&bytes, &what),
            // Deleted between the compare and the get cannot happen in one
            // transaction; an empty answer is a broken server.
            None => Err(HeartbeatKeyError::Unavailable {
                what,
                detail: "exists but the transaction returned no value".into(),
            }),
        }
    }
}
