//! # vip-e2e
//!
//! The end-to-end fault scenarios of `vip` (issue 6): real `vip manager`
//! processes in network namespaces on one bridge, the API-server stand-in
//! with one local endpoint per node, an ARP/NDP observer that records
//! which MAC answers for the VIP every 10 ms, and a client pinging the VIP
//! through its own kernel. The lab is [`vip_testkit::lab`]; this crate adds the
//! harness the scenarios in `tests/` share: finding (or building) the `vip`
//! binary, one [`Scenario`] per test (log tails printed when it fails),
//! and bounded waits.
//!
//! Run them (as root; without root they skip loudly, and fail with
//! `CI=true`):
//!
//! ```text
//! cargo test -p vip-e2e -- --test-threads 3
//! ```
//!
//! `VIP_BIN` names a prebuilt `vip` binary; otherwise the suite builds
//! `vip-bin`'s `vip` with the same profile into the same target directory
//! the test binary runs from.
#![deny(missing_docs)]

use std::net::IpAddr;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use vip_core::MacAddr;
pub use vip_testkit::lab::ANSWER_GRACE;
use vip_testkit::lab::{ApiKind, Lab, LabConfig, Observations, Observer, locate_vip};

/// The observer's probing interval.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// How often the harness polls.
pub const POLL: Duration = Duration::from_millis(50);
/// kube-vip's (and vip's) default timings.
pub const LEASE: Duration = Duration::from_secs(5);
/// Default renew deadline.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(3);
/// Default retry period.
pub const RETRY: Duration = Duration::from_secs(1);

static EXE: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The `vip` binary: `$VIP_BIN`, or `vip-bin`'s `vip` built (once per test
/// process) with the profile and target directory of this test binary.
pub fn vip_exe() -> PathBuf {
    EXE.get_or_init(|| locate_vip(None, build))
        .clone()
        .unwrap_or_else(|e| panic!("the vip binary: {e}"))
}

/// Build `vip-bin`'s `vip` with the profile and target directory of this
/// test binary; its path.
fn build() -> Result<PathBuf, String> {
    // <target>/<profile>/deps/<test binary>
    let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile_dir = me
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| format!("unexpected test binary path {}", me.display()))?;
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| format!("unexpected test binary path {}", me.display()))?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(p) => p.to_string(),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let out = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "vip-bin",
            "--bin",
            "vip",
            "--profile",
        ])
        .arg(&profile)
        .arg("--manifest-path")
        .arg(manifest)
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .map_err(|e| format!("running {cargo} build: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build -p vip-bin --bin vip failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let exe = profile_dir.join("vip");
    if exe.is_file() {
        Ok(exe)
    } else {
        Err(format!("{} missing after the build", exe.display()))
    }
}

/// Poll `f` every [`POLL`] until it gives `Some`, for at most `limit`.
pub async fn until<T>(limit: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    vip_testkit::lab::until(limit, POLL, f).await
}

/// A lab for one test, with its observer; when the test panics, the
/// nodes' log tails and the observer's timeline are printed on drop.
/// Derefs to the [`Lab`].
#[derive(Debug)]
pub struct Scenario {
    /// The test's name.
    pub name: &'static str,
    lab: Option<Lab>,
    /// The observer, probing every [`PROBE_INTERVAL`].
    pub observer: Option<Observer>,
    /// When the scenario started.
    pub started: Instant,
}

impl Scenario {
    /// Build a 3-node lab with `vips` and start its observer (bounded to
    /// `limit`); `None` (after a loud message) when not root outside CI.
    pub async fn new(name: &'static str, vips: &[IpAddr], limit: Duration) -> Option<Self> {
        Self::with_config(name, LabConfig::new(3).vips(vips), limit).await
    }

    /// Like [`new`](Self::new), with the lab `config` describes (e.g. real
    /// API servers, [`LabConfig::real_api`]); `None` (after a loud
    /// message) when not root, or when the real servers cannot run here,
    /// outside CI.
    pub async fn with_config(
        name: &'static str,
        config: LabConfig,
        limit: Duration,
    ) -> Option<Self> {
        if !vip_testkit::netns::require_root(name) {
            return None;
        }
        if matches!(config.api, ApiKind::Real { .. })
            && !vip_testkit::apiserver::available_or_skip()
        {
            return None;
        }
        let exe = vip_exe();
        let lab = Lab::build(config, exe)
            .await
            .unwrap_or_else(|e| panic!("{name}: building the lab: {e}"));
        let observer = lab
            .observe(PROBE_INTERVAL, limit)
            .unwrap_or_else(|e| panic!("{name}: starting the observer: {e}"));
        Some(Self {
            name,
            lab: Some(lab),
            observer: Some(observer),
            started: Instant::now(),
        })
    }

    /// The first VIP.
    pub fn vip(&self) -> IpAddr {
        self.vips()[0]
    }

    /// Start every node's manager.
    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i).expect("starting a manager");
        }
    }

    /// What the observer recorded so far, without the probe rounds younger
    /// than [`ANSWER_GRACE`]: their answers may still be in flight, and a
    /// round judged too early reads as "nobody owns the VIP".
    pub fn seen(&self) -> Observations {
        self.observer
            .as_ref()
            .map(Observer::judged)
            .unwrap_or_default()
    }

    /// Everything the observer recorded so far, the youngest rounds too.
    pub fn seen_all(&self) -> Observations {
        self.observer
            .as_ref()
            .map(Observer::snapshot)
            .unwrap_or_default()
    }

    /// One leader by the Lease, the only node with the VIPs on its
    /// interface, and the only MAC answering the observer for every VIP
    /// in the last 3 judged rounds (see [`seen`](Self::seen)).
    pub fn settled(&self) -> Option<usize> {
        let holder = self.holder()?;
        let i = self.node_index(&holder)?;
        let seen = self.seen();
        let mac = self.nodes[i].mac;
        let answering = self.vips().iter().all(|&v| {
            let last: Vec<_> = seen.answers(v).into_iter().rev().take(3).collect();
            last.len() == 3 && last.iter().all(|(_, m)| m == &[mac])
        });
        (answering && self.vip_holders() == [i]).then_some(i)
    }

    /// Wait (bounded) until [`settled`](Self::settled) on a node that
    /// `accept`s; panics with `what` otherwise.
    pub async fn settle_on(
        &self,
        limit: Duration,
        what: &str,
        accept: impl Fn(usize) -> bool,
    ) -> usize {
        match until(limit, || self.settled().filter(|&i| accept(i))).await {
            Some(i) => i,
            None => panic!(
                "{}: {what}: not settled within {limit:?} (holder {:?}, VIP on {:?}, observer sees {:?})",
                self.name,
                self.holder(),
                self.vip_holders(),
                self.vips()
                    .iter()
                    .map(|&v| self.seen().current(v))
                    .collect::<Vec<_>>()
            ),
        }
    }

    /// Wait (bounded) for one settled leader.
    pub async fn settle(&self, limit: Duration) -> usize {
        self.settle_on(limit, "one leader", |_| true).await
    }

    /// The first announcement of `address` the observer saw from node
    /// `i` after `from`, waiting (bounded) up to `limit` for it.
    pub async fn announced_after(
        &self,
        i: usize,
        address: IpAddr,
        from: Instant,
        limit: Duration,
    ) -> Option<Instant> {
        let mac = self.mac(i);
        until(limit, || {
            self.seen()
                .announcements(address, mac, from, Instant::now())
                .first()
                .copied()
        })
        .await
    }

    /// The MAC of node `i`.
    pub fn mac(&self, i: usize) -> MacAddr {
        self.nodes[i].mac
    }

    /// Panic unless no probe round of any VIP was answered by two MACs.
    pub fn assert_no_overlap(&self, seen: &Observations) {
        let overlaps = seen.overlaps();
        assert!(
            overlaps.is_empty(),
            "{}: {} probe rounds answered by two MACs at once, first: {:?} (at +{:?})",
            self.name,
            overlaps.len(),
            overlaps[0].1,
            overlaps[0].0.sent - self.started
        );
    }

    /// Stop the managers (SIGTERM, bounded) and the observer; the
    /// observations.
    pub async fn finish(mut self) -> Observations {
        let mut lab = self.lab.take().expect("the lab");
        lab.stop_all(Duration::from_secs(4)).await;
        let seen = self
            .observer
            .take()
            .map(|o| o.finish().expect("the observer"))
            .unwrap_or_default();
        drop(lab);
        seen
    }
}

impl Deref for Scenario {
    type Target = Lab;

    fn deref(&self) -> &Lab {
        self.lab.as_ref().expect("the lab")
    }
}

impl DerefMut for Scenario {
    fn deref_mut(&mut self) -> &mut Lab {
        self.lab.as_mut().expect("the lab")
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(lab) = &self.lab
        {
            eprintln!("=== {} failed; the lab's state:", self.name);
            eprintln!("{}", lab.log_tails(40));
            let seen = self.seen_all();
            for &v in lab.vips() {
                eprintln!("observer timeline of {v}:");
                for s in seen.timeline(v) {
                    eprintln!(
                        "  +{:>8.3}s .. +{:>8.3}s {:>5} rounds {:?}",
                        s.from.saturating_duration_since(self.started).as_secs_f64(),
                        s.to.saturating_duration_since(self.started).as_secs_f64(),
                        s.rounds,
                        s.macs.iter().map(ToString::to_string).collect::<Vec<_>>()
                    );
                }
            }
            eprintln!(
                "nodes: {:?}",
                lab.nodes
                    .iter()
                    .map(|n| format!("{}={}", n.name, n.mac))
                    .collect::<Vec<_>>()
            );
        }
    }
}
