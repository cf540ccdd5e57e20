//! Which election backend: kube-vip's `--leaderElectionType`
//! (`kubernetes`, the Lease; or `etcd`) and the etcd client settings
//! `--etcdCACert`, `--etcdCert`, `--etcdKey`, `--etcdEndpoints`.
//!
//! kube-vip reads these five as flags only (no environment variable);
//! vip accepts kube-vip's flag names and, in its own style, the
//! environment variables `vip_leaderelectiontype`, `vip_etcdcacert`,
//! `vip_etcdcert`, `vip_etcdkey` and `vip_etcdendpoints`.

use std::path::PathBuf;

use super::{ConfigError, Sources, invalid};

/// The election backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeaderElection {
    /// A `coordination.k8s.io/v1` Lease through the API server.
    #[default]
    Kubernetes,
    /// A key in etcd, reached directly with mutual TLS.
    Etcd,
}

impl LeaderElection {
    /// kube-vip's name: `kubernetes` or `etcd`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kubernetes => "kubernetes",
            Self::Etcd => "etcd",
        }
    }
}

/// The etcd client settings; each may be unset while the election is
/// `kubernetes` (kube-vip ignores them then).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EtcdSettings {
    /// `--etcdCACert`.
    pub ca: Option<PathBuf>,
    /// `--etcdCert`.
    pub cert: Option<PathBuf>,
    /// `--etcdKey`.
    pub key: Option<PathBuf>,
    /// `--etcdEndpoints`, normalised to URLs (`host:port` → `https://`).
    pub endpoints: Vec<String>,
}

impl EtcdSettings {
    /// The three TLS files, when all are set.
    pub fn tls(&self) -> Option<vip_etcd::TlsFiles> {
        Some(vip_etcd::TlsFiles {
            ca: self.ca.clone()?,
            cert: self.cert.clone()?,
            key: self.key.clone()?,
        })
    }

    /// The endpoints as kube-vip's comma-separated value.
    pub fn endpoint_list(&self) -> String {
        self.endpoints.join(",")
    }

    /// `(key, path)` of each TLS file that is set.
    pub fn files(&self) -> Vec<(&'static str, &PathBuf)> {
        [
            ("vip_etcdcacert", &self.ca),
            ("vip_etcdcert", &self.cert),
            ("vip_etcdkey", &self.key),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.as_ref().map(|p| (k, p)))
        .collect()
    }
}

/// Reads the election settings; with `etcd`, all four etcd settings are
/// required and a missing one is named.
pub(super) fn parse(sources: &Sources) -> Result<(LeaderElection, EtcdSettings), ConfigError> {
    let election = match sources.get("vip_leaderelectiontype") {
        None => LeaderElection::Kubernetes,
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "kubernetes" => LeaderElection::Kubernetes,
            "etcd" => LeaderElection::Etcd,
            _ => {
                return Err(invalid("vip_leaderelectiontype", v, "kubernetes or etcd"));
            }
        },
    };
    let path = |k| sources.get(k).map(PathBuf::from);
    let mut etcd = EtcdSettings {
        ca: path("vip_etcdcacert"),
        cert: path("vip_etcdcert"),
        key: path("vip_etcdkey"),
        endpoints: Vec::new(),
    };
    if let Some(v) = sources.get("vip_etcdendpoints") {
        etcd.endpoints = vip_etcd::parse_endpoints(v, true).map_err(|e| {
            invalid(
                "vip_etcdendpoints",
                v,
                format!("comma-separated host:port or https:// URLs ({e})"),
            )
        })?;
    }
    if election == LeaderElection::Etcd {
        let missing: Vec<&str> = [
            ("vip_etcdcacert (--etcdCACert)", etcd.ca.is_none()),
            ("vip_etcdcert (--etcdCert)", etcd.cert.is_none()),
            ("vip_etcdkey (--etcdKey)", etcd.key.is_none()),
            (
                "vip_etcdendpoints (--etcdEndpoints)",
                etcd.endpoints.is_empty(),
            ),
        ]
        .into_iter()
        .filter_map(|(k, m)| m.then_some(k))
        .collect();
        if !missing.is_empty() {
            return Err(ConfigError::Incomplete {
                key: "vip_leaderelectiontype",
                value: "etcd".into(),
                missing: missing.join(", "),
            });
        }
    }
    Ok((election, etcd))
}

/// Refuses an etcd TLS file that cannot be read, naming the key and the
/// path. Run by `vip manager` and `vip check-config` (not by
/// `vip manifest`, which renders for other hosts).
pub fn check_files(election: LeaderElection, etcd: &EtcdSettings) -> Result<(), ConfigError> {
    if election != LeaderElection::Etcd {
        return Ok(());
    }
    for (key, path) in etcd.files() {
        if let Err(e) = std::fs::File::open(path) {
            return Err(invalid(
                key,
                &path.display().to_string(),
                format!("a readable file ({e})"),
            ));
        }
    }
    Ok(())
}
