//! `vip status`'s heartbeat window: verified heartbeats heard per sender,
//! and the frames dropped per sender and reason (bad code, other election,
//! unknown key, old version, malformed) while listening.
//!
//! `vip status` verifies as the daemon does: with the cluster's key (the
//! pre-shared key file when set, else the Secret next to the Lease, read
//! but never created) and the election scope of the Lease's uid, the lock
//! and the VIPs.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;
use vip_arp::SignedHeartbeats;
use vip_core::{DropCounts, DropKind, DropSnapshot, HeartbeatKeySource, Interface, election_scope};
use vip_lease::{ClusterAccess, LeaseHeartbeatKeys, LeaseName};

use crate::config::Settings;

/// How long `vip status` listens for heartbeats.
pub const HEARTBEAT_WINDOW: Duration = Duration::from_millis(300);

/// One sender of verified heartbeats, as heard by `vip status`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PeerBeats {
    /// The holder the heartbeats name.
    pub holder: String,
    /// The sender's MAC.
    pub mac: String,
    /// The term of the last one.
    pub term: u32,
    /// Its sequence number.
    pub sequence: u64,
    /// The sender's interval, milliseconds.
    pub interval_ms: u64,
    /// How many were heard in the window.
    pub heard: u64,
    /// Milliseconds since the last one, at the end of the window.
    pub last_ms_ago: u64,
}

/// One sender of dropped heartbeat frames.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PeerDrops {
    /// The sender's MAC (`others` for senders past the table's bound).
    pub mac: String,
    /// Frames dropped, by reason (only reasons that occurred).
    pub dropped: BTreeMap<&'static str, u64>,
}

/// The non-zero reasons of `counts`.
fn reasons(counts: &DropCounts) -> BTreeMap<&'static str, u64> {
    DropKind::ALL
        .iter()
        .filter(|k| counts.get(**k) > 0)
        .map(|k| (k.label(), counts.get(*k)))
        .collect()
}

/// One row per sender that had frames dropped.
pub fn drop_rows(snapshot: &DropSnapshot) -> Vec<PeerDrops> {
    let mut rows: Vec<PeerDrops> = snapshot
        .by_sender
        .iter()
        .map(|(mac, counts)| PeerDrops {
            mac: mac.to_string(),
            dropped: reasons(counts),
        })
        .collect();
    if snapshot.others.total() > 0 {
        rows.push(PeerDrops {
            mac: "others".into(),
            dropped: reasons(&snapshot.others),
        });
    }
    rows
}

/// What was heard in the window.
#[derive(Debug, Default)]
pub struct Heard {
    /// Verified beats, per sender.
    pub beats: Vec<PeerBeats>,
    /// Dropped frames, per sender.
    pub drops: Vec<PeerDrops>,
}

/// Read the key and the scope, then listen on `iface` for the window.
pub async fn listen(
    s: &Settings,
    access: &ClusterAccess,
    lease: LeaseName,
    iface: &Interface,
) -> Result<Heard, String> {
    let keys = LeaseHeartbeatKeys::new(access, lease.clone(), Duration::from_secs(3))
        .map_err(|e| e.to_string())?;
    let key = match &s.heartbeat_key_file {
        Some(path) => crate::config::heartbeat_key::load(path).map_err(|e| e.to_string())?,
        None => keys
            .existing_key()
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "no heartbeat key yet (secret {}): no node has fast failover on",
                    keys.secret()
                )
            })?,
    };
    let cluster = keys.cluster_identity().await.map_err(|e| e.to_string())?;
    let vips: Vec<IpAddr> = s.vips.addresses().iter().map(|v| v.addr()).collect();
    let election =
        election_scope(&cluster, &lease.to_string(), &vips).map_err(|e| e.to_string())?;
    let channel = SignedHeartbeats::new();
    let mut sub = channel
        .subscribe(iface, &key, election)
        .map_err(|e| e.to_string())?;
    let end = tokio::time::Instant::now() + HEARTBEAT_WINDOW;
    let mut peers: Vec<(PeerBeats, tokio::time::Instant)> = vec![];
    while let Ok(Some(h)) = tokio::time::timeout_at(end, sub.beats.recv()).await {
        let mac = h.from.to_string();
        let now = tokio::time::Instant::now();
        let beat = PeerBeats {
            holder: h.beat.holder.clone(),
            mac: mac.clone(),
            term: h.beat.term,
            sequence: h.beat.sequence,
            interval_ms: h.beat.interval.as_millis() as u64,
            heard: 1,
            last_ms_ago: 0,
        };
        let full = peers.len() >= 64;
        match peers
            .iter_mut()
            .find(|(p, _)| p.mac == mac && p.holder == beat.holder)
        {
            Some((p, at)) => {
                let heard = p.heard + 1;
                *p = PeerBeats { heard, ..beat };
                *at = now;
            }
            None if !full => peers.push((beat, now)),
            None => {}
        }
    }
    let now = tokio::time::Instant::now();
    Ok(Heard {
        beats: peers
            .into_iter()
            .map(|(mut p, at)| {
                p.last_ms_ago = now.saturating_duration_since(at).as_millis() as u64;
                p
            })
            .collect(),
        drops: drop_rows(&sub.drops.snapshot()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vip_core::{HeartbeatDrops, MacAddr};

    #[test]
    fn drops_are_listed_per_sender_with_their_reasons() {
        let drops = HeartbeatDrops::default();
        let forger = MacAddr([2, 0, 0, 0, 0, 0x66]);
        for _ in 0..3 {
            drops.count(forger, DropKind::BadCode);
        }
        drops.count(forger, DropKind::OldVersion);
        let rows = drop_rows(&drops.snapshot());
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].mac, "02:00:00:00:00:66");
        assert_eq!(
            rows[0].dropped,
            BTreeMap::from([("bad_code", 3), ("old_version", 1)])
        );
    }
}
