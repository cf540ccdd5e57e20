//! `vip manifest daemonset`: `vip` as a DaemonSet on the control-plane
//! nodes, for clusters whose control-plane nodes the API manages (k3s and
//! RKE2 auto-deploy manifests, or `kubectl apply`).
//!
//! The pod template is the static pod's, without the kubeconfig mount:
//! the same container and environment block (so kube-vip's image runs it
//! too), host network, node-critical priority; it runs with the
//! ServiceAccount of `vip manifest rbac` and in-cluster config. `vip`
//! still talks to the API server on its own node (`127.0.0.1:<port>`,
//! verifying the certificate for the in-cluster name), so the `/readyz`
//! hand-over follows the local API server as in the static pod. The node
//! affinity selects nodes labelled `node-role.kubernetes.io/control-plane`
//! (or `…/master` on older clusters), and the tolerations let it run on
//! their `NoSchedule`/`NoExecute` taints, as kube-vip's `--taint` does.
//!
//! `--leader-election etcd` works as in the static pod: kube-vip's etcd
//! flags, and the etcd client files mounted read-only from the host
//! (`--distribution` names whose defaults, else detected on this host).

use std::collections::BTreeMap;

use clap::{Arg, ArgMatches, Command, builder::PossibleValuesParser};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::{
    ContainerOptions, DEFAULT_NAME, Distribution, HOST_ROOT_ENV, OptionError, POD_NAMESPACE, args,
    checked_name, container, default_image, fixed_flag, host_file_volumes, image_arg,
    image_version, labels, leader_election, leader_election_arg, name_arg, no_liveness_probe_arg,
    pod_spec, stray_arg,
};
use crate::config::{LeaderElection, Settings};

/// The default DaemonSet name and `app.kubernetes.io/name` label, as
/// kube-vip's generator names it.
pub const DEFAULT_DAEMONSET_NAME: &str = "kube-vip-ds";

/// The node labels of control-plane nodes; either one selects a node.
pub const CONTROL_PLANE_LABELS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

/// What `vip manifest daemonset` needs besides the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSetOptions {
    /// The container image.
    pub image: String,
    /// DaemonSet and container name, `app.kubernetes.io/name`.
    pub name: String,
    /// The ServiceAccount it runs as (`vip manifest rbac --name`).
    pub service_account: String,
    /// Add the liveness probe on `/healthz`.
    pub liveness_probe: bool,
    /// The election backend (`--leader-election`); with etcd the pods
    /// pass kube-vip's etcd flags and mount the three files.
    pub leader_election: LeaderElection,
    /// Whose etcd client files are the defaults with etcd.
    pub distribution: Distribution,
}

/// The `daemonset` subcommand of `vip manifest`.
pub(super) fn command() -> Command {
    Command::new("daemonset")
        .about("Print the DaemonSet for the control-plane nodes (in-cluster config, with the ServiceAccount of `vip manifest rbac`)")
        .arg(image_arg())
        .arg(name_arg(DEFAULT_DAEMONSET_NAME))
        .arg(
            Arg::new("service-account")
                .long("service-account")
                .value_name("NAME")
                .default_value(DEFAULT_NAME)
                .help("the ServiceAccount the pods run as: the --name of `vip manifest rbac`"),
        )
        .arg(no_liveness_probe_arg())
        .arg(leader_election_arg())
        .arg(
            Arg::new("distribution")
                .long("distribution")
                .value_name("NAME")
                .value_parser(PossibleValuesParser::new(Distribution::NAMES))
                .help("with --leader-election etcd, whose etcd client files are the defaults: k3s, kubeadm or rke2 [default: detected on this host]"),
        )
        .arg(
            crate::boolean(Arg::new("inCluster").long("inCluster"))
                .help("kube-vip's flag; always on (false is refused: a DaemonSet pod uses its ServiceAccount)"),
        )
        .arg(
            crate::boolean(Arg::new("taint").long("taint"))
                .help("kube-vip's flag; always on (false is refused: vip runs on control-plane nodes only)"),
        )
        .arg(stray_arg())
}

/// The DaemonSet's options from its command line.
pub(super) fn options(m: &ArgMatches, s: &Settings) -> Result<DaemonSetOptions, OptionError> {
    fixed_flag(
        m,
        "inCluster",
        "--inCluster",
        true,
        "true: the DaemonSet always uses in-cluster config (for a mounted kubeconfig use `vip manifest pod`)",
    )?;
    fixed_flag(
        m,
        "taint",
        "--taint",
        true,
        "true: the DaemonSet always runs on the control-plane nodes only, tolerating their taints",
    )?;
    let image = m
        .get_one::<String>("image")
        .cloned()
        .unwrap_or_else(default_image);
    image_version(&image)?;
    let service_account = m
        .get_one::<String>("service-account")
        .cloned()
        .unwrap_or_else(|| DEFAULT_NAME.into());
    if !super::is_dns_label(&service_account) || service_account.len() > 63 {
        return Err(OptionError {
            option: "--service-account",
            value: service_account,
            expected: "a DNS label: lower-case letters, digits and '-', at most 63",
        });
    }
    let leader_election = leader_election(m, s)?;
    let distribution = match m.get_one::<String>("distribution") {
        Some(d) => Distribution::from_name(d).ok_or(OptionError {
            option: "--distribution",
            value: d.clone(),
            expected: "k3s, kubeadm or rke2",
        })?,
        // Only the etcd files' defaults depend on it.
        None if leader_election == LeaderElection::Etcd => {
            let root = std::env::var_os(HOST_ROOT_ENV)
                .filter(|r| !r.is_empty())
                .map_or_else(|| std::path::PathBuf::from("/"), std::path::PathBuf::from);
            Distribution::detect(&root)?.0
        }
        None => Distribution::Kubeadm,
    };
    Ok(DaemonSetOptions {
        image,
        name: checked_name(m)?,
        service_account,
        liveness_probe: !m.get_flag("no-liveness-probe"),
        leader_election,
        distribution,
    })
}

fn control_plane_affinity() -> Affinity {
    let term = |key: &str| NodeSelectorTerm {
        match_expressions: Some(vec![NodeSelectorRequirement {
            key: key.into(),
            operator: "Exists".into(),
            values: None,
        }]),
        match_fields: None,
    };
    Affinity {
        node_affinity: Some(NodeAffinity {
            // Terms are ORed: either label selects the node.
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: CONTROL_PLANE_LABELS.iter().map(|k| term(k)).collect(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn control_plane_tolerations() -> Vec<Toleration> {
    ["NoSchedule", "NoExecute"]
        .iter()
        .map(|effect| Toleration {
            effect: Some((*effect).into()),
            operator: Some("Exists".into()),
            ..Default::default()
        })
        .collect()
}

/// The DaemonSet for `settings`.
pub fn daemonset(s: &Settings, o: &DaemonSetOptions) -> DaemonSet {
    let version = image_version(&o.image).unwrap_or_else(|_| env!("CARGO_PKG_VERSION").into());
    let (volumes, mounts) = host_file_volumes(s, o.leader_election, o.distribution);
    let (volumes, mounts) = if volumes.is_empty() {
        (None, None)
    } else {
        (Some(volumes), Some(mounts))
    };
    let container = container(
        s,
        &ContainerOptions {
            name: &o.name,
            image: &o.image,
            args: args(s, o.leader_election, o.distribution),
            liveness_probe: o.liveness_probe,
            k8s_config_file: false,
            mounts,
        },
    );
    let selector = BTreeMap::from([("app.kubernetes.io/name".to_string(), o.name.clone())]);
    DaemonSet {
        metadata: ObjectMeta {
            name: Some(o.name.clone()),
            namespace: Some(POD_NAMESPACE.into()),
            labels: Some(labels(&o.name, Some(&version))),
            ..Default::default()
        },
        spec: DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&o.name, Some(&version))),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(o.service_account.clone()),
                    affinity: Some(control_plane_affinity()),
                    tolerations: Some(control_plane_tolerations()),
                    volumes,
                    ..pod_spec(container)
                }),
            },
            ..Default::default()
        },
        status: None,
    }
}
