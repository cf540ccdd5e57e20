//! The soak (issue 12): many elections in one process, its RSS sampled on
//! the way, to show that vip's memory stays flat.
//!
//! Two vip-core controllers, the same parts as `vip manager` but for the
//! segment (the in-memory network of `vip_core::testutil`), hand the VIP
//! back and forth: the leader's health probe is made to fail, it steps
//! down (removes the VIP, releases the lease), the other node takes over;
//! the old leader's probe recovers, and the next election starts from the
//! new leader. One such hand-over is one election.
//!
//! ```text
//! cargo build --release -p vip-benches --bin soak
//! target/release/soak --elections 10000 --sample-every 500 --backend memory
//! ```
//!
//! Options: `--elections N` (default 10000), `--sample-every N` (default
//! 500), `--backend memory|stand-in` (the leader record: vip-core's
//! in-memory store, or vip-lease's Lease backend, the one `vip manager`
//! uses, against the API-server stand-in in this process, over TLS; default
//! `stand-in`), `--clock paused|real`, `--hold-ms N` (how long each new
//! leader keeps the VIP before the next election: default 1100 ms with
//! paused time, so that every term renews twice and refreshes the VIP's
//! lifetime; 0 in real time), `--report FILE` (the Markdown table, also
//! printed). No root needed.
//!
//! The clock: with `--backend memory` the soak runs by default on a
//! current-thread tokio runtime with paused time (as vip-core's property
//! tests): whenever every task waits, the clock jumps to the next timer,
//! so an election costs CPU time only and the controllers see exactly the
//! timings they were given, however loaded the machine. `--clock real`
//! runs it in real time on the two-worker runtime of `vip manager`, as
//! the stand-in backend always does (its TLS sockets need real time).
//!
//! Every election is checked: the VIP ends up on the new leader alone
//! (waited for, bounded by 20 s of the soak's clock); never two nodes
//! holding it at the same instant, over every interval of the network's
//! record since the last election (a safety violation, reported as such);
//! with the in-memory store, no VIP added without the adder's own write
//! to the record just before. A failure prints both controllers' status,
//! their last events, the record, the network's actions and, in real
//! time, the largest timer delay seen (a loaded machine's stall). The
//! records the test parts keep (the store's write log, the network's
//! history) are cleared after every election, so that what grows, if
//! anything, is the code under test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use vip_core::testutil::{AddressAction, MemoryHealth, MemoryNetwork, MemoryStore};
use vip_core::{
    Controller, ControllerConfig, ControllerEvent, ControllerHandle, HealthPolicy,
    InterfaceSelector, LockBackend, MacAddr, NodeIdentity, Observer, Role, Status, StepDownReason,
    Timings, VipSpec,
};
use vip_lease::{ClusterAccess, LeaseBackend, LeaseConfig, LeaseName};
use vip_testkit::lab::ProcStats;
use vip_testkit::testapi::{TestApi, TestApiConfig};

/// The heap as the program sees it: bytes and blocks allocated and not
/// yet freed, counted around the system allocator. Unlike RSS it has no
/// page granularity and no allocator slack, so a leak of a few bytes per
/// election shows.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; the
// counters are only read.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const NODES: [&str; 2] = ["soak-a", "soak-b"];
/// Bound on one step of an election (the soak's clock); far above what it
/// takes.
const STEP_LIMIT: Duration = Duration::from_secs(20);
/// How often the final check looks whether the VIP is on the new leader.
const POLL: Duration = Duration::from_millis(1);
/// With paused time: no election completed within this much wall time
/// means that some task spins (the clock cannot advance); give up.
const WATCHDOG: Duration = Duration::from_secs(120);
/// `--hold-ms` with paused time: past two renewals (every 500 ms).
const HOLD_PAUSED: Duration = Duration::from_millis(1100);
/// Events kept per controller for the diagnosis of a failure.
const TRAIL: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    StandIn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clock {
    Paused,
    Real,
}

#[derive(Debug)]
struct Args {
    elections: usize,
    every: usize,
    backend: Backend,
    clock: Clock,
    /// How long each new leader keeps the VIP before the next election.
    hold: Duration,
    report: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        elections: 10_000,
        every: 500,
        backend: Backend::StandIn,
        clock: Clock::Real,
        hold: Duration::ZERO,
        report: None,
    };
    let mut clock = None;
    let mut hold = None;
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
            "--clock" => {
                clock = Some(match value("--clock")?.as_str() {
                    "paused" => Clock::Paused,
                    "real" => Clock::Real,
                    other => {
                        return Err(format!(
                            "--clock: unknown clock {other:?}, expected paused or real"
                        ));
                    }
                })
            }
            "--hold-ms" => {
                hold = Some(Duration::from_millis(
                    value("--hold-ms")?
                        .parse()
                        .map_err(|_| "--hold-ms: a whole number")?,
                ))
            }
            "--report" => a.report = Some(PathBuf::from(value("--report")?)),
            "-h" | "--help" => {
                return Err("usage: soak [--elections N] [--sample-every N] [--backend memory|stand-in] [--clock paused|real] [--hold-ms N] [--report FILE]".into());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.elections == 0 || a.every == 0 {
        return Err("--elections and --sample-every must be at least 1".into());
    }
    a.clock = match (a.backend, clock) {
        (Backend::StandIn, Some(Clock::Paused)) => {
            return Err(
                "--clock paused: the stand-in backend talks TLS over real sockets, it needs real time"
                    .into(),
            );
        }
        (Backend::StandIn, _) => Clock::Real,
        (Backend::Memory, c) => c.unwrap_or(Clock::Paused),
    };
    // With paused time holding costs nothing: two renewals and address
    // refreshes per term. In real time it would halve the elections.
    a.hold = hold.unwrap_or(match a.clock {
        Clock::Paused => HOLD_PAUSED,
        Clock::Real => Duration::ZERO,
    });
    Ok(a)
}

/// One sample of this process after `elections` elections.
#[derive(Debug, Clone, Copy)]
struct Sample {
    elections: usize,
    /// Wall-clock time since the start.
    wall: Duration,
    /// The soak's clock (paused or real) since the start.
    soak: Duration,
    stats: ProcStats,
    /// Live heap bytes and blocks ([`Counting`]).
    heap_bytes: usize,
    heap_blocks: usize,
}

/// The last events of one controller, for the diagnosis of a failure
/// (bounded, so that it does not grow with the soak), and how often it
/// stepped down for another reason than the soak's forced unhealthiness.
#[derive(Debug)]
struct Trail {
    last: Mutex<VecDeque<(Instant, ControllerEvent)>>,
    unforced: AtomicU64,
}

impl Trail {
    fn new() -> Self {
        Self {
            last: Mutex::new(VecDeque::with_capacity(TRAIL)),
            unforced: AtomicU64::new(0),
        }
    }

    fn events(&self) -> Vec<(Instant, ControllerEvent)> {
        let q = self.last.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().cloned().collect()
    }

    /// The last step-down for another reason than unhealthiness since
    /// `since`, if any.
    fn unforced_since(&self, since: Instant) -> Option<(Instant, StepDownReason)> {
        self.events().into_iter().rev().find_map(|(t, e)| match e {
            ControllerEvent::SteppedDown { reason, .. }
                if t >= since && reason != StepDownReason::Unhealthy =>
            {
                Some((t, reason))
            }
            _ => None,
        })
    }
}

impl Observer for Trail {
    fn on_event(&self, event: &ControllerEvent) {
        if let ControllerEvent::SteppedDown { reason, .. } = event
            && *reason != StepDownReason::Unhealthy
            && *reason != StepDownReason::Shutdown
        {
            self.unforced.fetch_add(1, Ordering::Relaxed);
        }
        let mut q = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == TRAIL {
            q.pop_front();
        }
        q.push_back((Instant::now(), event.clone()));
    }
}

/// In real time: how late a 10 ms timer fires at most (a loaded
/// machine's stall of this process), since the last reset.
#[derive(Debug, Default)]
struct Stalls {
    since_reset_us: AtomicU64,
    overall_us: AtomicU64,
}

impl Stalls {
    async fn meter(self: Arc<Self>) {
        const TICK: Duration = Duration::from_millis(10);
        loop {
            let t = Instant::now();
            tokio::time::sleep(TICK).await;
            let late = t.elapsed().saturating_sub(TICK).as_micros() as u64;
            self.since_reset_us.fetch_max(late, Ordering::Relaxed);
            self.overall_us.fetch_max(late, Ordering::Relaxed);
        }
    }

    fn reset(&self) {
        self.since_reset_us.store(0, Ordering::Relaxed);
    }
}

struct Node {
    name: &'static str,
    handle: ControllerHandle,
    status: watch::Receiver<Status>,
    health: MemoryHealth,
    trail: Arc<Trail>,
    backend: Arc<dyn LockBackend>,
}

/// Fast timings, so that an election takes little (soak) time: lease 3 s
/// (it never expires here: every hand-over is a release), renew deadline
/// 1 s, retry 500 ms; health checked every 10 ms, one failure makes
/// unhealthy, one success healthy again.
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

/// What the soak drives and checks.
struct Soak {
    net: MemoryNetwork,
    store: Option<MemoryStore>,
    nodes: Vec<Node>,
    vip: IpAddr,
    /// The start, on the soak's clock.
    t0: Instant,
    stalls: Option<Arc<Stalls>>,
}

impl Soak {
    /// `t` as milliseconds since the start of the soak (its clock).
    fn ms(&self, t: Instant) -> String {
        format!(
            "{:.1} ms",
            t.saturating_duration_since(self.t0).as_secs_f64() * 1e3
        )
    }

    fn opt_ms(&self, t: Option<Instant>) -> String {
        t.map_or("-".into(), |t| self.ms(t))
    }

    /// Everything that tells a slow or failed hand-over from a bug.
    async fn diagnosis(&self, election_start: Instant) -> String {
        let mut s = String::new();
        let now = Instant::now();
        let _ = writeln!(
            s,
            "  now {} (this election began at {}, {:.1} ms ago)",
            self.ms(now),
            self.ms(election_start),
            now.duration_since(election_start).as_secs_f64() * 1e3
        );
        for node in &self.nodes {
            if let Some((t, reason)) = node.trail.unforced_since(election_start) {
                let _ = writeln!(
                    s,
                    "  {} stepped down at {} on its own: {reason} ({reason:?}), not forced by the soak",
                    node.name,
                    self.ms(t)
                );
            }
        }
        if let Some(st) = &self.stalls {
            let _ = writeln!(
                s,
                "  largest delay of a 10 ms timer in this election: {:.1} ms (real time: the machine's stall of this process)",
                st.since_reset_us.load(Ordering::Relaxed) as f64 / 1e3
            );
        }
        for node in &self.nodes {
            let st = node.status.borrow().clone();
            let _ = writeln!(
                s,
                "  {}: role {:?} since {}, holder {:?}, healthy {:?}, VIP present {}, last renewal {}, valid until {}, {:?}",
                node.name,
                st.role,
                self.ms(st.role_since),
                st.holder,
                st.healthy,
                st.addresses_present,
                self.opt_ms(st.last_renewal),
                self.opt_ms(st.valid_until),
                st.counters
            );
        }
        let record = match &self.store {
            Some(store) => Ok(store.current()),
            None => self.nodes[0].backend.get().await.map_err(|e| e.to_string()),
        };
        match record {
            Ok(Some(r)) => {
                let _ = writeln!(
                    s,
                    "  leader record: holder {:?}, version {}, transitions {}",
                    r.record.holder_identity, r.version, r.record.lease_transitions
                );
            }
            Ok(None) => {
                let _ = writeln!(s, "  leader record: none");
            }
            Err(e) => {
                let _ = writeln!(s, "  leader record: unreadable: {e}");
            }
        }
        let _ = writeln!(
            s,
            "  the VIP is on {:?} now; held since the last election:",
            self.net.holders(self.vip)
        );
        for iv in self.net.intervals() {
            let _ = writeln!(
                s,
                "    {} from {} to {}",
                iv.node,
                self.ms(iv.start),
                self.opt_ms(iv.end)
            );
        }
        let _ = writeln!(s, "  address actions since the last election:");
        for a in self.net.actions() {
            let _ = writeln!(
                s,
                "    {} {} {:?} (lifetime {:?})",
                self.ms(a.at),
                a.node,
                a.action,
                a.lifetime
            );
        }
        for node in &self.nodes {
            let _ = writeln!(s, "  the last events of {}:", node.name);
            for (t, e) in node.trail.events() {
                let _ = writeln!(s, "    {} {e:?}", self.ms(t));
            }
        }
        s
    }

    /// Wait (bounded by [`STEP_LIMIT`]) until node `i`'s status satisfies `f`.
    async fn wait_for(
        &self,
        i: usize,
        what: &str,
        election_start: Instant,
        f: impl FnMut(&Status) -> bool,
    ) -> Result<(), String> {
        let mut rx = self.nodes[i].status.clone();
        let why = match tokio::time::timeout(STEP_LIMIT, rx.wait_for(f)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(_)) => "the controller stopped".to_string(),
            Err(_) => format!("not within {STEP_LIMIT:?}"),
        };
        Err(format!(
            "{what} of {}: {why}\n{}",
            self.nodes[i].name,
            self.diagnosis(election_start).await
        ))
    }

    /// Safety, over the network's record since the last check: never two
    /// nodes holding the VIP at the same instant, and (with the in-memory
    /// store) never a VIP added without the adder's own write to the
    /// record before it.
    async fn check_safety(&self, n: usize, election_start: Instant) -> Result<(), String> {
        let far = Instant::now() + Duration::from_secs(3600);
        let iv = self.net.intervals();
        for (i, a) in iv.iter().enumerate() {
            for b in &iv[i + 1..] {
                if a.address != b.address || a.node == b.node {
                    continue;
                }
                let (a_end, b_end) = (a.end.unwrap_or(far), b.end.unwrap_or(far));
                if !(a_end <= b.start || b_end <= a.start) {
                    return Err(format!(
                        "SAFETY VIOLATION: election {n}: {} and {} held the VIP at the same time ({} from {} to {}, {} from {} to {})\n{}",
                        a.node,
                        b.node,
                        a.node,
                        self.ms(a.start),
                        self.opt_ms(a.end),
                        b.node,
                        self.ms(b.start),
                        self.opt_ms(b.end),
                        self.diagnosis(election_start).await
                    ));
                }
            }
        }
        if let Some(store) = &self.store {
            let log = store.log();
            for a in self.net.actions() {
                if a.action != AddressAction::Added {
                    continue;
                }
                let last = log.iter().rfind(|w| w.at <= a.at);
                if last.is_none_or(|w| w.record.holder_identity != a.node) {
                    return Err(format!(
                        "SAFETY VIOLATION: election {n}: {} added the VIP at {}, but the last write to the record before was {last:?}\n{}",
                        a.node,
                        self.ms(a.at),
                        self.diagnosis(election_start).await
                    ));
                }
            }
        }
        Ok(())
    }

    /// Wait (bounded by [`STEP_LIMIT`]) until the VIP is on `NODES[next]`
    /// alone. Two holders at any look fail at once, as a safety
    /// violation; a timeout is a failed (or slow) hand-over.
    async fn vip_on(&self, n: usize, next: usize, election_start: Instant) -> Result<(), String> {
        let deadline = Instant::now() + STEP_LIMIT;
        loop {
            let holders = self.net.holders(self.vip);
            if holders.len() > 1 {
                return Err(format!(
                    "SAFETY VIOLATION: election {n}: the VIP is on {holders:?} at once\n{}",
                    self.diagnosis(election_start).await
                ));
            }
            if holders == [NODES[next]] {
                return Ok(());
            }
            // The new leader gave up on its own (in real time: a stall of
            // this process past its renew deadline): it will not get the
            // VIP back by waiting.
            if let Some((t, reason)) = self.nodes[next].trail.unforced_since(election_start) {
                return Err(format!(
                    "election {n}: the VIP is on {holders:?}, not on {}: it stepped down on its own at {} ({reason}); never on two nodes at any look, so no safety violation, but no clean hand-over either (in real time, see the largest timer delay below)\n{}",
                    NODES[next],
                    self.ms(t),
                    self.diagnosis(election_start).await
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "election {n}: the VIP is on {holders:?}, not on {} alone, {STEP_LIMIT:?} after the last step (a failed or slow hand-over; never on two nodes at any look)\n{}",
                    NODES[next],
                    self.diagnosis(election_start).await
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Forget the test parts' records of the election just checked.
    fn clear_records(&self) {
        if let Some(s) = &self.store {
            s.clear_log();
        }
        self.net.clear_history();
    }
}

/// Soak-clock time per election and per takeover, summed and maximal.
#[derive(Debug, Default)]
struct Times {
    election_sum: Duration,
    election_max: Duration,
    takeover_sum: Duration,
    takeover_max: Duration,
}

async fn run(args: &Args, progress: &AtomicUsize) -> Result<String, String> {
    let wall0 = std::time::Instant::now();
    let (backends, store, _api) = backends(args.backend).await?;
    let net = MemoryNetwork::new(Duration::ZERO);
    let stalls = (args.clock == Clock::Real).then(|| {
        let s = Arc::new(Stalls::default());
        tokio::spawn(s.clone().meter());
        s
    });
    let mut nodes = Vec::new();
    for (i, (name, backend)) in NODES.iter().zip(backends).enumerate() {
        let (addresses, announcer) = net.node(name, MacAddr([2, 0, 0, 0, 0, i as u8 + 1]));
        let health = MemoryHealth::new();
        let trail = Arc::new(Trail::new());
        let handle = Controller::new(
            config(name)?,
            backend.clone(),
            Arc::new(addresses),
            Arc::new(announcer),
        )
        .with_health(Arc::new(health.clone()))
        .with_observer(trail.clone())
        .spawn()
        .map_err(|e| e.to_string())?;
        let status = handle.status();
        nodes.push(Node {
            name,
            handle,
            status,
            health,
            trail,
            backend,
        });
    }
    let soak = Soak {
        net,
        store,
        nodes,
        vip: "198.18.0.100".parse().map_err(|_| "the VIP")?,
        t0: Instant::now(),
        stalls,
    };
    // The first leader.
    let start = Instant::now();
    let first = loop {
        if let Some(i) = soak
            .nodes
            .iter()
            .position(|n| n.status.borrow().role == Role::Leader)
        {
            break i;
        }
        if start.elapsed() >= STEP_LIMIT {
            return Err(format!(
                "no first leader within {STEP_LIMIT:?}\n{}",
                soak.diagnosis(start).await
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    soak.vip_on(0, first, start).await?;
    soak.check_safety(0, start).await?;
    soak.clear_records();
    let me = std::process::id();
    let sample = |elections: usize| -> Result<Sample, String> {
        Ok(Sample {
            elections,
            wall: wall0.elapsed(),
            soak: soak.t0.elapsed(),
            stats: ProcStats::read(me).ok_or("/proc/self unreadable")?,
            heap_bytes: LIVE_BYTES.load(Ordering::Relaxed),
            heap_blocks: LIVE_BLOCKS.load(Ordering::Relaxed),
        })
    };
    // Room for every sample from the start: the soak's own records must
    // not grow on the way either.
    let mut samples = Vec::with_capacity(args.elections / args.every + 2);
    samples.push(sample(0)?);
    let mut times = Times::default();
    let mut leader = first;
    for n in 1..=args.elections {
        let next = 1 - leader;
        let begin = Instant::now();
        if let Some(s) = &soak.stalls {
            s.reset();
        }
        soak.nodes[leader].health.set_healthy(false);
        soak.wait_for(next, &format!("election {n}: takeover"), begin, |s| {
            s.role == Role::Leader
        })
        .await?;
        let took = begin.elapsed();
        soak.wait_for(leader, &format!("election {n}: step-down"), begin, |s| {
            s.role == Role::Follower && !s.addresses_present
        })
        .await?;
        soak.nodes[leader].health.set_healthy(true);
        soak.wait_for(leader, &format!("election {n}: recovery"), begin, |s| {
            s.healthy == Some(true)
        })
        .await?;
        soak.vip_on(n, next, begin).await?;
        soak.check_safety(n, begin).await?;
        soak.clear_records();
        let took_all = begin.elapsed();
        times.election_sum += took_all;
        times.election_max = times.election_max.max(took_all);
        times.takeover_sum += took;
        times.takeover_max = times.takeover_max.max(took);
        if !args.hold.is_zero() {
            // The new leader keeps the VIP (renews, refreshes its
            // lifetime, announces); the next election's safety check
            // covers this time too.
            tokio::time::sleep(args.hold).await;
            soak.vip_on(n, next, begin).await?;
        }
        leader = next;
        progress.store(n, Ordering::Relaxed);
        if n % args.every == 0 || n == args.elections {
            let s = sample(n)?;
            eprintln!(
                "  {n} elections, {:.0} s wall, {:.0} s soak clock: RSS {} KiB ({} anonymous, {} file-backed), heap {} bytes in {} blocks",
                s.wall.as_secs_f64(),
                s.soak.as_secs_f64(),
                s.stats.rss_kib,
                s.stats.rss_anon_kib,
                s.stats.rss_file_kib,
                s.heap_bytes,
                s.heap_blocks
            );
            samples.push(s);
        }
    }
    soak.check_safety(args.elections, Instant::now()).await?;
    let stall = soak
        .stalls
        .as_ref()
        .map(|s| Duration::from_micros(s.overall_us.load(Ordering::Relaxed)));
    let mut counters = String::new();
    for node in &soak.nodes {
        let c = node.status.borrow().counters;
        let _ = writeln!(
            counters,
            "{}: {} acquisitions, {} step-downs ({} not forced by the soak), {} renewals, {} renewal failures.",
            node.name,
            c.acquisitions,
            c.step_downs,
            node.trail.unforced.load(Ordering::Relaxed),
            c.renewals,
            c.renewal_failures
        );
    }
    for node in soak.nodes {
        let _ = node.handle.shutdown().await;
    }
    Ok(report(args, &samples, &times, stall) + &counters)
}

fn report(args: &Args, samples: &[Sample], times: &Times, stall: Option<Duration>) -> String {
    let mut s = String::new();
    let backend = match args.backend {
        Backend::Memory => "vip-core's in-memory store",
        Backend::StandIn => "vip-lease's Lease backend against the in-process API-server stand-in",
    };
    let clock = match args.clock {
        Clock::Paused => "paused time (current-thread runtime)",
        Clock::Real => "real time (two-worker runtime)",
    };
    let _ = writeln!(
        s,
        "{} elections (health-forced hand-overs between two controllers; leader record: {backend}; {clock}; each new leader holds the VIP {:?} before the next), RSS of the process every {}:\n",
        args.elections, args.hold, args.every
    );
    let _ = writeln!(
        s,
        "| elections | wall s | soak clock s | RSS KiB | anonymous KiB | file-backed KiB | heap bytes | heap blocks |\n|---|---|---|---|---|---|---|---|"
    );
    for x in samples {
        let _ = writeln!(
            s,
            "| {} | {:.1} | {:.0} | {} | {} | {} | {} | {} |",
            x.elections,
            x.wall.as_secs_f64(),
            x.soak.as_secs_f64(),
            x.stats.rss_kib,
            x.stats.rss_anon_kib,
            x.stats.rss_file_kib,
            x.heap_bytes,
            x.heap_blocks
        );
    }
    let max = samples.iter().map(|x| x.stats.rss_kib).max().unwrap_or(0);
    let max_anon = samples
        .iter()
        .map(|x| x.stats.rss_anon_kib)
        .max()
        .unwrap_or(0);
    let last = samples[samples.len() - 1];
    // From the first sample past zero (the warm-up, connections and first
    // allocations, is mostly done by then), and over the second half of
    // the run (a long warm-up, such as the stand-in's watch history
    // filling, is past by then).
    let first = samples.get(1).unwrap_or(&samples[0]);
    let half = &samples[samples.len() / 2];
    for (what, from) in [("\nFrom", first), ("Second half: from", half)] {
        let span = (last.elections - from.elections).max(1) as f64;
        let grow = |a: u64, b: u64| b as i64 - a as i64;
        let d_rss = grow(from.stats.rss_kib, last.stats.rss_kib);
        let d_anon = grow(from.stats.rss_anon_kib, last.stats.rss_anon_kib);
        let d_heap = last.heap_bytes as i64 - from.heap_bytes as i64;
        let d_blocks = last.heap_blocks as i64 - from.heap_blocks as i64;
        let _ = writeln!(
            s,
            "{what} {} to {} elections: RSS {:+} KiB ({:+.1} bytes/election), anonymous {:+} KiB ({:+.1} bytes/election), live heap {:+} bytes in {:+} blocks ({:+.2} bytes/election).",
            from.elections,
            last.elections,
            d_rss,
            d_rss as f64 * 1024.0 / span,
            d_anon,
            d_anon as f64 * 1024.0 / span,
            d_heap,
            d_blocks,
            d_heap as f64 / span,
        );
    }
    let _ = writeln!(s, "Max RSS {max} KiB ({max_anon} anonymous).");
    let n = args.elections as f64;
    let _ = writeln!(
        s,
        "{:.1} elections/s of wall time. On the soak's clock: an election {:.1} ms mean ({:.1} ms max), of which the takeover {:.1} ms mean ({:.1} ms max).",
        last.elections as f64 / last.wall.as_secs_f64().max(1e-9),
        times.election_sum.as_secs_f64() * 1e3 / n,
        times.election_max.as_secs_f64() * 1e3,
        times.takeover_sum.as_secs_f64() * 1e3 / n,
        times.takeover_max.as_secs_f64() * 1e3
    );
    if let Some(st) = stall {
        let _ = writeln!(
            s,
            "Largest delay of a 10 ms timer (a stall of this process): {:.1} ms.",
            st.as_secs_f64() * 1e3
        );
    }
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
    let rt = match args.clock {
        Clock::Paused => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a tokio runtime"),
        Clock::Real => vip_benches::runtime(),
    };
    let progress = Arc::new(AtomicUsize::new(0));
    if args.clock == Clock::Paused {
        // The paused clock only advances when every task waits: a task
        // that spins would hang the soak without a timeout ever firing.
        let progress = progress.clone();
        std::thread::spawn(move || {
            let mut seen = usize::MAX;
            loop {
                std::thread::sleep(WATCHDOG);
                let now = progress.load(Ordering::Relaxed);
                if now == seen {
                    eprintln!(
                        "soak failed: no election completed in {WATCHDOG:?} of wall time after election {now} (with paused time: some task spins)"
                    );
                    std::process::exit(1);
                }
                seen = now;
            }
        });
    }
    let result = rt.block_on(run(&args, &progress));
    vip_benches::finish("soak", result, args.report.as_deref())
}
