use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::config::Sources;

fn settings(pairs: &[(&str, &str)]) -> Settings {
    Settings::from_sources(&Sources::env_only(pairs), "node").unwrap()
}

fn opts(d: Distribution) -> PodOptions {
    PodOptions {
        distribution: d,
        kubeconfig: None,
        kubeadm_super_admin: false,
        image: "registry.example/vip:1.2.3".into(),
        name: DEFAULT_NAME.into(),
        liveness_probe: true,
        leader_election: LeaderElection::Kubernetes,
    }
}

fn env_map(p: &Pod) -> BTreeMap<String, Option<String>> {
    p.spec.as_ref().unwrap().containers[0]
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect()
}

/// The pod's env block, fed back through the configuration, gives the
/// same settings (node name aside, which comes from the downward API).
#[test]
fn the_env_block_round_trips_through_the_configuration() {
    let cases: &[&[(&str, &str)]] = &[
        &[("vip_address", "192.168.20.140"), ("vip_interface", "end0")],
        &[
            ("address", "198.18.0.1/24,2001:db8::1"),
            ("vip_leasename", "other/kube-vip-cp"),
            ("vip_leaseduration", "15"),
            ("vip_renewdeadline", "10"),
            ("vip_retryperiod", "2.5"),
            ("vip_arpRate", "1500"),
            ("port", "6444"),
            ("kubernetes_addr", "127.0.0.1:6444"),
            ("vip_loglevel", "-4"),
            ("vip_logformat", "json"),
            ("prometheus_server", "127.0.0.1:9100"),
            ("vip_healthcheck", "false"),
            ("vip_heartbeat_ms", "5"),
            ("vip_heartbeat_misses", "4"),
            ("vip_probe_ms", "20"),
            ("vip_heartbeat_key_file", "/etc/vip/heartbeat.key"),
            (
                "vip_leaseannotations",
                r#"{"team":"infra","example.com/owner":"ops"}"#,
            ),
        ],
        &[("address", "198.18.0.9"), ("prometheus_server", "")],
        &[("address", "198.18.0.9"), ("vip_heartbeat_ms", "0")],
    ];
    for pairs in cases {
        let s = settings(pairs);
        let pod = pod(&s, &opts(Distribution::K3s));
        let mut back: Vec<(String, String)> = env_map(&pod)
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        back.push(("vip_nodename".into(), "node".into()));
        let src = Sources {
            flags: BTreeMap::new(),
            env: back.into_iter().collect(),
        };
        let again = Settings::from_sources(&src, "unused").unwrap();
        let mut want = s.clone();
        want.kubeconfig = Some(KUBECONFIG_MOUNT.into());
        // The env block always names the namespace.
        want.lease_namespace_explicit = true;
        assert_eq!(again, want, "{pairs:?}");
    }
}

#[test]
fn the_kubeconfig_of_each_distribution_is_mounted_read_only() {
    let s = settings(&[("address", "198.18.0.1")]);
    for (d, path) in [
        (Distribution::K3s, "/etc/rancher/k3s/k3s.yaml"),
        (Distribution::Kubeadm, "/etc/kubernetes/admin.conf"),
        (Distribution::Rke2, "/etc/rancher/rke2/rke2.yaml"),
    ] {
        let p = pod(&s, &opts(d));
        let spec = p.spec.unwrap();
        let vols = spec.volumes.unwrap();
        assert_eq!(vols.len(), 1);
        assert_eq!(vols[0].host_path.as_ref().unwrap().path, path);
        let m = &spec.containers[0].volume_mounts.as_ref().unwrap()[0];
        assert_eq!(
            (m.mount_path.as_str(), m.read_only),
            (KUBECONFIG_MOUNT, Some(true))
        );
    }
}

#[test]
fn super_admin_mounts_both_and_leaves_discovery_to_vip() {
    let s = settings(&[("address", "198.18.0.1")]);
    let mut o = opts(Distribution::Kubeadm);
    o.kubeadm_super_admin = true;
    let p = pod(&s, &o);
    let spec = p.spec.as_ref().unwrap();
    let paths: Vec<_> = spec
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| v.host_path.as_ref().unwrap().path.clone())
        .collect();
    assert_eq!(
        paths,
        [
            "/etc/kubernetes/admin.conf",
            "/etc/kubernetes/super-admin.conf"
        ]
    );
    // An explicit k8s_config_file would switch the fallback off.
    assert!(!env_map(&p).contains_key("k8s_config_file"));
}

#[test]
fn the_probe_follows_the_metrics_listener() {
    let probe_host = |metrics: &str| {
        let s = settings(&[("address", "198.18.0.1"), ("prometheus_server", metrics)]);
        pod(&s, &opts(Distribution::K3s)).spec.unwrap().containers[0]
            .liveness_probe
            .as_ref()
            .map(|p| {
                let g = p.http_get.as_ref().unwrap();
                (g.host.clone().unwrap(), g.port.clone())
            })
    };
    assert_eq!(
        probe_host(":2112"),
        Some(("127.0.0.1".into(), IntOrString::Int(2112)))
    );
    assert_eq!(
        probe_host("[::]:9000"),
        Some(("::1".into(), IntOrString::Int(9000)))
    );
    assert_eq!(
        probe_host("10.1.2.3:2112"),
        Some(("10.1.2.3".into(), IntOrString::Int(2112)))
    );
    assert_eq!(probe_host(""), None);
}

#[test]
fn the_version_label_is_the_image_tag() {
    let v = env!("CARGO_PKG_VERSION");
    for (image, want) in [
        ("ghcr.io/kube-vip/kube-vip:v1.0.3", Ok("v1.0.3".to_string())),
        ("registry:5000/vip", Ok(v.to_string())),
        ("registry:5000/vip:1.0@sha256:abc", Ok("1.0".to_string())),
        ("vip@sha256:abc", Ok(v.to_string())),
        ("vip:", Err(())),
        ("vip:-x", Err(())),
        ("with space:1", Err(())),
        ("", Err(())),
    ] {
        assert_eq!(image_version(image).map_err(|_| ()), want, "{image}");
    }
}

#[test]
fn rbac_limits_the_lease_rules_to_the_lease() {
    let s = settings(&[("address", "198.18.0.1"), ("vip_leasename", "vip/my-lease")]);
    let y = rbac_yaml(&s, "kube-vip");
    let docs: Vec<serde_json::Value> = y
        .split("---\n")
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    let kinds: Vec<_> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding"
        ]
    );
    assert_eq!(docs[1]["metadata"]["namespace"], "vip");
    assert_eq!(docs[1]["rules"][1]["resourceNames"][0], "my-lease");
    let events = serde_json::json!({"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]});
    assert_eq!(docs[1]["rules"][2], events, "the Lease's Events");
    assert_eq!(docs[2]["subjects"][0]["namespace"], POD_NAMESPACE);
    assert_eq!(docs[3]["metadata"]["namespace"], "default");
    assert_eq!(
        docs[3]["rules"],
        serde_json::json!([events]),
        "the Node's Events"
    );
    assert_eq!(docs[4]["roleRef"]["name"], "kube-vip-events");
    assert_eq!(docs[4]["subjects"][0]["namespace"], POD_NAMESPACE);
    assert_eq!(docs[5]["rules"][0]["resources"][0], "nodes");

    // Without Events, no Events rules at all; with the Lease in `default`,
    // its Role covers the Node's Events too.
    let off = settings(&[("address", "198.18.0.1"), ("vip_events", "false")]);
    let y = rbac_yaml(&off, "kube-vip");
    assert!(!y.contains("events"), "{y}");
    assert_eq!(y.matches("\nkind: Role\n").count(), 1, "{y}");
    let default = settings(&[("address", "198.18.0.1"), ("vip_leasename", "default/l")]);
    let y = rbac_yaml(&default, "kube-vip");
    assert_eq!(y.matches("- events").count(), 1, "{y}");
}

/// The generated part of `docs/configuration.md`: every key of
/// [`crate::config::KEYS`] and every refused kube-vip setting.
fn configuration_tables() -> String {
    let mut t = String::from(
        "| Environment variable | Flag | kube-vip's flag (alias) | Default | Meaning |\n|---|---|---|---|---|\n",
    );
    for k in crate::config::KEYS {
        let alias = match k.kube_vip_flag {
            Some(f) if f != k.flag => format!("`--{f}`"),
            Some(_) => "(same)".to_string(),
            None => "—".to_string(),
        };
        let default = if k.default.is_empty() {
            "(none)".to_string()
        } else {
            format!("`{}`", k.default)
        };
        t.push_str(&format!(
            "| `{}` | `--{}` | {alias} | {default} | {} |\n",
            k.env,
            k.flag,
            k.help
                .replace('|', "\\|")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        ));
    }
    t.push_str("\nkube-vip settings honoured differently (accepted; `vip manager` logs one line for each at start, `vip check-config` prints it as a note, `vip manifest` as a comment):\n\n| Setting | kube-vip's flag | How vip treats it, and why |\n|---|---|---|\n");
    for n in crate::config::NOTED {
        let flag = n
            .flag
            .map_or_else(|| "—".to_string(), |f| format!("`--{f}`"));
        t.push_str(&format!("| `{}` | {flag} | {} |\n", n.env, n.note));
    }
    t.push_str(&format!(
        "| `vip_leaderelection=false` | `--leaderElection=false` | {} |\n",
        crate::config::NO_ELECTION_NOTE
    ));
    t.push_str("\nRefused kube-vip settings (any value but empty or false):\n\n| Setting | What it would enable |\n|---|---|\n");
    for (key, what) in crate::config::UNSUPPORTED {
        t.push_str(&format!("| `{key}` | {what} |\n"));
    }
    t.push_str("\nRefused kube-vip flags (booleans when true, bare or `=true`; the others with any non-empty value):\n\n| Flag | Boolean | What it would enable |\n|---|---|---|\n");
    for r in crate::config::REFUSED_FLAGS {
        let kind = if r.boolean { "yes" } else { "no" };
        t.push_str(&format!("| `{}` | {kind} | {} |\n", r.flag, r.what));
    }
    t
}

/// `docs/configuration.md` lists exactly the keys the binary reads;
/// `UPDATE_GOLDEN=1` rewrites the generated block.
#[test]
fn the_configuration_doc_matches_the_keys() {
    const BEGIN: &str =
        "<!-- generated from vip-bin/src/config/keys.rs KEYS and UNSUPPORTED: begin -->\n";
    const END: &str = "<!-- generated: end -->\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let (head, rest) = doc.split_once(BEGIN).expect("begin marker");
    let (block, tail) = rest.split_once(END).expect("end marker");
    let want = configuration_tables();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, format!("{head}{BEGIN}{want}{END}{tail}")).unwrap();
        return;
    }
    assert!(
        block == want,
        "docs/configuration.md is out of date with config::KEYS (UPDATE_GOLDEN=1 rewrites it):\n{want}"
    );
}

#[test]
fn etcd_election_passes_kube_vips_flags_and_mounts_the_distributions_files() {
    let s = settings(&[("address", "198.18.0.1")]);
    for (d, files) in [
        (
            Distribution::K3s,
            [
                "/var/lib/rancher/k3s/server/tls/etcd/server-ca.crt",
                "/var/lib/rancher/k3s/server/tls/etcd/client.crt",
                "/var/lib/rancher/k3s/server/tls/etcd/client.key",
            ],
        ),
        (
            Distribution::Kubeadm,
            [
                "/etc/kubernetes/pki/etcd/ca.crt",
                "/etc/kubernetes/pki/apiserver-etcd-client.crt",
                "/etc/kubernetes/pki/apiserver-etcd-client.key",
            ],
        ),
    ] {
        let mut o = opts(d);
        o.leader_election = LeaderElection::Etcd;
        let p = pod(&s, &o);
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            c.args.as_deref().unwrap(),
            [
                "manager".to_string(),
                "--leaderElectionType=etcd".into(),
                format!("--etcdCACert={}", files[0]),
                format!("--etcdCert={}", files[1]),
                format!("--etcdKey={}", files[2]),
                "--etcdEndpoints=https://127.0.0.1:2379".into(),
            ]
        );
        let mounted: Vec<(&str, bool)> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .filter(|m| m.name.starts_with("etcd-"))
            .map(|m| (m.mount_path.as_str(), m.read_only == Some(true)))
            .collect();
        assert_eq!(mounted, files.map(|f| (f, true)));
        let host: Vec<&str> = p
            .spec
            .as_ref()
            .unwrap()
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .filter(|v| v.name.starts_with("etcd-"))
            .map(|v| v.host_path.as_ref().unwrap().path.as_str())
            .collect();
        assert_eq!(host, files);
    }
    // The Lease election mounts none of them and passes only `manager`.
    let p = pod(&s, &opts(Distribution::K3s));
    assert_eq!(
        p.spec.as_ref().unwrap().containers[0]
            .args
            .as_deref()
            .unwrap(),
        ["manager"]
    );
    // The settings' own files and endpoints win over the defaults.
    let s = settings(&[
        ("address", "198.18.0.1"),
        ("vip_leaderelectiontype", "etcd"),
        ("vip_etcdcacert", "/pki/ca.crt"),
        ("vip_etcdcert", "/pki/c.crt"),
        ("vip_etcdkey", "/pki/c.key"),
        ("vip_etcdendpoints", "10.0.0.1:2379,10.0.0.2:2379"),
    ]);
    let mut o = opts(Distribution::Kubeadm);
    o.leader_election = LeaderElection::Etcd;
    let args = pod(&s, &o).spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(args[2], "--etcdCACert=/pki/ca.crt");
    assert_eq!(
        args[5],
        "--etcdEndpoints=https://10.0.0.1:2379,https://10.0.0.2:2379"
    );
}

/// A pre-shared heartbeat key file reaches the container: its setting in
/// the env block and the host file mounted read-only at the same path,
/// in the static pod and in the DaemonSet; without it, no such volume.
#[test]
fn the_heartbeat_key_file_is_mounted_where_the_setting_points() {
    let s = settings(&[
        ("vip_address", "198.18.0.1"),
        ("vip_heartbeat_key_file", "/etc/vip/heartbeat.key"),
    ]);
    let pod = pod(&s, &opts(Distribution::K3s));
    assert_eq!(
        env_map(&pod)["vip_heartbeat_key_file"].as_deref(),
        Some("/etc/vip/heartbeat.key")
    );
    let spec = pod.spec.as_ref().unwrap();
    let volume = spec
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "heartbeat-key")
        .expect("a heartbeat-key volume");
    let host = volume.host_path.as_ref().unwrap();
    assert_eq!(host.path, "/etc/vip/heartbeat.key");
    assert_eq!(host.type_.as_deref(), Some("File"));
    let mount = spec.containers[0]
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "heartbeat-key")
        .expect("a heartbeat-key mount");
    assert_eq!(mount.mount_path, "/etc/vip/heartbeat.key");
    assert_eq!(mount.read_only, Some(true));
    // The DaemonSet mounts it the same way.
    let ds = super::daemonset::daemonset(
        &s,
        &super::daemonset::DaemonSetOptions {
            image: "registry.example/vip:1.2.3".into(),
            name: DEFAULT_NAME.into(),
            service_account: "kube-vip".into(),
            liveness_probe: true,
            leader_election: LeaderElection::Kubernetes,
            distribution: Distribution::K3s,
        },
    );
    let spec = ds.spec.template.spec.unwrap();
    assert!(
        spec.volumes
            .unwrap()
            .iter()
            .any(|v| v.name == "heartbeat-key"
                && v.host_path.as_ref().unwrap().path == "/etc/vip/heartbeat.key")
    );
    let container = &spec.containers[0];
    assert!(container.volume_mounts.as_ref().unwrap().iter().any(|m| {
        m.name == "heartbeat-key"
            && m.mount_path == "/etc/vip/heartbeat.key"
            && m.read_only == Some(true)
    }));
    assert!(container.env.as_ref().unwrap().iter().any(|e| {
        e.name == "vip_heartbeat_key_file" && e.value.as_deref() == Some("/etc/vip/heartbeat.key")
    }));
    let without = pod_without_key();
    assert!(
        without
            .spec
            .unwrap()
            .volumes
            .unwrap()
            .iter()
            .all(|v| v.name != "heartbeat-key")
    );
}

fn pod_without_key() -> Pod {
    pod(
        &settings(&[("vip_address", "198.18.0.1")]),
        &opts(Distribution::K3s),
    )
}
