//! The failover benchmark (issue 6): real `vip manager` processes in the
//! namespace lab of `vip_testkit::lab`, faulted over and over, measured by an
//! ARP observer (who answers for the VIP, every 10 ms) and a client
//! pinging the VIP every 5 ms; then the same trials with keepalived on the
//! same lab, when it is installed. See `docs/benchmarks.md`.
//!
//! ```text
//! cargo build --release -p vip-bin -p vip-benches --bin vip --bin failover
//! sudo target/release/failover --trials 10 --svg-dir docs --report target/failover.md
//! ```
//!
//! Options: `--trials N` (per kind, default 10), `--kinds LIST` (of
//! `graceful,crash,kill,partition,local-api`, default all; `none`: only the
//! idle figures), `--svg-dir DIR` (timeline
//! pictures of the first trial of each kind; none when absent),
//! `--report FILE` (the Markdown tables, also printed), `--idle SECONDS`
//! (the steady-state window, default 30), `--no-keepalived`. `VIP_BIN`
//! names the `vip` binary (default: `vip` next to this program).

mod svg;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vip_testkit::lab::{KeepalivedConfig, Lab, Observations, Ping, ProcStats, VIP, lost_time};
use vip_testkit::testapi::Fault;

const PROBE: Duration = Duration::from_millis(10);
const PING: Duration = Duration::from_millis(5);
const V4: IpAddr = IpAddr::V4(VIP);

#[derive(Debug, Clone)]
struct Args {
    trials: usize,
    svg_dir: Option<PathBuf>,
    report: Option<PathBuf>,
    idle: Duration,
    keepalived: bool,
    kinds: Vec<Kind>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        trials: 10,
        svg_dir: None,
        report: None,
        idle: Duration::from_secs(30),
        keepalived: true,
        kinds: Kind::ALL.to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--trials" => {
                a.trials = value("--trials")?
                    .parse()
                    .map_err(|_| "--trials: a number")?
            }
            "--svg-dir" => a.svg_dir = Some(PathBuf::from(value("--svg-dir")?)),
            "--report" => a.report = Some(PathBuf::from(value("--report")?)),
            "--idle" => {
                a.idle = Duration::from_secs(
                    value("--idle")?
                        .parse()
                        .map_err(|_| "--idle: whole seconds")?,
                )
            }
            "--no-keepalived" => a.keepalived = false,
            "--kinds" => {
                let v = value("--kinds")?;
                a.kinds = v
                    .split(',')
                    .filter(|k| *k != "none")
                    .map(|k| {
                        Kind::ALL
                            .into_iter()
                            .find(|x| x.slug() == k)
                            .ok_or(format!("--kinds: unknown kind {k}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "-h" | "--help" => {
                return Err(
                    "usage: failover [--trials N] [--kinds graceful,crash,kill,partition,local-api|none] [--svg-dir DIR] [--report FILE] [--idle SECONDS] [--no-keepalived]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.trials == 0 {
        return Err("--trials must be at least 1".into());
    }
    Ok(a)
}

/// The faults, for vip and (the first two) for keepalived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
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
    const ALL: [Kind; 5] = [
        Kind::Graceful,
        Kind::Crash,
        Kind::Kill,
        Kind::Partition,
        Kind::LocalApi,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Graceful => "graceful (SIGTERM)",
            Kind::Crash => "crash (port down + SIGKILL)",
            Kind::Kill => "daemon killed (SIGKILL, port up)",
            Kind::Partition => "API partition",
            Kind::LocalApi => "local API death",
        }
    }

    fn slug(self) -> &'static str {
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
enum Impl {
    /// vip with this heartbeat interval (ms; 0: fast failover off).
    Vip(u32),
    Keepalived(KeepalivedConfig),
}

/// vip's default heartbeat interval.
const HEARTBEAT_MS: u32 = 10;

impl Impl {
    fn name(self) -> String {
        match self {
            Impl::Vip(HEARTBEAT_MS) => "vip".into(),
            Impl::Vip(0) => "vip, fast failover off".into(),
            Impl::Vip(ms) => format!("vip, vip_heartbeat_ms={ms}"),
            Impl::Keepalived(c) => {
                format!("keepalived VRRPv{} advert_int {}", c.version, c.advert_int)
            }
        }
    }

    fn slug(self) -> String {
        match self {
            Impl::Vip(HEARTBEAT_MS) => "vip".into(),
            Impl::Vip(ms) => format!("vip-hb{ms}"),
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
struct Trial {
    /// Longest run of lost client pings (send time of the first lost one to
    /// the next answered one).
    lost: Duration,
    /// Longest time with no MAC answering the observer.
    silence: Duration,
    /// Time with two MACs answering the observer.
    overlap: Duration,
    /// Lease write of the new holder -> its first announcement on the wire.
    acquire_to_arp: Option<Duration>,
    /// The crashed node still had the VIP when its port came back.
    stale_after_crash: bool,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn quantiles(mut v: Vec<Duration>) -> Option<[Duration; 4]> {
    if v.is_empty() {
        return None;
    }
    v.sort();
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    Some([v[0], q(0.5), q(0.95), v[v.len() - 1]])
}

fn fmt_q(q: Option<[Duration; 4]>) -> String {
    match q {
        None => "–".into(),
        Some(q) => format!(
            "{:.0} / {:.0} / {:.0} / {:.0}",
            ms(q[0]),
            ms(q[1]),
            ms(q[2]),
            ms(q[3])
        ),
    }
}

async fn until<T>(limit: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    vip_testkit::lab::until(limit, Duration::from_millis(20), f).await
}

/// The node holding the VIP alone (and the Lease, for vip).
fn holder_now(lab: &Lab, imp: Impl) -> Option<usize> {
    let holders = lab.vip_holders();
    let [i] = holders[..] else { return None };
    match imp {
        Impl::Vip(_) => (lab.holder().as_deref() == Some(lab.nodes[i].name.as_str())).then_some(i),
        Impl::Keepalived(_) => Some(i),
    }
}

async fn settle(lab: &Lab, imp: Impl, limit: Duration) -> Result<usize, String> {
    until(limit, || holder_now(lab, imp))
        .await
        .ok_or_else(|| format!("{}: no single holder within {limit:?}", imp.name()))
}

/// The MACs answering the last round of the observer, when it is recent.
fn answering(o: &Observations) -> Vec<vip_core::MacAddr> {
    o.answers(V4)
        .into_iter()
        .rev()
        .nth(2) // a round whose answers have surely arrived
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
    tokio::time::sleep(Duration::from_secs(1)).await;
    if answering(&observer.snapshot()) != [old_mac] {
        return Err(format!(
            "{}: not answered by the holder before the fault",
            imp.name()
        ));
    }
    let mut markers = Vec::new();
    let t0 = Instant::now();
    match (imp, kind) {
        (Impl::Vip(_), Kind::Graceful) => {
            lab.signal(old, libc::SIGTERM).map_err(|e| e.to_string())?
        }
        (Impl::Vip(_), Kind::Crash) => {
            lab.set_link(old, false).map_err(|e| e.to_string())?;
            lab.kill(old).await.map_err(|e| e.to_string())?;
        }
        (Impl::Vip(_), Kind::Kill) => lab.kill(old).await.map_err(|e| e.to_string())?,
        (Impl::Vip(_), Kind::Partition) => {
            let name = lab.nodes[old].name.clone();
            lab.api.set_token_fault(&name, Some(Fault::Stall));
        }
        (Impl::Vip(_), Kind::LocalApi) => lab.api.listener(old).set_fault(Some(Fault::Refuse)),
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
    }
    markers.push((t0, format!("{} on {}", kind.name(), lab.nodes[old].name)));
    // Wait for another node to answer alone.
    let new = until(Duration::from_secs(30), || {
        // A new owner answers (alone, or with the old one when the old
        // node's kernel keeps the VIP: an overlap, measured below).
        let a = answering(&observer.snapshot());
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
    let seen = observer.finish().map_err(|e| e.to_string())?;

    // Restore: the old node's daemon back as a follower.
    match (imp, kind) {
        (Impl::Vip(_), Kind::Graceful) => {
            lab.wait(old, Duration::from_secs(5))
                .await
                .map_err(|e| e.to_string())?;
            lab.start(old).map_err(|e| e.to_string())?;
        }
        (Impl::Vip(_), Kind::Crash | Kind::Kill) => lab.start(old).map_err(|e| e.to_string())?,
        (Impl::Vip(_), Kind::Partition) => {
            let name = lab.nodes[old].name.clone();
            lab.api.set_token_fault(&name, None);
        }
        (Impl::Vip(_), Kind::LocalApi) => lab.api.listener(old).set_fault(None),
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
        Impl::Keepalived(_) => None,
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
        },
        picture,
    })
}

struct Idle {
    seconds: f64,
    requests: u64,
    by_verb: BTreeMap<String, u64>,
    leader: (ProcStats, ProcStats),
    follower: (ProcStats, ProcStats),
}

async fn idle(lab: &Lab, window: Duration) -> Result<Idle, String> {
    let leader = settle(lab, Impl::Vip(HEARTBEAT_MS), Duration::from_secs(30)).await?;
    let follower = (0..lab.nodes.len())
        .find(|&i| i != leader)
        .ok_or("no follower")?;
    // Past any takeover burst and watch set-up.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = |i: usize| lab.pid(i).ok_or("a manager is not running");
    let (lp, fp) = (pid(leader)?, pid(follower)?);
    let stats = |p: u32| ProcStats::read(p).ok_or("process gone");
    let before = lab.api.counters();
    let (l0, f0) = (stats(lp)?, stats(fp)?);
    let t = Instant::now();
    tokio::time::sleep(window).await;
    let after = lab.api.counters();
    let (l1, f1) = (stats(lp)?, stats(fp)?);
    let seconds = t.elapsed().as_secs_f64();
    let mut by_verb = BTreeMap::new();
    let mut requests = 0;
    for (k, n) in &after.entries {
        let d = n - before.entries.get(k).copied().unwrap_or(0);
        requests += d;
        if d > 0 {
            *by_verb.entry(format!("{} {}", k.2, k.3)).or_default() += d;
        }
    }
    if settle(lab, Impl::Vip(HEARTBEAT_MS), Duration::from_secs(1)).await? != leader {
        return Err("the leader changed during the idle window".into());
    }
    Ok(Idle {
        seconds,
        requests,
        by_verb,
        leader: (l0, l1),
        follower: (f0, f1),
    })
}

fn keepalived_version() -> Option<String> {
    let out = std::process::Command::new("keepalived")
        .arg("--version")
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().next().map(|l| l.trim().to_string())
}

type Results = BTreeMap<(String, Kind), Vec<Trial>>;

async fn run_trials(
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

fn report(
    args: &Args,
    results: &Results,
    idle: &Idle,
    size: Option<u64>,
    ka: Option<&str>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} trials per kind; client pings every {} ms, observer ARP requests every {} ms; vip defaults (lease 5 s, renew deadline 3 s, retry 1 s).\n",
        args.trials,
        PING.as_millis(),
        PROBE.as_millis()
    );
    let _ = writeln!(
        s,
        "| implementation | fault | client-visible outage ms (min / median / p95 / max) | observer: no owner ms (min / median / p95 / max) | overlap ms (total, max) | old node still had the VIP after the takeover |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for ((imp, kind), trials) in results {
        let overlap_total: Duration = trials.iter().map(|t| t.overlap).sum();
        let overlap_max = trials.iter().map(|t| t.overlap).max().unwrap_or_default();
        let stale = if matches!(kind, Kind::Crash | Kind::Kill) {
            format!(
                "{} of {}",
                trials.iter().filter(|t| t.stale_after_crash).count(),
                trials.len()
            )
        } else {
            "–".into()
        };
        let _ = writeln!(
            s,
            "| {imp} | {} | {} | {} | {:.0}, {:.0} | {stale} |",
            kind.name(),
            fmt_q(quantiles(trials.iter().map(|t| t.lost).collect())),
            fmt_q(quantiles(trials.iter().map(|t| t.silence).collect())),
            ms(overlap_total),
            ms(overlap_max),
        );
    }
    // Ratios of the medians.
    let median = |imp: &str, kind: Kind| {
        results
            .get(&(imp.to_string(), kind))
            .and_then(|t| quantiles(t.iter().map(|t| t.lost).collect()))
            .map(|q| q[1])
    };
    if let Some(ka) = ka {
        let _ = writeln!(
            s,
            "\nkeepalived: {ka}. Ratio of median client-visible outages, vip / keepalived:\n"
        );
        let _ = writeln!(
            s,
            "| fault | vs VRRPv2 advert_int 1 | vs VRRPv3 advert_int 0.1 |"
        );
        let _ = writeln!(s, "|---|---|---|");
        for kind in [Kind::Graceful, Kind::Crash, Kind::Kill] {
            let v = median("vip", kind);
            let cell = |other: &str| match (v, median(other, kind)) {
                (Some(a), Some(b)) if !b.is_zero() => {
                    format!("{:.2}", a.as_secs_f64() / b.as_secs_f64())
                }
                (Some(_), Some(_)) => {
                    "n/a: keepalived lost 0 ms (the old node kept answering)".into()
                }
                _ => "–".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                kind.name(),
                cell("keepalived VRRPv2 advert_int 1"),
                cell("keepalived VRRPv3 advert_int 0.1")
            );
        }
    }
    let acq: Vec<Duration> = results
        .iter()
        .filter(|((imp, _), _)| imp == "vip")
        .flat_map(|(_, t)| t.iter().filter_map(|t| t.acquire_to_arp))
        .collect();
    let _ = writeln!(
        s,
        "\nLease acquisition (the stand-in applies the new holder's write) → first announcement on the wire (the observer reads it), over {} vip takeovers: {} ms (min / median / p95 / max; sub-millisecond values round to 0: {}).",
        acq.len(),
        fmt_q(quantiles(acq.clone())),
        quantiles(acq)
            .map(|q| format!(
                "{:.2} / {:.2} / {:.2} / {:.2}",
                ms(q[0]),
                ms(q[1]),
                ms(q[2]),
                ms(q[3])
            ))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "\nSteady state, 3 nodes, {:.0} s: {} API requests = {:.2} requests/s ({}).",
        idle.seconds,
        idle.requests,
        idle.requests as f64 / idle.seconds,
        idle.by_verb
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let cpu = |p: &(ProcStats, ProcStats)| {
        (p.1.cpu_ticks - p.0.cpu_ticks) as f64 / ProcStats::TICKS_PER_SECOND as f64 / idle.seconds
            * 100.0
    };
    let _ = writeln!(
        s,
        "\n| idle process | RSS (VmRSS) | of which anonymous / file-backed | CPU over the window |\n|---|---|---|---|\n| leader | {:.1} MiB | {:.1} / {:.1} MiB | {:.2} % |\n| follower | {:.1} MiB | {:.1} / {:.1} MiB | {:.2} % |",
        idle.leader.1.rss_kib as f64 / 1024.0,
        idle.leader.1.rss_anon_kib as f64 / 1024.0,
        idle.leader.1.rss_file_kib as f64 / 1024.0,
        cpu(&idle.leader),
        idle.follower.1.rss_kib as f64 / 1024.0,
        idle.follower.1.rss_anon_kib as f64 / 1024.0,
        idle.follower.1.rss_file_kib as f64 / 1024.0,
        cpu(&idle.follower)
    );
    if let Some(size) = size {
        let _ = writeln!(
            s,
            "\nThe `vip` binary measured: {size} bytes ({:.2} MiB).",
            size as f64 / 1024.0 / 1024.0
        );
    }
    s
}

async fn run(args: Args) -> Result<String, String> {
    let exe = vip_benches::vip_exe()?;
    let size = std::fs::metadata(&exe).ok().map(|m| m.len());
    let ka = if args.keepalived {
        keepalived_version()
    } else {
        None
    };
    if args.keepalived && ka.is_none() {
        eprintln!("keepalived is not installed (apt-get install keepalived): vip only");
    }
    if let Some(dir) = &args.svg_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    eprintln!(
        "building the lab: 3 nodes, a client, an observer; vip = {}",
        exe.display()
    );
    let mut lab = Lab::new(3, exe).await.map_err(|e| e.to_string())?;
    let result = async {
        for i in 0..3 {
            lab.start(i).map_err(|e| e.to_string())?;
        }
        eprintln!("idle leader and followers for {:?}", args.idle);
        let idle = idle(&lab, args.idle).await?;
        let mut results = Results::new();
        run_trials(
            &mut lab,
            Impl::Vip(HEARTBEAT_MS),
            &args.kinds,
            &args,
            &mut results,
        )
        .await?;
        lab.stop_all(Duration::from_secs(5)).await;
        // Fast failover at 5 ms heartbeats, against keepalived's fastest.
        let fast_kinds: Vec<Kind> = args
            .kinds
            .iter()
            .copied()
            .filter(|k| matches!(k, Kind::Graceful | Kind::Crash | Kind::Kill))
            .collect();
        if !fast_kinds.is_empty() {
            eprintln!("vip with vip_heartbeat_ms=5");
            lab.env.insert("vip_heartbeat_ms".into(), "5".into());
            for i in 0..3 {
                lab.start(i).map_err(|e| e.to_string())?;
            }
            run_trials(&mut lab, Impl::Vip(5), &fast_kinds, &args, &mut results).await?;
            lab.stop_all(Duration::from_secs(5)).await;
            lab.env.remove("vip_heartbeat_ms");
        }
        if ka.is_some() {
            for config in [
                KeepalivedConfig {
                    version: 2,
                    advert_int: 1.0,
                },
                KeepalivedConfig {
                    version: 3,
                    advert_int: 0.1,
                },
                KeepalivedConfig {
                    version: 3,
                    advert_int: 0.01,
                },
            ] {
                eprintln!(
                    "keepalived VRRPv{} advert_int {}",
                    config.version, config.advert_int
                );
                for i in 0..3 {
                    lab.start_keepalived(i, &config)
                        .map_err(|e| e.to_string())?;
                }
                run_trials(
                    &mut lab,
                    Impl::Keepalived(config),
                    &args
                        .kinds
                        .iter()
                        .copied()
                        .filter(|k| matches!(k, Kind::Graceful | Kind::Crash | Kind::Kill))
                        .collect::<Vec<_>>(),
                    &args,
                    &mut results,
                )
                .await?;
                for i in 0..3 {
                    let _ = lab.signal_keepalived(i, libc::SIGTERM);
                }
                for i in 0..3 {
                    let _ = lab.wait_keepalived(i, Duration::from_secs(5)).await;
                    if lab.has_address(i, V4) {
                        let _ = lab.del_address(i, V4);
                    }
                }
            }
        }
        Ok::<_, String>(report(&args, &results, &idle, size, ka.as_deref()))
    }
    .await;
    if result.is_err() {
        eprintln!("{}", lab.log_tails(30));
    }
    lab.stop_all(Duration::from_secs(5)).await;
    for i in 0..3 {
        let _ = lab.signal_keepalived(i, libc::SIGKILL);
        let _ = lab.wait_keepalived(i, Duration::from_secs(2)).await;
    }
    drop(lab);
    result
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if !vip_testkit::netns::require_root("the failover benchmark") {
        return ExitCode::from(2);
    }
    let report_path = args.report.clone();
    vip_benches::finish(
        "failover benchmark",
        vip_benches::runtime().block_on(run(args)),
        report_path.as_deref(),
    )
}
