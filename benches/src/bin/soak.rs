//! The soak (issue 12): many elections in one process, its RSS sampled on
//! the way, to show that vip's memory stays flat.
//!
//! Two vip-core controllers, the same parts as `vip manager` but for the
//! segment (the in-memory network of `vip_core::testutil`), hand the VIP
//! back and forth in real time: the leader's health probe is made to fail,
//! it steps down (removes the VIP, releases the lease), the other node
//! takes over; the old leader's probe recovers, and the next election
//! starts from the new leader. One such hand-over is one election.
//!
//! ```text
//! cargo build --release -p vip-benches --bin soak
//! target/release/soak --elections 10000 --sample-every 500 --backend stand-in
//! ```
//!
//! Options: `--elections N` (default 10000), `--sample-every N` (default
//! 500), `--backend memory|stand-in` (the leader record: vip-core's
//! in-memory store, or vip-lease's Lease backend, the one `vip manager`
//! uses, against the API-server stand-in in this process, over TLS; default
//! `stand-in`), `--report FILE` (the Markdown table, also printed). No root
//! needed. The records the test parts keep (the store's write log, the
//! network's action log) are cleared before every sample, so that what
//! grows, if anything, is the code under test.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use vip_core::testutil::{MemoryHealth, MemoryNetwork, MemoryStore};
use vip_core::{
    Controller, ControllerConfig, ControllerHandle, HealthPolicy, InterfaceSelector, LockBackend,
    MacAddr, NodeIdentity, Role, Status, Timings, VipSpec,
};
use vip_lease::{ClusterAccess, LeaseBackend, LeaseConfig, LeaseName};
use vip_testkit::lab::ProcStats;
use vip_testkit::testapi::{TestApi, TestApiConfig};

const NODES: [&str; 2] = ["soak-a", "soak-b"];
/// Bound on one hand-over (or one recovery); far above what it takes.
const STEP_LIMIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    StandIn,
}

#[derive(Debug)]
struct Args {
    elections: usize,
    every: usize,
    backend: Backend,
    report: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        elections: 10_000,
        every: 500,
        backend: Backend::StandIn,
        report: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--elections" => {
                a.elections = value("--elections")?
                    .parse()
                    .map_err(|_| "--elections: a whole number")?
            }
            "--sample-every" => {
                a.every = value("--sample-every")?
                    .parse()
                    .map_err(|_| "--sample-every: a whole number")?
            }
            "--backend" => {
                a.backend = match value("--backend")?.as_str() {
                    "memory" => Backend::Memory,
                    "stand-in" => Backend::StandIn,
                    other => {
                        return Err(format!(
                            "--backend: unknown backend {other:?}, expected memory or stand-in"
                        ));
                    }
                }
            }
            "--report" => a.report = Some(PathBuf::from(value("--report")?)),
            "-h" | "--help" => {
                return Err("usage: soak [--elections N] [--sample-every N] [--backend memory|stand-in] [--report FILE]".into());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.elections == 0 || a.every == 0 {
        return Err("--elections and --sample-every must be at least 1".into());
    }
    Ok(a)
}

/// One sample of this process after `elections` elections.
#[derive(Debug, Clone, Copy)]
struct Sample {
    elections: usize,
    elapsed: Duration,
    stats: ProcStats,
}

struct Node {
    handle: ControllerHandle,
    status: watch::Receiver<Status>,
    health: MemoryHealth,
}

/// Fast timings, so that an election takes milliseconds of real time:
/// lease 3 s (it never expires here: every hand-over is a release), renew
/// deadline 1 s, retry 500 ms; health checked every 10 ms, one failure
/// makes unhealthy, one success healthy again.
fn config(name: &str) -> Result<ControllerConfig, String> {
    let timings = Timings::new(
        Duration::from_secs(3),
        Duration::from_secs(1),
        Duration::from_millis(500),
    )
    .map_err(|e| e.to_string())?;
    let mut c = ControllerConfig::new(
        NodeIdentity::new(name).map_err(|e| e.to_string())?,
        "198.18.0.100"
            .parse::<VipSpec>()
            .map_err(|e| e.to_string())?,
        InterfaceSelector::named("eth0").map_err(|e| e.to_string())?,
        timings,
    );
    c.health = HealthPolicy {
        period: Duration::from_millis(10),
        timeout: Duration::from_millis(5),
        failure_threshold: 1,
        success_threshold: 1,
    };
    c.kernel_lag = Duration::ZERO;
    Ok(c)
}

/// The leader-record backends of the two nodes, and what must outlive them.
async fn backends(
    kind: Backend,
) -> Result<
    (
        Vec<Arc<dyn LockBackend>>,
        Option<MemoryStore>,
        Option<TestApi>,
    ),
    String,
> {
    match kind {
        Backend::Memory => {
            let store = MemoryStore::new();
            let b = NODES
                .iter()
                .map(|n| Arc::new(store.client(n)) as Arc<dyn LockBackend>)
                .collect();
            Ok((b, Some(store), None))
        }
        Backend::StandIn => {
            let api = TestApi::start(TestApiConfig::default().listeners(1).tokens(NODES))
                .await
                .map_err(|e| format!("starting the stand-in: {e}"))?;
            let mut b: Vec<Arc<dyn LockBackend>> = Vec::new();
            for n in NODES {
                let path = api.kubeconfig_for(0, n).map_err(|e| e.to_string())?;
                let access = ClusterAccess::from_kubeconfig_file(&path, None)
                    .await
                    .map_err(|e| e.to_string())?;
                let lease =
                    LeaseConfig::for_retry_period(LeaseName::default(), Duration::from_millis(500));
                b.push(Arc::new(
                    LeaseBackend::new(&access, lease).map_err(|e| e.to_string())?,
                ));
            }
            Ok((b, None, Some(api)))
        }
    }
}

async fn wait_for(
    node: &mut Node,
    what: &str,
    f: impl FnMut(&Status) -> bool,
) -> Result<(), String> {
    match tokio::time::timeout(STEP_LIMIT, node.status.wait_for(f)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(format!("{what}: the controller stopped")),
        Err(_) => Err(format!("{what}: not within {STEP_LIMIT:?}")),
    }
}

async fn run(args: &Args) -> Result<String, String> {
    let (backends, store, _api) = backends(args.backend).await?;
    let net = MemoryNetwork::new(Duration::ZERO);
    let mut nodes = Vec::new();
    for (i, (name, backend)) in NODES.iter().zip(backends).enumerate() {
        let (addresses, announcer) = net.node(name, MacAddr([2, 0, 0, 0, 0, i as u8 + 1]));
        let health = MemoryHealth::new();
        let handle = Controller::new(
            config(name)?,
            backend,
            Arc::new(addresses),
            Arc::new(announcer),
        )
        .with_health(Arc::new(health.clone()))
        .spawn()
        .map_err(|e| e.to_string())?;
        let status = handle.status();
        nodes.push(Node {
            handle,
            status,
            health,
        });
    }
    let vip = "198.18.0.100".parse().map_err(|_| "the VIP")?;
    // The first leader.
    let first = vip_testkit::lab::until(STEP_LIMIT, Duration::from_millis(10), || {
        nodes
            .iter()
            .position(|n| n.status.borrow().role == Role::Leader)
    })
    .await
    .ok_or("no first leader")?;
    let me = std::process::id();
    let sample = |elections: usize, t0: Instant| -> Result<Sample, String> {
        if let Some(s) = &store {
            s.clear_log();
        }
        net.clear_history();
        Ok(Sample {
            elections,
            elapsed: t0.elapsed(),
            stats: ProcStats::read(me).ok_or("/proc/self unreadable")?,
        })
    };
    let t0 = Instant::now();
    let mut samples = vec![sample(0, t0)?];
    let mut leader = first;
    for n in 1..=args.elections {
        let next = 1 - leader;
        nodes[leader].health.set_healthy(false);
        wait_for(&mut nodes[next], &format!("election {n}: takeover"), |s| {
            s.role == Role::Leader
        })
        .await?;
        wait_for(
            &mut nodes[leader],
            &format!("election {n}: step-down"),
            |s| s.role == Role::Follower && !s.addresses_present,
        )
        .await?;
        nodes[leader].health.set_healthy(true);
        wait_for(
            &mut nodes[leader],
            &format!("election {n}: recovery"),
            |s| s.healthy == Some(true),
        )
        .await?;
        let holders = net.holders(vip);
        if holders != [NODES[next]] {
            return Err(format!(
                "election {n}: the VIP is on {holders:?}, expected {}",
                NODES[next]
            ));
        }
        leader = next;
        if n % args.every == 0 || n == args.elections {
            let s = sample(n, t0)?;
            eprintln!(
                "  {n} elections, {:.0} s: RSS {} KiB ({} anonymous, {} file-backed)",
                s.elapsed.as_secs_f64(),
                s.stats.rss_kib,
                s.stats.rss_anon_kib,
                s.stats.rss_file_kib
            );
            samples.push(s);
        }
    }
    for node in nodes {
        let _ = node.handle.shutdown().await;
    }
    Ok(report(args, &samples))
}

fn report(args: &Args, samples: &[Sample]) -> String {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut s = String::new();
    let backend = match args.backend {
        Backend::Memory => "vip-core's in-memory store",
        Backend::StandIn => "vip-lease's Lease backend against the in-process API-server stand-in",
    };
    let _ = writeln!(
        s,
        "{} elections (health-forced hand-overs between two controllers; leader record: {backend}), RSS of the process every {}:\n",
        args.elections, args.every
    );
    let _ = writeln!(
        s,
        "| elections | time s | RSS MiB | anonymous MiB | file-backed MiB |\n|---|---|---|---|---|"
    );
    for x in samples {
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} |",
            x.elections,
            x.elapsed.as_secs_f64(),
            mib(x.stats.rss_kib),
            mib(x.stats.rss_anon_kib),
            mib(x.stats.rss_file_kib)
        );
    }
    // After the first sample past zero: the warm-up (connections, first
    // allocations) is done by then.
    let warm = samples.get(1).unwrap_or(&samples[0]);
    let last = samples[samples.len() - 1];
    let max = samples.iter().map(|x| x.stats.rss_kib).max().unwrap_or(0);
    let max_anon = samples
        .iter()
        .map(|x| x.stats.rss_anon_kib)
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        s,
        "\nRSS at {} elections {:.2} MiB ({:.2} anonymous), at {} {:.2} MiB ({:.2} anonymous): {:+.2} MiB anonymous; max {:.2} MiB ({:.2} anonymous). {:.1} elections/s.",
        warm.elections,
        mib(warm.stats.rss_kib),
        mib(warm.stats.rss_anon_kib),
        last.elections,
        mib(last.stats.rss_kib),
        mib(last.stats.rss_anon_kib),
        (last.stats.rss_anon_kib as f64 - warm.stats.rss_anon_kib as f64) / 1024.0,
        mib(max),
        mib(max_anon),
        last.elections as f64 / last.elapsed.as_secs_f64().max(1e-9)
    );
    s
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = vip_benches::runtime().block_on(run(&args));
    vip_benches::finish("soak", result, args.report.as_deref())
}
