//! `vip manifest`: golden output for the deployment brief's settings and
//! a few variants, and the command line's exit codes and messages.
//!
//! The golden files live in `tests/golden/`; `UPDATE_GOLDEN=1 cargo test
//! -p vip-bin --test manifest` rewrites them (review the diff).

mod common;

use std::path::PathBuf;

use common::{BRIEF_ENV, vip};

fn golden(name: &str, env: &[(&str, &str)], args: &[&str]) {
    let out = vip(env, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
    assert!(stderr.is_empty(), "{args:?}: nothing on stderr: {stderr}");
    let got = String::from_utf8(out.stdout).expect("UTF-8 YAML");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
    assert!(
        got == want,
        "{name} differs from {} (UPDATE_GOLDEN=1 rewrites it):\n{got}",
        path.display()
    );
}

/// The brief's deployment: its env block as the environment, k3s, and the
/// lease name its validation table reads (`kubectl get lease -n
/// kube-system kube-vip-cp`), as the Ansible role renders it.
#[test]
fn golden_pod_for_the_briefs_settings() {
    golden(
        "pod-k3s-brief.yaml",
        BRIEF_ENV,
        &[
            "manifest",
            "pod",
            "--distribution",
            "k3s",
            "--vip-leasename",
            "kube-vip-cp",
        ],
    );
}

/// The same settings as flags, and in the other order (settings before
/// the subcommand), give the same pod.
#[test]
fn flags_and_environment_give_the_same_pod() {
    let from_env = vip(
        BRIEF_ENV,
        &[
            "manifest",
            "pod",
            "--distribution",
            "k3s",
            "--vip-leasename",
            "kube-vip-cp",
        ],
    );
    let from_flags = vip(
        &[],
        &[
            "manifest",
            "--vip-address",
            "192.168.20.140",
            "--interface",
            "end0",
            "pod",
            "--distribution",
            "k3s",
            "--leaseName",
            "kube-vip-cp",
        ],
    );
    assert!(from_env.status.success() && from_flags.status.success());
    assert_eq!(
        String::from_utf8_lossy(&from_env.stdout),
        String::from_utf8_lossy(&from_flags.stdout)
    );
}

/// kubeadm ≥ 1.29's first node: admin.conf and super-admin.conf both
/// mounted, no explicit k8s_config_file; dual stack; kube-vip's 15/10/2.
#[test]
fn golden_pod_kubeadm_first_node_dual_stack() {
    golden(
        "pod-kubeadm-super-admin.yaml",
        &[],
        &[
            "manifest",
            "pod",
            "--distribution",
            "kubeadm",
            "--kubeadm-super-admin",
            "--address",
            "198.18.0.10,2001:db8::10",
            "--vip-leaseduration",
            "15",
            "--vip-renewdeadline",
            "10",
            "--vip-retryperiod",
            "2",
        ],
    );
}

/// Election through etcd on kubeadm and k3s: kube-vip's etcd flags and
/// the distribution's etcd client files, mounted read-only.
#[test]
fn golden_pods_electing_through_etcd() {
    for d in ["kubeadm", "k3s"] {
        golden(
            &format!("pod-{d}-etcd.yaml"),
            BRIEF_ENV,
            &[
                "manifest",
                "pod",
                "--distribution",
                d,
                "--leader-election",
                "etcd",
            ],
        );
    }
}

/// RKE2 with the upstream kube-vip image: no /healthz probe (kube-vip does
/// not serve it), the version label from the image tag.
#[test]
fn golden_pod_rke2_upstream_image() {
    golden(
        "pod-rke2-kube-vip-image.yaml",
        &[],
        &[
            "manifest",
            "pod",
            "--distribution",
            "rke2",
            "--address",
            "198.18.0.10",
            "--image",
            "ghcr.io/kube-vip/kube-vip:v1.0.3",
            "--no-liveness-probe",
            "--prometheus-server",
            "127.0.0.1:2112",
            "--vip-loglevel",
            "-4",
        ],
    );
}

#[test]
fn golden_rbac() {
    golden(
        "rbac.yaml",
        BRIEF_ENV,
        &["manifest", "rbac", "--vip-leasename", "kube-vip-cp"],
    );
}

/// Exit code 2, nothing on stdout, and one stderr line containing `text`.
fn refused(env: &[(&str, &str)], args: &[&str], text: &str) {
    let out = vip(env, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    assert!(stderr.contains(text), "{args:?}: {stderr:?} lacks {text:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
}

#[test]
fn bad_settings_are_refused_in_one_line_with_exit_2() {
    let pod = ["manifest", "pod", "--distribution", "k3s"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        pod.iter().chain(extra).copied().collect()
    };
    refused(
        BRIEF_ENV,
        &with(&["--port", "0"]),
        "vip: invalid port=\"0\": expected a TCP port",
    );
    refused(&[], &pod, "vip: missing address");
    refused(
        &[("vip_address", "192.168.20.140"), ("svc_enable", "true")],
        &pod,
        "vip: unsupported svc_enable=\"true\"",
    );
    refused(
        BRIEF_ENV,
        &with(&["--vip-leaseduration", "3"]),
        "expected less than the lease duration",
    );
    refused(
        BRIEF_ENV,
        &with(&["--kubeadm-super-admin"]),
        "vip: invalid --kubeadm-super-admin=\"true\": expected --distribution kubeadm",
    );
    refused(
        BRIEF_ENV,
        &with(&["--vip-nodename", "alpha-1"]),
        "vip: invalid --vip-nodename=\"alpha-1\": expected nothing: every node's name comes from spec.nodeName",
    );
    refused(
        BRIEF_ENV,
        &with(&["--name", "Kube_VIP"]),
        "vip: invalid --name=\"Kube_VIP\": expected a DNS label",
    );
    refused(
        BRIEF_ENV,
        &with(&["--image", "vip:-dev"]),
        "vip: invalid --image=\"vip:-dev\"",
    );
    refused(
        BRIEF_ENV,
        &["manifest", "rbac", "--name=-x"],
        "vip: invalid --name=\"-x\"",
    );
}

#[test]
fn a_bad_distribution_is_a_usage_error() {
    let out = vip(
        BRIEF_ENV,
        &["manifest", "pod", "--distribution", "microk8s"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("invalid value 'microk8s' for '--distribution <NAME>'")
            && stderr.contains("[possible values: k3s, kubeadm, rke2]"),
        "{stderr}"
    );
}

/// A directory standing in for a host's root file system, with these
/// paths created (a trailing `/` makes a directory); removed on drop.
struct FakeRoot(PathBuf);

impl FakeRoot {
    fn with(tag: &str, paths: &[&str]) -> Self {
        let root =
            std::env::temp_dir().join(format!("vip-manifest-root-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        for p in paths {
            let full = root.join(p.trim_start_matches('/'));
            if p.ends_with('/') {
                std::fs::create_dir_all(&full).unwrap();
            } else {
                std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                std::fs::write(&full, "").unwrap();
            }
        }
        Self(root)
    }
}

impl Drop for FakeRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Without `--distribution` the pod is for the host's distribution, and
/// a comment says which and why; `--distribution` still wins.
#[test]
fn the_distribution_is_detected_from_the_host_and_said_in_a_comment() {
    let cases: &[(&str, &[&str], &str, &str)] = &[
        (
            "empty",
            &[],
            "/etc/kubernetes/admin.conf",
            "# distribution: kubeadm (detected on this host: no k3s or rke2 files found",
        ),
        (
            "kubeadm",
            &["/etc/kubernetes/admin.conf"],
            "/etc/kubernetes/admin.conf",
            "# distribution: kubeadm (detected on this host: /etc/kubernetes/admin.conf exists)",
        ),
        (
            "k3s-etc",
            &["/etc/rancher/k3s/"],
            "/etc/rancher/k3s/k3s.yaml",
            "# distribution: k3s (detected on this host: /etc/rancher/k3s exists)",
        ),
        (
            "k3s-bin",
            &["/usr/local/bin/k3s", "/etc/kubernetes/admin.conf"],
            "/etc/rancher/k3s/k3s.yaml",
            "# distribution: k3s (detected on this host: /usr/local/bin/k3s exists)",
        ),
        (
            "rke2",
            &["/etc/rancher/rke2/"],
            "/etc/rancher/rke2/rke2.yaml",
            "# distribution: rke2 (detected on this host: /etc/rancher/rke2 exists)",
        ),
    ];
    for (tag, paths, kubeconfig, comment) in cases {
        let root = FakeRoot::with(tag, paths);
        let mut env = BRIEF_ENV.to_vec();
        env.push(("VIP_HOST_ROOT", root.0.to_str().unwrap()));
        let out = vip(&env, &["manifest", "pod"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{tag}: {stderr}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with(comment), "{tag}: {text}");
        let pod: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            pod["spec"]["volumes"][0]["hostPath"]["path"], *kubeconfig,
            "{tag}"
        );
        // Chosen by hand: no comment, that distribution.
        let out = vip(&env, &["manifest", "pod", "--distribution", "rke2"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("apiVersion: v1"), "{tag}: {text}");
        assert!(text.contains("path: /etc/rancher/rke2/rke2.yaml"), "{tag}");
    }
    // Both k3s and rke2: vip does not guess.
    let root = FakeRoot::with("both", &["/etc/rancher/k3s/", "/var/lib/rancher/rke2/"]);
    let mut env = BRIEF_ENV.to_vec();
    env.push(("VIP_HOST_ROOT", root.0.to_str().unwrap()));
    refused(
        &env,
        &["manifest", "pod"],
        "vip: invalid --distribution=\"/etc/rancher/k3s and /var/lib/rancher/rke2 both exist\": expected k3s, kubeadm or rke2, chosen by hand",
    );
}

/// The brief's settings as a DaemonSet (kube-vip's name `kube-vip-ds`).
#[test]
fn golden_daemonset_for_the_briefs_settings() {
    golden(
        "daemonset-brief.yaml",
        BRIEF_ENV,
        &["manifest", "daemonset", "--vip-leasename", "kube-vip-cp"],
    );
}

/// kube-vip's image, its k3s page's flags, annotations on the Lease, a
/// named ServiceAccount, dual stack.
#[test]
fn golden_daemonset_kube_vip_image_with_annotations() {
    golden(
        "daemonset-kube-vip-image.yaml",
        &[(
            "vip_leaseannotations",
            r#"{"example.com/owner":"platform"}"#,
        )],
        &[
            "manifest",
            "daemonset",
            "--interface",
            "eth0",
            "--address",
            "198.18.0.10,2001:db8::10",
            "--inCluster",
            "--taint",
            "--controlplane",
            "--arp",
            "--leaderElection",
            "--image",
            "ghcr.io/kube-vip/kube-vip:v1.0.3",
            "--no-liveness-probe",
            "--name",
            "vip",
            "--service-account",
            "vip",
        ],
    );
}

/// The DaemonSet's container is the static pod's, without the kubeconfig
/// (mount, `k8s_config_file`, hostAliases): same image, env, capabilities,
/// probe and resources.
#[test]
fn the_daemonset_runs_the_static_pods_container_in_cluster() {
    let yaml = |args: &[&str]| -> serde_json::Value {
        let out = vip(BRIEF_ENV, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap()
    };
    let pod = yaml(&["manifest", "pod", "--distribution", "k3s"]);
    let ds = yaml(&["manifest", "daemonset", "--name", "kube-vip"]);
    let mut want = pod["spec"]["containers"][0].clone();
    want.as_object_mut().unwrap().remove("volumeMounts");
    let env = want["env"].as_array_mut().unwrap();
    env.retain(|e| e["name"] != "k8s_config_file");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["containers"][0], want);
    assert_eq!(spec["serviceAccountName"], "kube-vip");
    assert_eq!(spec["hostNetwork"], true);
    assert!(spec.get("hostAliases").is_none() && spec.get("volumes").is_none());
    assert_eq!(
        ds["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "kube-vip"
    );
}

/// With etcd the DaemonSet passes the static pod's kube-vip etcd flags and
/// mounts the same etcd client files (the pod's only other mount is the
/// kubeconfig).
#[test]
fn the_daemonset_elects_through_etcd_like_the_static_pod() {
    let yaml = |args: &[&str]| -> serde_json::Value {
        let out = vip(BRIEF_ENV, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap()
    };
    let etcd = ["--distribution", "kubeadm", "--leader-election", "etcd"];
    let pod = yaml(&[&["manifest", "pod"][..], &etcd].concat());
    let ds = yaml(&[&["manifest", "daemonset"][..], &etcd].concat());
    let (pod, ds) = (&pod["spec"], &ds["spec"]["template"]["spec"]);
    assert_eq!(ds["containers"][0]["args"], pod["containers"][0]["args"]);
    assert_eq!(ds["containers"][0]["args"][1], "--leaderElectionType=etcd");
    let without_kubeconfig = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        let v = v.as_array().unwrap().iter();
        v.filter(|x| x["name"] != "kubeconfig").cloned().collect()
    };
    assert_eq!(
        without_kubeconfig(&ds["volumes"]),
        without_kubeconfig(&pod["volumes"])
    );
    assert_eq!(
        without_kubeconfig(&ds["containers"][0]["volumeMounts"]),
        without_kubeconfig(&pod["containers"][0]["volumeMounts"])
    );
    assert_eq!(ds["volumes"].as_array().unwrap().len(), 3);
}

#[test]
fn daemonset_and_pod_refuse_what_they_cannot_be() {
    refused(
        BRIEF_ENV,
        &["manifest", "daemonset", "--inCluster=false"],
        "vip: invalid --inCluster=\"false\": expected true: the DaemonSet always uses in-cluster config",
    );
    refused(
        BRIEF_ENV,
        &["manifest", "daemonset", "--taint=false"],
        "vip: invalid --taint=\"false\": expected true",
    );
    refused(
        BRIEF_ENV,
        &["manifest", "daemonset", "--vip-nodename", "alpha-1"],
        "vip: invalid --vip-nodename=\"alpha-1\"",
    );
    refused(
        BRIEF_ENV,
        &["manifest", "daemonset", "--service-account", "Kube_VIP"],
        "vip: invalid --service-account=\"Kube_VIP\": expected a DNS label",
    );
    refused(
        BRIEF_ENV,
        &["manifest", "daemonset", "--taint", "false"],
        "vip: invalid argument=\"false\"",
    );
    refused(
        BRIEF_ENV,
        &["manifest", "pod", "--distribution", "k3s", "--inCluster"],
        "vip: invalid --inCluster=\"true\": expected false: a static pod gets no ServiceAccount token",
    );
}

#[test]
fn manifest_without_a_subcommand_prints_help_and_exits_2() {
    let out = vip(BRIEF_ENV, &["manifest"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pod") && stderr.contains("daemonset") && stderr.contains("rbac"),
        "{stderr}"
    );
}

/// `vip manifest pod --from`: kube-vip's static pods of v0.8 (kubeadm,
/// `vip_cidr`), v1.0 (kubeadm's first node, super-admin.conf) and v1.2
/// (k3s, settings vip honours differently) converted, every change said in
/// a comment. The inputs are hand-written in `tests/golden/from/`.
#[test]
fn golden_pods_converted_from_kube_vip_manifests() {
    for (input, image) in [
        ("kube-vip-v0.8-kubeadm", None),
        ("kube-vip-v1.0-kubeadm-super-admin", None),
        ("kube-vip-v1.2-k3s", Some("registry.example/vip:1.2.3")),
    ] {
        let from = format!("tests/golden/from/{input}.yaml");
        let mut args = vec!["manifest", "pod", "--from", &from];
        if let Some(i) = image {
            args.extend(["--image", i]);
        }
        // The process environment plays no part: the file is the source.
        golden(
            &format!("pod-from-{input}.yaml"),
            &[("svc_enable", "true"), ("address", "198.18.0.1")],
            &args,
        );
    }
}

#[test]
fn a_kube_vip_manifest_that_cannot_be_converted_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let v12 = std::fs::read_to_string("tests/golden/from/kube-vip-v1.2-k3s.yaml").unwrap();
    let cases = [
        (write("bad.yaml", "a: [b\n"), "not YAML"),
        (
            write("ds.yaml", "apiVersion: apps/v1\nkind: DaemonSet\n"),
            "not a Pod (apiVersion apps/v1, kind DaemonSet)",
        ),
        (
            write(
                "web.yaml",
                &v12.replace("ghcr.io/kube-vip/kube-vip:v1.2.3", "nginx:1.27"),
            ),
            "no kube-vip container",
        ),
        (
            write(
                "svc.yaml",
                &v12.replacen(
                    "    - name: cp_enable\n",
                    "    - name: svc_enable\n      value: \"true\"\n    - name: cp_enable\n",
                    1,
                ),
            ),
            "unsupported svc_enable=\"true\": the Service load-balancer mode",
        ),
        (
            write(
                "bgp.yaml",
                &v12.replacen(
                    "    - name: cp_enable\n",
                    "    - name: bgp_enable\n      value: \"true\"\n    - name: cp_enable\n",
                    1,
                ),
            ),
            "unsupported bgp_enable=\"true\": the BGP mode",
        ),
        (
            dir.path()
                .join("missing.yaml")
                .to_str()
                .unwrap()
                .to_string(),
            "cannot read it",
        ),
    ];
    for (file, text) in &cases {
        refused(
            &[],
            &["manifest", "pod", "--from", file],
            &format!("vip: {file}: {text}"),
        );
    }
    let from = "tests/golden/from/kube-vip-v1.2-k3s.yaml";
    refused(
        &[],
        &["manifest", "pod", "--from", from, "--address", "198.18.0.1"],
        "vip: invalid --from with the setting address on the command line",
    );
    refused(
        &[],
        &["manifest", "pod", "--from", from, "--distribution", "k3s"],
        "vip: invalid --from with --distribution on the command line",
    );
    refused(
        &[],
        &["manifest", "pod", "--from", from, "--image", "vip:-x"],
        "vip: invalid --image=\"vip:-x\"",
    );
}

/// Settings vip honours differently are said in a comment of the
/// generated pod (they are not in its env block).
#[test]
fn settings_honoured_differently_are_said_in_the_generated_pod() {
    let out = vip(
        BRIEF_ENV,
        &[
            "manifest",
            "pod",
            "--distribution",
            "k3s",
            "--loseLeadership",
        ],
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("# kube-vip setting honoured differently, left out: vip_loseleadership=\"true\": vip always gives up leadership"),
        "{text}"
    );
    assert!(!text.contains("name: vip_loseleadership"), "{text}");
}
