//! A throwaway cluster lab for `vip demo`, the e2e suite and the failover
//! benchmark: network namespaces on one bridge (N control-plane nodes, a
//! client, an observer and a spare "foreign" host; only 198.18.0.0/15 and
//! 2001:db8::/32), the API-server stand-in with one "local API server" per
//! node (reached at `127.0.0.1:6443` inside the node's namespace through a
//! proxy this process holds), and real `vip manager` processes (or
//! keepalived, for comparison).
//!
//! - [`Lab`]: the namespaces, the stand-in, the processes, and the faults
//!   (signals, link down/up, external address changes, stale VIPs,
//!   cordons, a foreign claimant);
//! - [`Observer`]: an ARP/NDP prober in the observer namespace that asks
//!   who has each VIP every few milliseconds and records every answering
//!   MAC with its time, and every announcement seen on the wire;
//! - [`Lab::ping`]: a client pinging the VIP through its own kernel.
//!
//! Everything is removed on drop: processes are killed, namespaces deleted.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use vip_arp::PacketAnnouncer;
use vip_core::{Announcer, MacAddr};

use crate::netns::{Host, LabError, NsThread, Segment};
use crate::testapi::{Kind, TestApi, TestApiConfig, TestApiError};

mod etcd;
mod forward;
mod keepalived;
mod lease_log;
mod observer;
mod ping;
mod proc;
mod second;

pub use keepalived::KeepalivedConfig;
pub use lease_log::LeaseWrite;
pub use observer::{ANSWER_GRACE, Observations, Observer, Round, Seen, SeenKind, Stretch};
pub use ping::{Ping, lost_time, outage};
pub use proc::{ProcStats, percent_of_core, thread_cpu_ns};

use forward::forward_into;
use lease_log::record_lease_writes;
use ping::pinger;
pub use second::{SECOND_NODE, SecondCluster};

/// The IPv4 VIP of the lab.
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
/// The IPv6 VIP of the lab's IPv6 and dual-stack runs.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
/// The lab's IPv4 prefix length.
pub const PREFIX: u8 = 24;
/// The lab's IPv6 prefix length.
pub const PREFIX6: u8 = 64;
/// The Lease namespace and name the managers use (kube-vip's default).
pub const LEASE: (&str, &str) = ("kube-system", "plndr-cp-lock");

static LABS: AtomicU32 = AtomicU32::new(0);

/// Errors of the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabSetupError {
    /// A namespace operation failed.
    #[error("network lab: {0}")]
    Net(#[from] LabError),
    /// The API-server stand-in failed.
    #[error("API-server stand-in: {0}")]
    Api(#[from] TestApiError),
    /// A process or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabSetupError {
    let what = what.into();
    move |source| LabSetupError::Io { what, source }
}

fn other(what: impl Into<String>, detail: impl std::fmt::Debug) -> LabSetupError {
    LabSetupError::Io {
        what: what.into(),
        source: std::io::Error::other(format!("{detail:?}")),
    }
}

/// The environment variable that names a prebuilt `vip` binary for the
/// labs (the e2e suite and the benchmarks).
pub const VIP_BIN: &str = "VIP_BIN";

/// The `vip` binary a lab runs: `explicit` when given, else `$VIP_BIN`,
/// else what `fallback` finds (or builds). It must be a file; the path is
/// made absolute, because the lab runs it from inside namespaces and other
/// directories. An error is one line naming the path and the way out.
pub fn locate_vip(
    explicit: Option<PathBuf>,
    fallback: impl FnOnce() -> Result<PathBuf, String>,
) -> Result<PathBuf, String> {
    let (p, from_env) = match (explicit, std::env::var_os(VIP_BIN)) {
        (Some(p), _) => (p, false),
        (None, Some(p)) => (PathBuf::from(p), true),
        (None, None) => (fallback()?, false),
    };
    if !p.is_file() {
        return Err(if from_env {
            format!("{VIP_BIN}={} is not a file", p.display())
        } else {
            format!(
                "the vip binary {} is not a file: build it with `cargo build -p vip-bin --bin vip` (same profile), or set {VIP_BIN}",
                p.display()
            )
        });
    }
    std::path::absolute(&p).map_err(|e| format!("{}: {e}", p.display()))
}

/// The IPv4 address of host `i` of the segment (nodes first, then the
/// client, the observer and the foreign host).
pub fn host_v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 11 + i as u8)
}

/// The IPv6 address of host `i` of the segment.
pub fn host_v6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11 + i as u16)
}

/// One control-plane node of the lab.
#[derive(Debug)]
pub struct LabNode {
    /// Its Kubernetes name, `node-<i+1>`.
    pub name: String,
    /// Its address on the segment.
    pub addr: Ipv4Addr,
    /// Its MAC on the segment.
    pub mac: MacAddr,
    /// Its kubeconfig (listener `i` of the stand-in).
    pub kubeconfig: PathBuf,
    /// Its `vip manager` process, when running.
    pub process: Option<Child>,
    /// Its keepalived process (the leader of its process group), when
    /// running.
    pub keepalived: Option<Child>,
    /// Its log file (the manager's and keepalived's output).
    pub log: PathBuf,
    /// Extra environment for this node's manager (after the lab's).
    pub env: BTreeMap<String, String>,
}

/// Reads the current leader's name (`None`: nobody holds it).
pub type HolderSource = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// The lab.
pub struct Lab {
    /// The segment: hosts `0..n` are the nodes, then the client, the
    /// observer and the foreign host.
    pub segment: Segment,
    /// The nodes.
    pub nodes: Vec<LabNode>,
    /// The API-server stand-in (one listener per node).
    pub api: TestApi,
    /// Extra environment for every manager (added last: overrides).
    pub env: BTreeMap<String, String>,
    /// Where [`Lab::holder`] reads the leader when the managers do not
    /// elect through the stand-in's Lease (e.g. an etcd record).
    pub holder_source: Option<HolderSource>,
    vips: Vec<IpAddr>,
    exe: PathBuf,
    dir: PathBuf,
    proxies: Vec<tokio::task::JoinHandle<()>>,
    lease_log: Arc<Mutex<Vec<LeaseWrite>>>,
    lease_task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("nodes", &self.nodes)
            .field("vips", &self.vips)
            .finish_non_exhaustive()
    }
}

/// The index of the client host in the segment.
pub fn client_host(nodes: usize) -> usize {
    nodes
}

/// The index of the observer host in the segment.
pub fn observer_host(nodes: usize) -> usize {
    nodes + 1
}

/// The index of the foreign host (a non-node that may claim the VIP) in the
/// segment.
pub fn foreign_host(nodes: usize) -> usize {
    nodes + 2
}

impl Lab {
    /// Build the lab with the IPv4 VIP [`VIP`]: `nodes` node namespaces, a
    /// client, an observer and a foreign host on one bridge, the stand-in
    /// with a local endpoint per node, and the node objects. No manager
    /// runs yet. `exe` is the `vip` binary.
    pub async fn new(nodes: usize, exe: PathBuf) -> Result<Self, LabSetupError> {
        Self::with_vips(nodes, exe, &[IpAddr::V4(VIP)]).await
    }

    /// Like [`new`](Self::new), with these VIPs (IPv4 and/or IPv6, from
    /// the lab's prefixes; e.g. [`VIP`] and [`VIP6`]).
    pub async fn with_vips(
        nodes: usize,
        exe: PathBuf,
        vips: &[IpAddr],
    ) -> Result<Self, LabSetupError> {
        let segment = Segment::new("vd", nodes + 3)?;
        let dir = std::env::temp_dir().join(format!(
            "vip-lab-{}-{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        for (i, host) in segment.hosts.iter().enumerate() {
            host.ns
                .add_address("eth0", &format!("{}/{PREFIX}", host_v4(i)))?;
            host.ns
                .add_address("eth0", &format!("{}/{PREFIX6}", host_v6(i)))?;
        }
        let names: Vec<String> = (0..nodes).map(|i| format!("node-{}", i + 1)).collect();
        let api = TestApi::start(
            TestApiConfig {
                // A correctly prepared cluster: the VIPs are SANs.
                extra_sans: vips.iter().map(ToString::to_string).collect(),
                ..TestApiConfig::default()
            }
            .listeners(nodes)
            .tokens(std::iter::once("admin").chain(names.iter().map(String::as_str))),
        )
        .await?;
        for n in &names {
            api.store()
                .put_node(n, true, true, false)
                .map_err(|s| other(format!("creating node {n}"), s))?;
        }
        let (lease_log, lease_task) = record_lease_writes(&api)?;
        let mut lab_nodes = Vec::with_capacity(nodes);
        let mut proxies = Vec::with_capacity(nodes);
        for (i, name) in names.iter().enumerate() {
            let host = &segment.hosts[i];
            let iface = host.interface()?;
            let kubeconfig = api.kubeconfig_for(i, name)?;
            // The node's "local API server": 127.0.0.1:6443 inside its
            // namespace, proxied to its own listener of the stand-in.
            proxies.push(forward_into(host, 6443, api.listener(i).addr())?);
            lab_nodes.push(LabNode {
                name: name.clone(),
                addr: host_v4(i),
                mac: iface.mac,
                kubeconfig,
                process: None,
                keepalived: None,
                log: dir.join(format!("{name}.log")),
                env: BTreeMap::new(),
            });
        }
        Ok(Self {
            segment,
            nodes: lab_nodes,
            api,
            env: BTreeMap::new(),
            holder_source: None,
            vips: vips.to_vec(),
            exe,
            dir,
            proxies,
            lease_log,
            lease_task,
        })
    }

    /// Forward `127.0.0.1:<port>` inside node `i`'s namespace to
    /// `upstream` on the host, as the lab does for the local API server
    /// (e.g. the node's local etcd member, port 2379). Stopped on drop.
    pub fn forward_local(
        &mut self,
        i: usize,
        port: u16,
        upstream: SocketAddr,
    ) -> Result<(), LabSetupError> {
        let task = forward_into(&self.segment.hosts[i], port, upstream)?;
        self.proxies.push(task);
        Ok(())
    }

    /// The lab's VIPs.
    pub fn vips(&self) -> &[IpAddr] {
        &self.vips
    }

    /// The client host.
    pub fn client(&self) -> &Host {
        &self.segment.hosts[client_host(self.nodes.len())]
    }

    /// The observer host.
    pub fn observer_host(&self) -> &Host {
        &self.segment.hosts[observer_host(self.nodes.len())]
    }

    /// The foreign host.
    pub fn foreign(&self) -> &Host {
        &self.segment.hosts[foreign_host(self.nodes.len())]
    }

    /// The directory of the lab's files (logs, keepalived configurations);
    /// removed on drop.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// `ip netns exec <node i> vip <args>` with the lab's settings
    /// (kube-vip's env block, the node's kubeconfig), not yet spawned.
    pub fn vip_command(&self, i: usize, args: &[&str]) -> Command {
        let node = &self.nodes[i];
        let vips: Vec<String> = self.vips.iter().map(ToString::to_string).collect();
        let mut cmd = self.manager_command(
            &self.segment.hosts[i],
            &vips.join(","),
            &node.name,
            &node.kubeconfig,
        );
        cmd.args(args).envs(&self.env).envs(&node.env);
        cmd
    }

    /// `vip` in `host`'s namespace with kube-vip's env block for node
    /// `node` electing `vips` through `kubeconfig`; the arguments follow.
    fn manager_command(
        &self,
        host: &Host,
        vips: &str,
        node: &str,
        kubeconfig: &std::path::Path,
    ) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", host.ns.name()])
            .arg(&self.exe)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("vip_arp", "true")
            .env("cp_enable", "true")
            .env("vip_leaderelection", "true")
            .env("cp_namespace", LEASE.0)
            .env("vip_interface", "eth0")
            .env("vip_address", vips)
            .env("vip_nodename", node)
            .env("k8s_config_file", kubeconfig)
            .env("prometheus_server", ":2112")
            .env("RUST_LOG", "vip_core=debug,vip_lease=debug,vip=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Run `vip <args>` on node `i` to completion (bounded): exit code and
    /// standard output.
    pub async fn run_vip(
        &self,
        i: usize,
        args: &[&str],
        limit: Duration,
    ) -> Result<(Option<i32>, String), LabSetupError> {
        let mut cmd = self.vip_command(i, args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .map_err(io(format!("running vip {}", args.join(" "))))?;
        match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(Ok(out)) => {
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                Ok((out.status.code(), text))
            }
            Ok(Err(e)) => Err(io(format!("running vip {}", args.join(" ")))(e)),
            Err(_) => Err(LabSetupError::Io {
                what: format!(
                    "vip {} on {} did not finish within {limit:?}",
                    args.join(" "),
                    self.nodes[i].name
                ),
                source: std::io::Error::from(ErrorKind::TimedOut),
            }),
        }
    }

    fn log_file(&self, i: usize) -> Result<(std::fs::File, std::fs::File), LabSetupError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.nodes[i].log)
            .map_err(io(format!("opening {}", self.nodes[i].log.display())))?;
        let log2 = log.try_clone().map_err(io("log file"))?;
        Ok((log, log2))
    }

    /// Start `vip manager` on node `i` with the lab's settings: the VIPs on
    /// `eth0`, the node's kubeconfig, kube-vip's env block.
    pub fn start(&mut self, i: usize) -> Result<(), LabSetupError> {
        let (log, log2) = self.log_file(i)?;
        let mut cmd = self.vip_command(i, &["manager"]);
        cmd.stdout(log).stderr(log2);
        let node = &mut self.nodes[i];
        let child = cmd
            .spawn()
            .map_err(io(format!("starting vip manager on {}", node.name)))?;
        node.process = Some(child);
        Ok(())
    }

    /// The process id of node `i`'s manager, when running (`ip netns exec`
    /// execs the manager, so this is the manager itself).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].process.as_ref().and_then(Child::id)
    }

    /// Send `signal` to node `i`'s manager. With SIGKILL the process is
    /// reaped at once; with others, call [`wait`](Self::wait).
    pub fn signal(&mut self, i: usize, signal: i32) -> Result<(), LabSetupError> {
        let Some(pid) = self.pid(i) else {
            return Ok(());
        };
        kill(pid as i32, signal).map_err(io(format!("signalling vip on {}", self.nodes[i].name)))
    }

    /// Wait (bounded) for node `i`'s manager to exit; its exit code.
    pub async fn wait(&mut self, i: usize, limit: Duration) -> Result<Option<i32>, LabSetupError> {
        let Some(mut child) = self.nodes[i].process.take() else {
            return Ok(None);
        };
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(r) => Ok(r.map_err(io("waiting for vip"))?.code()),
            Err(_) => {
                let _ = child.kill().await;
                Err(LabSetupError::Io {
                    what: format!(
                        "vip on {} did not exit within {limit:?}",
                        self.nodes[i].name
                    ),
                    source: std::io::Error::from(ErrorKind::TimedOut),
                })
            }
        }
    }

    /// SIGKILL node `i`'s manager and reap it (bounded).
    pub async fn kill(&mut self, i: usize) -> Result<(), LabSetupError> {
        self.signal(i, libc::SIGKILL)?;
        self.wait(i, Duration::from_secs(5)).await.map(drop)
    }

    /// Stop every manager: SIGTERM, then wait (bounded; killed if late).
    pub async fn stop_all(&mut self, limit: Duration) {
        for i in 0..self.nodes.len() {
            let _ = self.signal(i, libc::SIGCONT);
            let _ = self.signal(i, libc::SIGTERM);
        }
        for i in 0..self.nodes.len() {
            let _ = self.wait(i, limit).await;
        }
    }

    /// The Lease's holder, straight from the stand-in's store.
    pub fn holder(&self) -> Option<String> {
        if let Some(read) = &self.holder_source {
            return read();
        }
        self.api
            .store()
            .get(Kind::Lease, LEASE.0, LEASE.1)
            .ok()
            .and_then(|v| v["spec"]["holderIdentity"].as_str().map(str::to_string))
            .filter(|h| !h.is_empty())
    }

    /// Every write of the Lease since the lab was built, in order.
    pub fn lease_writes(&self) -> Vec<LeaseWrite> {
        self.lease_log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The node whose name is `holder`.
    pub fn node_index(&self, holder: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == holder)
    }

    /// The node whose segment MAC is `mac`.
    pub fn node_of_mac(&self, mac: MacAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.mac == mac)
    }

    /// Whether node (or host) `i` has `address` on its `eth0` now.
    pub fn has_address(&self, i: usize, address: IpAddr) -> bool {
        let needle = format!(" {address}/");
        self.segment.hosts[i]
            .ns
            .address_lines("eth0")
            .map(|lines| lines.iter().any(|l| l.contains(&needle)))
            .unwrap_or(false)
    }

    /// Which nodes have any of the lab's VIPs on their interface now.
    pub fn vip_holders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.vips.iter().any(|&v| self.has_address(i, v)))
            .collect()
    }

    /// The MAC the client's kernel has for the first VIP.
    pub fn client_resolves(&self) -> Option<MacAddr> {
        self.client_resolves_addr(self.vips[0])
    }

    /// The MAC the client's kernel has for `address`.
    pub fn client_resolves_addr(&self, address: IpAddr) -> Option<MacAddr> {
        self.client().ns.neighbour("eth0", address).ok().flatten()
    }

    /// Take node `i`'s `eth0` administratively down (`up == false`) or up.
    pub fn set_link(&self, i: usize, up: bool) -> Result<(), LabSetupError> {
        let ns = &self.segment.hosts[i].ns;
        if up {
            ns.set_up("eth0")?;
        } else {
            ns.set_down("eth0")?;
        }
        Ok(())
    }

    fn host_prefix(address: IpAddr) -> String {
        match address {
            IpAddr::V4(a) => format!("{a}/32"),
            IpAddr::V6(a) => format!("{a}/128"),
        }
    }

    /// Remove `address` from host `i`'s `eth0` behind everyone's back, as
    /// an administrator's `ip addr del` would.
    pub fn del_address(&self, i: usize, address: IpAddr) -> Result<(), LabSetupError> {
        self.segment.hosts[i]
            .ns
            .del_address("eth0", &Self::host_prefix(address))?;
        Ok(())
    }

    /// Add `address` to host `i`'s `eth0` with an infinite lifetime, as a
    /// crashed older daemon (or an administrator) would leave it.
    pub fn add_stale_address(&self, i: usize, address: IpAddr) -> Result<(), LabSetupError> {
        self.segment.hosts[i]
            .ns
            .add_address("eth0", &Self::host_prefix(address))?;
        Ok(())
    }

    /// Cordon (`unschedulable`) or uncordon node `i`, as `kubectl cordon`
    /// would (the Node's `spec.unschedulable`).
    pub fn cordon(&self, i: usize, unschedulable: bool) -> Result<(), LabSetupError> {
        let name = &self.nodes[i].name;
        self.api
            .store()
            .put_node(name, true, true, unschedulable)
            .map(drop)
            .map_err(|s| other(format!("cordoning {name}"), s))
    }

    /// Make the foreign host claim `address`: add it to its `eth0` and send
    /// `count` announcements `interval` apart (gratuitous ARP or
    /// unsolicited NA), in the background.
    pub fn foreign_claim(
        &self,
        address: IpAddr,
        count: u32,
        interval: Duration,
    ) -> Result<NsThread<Result<u32, String>>, LabSetupError> {
        let host = self.foreign();
        self.add_stale_address(foreign_host(self.nodes.len()), address)?;
        let iface = host.interface()?;
        let limit = interval * count + Duration::from_secs(5);
        Ok(host.ns.spawn(limit, move || async move {
            let announcer = PacketAnnouncer::new();
            let mut sent = 0;
            for _ in 0..count {
                announcer
                    .announce(&iface, address)
                    .await
                    .map_err(|e| e.to_string())?;
                sent += 1;
                tokio::time::sleep(interval).await;
            }
            Ok(sent)
        })?)
    }

    /// GET `path` from node `i`'s metrics endpoint (`127.0.0.1:2112`
    /// inside its namespace); the response body.
    pub fn metrics(&self, i: usize, path: &str) -> Result<String, LabSetupError> {
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        let response = self.segment.hosts[i]
            .ns
            .run(Duration::from_secs(5), move || async move {
                let addr = SocketAddr::from(([127, 0, 0, 1], 2112));
                let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
                s.set_read_timeout(Some(Duration::from_secs(3)))?;
                s.write_all(request.as_bytes())?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                Ok::<_, std::io::Error>(out)
            })?
            .map_err(io(format!("reading metrics of {}", self.nodes[i].name)))?;
        Ok(response
            .split_once("\r\n\r\n")
            .map_or(response.clone(), |(_, b)| b.to_string()))
    }

    /// The value of the metric line `name` (exactly, labels included) on
    /// node `i`'s `/metrics`.
    pub fn metric(&self, i: usize, name: &str) -> Result<Option<f64>, LabSetupError> {
        let body = self.metrics(i, "/metrics")?;
        Ok(body.lines().find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == name).then(|| v.trim().parse().ok()).flatten()
        }))
    }

    /// The last `lines` lines of every node's log, for failure reports.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            if let Ok(log) = std::fs::read_to_string(&n.log) {
                let tail: Vec<&str> = log.lines().rev().take(lines).collect();
                out.push_str(&format!("--- last lines of {}'s log:\n", n.name));
                for l in tail.iter().rev() {
                    out.push_str(&format!("  {l}\n"));
                }
            }
        }
        out
    }

    /// Start an [`Observer`] in the observer namespace: every `interval` an
    /// ARP request (IPv4) or neighbour solicitation (IPv6) for each of the
    /// lab's VIPs, for at most `limit`.
    pub fn observe(&self, interval: Duration, limit: Duration) -> Result<Observer, LabSetupError> {
        Observer::start(
            self.observer_host(),
            observer_host(self.nodes.len()),
            &self.vips,
            interval,
            limit,
        )
    }

    /// Start a pinger in the client namespace: an ICMP echo to the first
    /// VIP every `interval` until `stop` is set (bounded by `limit`).
    pub fn ping(
        &self,
        interval: Duration,
        limit: Duration,
        stop: Arc<AtomicBool>,
    ) -> Result<NsThread<Vec<Ping>>, LabSetupError> {
        self.ping_addr(self.vips[0], interval, limit, stop)
    }

    /// Like [`ping`](Self::ping), to `target` (IPv4 or IPv6).
    pub fn ping_addr(
        &self,
        target: IpAddr,
        interval: Duration,
        limit: Duration,
        stop: Arc<AtomicBool>,
    ) -> Result<NsThread<Vec<Ping>>, LabSetupError> {
        Ok(self
            .client()
            .ns
            .spawn(limit + Duration::from_secs(1), move || async move {
                pinger(target, interval, limit, stop).unwrap_or_default()
            })?)
    }

    /// Write keepalived's configuration for node `i` and start it there
    /// (`keepalived -n`, its own process group, logging to the node's log).
    /// Needs `keepalived` on the `PATH`.
    pub fn start_keepalived(
        &mut self,
        i: usize,
        config: &KeepalivedConfig,
    ) -> Result<(), LabSetupError> {
        let conf = self.dir.join(format!("keepalived-{i}.conf"));
        std::fs::write(&conf, config.render(&self.nodes[i].name, i, &self.vips))
            .map_err(io(format!("writing {}", conf.display())))?;
        let (log, log2) = self.log_file(i)?;
        let pid = |what: &str| self.dir.join(format!("keepalived-{i}-{what}.pid"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.segment.hosts[i].ns.name()])
            .arg("keepalived")
            .args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
            .arg("--use-file")
            .arg(&conf)
            .arg("--pid")
            .arg(pid("main"))
            .arg("--vrrp_pid")
            .arg(pid("vrrp"))
            .arg("--checkers_pid")
            .arg(pid("checkers"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(io(format!(
            "starting keepalived on {} (is it installed?)",
            self.nodes[i].name
        )))?;
        self.nodes[i].keepalived = Some(child);
        Ok(())
    }

    /// Send `signal` to node `i`'s keepalived, all its processes (its
    /// process group).
    pub fn signal_keepalived(&self, i: usize, signal: i32) -> Result<(), LabSetupError> {
        let Some(pid) = self.nodes[i].keepalived.as_ref().and_then(Child::id) else {
            return Ok(());
        };
        kill(-(pid as i32), signal).map_err(io(format!(
            "signalling keepalived on {}",
            self.nodes[i].name
        )))
    }

    /// Wait (bounded) for node `i`'s keepalived to exit; SIGKILL its group
    /// if it is late.
    pub async fn wait_keepalived(
        &mut self,
        i: usize,
        limit: Duration,
    ) -> Result<(), LabSetupError> {
        let Some(mut child) = self.nodes[i].keepalived.take() else {
            return Ok(());
        };
        let pid = child.id();
        let r = tokio::time::timeout(limit, child.wait()).await;
        if let Some(pid) = pid {
            // Whatever is left of the group (children outliving the parent).
            let _ = kill(-(pid as i32), libc::SIGKILL);
        }
        match r {
            Ok(r) => r.map(drop).map_err(io("waiting for keepalived")),
            Err(_) => {
                let _ = child.kill().await;
                Err(LabSetupError::Io {
                    what: format!(
                        "keepalived on {} did not exit within {limit:?}",
                        self.nodes[i].name
                    ),
                    source: std::io::Error::from(ErrorKind::TimedOut),
                })
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.process.take() {
                if let Some(pid) = c.id() {
                    // A stopped process must be continued to die promptly.
                    let _ = kill(pid as i32, libc::SIGCONT);
                }
                let _ = c.start_kill();
            }
            if let Some(mut c) = n.keepalived.take() {
                if let Some(pid) = c.id() {
                    let _ = kill(-(pid as i32), libc::SIGKILL);
                }
                let _ = c.start_kill();
            }
        }
        for p in &self.proxies {
            p.abort();
        }
        self.lease_task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// kill(2).
fn kill(pid: i32, signal: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) has no memory effects; callers pass the pid (or
    // process group) of a child this lab spawned and still holds, so it
    // has not been reaped and the id cannot name another process.
    #[allow(unsafe_code)]
    let r = unsafe { libc::kill(pid as libc::pid_t, signal) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Poll `f` every `every` until it gives `Some`, for at most `limit`: the
/// bounded wait of the demo, the e2e suite and the failover benchmark.
pub async fn until<T>(
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_vip_binary_must_be_a_file_and_comes_back_absolute() {
        let never = || -> Result<PathBuf, String> { panic!("no fallback with an explicit path") };
        let e = locate_vip(Some(PathBuf::from("/nonexistent/vip")), never).unwrap_err();
        assert!(e.contains("/nonexistent/vip is not a file"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        // This crate's manifest, named relative to the crate: a file.
        let rel = PathBuf::from("Cargo.toml");
        let found = locate_vip(Some(rel), never).unwrap();
        assert!(
            found.is_absolute() && found.ends_with("Cargo.toml"),
            "{found:?}"
        );
    }
}
