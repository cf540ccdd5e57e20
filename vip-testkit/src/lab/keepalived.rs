//! keepalived on the lab, for the comparison runs of the failover
//! benchmark.

use std::io::ErrorKind;
use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::process::kill;
use super::{Lab, LabSetupError, io};

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

impl Lab {
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

    /// The process id of node `i`'s keepalived (its parent process), when
    /// running.
    pub fn keepalived_pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].keepalived.as_ref().and_then(Child::id)
    }

    /// Send `signal` to node `i`'s keepalived, all its processes (its
    /// process group).
    pub fn signal_keepalived(&self, i: usize, signal: i32) -> Result<(), LabSetupError> {
        let Some(pid) = self.keepalived_pid(i) else {
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
