//! The network-namespace lab: throw-away networks for tests, `vip demo` and
//! the e2e suite (needs root at run time).
//!
//! Everything is created *inside* namespaces the lab creates itself, through
//! `ip -n <ns>`: the host's own interfaces, routes and addresses are never
//! touched. Addresses used in these namespaces should come from
//! `198.18.0.0/15` and `2001:db8::/32` only.
//!
//! - [`Netns`]: one uniquely named namespace (prefix + pid + counter), with
//!   helpers for veth pairs, dummies, bridges, addresses and link state, and
//!   [`NsShell::run`] / [`NsShell::spawn`] to run async code *inside* it (a
//!   dedicated thread that enters the namespace with `setns(CLONE_NEWNET)`
//!   and drives a current-thread tokio runtime; there, read
//!   `/proc/thread-self/net/...`, since `/proc/self` is the main thread's
//!   namespace). Dropping it deletes the
//!   namespace, and with it every link inside.
//! - [`NsShell::drop_heartbeats`]: a `tc` filter that drops vip's
//!   layer-2 heartbeats on a link while ARP and IP pass.
//! - [`Segment`]: a bridge namespace plus N hosts, each with an `eth0`
//!   attached to the bridge: one flat layer-2 segment.
//! - [`wait_until`]: the bounded poll every wait uses.
//! - [`require_root`]: how a test skips (loudly) without root, or fails
//!   when `CI=true`.
//!
//! ```no_run
//! use std::time::Duration;
//! use vip_testkit::netns::Segment;
//! let seg = Segment::new("demo", 2).unwrap();
//! seg.hosts[0].ns.add_address("eth0", "198.18.0.1/24").unwrap();
//! let iface = seg.hosts[0].interface().unwrap();
//! let got = seg.hosts[0].ns.run(Duration::from_secs(5), move || async move {
//!     use vip_core::Announcer;
//!     let a = vip_arp::PacketAnnouncer::new();
//!     a.announce(&iface, "198.18.0.10".parse().unwrap()).await
//! }).unwrap();
//! ```

use std::fs::File;
use std::future::Future;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vip_core::{Interface, MacAddr};

use crate::sys;
use vip_arp::wire::heartbeat::ETHERTYPE_HEARTBEAT;

/// Where `ip netns` keeps its namespace handles.
pub const NETNS_DIR: &str = "/run/netns";
/// Longest prefix accepted for namespace names.
pub const MAX_PREFIX_LEN: usize = 8;
/// How often [`wait_until`] polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The priority of the heartbeat filters, so that they are removed alone.
const HEARTBEAT_FILTER_PREF: &str = "34997";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Errors of the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command could not be started.
    #[error("could not run `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A command exited with an error.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on standard error.
        stderr: String,
    },
    /// A command's output was not what was expected.
    #[error("unexpected output of `{command}`: {output:?}")]
    Output {
        /// The command line.
        command: String,
        /// Its output.
        output: String,
    },
    /// An invalid name prefix.
    #[error("invalid namespace prefix {0:?}: 1-{MAX_PREFIX_LEN} ASCII letters or digits")]
    Prefix(String),
    /// The namespace could not be entered or the runtime not built.
    #[error("cannot run code in namespace {name}")]
    Enter {
        /// The namespace.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The code run in a namespace did not finish in time.
    #[error("code in namespace {name} did not finish within {limit:?}")]
    Timeout {
        /// The namespace.
        name: String,
        /// The limit.
        limit: Duration,
    },
    /// The code run in a namespace panicked.
    #[error("code in namespace {name} panicked: {message}")]
    Panicked {
        /// The namespace.
        name: String,
        /// The panic message.
        message: String,
    },
    /// A [`wait_until`] condition did not become true in time.
    #[error("{what}: not reached within {limit:?}")]
    WaitTimeout {
        /// What was waited for.
        what: String,
        /// The limit.
        limit: Duration,
    },
}

/// Whether this process can build namespaces (root, `ip` installed).
///
/// When it cannot: with `CI=true` this panics (CI must run every test);
/// otherwise it prints a loud message naming `test` and returns `false`, and
/// the test returns early.
pub fn require_root(test: &str) -> bool {
    let ip_works = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if sys::is_root() && ip_works {
        return true;
    }
    let why = if ip_works {
        "it needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW)"
    } else {
        "it needs iproute2's `ip` (Debian package iproute2)"
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}, and CI=true: network-namespace tests must run in CI");
    }
    eprintln!(
        "\n**********\n*** SKIPPED {test}: {why}; run the tests as root to exercise the kernel\n**********\n"
    );
    false
}

/// Make the calling thread, and only it, run as `nobody` (uid and gid
/// 65534) without any capability: for testing permission errors inside
/// [`NsShell::run`]. The rest of the process keeps its privileges; the thread
/// cannot get them back.
pub fn drop_privileges_of_this_thread() -> Result<(), LabError> {
    sys::become_unprivileged(65534).map_err(|source| LabError::Enter {
        name: "(privileges)".into(),
        source,
    })
}

/// Poll `condition` every [`POLL_INTERVAL`] until it is true, for at most
/// `limit`.
pub fn wait_until(
    what: &str,
    limit: Duration,
    mut condition: impl FnMut() -> Result<bool, LabError>,
) -> Result<(), LabError> {
    let deadline = Instant::now() + limit;
    loop {
        if condition()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LabError::WaitTimeout {
                what: what.to_string(),
                limit,
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn run_command(program: &str, args: &[&str]) -> Result<String, LabError> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| LabError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(LabError::Command {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A cheap, cloneable, `Send` handle to run commands in a namespace, for use
/// inside code run by [`NsShell::run`] (which must be `'static`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsShell {
    name: String,
}

impl NsShell {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> <args>`; its standard output.
    pub fn ip(&self, args: &[&str]) -> Result<String, LabError> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_command("ip", &full)
    }

    /// `ip netns exec <ns> <program> <args>`; its standard output.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, LabError> {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        run_command("ip", &full)
    }

    /// Add `cidr` to `link` (IPv6 with `nodad`, usable at once).
    pub fn add_address(&self, link: &str, cidr: &str) -> Result<(), LabError> {
        if cidr.contains(':') {
            self.ip(&["-6", "addr", "add", cidr, "dev", link, "nodad"])?;
        } else {
            self.ip(&["addr", "add", cidr, "dev", link])?;
        }
        Ok(())
    }

    /// Remove `cidr` from `link`.
    pub fn del_address(&self, link: &str, cidr: &str) -> Result<(), LabError> {
        self.ip(&["addr", "del", cidr, "dev", link]).map(drop)
    }

    /// Set `link` administratively up.
    pub fn set_up(&self, link: &str) -> Result<(), LabError> {
        self.ip(&["link", "set", "dev", link, "up"]).map(drop)
    }

    /// Set `link` administratively down.
    pub fn set_down(&self, link: &str) -> Result<(), LabError> {
        self.ip(&["link", "set", "dev", link, "down"]).map(drop)
    }

    /// `link`'s name, index and MAC, read from `ip -o link show`.
    pub fn interface(&self, link: &str) -> Result<Interface, LabError> {
        let out = self.ip(&["-o", "link", "show", "dev", link])?;
        let bad = || LabError::Output {
            command: format!("ip -n {} -o link show dev {link}", self.name),
            output: out.clone(),
        };
        let index = out
            .split(':')
            .next()
            .and_then(|i| i.trim().parse().ok())
            .ok_or_else(bad)?;
        let mut words = out.split_whitespace();
        words.find(|w| *w == "link/ether").ok_or_else(bad)?;
        let mac: MacAddr = words.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        Ok(Interface {
            name: link.to_string(),
            index,
            mac,
        })
    }

    /// The MAC of the kernel's neighbour entry for `address` on `link`, if
    /// any (`FAILED`/`INCOMPLETE` entries have none).
    pub fn neighbour(&self, link: &str, address: IpAddr) -> Result<Option<MacAddr>, LabError> {
        let a = address.to_string();
        let out = self.ip(&["neigh", "show", &a, "dev", link])?;
        let mut words = out.split_whitespace();
        if !words.any(|w| w == "lladdr") {
            return Ok(None);
        }
        Ok(words.next().and_then(|m| m.parse().ok()))
    }

    /// Create or replace the neighbour entry `address` → `mac` on `link`
    /// in state `STALE`.
    pub fn seed_neighbour(
        &self,
        link: &str,
        address: IpAddr,
        mac: MacAddr,
    ) -> Result<(), LabError> {
        let (a, m) = (address.to_string(), mac.to_string());
        self.ip(&[
            "neigh", "replace", &a, "lladdr", &m, "dev", link, "nud", "stale",
        ])
        .map(drop)
    }

    /// `tc -n <ns> <args>`; its standard output.
    pub fn tc(&self, args: &[&str]) -> Result<String, LabError> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_command("tc", &full)
    }

    /// Drop every vip heartbeat (EtherType 0x88B5) on `link`, in both
    /// directions, and nothing else: ARP and IP pass untouched. Idempotent;
    /// undone by [`pass_heartbeats`](Self::pass_heartbeats). On a host's
    /// own interface the host's sends fail (`ENOBUFS`, the egress drop);
    /// on a bridge port, as [`Segment::drop_heartbeats`] does it, they
    /// succeed and are dropped in the "switch".
    ///
    /// A `clsact` qdisc with one filter per direction, selecting on the
    /// frame's protocol 0x88B5: a one-instruction classic-BPF program in
    /// direct-action mode that returns `TC_ACT_SHOT` (2). (Not `matchall
    /// action drop`: kernels without the `cls_matchall`/`act_gact` modules,
    /// like this lab's, refuse it.)
    pub fn drop_heartbeats(&self, link: &str) -> Result<(), LabError> {
        self.tc(&["qdisc", "replace", "dev", link, "clsact"])?;
        let program = ["handle", "1", "bpf", "da", "bytecode", "1,6 0 0 2"];
        self.heartbeat_filters("replace", link, &program)
    }

    /// Remove the filters of [`drop_heartbeats`](Self::drop_heartbeats)
    /// from `link` (an error if they are not there).
    pub fn pass_heartbeats(&self, link: &str) -> Result<(), LabError> {
        self.heartbeat_filters("del", link, &[])
    }

    /// `tc filter <verb>` of the heartbeat filter on `link`, both
    /// directions, with `rest` appended.
    fn heartbeat_filters(&self, verb: &str, link: &str, rest: &[&str]) -> Result<(), LabError> {
        let protocol = format!("{ETHERTYPE_HEARTBEAT:#06x}");
        for direction in ["ingress", "egress"] {
            let mut args = vec!["filter", verb, "dev", link, direction];
            args.extend(["protocol", &protocol, "pref", HEARTBEAT_FILTER_PREF]);
            args.extend_from_slice(rest);
            self.tc(&args)?;
        }
        Ok(())
    }

    /// The addresses on `link` as `ip -o addr show` prints them, one line
    /// per address (with `valid_lft`, `preferred_lft` and flags).
    pub fn address_lines(&self, link: &str) -> Result<Vec<String>, LabError> {
        let out = self.ip(&["-o", "addr", "show", "dev", link])?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// Run `f` inside this namespace on a dedicated thread with a
    /// current-thread tokio runtime, for at most `limit`, and return its
    /// output.
    pub fn run<F, Fut, T>(&self, limit: Duration, f: F) -> Result<T, LabError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        self.spawn(limit, f)?.join()
    }

    /// Like [`run`](Self::run), but return at once with a handle to join.
    pub fn spawn<F, Fut, T>(&self, limit: Duration, f: F) -> Result<NsThread<T>, LabError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let name = self.name().to_string();
        let enter = |source| LabError::Enter {
            name: name.clone(),
            source,
        };
        let handle = File::open(format!("{NETNS_DIR}/{name}")).map_err(enter)?;
        let thread_name = name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn(move || -> Result<T, LabError> {
                let enter = |source| LabError::Enter {
                    name: thread_name.clone(),
                    source,
                };
                sys::enter_netns(handle.as_fd()).map_err(enter)?;
                drop(handle);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(enter)?;
                runtime
                    .block_on(async move { tokio::time::timeout(limit, f()).await })
                    .map_err(|_| LabError::Timeout {
                        name: thread_name.clone(),
                        limit,
                    })
            })
            .map_err(enter)?;
        Ok(NsThread { name, thread })
    }
}

/// A uniquely named network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    shell: NsShell,
}

impl std::ops::Deref for Netns {
    type Target = NsShell;

    fn deref(&self) -> &NsShell {
        &self.shell
    }
}

impl Netns {
    /// Create `<prefix><pid>-<n>` (with `lo` up). `prefix`: 1 to
    /// [`MAX_PREFIX_LEN`] ASCII alphanumerics.
    pub fn new(prefix: &str) -> Result<Self, LabError> {
        if prefix.is_empty()
            || prefix.len() > MAX_PREFIX_LEN
            || !prefix.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(LabError::Prefix(prefix.to_string()));
        }
        let pid = std::process::id();
        let mut last = None;
        // A stale namespace of a dead process with the same pid may hold a
        // name: try a few counters, a bounded number of times.
        for _ in 0..16 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("{prefix}{pid}-{n}");
            match run_command("ip", &["netns", "add", &name]) {
                Ok(_) => {
                    let ns = Self {
                        shell: NsShell { name },
                    };
                    ns.set_up("lo")?;
                    return Ok(ns);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(LabError::Prefix(prefix.to_string())))
    }

    /// A handle to run commands in this namespace from anywhere.
    pub fn shell(&self) -> NsShell {
        self.shell.clone()
    }

    /// Add a veth pair: `name` here, `peer_name` in `peer` (which may be
    /// this namespace). Both are left down.
    pub fn add_veth(&self, name: &str, peer: &Netns, peer_name: &str) -> Result<(), LabError> {
        self.ip(&[
            "link",
            "add",
            "name",
            name,
            "type",
            "veth",
            "peer",
            "name",
            peer_name,
            "netns",
            peer.name(),
        ])
        .map(drop)
    }

    /// Add a stub interface `name`, up with carrier: one end of a veth pair
    /// whose other end, `<name>-p`, is also here and up. (Kernels without
    /// the `dummy` module have veth.) `name` may have at most 13 bytes.
    pub fn add_stub(&self, name: &str) -> Result<(), LabError> {
        let peer = format!("{name}-p");
        self.add_veth(name, self, &peer)?;
        self.set_up(&peer)?;
        self.set_up(name)
    }

    /// Add a bridge (no STP, no multicast snooping: every frame floods), up.
    pub fn add_bridge(&self, name: &str) -> Result<(), LabError> {
        self.ip(&[
            "link",
            "add",
            "name",
            name,
            "type",
            "bridge",
            "stp_state",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        self.set_up(name)
    }

    /// Attach `port` to `bridge`.
    pub fn set_master(&self, port: &str, bridge: &str) -> Result<(), LabError> {
        self.ip(&["link", "set", "dev", port, "master", bridge])
            .map(drop)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run_command("ip", &["netns", "del", self.name()]) {
            eprintln!("lab: could not delete namespace {}: {e}", self.name());
        }
    }
}

/// Code running inside a namespace (see [`NsShell::spawn`]).
#[derive(Debug)]
pub struct NsThread<T> {
    name: String,
    thread: JoinHandle<Result<T, LabError>>,
}

impl<T> NsThread<T> {
    /// Wait for the code to finish (it is bounded by its own limit).
    pub fn join(self) -> Result<T, LabError> {
        match self.thread.join() {
            Ok(r) => r,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".into());
                Err(LabError::Panicked {
                    name: self.name,
                    message,
                })
            }
        }
    }

    /// Whether the code has finished.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }
}

/// One host of a [`Segment`].
#[derive(Debug)]
pub struct Host {
    /// Its namespace.
    pub ns: Netns,
    /// Its interface on the segment (`eth0`).
    pub link: String,
}

impl Host {
    /// The segment interface's name, index and MAC.
    pub fn interface(&self) -> Result<Interface, LabError> {
        self.ns.interface(&self.link)
    }
}

/// A flat layer-2 segment: a namespace holding bridge `br0`, and hosts each
/// in their own namespace with `eth0` cabled to a port `p<i>` of the bridge.
/// All links are up; no addresses are set.
#[derive(Debug)]
pub struct Segment {
    /// The hosts, in order.
    pub hosts: Vec<Host>,
    /// The namespace holding the bridge.
    pub bridge: Netns,
}

impl Segment {
    /// Build a segment of `hosts` hosts; namespaces are named from
    /// `prefix` (at most [`MAX_PREFIX_LEN`]` - 1` characters).
    pub fn new(prefix: &str, hosts: usize) -> Result<Self, LabError> {
        let bridge = Netns::new(&format!("{prefix}b"))?;
        bridge.add_bridge("br0")?;
        let mut segment = Self {
            hosts: Vec::with_capacity(hosts),
            bridge,
        };
        for i in 0..hosts {
            let ns = Netns::new(&format!("{prefix}h"))?;
            let port = Self::port(i);
            ns.add_veth("eth0", &segment.bridge, &port)?;
            segment.bridge.set_master(&port, "br0")?;
            segment.bridge.set_up(&port)?;
            ns.set_up("eth0")?;
            segment.hosts.push(Host {
                ns,
                link: "eth0".into(),
            });
        }
        Ok(segment)
    }

    /// The bridge port host `i` is cabled to.
    fn port(i: usize) -> String {
        format!("p{i}")
    }

    /// Make the bridge drop vip heartbeats to and from host `i` while ARP
    /// and IP pass: a switch that filters them. The host's own sends still
    /// succeed. Undone by [`pass_heartbeats`](Self::pass_heartbeats).
    pub fn drop_heartbeats(&self, i: usize) -> Result<(), LabError> {
        self.bridge.drop_heartbeats(&Self::port(i))
    }

    /// Let host `i`'s heartbeats through the bridge again.
    pub fn pass_heartbeats(&self, i: usize) -> Result<(), LabError> {
        self.bridge.pass_heartbeats(&Self::port(i))
    }
}
