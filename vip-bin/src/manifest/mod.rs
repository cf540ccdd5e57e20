//! `vip manifest`: the static pod and the RBAC objects for given settings.
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
//! Both print YAML, built from the `k8s-openapi` types.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

/// What `vip manifest pod` needs besides the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOptions {
    /// Whose kubeconfig to mount.
    pub distribution: Distribution,
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
        .map(|a| a.global(true))
        .collect();
    Command::new("manifest")
        .about("Print the static pod (pod) or the in-cluster RBAC objects (rbac) for these settings, as YAML")
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
                        .required(true)
                        .value_parser(PossibleValuesParser::new(Distribution::NAMES))
                        .help("whose kubeconfig to mount: k3s (/etc/rancher/k3s/k3s.yaml), kubeadm (/etc/kubernetes/admin.conf) or rke2 (/etc/rancher/rke2/rke2.yaml)"),
                )
                .arg(
                    Arg::new("kubeadm-super-admin")
                        .long("kubeadm-super-admin")
                        .action(ArgAction::SetTrue)
                        .help("kubeadm >= 1.29, the node running `kubeadm init`: also mount /etc/kubernetes/super-admin.conf; vip uses it while admin.conf is refused (401/403)"),
                )
                .arg(
                    Arg::new("image")
                        .long("image")
                        .value_name("IMAGE")
                        .help(format!(
                            "container image; its tag is the app.kubernetes.io/version label [default: {DEFAULT_IMAGE_REPOSITORY}:{}]",
                            env!("CARGO_PKG_VERSION")
                        )),
                )
                .arg(name_arg())
                .arg(
                    Arg::new("leader-election")
                        .long("leader-election")
                        .value_name("TYPE")
                        .value_parser(PossibleValuesParser::new(["kubernetes", "etcd"]))
                        .help("kubernetes (the Lease) or etcd: pass kube-vip's etcd flags (the distribution's etcd client files and https://127.0.0.1:2379 unless the etcd settings say otherwise) and mount the files read-only [default: vip_leaderelectiontype]"),
                )
                .arg(
                    Arg::new("no-liveness-probe")
                        .long("no-liveness-probe")
                        .action(ArgAction::SetTrue)
                        .help("omit the /healthz liveness probe (for kube-vip's image, which does not serve /healthz)"),
                ),
        )
        .subcommand(
            Command::new("rbac")
                .about("Print the least RBAC objects for the in-cluster variant (ServiceAccount, Role/RoleBinding for the Lease, ClusterRole/ClusterRoleBinding for nodes)")
                .arg(name_arg()),
        )
}

fn name_arg() -> Arg {
    Arg::new("name")
        .long("name")
        .value_name("NAME")
        .default_value(DEFAULT_NAME)
        .help("pod and ServiceAccount name, and the app.kubernetes.io/name label")
}

/// Run `vip manifest pod|rbac` with validated settings: print the YAML and
/// exit 0, or print one line and exit 2.
pub fn run(matches: &ArgMatches, settings: Settings) -> ExitCode {
    let out = match matches.subcommand() {
        Some(("pod", m)) => pod_options(m, &settings).and_then(|o| {
            if m.value_source("vip_nodename") == Some(clap::parser::ValueSource::CommandLine) {
                return Err(OptionError {
                    option: "--vip-nodename",
                    value: m.get_one::<String>("vip_nodename").cloned().unwrap_or_default(),
                    expected: "nothing: every node's name comes from spec.nodeName (the downward API)",
                });
            }
            Ok(to_yaml(&[pod(&settings, &o)]))
        }),
        Some(("rbac", m)) => checked_name(m).map(|name| rbac_yaml(&settings, &name)),
        _ => {
            eprintln!("vip manifest: expected pod or rbac");
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

fn pod_options(m: &ArgMatches, settings: &Settings) -> Result<PodOptions, OptionError> {
    let distribution = m
        .get_one::<String>("distribution")
        .and_then(|d| Distribution::from_name(d))
        .ok_or(OptionError {
            option: "--distribution",
            value: String::new(),
            expected: "k3s, kubeadm or rke2",
        })?;
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
    Ok(PodOptions {
        distribution,
        kubeadm_super_admin,
        image,
        name: checked_name(m)?,
        liveness_probe: !m.get_flag("no-liveness-probe"),
        leader_election: match m.get_one::<String>("leader-election").map(String::as_str) {
            Some("etcd") => LeaderElection::Etcd,
            Some(_) if settings.leader_election == LeaderElection::Etcd => {
                return Err(OptionError {
                    option: "--leader-election",
                    value: "kubernetes".into(),
                    expected: "etcd, as vip_leaderelectiontype says (or leave one of them out)",
                });
            }
            Some(_) => LeaderElection::Kubernetes,
            None => settings.leader_election,
        },
    })
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
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
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
fn env_block(s: &Settings, o: &PodOptions) -> Vec<EnvVar> {
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
    if !o.kubeadm_super_admin {
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
    v
}

/// The etcd client files and endpoints of the pod: the settings' values,
/// else the distribution's defaults.
fn etcd_files(s: &Settings, o: &PodOptions) -> ([String; 3], String) {
    let [ca, cert, key] = o.distribution.etcd_files();
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
fn args(s: &Settings, o: &PodOptions) -> Vec<String> {
    let mut a = vec!["manager".to_string()];
    if o.leader_election == LeaderElection::Etcd {
        let ([ca, cert, key], endpoints) = etcd_files(s, o);
        a.push("--leaderElectionType=etcd".into());
        a.push(format!("--etcdCACert={ca}"));
        a.push(format!("--etcdCert={cert}"));
        a.push(format!("--etcdKey={key}"));
        a.push(format!("--etcdEndpoints={endpoints}"));
    }
    a
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

/// The static pod for `settings`.
pub fn pod(s: &Settings, o: &PodOptions) -> Pod {
    let version = image_version(&o.image).unwrap_or_else(|_| env!("CARGO_PKG_VERSION").into());
    let mut volumes = vec![Volume {
        name: "kubeconfig".into(),
        host_path: Some(HostPathVolumeSource {
            path: o.distribution.kubeconfig().into(),
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
        let (files, _) = etcd_files(s, o);
        for (name, path) in ["etcd-ca", "etcd-cert", "etcd-key"].into_iter().zip(files) {
            volumes.push(Volume {
                name: name.into(),
                host_path: Some(HostPathVolumeSource {
                    path: path.clone(),
                    type_: Some("File".into()),
                }),
                ..Default::default()
            });
            mounts.push(VolumeMount {
                name: name.into(),
                mount_path: path,
                read_only: Some(true),
                ..Default::default()
            });
        }
    }
    let container = Container {
        name: o.name.clone(),
        image: Some(o.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(args(s, o)),
        env: Some(env_block(s, o)),
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
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(o.name.clone()),
            namespace: Some(POD_NAMESPACE.into()),
            labels: Some(labels(&o.name, Some(&version))),
            ..Default::default()
        },
        spec: Some(PodSpec {
            host_network: Some(true),
            priority_class_name: Some("system-node-critical".into()),
            host_aliases: Some(vec![HostAlias {
                ip: "127.0.0.1".into(),
                hostnames: Some(vec!["kubernetes".into()]),
            }]),
            containers: vec![container],
            volumes: Some(volumes),
            ..Default::default()
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
