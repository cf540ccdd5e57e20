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

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pnet_packet::Packet;
use pnet_packet::icmp::echo_reply::EchoReplyPacket;
use pnet_packet::icmp::echo_request::MutableEchoRequestPacket;
use pnet_packet::icmp::{IcmpCode, IcmpPacket, IcmpTypes};
use pnet_packet::ipv4::Ipv4Packet;
use socket2::{Domain, Protocol, SockFilter, Socket, Type};
use tokio::process::{Child, Command};
use vip_arp::PacketAnnouncer;
use vip_arp::netns::{Host, LabError, NsThread, Segment};
use vip_arp::wire::arp::{ArpOp, ArpRepr};
use vip_arp::wire::ndp::{NdpRepr, NeighborSolicitRepr, multicast_mac, solicited_node};
use vip_core::{Announcer, MacAddr};
use vip_lease::testapi::{Kind, Selectors, TestApi, TestApiConfig, TestApiError};

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

/// One write of the Lease, as the stand-in's store saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseWrite {
    /// When the store applied it (this process's clock).
    pub at: Instant,
    /// `spec.holderIdentity` after it (empty: released or deleted).
    pub holder: String,
    /// `spec.leaseTransitions` after it.
    pub transitions: u64,
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

    /// Make every manager elect through etcd instead of the stand-in's
    /// Lease, as on a control plane with stacked etcd: node `i`'s
    /// `127.0.0.1:2379` is forwarded to the member at `endpoints[i]` (an
    /// `https://host:port` client URL), the managers get
    /// `vip_leaderelectiontype=etcd`, the client TLS files and
    /// `vip_etcdendpoints=127.0.0.1:2379`, and [`Lab::holder`] reads the
    /// etcd record (watched by a client of this process, on all members).
    pub async fn elect_through_etcd(
        &mut self,
        endpoints: &[String],
        tls: vip_etcd::TlsFiles,
    ) -> Result<(), LabSetupError> {
        use vip_core::LockBackend as _;
        for i in 0..self.nodes.len() {
            let member: SocketAddr = endpoints
                .get(i)
                .and_then(|e| e.strip_prefix("https://"))
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| other(format!("an etcd member for node {i}"), endpoints))?;
            self.forward_local(i, 2379, member)?;
        }
        for (k, v) in [
            ("vip_leaderelectiontype", "etcd".to_string()),
            ("vip_etcdcacert", tls.ca.display().to_string()),
            ("vip_etcdcert", tls.cert.display().to_string()),
            ("vip_etcdkey", tls.key.display().to_string()),
            ("vip_etcdendpoints", "127.0.0.1:2379".to_string()),
        ] {
            self.env.insert(k.into(), v);
        }
        let backend = vip_etcd::EtcdBackend::connect(vip_etcd::EtcdConfig {
            endpoints: endpoints.to_vec(),
            tls: Some(tls),
            key: vip_etcd::election_key(LEASE.0, LEASE.1),
            request_timeout: Duration::from_millis(750),
        })
        .await
        .map_err(|e| other("an etcd client for the lab", e))?;
        let watch = backend
            .watch()
            .ok_or_else(|| other("watching the etcd record", "no runtime"))?;
        self.holder_source = Some(Arc::new(move || {
            watch
                .borrow()
                .as_ref()
                .map(|r| r.record.holder_identity.clone())
                .filter(|h| !h.is_empty())
        }));
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
        let ns = self.segment.hosts[i].ns.name();
        let node = &self.nodes[i];
        let vips: Vec<String> = self.vips.iter().map(ToString::to_string).collect();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(&self.exe)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("vip_arp", "true")
            .env("cp_enable", "true")
            .env("vip_leaderelection", "true")
            .env("cp_namespace", LEASE.0)
            .env("vip_interface", "eth0")
            .env("vip_address", vips.join(","))
            .env("vip_nodename", &node.name)
            .env("k8s_config_file", &node.kubeconfig)
            .env("prometheus_server", ":2112")
            .env("RUST_LOG", "vip_core=debug,vip_lease=debug,vip=debug")
            .env("NO_COLOR", "1")
            .envs(&self.env)
            .envs(&node.env)
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

#[allow(clippy::type_complexity)]
fn record_lease_writes(
    api: &TestApi,
) -> Result<(Arc<Mutex<Vec<LeaseWrite>>>, tokio::task::JoinHandle<()>), LabSetupError> {
    let start = api
        .store()
        .watch(Kind::Lease, Some(LEASE.0), &Selectors::default(), None)
        .map_err(|s| other("watching the Lease", s))?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let push = {
        let log = log.clone();
        move |obj: &serde_json::Value| {
            if obj["metadata"]["name"] != LEASE.1 {
                return;
            }
            let w = LeaseWrite {
                at: Instant::now(),
                holder: obj["spec"]["holderIdentity"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                transitions: obj["spec"]["leaseTransitions"].as_u64().unwrap_or(0),
            };
            log.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(w);
        }
    };
    for (_, obj) in &start.initial {
        push(obj);
    }
    let mut live = start.live;
    let task = tokio::spawn(async move {
        loop {
            match live.recv().await {
                Ok(ev) if ev.kind == Kind::Lease => {
                    if ev.etype == vip_lease::testapi::EventType::Deleted {
                        let mut obj = ev.object.clone();
                        obj["spec"]["holderIdentity"] = "".into();
                        push(&obj);
                    } else {
                        push(&ev.object);
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    Ok((log, task))
}

/// Listen on `127.0.0.1:<port>` inside `host`'s namespace and proxy every
/// connection to `upstream` on the host.
fn forward_into(
    host: &Host,
    port: u16,
    upstream: SocketAddr,
) -> Result<tokio::task::JoinHandle<()>, LabSetupError> {
    let listener = host
        .ns
        .run(Duration::from_secs(5), move || async move {
            std::net::TcpListener::bind(("127.0.0.1", port))
        })?
        .map_err(io(format!(
            "binding 127.0.0.1:{port} in {}",
            host.ns.name()
        )))?;
    listener
        .set_nonblocking(true)
        .map_err(io("proxy listener"))?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(io("proxy listener"))?;
    Ok(tokio::spawn(proxy(listener, upstream)))
}

async fn proxy(listener: tokio::net::TcpListener, upstream: SocketAddr) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                // Forward each chunk at once, as the endpoints' own sockets
                // do: with Nagle, a small write behind an unacknowledged
                // one waits for the peer's delayed ACK (about 40 ms), which
                // an HTTP/2 client (gRPC: etcd) pays on most requests.
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// keepalived's settings for a comparison run on the lab.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeepalivedConfig {
    /// VRRP version, 2 or 3.
    pub version: u8,
    /// Advertisement interval in seconds (whole seconds for VRRPv2,
    /// centiseconds for VRRPv3).
    pub advert_int: f64,
}

impl KeepalivedConfig {
    /// The configuration text for node `index` (named `name`): one VRRP
    /// instance on `eth0`, every node `BACKUP` with `nopreempt` (like vip,
    /// which never preempts), priority 200 - 10 × index, the VIPs as host
    /// routes, default GARP settings.
    pub fn render(&self, name: &str, index: usize, vips: &[IpAddr]) -> String {
        let addresses: String = vips
            .iter()
            .map(|v| match v {
                IpAddr::V4(a) => format!("    {a}/32 dev eth0\n"),
                IpAddr::V6(a) => format!("    {a}/128 dev eth0\n"),
            })
            .collect();
        format!(
            "global_defs {{\n  router_id {name}\n  vrrp_version {}\n  script_user root\n  enable_script_security\n}}\n\
             vrrp_instance VI_1 {{\n  state BACKUP\n  nopreempt\n  interface eth0\n  virtual_router_id 51\n  priority {}\n  advert_int {}\n  virtual_ipaddress {{\n{addresses}  }}\n}}\n",
            self.version,
            200 - 10 * index.min(15),
            self.advert_int,
        )
    }
}

/// Resident set size and CPU time of a process, from `/proc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStats {
    /// `VmRSS` in KiB.
    pub rss_kib: u64,
    /// `RssAnon` in KiB: heap, stacks, private data.
    pub rss_anon_kib: u64,
    /// `RssFile` in KiB: mapped pages of the binary and libraries.
    pub rss_file_kib: u64,
    /// `utime + stime` in clock ticks (USER_HZ, 100 per second on Linux).
    pub cpu_ticks: u64,
}

impl ProcStats {
    /// Clock ticks per second of `/proc/<pid>/stat` (Linux's `USER_HZ`).
    pub const TICKS_PER_SECOND: u64 = 100;

    /// Read them for `pid`; `None` when the process is gone.
    pub fn read(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        };
        let rss_kib = field("VmRSS:")?;
        let rss_anon_kib = field("RssAnon:").unwrap_or(0);
        let rss_file_kib = field("RssFile:").unwrap_or(0);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command (which may contain spaces) in parens.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest starts at field 3 (state); utime is field 14, stime 15.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(Self {
            rss_kib,
            rss_anon_kib,
            rss_file_kib,
            cpu_ticks: utime + stime,
        })
    }
}

// ---------------------------------------------------------------------------
// The observer.

/// The first two bytes of the source hardware address the observer puts in
/// its requests; the other four are the round number, so every answer
/// (which the kernel sends to that address) names its round exactly, however
/// late it arrives.
const ROUND_MAC_PREFIX: [u8; 2] = [0x02, 0xee];

fn round_mac(round: u32) -> MacAddr {
    let r = round.to_be_bytes();
    MacAddr([
        ROUND_MAC_PREFIX[0],
        ROUND_MAC_PREFIX[1],
        r[0],
        r[1],
        r[2],
        r[3],
    ])
}

fn round_of(mac: MacAddr) -> Option<u32> {
    (mac.0[..2] == ROUND_MAC_PREFIX)
        .then(|| u32::from_be_bytes([mac.0[2], mac.0[3], mac.0[4], mac.0[5]]))
}

/// What a frame seen by the observer was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeenKind {
    /// An answer to the observer's request of this round (ARP reply or
    /// solicited NA).
    Answer {
        /// The round.
        round: u32,
    },
    /// A gratuitous ARP (request or reply form) or an unsolicited NA.
    Announcement,
    /// An RFC 5227 probe or a DAD solicitation for the address.
    Probe,
    /// Any other frame that shows its sender using the address (e.g. the
    /// holder's own ARP requests sent from the VIP).
    Claim,
}

/// One frame about a VIP seen by the observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// When it was read.
    pub at: Instant,
    /// The VIP it is about.
    pub address: IpAddr,
    /// Who sent it (the sender hardware address for ARP, the Ethernet
    /// source for NDP).
    pub mac: MacAddr,
    /// What it was.
    pub kind: SeenKind,
}

/// One probe round: a request for one VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Its number (unique across the VIPs of one observer).
    pub id: u32,
    /// The VIP asked for.
    pub address: IpAddr,
    /// When it was sent.
    pub sent: Instant,
}

/// A stretch of time during which the same set of MACs answered for a VIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stretch {
    /// The MACs that answered (empty: nobody; two or more: overlap).
    pub macs: Vec<MacAddr>,
    /// The first round's send time.
    pub from: Instant,
    /// The send time of the round after the last one.
    pub to: Instant,
    /// How many rounds.
    pub rounds: usize,
}

/// What an [`Observer`] recorded.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// The rounds, in order.
    pub rounds: Vec<Round>,
    /// The frames about the VIPs, in order of arrival.
    pub seen: Vec<Seen>,
}

impl Observations {
    /// For each round of `address` (in order), the distinct MACs that
    /// answered it.
    pub fn answers(&self, address: IpAddr) -> Vec<(Round, Vec<MacAddr>)> {
        let mut by_round: BTreeMap<u32, BTreeSet<MacAddr>> = BTreeMap::new();
        for s in &self.seen {
            if let SeenKind::Answer { round } = s.kind
                && s.address == address
            {
                by_round.entry(round).or_default().insert(s.mac);
            }
        }
        self.rounds
            .iter()
            .filter(|r| r.address == address)
            .map(|r| {
                (
                    *r,
                    by_round
                        .get(&r.id)
                        .map(|m| m.iter().copied().collect())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The rounds of any VIP answered by two or more MACs: the instants
    /// with two owners.
    pub fn overlaps(&self) -> Vec<(Round, Vec<MacAddr>)> {
        let addresses: BTreeSet<IpAddr> = self.rounds.iter().map(|r| r.address).collect();
        addresses
            .into_iter()
            .flat_map(|a| self.answers(a))
            .filter(|(_, macs)| macs.len() > 1)
            .collect()
    }

    /// The stretches of `address`'s rounds with the same answering MACs,
    /// in order; the last stretch ends at the last round's send time.
    pub fn timeline(&self, address: IpAddr) -> Vec<Stretch> {
        let answers = self.answers(address);
        let mut out: Vec<Stretch> = Vec::new();
        for (i, (round, macs)) in answers.iter().enumerate() {
            let next = answers.get(i + 1).map_or(round.sent, |(r, _)| r.sent);
            match out.last_mut() {
                Some(s) if s.macs == *macs => {
                    s.to = next;
                    s.rounds += 1;
                }
                _ => out.push(Stretch {
                    macs: macs.clone(),
                    from: round.sent,
                    to: next,
                    rounds: 1,
                }),
            }
        }
        out
    }

    /// The timeline of `address` restricted to rounds sent in `[from, to)`.
    pub fn timeline_between(&self, address: IpAddr, from: Instant, to: Instant) -> Vec<Stretch> {
        let sub = Observations {
            rounds: self
                .rounds
                .iter()
                .filter(|r| r.sent >= from && r.sent < to)
                .copied()
                .collect(),
            seen: self.seen.clone(),
        };
        sub.timeline(address)
    }

    /// Total time of the stretches of `address` with two or more MACs.
    pub fn overlap_time(&self, address: IpAddr) -> Duration {
        self.timeline(address)
            .iter()
            .filter(|s| s.macs.len() > 1)
            .map(|s| s.to - s.from)
            .sum()
    }

    /// The longest run of unanswered rounds of `address` sent in
    /// `[from, to)`, from the first unanswered round's send time to the
    /// next answered round's (or `to`).
    pub fn longest_silence(&self, address: IpAddr, from: Instant, to: Instant) -> Duration {
        self.timeline_between(address, from, to)
            .iter()
            .filter(|s| s.macs.is_empty())
            .map(|s| s.to.min(to) - s.from)
            .max()
            .unwrap_or_default()
    }

    /// The send time of the first round of `address` sent at or after
    /// `after` that `mac` answered.
    pub fn first_answer(&self, address: IpAddr, mac: MacAddr, after: Instant) -> Option<Instant> {
        self.answers(address)
            .into_iter()
            .find(|(r, macs)| r.sent >= after && macs.contains(&mac))
            .map(|(r, _)| r.sent)
    }

    /// The send time of the last round of `address` that `mac` answered.
    pub fn last_answer(&self, address: IpAddr, mac: MacAddr) -> Option<Instant> {
        self.answers(address)
            .into_iter()
            .rev()
            .find(|(_, macs)| macs.contains(&mac))
            .map(|(r, _)| r.sent)
    }

    /// The MACs that answered the last answered round of `address`.
    pub fn current(&self, address: IpAddr) -> Vec<MacAddr> {
        self.answers(address)
            .into_iter()
            .rev()
            .find(|(_, m)| !m.is_empty())
            .map(|(_, m)| m)
            .unwrap_or_default()
    }

    /// The announcements of `address` by `mac` read in `[from, to)`.
    pub fn announcements(
        &self,
        address: IpAddr,
        mac: MacAddr,
        from: Instant,
        to: Instant,
    ) -> Vec<Instant> {
        self.seen
            .iter()
            .filter(|s| {
                s.kind == SeenKind::Announcement
                    && s.address == address
                    && s.mac == mac
                    && s.at >= from
                    && s.at < to
            })
            .map(|s| s.at)
            .collect()
    }

    /// How many times the answering MAC of `address` changed from one owner
    /// to a different one among rounds sent in `[from, to)` (silences in
    /// between do not count; returning to the same MAC is no move).
    pub fn moves(&self, address: IpAddr, from: Instant, to: Instant) -> usize {
        let mut last: Option<Vec<MacAddr>> = None;
        let mut moves = 0;
        for s in self.timeline_between(address, from, to) {
            if s.macs.is_empty() {
                continue;
            }
            if let Some(prev) = &last
                && *prev != s.macs
            {
                moves += 1;
            }
            last = Some(s.macs);
        }
        moves
    }
}

/// An ARP/NDP prober running in the observer namespace (see
/// [`Lab::observe`]): it asks for every VIP each interval and records every
/// answer and every announcement, with their times.
///
/// Each request carries the round number in its sender hardware address;
/// the kernel that owns the VIP answers to that address, so an answer is
/// attributed to its round even when it arrives late. The replies reach
/// the observer's port because the bridge floods unknown destinations, and
/// its packet socket reads them whatever their destination.
#[derive(Debug)]
pub struct Observer {
    log: Arc<Mutex<Observations>>,
    stop: Arc<AtomicBool>,
    sender: Option<NsThread<Result<(), String>>>,
}

/// Only ARP, and IPv6 ICMPv6 NS (135) / NA (136), into the capture socket.
const CAPTURE_FILTER: [SockFilter; 10] = [
    SockFilter::new(0x28, 0, 0, 12),          // A = EtherType
    SockFilter::new(0x15, 6, 0, 0x0806),      // ARP -> accept
    SockFilter::new(0x15, 0, 6, 0x86dd),      // not IPv6 -> drop
    SockFilter::new(0x30, 0, 0, 14 + 6),      // A = next header
    SockFilter::new(0x15, 0, 4, 58),          // not ICMPv6 -> drop
    SockFilter::new(0x30, 0, 0, 14 + 40),     // A = ICMPv6 type
    SockFilter::new(0x15, 1, 0, 135),         // NS -> accept
    SockFilter::new(0x15, 0, 1, 136),         // not NA -> drop
    SockFilter::new(0x06, 0, 0, 0x0004_0000), // accept
    SockFilter::new(0x06, 0, 0, 0),           // drop
];

fn classify(frame: &[u8], vips: &[IpAddr], at: Instant) -> Option<Seen> {
    if let Ok(arp) = ArpRepr::parse_bytes(frame) {
        let (address, kind) = if arp.sender_ip.is_unspecified() {
            (IpAddr::V4(arp.target_ip), SeenKind::Probe)
        } else {
            let kind = match (arp.operation, round_of(arp.target_mac)) {
                (ArpOp::Reply, Some(round)) => SeenKind::Answer { round },
                (ArpOp::Request, _) if arp.target_ip == arp.sender_ip => SeenKind::Announcement,
                (ArpOp::Reply, _)
                    if arp.target_ip == arp.sender_ip
                        && (arp.target_mac == arp.sender_mac
                            || arp.eth_destination == MacAddr::BROADCAST) =>
                {
                    SeenKind::Announcement
                }
                _ => SeenKind::Claim,
            };
            (IpAddr::V4(arp.sender_ip), kind)
        };
        return vips.contains(&address).then_some(Seen {
            at,
            address,
            mac: arp.sender_mac,
            kind,
        });
    }
    match NdpRepr::parse_bytes(frame).ok()? {
        NdpRepr::Advert(na) => {
            let address = IpAddr::V6(na.target);
            let kind = match round_of(na.eth_destination) {
                Some(round) => SeenKind::Answer { round },
                None if !na.solicited => SeenKind::Announcement,
                None => SeenKind::Claim,
            };
            vips.contains(&address).then_some(Seen {
                at,
                address,
                mac: na.eth_source,
                kind,
            })
        }
        NdpRepr::Solicit(ns) => {
            let (address, kind) = if ns.ip_source.is_unspecified() {
                (IpAddr::V6(ns.target), SeenKind::Probe)
            } else {
                (IpAddr::V6(ns.ip_source), SeenKind::Claim)
            };
            vips.contains(&address).then_some(Seen {
                at,
                address,
                mac: ns.eth_source,
                kind,
            })
        }
    }
}

fn request_frame(mac: MacAddr, own: (Ipv4Addr, Ipv6Addr), vip: IpAddr, round: u32) -> Vec<u8> {
    let hw = round_mac(round);
    match vip {
        IpAddr::V4(v) => ArpRepr {
            eth_destination: MacAddr::BROADCAST,
            eth_source: mac,
            operation: ArpOp::Request,
            sender_mac: hw,
            sender_ip: own.0,
            target_mac: MacAddr::ZERO,
            target_ip: v,
        }
        .to_bytes()
        .to_vec(),
        IpAddr::V6(v) => {
            let group = solicited_node(v);
            NdpRepr::Solicit(NeighborSolicitRepr {
                eth_destination: multicast_mac(group),
                eth_source: mac,
                ip_source: own.1,
                ip_destination: group,
                target: v,
                source_mac: Some(hw),
            })
            .to_vec()
        }
    }
}

impl Observer {
    fn start(
        host: &Host,
        index: usize,
        vips: &[IpAddr],
        interval: Duration,
        limit: Duration,
    ) -> Result<Self, LabSetupError> {
        let iface = host.interface()?;
        let log = Arc::new(Mutex::new(Observations::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let own = (host_v4(index), host_v6(index));
        // The capture socket is opened in the namespace, then read on a
        // plain thread (a socket stays in the namespace it was made in).
        let capture = host
            .ns
            .run(Duration::from_secs(5), || async {
                let eth_p_all = i32::from(0x0003u16.to_be());
                let s = Socket::new(
                    Domain::PACKET,
                    Type::RAW.cloexec(),
                    Some(Protocol::from(eth_p_all)),
                )?;
                s.attach_filter(&CAPTURE_FILTER)?;
                s.set_recv_buffer_size(4 << 20)?;
                s.set_read_timeout(Some(Duration::from_millis(20)))?;
                Ok::<_, std::io::Error>(s)
            })?
            .map_err(io("opening the observer's capture socket"))?;
        let reader = {
            let (log, stop, vips) = (log.clone(), stop.clone(), vips.to_vec());
            std::thread::Builder::new()
                .name("lab-observer-rx".into())
                .spawn(move || {
                    let mut buf = [0u8; 2048];
                    let end = Instant::now() + limit + Duration::from_secs(2);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        let n = match (&capture).read(&mut buf) {
                            Ok(n) => n,
                            Err(_) => continue,
                        };
                        let at = Instant::now();
                        if let Some(seen) = classify(&buf[..n], &vips, at) {
                            log.lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .seen
                                .push(seen);
                        }
                    }
                })
                .map_err(io("starting the observer's reader"))?
        };
        let sender = {
            let (log, stop, vips) = (log.clone(), stop.clone(), vips.to_vec());
            host.ns
                .spawn(limit + Duration::from_secs(3), move || async move {
                    let announcer = PacketAnnouncer::new();
                    let started = Instant::now();
                    let mut tick = tokio::time::interval(interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    let mut round: u32 = 0;
                    let mut result = Ok(());
                    'outer: while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                        tick.tick().await;
                        for &vip in &vips {
                            let frame = request_frame(iface.mac, own, vip, round);
                            let sent = Instant::now();
                            if let Err(e) = announcer.send_frame(&iface, &frame).await {
                                result = Err(e.to_string());
                                break 'outer;
                            }
                            log.lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .rounds
                                .push(Round {
                                    id: round,
                                    address: vip,
                                    sent,
                                });
                            round = round.wrapping_add(1);
                        }
                    }
                    // Let the last answers come in, then stop the reader.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    stop.store(true, Ordering::Relaxed);
                    let _ = reader.join();
                    result
                })?
        };
        Ok(Self {
            log,
            stop,
            sender: Some(sender),
        })
    }

    /// What was recorded so far. Rounds sent in the last few milliseconds
    /// may not have their answers yet.
    pub fn snapshot(&self) -> Observations {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Stop probing, wait for the last answers, and return everything.
    pub fn finish(mut self) -> Result<Observations, LabSetupError> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sender) = self.sender.take() {
            sender
                .join()?
                .map_err(|e| other("the observer could not send", e))?;
        }
        Ok(self.snapshot())
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sender) = self.sender.take() {
            let _ = sender.join();
        }
    }
}

// ---------------------------------------------------------------------------
// The client's pinger.

/// One echo request and whether (and when) it was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    /// Its sequence number.
    pub seq: u16,
    /// When it was sent.
    pub sent: Instant,
    /// When the reply came, if it did.
    pub answered: Option<Instant>,
}

/// Which echo reply this is, if it is one for `id`: its sequence number.
fn echo_reply(target: IpAddr, bytes: &[u8], id: u16) -> Option<u16> {
    match target {
        IpAddr::V4(t) => {
            let ip = Ipv4Packet::new(bytes)?;
            if ip.get_source() != t {
                return None;
            }
            let reply = EchoReplyPacket::new(ip.payload())?;
            (reply.get_icmp_type() == IcmpTypes::EchoReply && reply.get_identifier() == id)
                .then(|| reply.get_sequence_number())
        }
        // A raw ICMPv6 socket reads the ICMPv6 message alone; the socket
        // is connected to the target, so only its packets arrive.
        IpAddr::V6(_) => {
            (bytes.len() >= 8 && bytes[0] == 129 && u16::from_be_bytes([bytes[4], bytes[5]]) == id)
                .then(|| u16::from_be_bytes([bytes[6], bytes[7]]))
        }
    }
}

fn pinger(
    target: IpAddr,
    interval: Duration,
    limit: Duration,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Vec<Ping>> {
    static IDS: AtomicU32 = AtomicU32::new(0);
    let socket = match target {
        IpAddr::V4(_) => Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?,
        IpAddr::V6(_) => Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?,
    };
    socket.connect(&SocketAddr::new(target, 0).into())?;
    let id = ((std::process::id() << 4) as u16) ^ (IDS.fetch_add(1, Ordering::Relaxed) as u16);
    let mut pings = Vec::<Ping>::new();
    let started = Instant::now();
    let mut seq: u16 = 0;
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
        let mut pkt = [0u8; 16];
        {
            let mut req =
                MutableEchoRequestPacket::new(&mut pkt).expect("16 bytes hold an echo request");
            req.set_icmp_type(IcmpTypes::EchoRequest);
            req.set_icmp_code(IcmpCode::new(0));
            req.set_identifier(id);
            req.set_sequence_number(seq);
        }
        if target.is_ipv6() {
            // ICMPv6 echo request; the kernel computes the checksum.
            pkt[0] = 128;
        } else {
            let sum = pnet_packet::icmp::checksum(&IcmpPacket::new(&pkt).expect("an ICMP packet"));
            pkt[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        let sent = Instant::now();
        // A send may fail while the neighbour is unresolved (EHOSTUNREACH
        // after failed resolution): count it as unanswered.
        let _ = socket.send(&pkt);
        pings.push(Ping {
            seq,
            sent,
            answered: None,
        });
        let next = sent + interval;
        loop {
            let now = Instant::now();
            if now >= next {
                break;
            }
            socket.set_read_timeout(Some(next - now))?;
            let n = match (&socket).read(&mut buf) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                // Errors queued by ICMP (unreachable) on a connected socket.
                Err(_) => continue,
            };
            let Some(s) = echo_reply(target, &buf[..n], id) else {
                continue;
            };
            if let Some(p) = pings
                .iter_mut()
                .rev()
                .find(|p| p.seq == s && p.answered.is_none())
            {
                p.answered = Some(Instant::now());
            }
        }
        seq = seq.wrapping_add(1);
    }
    Ok(pings)
}

/// The client-visible outage in `[from, to)`: the longest time between two
/// consecutive answered echoes sent in that window (the first one counted
/// from `from`). `None` when nothing in the window was answered.
pub fn outage(pings: &[Ping], from: Instant, to: Instant) -> Option<Duration> {
    let mut last = from;
    let mut worst = Duration::ZERO;
    let mut any = false;
    for p in pings
        .iter()
        .filter(|p| p.sent >= from && p.sent < to && p.answered.is_some())
    {
        worst = worst.max(p.sent - last);
        last = p.sent;
        any = true;
    }
    any.then_some(worst)
}

/// The longest client-visible loss in `[from, to)`: from the send time of
/// the first unanswered echo of a run to the send time of the next
/// answered one (or `to`). Zero when every echo in the window was
/// answered; its resolution is the ping interval.
pub fn lost_time(pings: &[Ping], from: Instant, to: Instant) -> Duration {
    let mut worst = Duration::ZERO;
    let mut run_start: Option<Instant> = None;
    for p in pings.iter().filter(|p| p.sent >= from && p.sent < to) {
        match (p.answered.is_some(), run_start) {
            (false, None) => run_start = Some(p.sent),
            (true, Some(s)) => {
                worst = worst.max(p.sent - s);
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = run_start {
        worst = worst.max(to - s);
    }
    worst
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
