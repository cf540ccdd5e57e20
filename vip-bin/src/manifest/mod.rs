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
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command, builder::PossibleValuesParser};

use crate::config::{LeaderElection, Settings};

mod convert;
mod daemonset;
mod distribution;
mod pod;
mod rbac;
pub use convert::run_from;
pub use distribution::{DEFAULT_ETCD_ENDPOINT, Distribution, HOST_ROOT_ENV};
pub use pod::pod;
pub(crate) use pod::{ContainerOptions, args, container, host_file_volumes, pod_spec};
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
                .arg(
                    Arg::new("from")
                        .long("from")
                        .value_name("FILE")
                        .help("convert this kube-vip static pod instead: keep its env, args and mounts, swap the image for vip's, add what vip adds (probe, labels), and say every change in a YAML comment; takes only --image, --name and --no-liveness-probe besides"),
                )
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
                text.push_str(&notes_comment(&settings));
                text.push_str(&to_yaml(&[pod(&settings, &o)]));
                text
            }),
        Some(("daemonset", m)) => no_node_name(m)
            .and_then(|()| daemonset::options(m, &settings))
            .map(|o| notes_comment(&settings) + &to_yaml(&[daemonset::daemonset(&settings, &o)])),
        Some(("rbac", m)) => checked_name(m).map(|name| rbac_yaml(&settings, &name)),
        _ => {
            eprintln!("vip manifest: expected pod, daemonset or rbac");
            return ExitCode::from(2);
        }
    };
    print_or_refuse(out)
}

/// Print the YAML and exit 0, or the one-line error and exit 2.
fn print_or_refuse(out: Result<String, impl std::fmt::Display>) -> ExitCode {
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

/// One YAML comment line per kube-vip setting given that `vip` honours
/// differently (it is not in the env block).
fn notes_comment(settings: &Settings) -> String {
    settings
        .notes
        .iter()
        .map(|n| format!("# kube-vip setting honoured differently, left out: {n}\n"))
        .collect()
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
