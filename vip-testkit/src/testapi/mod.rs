//! An API-server stand-in for tests and demos.
//!
//! HTTPS with its own CA and bearer tokens, Kubernetes discovery, health
//! endpoints, Leases, Nodes, Secrets and core/v1 Events with get/list/create/
//! update/patch/delete/watch (field selectors as the real server converts
//! them for each kind) on one global resourceVersion, and Status bodies like the real
//! API server's. Several listeners share one [`Store`], so each node of a
//! test lab has its own "local API server" that can be stopped or faulted
//! alone; faults can also target one client token (one node's identity).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use vip_testkit::testapi::{Fault, TestApi, TestApiConfig};
//!
//! let api = TestApi::start(TestApiConfig::default().listeners(3).tokens(["node-a", "node-b", "node-c"])).await?;
//! let kubeconfig = api.kubeconfig_for(1, "node-b")?; // node-b's view, through listener 1
//! api.listener(0).set_fault(Some(Fault::Stall)); // node 0's API server hangs
//! api.set_token_fault("node-c", Some(Fault::Error { code: 500 })); // node-c's requests fail
//! println!("{kubeconfig:?} {:?}", api.counters().get("update", "leases"));
//! # Ok(()) }
//! ```
//!
//! As a process, `vip-testapi` runs the same thing and is steered through
//! the admin endpoint ([`admin`]).
//!
//! Where it differs from the real kube-apiserver (what was fixed, what is
//! kept simpler on purpose) is written down in `DIFFERENCES.md` next to
//! this module; `vip-lease/tests/conformance.rs` pins each fix on both.

pub mod admin;
mod server;
mod status;
mod store;
pub(crate) mod tls;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use status::Status;
pub use store::{Event, EventType, Kind, Selectors, Store};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum TestApiError {
    /// A socket cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Certificates cannot be made.
    #[error("cannot generate the stand-in's certificates")]
    Certificate(#[source] rcgen::Error),
    /// The TLS configuration is refused.
    #[error("cannot configure TLS")]
    Tls(#[source] rustls::Error),
    /// A file cannot be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No such listener or token.
    #[error("unknown {what} {name:?}")]
    Unknown {
        /// `listener` or `token`.
        what: &'static str,
        /// What was asked for.
        name: String,
    },
}

/// A fault injected into a listener or into one client token's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Fault {
    /// Every request waits this long before it is served.
    Latency {
        /// Milliseconds.
        ms: u64,
    },
    /// Every request is answered with this status code and a Status body
    /// (429 TooManyRequests with `Retry-After: 1`, 503, otherwise
    /// InternalError).
    Error {
        /// The HTTP status code.
        code: u16,
    },
    /// Connections are accepted but never answered: requests (and watch
    /// streams) hang, new TLS handshakes never finish. When the fault is
    /// lifted, hung requests are dropped unanswered (their connection is
    /// closed), never applied late.
    Stall,
    /// A listener stops listening (connections are refused) and drops its
    /// open connections; for a token, its requests' connections are closed
    /// without an answer.
    Refuse,
    /// Listener only: `/readyz` answers 500 (the rest works).
    Unready,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    #[default]
    Admin,
    /// Authenticated, but every resource request gets 403 Forbidden (like
    /// kubeadm ≥ 1.29's admin.conf before RBAC is bootstrapped).
    Forbidden,
    /// Everything but Secrets, which get 403 Forbidden (an RBAC role
    /// without the heartbeat key's rule).
    NoSecrets,
}

/// A client identity: a name (the user in messages and counters) and its
/// bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSpec {
    /// The user name.
    pub name: String,
    /// The bearer token.
    pub token: String,
    /// What it may do.
    #[serde(default)]
    pub role: Role,
}

impl TokenSpec {
    /// An admin token `vip-testapi-<name>`.
    pub fn admin(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            token: format!("vip-testapi-{name}"),
            role: Role::Admin,
        }
    }
}

/// How to start the stand-in.
#[derive(Debug, Clone)]
pub struct TestApiConfig {
    /// Listener addresses (port 0: any free port).
    pub listen: Vec<SocketAddr>,
    /// The client identities; the first one is the default kubeconfig's.
    pub tokens: Vec<TokenSpec>,
    /// How many events the watch history keeps.
    pub history: usize,
    /// Where the CA and kubeconfigs are written; a fresh temporary
    /// directory (removed on drop) when `None`.
    pub out_dir: Option<PathBuf>,
    /// Extra certificate names (DNS names or IPs) besides `localhost`,
    /// `kubernetes`, `127.0.0.1`, `::1` and the listener addresses.
    pub extra_sans: Vec<String>,
}

impl Default for TestApiConfig {
    /// One listener on `127.0.0.1:0`, one admin token `admin`, 1000
    /// events of history.
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            tokens: vec![TokenSpec::admin("admin")],
            history: 1000,
            out_dir: None,
            extra_sans: Vec::new(),
        }
    }
}

impl TestApiConfig {
    /// `n` listeners on `127.0.0.1:0`.
    pub fn listeners(mut self, n: usize) -> Self {
        self.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0)); n.max(1)];
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

    /// The watch history size.
    pub fn history(mut self, events: usize) -> Self {
        self.history = events;
        self
    }
}

/// Request counts by listener, user, verb and resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// `(listener, user, verb, resource) -> count`; the user is `-` for
    /// requests without a known token; non-resource requests count under
    /// their path (`/readyz`).
    pub entries: BTreeMap<(usize, String, String, String), u64>,
}

impl Counters {
    /// All requests with `verb` on `resource` (e.g. `update`, `leases`).
    pub fn get(&self, verb: &str, resource: &str) -> u64 {
        self.sum(|_, _, v, r| v == verb && r == resource)
    }

    /// Requests of one user with `verb` on `resource`.
    pub fn by_user(&self, user: &str, verb: &str, resource: &str) -> u64 {
        self.sum(|_, u, v, r| u == user && v == verb && r == resource)
    }

    /// Requests one listener received.
    pub fn by_listener(&self, listener: usize) -> u64 {
        self.sum(|l, _, _, _| l == listener)
    }

    fn sum(&self, f: impl Fn(usize, &str, &str, &str) -> bool) -> u64 {
        self.entries
            .iter()
            .filter(|((l, u, v, r), _)| f(*l, u, v, r))
            .map(|(_, n)| n)
            .sum()
    }
}

/// State shared by every listener.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) tokens: RwLock<Vec<TokenSpec>>,
    pub(crate) token_faults: Mutex<HashMap<String, Fault>>,
    /// Bumped whenever a token fault changes (wakes stalled requests).
    pub(crate) token_fault_gen: watch::Sender<u64>,
    pub(crate) counters: Mutex<Counters>,
    pub(crate) tls: Arc<rustls::ServerConfig>,
    pub(crate) shutdown: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn token_fault(&self, user: &str) -> Option<Fault> {
        self.token_faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(user)
            .copied()
    }

    pub(crate) fn count(&self, listener: usize, user: &str, verb: &str, resource: &str) {
        let mut c = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *c.entries
            .entry((
                listener,
                user.to_owned(),
                verb.to_owned(),
                resource.to_owned(),
            ))
            .or_default() += 1;
    }
}

/// One listener's state.
#[derive(Debug)]
pub(crate) struct ListenerState {
    pub(crate) index: usize,
    pub(crate) addr: SocketAddr,
    pub(crate) fault: watch::Sender<Option<Fault>>,
}

/// A handle on one listener.
#[derive(Debug, Clone)]
pub struct ListenerHandle {
    state: Arc<ListenerState>,
}

impl ListenerHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.state.addr
    }

    /// `https://<addr>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.state.addr)
    }

    /// Sets (or with `None` lifts) this listener's fault.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.state.fault.send_replace(fault);
    }

    /// The current fault.
    pub fn fault(&self) -> Option<Fault> {
        *self.state.fault.borrow()
    }
}

#[derive(Debug)]
enum OutDir {
    Owned(PathBuf),
    Given(PathBuf),
}

impl OutDir {
    fn path(&self) -> &Path {
        match self {
            Self::Owned(p) | Self::Given(p) => p,
        }
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if let Self::Owned(p) = self {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// A running stand-in. Dropping it stops every listener.
#[derive(Debug)]
pub struct TestApi {
    shared: Arc<Shared>,
    listeners: Vec<ListenerHandle>,
    tasks: Vec<JoinHandle<()>>,
    dir: OutDir,
    ca_path: PathBuf,
    default_kubeconfig: PathBuf,
}

impl TestApi {
    /// Binds every listener, writes `ca.crt` and the default kubeconfig,
    /// and serves.
    pub async fn start(config: TestApiConfig) -> Result<Self, TestApiError> {
        let mut bound = Vec::new();
        for addr in &config.listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| TestApiError::Bind {
                    addr: *addr,
                    source,
                })?;
            let local = l.local_addr().map_err(|source| TestApiError::Bind {
                addr: *addr,
                source,
            })?;
            bound.push((l, local));
        }
        let mut sans: Vec<String> = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "127.0.0.1",
            "::1",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        for (_, a) in &bound {
            sans.push(a.ip().to_string());
        }
        sans.extend(config.extra_sans.iter().cloned());
        sans.sort();
        sans.dedup();
        let certs = tls::Certs::generate(&sans).map_err(TestApiError::Certificate)?;
        let tls = certs.server_config().map_err(TestApiError::Tls)?;

        let dir = match &config.out_dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|source| TestApiError::Write {
                    path: d.clone(),
                    source,
                })?;
                OutDir::Given(d.clone())
            }
            None => OutDir::Owned(tls::fresh_temp_dir().map_err(|source| TestApiError::Write {
                path: std::env::temp_dir(),
                source,
            })?),
        };
        let ca_path = dir.path().join("ca.crt");
        std::fs::write(&ca_path, certs.ca_pem()).map_err(|source| TestApiError::Write {
            path: ca_path.clone(),
            source,
        })?;

        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            store: Store::new(config.history),
            tokens: RwLock::new(config.tokens.clone()),
            token_faults: Mutex::new(HashMap::new()),
            token_fault_gen: watch::channel(0).0,
            counters: Mutex::new(Counters::default()),
            tls: Arc::new(tls),
            shutdown,
        });
        let mut listeners = Vec::new();
        let mut tasks = Vec::new();
        for (index, (l, addr)) in bound.into_iter().enumerate() {
            let state = Arc::new(ListenerState {
                index,
                addr,
                fault: watch::channel(None).0,
            });
            tasks.push(tokio::spawn(server::run_listener(
                shared.clone(),
                state.clone(),
                l,
            )));
            listeners.push(ListenerHandle { state });
        }
        let mut api = Self {
            shared,
            listeners,
            tasks,
            dir,
            ca_path,
            default_kubeconfig: PathBuf::new(),
        };
        let first = config
            .tokens
            .first()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        api.default_kubeconfig = api.kubeconfig_for(0, &first)?;
        Ok(api)
    }

    /// The kubeconfig of the first token through the first listener.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.default_kubeconfig
    }

    /// The directory holding `ca.crt` and the kubeconfigs.
    pub fn out_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate file (PEM).
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// Writes (once) and returns `kubeconfig-<listener>-<user>` for that
    /// listener and user.
    pub fn kubeconfig_for(&self, listener: usize, user: &str) -> Result<PathBuf, TestApiError> {
        let path = self
            .dir
            .path()
            .join(format!("kubeconfig-{listener}-{user}"));
        let l = self.try_listener(listener)?;
        self.write_kubeconfig(&path, &l.url(), user)?;
        Ok(path)
    }

    /// Writes a kubeconfig for `user` naming `server` (which may be
    /// another host than a listener, e.g. to test the control-plane
    /// rewrite).
    pub fn write_kubeconfig(
        &self,
        path: &Path,
        server: &str,
        user: &str,
    ) -> Result<(), TestApiError> {
        let token = self
            .tokens()
            .into_iter()
            .find(|t| t.name == user)
            .ok_or_else(|| TestApiError::Unknown {
                what: "token",
                name: user.to_owned(),
            })?;
        let text = tls::kubeconfig(server, &self.ca_path, &token);
        std::fs::write(path, text).map_err(|source| TestApiError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// Listener `i`. Panics when there is no such listener (tests).
    pub fn listener(&self, i: usize) -> &ListenerHandle {
        &self.listeners[i]
    }

    /// Listener `i`, if it exists.
    pub fn try_listener(&self, i: usize) -> Result<&ListenerHandle, TestApiError> {
        self.listeners.get(i).ok_or_else(|| TestApiError::Unknown {
            what: "listener",
            name: i.to_string(),
        })
    }

    /// Every listener.
    pub fn listeners(&self) -> &[ListenerHandle] {
        &self.listeners
    }

    /// The tokens.
    pub fn tokens(&self) -> Vec<TokenSpec> {
        self.shared
            .tokens
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Adds (or replaces, by name) a token.
    pub fn add_token(&self, token: TokenSpec) {
        let mut tokens = self
            .shared
            .tokens
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.retain(|t| t.name != token.name);
        tokens.push(token);
    }

    /// Sets (or with `None` lifts) the fault of every request made with
    /// `user`'s token, through any listener.
    pub fn set_token_fault(&self, user: &str, fault: Option<Fault>) {
        set_token_fault(&self.shared, user, fault);
    }

    /// The request counters so far.
    pub fn counters(&self) -> Counters {
        self.shared
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The object store.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Serves the admin endpoint ([`admin`]) on `addr` until the stand-in
    /// is dropped; returns the bound address.
    pub async fn serve_admin(&mut self, addr: SocketAddr) -> Result<SocketAddr, TestApiError> {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| TestApiError::Bind { addr, source })?;
        let local = l
            .local_addr()
            .map_err(|source| TestApiError::Bind { addr, source })?;
        let handles = admin::AdminHandles {
            shared: self.shared.clone(),
            listeners: self.listeners.clone(),
        };
        self.tasks.push(tokio::spawn(admin::serve(l, handles)));
        Ok(local)
    }

    /// A future that resolves when the stand-in is asked to shut down
    /// (admin `POST /shutdown`).
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shared.shutdown.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

pub(crate) fn set_token_fault(shared: &Shared, user: &str, fault: Option<Fault>) {
    {
        let mut faults = shared
            .token_faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match fault {
            Some(f) => faults.insert(user.to_owned(), f),
            None => faults.remove(user),
        };
    }
    shared.token_fault_gen.send_modify(|g| *g += 1);
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Latency faults are capped so a typo cannot hang a test for hours.
pub(crate) fn latency(ms: u64) -> Duration {
    Duration::from_millis(ms.min(600_000))
}
