//! Cluster access: which kubeconfig to use, and clients built from it.
//!
//! A static pod has no service-account token, so [`ClusterAccess::discover`]
//! looks for a kubeconfig in this order (first match wins):
//!
//! 1. the explicit path (`--k8s-config-file` / `k8s_config_file`), then
//!    every path of `KUBECONFIG`;
//! 2. `/etc/kubernetes/admin.conf`; when the API server answers 401 or 403
//!    to it (kubeadm ≥ 1.29 while `kubeadm init` still runs) and
//!    `/etc/kubernetes/super-admin.conf` exists, that one;
//! 3. `/etc/rancher/k3s/k3s.yaml`;
//! 4. `/etc/rancher/rke2/rke2.yaml`;
//! 5. in-cluster (service-account token and `KUBERNETES_SERVICE_HOST`).
//!
//! The file system root is [`DiscoveryOptions::root`], so tests use a
//! temporary directory. When nothing is found the error lists every path
//! tried and the hostPath mount that fixes it.
//!
//! In control-plane mode ([`DiscoveryOptions::control_plane`]) the clients
//! talk to the local API server, `https://127.0.0.1:<port>`, whatever host
//! the kubeconfig names (often the VIP itself, which would make the
//! election depend on the address it elects). The server certificate is
//! still verified, for the name the kubeconfig used (TLS server name) or,
//! if asked, for `127.0.0.1`.
//!
//! Every [`ClusterAccess::client`] call builds a new client with its own
//! connection pool: the lease backend, its watch, the health probe and the
//! cordon watch never queue behind each other.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Api, Client, Config};

use crate::lease::LeaseName;

/// kubeadm's admin kubeconfig.
pub const ADMIN_CONF: &str = "etc/kubernetes/admin.conf";
/// kubeadm ≥ 1.29's break-glass kubeconfig, bound to `system:masters`.
pub const SUPER_ADMIN_CONF: &str = "etc/kubernetes/super-admin.conf";
/// k3s's kubeconfig.
pub const K3S_YAML: &str = "etc/rancher/k3s/k3s.yaml";
/// RKE2's kubeconfig.
pub const RKE2_YAML: &str = "etc/rancher/rke2/rke2.yaml";
/// The service-account token of a pod.
pub const SERVICE_ACCOUNT_TOKEN: &str = "var/run/secrets/kubernetes.io/serviceaccount/token";
/// The in-cluster ServiceAccount's namespace file, under the root.
pub const SERVICE_ACCOUNT_NAMESPACE: &str =
    "var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No kubeconfig and no in-cluster credentials were found.
    #[error("{}", no_kubeconfig_text(.tried))]
    NoKubeconfig {
        /// Every place looked at, with what was found there.
        tried: Vec<Tried>,
    },
    /// A kubeconfig exists but cannot be used.
    #[error("kubeconfig {path} cannot be used")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KubeconfigError,
    },
    /// The in-cluster configuration cannot be used.
    #[error("in-cluster configuration cannot be used")]
    InCluster(#[source] kube::config::InClusterError),
    /// The local API server URL cannot be built.
    #[error("cannot build the local API server URL https://127.0.0.1:{port}")]
    LocalUrl {
        /// The port.
        port: u16,
        /// Why.
        #[source]
        source: http::Error,
    },
    /// A client cannot be built from the configuration.
    #[error("cannot build a Kubernetes client for {server}")]
    Client {
        /// The API server URL.
        server: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

/// One place discovery looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tried {
    /// The path (or `in-cluster`).
    pub place: String,
    /// What was found, e.g. `not found`.
    pub outcome: String,
}

fn no_kubeconfig_text(tried: &[Tried]) -> String {
    use std::fmt::Write;
    let mut s = String::from("no usable Kubernetes credentials found; tried, in order:\n");
    for t in tried {
        let _ = writeln!(s, "  - {}: {}", t.place, t.outcome);
    }
    s.push_str(
        "A static pod has no service-account token: mount the node's admin kubeconfig into the pod \
         with a hostPath volume at the same path, e.g.\n  \
         volumes: [{name: kubeconfig, hostPath: {path: /etc/kubernetes/admin.conf}}]\n  \
         volumeMounts: [{name: kubeconfig, mountPath: /etc/kubernetes/admin.conf}]\n\
         (kubeadm: /etc/kubernetes/admin.conf, or super-admin.conf on the first node of kubeadm >= 1.29; \
         k3s: /etc/rancher/k3s/k3s.yaml; RKE2: /etc/rancher/rke2/rke2.yaml), \
         or name a file with k8s_config_file / --k8s-config-file / KUBECONFIG.",
    );
    s
}

/// Where the credentials came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeconfigSource {
    /// The explicit path or a `KUBECONFIG` entry.
    Explicit(PathBuf),
    /// kubeadm's admin.conf.
    AdminConf(PathBuf),
    /// kubeadm's super-admin.conf, after admin.conf got 401/403.
    SuperAdminConf(PathBuf),
    /// k3s's kubeconfig.
    K3s(PathBuf),
    /// RKE2's kubeconfig.
    Rke2(PathBuf),
    /// The pod's service account.
    InCluster,
}

impl fmt::Display for KubeconfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Explicit(p) => write!(f, "kubeconfig {}", p.display()),
            Self::AdminConf(p) => write!(f, "admin kubeconfig {}", p.display()),
            Self::SuperAdminConf(p) => write!(
                f,
                "super-admin kubeconfig {} (admin.conf was refused)",
                p.display()
            ),
            Self::K3s(p) => write!(f, "k3s kubeconfig {}", p.display()),
            Self::Rke2(p) => write!(f, "RKE2 kubeconfig {}", p.display()),
            Self::InCluster => f.write_str("in-cluster service account"),
        }
    }
}

/// For which name the local API server's certificate is verified in
/// control-plane mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyName {
    /// The host the kubeconfig names (its `tls-server-name` if it has one).
    #[default]
    Original,
    /// `127.0.0.1` (k3s and RKE2 certificates carry it).
    Loopback,
}

/// Control-plane mode: talk to the API server on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalApi {
    /// The local API server's port (kube-vip's `port`, 6443).
    pub port: u16,
    /// Which name its certificate is verified for.
    pub verify: VerifyName,
}

/// What [`ClusterAccess::discover`] looks at.
#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    /// The explicit kubeconfig (flag or `k8s_config_file`).
    pub explicit: Option<PathBuf>,
    /// The value of `KUBECONFIG` (a `:`-separated list).
    pub kubeconfig_env: Option<OsString>,
    /// The file system root the well-known paths are under (`/`).
    pub root: PathBuf,
    /// Control-plane mode, when set.
    pub local_api: Option<LocalApi>,
    /// The Lease read to check whether admin.conf is authorised.
    pub auth_probe: LeaseName,
    /// Bound of that check.
    pub probe_timeout: Duration,
    /// `KUBERNETES_SERVICE_HOST`, for the in-cluster case.
    pub service_host: Option<String>,
}

impl DiscoveryOptions {
    /// Options from the process environment (`KUBECONFIG`,
    /// `KUBERNETES_SERVICE_HOST`), the real root, and `explicit`.
    pub fn from_env(explicit: Option<PathBuf>) -> Self {
        Self {
            explicit,
            kubeconfig_env: std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()),
            root: PathBuf::from("/"),
            local_api: None,
            auth_probe: LeaseName::default(),
            probe_timeout: Duration::from_secs(3),
            service_host: std::env::var("KUBERNETES_SERVICE_HOST")
                .ok()
                .filter(|v| !v.is_empty()),
        }
    }

    /// Options that look only under `root` (no environment).
    pub fn under_root(root: impl Into<PathBuf>) -> Self {
        Self {
            kubeconfig_env: None,
            service_host: None,
            root: root.into(),
            ..Self::from_env(None)
        }
    }

    /// Control-plane mode on `port`, verifying the original name.
    pub fn control_plane(mut self, port: u16) -> Self {
        self.local_api = Some(LocalApi {
            port,
            verify: VerifyName::Original,
        });
        self
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The namespace of this pod's ServiceAccount
    /// ([`SERVICE_ACCOUNT_NAMESPACE`] under the root), when the file is
    /// there and holds a name; kube-vip v1.1+ puts its Lease there when
    /// it runs in-cluster.
    pub fn service_account_namespace(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.path(SERVICE_ACCOUNT_NAMESPACE)).ok()?;
        let ns = text.trim();
        (!ns.is_empty()).then(|| ns.to_owned())
    }
}

/// Per-client settings of [`ClusterAccess::client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// The caller's bound of one request. The transport-level timeouts
    /// (connect, write, and unless streaming, read) are set to twice this,
    /// only as a backstop: the caller's own `tokio::time::timeout` at
    /// `timeout` fires first and reports a timeout as such.
    pub timeout: Duration,
    /// The client serves long watches: no read timeout.
    pub streaming: bool,
    /// Let kube retry 429/503/504 by itself (off for anything timed).
    pub retry: bool,
}

impl ClientOptions {
    /// Short requests bounded by `timeout`, no hidden retries.
    pub fn requests(timeout: Duration) -> Self {
        Self {
            timeout,
            streaming: false,
            retry: false,
        }
    }

    /// Watches: connect bounded by `timeout`, no read timeout.
    pub fn watch(timeout: Duration) -> Self {
        Self {
            timeout,
            streaming: true,
            retry: false,
        }
    }
}

/// The credentials and server to use, and where they came from.
///
/// ```no_run
/// # async fn run() -> Result<(), vip_lease::AccessError> {
/// use vip_lease::{ClusterAccess, DiscoveryOptions};
/// let access = ClusterAccess::discover(&DiscoveryOptions::from_env(None).control_plane(6443)).await?;
/// println!("using {} at {}", access.source(), access.server());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClusterAccess {
    config: Config,
    source: KubeconfigSource,
    /// The server the kubeconfig named, before the control-plane rewrite.
    original_server: String,
}

impl ClusterAccess {
    /// Finds credentials in the documented order.
    pub async fn discover(options: &DiscoveryOptions) -> Result<Self, AccessError> {
        let mut tried = Vec::new();
        let mut explicit: Vec<PathBuf> = options.explicit.iter().cloned().collect();
        if let Some(env) = &options.kubeconfig_env {
            explicit.extend(std::env::split_paths(env).filter(|p| !p.as_os_str().is_empty()));
        }
        for path in explicit {
            if let Some(access) = try_file(
                &path,
                KubeconfigSource::Explicit(path.clone()),
                options,
                &mut tried,
            )
            .await?
            {
                return Ok(access);
            }
        }

        let admin = options.path(ADMIN_CONF);
        if let Some(access) = try_file(
            &admin,
            KubeconfigSource::AdminConf(admin.clone()),
            options,
            &mut tried,
        )
        .await?
        {
            let super_admin = options.path(SUPER_ADMIN_CONF);
            match access.auth_check(options).await {
                Some(code) if super_admin.is_file() => {
                    tracing::warn!(code, path = %admin.display(), fallback = %super_admin.display(), "admin.conf is not authorised; using super-admin.conf");
                    tried.push(Tried {
                        place: admin.display().to_string(),
                        outcome: format!("refused with HTTP {code}"),
                    });
                    if let Some(access) = try_file(
                        &super_admin,
                        KubeconfigSource::SuperAdminConf(super_admin.clone()),
                        options,
                        &mut tried,
                    )
                    .await?
                    {
                        return Ok(access);
                    }
                }
                Some(code) => {
                    tracing::warn!(code, path = %admin.display(), "admin.conf is not authorised and there is no super-admin.conf; using it anyway");
                }
                None => {}
            }
            return Ok(access);
        }
        tried.push(Tried {
            place: options.path(SUPER_ADMIN_CONF).display().to_string(),
            outcome: "not tried (used only when admin.conf exists and is refused with 401/403)"
                .into(),
        });

        for (rel, source) in [
            (
                K3S_YAML,
                KubeconfigSource::K3s as fn(PathBuf) -> KubeconfigSource,
            ),
            (RKE2_YAML, KubeconfigSource::Rke2),
        ] {
            let path = options.path(rel);
            if let Some(access) = try_file(&path, source(path.clone()), options, &mut tried).await?
            {
                return Ok(access);
            }
        }

        let token = options.path(SERVICE_ACCOUNT_TOKEN);
        match (&options.service_host, token.is_file()) {
            (Some(_), true) => {
                let config = Config::incluster().map_err(AccessError::InCluster)?;
                return Self::from_config(config, KubeconfigSource::InCluster, options.local_api);
            }
            (None, _) => tried.push(Tried {
                place: "in-cluster".into(),
                outcome: "KUBERNETES_SERVICE_HOST is not set".into(),
            }),
            (Some(_), false) => tried.push(Tried {
                place: format!("in-cluster ({})", token.display()),
                outcome: "no service-account token (static pods have none)".into(),
            }),
        }
        Err(AccessError::NoKubeconfig { tried })
    }

    /// Access from one kubeconfig file.
    pub async fn from_kubeconfig_file(
        path: &Path,
        local_api: Option<LocalApi>,
    ) -> Result<Self, AccessError> {
        let config = load_kubeconfig(path).await?;
        Self::from_config(
            config,
            KubeconfigSource::Explicit(path.to_owned()),
            local_api,
        )
    }

    /// Access from a ready kube configuration.
    pub fn from_config(
        mut config: Config,
        source: KubeconfigSource,
        local_api: Option<LocalApi>,
    ) -> Result<Self, AccessError> {
        let original_server = config.cluster_url.to_string();
        if let Some(local) = local_api {
            let original_host = config
                .cluster_url
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let path = config
                .cluster_url
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            config.cluster_url = http::Uri::builder()
                .scheme("https")
                .authority(format!("127.0.0.1:{}", local.port))
                .path_and_query(path)
                .build()
                .map_err(|source| AccessError::LocalUrl {
                    port: local.port,
                    source,
                })?;
            match local.verify {
                VerifyName::Original => {
                    if config.tls_server_name.is_none() && !original_host.is_empty() {
                        config.tls_server_name = Some(original_host);
                    }
                }
                VerifyName::Loopback => config.tls_server_name = Some("127.0.0.1".into()),
            }
        }
        Ok(Self {
            config,
            source,
            original_server,
        })
    }

    /// Where the credentials came from.
    pub fn source(&self) -> &KubeconfigSource {
        &self.source
    }

    /// The API server the clients talk to.
    pub fn server(&self) -> &http::Uri {
        &self.config.cluster_url
    }

    /// The server the kubeconfig named (before the control-plane rewrite).
    pub fn original_server(&self) -> &str {
        &self.original_server
    }

    /// The name the server certificate is verified for, when it is not the
    /// URL's host.
    pub fn tls_server_name(&self) -> Option<&str> {
        self.config.tls_server_name.as_deref()
    }

    /// The kube configuration.
    pub fn kube_config(&self) -> &Config {
        &self.config
    }

    /// A new client with its own connection pool. Needs a tokio runtime.
    pub fn client(&self, options: &ClientOptions) -> Result<Client, AccessError> {
        let mut config = self.config.clone();
        let backstop = options.timeout * 2;
        config.connect_timeout = Some(backstop);
        config.write_timeout = Some(backstop);
        config.default_retry = options.retry;
        if options.streaming {
            config.read_timeout = None;
        } else {
            config.read_timeout = Some(backstop);
            config.reset_reader_on_write = true;
        }
        Client::try_from(config).map_err(|source| AccessError::Client {
            server: self.config.cluster_url.to_string(),
            source,
        })
    }

    /// `Some(401 | 403)` when the API server refuses these credentials for
    /// reading the Lease; `None` when it accepts them, or cannot tell.
    async fn auth_check(&self, options: &DiscoveryOptions) -> Option<u16> {
        let client = self
            .client(&ClientOptions::requests(options.probe_timeout))
            .ok()?;
        let api: Api<Lease> = Api::namespaced(client, &options.auth_probe.namespace);
        match tokio::time::timeout(options.probe_timeout, api.get_opt(&options.auth_probe.name))
            .await
        {
            Ok(Err(kube::Error::Api(s))) if s.code == 401 || s.code == 403 => Some(s.code),
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "admin.conf authorisation check inconclusive");
                None
            }
            Err(_) => {
                tracing::debug!("admin.conf authorisation check timed out");
                None
            }
        }
    }
}

async fn load_kubeconfig(path: &Path) -> Result<Config, AccessError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| AccessError::Kubeconfig {
        path: path.to_owned(),
        source,
    })?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| AccessError::Kubeconfig {
            path: path.to_owned(),
            source,
        })
}

async fn try_file(
    path: &Path,
    source: KubeconfigSource,
    options: &DiscoveryOptions,
    tried: &mut Vec<Tried>,
) -> Result<Option<ClusterAccess>, AccessError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {
            let config = load_kubeconfig(path).await?;
            tracing::info!(%source, "using Kubernetes credentials");
            ClusterAccess::from_config(config, source, options.local_api).map(Some)
        }
        Ok(_) => {
            tried.push(Tried {
                place: path.display().to_string(),
                outcome: "not a regular file (a hostPath of type File would be needed)".into(),
            });
            Ok(None)
        }
        Err(e) => {
            tried.push(Tried {
                place: path.display().to_string(),
                outcome: if e.kind() == std::io::ErrorKind::NotFound {
                    "not found".into()
                } else {
                    e.to_string()
                },
            });
            Ok(None)
        }
    }
}

/// A client error in one line for logs and counters: an API server's
/// refusal as `HTTP <code>: <its message>` (for a 403, the message names
/// the user, verb, resource and namespace RBAC refused), anything else as
/// its display, newlines removed.
pub fn error_line(e: &kube::Error) -> String {
    let line = match e {
        kube::Error::Api(s) if !s.message.is_empty() => format!("HTTP {}: {}", s.code, s.message),
        kube::Error::Api(s) => format!("HTTP {}: {}", s.code, s.reason),
        other => other.to_string(),
    };
    line.replace(['\n', '\r'], " ")
}
