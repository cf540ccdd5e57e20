//! `vip status`: who holds the lease and for how long, whether this node
//! holds the VIP, which MAC answers for it on the segment, the heartbeats
//! heard on the segment (fast failover), and the local API server's
//! health. A table for people, `-o json` for scripts. Read-only.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use vip_arp::{NetlinkAddressManager, PacketAnnouncer};
use vip_core::{AddressManager, Announcer, HealthProbe, LockBackend};
use vip_lease::{
    ClusterAccess, DiscoveryOptions, HealthConfig, LeaseBackend, LeaseConfig, LeaseName,
    ReadyzProbe,
};

use crate::config::Settings;

mod heartbeats;

pub use heartbeats::{HEARTBEAT_WINDOW, PeerBeats, PeerDrops};

/// What `vip status` reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// This node's name.
    pub node: String,
    /// `namespace/name` of the Lease.
    pub lease: String,
    /// The holder (empty: released; `None`: unknown).
    pub holder: Option<String>,
    /// Seconds since the holder last renewed, by this node's clock.
    pub renewed_seconds_ago: Option<f64>,
    /// Holder changes so far.
    pub transitions: Option<u32>,
    /// The interface of the VIP.
    pub interface: Option<String>,
    /// Per VIP.
    pub vips: Vec<VipReport>,
    /// Verified heartbeats heard on the interface during the listening
    /// window, one entry per sender.
    pub heartbeats: Vec<PeerBeats>,
    /// Heartbeat frames dropped during the window (forged, replayed by
    /// another cluster, old version...), one entry per sender.
    pub heartbeat_drops: Vec<PeerDrops>,
    /// How long `vip status` listened for heartbeats.
    pub heartbeat_window_ms: u64,
    /// The local API server's `/readyz`: `ok` or the failure.
    pub local_api: String,
    /// What could not be found out.
    pub errors: Vec<String>,
}

/// One VIP in the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VipReport {
    /// The address.
    pub address: IpAddr,
    /// It is on this node's interface.
    pub held_here: bool,
    /// The MAC that answered a probe for it (this node's when held here).
    pub answered_by: Option<String>,
}

async fn gather(s: &Settings) -> Report {
    let mut r = Report {
        node: s.node_name.to_string(),
        lease: format!("{}/{}", s.lease_namespace, s.lease_name),
        holder: None,
        renewed_seconds_ago: None,
        transitions: None,
        interface: None,
        vips: vec![],
        heartbeats: vec![],
        heartbeat_drops: vec![],
        heartbeat_window_ms: 0,
        local_api: "unknown".into(),
        errors: vec![],
    };
    // The data plane.
    let mut resolved = None;
    match NetlinkAddressManager::new() {
        Ok(m) => match m.resolve(&s.interface, &s.vips).await {
            Ok(iface) => {
                resolved = Some(iface.clone());
                r.interface = Some(iface.name.clone());
                let announcer = PacketAnnouncer::new();
                for vip in s.vips.addresses() {
                    let held_here = m.is_present(&iface, vip).await.unwrap_or(false);
                    let answered_by = if held_here {
                        Some(format!("{} (this node)", iface.mac))
                    } else {
                        match announcer
                            .probe(&iface, vip.addr(), Duration::from_millis(500))
                            .await
                        {
                            Ok(m) => m.map(|m| m.to_string()),
                            Err(e) => {
                                r.errors.push(format!("probing {}: {e}", vip.addr()));
                                None
                            }
                        }
                    };
                    r.vips.push(VipReport {
                        address: vip.addr(),
                        held_here,
                        answered_by,
                    });
                }
            }
            Err(e) => r.errors.push(format!("interface: {e}")),
        },
        Err(e) => r.errors.push(format!("netlink: {e}")),
    }
    // The lease and the local API.
    let lease = match LeaseName::new(&s.lease_namespace, &s.lease_name) {
        Ok(l) => l,
        Err(e) => {
            r.errors.push(e.to_string());
            return r;
        }
    };
    let mut discovery = DiscoveryOptions::from_env(s.kubeconfig.clone());
    discovery.auth_probe = lease.clone();
    let discovery = discovery.control_plane(s.local_api.map_or(s.port, |a| a.port()));
    let access = match ClusterAccess::discover(&discovery).await {
        Ok(a) => a,
        Err(e) => {
            r.errors.push(e.to_string());
            return r;
        }
    };
    match ReadyzProbe::new(&access, HealthConfig::default()) {
        Ok(p) => {
            r.local_api = match p.check().await {
                Ok(()) => "ok".into(),
                Err(e) => e.reason,
            }
        }
        Err(e) => r.errors.push(e.to_string()),
    }
    if let Some(iface) = resolved.filter(|_| s.fast_failover.enabled()) {
        r.heartbeat_window_ms = HEARTBEAT_WINDOW.as_millis() as u64;
        match heartbeats::listen(s, &access, lease.clone(), &iface).await {
            Ok(h) => {
                r.heartbeats = h.beats;
                r.heartbeat_drops = h.drops;
            }
            Err(e) => r.errors.push(format!("listening for heartbeats: {e}")),
        }
    }
    match LeaseBackend::new(
        &access,
        LeaseConfig::for_retry_period(lease, Duration::from_secs(3)),
    ) {
        Ok(b) => match b.get().await {
            Ok(Some(v)) => {
                r.holder = Some(v.record.holder_identity.clone());
                r.transitions = Some(v.record.lease_transitions);
                r.renewed_seconds_ago = v
                    .record
                    .renew_time
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .map(|d| (d.as_secs_f64() * 10.0).round() / 10.0);
            }
            Ok(None) => r.errors.push(format!("no Lease {} yet", r.lease)),
            Err(e) => r.errors.push(format!("reading the Lease: {e}")),
        },
        Err(e) => r.errors.push(e.to_string()),
    }
    r
}

/// The table for people.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let holder = match r.holder.as_deref() {
        None => "unknown".to_string(),
        Some("") => "nobody (released)".to_string(),
        Some(h) if h == r.node => format!("{h} (this node)"),
        Some(h) => h.to_string(),
    };
    let rows: Vec<(&str, String)> = vec![
        ("node", r.node.clone()),
        ("lease", r.lease.clone()),
        ("holder", holder),
        (
            "renewed",
            r.renewed_seconds_ago.map_or("unknown".into(), |s| {
                format!("{s:.1} s ago (by this node's clock)")
            }),
        ),
        (
            "transitions",
            r.transitions.map_or("unknown".into(), |t| t.to_string()),
        ),
        (
            "interface",
            r.interface.clone().unwrap_or_else(|| "unknown".into()),
        ),
        ("local API /readyz", r.local_api.clone()),
    ];
    for (k, v) in rows {
        out.push_str(&format!("{k:<18} {v}\n"));
    }
    for v in &r.vips {
        out.push_str(&format!(
            "{:<18} {} here: {}; answered by: {}\n",
            "vip",
            v.address,
            if v.held_here { "yes" } else { "no" },
            v.answered_by.as_deref().unwrap_or("nobody")
        ));
    }
    if r.heartbeat_window_ms > 0 && r.heartbeats.is_empty() {
        out.push_str(&format!(
            "{:<18} none heard in {} ms (fast failover falls back to lease expiry)\n",
            "heartbeats", r.heartbeat_window_ms
        ));
    }
    for p in &r.heartbeats {
        out.push_str(&format!(
            "{:<18} {} from {}: term {}, seq {}, every {} ms, {} heard, last {} ms ago\n",
            "heartbeats",
            p.holder,
            p.mac,
            p.term,
            p.sequence,
            p.interval_ms,
            p.heard,
            p.last_ms_ago
        ));
    }
    for d in &r.heartbeat_drops {
        let reasons: Vec<String> = d.dropped.iter().map(|(k, n)| format!("{n} {k}")).collect();
        out.push_str(&format!(
            "{:<18} from {}: {}\n",
            "dropped frames",
            d.mac,
            reasons.join(", ")
        ));
    }
    for e in &r.errors {
        out.push_str(&format!("{:<18} {e}\n", "error"));
    }
    out
}

/// `vip status`; `json` for `-o json`. Exit 1 when something could not be
/// found out.
pub async fn run(s: Settings, json: bool) -> ExitCode {
    let r = gather(&s).await;
    if json {
        match serde_json::to_string_pretty(&r) {
            Ok(t) => println!("{t}"),
            Err(e) => {
                eprintln!("vip status: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print!("{}", table(&r));
    }
    if r.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_this_node_and_a_released_lease() {
        let mut r = Report {
            node: "alpha-1".into(),
            lease: "kube-system/plndr-cp-lock".into(),
            holder: Some("alpha-1".into()),
            renewed_seconds_ago: Some(0.4),
            transitions: Some(3),
            interface: Some("end0".into()),
            vips: vec![VipReport {
                address: "192.168.20.140".parse().unwrap(),
                held_here: true,
                answered_by: Some("02:00:00:00:00:01 (this node)".into()),
            }],
            heartbeats: vec![PeerBeats {
                holder: "alpha-1".into(),
                mac: "02:00:00:00:00:01".into(),
                term: 3,
                sequence: 1200,
                interval_ms: 10,
                heard: 30,
                last_ms_ago: 4,
            }],
            heartbeat_drops: vec![PeerDrops {
                mac: "02:00:00:00:00:66".into(),
                dropped: [("bad_code", 500), ("other_election", 2)].into(),
            }],
            heartbeat_window_ms: 300,
            local_api: "ok".into(),
            errors: vec![],
        };
        let t = table(&r);
        assert!(
            t.contains("heartbeats         alpha-1 from 02:00:00:00:00:01: term 3, seq 1200, every 10 ms, 30 heard, last 4 ms ago"),
            "{t}"
        );
        assert!(t.contains("holder             alpha-1 (this node)"), "{t}");
        assert!(
            t.contains("dropped frames     from 02:00:00:00:00:66: 500 bad_code, 2 other_election"),
            "{t}"
        );
        assert!(
            t.contains("192.168.20.140 here: yes; answered by: 02:00:00:00:00:01 (this node)"),
            "{t}"
        );
        r.holder = Some(String::new());
        assert!(table(&r).contains("nobody (released)"));
        let mut quiet = r.clone();
        quiet.heartbeats.clear();
        assert!(table(&quiet).contains("heartbeats         none heard in 300 ms"));
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["vips"][0]["held_here"], true);
        assert_eq!(j["transitions"], 3);
        assert_eq!(j["heartbeat_drops"][0]["dropped"]["bad_code"], 500);
    }
}
