//! Kubeconfig discovery with temporary roots, the admin.conf → super-admin
//! fallback, the error text, the control-plane rewrite; the readyz probe.
//! Each runs on the stand-in and on the real kube-apiserver alike
//! (`<test>::stand_in`, `<test>::real`), except the probe under injected
//! faults (unready, stalled), which only the stand-in can inject.

mod common;

use std::path::Path;
use std::time::Duration;

use common::held;
use vip_core::{HealthProbe, LockBackend};
use vip_lease::access::{ADMIN_CONF, K3S_YAML, RKE2_YAML, SUPER_ADMIN_CONF};
use vip_lease::{
    AccessError, ClusterAccess, DiscoveryOptions, HealthConfig, KubeconfigSource, LeaseBackend,
    LeaseConfig, LocalApi, ReadyzProbe, VerifyName,
};
use vip_testkit::api::{Api, Flavor};
use vip_testkit::testapi::{Fault, Role, TestApi, TestApiConfig, TokenSpec};

on_both!(
    order_explicit_then_admin_then_k3s_then_rke2,
    admin_conf_refused_falls_back_to_super_admin_conf,
    control_plane_mode_talks_to_127_0_0_1_and_verifies_the_original_name,
    readyz_probe_follows_the_local_api_server,
);

/// Users `admin`, `super` and `kubernetes-admin` (authenticated, bound to
/// nothing), and the extra certificate name 192.0.2.10.
fn config() -> TestApiConfig {
    let mut config = TestApiConfig::default()
        .tokens(["admin", "super"])
        .token(TokenSpec {
            name: "kubernetes-admin".into(),
            token: "not-yet-bound".into(),
            role: Role::Forbidden,
        });
    config.extra_sans.push("192.0.2.10".into());
    config
}

fn put(api: &Api, root: &Path, rel: &str, user: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    api.write_kubeconfig(&path, &api.url(0), user).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_found_lists_every_path_and_the_mount() {
    let root = tempfile::tempdir().unwrap();
    let mut options = DiscoveryOptions::under_root(root.path());
    options.explicit = Some(root.path().join("missing/kubeconfig"));
    let err = ClusterAccess::discover(&options).await.unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    let AccessError::NoKubeconfig { tried } = &err else {
        panic!("{err:?}")
    };
    let places: Vec<_> = tried.iter().map(|t| t.place.clone()).collect();
    let r = |rel: &str| root.path().join(rel).display().to_string();
    assert_eq!(
        places,
        vec![
            r("missing/kubeconfig"),
            r(ADMIN_CONF),
            r(SUPER_ADMIN_CONF),
            r(K3S_YAML),
            r(RKE2_YAML),
            "in-cluster".to_owned()
        ]
    );
    for p in &places {
        assert!(text.contains(p.as_str()), "{p} in the message");
    }
    assert!(
        text.contains("hostPath: {path: /etc/kubernetes/admin.conf}"),
        "{text}"
    );
    assert!(
        text.contains("mountPath: /etc/kubernetes/admin.conf"),
        "{text}"
    );
    assert!(text.contains("/etc/rancher/k3s/k3s.yaml"), "{text}");
    assert!(text.contains("KUBECONFIG"), "{text}");
}

async fn order_explicit_then_admin_then_k3s_then_rke2(flavor: Flavor) {
    let Some(api) = Api::start_or_skip(flavor, config()).await else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    put(&api, root.path(), RKE2_YAML, "admin");
    let d = |o: &DiscoveryOptions| {
        let o = o.clone();
        async move { ClusterAccess::discover(&o).await.unwrap().source().clone() }
    };
    let mut options = DiscoveryOptions::under_root(root.path());
    assert_eq!(
        d(&options).await,
        KubeconfigSource::Rke2(root.path().join(RKE2_YAML))
    );
    put(&api, root.path(), K3S_YAML, "admin");
    assert_eq!(
        d(&options).await,
        KubeconfigSource::K3s(root.path().join(K3S_YAML))
    );
    put(&api, root.path(), ADMIN_CONF, "admin");
    assert_eq!(
        d(&options).await,
        KubeconfigSource::AdminConf(root.path().join(ADMIN_CONF))
    );
    // KUBECONFIG (a list) before the well-known paths; missing entries skipped.
    put(&api, root.path(), "env/config", "admin");
    let list = std::env::join_paths([root.path().join("env/none"), root.path().join("env/config")])
        .unwrap();
    options.kubeconfig_env = Some(list);
    assert_eq!(
        d(&options).await,
        KubeconfigSource::Explicit(root.path().join("env/config"))
    );
    // The explicit path first of all.
    put(&api, root.path(), "explicit.conf", "admin");
    options.explicit = Some(root.path().join("explicit.conf"));
    assert_eq!(
        d(&options).await,
        KubeconfigSource::Explicit(root.path().join("explicit.conf"))
    );
    // A kubeconfig that exists but is broken is an error, not skipped.
    std::fs::write(root.path().join("explicit.conf"), "clusters: [").unwrap();
    assert!(matches!(
        ClusterAccess::discover(&options).await,
        Err(AccessError::Kubeconfig { .. })
    ));
}

async fn admin_conf_refused_falls_back_to_super_admin_conf(flavor: Flavor) {
    let Some(api) = Api::start_or_skip(flavor, config()).await else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let options = DiscoveryOptions::under_root(root.path());
    // 403: admin.conf's user is not bound yet (kubeadm >= 1.29 during init).
    put(&api, root.path(), ADMIN_CONF, "kubernetes-admin");
    put(&api, root.path(), SUPER_ADMIN_CONF, "super");
    let access = ClusterAccess::discover(&options).await.unwrap();
    assert_eq!(
        access.source(),
        &KubeconfigSource::SuperAdminConf(root.path().join(SUPER_ADMIN_CONF))
    );
    let b = LeaseBackend::new(&access, LeaseConfig::default()).unwrap();
    b.create(&held("cp-1", 0))
        .await
        .expect("super-admin can write the lease");
    if let Some(counters) = api.counters() {
        assert_eq!(
            counters.by_user("kubernetes-admin", "get", "leases"),
            1,
            "admin.conf was tried once"
        );
    }
    // 401: a token the server does not know.
    api.write_kubeconfig(&root.path().join(ADMIN_CONF), &api.url(0), "admin")
        .unwrap();
    let text = std::fs::read_to_string(root.path().join(ADMIN_CONF))
        .unwrap()
        .replace("vip-testapi-admin", "unknown-token");
    std::fs::write(root.path().join(ADMIN_CONF), text).unwrap();
    let access = ClusterAccess::discover(&options).await.unwrap();
    assert!(matches!(
        access.source(),
        KubeconfigSource::SuperAdminConf(_)
    ));
    // Authorised admin.conf: kept.
    put(&api, root.path(), ADMIN_CONF, "admin");
    let access = ClusterAccess::discover(&options).await.unwrap();
    assert!(matches!(access.source(), KubeconfigSource::AdminConf(_)));
    // Refused and no super-admin.conf: admin.conf anyway (RBAC may come).
    std::fs::remove_file(root.path().join(SUPER_ADMIN_CONF)).unwrap();
    put(&api, root.path(), ADMIN_CONF, "kubernetes-admin");
    let access = ClusterAccess::discover(&options).await.unwrap();
    assert!(matches!(access.source(), KubeconfigSource::AdminConf(_)));
}

async fn control_plane_mode_talks_to_127_0_0_1_and_verifies_the_original_name(flavor: Flavor) {
    let Some(api) = Api::start_or_skip(flavor, config()).await else {
        return;
    };
    let port = api.port(0);
    let dir = tempfile::tempdir().unwrap();
    let check = |server: String, verify: VerifyName| {
        let path = dir.path().join(format!("k-{}", server.len()));
        api.write_kubeconfig(&path, &server, "admin").unwrap();
        async move {
            let access =
                ClusterAccess::from_kubeconfig_file(&path, Some(LocalApi { port, verify }))
                    .await
                    .unwrap();
            assert_eq!(
                access.server().to_string(),
                format!("https://127.0.0.1:{port}/")
            );
            let b = LeaseBackend::new(&access, LeaseConfig::default()).unwrap();
            (access.tls_server_name().map(str::to_owned), b.get().await)
        }
    };
    // The kubeconfig names a host name that does not even resolve here.
    let (name, r) = check(
        format!("https://kubernetes:{}", port + 1),
        VerifyName::Original,
    )
    .await;
    assert_eq!(name.as_deref(), Some("kubernetes"));
    assert!(r.is_ok(), "{r:?}");
    // The kubeconfig names the VIP (never contacted): verified for it.
    let (name, r) = check("https://192.0.2.10:6443".into(), VerifyName::Original).await;
    assert_eq!(name.as_deref(), Some("192.0.2.10"));
    assert!(r.is_ok(), "{r:?}");
    // A name the certificate does not carry fails verification…
    let (_, r) = check("https://wrong.example:6443".into(), VerifyName::Original).await;
    assert!(
        matches!(r, Err(vip_core::BackendError::Transport { .. })),
        "{r:?}"
    );
    // …unless verification is for 127.0.0.1.
    let (name, r) = check("https://wrong.example:6443".into(), VerifyName::Loopback).await;
    assert_eq!(name.as_deref(), Some("127.0.0.1"));
    assert!(r.is_ok(), "{r:?}");
}

async fn readyz_probe_follows_the_local_api_server(flavor: Flavor) {
    let Some(mut api) = Api::start_or_skip(flavor, config()).await else {
        return;
    };
    let probe = probe(&api.kubeconfig_path()).await;
    probe.check().await.expect("healthy");
    if let Some(counters) = api.counters() {
        assert_eq!(counters.get("get", "/readyz"), 1);
    }
    // Down (refused, or killed): unhealthy, then healthy once it is back.
    api.cut(0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = probe.check().await.unwrap_err();
    eprintln!("{e}");
    api.heal(0).await.unwrap();
    healthy_again(&probe).await;
}

/// A readyz probe with a 300 ms bound through this kubeconfig.
async fn probe(kubeconfig: &Path) -> ReadyzProbe {
    let access = ClusterAccess::from_kubeconfig_file(kubeconfig, None)
        .await
        .unwrap();
    let mut config = HealthConfig::default();
    config.policy.timeout = Duration::from_millis(300);
    ReadyzProbe::new(&access, config).unwrap()
}

async fn healthy_again(probe: &ReadyzProbe) {
    let mut ok = false;
    for _ in 0..50 {
        if probe.check().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "healthy again");
}

/// Unready and stalled answers are injected faults: stand-in only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_probe_under_injected_faults() {
    let api = TestApi::start(config()).await.unwrap();
    let probe = probe(api.kubeconfig_path()).await;
    probe.check().await.expect("healthy");
    api.listener(0).set_fault(Some(Fault::Unready));
    let e = probe.check().await.unwrap_err();
    assert!(e.reason.contains("500") && e.reason.contains("etcd"), "{e}");
    api.listener(0).set_fault(Some(Fault::Stall));
    let started = tokio::time::Instant::now();
    let e = probe.check().await.unwrap_err();
    assert!(e.reason.contains("no answer within"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
    api.listener(0).set_fault(None);
    healthy_again(&probe).await;
}

/// The ServiceAccount's namespace file (in-cluster pods have one), read
/// under the root; absent or blank means none.
#[test]
fn the_service_account_namespace_is_read_under_the_root() {
    let root = tempfile::tempdir().unwrap();
    let options = DiscoveryOptions::under_root(root.path());
    assert_eq!(options.service_account_namespace(), None);
    let file = root
        .path()
        .join(vip_lease::access::SERVICE_ACCOUNT_NAMESPACE);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "  \n").unwrap();
    assert_eq!(options.service_account_namespace(), None);
    std::fs::write(&file, "vip-system\n").unwrap();
    assert_eq!(
        options.service_account_namespace().as_deref(),
        Some("vip-system")
    );
}
