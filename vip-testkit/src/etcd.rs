//! A real etcd cluster for tests: one or three members of the system's
//! `etcd` (Debian's `etcd-server`, 3.4) on loopback, on free ports, with
//! mutual TLS from certificates generated here (rcgen), everything in a
//! temporary directory.
//!
//! - [`EtcdCluster::start`] generates a CA, one server/peer certificate per
//!   member (SANs `127.0.0.1`, `localhost`), a client certificate, and a
//!   *foreign* CA with its own client certificate (for the tests of a wrong
//!   certificate), then starts the members and waits, bounded, until each
//!   one logs that it serves clients (which needs a quorum).
//! - [`EtcdCluster::kill`] / [`EtcdCluster::restart`] stop (SIGKILL) and
//!   start one member with its data kept; [`EtcdCluster::stop_all`] /
//!   [`EtcdCluster::start_all`] the whole cluster.
//! - Dropping the cluster kills every member and removes the directory.
//!
//! Tests that need etcd call [`EtcdCluster::start_or_skip`]: without an
//! `etcd` binary they skip loudly, except under `CI=true`, where they fail.
//! `VIP_ETCD_BIN` names another binary.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use rcgen::ExtendedKeyUsagePurpose;

use crate::pki::{ca, free_port, leaf};
use crate::placement::Placement;

/// How long one member may take to serve clients after it was started.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The log line of etcd 3.4 (zap) that says a member serves clients; it
/// comes after the member is ready, which needs a quorum.
const READY_LINE: &str = "serving client traffic";

/// Errors of the etcd fixture.
#[derive(Debug, thiserror::Error)]
pub enum EtcdFixtureError {
    /// No etcd binary.
    #[error("no etcd binary at {path} (install Debian's etcd-server, or set VIP_ETCD_BIN)")]
    NoBinary {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A certificate could not be generated.
    #[error("cannot generate the test certificates")]
    Certificate(#[source] rcgen::Error),
    /// A file or process operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A member did not serve clients in time.
    #[error(
        "etcd member {member} did not become ready within {timeout:?}; its log ends with: {log_tail}"
    )]
    NotReady {
        /// The member's name.
        member: String,
        /// The bound.
        timeout: Duration,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A member index out of range.
    #[error("no member {0}")]
    NoMember(usize),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EtcdFixtureError {
    let what = what.into();
    move |source| EtcdFixtureError::Io { what, source }
}

/// Paths of a client's TLS material, as `--etcdCACert`, `--etcdCert` and
/// `--etcdKey` take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA that signed the servers' certificates (PEM).
    pub ca: PathBuf,
    /// The client certificate (PEM).
    pub cert: PathBuf,
    /// The client's private key (PEM, PKCS#8).
    pub key: PathBuf,
}

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Inside a lab namespace, or (`None`) on the host's loopback.
    place: Option<Placement>,
}

impl Member {
    fn client_url(&self) -> String {
        self.place.as_ref().map_or_else(
            || format!("https://127.0.0.1:{}", self.client_port),
            |p| p.url(self.client_port),
        )
    }

    fn peer_url(&self) -> String {
        self.place.as_ref().map_or_else(
            || format!("https://127.0.0.1:{}", self.peer_port),
            |p| p.url(self.peer_port),
        )
    }

    /// Where it listens for clients: its URL, and when placed in a
    /// namespace also that namespace's `127.0.0.1` (the node-local client
    /// endpoint of a stacked control plane).
    fn listen_client_urls(&self) -> String {
        match self.place {
            Some(_) => format!(
                "{},https://127.0.0.1:{}",
                self.client_url(),
                self.client_port
            ),
            None => self.client_url(),
        }
    }
}

/// A running etcd cluster on loopback; see the [module](self) docs.
#[derive(Debug)]
pub struct EtcdCluster {
    binary: PathBuf,
    members: Vec<Member>,
    initial_cluster: String,
    ca: PathBuf,
    client: ClientTls,
    foreign: ClientTls,
    // Last, so the members are killed before their directory goes.
    dir: tempfile::TempDir,
}

/// The etcd binary: `VIP_ETCD_BIN`, else `/usr/bin/etcd`, else `etcd` on
/// `PATH`.
pub fn etcd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VIP_ETCD_BIN") {
        return Some(PathBuf::from(p));
    }
    let debian = PathBuf::from("/usr/bin/etcd");
    if debian.is_file() {
        return Some(debian);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    })
}

fn write(path: &Path, contents: &str) -> Result<(), EtcdFixtureError> {
    std::fs::write(path, contents).map_err(io(format!("write {}", path.display())))
}

impl EtcdCluster {
    /// Start a cluster of `members` members (1 or 3 are the useful sizes)
    /// and wait until every member serves clients.
    pub async fn start(members: usize) -> Result<Self, EtcdFixtureError> {
        Self::launch(vec![None; members]).await
    }

    /// Start one member in each of `places` (a lab namespace and its
    /// address), on the standard ports (clients 2379 on the address and on
    /// the namespace's `127.0.0.1`, peers 2380 on the address), and wait
    /// until every member serves clients. The endpoints are reachable from
    /// the lab's segment, not from the host.
    pub async fn start_in(places: &[Placement]) -> Result<Self, EtcdFixtureError> {
        Self::launch(places.iter().cloned().map(Some).collect()).await
    }

    async fn launch(places: Vec<Option<Placement>>) -> Result<Self, EtcdFixtureError> {
        let members = places.len();
        let binary = etcd_binary().ok_or_else(|| EtcdFixtureError::NoBinary {
            path: PathBuf::from("/usr/bin/etcd"),
        })?;
        if !binary.is_file() {
            return Err(EtcdFixtureError::NoBinary { path: binary });
        }
        let dir = tempfile::Builder::new()
            .prefix("vip-etcd-")
            .tempdir()
            .map_err(io("create the etcd temporary directory"))?;
        let root = dir.path();
        let cert_err = EtcdFixtureError::Certificate;

        let (ca_pem, issuer) = ca("vip-testkit-etcd-ca").map_err(cert_err)?;
        let ca_path = root.join("ca.crt");
        write(&ca_path, &ca_pem)?;
        let (client_pem, client_key) = leaf(
            &issuer,
            "vip",
            &[],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
        .map_err(cert_err)?;
        let client = ClientTls {
            ca: ca_path.clone(),
            cert: root.join("client.crt"),
            key: root.join("client.key"),
        };
        write(&client.cert, &client_pem)?;
        write(&client.key, &client_key)?;

        let (foreign_ca_pem, foreign_issuer) = ca("vip-testkit-foreign-ca").map_err(cert_err)?;
        let (foreign_pem, foreign_key) = leaf(
            &foreign_issuer,
            "vip",
            &[],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
        .map_err(cert_err)?;
        let foreign = ClientTls {
            ca: root.join("foreign-ca.crt"),
            cert: root.join("foreign-client.crt"),
            key: root.join("foreign-client.key"),
        };
        write(&foreign.ca, &foreign_ca_pem)?;
        write(&foreign.cert, &foreign_pem)?;
        write(&foreign.key, &foreign_key)?;

        let mut list = Vec::with_capacity(members);
        for (i, place) in places.into_iter().enumerate() {
            let name = format!("m{i}");
            let addr = place.as_ref().map(|p| p.addr.to_string());
            let mut sans = vec!["127.0.0.1", "localhost"];
            sans.extend(addr.as_deref());
            let (pem, key) = leaf(
                &issuer,
                &name,
                &sans,
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            )
            .map_err(cert_err)?;
            // A namespace of its own has its own ports: the standard ones.
            let (client_port, peer_port) = match place {
                Some(_) => (2379, 2380),
                None => (
                    free_port().map_err(io("bind a free port"))?,
                    free_port().map_err(io("bind a free port"))?,
                ),
            };
            let member = Member {
                client_port,
                peer_port,
                data_dir: root.join(format!("{name}.etcd")),
                cert: root.join(format!("{name}.crt")),
                key: root.join(format!("{name}.key")),
                log: root.join(format!("{name}.log")),
                name,
                child: None,
                place,
            };
            write(&member.cert, &pem)?;
            write(&member.key, &key)?;
            list.push(member);
        }
        let initial_cluster = list
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            binary,
            members: list,
            initial_cluster,
            ca: ca_path,
            client,
            foreign,
            dir,
        };
        cluster.start_all().await?;
        Ok(cluster)
    }

    /// [`EtcdCluster::start`], or `None` with a loud message when there is
    /// no etcd binary and `CI` is not `true` (under CI this panics: the
    /// tests must run there).
    pub async fn start_or_skip(members: usize) -> Option<Self> {
        if etcd_binary().is_none_or(|b| !b.is_file()) {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "etcd is needed in CI (.ci/run installs etcd-server)"
            );
            eprintln!("SKIPPED: no etcd binary (install etcd-server or set VIP_ETCD_BIN)");
            return None;
        }
        // Free ports are picked before etcd binds them, so another process
        // may take one in between: a failed start is retried on new ports.
        let mut attempt = 1;
        loop {
            match Self::start(members).await {
                Ok(c) => return Some(c),
                Err(e) if attempt < 3 => {
                    eprintln!(
                        "etcd did not start (attempt {attempt} of 3, retrying on new ports): {e}"
                    );
                    attempt += 1;
                }
                Err(e) => panic!("cannot start etcd after 3 attempts: {e}"),
            }
        }
    }

    /// The client URLs of every member, `https://127.0.0.1:<port>`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// The client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> Option<String> {
        self.members.get(i).map(Member::client_url)
    }

    /// How many members the cluster has.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// The CA, client certificate and key a client of this cluster uses.
    pub fn client_tls(&self) -> &ClientTls {
        &self.client
    }

    /// A CA and a client certificate of a different authority: a client
    /// with them neither trusts the servers nor is trusted by them.
    pub fn foreign_tls(&self) -> &ClientTls {
        &self.foreign
    }

    /// The cluster's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether member `i` runs (was started and not killed).
    pub fn is_running(&self, i: usize) -> bool {
        self.members.get(i).is_some_and(|m| m.child.is_some())
    }

    fn spawn(&mut self, i: usize) -> Result<(), EtcdFixtureError> {
        let m = self
            .members
            .get_mut(i)
            .ok_or(EtcdFixtureError::NoMember(i))?;
        if m.child.is_some() {
            return Ok(());
        }
        // A fresh log per start, so readiness is judged on this start only.
        let log = File::create(&m.log).map_err(io(format!("create {}", m.log.display())))?;
        let err = log.try_clone().map_err(io("duplicate the log handle"))?;
        let client_url = m.client_url();
        let listen_client_urls = m.listen_client_urls();
        let peer_url = m.peer_url();
        let ca = self.ca.display().to_string();
        let cert = m.cert.display().to_string();
        let key = m.key.display().to_string();
        let child = Placement::command_for(m.place.as_ref(), &self.binary)
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &listen_client_urls])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "vip-testkit"])
            .args(["--cert-file", &cert, "--key-file", &key])
            .args(["--trusted-ca-file", &ca, "--client-cert-auth"])
            .args(["--peer-cert-file", &cert, "--peer-key-file", &key])
            .args(["--peer-trusted-ca-file", &ca, "--peer-client-cert-auth"])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(io(format!("start {}", self.binary.display())))?;
        m.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self, i: usize) -> Result<(), EtcdFixtureError> {
        let end = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            let m = self
                .members
                .get_mut(i)
                .ok_or(EtcdFixtureError::NoMember(i))?;
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            if text.contains(READY_LINE) {
                return Ok(());
            }
            let exited = m
                .child
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some());
            if exited || tokio::time::Instant::now() >= end {
                let tail: Vec<&str> = text.lines().rev().take(3).collect();
                let log_tail = tail.into_iter().rev().collect::<Vec<_>>().join(" | ");
                return Err(EtcdFixtureError::NotReady {
                    member: m.name.clone(),
                    timeout: READY_TIMEOUT,
                    log_tail,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Start every member that does not run and wait, bounded, until all
    /// serve clients.
    pub async fn start_all(&mut self) -> Result<(), EtcdFixtureError> {
        let stopped: Vec<usize> = (0..self.members.len())
            .filter(|&i| !self.is_running(i))
            .collect();
        for &i in &stopped {
            self.spawn(i)?;
        }
        for &i in &stopped {
            self.wait_ready(i).await?;
        }
        Ok(())
    }

    /// Kill member `i` (SIGKILL), keeping its data.
    pub fn kill(&mut self, i: usize) -> Result<(), EtcdFixtureError> {
        let m = self
            .members
            .get_mut(i)
            .ok_or(EtcdFixtureError::NoMember(i))?;
        if let Some(mut c) = m.child.take() {
            // An already exited child makes kill fail; wait reaps it anyway.
            let _ = c.kill();
            c.wait()
                .map_err(io(format!("reap etcd member {}", m.name)))?;
        }
        Ok(())
    }

    /// Start member `i` again (its data kept) and wait until it serves
    /// clients; with a quorum lost, only once enough members run.
    pub async fn restart(&mut self, i: usize) -> Result<(), EtcdFixtureError> {
        self.spawn(i)?;
        self.wait_ready(i).await
    }

    /// Kill every member.
    pub fn stop_all(&mut self) -> Result<(), EtcdFixtureError> {
        for i in 0..self.members.len() {
            self.kill(i)?;
        }
        Ok(())
    }

    /// Compacts the keyspace at its current revision (physically), as
    /// etcd's own compactor or `etcdctl compact` would: a watch resumed
    /// from an older revision is refused afterwards. Returns the revision.
    pub async fn compact(&self) -> Result<i64, EtcdFixtureError> {
        let failed = |what: &str| {
            let what = what.to_owned();
            move |e: etcd_client::Error| EtcdFixtureError::Io {
                what,
                source: std::io::Error::other(e),
            }
        };
        let read = |p: &Path| std::fs::read(p).map_err(io(format!("read {}", p.display())));
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&self.client.ca)?))
            .identity(etcd_client::Identity::from_pem(
                read(&self.client.cert)?,
                read(&self.client.key)?,
            ));
        let options = etcd_client::ConnectOptions::new()
            .with_tls(tls)
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10));
        let mut client = etcd_client::Client::connect(self.endpoints(), Some(options))
            .await
            .map_err(failed("connect to etcd to compact it"))?;
        let revision = client
            .get(
                "/",
                Some(
                    etcd_client::GetOptions::new()
                        .with_keys_only()
                        .with_limit(1),
                ),
            )
            .await
            .map_err(failed("read etcd's revision"))?
            .header()
            .map(|h| h.revision())
            .unwrap_or_default();
        client
            .compact(
                revision,
                Some(etcd_client::CompactionOptions::new().with_physical()),
            )
            .await
            .map_err(failed("compact etcd"))?;
        Ok(revision)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
