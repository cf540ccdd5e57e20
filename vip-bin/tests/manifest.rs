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
fn a_bad_or_missing_distribution_is_a_usage_error() {
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

    let out = vip(BRIEF_ENV, &["manifest", "pod"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--distribution <NAME>"), "{stderr}");
}

#[test]
fn manifest_without_a_subcommand_prints_help_and_exits_2() {
    let out = vip(BRIEF_ENV, &["manifest"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pod") && stderr.contains("rbac"),
        "{stderr}"
    );
}
