//! One fault trial: the faults, what runs the VIP, one measured trial and
//! the trials of one implementation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vip_testkit::lab::{KeepalivedConfig, Lab, Observations, Ping, answer_gap, lost_time};
use vip_testkit::testapi::Fault;

use crate::args::Args;
use crate::report::ms;
use crate::{API_PROBE, PING, PROBE, V4, svg};

/// The faults, for vip and (the first two) for keepalived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// SIGTERM of the leader's daemon.
    Graceful,
    /// `ip link set eth0 down` on the leader, then SIGKILL of its daemon.
    Crash,
    /// SIGKILL of the leader's daemon alone, its port staying up.
    Kill,
    /// The leader's API requests hang (its token stalls at the stand-in).
    Partition,
    /// The leader's local API server refuses connections.
    LocalApi,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Graceful,
        Kind::Crash,
        Kind::Kill,
        Kind::Partition,
        Kind::LocalApi,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Graceful => "graceful (SIGTERM)",
            Kind::Crash => "crash (port down + SIGKILL)",
            Kind::Kill => "daemon killed (SIGKILL, port up)",
            Kind::Partition => "API partition",
            Kind::LocalApi => "local API death",
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            Kind::Graceful => "graceful",
            Kind::Crash => "crash",
            Kind::Kill => "kill",
            Kind::Partition => "partition",
            Kind::LocalApi => "local-api",
        }
    }
}

/// What runs the VIP.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Impl {
    /// vip with this heartbeat interval (ms; 0: fast failover off).
    Vip(u32),
    /// vip at its defaults, electing through a 3-member etcd (each node's
    /// `127.0.0.1:2379` forwarded to its member) instead of the Lease.
    VipEtcd,
    /// vip at its defaults on the brief's topology: a real kube-apiserver
    /// and etcd member in every node namespace, the Lease in the real API.
    VipRealApi,
    Keepalived(KeepalivedConfig),
}

/// vip's default heartbeat interval.
pub const HEARTBEAT_MS: u32 = 10;

impl Impl {
    pub fn name(self) -> String {
        match self {
            Impl::Vip(HEARTBEAT_MS) => "vip".into(),
            Impl::Vip(0) => "vip, fast failover off".into(),
            Impl::Vip(ms) => format!("vip, vip_heartbeat_ms={ms}"),
            Impl::VipEtcd => "vip, etcd election".into(),
            Impl::VipRealApi => "vip, real kube-apiservers".into(),
            Impl::Keepalived(c) => {
                format!("keepalived VRRPv{} advert_int {}", c.version, c.advert_int)
            }
        }
    }

    pub fn slug(self) -> String {
        match self {
            Impl::Vip(HEARTBEAT_MS) => "vip".into(),
            Impl::Vip(ms) => format!("vip-hb{ms}"),
            Impl::VipEtcd => "vip-etcd".into(),
            Impl::VipRealApi => "vip-real-api".into(),
            Impl::Keepalived(c) if c.advert_int < 0.1 => {
                format!(
                    "keepalived-v{}-{}ms",
                    c.version,
                    (c.advert_int * 1000.0) as u32
                )
            }
            Impl::Keepalived(c) => format!("keepalived-v{}", c.version),
        }
    }
}

/// One trial's measurements.
#[derive(Debug, Clone)]
pub struct Trial {
    /// Longest run of lost client pings (send time of the first lost one to
    /// the next answered one).
    pub lost: Duration,
    /// Longest time with no MAC answering the observer.
    pub silence: Duration,
    /// Time with two MACs answering the observer.
    pub overlap: Duration,
    /// Lease write of the new holder -> its first announcement on the wire.
    pub acquire_to_arp: Option<Duration>,
    /// The crashed node still had the VIP when its port came back.
    pub stale_after_crash: bool,
    /// On real API servers: the longest time no `GET /readyz` through the
    /// VIP was answered (by answer time, see `answer_gap`).
    pub api_outage: Option<Duration>,
}

async fn until<T>(limit: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    vip_testkit::lab::until(limit, Duration::from_millis(20), f).await
}

/// The node holding the VIP alone (and the Lease, for vip).
fn holder_now(lab: &Lab, imp: Impl) -> Option<usize> {
    let holders = lab.vip_holders();
    let [i] = holders[..] else { return None };
    match imp {
        Impl::Vip(_) | Impl::VipEtcd | Impl::VipRealApi => {
            (lab.holder().as_deref() == Some(lab.nodes[i].name.as_str())).then_some(i)
        }
        Impl::Keepalived(_) => Some(i),
    }
}

pub async fn settle(lab: &Lab, imp: Impl, limit: Duration) -> Result<usize, String> {
    until(limit, || holder_now(lab, imp))
        .await
        .ok_or_else(|| format!("{}: no single holder within {limit:?}", imp.name()))
}

/// The MACs answering the last judged round (see `Observer::judged`).
fn answering(o: &Observations) -> Vec<vip_core::MacAddr> {
    o.answers(V4)
        .into_iter()
        .next_back()
        .map(|(_, m)| m)
        .unwrap_or_default()
}

struct Recorded {
    trial: Trial,
    picture: svg::Timeline,
}

async fn trial(lab: &mut Lab, imp: Impl, kind: Kind) -> Result<Recorded, String> {
    let old = settle(lab, imp, Duration::from_secs(30)).await?;
    let old_mac = lab.nodes[old].mac;
    let observer = lab
        .observe(PROBE, Duration::from_secs(90))
        .map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = lab
        .ping(PING, Duration::from_secs(90), stop.clone())
        .map_err(|e| e.to_string())?;
    let api_poller = if imp == Impl::VipRealApi {
        Some(
            lab.poll_api(API_PROBE, Duration::from_secs(120), stop.clone())
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    if answering(&observer.judged()) != [old_mac] {
        return Err(format!(
            "{}: not answered by the holder before the fault",
            imp.name()
        ));
    }
    let mut markers = Vec::new();
    let t0 = Instant::now();
    match (imp, kind) {
        (Impl::Vip(_) | Impl::VipEtcd | Impl::VipRealApi, Kind::Graceful) => {
            lab.signal(old, libc::SIGTERM).map_err(|e| e.to_string())?
        }
        (Impl::Vip(_) | Impl::VipEtcd, Kind::Crash) => {
            lab.set_link(old, false).map_err(|e| e.to_string())?;
            lab.kill(old).await.map_err(|e| e.to_string())?;
        }
        (Impl::VipRealApi, Kind::Crash) => {
            // The whole node: its port, its vip, its API server and its
            // etcd member.
            lab.set_link(old, false).map_err(|e| e.to_string())?;
            lab.kill(old).await.map_err(|e| e.to_string())?;
            let real = lab.real_api().ok_or("no real API servers")?;
            real.kill(old).map_err(|e| e.to_string())?;
            real.etcd().kill(old).map_err(|e| e.to_string())?;
        }
        (Impl::Vip(_) | Impl::VipEtcd | Impl::VipRealApi, Kind::Kill) => {
            lab.kill(old).await.map_err(|e| e.to_string())?
        }
        (Impl::VipRealApi, Kind::LocalApi) => lab
            .real_api()
            .ok_or("no real API servers")?
            .kill(old)
            .map_err(|e| e.to_string())?,
        (Impl::VipRealApi, Kind::Partition) => {
            return Err("the real API servers have no partition fault".into());
        }
        (Impl::Vip(_), Kind::Partition) => {
            let name = lab.nodes[old].name.clone();
            lab.api().set_token_fault(&name, Some(Fault::Stall));
        }
        (Impl::Vip(_), Kind::LocalApi) => lab.api().listener(old).set_fault(Some(Fault::Refuse)),
        (Impl::Keepalived(_), Kind::Graceful) => lab
            .signal_keepalived(old, libc::SIGTERM)
            .map_err(|e| e.to_string())?,
        (Impl::Keepalived(_), Kind::Crash) => {
            lab.set_link(old, false).map_err(|e| e.to_string())?;
            lab.signal_keepalived(old, libc::SIGKILL)
                .map_err(|e| e.to_string())?;
        }
        (Impl::Keepalived(_), Kind::Kill) => lab
            .signal_keepalived(old, libc::SIGKILL)
            .map_err(|e| e.to_string())?,
        (Impl::Keepalived(_), _) => return Err("keepalived has no API to fault".into()),
        (Impl::VipEtcd, _) => {
            return Err("the etcd election has no stand-in API to fault".into());
        }
    }
    markers.push((t0, format!("{} on {}", kind.name(), lab.nodes[old].name)));
    // Wait for another node to answer alone.
    let new = until(Duration::from_secs(30), || {
        // A new owner answers (alone, or with the old one when the old
        // node's kernel keeps the VIP: an overlap, measured below).
        let a = answering(&observer.judged());
        a.into_iter()
            .find(|&m| m != old_mac)
            .and_then(|m| lab.node_of_mac(m))
    })
    .await
    .ok_or_else(|| format!("{} {}: no takeover within 30 s", imp.name(), kind.name()))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut stale_after_crash = false;
    if kind == Kind::Crash {
        // The node comes back (rebooted: its port up again, its daemon not
        // yet restarted) after the lease duration: does its kernel still
        // answer for the VIP? (vip's has expired by its lifetime;
        // keepalived's never does.) A port back within the lifetime of a
        // dead daemon's VIP is a daemon death plus a link flap, which fast
        // failover cannot fence (docs/architecture.md).
        tokio::time::sleep(Duration::from_secs(4)).await;
        let up = Instant::now();
        lab.set_link(old, true).map_err(|e| e.to_string())?;
        markers.push((up, format!("{}'s port up again", lab.nodes[old].name)));
        stale_after_crash = lab.has_address(old, V4);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if kind == Kind::Kill {
        stale_after_crash = lab.has_address(old, V4);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let end = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let pings: Vec<Ping> = pinger.join().map_err(|e| e.to_string())?;
    let api_probes = match api_poller {
        Some(p) => Some(p.join().map_err(|e| e.to_string())?),
        None => None,
    };
    let seen = observer.finish().map_err(|e| e.to_string())?;

    // Restore: the old node's daemon back as a follower.
    match (imp, kind) {
        (Impl::Vip(_) | Impl::VipEtcd | Impl::VipRealApi, Kind::Graceful) => {
            lab.wait(old, Duration::from_secs(5))
                .await
                .map_err(|e| e.to_string())?;
            lab.start(old).map_err(|e| e.to_string())?;
        }
        (Impl::Vip(_) | Impl::VipEtcd | Impl::VipRealApi, Kind::Kill)
        | (Impl::Vip(_) | Impl::VipEtcd, Kind::Crash) => {
            lab.start(old).map_err(|e| e.to_string())?
        }
        (Impl::VipRealApi, Kind::Crash) => {
            // The node reboots: its etcd member and API server come back
            // (bounded waits), then its vip.
            let real = lab.real_api().ok_or("no real API servers")?;
            real.etcd().restart(old).await.map_err(|e| e.to_string())?;
            real.restart(old).await.map_err(|e| e.to_string())?;
            lab.start(old).map_err(|e| e.to_string())?
        }
        (Impl::VipRealApi, Kind::LocalApi) => lab
            .real_api()
            .ok_or("no real API servers")?
            .restart(old)
            .await
            .map_err(|e| e.to_string())?,
        (Impl::VipRealApi, Kind::Partition) => {}
        (Impl::Vip(_), Kind::Partition) => {
            let name = lab.nodes[old].name.clone();
            lab.api().set_token_fault(&name, None);
        }
        (Impl::Vip(_), Kind::LocalApi) => lab.api().listener(old).set_fault(None),
        (Impl::VipEtcd, Kind::Partition | Kind::LocalApi) => {}
        (Impl::Keepalived(c), _) => {
            lab.wait_keepalived(old, Duration::from_secs(5))
                .await
                .map_err(|e| e.to_string())?;
            if lab.has_address(old, V4) {
                // keepalived left it behind; a new keepalived would find
                // it. Remove it as an operator would have to.
                lab.del_address(old, V4).map_err(|e| e.to_string())?;
            }
            lab.start_keepalived(old, &c).map_err(|e| e.to_string())?;
        }
    }

    if std::env::var_os("FAILOVER_DEBUG").is_some() {
        let mut run: Option<(Instant, usize)> = None;
        for p in pings.iter().filter(|p| p.sent >= t0) {
            match (p.answered.is_some(), run) {
                (false, None) => run = Some((p.sent, 1)),
                (false, Some((s, n))) => run = Some((s, n + 1)),
                (true, Some((s, n))) => {
                    eprintln!(
                        "    lost {n} pings from +{:?} to +{:?}",
                        s - t0,
                        p.sent - t0
                    );
                    run = None;
                }
                (true, None) => {}
            }
        }
        for st in seen.timeline_between(V4, t0 - Duration::from_millis(500), end) {
            eprintln!(
                "    +{:?}..+{:?} {:?}",
                st.from.saturating_duration_since(t0),
                st.to.saturating_duration_since(t0),
                st.macs
            );
        }
    }
    // Measurements.
    let window_from = t0 - Duration::from_millis(500);
    let lost = lost_time(&pings, t0, end);
    let silence = seen.longest_silence(V4, t0, end);
    let api_outage = api_probes
        .as_deref()
        .map(|p| answer_gap(p, t0, end).unwrap_or(end - t0));
    let overlap = seen
        .timeline_between(V4, window_from, end)
        .iter()
        .filter(|s| s.macs.len() > 1)
        .map(|s| s.to - s.from)
        .sum();
    let acquire_to_arp = match imp {
        Impl::Vip(_) => {
            let name = &lab.nodes[new].name;
            lab.lease_writes()
                .into_iter()
                .find(|w| w.at >= t0 && &w.holder == name)
                .and_then(|w| {
                    let mac = lab.nodes[new].mac;
                    seen.announcements(V4, mac, w.at, end)
                        .first()
                        .map(|a| *a - w.at)
                })
        }
        // No Lease writes to time: the record is written in etcd, or in
        // a real API server's etcd.
        Impl::VipEtcd | Impl::VipRealApi | Impl::Keepalived(_) => None,
    };
    let rows = lab
        .nodes
        .iter()
        .map(|n| svg::Row {
            label: format!("{} {}", n.name, n.mac),
            spans: seen
                .timeline_between(V4, window_from, end)
                .iter()
                .filter(|s| s.macs.contains(&n.mac))
                .map(|s| (s.from, s.to))
                .collect(),
        })
        .collect();
    let picture = svg::Timeline {
        title: format!(
            "{}: {} — client loss {:.0} ms, overlap {:.0} ms",
            imp.name(),
            kind.name(),
            ms(lost),
            ms(overlap)
        ),
        t0,
        from: window_from,
        to: end,
        rows,
        pings: pings
            .iter()
            .filter(|p| p.sent >= window_from)
            .map(|p| (p.sent, p.answered.is_some()))
            .collect(),
        markers,
    };
    Ok(Recorded {
        trial: Trial {
            lost,
            silence,
            overlap,
            acquire_to_arp,
            stale_after_crash,
            api_outage,
        },
        picture,
    })
}

pub type Results = BTreeMap<(String, Kind), Vec<Trial>>;

/// The successful renewals of the running managers
/// (`vip_renewal_duration_seconds`): how many, and their total round trip.
#[derive(Debug, Clone, Copy, Default)]
pub struct Renewals {
    pub count: f64,
    pub seconds: f64,
}

/// The renewals of every manager running now, each since its start.
pub fn renewals(lab: &Lab) -> Renewals {
    let mut r = Renewals::default();
    for i in (0..lab.nodes.len()).filter(|&i| lab.pid(i).is_some()) {
        let read = |name: &str| lab.metric(i, name).ok().flatten().unwrap_or(0.0);
        r.count += read("vip_renewal_duration_seconds_count");
        r.seconds += read("vip_renewal_duration_seconds_sum");
    }
    r
}

pub async fn run_trials(
    lab: &mut Lab,
    imp: Impl,
    kinds: &[Kind],
    args: &Args,
    results: &mut Results,
) -> Result<(), String> {
    for &kind in kinds {
        for n in 0..args.trials {
            let r = trial(lab, imp, kind).await?;
            eprintln!(
                "  {} {} #{}: lost {:.0} ms, silence {:.0} ms, overlap {:.0} ms{}",
                imp.name(),
                kind.name(),
                n + 1,
                ms(r.trial.lost),
                ms(r.trial.silence),
                ms(r.trial.overlap),
                r.trial
                    .acquire_to_arp
                    .map(|d| format!(", acquisition -> first ARP {:.2} ms", ms(d)))
                    .unwrap_or_default()
                    + &r.trial
                        .api_outage
                        .map(|d| format!(", API through the VIP down {:.0} ms", ms(d)))
                        .unwrap_or_default()
            );
            if n == 0
                && let Some(dir) = &args.svg_dir
            {
                let path = dir.join(format!("failover-{}-{}.svg", imp.slug(), kind.slug()));
                std::fs::write(&path, svg::render(&r.picture))
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
            }
            results.entry((imp.name(), kind)).or_default().push(r.trial);
            // Let the restored daemon join before the next fault.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
    Ok(())
}
