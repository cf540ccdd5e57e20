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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::process::Child;
use vip_core::MacAddr;

use crate::netns::{Host, LabError, Segment};
use crate::testapi::{Kind, TestApi, TestApiConfig, TestApiError};

mod etcd;
mod faults;
mod forward;
mod keepalived;
mod lease_log;
mod locate;
mod observer;
mod ping;
mod proc;
mod process;
pub mod real_api;
mod second;

pub use keepalived::KeepalivedConfig;
pub use lease_log::LeaseWrite;
pub use locate::{VIP_BIN, locate_vip};
pub use observer::{ANSWER_GRACE, Observations, Observer, Round, Seen, SeenKind, Stretch};
pub use ping::{Ping, answer_gap, lost_time, outage};
pub use proc::{ProcStats, percent_of_core, thread_cpu_ns};

use forward::forward_into;
use lease_log::record_lease_writes;
use process::kill;
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
    /// The real API servers or their etcd failed.
    #[error("real API servers: {0}")]
    RealApi(#[from] crate::apiserver::RealApiError),
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

/// Which API server the lab's nodes talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiKind {
    /// The stand-in in this process, one listener per node, reached at
    /// `127.0.0.1:6443` inside each node's namespace through a forward.
    #[default]
    StandIn,
    /// The brief's topology ([`real_api`]): a real `kube-apiserver` and an
    /// etcd member in every node's namespace. `vip_in_certificate`: whether
    /// the serving certificates name the VIPs (a correctly prepared
    /// cluster) or not (the preflight check's failure case).
    Real {
        /// Whether the VIPs are SANs of the serving certificates.
        vip_in_certificate: bool,
    },
}

/// How to build a [`Lab`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabConfig {
    /// How many control-plane nodes.
    pub nodes: usize,
    /// The VIPs (IPv4 and/or IPv6, from the lab's prefixes).
    pub vips: Vec<IpAddr>,
    /// The API servers.
    pub api: ApiKind,
}

impl LabConfig {
    /// `nodes` nodes, the IPv4 VIP [`VIP`], the stand-in.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            vips: vec![IpAddr::V4(VIP)],
            api: ApiKind::StandIn,
        }
    }

    /// These VIPs instead.
    pub fn vips(mut self, vips: &[IpAddr]) -> Self {
        self.vips = vips.to_vec();
        self
    }

    /// Real API servers over etcd in the node namespaces (see
    /// [`ApiKind::Real`]).
    pub fn real_api(mut self, vip_in_certificate: bool) -> Self {
        self.api = ApiKind::Real { vip_in_certificate };
        self
    }
}

/// What serves the lab's API.
enum Backend {
    StandIn {
        api: TestApi,
        lease_log: Arc<Mutex<Vec<LeaseWrite>>>,
        lease_task: tokio::task::JoinHandle<()>,
    },
    Real(Box<real_api::RealBackend>),
}

/// The lab.
pub struct Lab {
    // First, so the API servers and etcd are gone before the namespaces.
    backend: Backend,
    /// The segment: hosts `0..n` are the nodes, then the client, the
    /// observer and the foreign host.
    pub segment: Segment,
    /// The nodes.
    pub nodes: Vec<LabNode>,
    /// Extra environment for every manager (added last: overrides).
    pub env: BTreeMap<String, String>,
    /// Where [`Lab::holder`] reads the leader when the managers do not
    /// elect through the stand-in's Lease (e.g. an etcd record).
    pub holder_source: Option<HolderSource>,
    vips: Vec<IpAddr>,
    exe: PathBuf,
    dir: PathBuf,
    proxies: Vec<tokio::task::JoinHandle<()>>,
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
        Self::build(LabConfig::new(nodes), exe).await
    }

    /// Like [`new`](Self::new), with these VIPs (IPv4 and/or IPv6, from
    /// the lab's prefixes; e.g. [`VIP`] and [`VIP6`]).
    pub async fn with_vips(
        nodes: usize,
        exe: PathBuf,
        vips: &[IpAddr],
    ) -> Result<Self, LabSetupError> {
        Self::build(LabConfig::new(nodes).vips(vips), exe).await
    }

    /// Build the lab `config` describes: the namespaces, the API servers
    /// (the stand-in, or real ones in the node namespaces), the Node
    /// objects and each node's kubeconfig for `127.0.0.1:6443`. No manager
    /// runs yet. `exe` is the `vip` binary.
    pub async fn build(config: LabConfig, exe: PathBuf) -> Result<Self, LabSetupError> {
        let LabConfig { nodes, vips, api } = config;
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
        let mut proxies = Vec::with_capacity(nodes);
        let mut holder_source = None;
        let (backend, kubeconfigs) = match api {
            ApiKind::StandIn => {
                let (backend, kubeconfigs) =
                    Self::stand_in(&segment, &names, &vips, &mut proxies).await?;
                (backend, kubeconfigs)
            }
            ApiKind::Real { vip_in_certificate } => {
                let real =
                    real_api::RealBackend::start(&segment, &names, &vips, vip_in_certificate, &dir)
                        .await?;
                holder_source = Some(real.holder_source());
                let kubeconfigs = real.node_kubeconfigs().to_vec();
                (Backend::Real(Box::new(real)), kubeconfigs)
            }
        };
        let mut lab_nodes = Vec::with_capacity(nodes);
        for (i, (name, kubeconfig)) in names.iter().zip(kubeconfigs).enumerate() {
            lab_nodes.push(LabNode {
                name: name.clone(),
                addr: host_v4(i),
                mac: segment.hosts[i].interface()?.mac,
                kubeconfig,
                process: None,
                keepalived: None,
                log: dir.join(format!("{name}.log")),
                env: BTreeMap::new(),
            });
        }
        Ok(Self {
            backend,
            segment,
            nodes: lab_nodes,
            env: BTreeMap::new(),
            holder_source,
            vips,
            exe,
            dir,
            proxies,
        })
    }

    /// The stand-in with one listener per node, each forwarded to
    /// `127.0.0.1:6443` in its node's namespace, the Node objects, and the
    /// nodes' kubeconfigs.
    async fn stand_in(
        segment: &Segment,
        names: &[String],
        vips: &[IpAddr],
        proxies: &mut Vec<tokio::task::JoinHandle<()>>,
    ) -> Result<(Backend, Vec<PathBuf>), LabSetupError> {
        let api = TestApi::start(
            TestApiConfig {
                // A correctly prepared cluster: the VIPs are SANs.
                extra_sans: vips.iter().map(ToString::to_string).collect(),
                ..TestApiConfig::default()
            }
            .listeners(names.len())
            .tokens(std::iter::once("admin").chain(names.iter().map(String::as_str))),
        )
        .await?;
        for n in names {
            api.store()
                .put_node(n, true, true, false)
                .map_err(|s| other(format!("creating node {n}"), s))?;
        }
        let (lease_log, lease_task) = record_lease_writes(&api)?;
        let mut kubeconfigs = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            kubeconfigs.push(api.kubeconfig_for(i, name)?);
            // The node's "local API server": 127.0.0.1:6443 inside its
            // namespace, proxied to its own listener of the stand-in.
            proxies.push(forward_into(
                &segment.hosts[i],
                6443,
                api.listener(i).addr(),
            )?);
        }
        let backend = Backend::StandIn {
            api,
            lease_log,
            lease_task,
        };
        Ok((backend, kubeconfigs))
    }

    /// The API-server stand-in (one listener per node), to fault it or read
    /// its store. Panics on a lab with real API servers
    /// ([`ApiKind::Real`]), where the stand-in's faults do not exist: use
    /// [`real_api`](Self::real_api) there.
    pub fn api(&self) -> &TestApi {
        match &self.backend {
            Backend::StandIn { api, .. } => api,
            Backend::Real(_) => {
                panic!("this lab runs real API servers: the stand-in's faults do not apply")
            }
        }
    }

    /// The real API servers and their etcd, on a lab built with
    /// [`ApiKind::Real`]; `None` on the stand-in.
    pub fn real_api(&mut self) -> Option<&mut crate::apiserver::RealApi> {
        match &mut self.backend {
            Backend::StandIn { .. } => None,
            Backend::Real(real) => Some(&mut real.api),
        }
    }

    /// Whether the lab runs real API servers ([`ApiKind::Real`]).
    pub fn is_real_api(&self) -> bool {
        matches!(self.backend, Backend::Real(_))
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

    /// The Lease's holder: from [`holder_source`](Self::holder_source)
    /// when set (an etcd record; on real API servers, the client's poll of
    /// the Lease), else straight from the stand-in's store.
    pub fn holder(&self) -> Option<String> {
        if let Some(read) = &self.holder_source {
            return read();
        }
        self.api()
            .store()
            .get(Kind::Lease, LEASE.0, LEASE.1)
            .ok()
            .and_then(|v| v["spec"]["holderIdentity"].as_str().map(str::to_string))
            .filter(|h| !h.is_empty())
    }

    /// Every write of the Lease since the lab was built, in order, as the
    /// stand-in applied them; none on real API servers.
    pub fn lease_writes(&self) -> Vec<LeaseWrite> {
        match &self.backend {
            Backend::StandIn { lease_log, .. } => lease_log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            Backend::Real(_) => Vec::new(),
        }
    }

    /// The node whose name is `holder`.
    pub fn node_index(&self, holder: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == holder)
    }

    /// The node whose segment MAC is `mac`.
    pub fn node_of_mac(&self, mac: MacAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.mac == mac)
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
        if let Backend::StandIn { lease_task, .. } = &self.backend {
            lease_task.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
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
