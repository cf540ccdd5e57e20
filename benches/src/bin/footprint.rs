//! The footprint of a `vip` binary (issue 12): its size, its start-up time
//! and the idle memory of a leader and a follower, measured the same way
//! for every build so that steps can be compared.
//!
//! ```text
//! sudo target/release/footprint --label "baseline" target/x86_64-unknown-linux-musl/release/vip
//! ```
//!
//! The binary is the argument (else `VIP_BIN`, else `vip` next to this
//! program). It runs in the namespace lab of `vip_testkit::lab` (three nodes
//! and the API-server stand-in, as `vip demo` and the failover benchmark):
//!
//! - **size**: the file and, when `strip` is installed, a stripped copy;
//! - **start-up**: `vip manager` started alone on node 1 with a free lease,
//!   from the spawn to the stand-in applying its Lease write (the
//!   acquisition), `--starts N` times (default 5), each stopped with SIGTERM
//!   (which releases the lease) before the next;
//! - **idle RSS**: then all three nodes run; after `--idle SECONDS` (default
//!   20) the leader's and a follower's `VmRSS`, anonymous and file-backed
//!   (`/proc/<pid>/status`), and their CPU over that window (the
//!   scheduler's exact run time of all their threads, not tick samples);
//! - **the floor**: then, for the same window, a bare sender on node 1's
//!   interface, a thread that sleeps to the next 10 ms deadline and sends
//!   one well-formed heartbeat frame of an election nobody runs, and
//!   nothing else: what any 10 ms heartbeat that the peers listen to costs
//!   on this machine and this lab (a veth's transmit runs the bridge and
//!   the peers' receive, up to waking their readers, in the sender's
//!   context), against which the leader's CPU is read;
//! - **keepalived**: then, with the managers stopped, keepalived VRRPv3 at
//!   `advert_int 0.01` (100 adverts a second, as vip's 10 ms heartbeat
//!   sends 100 frames) on the same three nodes, when `keepalived` is
//!   installed (`--no-keepalived` skips it): its master's and a backup's
//!   CPU over the same window, both of each node's processes (the parent
//!   and its VRRP child), with the RSS of the VRRP child.
//!
//! `--label TEXT` names the row, `--report FILE` writes the Markdown (also
//! printed). Root needed (namespaces).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use vip_core::{ElectionId, Heartbeat, Interface};
use vip_testkit::lab::{KeepalivedConfig, Lab, ProcStats, VIP, percent_of_core, thread_cpu_ns};

#[derive(Debug)]
struct Args {
    exe: Option<PathBuf>,
    label: String,
    idle: Duration,
    starts: usize,
    report: Option<PathBuf>,
    keepalived: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        exe: None,
        label: String::new(),
        idle: Duration::from_secs(20),
        starts: 5,
        report: None,
        keepalived: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--label" => a.label = value("--label")?,
            "--idle" => {
                a.idle = Duration::from_secs(
                    value("--idle")?
                        .parse()
                        .map_err(|_| "--idle: whole seconds")?,
                )
            }
            "--starts" => {
                a.starts = value("--starts")?
                    .parse()
                    .map_err(|_| "--starts: a whole number")?
            }
            "--report" => a.report = Some(PathBuf::from(value("--report")?)),
            "--no-keepalived" => a.keepalived = false,
            "-h" | "--help" => {
                return Err("usage: footprint [--label TEXT] [--idle SECONDS] [--starts N] [--report FILE] [--no-keepalived] [VIP_BINARY]".into());
            }
            other if other.starts_with('-') => return Err(format!("unknown argument {other}")),
            other => a.exe = Some(PathBuf::from(other)),
        }
    }
    if a.starts == 0 {
        return Err("--starts must be at least 1".into());
    }
    Ok(a)
}

fn exe(args: &Args) -> Result<PathBuf, String> {
    vip_benches::vip_exe(args.exe.clone())
}

/// The file's size and, when `strip` is installed, a stripped copy's.
fn sizes(exe: &Path) -> Result<(u64, Option<u64>), String> {
    let size = std::fs::metadata(exe)
        .map_err(|e| format!("{}: {e}", exe.display()))?
        .len();
    let copy = std::env::temp_dir().join(format!("vip-footprint-{}", std::process::id()));
    let stripped = std::process::Command::new("strip")
        .arg("-o")
        .arg(&copy)
        .arg(exe)
        .status()
        .ok()
        .filter(|s| s.success())
        .and_then(|_| std::fs::metadata(&copy).ok())
        .map(|m| m.len());
    let _ = std::fs::remove_file(&copy);
    Ok((size, stripped))
}

/// Spawn → the stand-in applies node 1's acquisition, `starts` times.
async fn startups(lab: &mut Lab, starts: usize) -> Result<Vec<Duration>, String> {
    let name = lab.nodes[0].name.clone();
    let mut out = Vec::with_capacity(starts);
    for n in 0..starts {
        if lab.holder().is_some() {
            return Err("the lease is held before a start-up".into());
        }
        let seen = lab.lease_writes().len();
        let t = Instant::now();
        lab.start(0).map_err(|e| e.to_string())?;
        let w = vip_testkit::lab::until(Duration::from_secs(30), Duration::from_millis(1), || {
            lab.lease_writes()
                .into_iter()
                .skip(seen)
                // The log is filled by a task: skip a late record of the
                // previous run's renewals.
                .find(|w| w.holder == name && w.at >= t)
        })
        .await
        .ok_or_else(|| format!("start-up {}: no acquisition within 30 s", n + 1))?;
        out.push(w.at.saturating_duration_since(t));
        lab.signal(0, libc::SIGTERM).map_err(|e| e.to_string())?;
        lab.wait(0, Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?;
        vip_testkit::lab::until(Duration::from_secs(10), Duration::from_millis(10), || {
            lab.holder().is_none().then_some(())
        })
        .await
        .ok_or("the lease was not released on SIGTERM")?;
    }
    Ok(out)
}

struct Idle {
    seconds: f64,
    leader: (ProcStats, ProcStats),
    follower: (ProcStats, ProcStats),
    /// The bare sender's CPU over the same window, in percent of a core.
    floor: f64,
}

async fn idle(lab: &mut Lab, window: Duration) -> Result<Idle, String> {
    lab.start(0).map_err(|e| e.to_string())?;
    let v4 = IpAddr::V4(VIP);
    vip_testkit::lab::until(Duration::from_secs(30), Duration::from_millis(20), || {
        (lab.holder().as_deref() == Some(lab.nodes[0].name.as_str()) && lab.has_address(0, v4))
            .then_some(())
    })
    .await
    .ok_or("node 1 did not lead within 30 s")?;
    for i in 1..lab.nodes.len() {
        lab.start(i).map_err(|e| e.to_string())?;
    }
    // Past the takeover burst and the followers' start and watch set-up.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = |i: usize| lab.pid(i).ok_or("a manager is not running");
    let (lp, fp) = (pid(0)?, pid(1)?);
    let stats = |p: u32| ProcStats::read(p).ok_or("a manager exited");
    let (l0, f0) = (stats(lp)?, stats(fp)?);
    let t = Instant::now();
    tokio::time::sleep(window).await;
    let (l1, f1) = (stats(lp)?, stats(fp)?);
    let seconds = t.elapsed().as_secs_f64();
    if lab.holder().as_deref() != Some(lab.nodes[0].name.as_str()) {
        return Err("the leader changed during the idle window".into());
    }
    let floor = floor(lab, window)?;
    Ok(Idle {
        seconds,
        leader: (l0, l1),
        follower: (f0, f1),
        floor,
    })
}

/// The bare sender of the module doc, on node 1's interface for `window`:
/// its thread's CPU in percent of a core.
fn floor(lab: &Lab, window: Duration) -> Result<f64, String> {
    let host = &lab.segment.hosts[0];
    let interface = host.interface().map_err(|e| e.to_string())?;
    host.ns
        // Blocking on the namespace's own thread, which runs nothing else.
        .run(window + Duration::from_secs(10), move || async move {
            bare_sender(interface, window)
        })
        .map_err(|e| e.to_string())?
}

fn bare_sender(interface: Interface, window: Duration) -> Result<f64, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    use vip_arp::wire::heartbeat::{ETHERTYPE_HEARTBEAT, HeartbeatRepr, MAX_FRAME_LEN};
    let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))
        .map_err(|e| format!("a packet socket: {e}"))?;
    let to = vip_arp::packet_sockaddr(interface.index, ETHERTYPE_HEARTBEAT);
    // A well-formed heartbeat of an election nobody runs: the peers'
    // sockets take it (their filter admits it), their readers parse and
    // drop it, as they would a real one.
    let beat = Heartbeat {
        election: ElectionId::of("footprint/floor"),
        holder: "floor".into(),
        term: 1,
        sequence: 0,
        version: 1,
        interval: Duration::from_millis(10),
    };
    let mut frame = [0u8; MAX_FRAME_LEN];
    let len = HeartbeatRepr::new(interface.mac, &beat)
        .and_then(|r| r.emit(&mut frame))
        .map_err(|e| format!("building the floor's frame: {e}"))?;
    let cpu = || thread_cpu_ns().ok_or("reading /proc/thread-self/schedstat");
    let start_cpu = cpu()?;
    let start = Instant::now();
    let mut next = start;
    while start.elapsed() < window {
        next += beat.interval;
        let now = Instant::now();
        if next <= now {
            // Late (a stall): resume the rhythm from now, as vip's sender
            // does, rather than send a burst to catch up.
            next = now;
        }
        std::thread::sleep(next - now);
        socket
            .send_to(&frame[..len], &to)
            .map_err(|e| format!("sendto: {e}"))?;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(percent_of_core(cpu()? - start_cpu, seconds))
}

/// keepalived's master and a backup, idle: both of a node's processes.
struct KeepalivedIdle {
    seconds: f64,
    master: (ProcStats, ProcStats),
    backup: (ProcStats, ProcStats),
    /// The VRRP child's RSS of the master, KiB.
    master_vrrp_rss_kib: u64,
}

/// The sum of keepalived's two processes on node `i` (the parent and the
/// VRRP child named in its pid file).
fn keepalived_stats(lab: &Lab, i: usize) -> Result<(ProcStats, u64), String> {
    let file = lab.dir().join(format!("keepalived-{i}-vrrp.pid"));
    let child: u32 = std::fs::read_to_string(&file)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .trim()
        .parse()
        .map_err(|_| format!("{}: not a pid", file.display()))?;
    let parent = lab.keepalived_pid(i).ok_or("keepalived is not running")?;
    let (p, c) = (
        ProcStats::read(parent).ok_or("keepalived exited")?,
        ProcStats::read(child).ok_or("keepalived's VRRP child exited")?,
    );
    Ok((
        ProcStats {
            rss_kib: p.rss_kib + c.rss_kib,
            rss_anon_kib: p.rss_anon_kib + c.rss_anon_kib,
            rss_file_kib: p.rss_file_kib + c.rss_file_kib,
            cpu_ns: p.cpu_ns + c.cpu_ns,
        },
        c.rss_kib,
    ))
}

/// keepalived VRRPv3 at `advert_int 0.01` on every node (the managers
/// stopped first), idle for `window`.
async fn keepalived_idle(lab: &mut Lab, window: Duration) -> Result<KeepalivedIdle, String> {
    lab.stop_all(Duration::from_secs(5)).await;
    let config = KeepalivedConfig {
        version: 3,
        advert_int: 0.01,
    };
    for i in 0..lab.nodes.len() {
        lab.start_keepalived(i, &config)
            .map_err(|e| e.to_string())?;
    }
    let master = vip_testkit::lab::until(
        Duration::from_secs(30),
        Duration::from_millis(20),
        || match lab.vip_holders()[..] {
            [i] => Some(i),
            _ => None,
        },
    )
    .await
    .ok_or("keepalived: no single master within 30 s")?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let backup = (0..lab.nodes.len())
        .find(|&i| i != master)
        .ok_or("no backup")?;
    let (m0, _) = keepalived_stats(lab, master)?;
    let (b0, _) = keepalived_stats(lab, backup)?;
    let t = Instant::now();
    tokio::time::sleep(window).await;
    let (m1, master_vrrp_rss_kib) = keepalived_stats(lab, master)?;
    let (b1, _) = keepalived_stats(lab, backup)?;
    let seconds = t.elapsed().as_secs_f64();
    if lab.vip_holders() != [master] {
        return Err("keepalived's master changed during the idle window".into());
    }
    for i in 0..lab.nodes.len() {
        let _ = lab.signal_keepalived(i, libc::SIGTERM);
    }
    for i in 0..lab.nodes.len() {
        let _ = lab.wait_keepalived(i, Duration::from_secs(5)).await;
    }
    Ok(KeepalivedIdle {
        seconds,
        master: (m0, m1),
        backup: (b0, b1),
        master_vrrp_rss_kib,
    })
}

fn report(
    args: &Args,
    exe: &Path,
    sizes: (u64, Option<u64>),
    starts: &[Duration],
    idle: &Idle,
    keepalived: Option<&KeepalivedIdle>,
) -> String {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut sorted = starts.to_vec();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    let cpu = |p: &(ProcStats, ProcStats)| ProcStats::cpu_percent(&p.0, &p.1, idle.seconds);
    let stripped = sizes.1.unwrap_or(sizes.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {} bytes ({:.2} MiB){}; start-up to the acquisition (median of {}): {:.0} ms (all: {}); idle {:.0} s.\n",
        exe.display(),
        sizes.0,
        sizes.0 as f64 / 1048576.0,
        match sizes.1 {
            Some(st) if st != sizes.0 => format!(", stripped {st} bytes"),
            Some(_) => ", stripped".into(),
            None => ", `strip` not installed".into(),
        },
        starts.len(),
        ms(median),
        starts
            .iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect::<Vec<_>>()
            .join(", "),
        idle.seconds
    );
    let _ = writeln!(
        s,
        "| step | stripped size | leader RSS (anonymous / file-backed) | follower RSS (anonymous / file-backed) | CPU leader / follower | bare 10 ms sender (floor) | start-up |\n|---|---|---|---|---|---|---|"
    );
    let (l, f) = (idle.leader.1, idle.follower.1);
    let _ = writeln!(
        s,
        "| {} | {:.2} MB ({stripped} bytes) | {:.1} MiB ({:.1} / {:.1}) | {:.1} MiB ({:.1} / {:.1}) | {:.2} % / {:.2} % | {:.2} % | {:.0} ms |",
        if args.label.is_empty() {
            "–"
        } else {
            &args.label
        },
        stripped as f64 / 1e6,
        mib(l.rss_kib),
        mib(l.rss_anon_kib),
        mib(l.rss_file_kib),
        mib(f.rss_kib),
        mib(f.rss_anon_kib),
        mib(f.rss_file_kib),
        cpu(&idle.leader),
        cpu(&idle.follower),
        idle.floor,
        ms(median),
    );
    if let Some(k) = keepalived {
        let cpu = |p: &(ProcStats, ProcStats)| ProcStats::cpu_percent(&p.0, &p.1, k.seconds);
        let _ = writeln!(
            s,
            "\nkeepalived VRRPv3 advert_int 0.01 on the same nodes, idle {:.0} s (both processes of a node): master CPU {:.2} %, backup {:.2} %; master RSS {:.1} MiB (its VRRP child {:.1} MiB).",
            k.seconds,
            cpu(&k.master),
            cpu(&k.backup),
            mib(k.master.1.rss_kib),
            mib(k.master_vrrp_rss_kib),
        );
    }
    s
}

async fn run(args: &Args) -> Result<String, String> {
    let exe = exe(args)?;
    let sizes = sizes(&exe)?;
    eprintln!("building the lab: 3 nodes; vip = {}", exe.display());
    let mut lab = Lab::new(3, exe.clone()).await.map_err(|e| e.to_string())?;
    let result = async {
        let starts = startups(&mut lab, args.starts).await?;
        eprintln!("start-ups: {starts:?}; idle for {:?}", args.idle);
        let idle = idle(&mut lab, args.idle).await?;
        let keepalived = if args.keepalived && keepalived_installed() {
            eprintln!(
                "keepalived VRRPv3 advert_int 0.01, idle for {:?}",
                args.idle
            );
            Some(keepalived_idle(&mut lab, args.idle).await?)
        } else {
            eprintln!("keepalived: not measured (not installed, or --no-keepalived)");
            None
        };
        Ok::<_, String>(report(
            args,
            &exe,
            sizes,
            &starts,
            &idle,
            keepalived.as_ref(),
        ))
    }
    .await;
    if result.is_err() {
        eprintln!("{}", lab.log_tails(30));
    }
    lab.stop_all(Duration::from_secs(5)).await;
    drop(lab);
    result
}

fn keepalived_installed() -> bool {
    std::process::Command::new("keepalived")
        .arg("--version")
        .output()
        .is_ok()
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if !vip_testkit::netns::require_root("the footprint benchmark") {
        return ExitCode::from(2);
    }
    let result = vip_benches::runtime().block_on(run(&args));
    vip_benches::finish("footprint", result, args.report.as_deref())
}
