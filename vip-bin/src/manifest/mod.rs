//! `vip manifest`: the static pod, the DaemonSet and the RBAC objects for
//! given settings.
//!
//! `vip manifest pod` prints the control-plane static pod. Its environment
//! block is kube-vip's (`vip_arp`, `address` + `vip_subnet`, `cp_enable`,
//! the lease settings, …), so the same manifest also runs the upstream
//! kube-vip image. The host's kubeconfig for the chosen distribution is
//! mounted read-only at `/etc/kubernetes/admin.conf` (the one path every
//! kube-vip version reads) and passed as `k8s_config_file`; `hostAliases`
//! maps `kubernetes` to 127.0.0.1 for kube-vip, which talks to
//! `kubernetes:<port>` there (vip itself always uses `127.0.0.1:<port>`).
//!
//! `vip manifest rbac` prints the least permissions of the in-cluster
//! variant: a ServiceAccount; a Role and RoleBinding in the lease's
//! namespace for the one Lease (create, and get/update/watch by name); a
//! ClusterRole and ClusterRoleBinding for nodes (get/list/watch), which the
//! cordon hand-over reads.
//!
//! `vip manifest daemonset` (in `daemonset.rs`) prints the same container
//! as a DaemonSet on the control-plane nodes, with in-cluster config.
//! Without `--distribution`, `vip manifest pod` detects the distribution
//! on the host ([`Distribution::detect`]) and says so in a YAML comment.
//!
//! All print YAML, built from the `k8s-openapi` types.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command, builder::PossibleValuesParser};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, HTTPGetAction, HostAlias, HostPathVolumeSource,
    ObjectFieldSelector, Pod, PodSpec, Probe, ResourceRequirements, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::config::{LeaderElection, LogFormat, LogLevel, Settings, secs};

mod daemonset;
mod rbac;
pub use rbac::rbac_yaml;

/// The image `vip manifest pod` uses unless `--image` says otherwise: the
/// name `deploy/Dockerfile` is built and imported under (see
/// `docs/runbook.md`), tagged with this binary's version. `localhost/` is
/// never pulled from a registry; with `imagePullPolicy: IfNotPresent` the
/// kubelet runs the image imported into the node's container runtime.
pub const DEFAULT_IMAGE_REPOSITORY: &str = "localhost/vip";

/// The default of `--name`: the pod name and the `app.kubernetes.io/name`
/// label (the deployment brief selects pods with it).
pub const DEFAULT_NAME: &str = "kube-vip";

/// The namespace of the static pod and of the ServiceAccount.
pub const POD_NAMESPACE: &str = "kube-system";

/// Where the kubeconfig is mounted inside the container: the path every
/// kube-vip version reads, so the manifest also runs kube-vip's image.
pub const KUBECONFIG_MOUNT: &str = "/etc/kubernetes/admin.conf";

/// Where kubeadm's super-admin kubeconfig is mounted inside the container
/// (`--kubeadm-super-admin`): vip's discovery falls back to it when
/// `admin.conf` is refused with 401/403.
pub const SUPER_ADMIN_MOUNT: &str = "/etc/kubernetes/super-admin.conf";

/// The Kubernetes distribution, which decides the kubeconfig's host path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// k3s: `/etc/rancher/k3s/k3s.yaml`.
    K3s,
    /// kubeadm: `/etc/kubernetes/admin.conf`.
    Kubeadm,
    /// RKE2: `/etc/rancher/rke2/rke2.yaml`.
    Rke2,
}

impl Distribution {
    /// The names `--distribution` accepts.
    pub const NAMES: [&'static str; 3] = ["k3s", "kubeadm", "rke2"];

    /// The distribution of a `--distribution` value.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "k3s" => Some(Self::K3s),
            "kubeadm" => Some(Self::Kubeadm),
            "rke2" => Some(Self::Rke2),
            _ => None,
        }
    }

    /// The etcd client files on a control-plane node of this
    /// distribution, `(CA, certificate, key)`, for
    /// `--leader-election etcd`: the API server's own etcd client
    /// certificate.
    pub fn etcd_files(self) -> [&'static str; 3] {
        match self {
            Self::K3s => [
                "/var/lib/rancher/k3s/server/tls/etcd/server-ca.crt",
                "/var/lib/rancher/k3s/server/tls/etcd/client.crt",
                "/var/lib/rancher/k3s/server/tls/etcd/client.key",
            ],
            Self::Kubeadm => [
                "/etc/kubernetes/pki/etcd/ca.crt",
                "/etc/kubernetes/pki/apiserver-etcd-client.crt",
                "/etc/kubernetes/pki/apiserver-etcd-client.key",
            ],
            Self::Rke2 => [
                "/var/lib/rancher/rke2/server/tls/etcd/server-ca.crt",
                "/var/lib/rancher/rke2/server/tls/etcd/client.crt",
                "/var/lib/rancher/rke2/server/tls/etcd/client.key",
            ],
        }
    }

    /// The name `--distribution` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::K3s => "k3s",
            Self::Kubeadm => "kubeadm",
            Self::Rke2 => "rke2",
        }
    }

    /// The distribution of the host whose file system is at `root`, and
    /// why: k3s when one of [`K3S_MARKERS`] exists, RKE2 for
    /// [`RKE2_MARKERS`], else kubeadm (`/etc/kubernetes/admin.conf`, the
    /// path kube-vip mounts by default). Both k3s and RKE2 found is
    /// refused: the caller must choose.
    pub fn detect(root: &Path) -> Result<(Self, String), OptionError> {
        let found = |markers: &[&'static str]| {
            markers
                .iter()
                .copied()
                .find(|m| root.join(m.trim_start_matches('/')).exists())
        };
        match (found(K3S_MARKERS), found(RKE2_MARKERS)) {
            (Some(k3s), Some(rke2)) => Err(OptionError {
                option: "--distribution",
                value: format!("{k3s} and {rke2} both exist"),
                expected: "k3s, kubeadm or rke2, chosen by hand: this host has files of both k3s and rke2",
            }),
            (Some(marker), None) => Ok((Self::K3s, format!("{marker} exists"))),
            (None, Some(marker)) => Ok((Self::Rke2, format!("{marker} exists"))),
            (None, None) => {
                let admin = Self::Kubeadm.kubeconfig();
                let why = if root.join(admin.trim_start_matches('/')).is_file() {
                    format!("{admin} exists")
                } else {
                    format!("no k3s or rke2 files found; kube-vip's default kubeconfig {admin}")
                };
                Ok((Self::Kubeadm, why))
            }
        }
    }

    /// The kubeconfig on the host.
    pub fn kubeconfig(self) -> &'static str {
        match self {
            Self::K3s => "/etc/rancher/k3s/k3s.yaml",
            Self::Kubeadm => "/etc/kubernetes/admin.conf",
            Self::Rke2 => "/etc/rancher/rke2/rke2.yaml",
        }
    }
}

/// The local etcd member's client URL on every distribution.
pub const DEFAULT_ETCD_ENDPOINT: &str = "https://127.0.0.1:2379";

/// Paths whose presence on the host means k3s.
pub const K3S_MARKERS: &[&str] = &[
    "/etc/rancher/k3s",
    "/var/lib/rancher/k3s",
    "/usr/local/bin/k3s",
    "/usr/bin/k3s",
];

/// Paths whose presence on the host means RKE2.
pub const RKE2_MARKERS: &[&str] = &[
    "/etc/rancher/rke2",
    "/var/lib/rancher/rke2",
    "/usr/local/bin/rke2",
    "/usr/bin/rke2",
];

/// The environment variable naming the root directory `vip manifest pod`
/// probes for the distribution (default `/`), so tests and image builds
/// can point it at another tree.
pub const HOST_ROOT_ENV: &str = "VIP_HOST_ROOT";

/// What `vip manifest pod` needs besides the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOptions {
    /// Whose kubeconfig to mount.
    pub distribution: Distribution,
    /// The host's kubeconfig to mount instead of the distribution's
    /// (kube-vip's `--k8sConfigPath`, e.g. `super-admin.conf`).
    pub kubeconfig: Option<String>,
    /// kubeadm ≥ 1.29, first node: also mount `super-admin.conf` and let
    /// vip fall back to it while `admin.conf` is still refused.
    pub kubeadm_super_admin: bool,
    /// The container image.
    pub image: String,
    /// Pod name and `app.kubernetes.io/name`.
    pub name: String,
    /// Add the liveness probe on `/healthz` (kube-vip's image does not
    /// serve it).
    pub liveness_probe: bool,
    /// The election backend (`--leader-election`); with etcd the pod
    /// passes kube-vip's etcd flags and mounts the three files.
    pub leader_election: LeaderElection,
}

/// A manifest option that cannot be rendered: exit code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {option}={value:?}: expected {expected}")]
pub struct OptionError {
    /// The option, with its dashes.
    pub option: &'static str,
    /// The value given.
    pub value: String,
    /// What is expected.
    pub expected: &'static str,
}

/// The `manifest` subcommand, with `pod` and `rbac`. The settings flags
/// are global to it, so `vip manifest pod --address …` and
/// `vip manifest --address … pod` both work and the parent's matches carry
/// them.
pub fn command() -> Command {
    let settings: Vec<Arg> = crate::settings_args()
        .into_iter()
        .filter(|a| a.get_id() != crate::STRAY)
        .map(|a| a.global(true))
        .collect();
    Command::new("manifest")
        .about("Print the static pod (pod), the DaemonSet (daemonset) or the in-cluster RBAC objects (rbac) for these settings, as YAML")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .args(settings)
        .subcommand(
            Command::new("pod")
                .about("Print the control-plane static pod")
                .arg(
                    Arg::new("distribution")
                        .long("distribution")
                        .value_name("NAME")
                        .value_parser(PossibleValuesParser::new(Distribution::NAMES))
                        .help("whose kubeconfig to mount: k3s (/etc/rancher/k3s/k3s.yaml), kubeadm (/etc/kubernetes/admin.conf) or rke2 (/etc/rancher/rke2/rke2.yaml) [default: detected on this host: k3s or rke2 by their files, else kubeadm]"),
                )
                .arg(
                    crate::boolean(Arg::new("inCluster").long("inCluster"))
                        .help("kube-vip's flag; refused: a static pod gets no ServiceAccount token (use `vip manifest daemonset`)"),
                )
                .arg(
                    Arg::new("kubeadm-super-admin")
                        .long("kubeadm-super-admin")
                        .action(ArgAction::SetTrue)
                        .help("kubeadm >= 1.29, the node running `kubeadm init`: also mount /etc/kubernetes/super-admin.conf; vip uses it while admin.conf is refused (401/403)"),
                )
                .arg(image_arg())
                .arg(name_arg(DEFAULT_NAME))
                .arg(leader_election_arg())
                .arg(no_liveness_probe_arg())
                .arg(stray_arg()),
        )
        .subcommand(daemonset::command())
        .subcommand(
            Command::new("rbac")
                .about("Print the least RBAC objects for the in-cluster variant (ServiceAccount, Role/RoleBinding for the Lease, ClusterRole/ClusterRoleBinding for nodes)")
                .arg(name_arg(DEFAULT_NAME))
                .arg(stray_arg()),
        )
}

fn name_arg(default: &'static str) -> Arg {
    Arg::new("name")
        .long("name")
        .value_name("NAME")
        .default_value(default)
        .help("pod (DaemonSet) and ServiceAccount name, and the app.kubernetes.io/name label")
}

fn leader_election_arg() -> Arg {
    Arg::new("leader-election")
        .long("leader-election")
        .value_name("TYPE")
        .value_parser(PossibleValuesParser::new(["kubernetes", "etcd"]))
        .help("kubernetes (the Lease) or etcd: pass kube-vip's etcd flags (the distribution's etcd client files and https://127.0.0.1:2379 unless the etcd settings say otherwise) and mount the files read-only [default: vip_leaderelectiontype]")
}

/// The election of `--leader-election`, else of the settings; `kubernetes`
/// against `vip_leaderelectiontype=etcd` is refused.
fn leader_election(m: &ArgMatches, settings: &Settings) -> Result<LeaderElection, OptionError> {
    match m.get_one::<String>("leader-election").map(String::as_str) {
        Some("etcd") => Ok(LeaderElection::Etcd),
        Some(_) if settings.leader_election == LeaderElection::Etcd => Err(OptionError {
            option: "--leader-election",
            value: "kubernetes".into(),
            expected: "etcd, as vip_leaderelectiontype says (or leave one of them out)",
        }),
        Some(_) => Ok(LeaderElection::Kubernetes),
        None => Ok(settings.leader_election),
    }
}

fn image_arg() -> Arg {
    Arg::new("image")
        .long("image")
        .value_name("IMAGE")
        .help(format!(
            "container image; its tag is the app.kubernetes.io/version label [default: {DEFAULT_IMAGE_REPOSITORY}:{}]",
            env!("CARGO_PKG_VERSION")
        ))
}

fn no_liveness_probe_arg() -> Arg {
    Arg::new("no-liveness-probe")
        .long("no-liveness-probe")
        .action(ArgAction::SetTrue)
        .help("omit the /healthz liveness probe (for kube-vip's image, which does not serve /healthz)")
}

/// The hidden catch of stray arguments, refused by the settings check.
fn stray_arg() -> Arg {
    Arg::new(crate::STRAY)
        .num_args(1..)
        .allow_hyphen_values(true)
        .hide(true)
}

/// A kube-vip bool flag that must keep one value: `--flag` or
/// `--flag=<must>` is accepted, the other value refused with `expected`.
fn fixed_flag(
    m: &ArgMatches,
    id: &'static str,
    option: &'static str,
    must: bool,
    expected: &'static str,
) -> Result<(), OptionError> {
    let Some(v) = m.get_one::<String>(id) else {
        return Ok(());
    };
    match crate::config::parse_bool(id, v) {
        Ok(b) if b == must => Ok(()),
        _ => Err(OptionError {
            option,
            value: v.clone(),
            expected,
        }),
    }
}

/// `--vip-nodename` is refused: every node's name comes from the downward
/// API.
fn no_node_name(m: &ArgMatches) -> Result<(), OptionError> {
    if m.value_source("vip_nodename") == Some(clap::parser::ValueSource::CommandLine) {
        return Err(OptionError {
            option: "--vip-nodename",
            value: m
                .get_one::<String>("vip_nodename")
                .cloned()
                .unwrap_or_default(),
            expected: "nothing: every node's name comes from spec.nodeName (the downward API)",
        });
    }
    Ok(())
}

/// Run `vip manifest pod|rbac` with validated settings: print the YAML and
/// exit 0, or print one line and exit 2.
pub fn run(matches: &ArgMatches, settings: Settings) -> ExitCode {
    let out = match matches.subcommand() {
        Some(("pod", m)) => no_node_name(m)
            .and_then(|()| {
                fixed_flag(
                    m,
                    "inCluster",
                    "--inCluster",
                    false,
                    "false: a static pod gets no ServiceAccount token; for in-cluster config use `vip manifest daemonset`",
                )
            })
            .and_then(|()| pod_options(m, &settings))
            .map(|(o, comment)| {
                let mut text = comment;
                text.push_str(&to_yaml(&[pod(&settings, &o)]));
                text
            }),
        Some(("daemonset", m)) => no_node_name(m)
            .and_then(|()| daemonset::options(m, &settings))
            .map(|o| to_yaml(&[daemonset::daemonset(&settings, &o)])),
        Some(("rbac", m)) => checked_name(m).map(|name| rbac_yaml(&settings, &name)),
        _ => {
            eprintln!("vip manifest: expected pod, daemonset or rbac");
            return ExitCode::from(2);
        }
    };
    match out {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vip: {e}");
            ExitCode::from(2)
        }
    }
}

fn checked_name(m: &ArgMatches) -> Result<String, OptionError> {
    let name = m
        .get_one::<String>("name")
        .cloned()
        .unwrap_or_else(|| DEFAULT_NAME.into());
    if is_dns_label(&name) && name.len() <= 63 {
        Ok(name)
    } else {
        Err(OptionError {
            option: "--name",
            value: name,
            expected: "a DNS label: lower-case letters, digits and '-', at most 63",
        })
    }
}

/// The pod's options, and the YAML comment saying how the distribution
/// was chosen when it was detected (empty when `--distribution` gave it).
fn pod_options(m: &ArgMatches, settings: &Settings) -> Result<(PodOptions, String), OptionError> {
    let kubeconfig = settings
        .kubeconfig
        .as_ref()
        .map(|p| p.display().to_string());
    let (distribution, comment) = match m.get_one::<String>("distribution") {
        Some(d) => (
            Distribution::from_name(d).ok_or(OptionError {
                option: "--distribution",
                value: d.clone(),
                expected: "k3s, kubeadm or rke2",
            })?,
            String::new(),
        ),
        // kube-vip's generator mounts --k8sConfigPath: no guessing.
        None if kubeconfig.is_some() => (
            Distribution::Kubeadm,
            format!(
                "# kubeconfig: {} (k8s_config_file) mounted at {KUBECONFIG_MOUNT}.\n",
                kubeconfig.as_deref().unwrap_or_default()
            ),
        ),
        None => {
            let root = std::env::var_os(HOST_ROOT_ENV)
                .filter(|r| !r.is_empty())
                .map_or_else(|| PathBuf::from("/"), PathBuf::from);
            let (d, why) = Distribution::detect(&root)?;
            let comment = format!(
                "# distribution: {} (detected on this host: {why}); kubeconfig {} mounted.\n# Pass --distribution k3s|kubeadm|rke2 to choose another.\n",
                d.name(),
                d.kubeconfig()
            );
            (d, comment)
        }
    };
    let kubeadm_super_admin = m.get_flag("kubeadm-super-admin");
    if kubeadm_super_admin && distribution != Distribution::Kubeadm {
        return Err(OptionError {
            option: "--kubeadm-super-admin",
            value: "true".into(),
            expected: "--distribution kubeadm (super-admin.conf exists only there)",
        });
    }
    let image = m
        .get_one::<String>("image")
        .cloned()
        .unwrap_or_else(default_image);
    image_version(&image)?;
    let o = PodOptions {
        distribution,
        kubeconfig,
        kubeadm_super_admin,
        image,
        name: checked_name(m)?,
        liveness_probe: !m.get_flag("no-liveness-probe"),
        leader_election: leader_election(m, settings)?,
    };
    Ok((o, comment))
}

/// `localhost/vip:<this version>`.
pub fn default_image() -> String {
    format!("{DEFAULT_IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
}

/// The `app.kubernetes.io/version` label of an image: its tag, or this
/// binary's version when it has none (a digest alone, or no tag).
pub fn image_version(image: &str) -> Result<String, OptionError> {
    let bad = |expected| OptionError {
        option: "--image",
        value: image.to_string(),
        expected,
    };
    if image.is_empty() || image.chars().any(char::is_whitespace) {
        return Err(bad("an image reference such as registry/name:tag"));
    }
    let without_digest = image.split_once('@').map_or(image, |(n, _)| n);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let Some((name, tag)) = last.split_once(':') else {
        return Ok(env!("CARGO_PKG_VERSION").into());
    };
    if name.is_empty() || tag.is_empty() {
        return Err(bad("an image reference such as registry/name:tag"));
    }
    let label_ok = tag.len() <= 63
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric())
        && tag.ends_with(|c: char| c.is_ascii_alphanumeric())
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if label_ok {
        Ok(tag.to_string())
    } else {
        Err(bad(
            "a tag usable as a label value (at most 63 of A-Z a-z 0-9 - _ ., alphanumeric at both ends)",
        ))
    }
}

fn is_dns_label(s: &str) -> bool {
    vip_core::names::check_dns_label(s).is_ok()
}

fn labels(name: &str, version: Option<&str>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), name.to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            "control-plane-vip".to_string(),
        ),
        (
            "app.kubernetes.io/part-of".to_string(),
            "kubernetes-control-plane".to_string(),
        ),
    ]);
    if let Some(v) = version {
        l.insert("app.kubernetes.io/version".to_string(), v.to_string());
    }
    l
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// kube-vip's numeric `vip_loglevel` (slog levels).
fn log_level_number(l: LogLevel) -> &'static str {
    match l {
        LogLevel::Debug => "-4",
        LogLevel::Info => "0",
        LogLevel::Warn => "4",
        LogLevel::Error => "8",
    }
}

/// `prometheus_server` as kube-vip writes it: `:2112` for every IPv4
/// address, the address otherwise; empty when disabled.
fn metrics_value(s: &Settings) -> String {
    match s.metrics {
        None => String::new(),
        Some(a) if a.ip() == IpAddr::V4(Ipv4Addr::UNSPECIFIED) => format!(":{}", a.port()),
        Some(a) => a.to_string(),
    }
}

/// The environment block: kube-vip's variables, in the order kube-vip's
/// generator writes them, then vip's own (only when not at their default).
fn env_block(s: &Settings, k8s_config_file: bool) -> Vec<EnvVar> {
    let mut v = vec![
        env("vip_arp", "true"),
        env("port", s.port.to_string()),
        EnvVar {
            name: "vip_nodename".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: Some("v1".into()),
                    field_path: "spec.nodeName".into(),
                }),
                ..Default::default()
            }),
        },
    ];
    if let vip_core::InterfaceSelector::Name(name) = &s.interface {
        v.push(env("vip_interface", name.clone()));
    }
    let addrs = s.vips.addresses();
    v.push(env(
        "vip_subnet",
        addrs
            .iter()
            .map(|a| a.prefix().to_string())
            .collect::<Vec<_>>()
            .join(","),
    ));
    v.push(env("cp_enable", "true"));
    v.push(env("cp_namespace", s.lease_namespace.clone()));
    v.push(env("vip_leaderelection", "true"));
    v.push(env("vip_leasename", s.lease_name.clone()));
    if !s.lease_annotations.is_empty() {
        v.push(env(
            "vip_leaseannotations",
            crate::config::annotations_json(&s.lease_annotations),
        ));
    }
    v.push(env("vip_leaseduration", secs(s.timings.lease_duration())));
    v.push(env("vip_renewdeadline", secs(s.timings.renew_deadline())));
    v.push(env("vip_retryperiod", secs(s.timings.retry_period())));
    v.push(env("vip_arpRate", s.arp_rate.as_millis().to_string()));
    v.push(env(
        "address",
        addrs
            .iter()
            .map(|a| a.addr().to_string())
            .collect::<Vec<_>>()
            .join(","),
    ));
    v.push(env("prometheus_server", metrics_value(s)));
    if k8s_config_file {
        v.push(env("k8s_config_file", KUBECONFIG_MOUNT));
    }
    if let Some(a) = s.local_api {
        v.push(env("kubernetes_addr", a.to_string()));
    }
    v.push(env("vip_loglevel", log_level_number(s.log_level)));
    if s.log_format == LogFormat::Json {
        v.push(env("vip_logformat", "json"));
    }
    if !s.health_check {
        v.push(env("vip_healthcheck", "false"));
    }
    // vip's own fast-failover settings, when not the defaults (kube-vip
    // ignores them).
    let f = s.fast_failover;
    let d = vip_core::FastFailoverPolicy::default();
    if f.heartbeat != d.heartbeat {
        v.push(env("vip_heartbeat_ms", f.heartbeat.as_millis().to_string()));
    }
    if f.misses != d.misses {
        v.push(env("vip_heartbeat_misses", f.misses.to_string()));
    }
    if f.probe_timeout != d.probe_timeout {
        v.push(env("vip_probe_ms", f.probe_timeout.as_millis().to_string()));
    }
    if !s.events {
        v.push(env("vip_events", "false"));
    }
    v
}

/// The etcd client files and endpoints of the pod: the settings' values,
/// else the distribution's defaults.
fn etcd_files(s: &Settings, d: Distribution) -> ([String; 3], String) {
    let [ca, cert, key] = d.etcd_files();
    let pick = |set: &Option<std::path::PathBuf>, default: &str| {
        set.as_ref()
            .map_or_else(|| default.to_string(), |p| p.display().to_string())
    };
    let endpoints = if s.etcd.endpoints.is_empty() {
        DEFAULT_ETCD_ENDPOINT.to_string()
    } else {
        s.etcd.endpoint_list()
    };
    (
        [
            pick(&s.etcd.ca, ca),
            pick(&s.etcd.cert, cert),
            pick(&s.etcd.key, key),
        ],
        endpoints,
    )
}

/// The container's arguments: `manager`, and with etcd kube-vip's etcd
/// flags (kube-vip reads them only as flags).
fn args(s: &Settings, election: LeaderElection, d: Distribution) -> Vec<String> {
    let mut a = vec!["manager".to_string()];
    if election == LeaderElection::Etcd {
        let ([ca, cert, key], endpoints) = etcd_files(s, d);
        a.push("--leaderElectionType=etcd".into());
        a.push(format!("--etcdCACert={ca}"));
        a.push(format!("--etcdCert={cert}"));
        a.push(format!("--etcdKey={key}"));
        a.push(format!("--etcdEndpoints={endpoints}"));
    }
    a
}

/// The etcd client files as read-only hostPath volumes and their mounts
/// at the same paths (`--leader-election etcd`).
fn etcd_volumes(s: &Settings, d: Distribution) -> (Vec<Volume>, Vec<VolumeMount>) {
    let (files, _) = etcd_files(s, d);
    ["etcd-ca", "etcd-cert", "etcd-key"]
        .into_iter()
        .zip(files)
        .map(|(name, path)| {
            (
                Volume {
                    name: name.into(),
                    host_path: Some(HostPathVolumeSource {
                        path: path.clone(),
                        type_: Some("File".into()),
                    }),
                    ..Default::default()
                },
                VolumeMount {
                    name: name.into(),
                    mount_path: path,
                    read_only: Some(true),
                    ..Default::default()
                },
            )
        })
        .unzip()
}

/// The liveness probe on `/healthz` of the metrics listener, from the host
/// (hostNetwork: the kubelet's probe reaches the pod's loopback).
fn liveness(s: &Settings) -> Option<Probe> {
    let a = s.metrics?;
    let host = match a.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Some(Probe {
        http_get: Some(HTTPGetAction {
            host: Some(host.to_string()),
            path: Some("/healthz".into()),
            port: IntOrString::Int(i32::from(a.port())),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        period_seconds: Some(10),
        timeout_seconds: Some(3),
        failure_threshold: Some(3),
        ..Default::default()
    })
}

/// What the static pod's and the DaemonSet's container differ in.
pub(crate) struct ContainerOptions<'a> {
    /// The container's name.
    pub name: &'a str,
    /// Its image.
    pub image: &'a str,
    /// Its arguments: `manager`, and kube-vip's etcd flags with etcd.
    pub args: Vec<String>,
    /// With the `/healthz` liveness probe.
    pub liveness_probe: bool,
    /// Pass `k8s_config_file` (the mounted kubeconfig).
    pub k8s_config_file: bool,
    /// Its volume mounts.
    pub mounts: Option<Vec<VolumeMount>>,
}

/// The one `vip manager` container, shared by the static pod and the
/// DaemonSet: kube-vip's environment block, NET_ADMIN and NET_RAW only,
/// small requests, the `/healthz` probe.
pub(crate) fn container(s: &Settings, o: &ContainerOptions<'_>) -> Container {
    Container {
        name: o.name.into(),
        image: Some(o.image.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(o.args.clone()),
        env: Some(env_block(s, o.k8s_config_file)),
        security_context: Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            ..Default::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("10m".into())),
                ("memory".to_string(), Quantity("16Mi".into())),
            ])),
            ..Default::default()
        }),
        liveness_probe: if o.liveness_probe { liveness(s) } else { None },
        volume_mounts: o.mounts.clone(),
        ..Default::default()
    }
}

/// The pod spec both share: host network, node-critical priority, the
/// container.
pub(crate) fn pod_spec(container: Container) -> PodSpec {
    PodSpec {
        host_network: Some(true),
        priority_class_name: Some("system-node-critical".into()),
        containers: vec![container],
        ..Default::default()
    }
}

/// The static pod for `settings`.
pub fn pod(s: &Settings, o: &PodOptions) -> Pod {
    let version = image_version(&o.image).unwrap_or_else(|_| env!("CARGO_PKG_VERSION").into());
    let mut volumes = vec![Volume {
        name: "kubeconfig".into(),
        host_path: Some(HostPathVolumeSource {
            path: o
                .kubeconfig
                .clone()
                .unwrap_or_else(|| o.distribution.kubeconfig().into()),
            type_: Some("File".into()),
        }),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "kubeconfig".into(),
        mount_path: KUBECONFIG_MOUNT.into(),
        read_only: Some(true),
        ..Default::default()
    }];
    if o.kubeadm_super_admin {
        volumes.push(Volume {
            name: "super-admin-kubeconfig".into(),
            host_path: Some(HostPathVolumeSource {
                path: "/etc/kubernetes/super-admin.conf".into(),
                type_: Some("File".into()),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "super-admin-kubeconfig".into(),
            mount_path: SUPER_ADMIN_MOUNT.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    if o.leader_election == LeaderElection::Etcd {
        let (v, mo) = etcd_volumes(s, o.distribution);
        volumes.extend(v);
        mounts.extend(mo);
    }
    let container = container(
        s,
        &ContainerOptions {
            name: &o.name,
            image: &o.image,
            args: args(s, o.leader_election, o.distribution),
            liveness_probe: o.liveness_probe,
            k8s_config_file: !o.kubeadm_super_admin,
            mounts: Some(mounts),
        },
    );
    Pod {
        metadata: ObjectMeta {
            name: Some(o.name.clone()),
            namespace: Some(POD_NAMESPACE.into()),
            labels: Some(labels(&o.name, Some(&version))),
            ..Default::default()
        },
        spec: Some(PodSpec {
            host_aliases: Some(vec![HostAlias {
                ip: "127.0.0.1".into(),
                hostnames: Some(vec!["kubernetes".into()]),
            }]),
            volumes: Some(volumes),
            ..pod_spec(container)
        }),
        status: None,
    }
}

fn yaml_of<T: serde::Serialize>(value: &T) -> String {
    // k8s-openapi's types serialise to plain maps, lists and strings; YAML
    // serialisation of those cannot fail.
    serde_saphyr::to_string(value).expect("k8s-openapi objects serialise to YAML")
}

fn to_yaml<T: serde::Serialize>(docs: &[T]) -> String {
    docs.iter().map(yaml_of).collect::<Vec<_>>().join("---\n")
}

#[cfg(test)]
mod tests;
