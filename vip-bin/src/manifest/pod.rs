//! The static pod and the container it shares with the DaemonSet:
//! kube-vip's environment block, kube-vip's etcd flags, the mounts and the
//! `/healthz` probe.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, HTTPGetAction, HostAlias, HostPathVolumeSource,
    ObjectFieldSelector, Pod, PodSpec, Probe, ResourceRequirements, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    DEFAULT_ETCD_ENDPOINT, Distribution, KUBECONFIG_MOUNT, POD_NAMESPACE, PodOptions,
    SUPER_ADMIN_MOUNT, image_version, labels,
};
use crate::config::{LeaderElection, LogFormat, LogLevel, Settings, secs};

pub(crate) fn env(name: &str, value: impl Into<String>) -> EnvVar {
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
    if let Some(key) = &s.heartbeat_key_file {
        v.push(env("vip_heartbeat_key_file", key.display().to_string()));
    }
    if !s.events {
        v.push(env("vip_events", "false"));
    }
    v
}

/// The etcd client files and endpoints of the pod: the settings' values,
/// else the distribution's defaults.
pub(crate) fn etcd_files(s: &Settings, d: Distribution) -> ([String; 3], String) {
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
pub(crate) fn args(s: &Settings, election: LeaderElection, d: Distribution) -> Vec<String> {
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

/// The host files the container reads, as read-only hostPath volumes
/// mounted at the same paths: the etcd client files (`--leader-election
/// etcd`) and the pre-shared heartbeat key (`vip_heartbeat_key_file`).
pub(crate) fn host_file_volumes(
    s: &Settings,
    election: LeaderElection,
    d: Distribution,
) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut files: Vec<(&str, String)> = Vec::new();
    if election == LeaderElection::Etcd {
        let (paths, _) = etcd_files(s, d);
        files.extend(["etcd-ca", "etcd-cert", "etcd-key"].into_iter().zip(paths));
    }
    if let Some(key) = &s.heartbeat_key_file {
        files.push(("heartbeat-key", key.display().to_string()));
    }
    files
        .into_iter()
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
pub(crate) fn liveness(s: &Settings) -> Option<Probe> {
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
    let (v, mo) = host_file_volumes(s, o.leader_election, o.distribution);
    volumes.extend(v);
    mounts.extend(mo);
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
