//! Configuration: kube-vip's environment variables, every one also as a
//! flag (flag wins), validated before anything touches the host.
//!
//! A bad value is refused in one line naming the key, the value and what is
//! expected; a kube-vip mode `vip` does not implement is refused by name.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use vip_core::{InterfaceSelector, NodeIdentity, Timings, VipAddress, VipSpec};

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
    /// A required setting is missing.
    #[error("missing {key}: {expected}")]
    Missing {
        /// The environment variable.
        key: &'static str,
        /// What is expected.
        expected: &'static str,
    },
}

/// One setting: its environment variable, its flag, kube-vip's flag alias
/// and its default, for `--help`, the docs and the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The environment variable (kube-vip's name).
    pub env: &'static str,
    /// The flag, without `--`.
    pub flag: &'static str,
    /// kube-vip's own flag name, accepted as an alias.
    pub kube_vip_flag: Option<&'static str>,
    /// The default, as text (`""`: none).
    pub default: &'static str,
    /// One line of documentation.
    pub help: &'static str,
}

/// Every setting `vip manager` reads, in documentation order.
pub const KEYS: &[Key] = &[
    Key {
        env: "vip_arp",
        flag: "vip-arp",
        kube_vip_flag: Some("arp"),
        default: "true",
        help: "ARP/NDP mode; the only mode vip implements (false is refused)",
    },
    Key {
        env: "cp_enable",
        flag: "cp-enable",
        kube_vip_flag: Some("controlplane"),
        default: "true",
        help: "control-plane VIP; the only use vip implements (false is refused)",
    },
    Key {
        env: "address",
        flag: "address",
        kube_vip_flag: Some("address"),
        default: "",
        help: "the VIP(s): IPv4 and/or IPv6, comma-separated, optionally with /prefix; wins over vip_address",
    },
    Key {
        env: "vip_address",
        flag: "vip-address",
        kube_vip_flag: Some("vip"),
        default: "",
        help: "the VIP (kube-vip's older name for address)",
    },
    Key {
        env: "vip_subnet",
        flag: "vip-subnet",
        kube_vip_flag: Some("vipSubnet"),
        default: "32 / 128",
        help: "prefix length(s) for bare addresses, comma-separated per address (e.g. 32,128)",
    },
    Key {
        env: "vip_interface",
        flag: "vip-interface",
        kube_vip_flag: Some("interface"),
        default: "auto",
        help: "interface for the VIP; empty: the one whose connected prefix contains the VIP, else the default-route one",
    },
    Key {
        env: "port",
        flag: "port",
        kube_vip_flag: Some("port"),
        default: "6443",
        help: "the local API server's port",
    },
    Key {
        env: "vip_nodename",
        flag: "vip-nodename",
        kube_vip_flag: Some("nodeName"),
        default: "hostname",
        help: "this node's name: the Lease holderIdentity (lower-cased)",
    },
    Key {
        env: "cp_namespace",
        flag: "cp-namespace",
        kube_vip_flag: Some("namespace"),
        default: "kube-system",
        help: "namespace of the Lease",
    },
    Key {
        env: "vip_leaderelection",
        flag: "vip-leaderelection",
        kube_vip_flag: Some("leaderElection"),
        default: "true",
        help: "accepted for kube-vip compatibility; control-plane ARP mode always elects",
    },
    Key {
        env: "vip_leasename",
        flag: "vip-leasename",
        kube_vip_flag: Some("leaseName"),
        default: "plndr-cp-lock",
        help: "the Lease name, or namespace/name",
    },
    Key {
        env: "vip_leaseduration",
        flag: "vip-leaseduration",
        kube_vip_flag: Some("leaseDuration"),
        default: "5",
        help: "lease duration, whole seconds",
    },
    Key {
        env: "vip_renewdeadline",
        flag: "vip-renewdeadline",
        kube_vip_flag: Some("leaseRenewDuration"),
        default: "3",
        help: "renew deadline, seconds (fractions allowed)",
    },
    Key {
        env: "vip_retryperiod",
        flag: "vip-retryperiod",
        kube_vip_flag: Some("leaseRetry"),
        default: "1",
        help: "retry period, seconds (fractions allowed)",
    },
    Key {
        env: "vip_arpRate",
        flag: "vip-arp-rate",
        kube_vip_flag: None,
        default: "3000",
        help: "announcement refresh period while leading, milliseconds (at least 500)",
    },
    Key {
        env: "k8s_config_file",
        flag: "k8s-config-file",
        kube_vip_flag: Some("k8sConfigPath"),
        default: "",
        help: "kubeconfig path; empty: KUBECONFIG, admin.conf (super-admin.conf on 401/403), k3s, rke2, in-cluster",
    },
    Key {
        env: "kubernetes_addr",
        flag: "kubernetes-addr",
        kube_vip_flag: None,
        default: "",
        help: "the local API server as host:port (a loopback address); default 127.0.0.1:<port>",
    },
    Key {
        env: "vip_loglevel",
        flag: "vip-loglevel",
        kube_vip_flag: Some("log"),
        default: "0",
        help: "kube-vip's slog levels: -4 debug, 0 info, 4 warn, 8 error (or the names)",
    },
    Key {
        env: "vip_logformat",
        flag: "vip-logformat",
        kube_vip_flag: None,
        default: "text",
        help: "log format: text or json",
    },
    Key {
        env: "prometheus_server",
        flag: "prometheus-server",
        kube_vip_flag: Some("prometheusHTTPServer"),
        default: ":2112",
        help: "metrics, /healthz and /readyz listen address; empty disables",
    },
    Key {
        env: "vip_healthcheck",
        flag: "vip-healthcheck",
        kube_vip_flag: None,
        default: "true",
        help: "follow the local API server's /readyz (false: never hand over for health)",
    },
];

/// kube-vip settings that select modes or features `vip` does not have:
/// `(key, what it enables)`. Refused when set to a non-empty, non-false
/// value.
pub const UNSUPPORTED: &[(&str, &str)] = &[
    ("svc_enable", "the Service load-balancer mode"),
    ("svc_election", "per-Service election"),
    ("bgp_enable", "the BGP mode"),
    ("bgp_routerid", "the BGP mode"),
    ("bgp_peers", "the BGP mode"),
    ("vip_routingtable", "the routing-table mode"),
    ("vip_wireguard", "the WireGuard mode"),
    ("vip_ddns", "DHCP/DDNS VIPs"),
    ("lb_enable", "IPVS load balancing"),
    ("egress_podcidr", "egress SNAT"),
    ("egress_servicecidr", "egress SNAT"),
    ("enable_upnp", "UPnP forwarding"),
    (
        "cp_detect",
        "API-server address detection from certificate SANs",
    ),
    ("enable_node_labeling", "node labelling"),
    (
        "vip_preserve_on_leadership_loss",
        "keeping the VIP after losing leadership (it would be on two nodes)",
    ),
    ("vip_leaseannotations", "Lease annotations"),
    ("vip_cidr", "the removed vip_cidr setting (use vip_subnet)"),
    ("vip_servicesinterface", "the Service load-balancer mode"),
];

/// How much to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything useful for debugging.
    Debug,
    /// State changes.
    Info,
    /// Problems only.
    Warn,
    /// Errors only.
    Error,
}

impl LogLevel {
    /// The tracing filter directive.
    pub fn directive(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
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
    /// Election timings.
    pub timings: Timings,
    /// Announcement refresh period.
    pub arp_rate: Duration,
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
        // Accepted for compatibility; ARP control-plane mode always elects.
        flag("vip_leaderelection")?;
        let health_check = flag("vip_healthcheck")?.unwrap_or(true);

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
        check_dns_label("cp_namespace", default_ns, 63)?;
        let lease_raw = sources.get("vip_leasename").unwrap_or("plndr-cp-lock");
        let (lease_namespace, lease_name) = match lease_raw.split_once('/') {
            Some((ns, name)) => (ns, name),
            None => (default_ns, lease_raw),
        };
        check_dns_label("vip_leasename", lease_namespace, 63)?;
        check_dns_subdomain("vip_leasename", lease_name)?;

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
        let kubeconfig = sources.get("k8s_config_file").map(PathBuf::from);
        let log_level = match sources.get("vip_loglevel") {
            None => LogLevel::Info,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "debug" => LogLevel::Debug,
                "info" => LogLevel::Info,
                "warn" | "warning" => LogLevel::Warn,
                "error" => LogLevel::Error,
                other => match other.parse::<i32>() {
                    // kube-vip's slog levels since v0.9.0.
                    Ok(n) if n <= -4 => LogLevel::Debug,
                    Ok(n) if n < 4 => LogLevel::Info,
                    Ok(n) if n < 8 => LogLevel::Warn,
                    Ok(_) => LogLevel::Error,
                    Err(_) => {
                        return Err(invalid(
                            "vip_loglevel",
                            v,
                            "-4 (debug), 0 (info), 4 (warn), 8 (error), or a name",
                        ));
                    }
                },
            },
        };
        let log_format = match sources.get("vip_logformat") {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(v) => return Err(invalid("vip_logformat", v, "text or json")),
        };
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
            timings,
            arp_rate,
            kubeconfig,
            log_level,
            log_format,
            metrics,
            health_check,
        })
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

    /// `(key, value)` of every setting, as the daemon runs with them
    /// (SIGUSR1, `--help`, the manifest).
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        vec![
            ("address", self.vips.to_string()),
            ("vip_interface", self.interface.to_string()),
            ("port", self.port.to_string()),
            (
                "kubernetes_addr",
                self.local_api.map(|a| a.to_string()).unwrap_or_default(),
            ),
            ("vip_nodename", self.node_name.to_string()),
            ("cp_namespace", self.lease_namespace.clone()),
            ("vip_leasename", self.lease_name.clone()),
            ("vip_leaseduration", secs(self.timings.lease_duration())),
            ("vip_renewdeadline", secs(self.timings.renew_deadline())),
            ("vip_retryperiod", secs(self.timings.retry_period())),
            ("vip_arpRate", self.arp_rate.as_millis().to_string()),
            (
                "k8s_config_file",
                self.kubeconfig
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            ("vip_loglevel", self.log_level.directive().into()),
            (
                "vip_logformat",
                match self.log_format {
                    LogFormat::Text => "text".into(),
                    LogFormat::Json => "json".into(),
                },
            ),
            (
                "prometheus_server",
                self.metrics.map(|a| a.to_string()).unwrap_or_default(),
            ),
            ("vip_healthcheck", self.health_check.to_string()),
        ]
    }
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

fn check_dns_label(key: &'static str, value: &str, max: usize) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            value,
            "a DNS label: lower-case letters, digits and '-', at most 63",
        ))
    }
}

fn check_dns_subdomain(key: &'static str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .split('.')
            .all(|l| check_dns_label(key, l, 63).is_ok());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            value,
            "a Kubernetes object name: lower-case letters, digits, '-' and '.'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Sources {
        Sources {
            flags: BTreeMap::new(),
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_sources(&env(pairs), "Alpha-1")
    }

    /// The deployment brief's env block, unchanged.
    const BRIEF: &[(&str, &str)] = &[
        ("vip_arp", "true"),
        ("vip_interface", "end0"),
        ("vip_address", "192.168.20.140"),
        ("vip_leaderelection", "true"),
        ("cp_enable", "true"),
        ("cp_namespace", "kube-system"),
    ];

    #[test]
    fn the_briefs_env_block_parses_with_kube_vip_defaults() {
        let s = load(BRIEF).unwrap();
        assert_eq!(s.vips.to_string(), "192.168.20.140/32");
        assert_eq!(s.interface, InterfaceSelector::Name("end0".into()));
        assert_eq!(s.node_name.as_str(), "alpha-1");
        assert_eq!(
            (s.lease_namespace.as_str(), s.lease_name.as_str()),
            ("kube-system", "plndr-cp-lock")
        );
        assert_eq!(s.timings, Timings::default());
        assert_eq!(s.arp_rate, Duration::from_secs(3));
        assert_eq!(s.port, 6443);
        assert_eq!(s.metrics, Some("0.0.0.0:2112".parse().unwrap()));
        assert_eq!(s.log_level, LogLevel::Info);
        assert!(s.health_check);
    }

    #[test]
    fn flags_win_over_the_environment() {
        let mut src = env(BRIEF);
        src.flags.insert("vip_interface", "eth1".into());
        let s = Settings::from_sources(&src, "h").unwrap();
        assert_eq!(s.interface, InterfaceSelector::Name("eth1".into()));
    }

    /// Every key with good and bad values: (key, value, Ok(check) or the
    /// text the error must contain).
    #[test]
    fn every_key_good_and_bad() {
        type Check = fn(&Settings) -> bool;
        let cases: &[(&str, &str, Result<Check, &str>)] = &[
            ("vip_arp", "true", Ok(|_| true)),
            ("vip_arp", "false", Err("unsupported vip_arp=\"false\"")),
            (
                "vip_arp",
                "yes",
                Err("invalid vip_arp=\"yes\": expected true or false"),
            ),
            ("cp_enable", "1", Ok(|_| true)),
            ("cp_enable", "false", Err("unsupported cp_enable")),
            (
                "address",
                "198.18.0.1,2001:db8::1",
                Ok(|s| s.vips.to_string() == "198.18.0.1/32,2001:db8::1/128"),
            ),
            (
                "address",
                "198.18.0.1/24",
                Ok(|s| s.vips.to_string() == "198.18.0.1/24"),
            ),
            (
                "address",
                "k8s.example.com",
                Err("DNS names are not supported"),
            ),
            (
                "address",
                "198.18.0.1/33",
                Err("invalid address=\"198.18.0.1/33\""),
            ),
            (
                "vip_subnet",
                "24",
                Ok(|s| s.vips.to_string() == "192.168.20.140/24"),
            ),
            ("vip_subnet", "40", Err("invalid vip_subnet=\"40\"")),
            ("vip_subnet", "x", Err("invalid vip_subnet=\"x\"")),
            (
                "vip_subnet",
                "32,128",
                Err("at most one prefix length per address"),
            ),
            (
                "vip_interface",
                "",
                Ok(|s| s.interface == InterfaceSelector::Auto),
            ),
            ("vip_interface", "a/b", Err("invalid vip_interface=\"a/b\"")),
            ("port", "6444", Ok(|s| s.port == 6444)),
            ("port", "0", Err("invalid port=\"0\": expected a TCP port")),
            ("port", "70000", Err("invalid port")),
            (
                "vip_nodename",
                "CP-2",
                Ok(|s| s.node_name.as_str() == "cp-2"),
            ),
            ("vip_nodename", "cp_2", Err("invalid vip_nodename=\"cp_2\"")),
            (
                "cp_namespace",
                "vip-system",
                Ok(|s| s.lease_namespace == "vip-system"),
            ),
            ("cp_namespace", "Kube", Err("invalid cp_namespace=\"Kube\"")),
            ("vip_leaderelection", "false", Ok(|_| true)),
            (
                "vip_leaderelection",
                "maybe",
                Err("invalid vip_leaderelection"),
            ),
            (
                "vip_leasename",
                "kube-vip-cp",
                Ok(|s| s.lease_name == "kube-vip-cp"),
            ),
            (
                "vip_leasename",
                "other/kube-vip-cp",
                Ok(|s| s.lease_namespace == "other" && s.lease_name == "kube-vip-cp"),
            ),
            (
                "vip_leasename",
                "Bad_Name",
                Err("invalid vip_leasename=\"Bad_Name\""),
            ),
            (
                "vip_leaseduration",
                "15",
                Ok(|s| s.timings.lease_duration() == Duration::from_secs(15)),
            ),
            (
                "vip_leaseduration",
                "2.5",
                Err("invalid vip_leaseduration=\"2.5\": expected a whole number"),
            ),
            (
                "vip_leaseduration",
                "3",
                Err("invalid vip_renewdeadline=\"3\": expected less than the lease duration"),
            ),
            (
                "vip_renewdeadline",
                "2.5",
                Ok(|s| s.timings.renew_deadline() == Duration::from_millis(2500)),
            ),
            (
                "vip_renewdeadline",
                "-1",
                Err("invalid vip_renewdeadline=\"-1\""),
            ),
            (
                "vip_renewdeadline",
                "6",
                Err("invalid vip_renewdeadline=\"6\": expected less than the lease duration"),
            ),
            (
                "vip_retryperiod",
                "0.5",
                Ok(|s| s.timings.retry_period() == Duration::from_millis(500)),
            ),
            (
                "vip_retryperiod",
                "3",
                Err("invalid vip_retryperiod=\"3\": expected less than the renew deadline"),
            ),
            (
                "vip_retryperiod",
                "abc",
                Err("invalid vip_retryperiod=\"abc\""),
            ),
            (
                "vip_arpRate",
                "1000",
                Ok(|s| s.arp_rate == Duration::from_secs(1)),
            ),
            (
                "vip_arpRate",
                "100",
                Err("invalid vip_arpRate=\"100\": expected milliseconds, 500 to 3600000"),
            ),
            (
                "k8s_config_file",
                "/etc/rancher/k3s/k3s.yaml",
                Ok(|s| {
                    s.kubeconfig.as_deref()
                        == Some(std::path::Path::new("/etc/rancher/k3s/k3s.yaml"))
                }),
            ),
            (
                "kubernetes_addr",
                "127.0.0.1:6444",
                Ok(|s| s.local_api == Some("127.0.0.1:6444".parse().unwrap())),
            ),
            (
                "kubernetes_addr",
                "192.168.20.140:6443",
                Err("a loopback address"),
            ),
            (
                "kubernetes_addr",
                "nonsense",
                Err("invalid kubernetes_addr"),
            ),
            ("vip_loglevel", "-4", Ok(|s| s.log_level == LogLevel::Debug)),
            ("vip_loglevel", "5", Ok(|s| s.log_level == LogLevel::Warn)),
            (
                "vip_loglevel",
                "error",
                Ok(|s| s.log_level == LogLevel::Error),
            ),
            ("vip_loglevel", "loud", Err("invalid vip_loglevel=\"loud\"")),
            (
                "vip_logformat",
                "json",
                Ok(|s| s.log_format == LogFormat::Json),
            ),
            (
                "vip_logformat",
                "xml",
                Err("invalid vip_logformat=\"xml\": expected text or json"),
            ),
            (
                "prometheus_server",
                ":9100",
                Ok(|s| s.metrics == Some("0.0.0.0:9100".parse().unwrap())),
            ),
            (
                "prometheus_server",
                "127.0.0.1:2112",
                Ok(|s| s.metrics == Some("127.0.0.1:2112".parse().unwrap())),
            ),
            ("prometheus_server", "", Ok(|s| s.metrics.is_none())),
            (
                "prometheus_server",
                "2112",
                Err("invalid prometheus_server=\"2112\""),
            ),
            ("vip_healthcheck", "false", Ok(|s| !s.health_check)),
            ("vip_healthcheck", "no", Err("invalid vip_healthcheck")),
        ];
        for (key, value, want) in cases {
            let mut pairs: Vec<(&str, &str)> =
                BRIEF.iter().filter(|(k, _)| k != key).copied().collect();
            pairs.push((key, value));
            match (load(&pairs), want) {
                (Ok(s), Ok(check)) => assert!(check(&s), "{key}={value}: {s:?}"),
                (Err(e), Err(text)) => {
                    let msg = e.to_string();
                    assert!(msg.contains(text), "{key}={value}: {msg:?} lacks {text:?}");
                    assert!(!msg.contains('\n'), "one line: {msg:?}");
                }
                (got, _) => panic!("{key}={value}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn unsupported_modes_are_refused_by_name() {
        for (key, _) in UNSUPPORTED {
            let mut pairs = BRIEF.to_vec();
            pairs.push((key, "true"));
            let e = load(&pairs).unwrap_err().to_string();
            assert!(e.starts_with(&format!("unsupported {key}=")), "{e}");
            // false or empty is fine.
            let mut pairs = BRIEF.to_vec();
            pairs.push((key, "false"));
            assert!(load(&pairs).is_ok(), "{key}=false");
        }
    }

    #[test]
    fn the_vip_is_required() {
        let e = load(&[("vip_arp", "true")]).unwrap_err().to_string();
        assert!(e.starts_with("missing address"), "{e}");
        // address wins over vip_address.
        let s = load(&[("address", "198.18.0.7"), ("vip_address", "198.18.0.8")]).unwrap();
        assert_eq!(s.vips.to_string(), "198.18.0.7/32");
    }

    #[test]
    fn every_key_is_documented_once() {
        let mut seen = std::collections::BTreeSet::new();
        for k in KEYS {
            assert!(seen.insert(k.env), "{} twice", k.env);
            assert!(!k.help.is_empty());
        }
        for (key, _) in Settings::from_sources(&env(BRIEF), "h").unwrap().describe() {
            assert!(seen.contains(key), "{key} is not in KEYS");
        }
    }
}
