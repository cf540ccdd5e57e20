//! The election scope of authenticated (version 2) heartbeats: which
//! election a frame belongs to, bound to one cluster.
//!
//! Version 1 frames named their election by the lock's name alone
//! ([`ElectionId::of`]), so two clusters that both keep the default
//! `kube-system/plndr-cp-lock` on one segment heard each other's beats as
//! their own. The scope adds what tells clusters apart:
//!
//! - the **cluster identity**: the Lease's `metadata.uid` for the Lease
//!   backend (a UUID the API server assigns when the Lease is created, so
//!   two clusters never share it), the etcd cluster id for the etcd
//!   backend;
//! - the **lock**: `namespace/name` of the Lease, or the etcd key;
//! - the **VIPs**: sorted and de-duplicated, so the order in the
//!   configuration does not matter, but two elections for different
//!   addresses on one lock never match.
//!
//! [`election_scope`] hashes a length-prefixed encoding of the three with
//! SHA-256 and keeps the first 64 bits. The scope is not a secret and not a
//! security boundary (the heartbeat's authentication code is, see
//! [`crate::heartbeat_auth`]); it only lets a node drop another cluster's
//! frames as "other election" before spending a MAC on them, and makes the
//! drop counters say what happened. An accidental collision of two
//! clusters needs 2^32 clusters on one segment to become likely, and even
//! then their keys differ, so the frames fail verification.

use std::net::IpAddr;

use crate::heartbeat::ElectionId;

/// Domain separation: a scope is never the hash of anything else.
const DOMAIN: &[u8] = b"vip heartbeat election scope v2\0";

/// Why no scope can be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The cluster identity is empty: the backend has not told it yet.
    #[error("heartbeat election scope: the cluster identity is empty")]
    NoCluster,
    /// The lock name is empty.
    #[error("heartbeat election scope: the lock name is empty")]
    NoLock,
    /// No VIP was given.
    #[error("heartbeat election scope: no VIP")]
    NoVip,
}

/// The election id of version 2 heartbeats for the lock `lock`
/// (`namespace/name`, or the etcd key) of the cluster `cluster` (the
/// Lease's `metadata.uid`, or the etcd cluster id) electing `vips`.
///
/// ```
/// use vip_core::heartbeat_scope::election_scope;
/// let vips = ["198.18.0.10".parse().unwrap()];
/// let a = election_scope("5d1c…-uid-of-cluster-a", "kube-system/plndr-cp-lock", &vips).unwrap();
/// let b = election_scope("93fe…-uid-of-cluster-b", "kube-system/plndr-cp-lock", &vips).unwrap();
/// assert_ne!(a, b);
/// ```
pub fn election_scope(
    cluster: &str,
    lock: &str,
    vips: &[IpAddr],
) -> Result<ElectionId, ScopeError> {
    if cluster.is_empty() {
        return Err(ScopeError::NoCluster);
    }
    if lock.is_empty() {
        return Err(ScopeError::NoLock);
    }
    let mut sorted = vips.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.is_empty() {
        return Err(ScopeError::NoVip);
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(DOMAIN);
    for part in [cluster, lock] {
        // usize always fits u64 on the platforms vip builds for.
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    ctx.update(&(sorted.len() as u64).to_be_bytes());
    for vip in &sorted {
        match vip {
            IpAddr::V4(v4) => {
                ctx.update(&[4]);
                ctx.update(&v4.octets());
            }
            IpAddr::V6(v6) => {
                ctx.update(&[6]);
                ctx.update(&v6.octets());
            }
        }
    }
    let digest = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    Ok(ElectionId(u64::from_be_bytes(first)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LOCK: &str = "kube-system/plndr-cp-lock";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn golden_value() {
        // Pinned: every node of a cluster, whatever its version, must
        // derive the same id, so the encoding may never change silently.
        let id = election_scope(
            "0b7a6c1e-2f7d-4d5e-9a51-3c2b1d0e9f88",
            LOCK,
            &[ip("198.18.0.10")],
        )
        .unwrap();
        assert_eq!(id, ElectionId(GOLDEN));
    }

    // Computed independently (Python hashlib) from the encoding above.
    const GOLDEN: u64 = 0xd5a1_f3ed_3eb2_43a7;

    #[test]
    fn two_default_clusters_differ() {
        let vips = [ip("198.18.0.10")];
        let a = election_scope("uid-a", LOCK, &vips).unwrap();
        let b = election_scope("uid-b", LOCK, &vips).unwrap();
        assert_ne!(a, b);
        // Nor does either match the version-1 id of the lock name.
        assert_ne!(a, ElectionId::of(LOCK));
    }

    #[test]
    fn lock_and_vips_are_bound() {
        let vips = [ip("198.18.0.10")];
        let base = election_scope("uid", LOCK, &vips).unwrap();
        assert_ne!(
            base,
            election_scope("uid", "kube-system/other", &vips).unwrap()
        );
        assert_ne!(
            base,
            election_scope("uid", LOCK, &[ip("198.18.0.11")]).unwrap()
        );
        // Length prefixes: moving a byte between fields changes the id.
        assert_ne!(
            election_scope("uidk", "ube-system/x", &vips).unwrap(),
            election_scope("uid", "kube-system/x", &vips).unwrap()
        );
    }

    #[test]
    fn vip_order_and_duplicates_do_not_matter() {
        let a = election_scope("uid", LOCK, &[ip("198.18.0.10"), ip("2001:db8::10")]).unwrap();
        let b = election_scope(
            "uid",
            LOCK,
            &[ip("2001:db8::10"), ip("198.18.0.10"), ip("2001:db8::10")],
        )
        .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn refusals() {
        let vips = [ip("198.18.0.10")];
        assert_eq!(election_scope("", LOCK, &vips), Err(ScopeError::NoCluster));
        assert_eq!(election_scope("uid", "", &vips), Err(ScopeError::NoLock));
        assert_eq!(election_scope("uid", LOCK, &[]), Err(ScopeError::NoVip));
        assert_eq!(
            ScopeError::NoCluster.to_string(),
            "heartbeat election scope: the cluster identity is empty"
        );
    }

    proptest! {
        #[test]
        fn distinct_clusters_never_share_an_id(a in "[a-z0-9-]{1,40}", b in "[a-z0-9-]{1,40}", v in any::<[u8; 4]>()) {
            prop_assume!(a != b);
            let vips = [IpAddr::from(v)];
            prop_assert_ne!(
                election_scope(&a, LOCK, &vips).unwrap(),
                election_scope(&b, LOCK, &vips).unwrap()
            );
        }
    }
}
