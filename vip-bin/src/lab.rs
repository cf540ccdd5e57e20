//! A throwaway cluster lab for `vip demo` and the e2e suite: network
//! namespaces on one bridge (N control-plane nodes, a client, an observer;
//! only 198.18.0.0/15 and 2001:db8::/32), the API-server stand-in with one
//! "local API server" per node (reached at `127.0.0.1:6443` inside the
//! node's namespace through a proxy this process holds), and real
//! `vip manager` processes.
//!
//! Everything is removed on drop: processes are killed, namespaces deleted.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pnet_packet::Packet;
use pnet_packet::icmp::echo_reply::EchoReplyPacket;
use pnet_packet::icmp::echo_request::MutableEchoRequestPacket;
use pnet_packet::icmp::{IcmpCode, IcmpPacket, IcmpTypes};
use pnet_packet::ipv4::Ipv4Packet;
use tokio::process::{Child, Command};
use vip_arp::netns::{LabError, NsThread, Segment};
use vip_core::MacAddr;
use vip_lease::testapi::{TestApi, TestApiConfig, TestApiError};

/// The VIP of the lab.
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
/// The lab's prefix length.
pub const PREFIX: u8 = 24;

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
    /// Its log file.
    pub log: PathBuf,
}

/// The lab.
pub struct Lab {
    /// The segment: hosts `0..n` are the nodes, then the client, then the
    /// observer.
    pub segment: Segment,
    /// The nodes.
    pub nodes: Vec<LabNode>,
    /// The API-server stand-in (one listener per node).
    pub api: TestApi,
    /// Extra environment for every manager.
    pub env: BTreeMap<String, String>,
    exe: PathBuf,
    dir: PathBuf,
    proxies: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

/// The index of the client host in the segment.
pub fn client_host(nodes: usize) -> usize {
    nodes
}

impl Lab {
    /// Build the lab: `nodes` node namespaces, a client and an observer on
    /// one bridge, the stand-in with a local endpoint per node, and the
    /// node objects. No manager runs yet. `exe` is the `vip` binary.
    pub async fn new(nodes: usize, exe: PathBuf) -> Result<Self, LabSetupError> {
        let segment = Segment::new("vd", nodes + 2)?;
        let dir = std::env::temp_dir().join(format!("vip-lab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        for (i, host) in segment.hosts.iter().enumerate() {
            let addr = Ipv4Addr::new(198, 18, 0, 11 + i as u8);
            host.ns.add_address("eth0", &format!("{addr}/{PREFIX}"))?;
            host.ns
                .add_address("eth0", &format!("2001:db8::{:x}/64", 0x11 + i))?;
        }
        let names: Vec<String> = (0..nodes).map(|i| format!("node-{}", i + 1)).collect();
        let api = TestApi::start(
            TestApiConfig {
                // A correctly prepared cluster: the VIP is a SAN.
                extra_sans: vec![VIP.to_string()],
                ..TestApiConfig::default()
            }
            .listeners(nodes)
            .tokens(std::iter::once("admin").chain(names.iter().map(String::as_str))),
        )
        .await?;
        for n in &names {
            api.store()
                .put_node(n, true, true, false)
                .map_err(|s| LabSetupError::Io {
                    what: format!("creating node {n}"),
                    source: std::io::Error::other(format!("{s:?}")),
                })?;
        }
        let mut lab_nodes = Vec::with_capacity(nodes);
        let mut proxies = Vec::with_capacity(nodes);
        for (i, name) in names.iter().enumerate() {
            let host = &segment.hosts[i];
            let iface = host.interface()?;
            let kubeconfig = api.kubeconfig_for(i, name)?;
            // The node's "local API server": 127.0.0.1:6443 inside its
            // namespace, proxied to its own listener of the stand-in.
            let listener = host
                .ns
                .run(Duration::from_secs(5), || async {
                    std::net::TcpListener::bind("127.0.0.1:6443")
                })?
                .map_err(io(format!("binding 127.0.0.1:6443 in {}", host.ns.name())))?;
            listener
                .set_nonblocking(true)
                .map_err(io("proxy listener"))?;
            let listener =
                tokio::net::TcpListener::from_std(listener).map_err(io("proxy listener"))?;
            let upstream = api.listener(i).addr();
            proxies.push(tokio::spawn(proxy(listener, upstream)));
            lab_nodes.push(LabNode {
                name: name.clone(),
                addr: Ipv4Addr::new(198, 18, 0, 11 + i as u8),
                mac: iface.mac,
                kubeconfig,
                process: None,
                log: dir.join(format!("{name}.log")),
            });
        }
        Ok(Self {
            segment,
            nodes: lab_nodes,
            api,
            env: BTreeMap::new(),
            exe,
            dir,
            proxies,
        })
    }

    /// `ip netns exec <node i> vip <args>` with the lab's settings
    /// (kube-vip's env block, the node's kubeconfig), not yet spawned.
    pub fn vip_command(&self, i: usize, args: &[&str]) -> Command {
        let ns = self.segment.hosts[i].ns.name();
        let node = &self.nodes[i];
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(&self.exe)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("vip_arp", "true")
            .env("cp_enable", "true")
            .env("vip_leaderelection", "true")
            .env("cp_namespace", "kube-system")
            .env("vip_interface", "eth0")
            .env("vip_address", VIP.to_string())
            .env("vip_nodename", &node.name)
            .env("k8s_config_file", &node.kubeconfig)
            .env("prometheus_server", ":2112")
            .env("RUST_LOG", "vip_core=debug,vip_lease=debug,vip=debug")
            .env("NO_COLOR", "1")
            .envs(&self.env)
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

    /// Start `vip manager` on node `i` with the lab's settings: the VIP on
    /// `eth0`, the node's kubeconfig, kube-vip's env block.
    pub fn start(&mut self, i: usize) -> Result<(), LabSetupError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.nodes[i].log)
            .map_err(io(format!("opening {}", self.nodes[i].log.display())))?;
        let log2 = log.try_clone().map_err(io("log file"))?;
        let mut cmd = self.vip_command(i, &["manager"]);
        cmd.stdout(log).stderr(log2);
        let node = &mut self.nodes[i];
        let child = cmd
            .spawn()
            .map_err(io(format!("starting vip manager on {}", node.name)))?;
        node.process = Some(child);
        Ok(())
    }

    /// Send `signal` to node `i`'s manager. With SIGKILL the process is
    /// reaped at once; with others, call [`wait`](Self::wait).
    pub fn signal(&mut self, i: usize, signal: i32) -> Result<(), LabSetupError> {
        let Some(child) = self.nodes[i].process.as_ref() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) on our own child's pid, which is still ours:
            // the child has not been reaped (we hold it).
            #[allow(unsafe_code)]
            let r = unsafe { libc::kill(pid as libc::pid_t, signal) };
            if r != 0 {
                return Err(LabSetupError::Io {
                    what: format!("signalling vip on {}", self.nodes[i].name),
                    source: std::io::Error::last_os_error(),
                });
            }
        }
        Ok(())
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

    /// The Lease's holder, straight from the stand-in's store.
    pub fn holder(&self) -> Option<String> {
        self.api
            .store()
            .get(
                vip_lease::testapi::Kind::Lease,
                "kube-system",
                "plndr-cp-lock",
            )
            .ok()
            .and_then(|v| v["spec"]["holderIdentity"].as_str().map(str::to_string))
            .filter(|h| !h.is_empty())
    }

    /// The node whose name is `holder`.
    pub fn node_index(&self, holder: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == holder)
    }

    /// Which nodes have the VIP on their interface now.
    pub fn vip_holders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.segment.hosts[i]
                    .ns
                    .address_lines("eth0")
                    .map(|lines| lines.iter().any(|l| l.contains(&format!("{VIP}/"))))
                    .unwrap_or(false)
            })
            .collect()
    }

    /// The MAC the client's kernel has for the VIP.
    pub fn client_resolves(&self) -> Option<MacAddr> {
        let host = &self.segment.hosts[client_host(self.nodes.len())];
        host.ns.neighbour("eth0", IpAddr::V4(VIP)).ok().flatten()
    }

    /// Start a pinger in the client namespace: an ICMP echo to the VIP
    /// every `interval` until `stop` is set (bounded by `limit`).
    pub fn ping(
        &self,
        interval: Duration,
        limit: Duration,
        stop: Arc<AtomicBool>,
    ) -> Result<NsThread<Vec<Ping>>, LabSetupError> {
        let host = &self.segment.hosts[client_host(self.nodes.len())];
        Ok(host
            .ns
            .spawn(limit + Duration::from_secs(1), move || async move {
                pinger(VIP, interval, limit, stop).unwrap_or_default()
            })?)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.process.take() {
                let _ = c.start_kill();
            }
        }
        for p in &self.proxies {
            p.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn proxy(listener: tokio::net::TcpListener, upstream: SocketAddr) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

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

fn pinger(
    target: Ipv4Addr,
    interval: Duration,
    limit: Duration,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Vec<Ping>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    let dest = SocketAddr::from((target, 0)).into();
    let id = (std::process::id() & 0xffff) as u16;
    let pings = Mutex::new(Vec::<Ping>::new());
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
        let sum = pnet_packet::icmp::checksum(&IcmpPacket::new(&pkt).expect("an ICMP packet"));
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
        let sent = Instant::now();
        socket.send_to(&pkt, &dest)?;
        pings.lock().expect("pings").push(Ping {
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
            let n = match std::io::Read::read(&mut &socket, &mut buf) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => return Err(e),
            };
            let Some(ip) = Ipv4Packet::new(&buf[..n]) else {
                continue;
            };
            if ip.get_source() != target {
                continue;
            }
            let Some(reply) = EchoReplyPacket::new(ip.payload()) else {
                continue;
            };
            if reply.get_icmp_type() != IcmpTypes::EchoReply || reply.get_identifier() != id {
                continue;
            }
            let s = reply.get_sequence_number();
            let mut p = pings.lock().expect("pings");
            if let Some(p) = p
                .iter_mut()
                .rev()
                .find(|p| p.seq == s && p.answered.is_none())
            {
                p.answered = Some(Instant::now());
            }
        }
        seq = seq.wrapping_add(1);
    }
    Ok(pings.into_inner().expect("pings"))
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
