//! Where the key of authenticated (version 2) heartbeats comes from.
//!
//! A version 2 heartbeat carries an HMAC-SHA256 code, truncated to 16
//! bytes, over every byte of the frame before it (Ethernet addresses and
//! EtherType included), under a 32-byte key that only members of the
//! cluster can obtain. A node acts on a beat only when the code verifies.
//!
//! # Key distribution: through the election backend, nothing to configure
//!
//! Every node already holds credentials for the election backend, and the
//! backend is where the cluster agrees on things. So the key is kept there,
//! created by whichever node needs it first:
//!
//! - **Lease backend** (`vip-lease`): a Secret `<lease>-heartbeat` next to
//!   the Lease (same namespace), data `key` = 32 random bytes. The first
//!   node that finds it missing creates it; a node whose create conflicts
//!   (another node was faster) reads the winner's. Reading it needs `get`
//!   on that one Secret (RBAC `resourceNames`) and `create` on Secrets in
//!   the namespace (Kubernetes cannot restrict `create` by name), both
//!   granted by `vip manifest rbac`. Secrets, unlike the Lease or an
//!   annotation on it, are the object RBAC, audit and encryption at rest
//!   treat as confidential; a key published in the holder's record would
//!   be readable by everyone who may read Leases.
//! - **etcd backend** (`vip-etcd`): a key `<lock key>/heartbeat-key` created
//!   by a transaction only if absent, so two racing nodes get the same
//!   bytes; whoever may write the election key may read it.
//! - **Pre-shared key file** (optional, keepalived's `auth_hmac` is the
//!   model): `vip_heartbeat_key_file` names a file holding 64 hex digits
//!   (`openssl rand -hex 32`), the same on every node; the backend is then
//!   only asked for the cluster identity. For setups whose RBAC may not
//!   grant Secrets, or that rotate keys by their own means.
//!
//! Nodes without the key (a missing permission, an unreadable file) keep
//! fast failover off, with one clear error line, and fail over by Lease
//! expiry as before: never by trusting an unauthenticated frame.
//!
//! The **key id** ([`HeartbeatKey::id`]) is derived from the key
//! (HMAC-SHA256 of a fixed label, first 4 bytes), so the stores keep only
//! the key and all nodes agree on the id. A receiver that does not know a
//! frame's key id drops it as "unknown key" instead of trying keys: during
//! a rotation (a new Secret or file) followers fall back to Lease expiry
//! until every node has re-read the key.
//!
//! The **cluster identity** ([`HeartbeatKeySource::cluster_identity`]:
//! the Lease's `metadata.uid`, the etcd cluster id) feeds the election
//! scope ([`crate::heartbeat_scope`]).
//!
//! # Replay rule (applied by the controller, [`crate::heartbeat_replay`])
//!
//! A verified beat is still dropped as a replay when its (holder, term) is
//! known and its sequence is not newer than the last one heard for it, or
//! when its term, or for the same term its record version, is older than
//! already heard. The code covers all those fields, so a replayed frame
//! can only repeat, never advance, what a node already knows.

use std::fmt;

use async_trait::async_trait;

/// The length of a heartbeat key.
pub const HEARTBEAT_KEY_LEN: usize = 32;

/// Domain label of the key id.
const KEY_ID_LABEL: &[u8] = b"vip heartbeat key id";

/// A 32-byte heartbeat key and its id. `Debug` shows the id only.
#[derive(Clone, PartialEq, Eq)]
pub struct HeartbeatKey {
    id: u32,
    bytes: [u8; HEARTBEAT_KEY_LEN],
}

impl fmt::Debug for HeartbeatKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeartbeatKey")
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl HeartbeatKey {
    /// The key `bytes`; its id is derived from them.
    pub fn new(bytes: [u8; HEARTBEAT_KEY_LEN]) -> Self {
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes);
        let tag = ring::hmac::sign(&k, KEY_ID_LABEL);
        let mut id = [0u8; 4];
        id.copy_from_slice(&tag.as_ref()[..4]);
        Self {
            id: u32::from_be_bytes(id),
            bytes,
        }
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, HeartbeatKeyError> {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; HEARTBEAT_KEY_LEN];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| HeartbeatKeyError::Unavailable {
                what: "the system random source".into(),
                detail: "no random bytes".into(),
            })?;
        Ok(Self::new(bytes))
    }

    /// A key from stored bytes, which must be exactly 32.
    pub fn from_slice(bytes: &[u8], what: &str) -> Result<Self, HeartbeatKeyError> {
        <[u8; HEARTBEAT_KEY_LEN]>::try_from(bytes)
            .map(Self::new)
            .map_err(|_| HeartbeatKeyError::Invalid {
                what: what.into(),
                reason: format!("{} bytes, expected {HEARTBEAT_KEY_LEN}", bytes.len()),
            })
    }

    /// A key written as 64 hex digits (surrounding white space ignored),
    /// the format of `vip_heartbeat_key_file` (`openssl rand -hex 32`).
    pub fn from_hex(text: &str, what: &str) -> Result<Self, HeartbeatKeyError> {
        let text = text.trim();
        let invalid = |reason: String| HeartbeatKeyError::Invalid {
            what: what.into(),
            reason,
        };
        if text.len() != 2 * HEARTBEAT_KEY_LEN {
            return Err(invalid(format!(
                "{} characters, expected {} hex digits",
                text.chars().count(),
                2 * HEARTBEAT_KEY_LEN
            )));
        }
        let mut bytes = [0u8; HEARTBEAT_KEY_LEN];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .filter(|_| pair.iter().all(u8::is_ascii_hexdigit))
                .ok_or_else(|| invalid(format!("not a hex digit at position {}", 2 * i + 1)))?;
            bytes[i] = hex;
        }
        Ok(Self::new(bytes))
    }

    /// The key id, sent in every frame.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The key's bytes.
    pub fn bytes(&self) -> &[u8; HEARTBEAT_KEY_LEN] {
        &self.bytes
    }
}

/// What the controller needs to sign and verify heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatAuth {
    /// The key (and its id).
    pub key: HeartbeatKey,
    /// The cluster identity, for [`crate::heartbeat_scope::election_scope`].
    pub cluster: String,
}

/// Why no heartbeat key is available. Every variant is one line naming
/// what was wrong; fast failover stays off while it lasts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatKeyError {
    /// The backend refused access: a missing RBAC rule or etcd permission.
    /// Permanent until an operator acts.
    #[error(
        "fast failover off: not allowed to {what} ({detail}); grant it or set \
         vip_heartbeat_key_file; failover by lease expiry still works"
    )]
    Forbidden {
        /// What was refused, e.g. `get secret kube-system/plndr-cp-lock-heartbeat`.
        what: String,
        /// The backend's words.
        detail: String,
    },
    /// The stored key or a key file is malformed. Permanent until fixed.
    #[error("fast failover off: heartbeat key {what} is invalid: {reason}")]
    Invalid {
        /// Which key (a Secret, an etcd key, a file).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not yet available (the Lease does not exist yet) or a transient
    /// backend error: worth asking again later.
    #[error("heartbeat key not available yet: {what}: {detail}")]
    Unavailable {
        /// What was asked for.
        what: String,
        /// Why it is not there.
        detail: String,
    },
}

impl HeartbeatKeyError {
    /// Whether asking again can help without an operator.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// The source of the heartbeat key and the cluster identity.
///
/// Implementations: the Lease backend (`vip_lease::LeaseHeartbeatKeys`),
/// the etcd backend (`vip_etcd::EtcdHeartbeatKeys`), [`PresharedKey`] (a
/// key file around either), and the in-memory one of
/// `heartbeat_auth_mem` (feature `test-util`).
#[async_trait]
pub trait HeartbeatKeySource: Send + Sync + 'static {
    /// The cluster identity: stable for the cluster's lifetime and
    /// different between clusters.
    async fn cluster_identity(&self) -> Result<String, HeartbeatKeyError>;

    /// The cluster's shared key, created if this node is the first to ask.
    async fn shared_key(&self) -> Result<HeartbeatKey, HeartbeatKeyError>;

    /// Both, as the controller uses them.
    async fn heartbeat_auth(&self) -> Result<HeartbeatAuth, HeartbeatKeyError> {
        let cluster = self.cluster_identity().await?;
        let key = self.shared_key().await?;
        Ok(HeartbeatAuth { key, cluster })
    }
}

/// A pre-shared key (from `vip_heartbeat_key_file`) with the cluster
/// identity of a backend: the backend's key store is never asked.
#[derive(Debug, Clone)]
pub struct PresharedKey<S> {
    backend: S,
    key: HeartbeatKey,
}

impl<S: HeartbeatKeySource> PresharedKey<S> {
    /// `key` for every node, the cluster identity from `backend`.
    pub fn new(backend: S, key: HeartbeatKey) -> Self {
        Self { backend, key }
    }
}

#[async_trait]
impl<S: HeartbeatKeySource> HeartbeatKeySource for PresharedKey<S> {
    async fn cluster_identity(&self) -> Result<String, HeartbeatKeyError> {
        self.backend.cluster_identity().await
    }

    async fn shared_key(&self) -> Result<HeartbeatKey, HeartbeatKeyError> {
        Ok(self.key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat_auth_mem::MemoryKeys;
    use proptest::prelude::*;

    fn counting() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    #[test]
    fn key_ids_are_derived_from_the_key() {
        // HMAC-SHA256(00 01 .. 1f, "vip heartbeat key id"), computed
        // independently with Python's hmac module.
        assert_eq!(HeartbeatKey::new(counting()).id(), 0x3db3_05d6);
        let debug = format!("{:?}", HeartbeatKey::new(counting()));
        assert_eq!(debug, "HeartbeatKey { id: 3db305d6, .. }");
        assert!(!debug.contains("0, 1, 2"));
    }

    #[test]
    fn hex_keys() {
        let hex: String = counting().iter().map(|b| format!("{b:02x}")).collect();
        let key = HeartbeatKey::from_hex(&format!("  {hex}\n"), "file k").unwrap();
        assert_eq!(key, HeartbeatKey::new(counting()));
        assert_eq!(
            HeartbeatKey::from_hex(&hex.to_uppercase(), "k").unwrap(),
            key
        );
        let short = HeartbeatKey::from_hex("abcd", "file k").unwrap_err();
        assert_eq!(
            short.to_string(),
            "fast failover off: heartbeat key file k is invalid: 4 characters, expected 64 hex digits"
        );
        let mut bad = hex.clone();
        bad.replace_range(10..11, "g");
        assert!(
            HeartbeatKey::from_hex(&bad, "k")
                .unwrap_err()
                .to_string()
                .ends_with("not a hex digit at position 11")
        );
        let signed = format!("+1{}", &hex[2..]);
        assert!(HeartbeatKey::from_hex(&signed, "k").is_err());
        assert!(HeartbeatKey::from_slice(&[0; 31], "k").is_err());
        assert_eq!(HeartbeatKey::from_slice(&counting(), "k").unwrap(), key);
    }

    #[test]
    fn generated_keys_differ() {
        let a = HeartbeatKey::generate().unwrap();
        let b = HeartbeatKey::generate().unwrap();
        assert_ne!(a.bytes(), b.bytes());
        assert_ne!(a.id(), b.id());
    }

    #[tokio::test]
    async fn a_preshared_key_wins_and_the_cluster_comes_from_the_backend() {
        let backend = MemoryKeys::new("cluster-uid");
        backend.forbid_key(true);
        let file = HeartbeatKey::new(counting());
        let keys = PresharedKey::new(backend.clone(), file.clone());
        let auth = keys.heartbeat_auth().await.unwrap();
        assert_eq!(auth.key, file);
        assert_eq!(auth.cluster, "cluster-uid");
        assert!(backend.heartbeat_auth().await.is_err());
    }

    proptest! {
        #[test]
        fn hex_round_trips(bytes in any::<[u8; 32]>()) {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            prop_assert_eq!(HeartbeatKey::from_hex(&hex, "k").unwrap(), HeartbeatKey::new(bytes));
        }

        #[test]
        fn any_text_is_parsed_or_refused_without_panic(text in "\\PC{0,80}") {
            let _ = HeartbeatKey::from_hex(&text, "k");
        }
    }
}
