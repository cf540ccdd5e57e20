//! [`MemoryKeys`]: an in-memory [`HeartbeatKeySource`] for tests (feature
//! `test-util`), with the backends' semantics: one key per cluster,
//! created by the first node that asks, the same for every clone; and
//! faults on demand (a missing permission, a cluster identity not known
//! yet).

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::heartbeat_auth::{HeartbeatKey, HeartbeatKeyError, HeartbeatKeySource};

#[derive(Debug, Default)]
struct State {
    cluster: String,
    key: Option<HeartbeatKey>,
    forbidden: bool,
    created: u32,
}

/// One cluster's key store; clones share it (one per node, as the nodes
/// share the API server).
#[derive(Debug, Clone, Default)]
pub struct MemoryKeys(Arc<Mutex<State>>);

impl MemoryKeys {
    /// The store of the cluster `cluster` (empty: not known yet), without
    /// a key.
    pub fn new(cluster: &str) -> Self {
        let keys = Self::default();
        keys.lock().cluster = cluster.to_owned();
        keys
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make reading and creating the key fail as a missing permission.
    pub fn forbid_key(&self, forbidden: bool) {
        self.lock().forbidden = forbidden;
    }

    /// Set the cluster identity (the Lease was created).
    pub fn set_cluster(&self, cluster: &str) {
        cluster.clone_into(&mut self.lock().cluster);
    }

    /// Replace the key (a rotation).
    pub fn set_key(&self, key: HeartbeatKey) {
        self.lock().key = Some(key);
    }

    /// How many keys were created by asking nodes.
    pub fn created(&self) -> u32 {
        self.lock().created
    }
}

#[async_trait]
impl HeartbeatKeySource for MemoryKeys {
    async fn cluster_identity(&self) -> Result<String, HeartbeatKeyError> {
        let state = self.lock();
        if state.cluster.is_empty() {
            return Err(HeartbeatKeyError::Unavailable {
                what: "the cluster identity".into(),
                detail: "not known yet".into(),
            });
        }
        Ok(state.cluster.clone())
    }

    async fn shared_key(&self) -> Result<HeartbeatKey, HeartbeatKeyError> {
        let mut state = self.lock();
        if state.forbidden {
            return Err(HeartbeatKeyError::Forbidden {
                what: "read the in-memory heartbeat key".into(),
                detail: "forbidden by the test".into(),
            });
        }
        if let Some(key) = &state.key {
            return Ok(key.clone());
        }
        let key = HeartbeatKey::generate()?;
        state.key = Some(key.clone());
        state.created += 1;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nodes_share_one_key_created_once() {
        let cluster = MemoryKeys::new("uid-1");
        let (a, b) = (cluster.clone(), cluster.clone());
        let (ka, kb) = tokio::join!(a.heartbeat_auth(), b.heartbeat_auth());
        assert_eq!(ka.unwrap(), kb.unwrap());
        assert_eq!(cluster.created(), 1);
        // Another cluster has another key.
        let other = MemoryKeys::new("uid-2").heartbeat_auth().await.unwrap();
        assert_ne!(other.key, a.shared_key().await.unwrap());
    }

    #[tokio::test]
    async fn faults() {
        let keys = MemoryKeys::new("");
        let err = keys.heartbeat_auth().await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        let keys = MemoryKeys::new("uid");
        keys.forbid_key(true);
        let err = keys.heartbeat_auth().await.unwrap_err();
        assert!(!err.is_transient());
        assert!(
            err.to_string()
                .starts_with("fast failover off: not allowed to")
        );
        keys.forbid_key(false);
        let rotated = HeartbeatKey::new([7; 32]);
        keys.set_key(rotated.clone());
        assert_eq!(keys.shared_key().await.unwrap(), rotated);
        assert_eq!(keys.created(), 0);
    }
}
