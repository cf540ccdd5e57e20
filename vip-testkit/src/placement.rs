//! Where a fixture's process runs: on the host's loopback (the default of
//! [`crate::etcd`] and [`crate::apiserver`]), or inside a lab namespace on
//! one of its addresses, as the daemons of a control-plane node do.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use crate::netns::NsShell;

/// A process inside the namespace `ns`, reachable on the segment at `addr`
/// (and on `127.0.0.1` inside the namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The node's namespace.
    pub ns: NsShell,
    /// The node's address on the segment.
    pub addr: IpAddr,
}

impl Placement {
    /// `ip netns exec <ns> <program>`, not yet spawned: `ip` enters the
    /// namespace and execs the program, so the child's pid is the
    /// program's own (a kill reaches it).
    pub(crate) fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.ns.name()]).arg(program);
        cmd
    }

    /// `program` run here when placed, on the host otherwise.
    pub(crate) fn command_for(place: Option<&Self>, program: &Path) -> Command {
        place.map_or_else(|| Command::new(program), |p| p.command(program))
    }

    /// `https://<addr>:<port>`.
    pub(crate) fn url(&self, port: u16) -> String {
        https_url(self.addr, port)
    }
}

/// `https://<addr>:<port>`, brackets around an IPv6 address.
pub(crate) fn https_url(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("https://{a}:{port}"),
        IpAddr::V6(a) => format!("https://[{a}]:{port}"),
    }
}
