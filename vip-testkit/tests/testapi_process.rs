//! `vip-testapi` as a separate process, steered through its admin endpoint.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use vip_core::testutil::held_record;
use vip_core::{BackendError, LockBackend};
use vip_lease::{ClusterAccess, LeaseBackend, LeaseConfig};

async fn admin(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let code = out[9..12].parse().unwrap();
    let json = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| serde_json::from_str(b).unwrap_or_default())
        .unwrap_or_default();
    (code, json)
}

async fn backend(kubeconfig: &str) -> LeaseBackend {
    let access = ClusterAccess::from_kubeconfig_file(kubeconfig.as_ref(), None)
        .await
        .unwrap();
    let config = LeaseConfig {
        request_timeout: Duration::from_millis(400),
        ..LeaseConfig::default()
    };
    LeaseBackend::new(&access, config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_is_steered_through_the_admin_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vip-testapi"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--user",
            "node-a",
            "--user",
            "node-b=secret-b",
        ])
        .args([
            "--node",
            "cp-1",
            "--node",
            "w-1,worker,cordoned",
            "--out-dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ready.json")).unwrap(),
        ready.to_string()
    );
    let adm = ready["admin"].as_str().unwrap().to_owned();
    assert_eq!(ready["listeners"].as_array().unwrap().len(), 2);
    let a = backend(ready["kubeconfigs"]["0/node-a"].as_str().unwrap()).await;
    let b = backend(ready["kubeconfigs"]["1/node-b"].as_str().unwrap()).await;
    assert!(
        std::fs::read_to_string(ready["kubeconfigs"]["1/node-b"].as_str().unwrap())
            .unwrap()
            .contains("secret-b")
    );

    let v = b.create(&held_record("node-b", 5, 0)).await.unwrap();
    assert_eq!(
        a.get().await.unwrap().unwrap(),
        v,
        "both listeners share one store"
    );

    let (code, _) = admin(&adm, "PUT", "/listeners/1/fault", r#"{"kind":"stall"}"#).await;
    assert_eq!(code, 200);
    assert!(matches!(b.get().await, Err(BackendError::Timeout(_))));
    assert!(
        a.update(&v, &held_record("node-a", 5, 1)).await.is_ok(),
        "listener 0 is unaffected"
    );
    let (_, state) = admin(&adm, "GET", "/state", "").await;
    assert_eq!(state["listeners"][1]["fault"]["kind"], "stall");
    admin(&adm, "DELETE", "/listeners/1/fault", "").await;
    assert!(b.get().await.is_ok());

    admin(
        &adm,
        "PUT",
        "/users/node-a/fault",
        r#"{"kind":"error","code":429}"#,
    )
    .await;
    assert!(matches!(
        a.get().await,
        Err(BackendError::Api { code: 429, .. })
    ));
    assert!(b.get().await.is_ok(), "only node-a's token is faulted");
    admin(&adm, "DELETE", "/users/node-a/fault", "").await;

    let (code, _) = admin(&adm, "PUT", "/listeners/9/fault", r#"{"kind":"stall"}"#).await;
    assert_eq!(code, 404);
    let (code, _) = admin(&adm, "PUT", "/listeners/0/fault", r#"{"kind":"explode"}"#).await;
    assert_eq!(code, 400);

    let (_, counters) = admin(&adm, "GET", "/counters", "").await;
    let count = |user: &str, verb: &str| {
        counters
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["user"] == user && c["verb"] == verb && c["resource"] == "leases")
            .map(|c| c["count"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(count("node-b", "create"), 1);
    assert_eq!(count("node-a", "update"), 1);

    let (code, node) = admin(
        &adm,
        "POST",
        "/nodes",
        r#"{"name":"cp-2","unschedulable":true}"#,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(node["spec"]["unschedulable"], true);
    let (code, _) = admin(&adm, "POST", "/compact", "").await;
    assert_eq!(code, 200);

    admin(&adm, "POST", "/shutdown", "").await;
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success());
}
