//! Configuration: kube-vip's environment variables, every one also as a
//! flag (flag wins), validated before anything touches the host.
//!
//! A bad value is refused in one line naming the key, the value and what is
//! expected; a kube-vip mode `vip` does not implement is refused by name;
//! a kube-vip setting `vip` honours differently gives a [`Note`]
//! (`kube_vip.rs`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use vip_core::{FastFailoverPolicy, InterfaceSelector, NodeIdentity, Timings, VipAddress, VipSpec};

mod describe;
mod election;
mod fast_failover;
pub mod heartbeat_key;
mod keys;
mod kube_vip;
mod logging;
pub use election::{EtcdSettings, LeaderElection};
pub use keys::{BOOLEANS, KEYS, LISTS, REFUSED_FLAGS, UNSUPPORTED};
#[cfg(test)]
pub use kube_vip::NO_ELECTION_NOTE;
pub use kube_vip::{NOTED, Note};
pub use logging::{LogFormat, LogLevel};

/// A configuration error: exit code 2, nothing changed on the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value does not parse or is out of range.
    #[error("invalid {key}={value:?}: expected {expected}")]
    Invalid {
        /// The environment variable (or flag) name.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is expected.
        expected: String,
    },
    /// A kube-vip mode or feature `vip` does not implement.
    #[error(
        "unsupported {key}={value:?}: {what} is not implemented by vip (it runs kube-vip's control-plane ARP mode only); remove the setting"
    )]
    Unsupported {
        /// The environment variable.
        key: &'static str,
        /// Its value.
        value: String,
        /// What it would enable.
        what: &'static str,
    },
    /// A setting needs others that are not given.
    #[error("incomplete {key}={value:?}: also set {missing}")]
    Incomplete {
        /// The setting that needs the others.
        key: &'static str,
        /// Its value.
        value: String,
        /// The missing settings, comma-separated.
        missing: String,
    },
    /// A required setting is missing.
    #[error("missing {key}: {expected}")]
    Missing {
        /// The environment variable.
        key: &'static str,
        /// What is expected.
        expected: &'static str,
    },
}

/// The validated settings of `vip manager`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The VIPs.
    pub vips: VipSpec,
    /// Where they go.
    pub interface: InterfaceSelector,
    /// The local API server's port.
    pub port: u16,
    /// The local API server's address, when not 127.0.0.1.
    pub local_api: Option<SocketAddr>,
    /// This node.
    pub node_name: NodeIdentity,
    /// The Lease's namespace.
    pub lease_namespace: String,
    /// The Lease's name.
    pub lease_name: String,
    /// The namespace was set (`cp_namespace`, or `vip_leasename` as
    /// `namespace/name`); when not, an in-cluster `vip` uses its
    /// ServiceAccount's namespace, as kube-vip v1.1+ does.
    pub lease_namespace_explicit: bool,
    /// Annotations kept on the Lease (`vip_leaseannotations`).
    pub lease_annotations: BTreeMap<String, String>,
    /// Election timings.
    pub timings: Timings,
    /// Announcement refresh period.
    pub arp_rate: Duration,
    /// Fenced fast failover (heartbeat interval 0: off).
    pub fast_failover: FastFailoverPolicy,
    /// A pre-shared heartbeat key file (`vip_heartbeat_key_file`); unset,
    /// the key is kept by the election backend.
    pub heartbeat_key_file: Option<PathBuf>,
    /// Explicit kubeconfig.
    pub kubeconfig: Option<PathBuf>,
    /// Log level.
    pub log_level: LogLevel,
    /// Log format.
    pub log_format: LogFormat,
    /// Metrics and health endpoint, if enabled.
    pub metrics: Option<SocketAddr>,
    /// Follow the local API server's health.
    pub health_check: bool,
    /// Record leadership changes as Kubernetes Events.
    pub events: bool,
    /// The election backend (`--leaderElectionType`).
    pub leader_election: LeaderElection,
    /// The etcd client settings (used with [`LeaderElection::Etcd`]).
    pub etcd: EtcdSettings,
    /// The kube-vip settings given that `vip` honours differently (see
    /// [`NOTED`]), in their table's order.
    pub notes: Vec<Note>,
}

/// Where settings come from: flags (already split into name and value by
/// the command line parser) and the environment.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Flag values by environment-variable name.
    pub flags: BTreeMap<&'static str, String>,
    /// The environment.
    pub env: BTreeMap<String, String>,
}

impl Sources {
    /// Sources of exactly these environment variables, no flags (tests).
    #[cfg(test)]
    pub(crate) fn env_only(pairs: &[(&str, &str)]) -> Self {
        Self {
            flags: BTreeMap::new(),
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Sources from these flags and the process environment.
    pub fn from_process(flags: BTreeMap<&'static str, String>) -> Self {
        Self {
            flags,
            env: std::env::vars().collect(),
        }
    }

    /// A value: the flag, else the environment variable (empty counts as
    /// unset, as in kube-vip).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.flags
            .get(key)
            .map(String::as_str)
            .or_else(|| self.env.get(key).map(String::as_str))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }
}

fn invalid(key: &'static str, value: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        expected: expected.into(),
    }
}

/// Go's `strconv.ParseBool`, which kube-vip uses.
pub fn parse_bool(key: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(invalid(key, value, "true or false")),
    }
}

fn parse_seconds(key: &'static str, value: &str, whole: bool) -> Result<Duration, ConfigError> {
    let expected = if whole {
        "a whole number of seconds, at least 1"
    } else {
        "a positive number of seconds"
    };
    let secs: f64 = value.parse().map_err(|_| invalid(key, value, expected))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 || (whole && secs.fract() != 0.0) {
        return Err(invalid(key, value, expected));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_listen(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    let expected = "host:port or :port, e.g. :2112";
    let full = if value.starts_with(':') {
        format!("0.0.0.0{value}")
    } else {
        value.to_string()
    };
    full.parse().map_err(|_| invalid(key, value, expected))
}

impl Settings {
    /// Validate `sources` into settings. `hostname` is the default node
    /// name.
    pub fn from_sources(sources: &Sources, hostname: &str) -> Result<Self, ConfigError> {
        for (key, what) in UNSUPPORTED {
            if let Some(v) = sources.get(key)
                && !matches!(v, "0" | "f" | "F" | "false" | "FALSE" | "False" | "{}")
            {
                return Err(ConfigError::Unsupported {
                    key,
                    value: v.to_string(),
                    what,
                });
            }
        }
        let flag = |key: &'static str| -> Result<Option<bool>, ConfigError> {
            sources.get(key).map(|v| parse_bool(key, v)).transpose()
        };
        if flag("vip_arp")? == Some(false) {
            return Err(ConfigError::Unsupported {
                key: "vip_arp",
                value: "false".into(),
                what: "a mode other than ARP",
            });
        }
        if flag("cp_enable")? == Some(false) {
            return Err(ConfigError::Unsupported {
                key: "cp_enable",
                value: "false".into(),
                what: "running without the control-plane VIP",
            });
        }
        // Accepted for compatibility (false gives a note): ARP control-plane
        // mode always elects.
        flag("vip_leaderelection")?;
        let notes = kube_vip::notes(sources)?;
        let health_check = flag("vip_healthcheck")?.unwrap_or(true);
        let events = flag("vip_events")?.unwrap_or(true);
        let (leader_election, etcd) = election::parse(sources)?;

        let vips = Self::vips(sources)?;
        let interface = match sources.get("vip_interface") {
            None => InterfaceSelector::Auto,
            Some(name) => InterfaceSelector::named(name).map_err(|e| {
                invalid(
                    "vip_interface",
                    name,
                    format!("a Linux interface name ({e})"),
                )
            })?,
        };
        let port = match sources.get("port") {
            None => 6443,
            Some(v) => v
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid("port", v, "a TCP port, 1-65535"))?,
        };
        let local_api = match sources.get("kubernetes_addr") {
            None => None,
            Some(v) => {
                let a: SocketAddr = v.parse().map_err(|_| {
                    invalid(
                        "kubernetes_addr",
                        v,
                        "host:port of the local API server, e.g. 127.0.0.1:6443",
                    )
                })?;
                if !a.ip().is_loopback() {
                    return Err(invalid(
                        "kubernetes_addr",
                        v,
                        "a loopback address: in control-plane mode vip talks to the local API server, never through the VIP",
                    ));
                }
                Some(a)
            }
        };
        let node_raw = sources.get("vip_nodename").unwrap_or(hostname);
        let node_name = NodeIdentity::new(node_raw).map_err(|e| {
            invalid(
                "vip_nodename",
                node_raw,
                format!("a Kubernetes node name ({e})"),
            )
        })?;
        let default_ns = sources.get("cp_namespace").unwrap_or("kube-system");
        check_dns_label("cp_namespace", default_ns)?;
        let lease_raw = sources.get("vip_leasename").unwrap_or("plndr-cp-lock");
        let (lease_namespace, lease_name) = match lease_raw.split_once('/') {
            Some((ns, name)) => (ns, name),
            None => (default_ns, lease_raw),
        };
        check_dns_label("vip_leasename", lease_namespace)?;
        check_dns_subdomain("vip_leasename", lease_name)?;
        let lease_namespace_explicit =
            sources.get("cp_namespace").is_some() || lease_raw.contains('/');
        let lease_annotations = sources
            .get("vip_leaseannotations")
            .map(parse_annotations)
            .transpose()?
            .unwrap_or_default();

        let ld = sources
            .get("vip_leaseduration")
            .map(|v| parse_seconds("vip_leaseduration", v, true))
            .transpose()?
            .unwrap_or(Duration::from_secs(5));
        let rd = sources
            .get("vip_renewdeadline")
            .map(|v| parse_seconds("vip_renewdeadline", v, false))
            .transpose()?
            .unwrap_or(Duration::from_secs(3));
        let rp = sources
            .get("vip_retryperiod")
            .map(|v| parse_seconds("vip_retryperiod", v, false))
            .transpose()?
            .unwrap_or(Duration::from_secs(1));
        let timings = Timings::new(ld, rd, rp).map_err(|e| match e {
            vip_core::ModelError::InvalidTiming { name, expected, .. } => {
                let key = match name {
                    "lease_duration" => "vip_leaseduration",
                    "renew_deadline" => "vip_renewdeadline",
                    _ => "vip_retryperiod",
                };
                let value = match key {
                    "vip_leaseduration" => secs(ld),
                    "vip_renewdeadline" => secs(rd),
                    _ => secs(rp),
                };
                invalid(key, &value, expected)
            }
            other => invalid("vip_leaseduration", &format!("{ld:?}"), other.to_string()),
        })?;

        let arp_rate = match sources.get("vip_arpRate") {
            None => Duration::from_secs(3),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|ms| (500..=3_600_000).contains(ms))
                .map(Duration::from_millis)
                .ok_or_else(|| invalid("vip_arpRate", v, "milliseconds, 500 to 3600000"))?,
        };
        let fast_failover = fast_failover::fast_failover(sources, &timings)?;
        let heartbeat_key_file = heartbeat_key::key_file(sources)?;
        let kubeconfig = sources.get("k8s_config_file").map(PathBuf::from);
        let log_level = logging::log_level(sources)?;
        let log_format = logging::log_format(sources)?;
        let metrics = match sources
            .flags
            .get("prometheus_server")
            .or_else(|| sources.env.get("prometheus_server"))
        {
            // Explicitly empty disables it.
            Some(v) if v.trim().is_empty() => None,
            Some(v) => Some(parse_listen("prometheus_server", v.trim())?),
            None => Some(SocketAddr::from(([0, 0, 0, 0], 2112))),
        };
        Ok(Self {
            vips,
            interface,
            port,
            local_api,
            node_name,
            lease_namespace: lease_namespace.to_string(),
            lease_name: lease_name.to_string(),
            lease_namespace_explicit,
            lease_annotations,
            timings,
            arp_rate,
            fast_failover,
            heartbeat_key_file,
            kubeconfig,
            log_level,
            log_format,
            metrics,
            health_check,
            events,
            leader_election,
            etcd,
            notes,
        })
    }

    /// Refuses host files the settings name that cannot be read (the etcd
    /// TLS files), naming the key and the path. `vip manager` and
    /// `vip check-config` run it; `vip manifest` does not (it renders for
    /// other hosts).
    pub fn check_files(&self) -> Result<(), ConfigError> {
        election::check_files(self.leader_election, &self.etcd)?;
        if let Some(path) = &self.heartbeat_key_file {
            heartbeat_key::load(path)?;
        }
        Ok(())
    }

    fn vips(sources: &Sources) -> Result<VipSpec, ConfigError> {
        let (key, raw) = match (sources.get("address"), sources.get("vip_address")) {
            (Some(a), _) => ("address", a),
            (None, Some(v)) => ("vip_address", v),
            (None, None) => {
                return Err(ConfigError::Missing {
                    key: "address",
                    expected: "the VIP, e.g. address=192.168.20.140 (or vip_address)",
                });
            }
        };
        let parts: Vec<&str> = raw
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let subnets: Vec<&str> = sources
            .get("vip_subnet")
            .map(|s| s.split(',').map(str::trim).collect())
            .unwrap_or_default();
        if subnets.len() > parts.len() {
            return Err(invalid(
                "vip_subnet",
                sources.get("vip_subnet").unwrap_or_default(),
                format!(
                    "at most one prefix length per address ({} given in {key})",
                    parts.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            let v = if p.contains('/') {
                p.parse::<VipAddress>()
                    .map_err(|e| invalid(key, raw, e.to_string()))?
            } else {
                let ip: IpAddr = p.parse().map_err(|_| {
                    invalid(
                        key,
                        raw,
                        "IPv4 and/or IPv6 addresses, comma-separated (DNS names are not supported)",
                    )
                })?;
                match subnets.get(i) {
                    None => VipAddress::host(ip).map_err(|e| invalid(key, raw, e.to_string()))?,
                    Some(s) => {
                        let bits: u8 = s.parse().map_err(|_| {
                            invalid("vip_subnet", s, "a prefix length such as 32 or 128")
                        })?;
                        VipAddress::new(ip, bits)
                            .map_err(|e| invalid("vip_subnet", s, e.to_string()))?
                    }
                }
            };
            out.push(v);
        }
        VipSpec::new(out).map_err(|e| invalid(key, raw, e.to_string()))
    }
}

/// `vip_leaseannotations` as kube-vip parses it (`json.Unmarshal` into a
/// `map[string]string`): a JSON object whose values are strings, with keys
/// Kubernetes accepts as annotation names (`[prefix/]name`).
pub fn parse_annotations(value: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    const KEY: &str = "vip_leaseannotations";
    let map: BTreeMap<String, String> = serde_json::from_str(value).map_err(|e| {
        invalid(
            KEY,
            value,
            format!("a JSON object of string values, e.g. {{\"team\":\"infra\"}} ({e})"),
        )
    })?;
    for k in map.keys() {
        if !is_qualified_name(k) {
            return Err(invalid(
                KEY,
                value,
                format!(
                    "annotation names as Kubernetes accepts them, [DNS-subdomain/]name of at most 63 of A-Z a-z 0-9 - _ . (alphanumeric at both ends); {k:?} is not"
                ),
            ));
        }
    }
    Ok(map)
}

/// Annotations as the compact JSON object `vip_leaseannotations` takes
/// (`{}` when none).
pub fn annotations_json(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".into())
}

/// A Kubernetes qualified name (annotation and label keys).
fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| check_dns_subdomain("vip_leaseannotations", p).is_ok());
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    prefix_ok && name_ok
}

/// Seconds as kube-vip writes them: `5`, or `1.5`.
pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", d.as_secs())
    } else {
        format!("{s}")
    }
}

fn check_dns_label(key: &'static str, value: &str) -> Result<(), ConfigError> {
    vip_core::names::check_dns_label(value).map_err(|_| {
        invalid(
            key,
            value,
            "a DNS label: lower-case letters, digits and '-', at most 63",
        )
    })
}

fn check_dns_subdomain(key: &'static str, value: &str) -> Result<(), ConfigError> {
    vip_core::names::check_dns_subdomain(value).map_err(|_| {
        invalid(
            key,
            value,
            "a Kubernetes object name: lower-case letters, digits, '-' and '.'",
        )
    })
}

#[cfg(test)]
mod tests;
