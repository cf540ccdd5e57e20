//! The real kube-apiserver fixture starts, is ready, authenticates its
//! static tokens and authorizes with RBAC (checked with real `kubectl`).

use std::process::Command;

use vip_testkit::apiserver::{RealApi, RealApiConfig};
use vip_testkit::testapi::{Role, TokenSpec};

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_server_starts_and_enforces_rbac() {
    let config = RealApiConfig::default().servers(2).token(TokenSpec {
        name: "nobody".into(),
        token: "vip-testapi-nobody".into(),
        role: Role::Forbidden,
    });
    let started = std::time::Instant::now();
    let Some(api) = RealApi::start_or_skip(config).await else {
        return;
    };
    eprintln!("two kube-apiservers ready in {:?}", started.elapsed());
    let admin = api.kubeconfig_for(0, "admin").unwrap();
    let (ok, text) = kubectl(&admin, &["get", "--raw", "/readyz"]);
    assert!(ok && text.trim() == "ok", "{text}");
    let (ok, text) = kubectl(
        &admin,
        &["auth", "can-i", "create", "leases", "-n", "kube-system"],
    );
    assert!(ok && text.trim() == "yes", "{text}");
    // Both servers share the etcd: what one writes the other reads.
    let (ok, text) = kubectl(
        &admin,
        &[
            "create",
            "configmap",
            "shared",
            "-n",
            "default",
            "--from-literal=a=b",
        ],
    );
    assert!(ok, "{text}");
    let other = api.kubeconfig_for(1, "admin").unwrap();
    let (ok, text) = kubectl(
        &other,
        &["get", "configmap", "shared", "-n", "default", "-o", "name"],
    );
    assert!(ok && text.trim() == "configmap/shared", "{text}");
    // A token in no group is authenticated and denied.
    let nobody = api.kubeconfig_for(0, "nobody").unwrap();
    let (ok, text) = kubectl(&nobody, &["get", "leases", "-n", "kube-system"]);
    assert!(!ok && text.contains("forbidden"), "{text}");
}
