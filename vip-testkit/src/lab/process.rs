//! The managers' processes: starting, signalling, waiting, one-shot `vip`
//! commands, and what they report (metrics, logs).

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{Host, LEASE, Lab, LabSetupError, io};

impl Lab {
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
    pub(super) fn manager_command(
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

    pub(super) fn log_file(
        &self,
        i: usize,
    ) -> Result<(std::fs::File, std::fs::File), LabSetupError> {
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
}

/// kill(2).
pub(super) fn kill(pid: i32, signal: i32) -> std::io::Result<()> {
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
