//! A real `kube-apiserver` for tests, next to the stand-in
//! ([`crate::testapi`]): the server users run, built from the
//! `k8s.io/kubernetes` Go module ([`binary`]), started the way envtest
//! starts it, over a real etcd ([`crate::etcd`]).
//!
//! [`RealApi::start`] starts one etcd member (mutual TLS) and `servers`
//! API servers over it, each on its own loopback port: several API servers
//! over one etcd is how a highly available control plane runs, and lets a
//! test give each node its local API server as the stand-in's listeners
//! do. Every server has:
//!
//! - a serving certificate from the fixture's CA, for `127.0.0.1`,
//!   `localhost`, `kubernetes`, `kubernetes.default` and
//!   [`RealApiConfig::extra_sans`];
//! - static bearer tokens ([`RealApiConfig::tokens`], the stand-in's
//!   [`TokenSpec`]s, through `--token-auth-file`): a
//!   [`Role::Admin`] token is in `system:masters`, a [`Role::Forbidden`]
//!   one in no group, so RBAC denies it everything, as the stand-in does,
//!   and a [`Role::NoSecrets`] one everything but Secrets (`roles.rs`);
//! - RBAC authorization, client-certificate authentication against the
//!   fixture's CA, and a service-account issuer with its own signing key
//!   (so `TokenRequest` works and ServiceAccount tokens authenticate).
//!
//! It waits, bounded by [`READY_TIMEOUT`], until every server answers
//! `GET /readyz` with 200. Dropping it kills the servers and etcd and
//! removes the directory.
//!
//! Tests call [`RealApi::start_or_skip`]: without a `kube-apiserver` (no
//! Go toolchain to build one) or without etcd they skip loudly, except
//! under `CI=true`, where they fail.

pub mod binary;
pub mod netns;
mod roles;
mod service_account;
pub use roles::NO_SECRETS_GROUP;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use rcgen::ExtendedKeyUsagePurpose;

use crate::etcd::{EtcdCluster, EtcdFixtureError, etcd_binary};
use crate::pki::{ca, free_port, leaf};
use crate::placement::Placement;
use crate::testapi::{Role, TokenSpec};

/// How long a server may take to answer `/readyz` after it was started.
pub const READY_TIMEOUT: Duration = Duration::from_secs(45);

/// The Service IP range the servers are configured with. No traffic is
/// sent to it (there is no proxy); it is inside the lab's 198.18.0.0/15.
pub const SERVICE_CIDR: &str = "198.19.255.0/24";

/// Errors of the real API server fixture.
#[derive(Debug, thiserror::Error)]
pub enum RealApiError {
    /// No binary.
    #[error(transparent)]
    Binary(#[from] binary::BinaryError),
    /// etcd did not start.
    #[error("etcd for kube-apiserver: {0}")]
    Etcd(#[from] EtcdFixtureError),
    /// A certificate or key could not be generated.
    #[error("cannot generate the kube-apiserver certificates")]
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
    /// A server did not become ready in time, or exited.
    #[error(
        "kube-apiserver {server} was not ready within {timeout:?}: {reason}; its log ends with: {log_tail}"
    )]
    NotReady {
        /// The server's index.
        server: usize,
        /// The bound.
        timeout: Duration,
        /// Why it was judged not ready.
        reason: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// No such server or user.
    #[error("no {what} {name}")]
    Unknown {
        /// "server" or "token".
        what: &'static str,
        /// Which.
        name: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RealApiError {
    let what = what.into();
    move |source| RealApiError::Io { what, source }
}

/// How to start the real API server.
#[derive(Debug, Clone)]
pub struct RealApiConfig {
    /// How many API servers over the one etcd (each its own port).
    pub servers: usize,
    /// The client identities (static tokens); the first is the default
    /// kubeconfig's.
    pub tokens: Vec<TokenSpec>,
    /// Extra serving-certificate names (DNS names or IPs).
    pub extra_sans: Vec<String>,
}

impl Default for RealApiConfig {
    /// One server, one admin token `admin`.
    fn default() -> Self {
        Self {
            servers: 1,
            tokens: vec![TokenSpec::admin("admin")],
            extra_sans: Vec::new(),
        }
    }
}

impl RealApiConfig {
    /// `n` servers.
    pub fn servers(mut self, n: usize) -> Self {
        self.servers = n.max(1);
        self
    }

    /// Admin tokens with these names (replacing the default).
    pub fn tokens<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        self.tokens = names.into_iter().map(TokenSpec::admin).collect();
        self
    }

    /// Adds a token.
    pub fn token(mut self, token: TokenSpec) -> Self {
        self.tokens.push(token);
        self
    }
}

#[derive(Debug)]
struct Server {
    port: u16,
    cert: PathBuf,
    key: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Inside a lab namespace ([`netns`]), or (`None`) on the host's
    /// loopback.
    place: Option<Placement>,
}

impl Server {
    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

/// Running API servers over a real etcd; see the [module](self) docs.
#[derive(Debug)]
pub struct RealApi {
    binary: PathBuf,
    servers: Vec<Server>,
    tokens: Vec<TokenSpec>,
    ca_path: PathBuf,
    client_key: PathBuf,
    sa_key: PathBuf,
    token_file: PathBuf,
    etcd: EtcdCluster,
    // Last, so the servers are killed before their directory goes.
    dir: tempfile::TempDir,
}

fn write(path: &Path, contents: &str) -> Result<(), RealApiError> {
    std::fs::write(path, contents).map_err(io(format!("write {}", path.display())))
}

/// The `--token-auth-file` text: `token,user,uid,"groups"` per line.
fn token_file(tokens: &[TokenSpec]) -> String {
    tokens
        .iter()
        .map(|t| {
            let groups = roles::groups(t.role);
            format!("{},{},{},\"{groups}\"\n", t.token, t.name, t.name)
        })
        .collect()
}

/// Whether the fixture can run here: a `kube-apiserver` (built if needed)
/// and an etcd binary. Under `CI=true` a missing piece panics; elsewhere
/// it is printed as a loud skip and `false` returned.
pub fn available_or_skip() -> bool {
    let missing = match (binary::kube_apiserver(), etcd_binary()) {
        (Err(e), _) => e.to_string(),
        (Ok(_), None) => "no etcd binary (install etcd-server or set VIP_ETCD_BIN)".to_owned(),
        (Ok(_), Some(_)) => return true,
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the real kube-apiserver is needed in CI (.ci/run builds it): {missing}"
    );
    eprintln!("SKIPPED: real kube-apiserver tests: {missing}");
    false
}

impl RealApi {
    /// Start etcd and the servers and wait until every server is ready.
    pub async fn start(config: RealApiConfig) -> Result<Self, RealApiError> {
        let binary = binary::kube_apiserver()?;
        let etcd = EtcdCluster::start(1).await?;
        let places = vec![None; config.servers.max(1)];
        Self::launch(binary, config, etcd, places).await
    }

    /// Generate the certificates and keys, start one server per entry of
    /// `places` over `etcd`, and wait until every one is ready.
    async fn launch(
        binary: PathBuf,
        config: RealApiConfig,
        etcd: EtcdCluster,
        places: Vec<Option<Placement>>,
    ) -> Result<Self, RealApiError> {
        let dir = tempfile::Builder::new()
            .prefix("vip-kube-apiserver-")
            .tempdir()
            .map_err(io("create the kube-apiserver temporary directory"))?;
        let root = dir.path();
        let cert_err = RealApiError::Certificate;

        let (ca_pem, issuer) = ca("vip-testkit-kubernetes-ca").map_err(cert_err)?;
        let ca_path = root.join("ca.crt");
        write(&ca_path, &ca_pem)?;
        // A client certificate of the CA, signed now while the issuer is
        // at hand (the CA's key is not kept).
        let client_key = root.join("admin-client.key");
        let (admin_pem, admin_key) = leaf(
            &issuer,
            "vip-testkit-admin",
            &[],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
        .map_err(cert_err)?;
        write(&root.join("admin-client.crt"), &admin_pem)?;
        write(&client_key, &admin_key)?;
        let sa_key = root.join("service-account.key");
        let sa_pub = root.join("service-account.pub");
        let sa = rcgen::KeyPair::generate().map_err(cert_err)?;
        write(&sa_key, &sa.serialize_pem())?;
        write(&sa_pub, &sa.public_key_pem())?;
        let token_file_path = root.join("tokens.csv");
        write(&token_file_path, &token_file(&config.tokens))?;

        let mut sans: Vec<String> = ["127.0.0.1", "localhost", "kubernetes", "kubernetes.default"]
            .into_iter()
            .map(str::to_owned)
            .chain(config.extra_sans.iter().cloned())
            .collect();
        sans.sort();
        sans.dedup();
        let mut servers = Vec::with_capacity(places.len());
        for (i, place) in places.into_iter().enumerate() {
            // A placed server is also reached on its node's address.
            let mut san_refs: Vec<&str> = sans.iter().map(String::as_str).collect();
            let addr = place.as_ref().map(|p| p.addr.to_string());
            san_refs.extend(addr.as_deref());
            let (pem, key) = leaf(
                &issuer,
                "kube-apiserver",
                &san_refs,
                vec![ExtendedKeyUsagePurpose::ServerAuth],
            )
            .map_err(cert_err)?;
            let server = Server {
                port: match place {
                    Some(_) => netns::PORT,
                    None => free_port().map_err(io("bind a free port"))?,
                },
                cert: root.join(format!("apiserver-{i}.crt")),
                key: root.join(format!("apiserver-{i}.key")),
                log: root.join(format!("apiserver-{i}.log")),
                child: None,
                place,
            };
            write(&server.cert, &pem)?;
            write(&server.key, &key)?;
            servers.push(server);
        }
        let mut api = Self {
            binary,
            servers,
            tokens: config.tokens,
            ca_path,
            client_key,
            sa_key,
            token_file: token_file_path,
            etcd,
            dir,
        };
        for i in 0..api.servers.len() {
            api.spawn(i)?;
        }
        for i in 0..api.servers.len() {
            api.wait_ready(i).await?;
        }
        api.bind_roles(0).await?;
        Ok(api)
    }

    /// [`RealApi::start`], or `None` after a loud message when the fixture
    /// cannot run here (see [`available_or_skip`]); a start that fails
    /// (a port taken between choosing and binding it) is retried twice on
    /// new ports, then panics.
    pub async fn start_or_skip(config: RealApiConfig) -> Option<Self> {
        if !available_or_skip() {
            return None;
        }
        let mut attempt = 1;
        loop {
            match Self::start(config.clone()).await {
                Ok(api) => return Some(api),
                Err(e) if attempt < 3 => {
                    eprintln!("kube-apiserver did not start (attempt {attempt} of 3): {e}");
                    attempt += 1;
                }
                Err(e) => panic!("cannot start kube-apiserver after 3 attempts: {e}"),
            }
        }
    }

    fn spawn(&mut self, i: usize) -> Result<(), RealApiError> {
        let etcd_tls = self.etcd.client_tls().clone();
        let s = self.servers.get_mut(i).ok_or(RealApiError::Unknown {
            what: "server",
            name: i.to_string(),
        })?;
        // A placed server talks to its node's own member, as on a stacked
        // control plane, serves on every address of its namespace and
        // advertises its node's.
        let (etcd_servers, bind, advertise) = match &s.place {
            Some(p) => (netns::LOCAL_ETCD.to_owned(), "0.0.0.0", p.addr.to_string()),
            None => (
                self.etcd.endpoints().join(","),
                "127.0.0.1",
                "127.0.0.1".to_owned(),
            ),
        };
        if s.child.is_some() {
            return Ok(());
        }
        let log = File::create(&s.log).map_err(io(format!("create {}", s.log.display())))?;
        let err = log.try_clone().map_err(io("duplicate the log handle"))?;
        let cert_dir = self.dir.path().join(format!("apiserver-{i}-certs"));
        let mut cmd = Placement::command_for(s.place.as_ref(), &self.binary);
        cmd.arg(format!("--etcd-servers={etcd_servers}"))
            .arg(format!("--etcd-cafile={}", etcd_tls.ca.display()))
            .arg(format!("--etcd-certfile={}", etcd_tls.cert.display()))
            .arg(format!("--etcd-keyfile={}", etcd_tls.key.display()))
            .arg(format!("--bind-address={bind}"))
            .arg(format!("--advertise-address={advertise}"))
            .arg(format!("--secure-port={}", s.port))
            .arg(format!("--cert-dir={}", cert_dir.display()))
            .arg(format!("--tls-cert-file={}", s.cert.display()))
            .arg(format!("--tls-private-key-file={}", s.key.display()))
            .arg(format!("--client-ca-file={}", self.ca_path.display()))
            .arg(format!("--token-auth-file={}", self.token_file.display()))
            .arg("--authorization-mode=RBAC")
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!(
                "--service-account-key-file={}",
                self.sa_key.with_extension("pub").display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                self.sa_key.display()
            ))
            .arg(format!("--service-cluster-ip-range={SERVICE_CIDR}"))
            .arg("--allow-privileged=true")
            .arg("--enable-priority-and-fairness=false")
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--endpoint-reconciler-type=none")
            .arg("--v=1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let child = cmd
            .spawn()
            .map_err(io(format!("start {}", self.binary.display())))?;
        s.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self, i: usize) -> Result<(), RealApiError> {
        let kubeconfig = self.admin_kubeconfig(i)?;
        let place = self.servers[i].place.clone();
        let timeout = place
            .as_ref()
            .map_or(READY_TIMEOUT, |_| netns::READY_TIMEOUT);
        let end = tokio::time::Instant::now() + timeout;
        loop {
            let probe = match &place {
                Some(p) => netns::readyz_in(p, &kubeconfig).await,
                None => readyz(&kubeconfig).await,
            };
            let last = match probe {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let s = &mut self.servers[i];
            let exited = s
                .child
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some());
            if exited || tokio::time::Instant::now() >= end {
                return Err(RealApiError::NotReady {
                    server: i,
                    timeout,
                    reason: if exited { "it exited".to_owned() } else { last },
                    log_tail: self.log_tail(i, 5),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last `n` lines of server `i`'s log, joined by ` | `.
    pub fn log_tail(&self, i: usize, n: usize) -> String {
        let text = self
            .servers
            .get(i)
            .and_then(|s| std::fs::read_to_string(&s.log).ok())
            .unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(n).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    fn admin_kubeconfig(&self, i: usize) -> Result<PathBuf, RealApiError> {
        let admin = self
            .tokens
            .iter()
            .find(|t| t.role == Role::Admin)
            .map(|t| t.name.clone())
            .ok_or(RealApiError::Unknown {
                what: "token",
                name: "(any admin)".to_owned(),
            })?;
        self.kubeconfig_for(i, &admin)
    }

    /// The URL of server `i`, `https://127.0.0.1:<port>`.
    pub fn url(&self, i: usize) -> String {
        self.servers[i].url()
    }

    /// How many servers run over the etcd.
    pub fn size(&self) -> usize {
        self.servers.len()
    }

    /// The CA certificate file (PEM) that signed every serving certificate.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// A client certificate of the fixture's CA (CN `vip-testkit-admin`, no
    /// group): `(certificate, key)`, for tests of certificate
    /// authentication.
    pub fn client_certificate(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("admin-client.crt"),
            self.client_key.clone(),
        )
    }

    /// The directory holding the certificates, logs and kubeconfigs.
    pub fn out_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The etcd under the servers (to compact it, or to kill it).
    pub fn etcd(&mut self) -> &mut EtcdCluster {
        &mut self.etcd
    }

    /// Writes (once) and returns `kubeconfig-<server>-<user>`.
    pub fn kubeconfig_for(&self, server: usize, user: &str) -> Result<PathBuf, RealApiError> {
        let s = self.servers.get(server).ok_or(RealApiError::Unknown {
            what: "server",
            name: server.to_string(),
        })?;
        let path = self.dir.path().join(format!("kubeconfig-{server}-{user}"));
        self.write_kubeconfig(&path, &s.url(), user)?;
        Ok(path)
    }

    /// Writes a kubeconfig for `user` naming `server` (any URL).
    pub fn write_kubeconfig(
        &self,
        path: &Path,
        server: &str,
        user: &str,
    ) -> Result<(), RealApiError> {
        let token =
            self.tokens
                .iter()
                .find(|t| t.name == user)
                .ok_or_else(|| RealApiError::Unknown {
                    what: "token",
                    name: user.to_owned(),
                })?;
        let text = crate::testapi::tls::kubeconfig(server, &self.ca_path, token);
        write(path, &text)
    }

    /// Kill server `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) -> Result<(), RealApiError> {
        let s = self.servers.get_mut(i).ok_or(RealApiError::Unknown {
            what: "server",
            name: i.to_string(),
        })?;
        if let Some(mut c) = s.child.take() {
            let _ = c.kill();
            c.wait().map_err(io(format!("reap kube-apiserver {i}")))?;
        }
        Ok(())
    }

    /// Start server `i` again on its port and wait until it is ready.
    pub async fn restart(&mut self, i: usize) -> Result<(), RealApiError> {
        self.spawn(i)?;
        self.wait_ready(i).await
    }
}

impl Drop for RealApi {
    fn drop(&mut self) {
        for s in &mut self.servers {
            if let Some(mut c) = s.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// `GET /readyz` through the kubeconfig: `Ok` on 200, else what was seen.
async fn readyz(kubeconfig: &Path) -> Result<(), String> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| e.to_string())?;
    let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
    let req = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = tokio::time::timeout(Duration::from_secs(5), client.request_text(req))
        .await
        .map_err(|_| "no answer within 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
    if text.trim() == "ok" {
        Ok(())
    } else {
        Err(format!("/readyz said {text:?}"))
    }
}
