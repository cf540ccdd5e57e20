//! The real `kubectl` against the stand-in and the real kube-apiserver
//! (every test runs on both: `<test>::stand_in`, `<test>::real`): it must
//! read what the backend writes, stream renewals, create and apply a Lease
//! from a file, and its `cordon` must reach the cordon watch. Without
//! kubectl the tests are skipped loudly, unless CI=true.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{access, backend, held, lab_on, listed_events, micro_text};
use tokio::io::{AsyncBufReadExt, BufReader};
use vip_core::LockBackend;
use vip_lease::{CordonConfig, spawn_cordon_watch};
use vip_testkit::api::{Api, Flavor};

on_both!(
    kubectl_shows_the_lease_the_backend_wrote,
    kubectl_watch_streams_renewals,
    kubectl_create_and_apply_a_lease_from_a_file,
    kubectl_cordon_reaches_the_cordon_watch,
    kubectl_get_events_tells_the_story_of_a_failover,
);

fn kubectl() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("kubectl"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kubectl is not on PATH, and CI=true requires these tests to run"
        );
        eprintln!(
            "\n*** SKIPPED: kubectl is not on PATH; the kubectl cross-checks did not run ***\n"
        );
    }
    found
}

fn command(kubectl: &Path, kubeconfig: &Path, home: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(kubectl);
    c.env("HOME", home)
        .env_remove("KUBECONFIG")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(home.join("cache"))
        .arg("--request-timeout=10s")
        .kill_on_drop(true);
    c
}

async fn run(kubectl: &Path, kubeconfig: &Path, home: &Path, args: &[&str]) -> String {
    run_full(kubectl, kubeconfig, home, args).await.0
}

/// Runs kubectl, which must succeed: `(stdout, stderr)`.
async fn run_full(
    kubectl: &Path,
    kubeconfig: &Path,
    home: &Path,
    args: &[&str],
) -> (String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        command(kubectl, kubeconfig, home).args(args).output(),
    )
    .await
    .expect("kubectl finishes")
    .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

async fn kubectl_shows_the_lease_the_backend_wrote(flavor: Flavor) {
    let Some(kubectl) = kubectl() else { return };
    let home = tempfile::tempdir().unwrap();
    let users = ["node-a", "node-b", "node-c"];
    let Some(api) = lab_on(flavor, 3, &users).await else {
        return;
    };
    let mut bs = Vec::new();
    for (i, u) in users.iter().enumerate() {
        bs.push(backend(&api, i, u, Duration::from_secs(2)).await);
    }
    // node-a creates, then hands over to node-b, then node-c takes it:
    // two transitions.
    let v = bs[0].create(&held("node-a", 0)).await.unwrap();
    let v = bs[1].update(&v, &held("node-b", 1)).await.unwrap();
    let last = held("node-c", 2);
    let v = bs[2].update(&v, &last).await.unwrap();
    assert!(bs[0].update(&v, &held("node-a", 3)).await.is_ok());
    let v = bs[2].get().await.unwrap().unwrap();
    let last = v.record.clone();

    let yaml = run(
        &kubectl,
        &api.kubeconfig_path(),
        home.path(),
        &["get", "lease", "-n", "kube-system", "-o", "yaml"],
    )
    .await;
    eprintln!("{yaml}");
    assert!(yaml.contains("kind: Lease"), "{yaml}");
    assert!(yaml.contains("name: plndr-cp-lock"), "{yaml}");
    assert!(
        yaml.contains(&format!("holderIdentity: {}", last.holder_identity)),
        "{yaml}"
    );
    assert!(
        yaml.contains(&format!("leaseTransitions: {}", last.lease_transitions)),
        "{yaml}"
    );
    assert!(yaml.contains("leaseDurationSeconds: 5"), "{yaml}");
    let renew = micro_text(last.renew_time.unwrap());
    assert!(
        yaml.contains(&format!("renewTime: \"{renew}\"")),
        "renewTime {renew} as client-go writes it: {yaml}"
    );
    assert_eq!(renew.len(), "2024-01-01T00:00:00.000000Z".len());
    assert!(
        yaml.contains(&format!("resourceVersion: \"{}\"", v.version)),
        "{yaml}"
    );

    // The holder column of the table view too.
    let table = run(
        &kubectl,
        &api.kubeconfig_path(),
        home.path(),
        &[
            "get",
            "lease",
            "plndr-cp-lock",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.spec.holderIdentity}/{.spec.leaseTransitions}",
        ],
    )
    .await;
    assert_eq!(
        table,
        format!("{}/{}", last.holder_identity, last.lease_transitions)
    );
}

async fn kubectl_watch_streams_renewals(flavor: Flavor) {
    let Some(kubectl) = kubectl() else { return };
    let home = tempfile::tempdir().unwrap();
    let Some(api) = lab_on(flavor, 1, &["node-a"]).await else {
        return;
    };
    let a = backend(&api, 0, "node-a", Duration::from_secs(2)).await;
    let mut v = a.create(&held("node-a", 0)).await.unwrap();
    let mut child = command(&kubectl, &api.kubeconfig_path(), home.path())
        .args([
            "get",
            "lease",
            "plndr-cp-lock",
            "-n",
            "kube-system",
            "-w",
            "-o",
            "jsonpath={.spec.renewTime}{\"\\n\"}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("first line")
        .unwrap()
        .unwrap();
    assert_eq!(first, micro_text(v.record.renew_time.unwrap()));
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = held("node-a", 0);
        v = a.update(&v, &r).await.unwrap();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("kubectl streams the renewal")
            .unwrap()
            .unwrap();
        assert_eq!(line, micro_text(r.renew_time.unwrap()));
    }
    child.kill().await.unwrap();
}

/// The Lease manifest a user would write.
const LEASE_YAML: &str = "apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: from-a-file
  namespace: kube-system
  labels:
    made-by: kubectl
spec:
  holderIdentity: node-a
  leaseDurationSeconds: 15
";

async fn kubectl_create_and_apply_a_lease_from_a_file(flavor: Flavor) {
    let Some(kubectl) = kubectl() else { return };
    let home = tempfile::tempdir().unwrap();
    let Some(api) = lab_on(flavor, 1, &["node-a"]).await else {
        return;
    };
    let kubeconfig = api.kubeconfig_path();
    let file = home.path().join("lease.yaml");
    std::fs::write(&file, LEASE_YAML).unwrap();
    let file = file.to_str().unwrap();
    // `create -f` validates against the server's OpenAPI document first.
    let (out, err) = run_full(&kubectl, &kubeconfig, home.path(), &["create", "-f", file]).await;
    assert_eq!(out.trim(), "lease.coordination.k8s.io/from-a-file created");
    assert_eq!(err, "", "no warning, no fallback");
    // `apply` (client-side) on an object it did not create, then again
    // after an edit: a three-way merge patch.
    let (out, err) = run_full(&kubectl, &kubeconfig, home.path(), &["apply", "-f", file]).await;
    assert_eq!(
        out.trim(),
        "lease.coordination.k8s.io/from-a-file configured"
    );
    assert!(
        err.starts_with("Warning: resource leases/from-a-file is missing the kubectl.kubernetes.io/last-applied-configuration annotation")
            && err.lines().filter(|l| !l.is_empty()).count() == 1,
        "only kubectl's own note, no patch-computation fallback: {err}"
    );
    std::fs::write(
        home.path().join("lease.yaml"),
        LEASE_YAML.replace("holderIdentity: node-a", "holderIdentity: node-b"),
    )
    .unwrap();
    let (out, err) = run_full(&kubectl, &kubeconfig, home.path(), &["apply", "-f", file]).await;
    assert_eq!(
        out.trim(),
        "lease.coordination.k8s.io/from-a-file configured"
    );
    assert_eq!(err, "");
    let lease = api
        .get(
            vip_testkit::testapi::Kind::Lease,
            "kube-system",
            "from-a-file",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "node-b");
    assert_eq!(lease["metadata"]["labels"]["made-by"], "kubectl");
    // Server-side apply too.
    let out = run(
        &kubectl,
        &kubeconfig,
        home.path(),
        &["apply", "--server-side", "-f", file],
    )
    .await;
    assert_eq!(
        out.trim(),
        "lease.coordination.k8s.io/from-a-file serverside-applied"
    );
    // A field the schema does not know is refused by strict validation.
    std::fs::write(
        home.path().join("lease.yaml"),
        LEASE_YAML.replace(
            "leaseDurationSeconds: 15",
            "leaseDurationSeconds: 15\n  colour: blue",
        ),
    )
    .unwrap();
    let out = command(&kubectl, &kubeconfig, home.path())
        .args(["create", "-f", file])
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("unknown field \"spec.colour\""), "{err}");
}

async fn kubectl_cordon_reaches_the_cordon_watch(flavor: Flavor) {
    let Some(kubectl) = kubectl() else { return };
    let home = tempfile::tempdir().unwrap();
    let Some(api) = lab_on(flavor, 1, &["node-a"]).await else {
        return;
    };
    for n in ["cp-1", "cp-2", "cp-3"] {
        api.put_node(n, true, true, false).await.unwrap();
    }
    api.put_node("worker-1", false, true, false).await.unwrap();
    let (mut cordon, _task) =
        spawn_cordon_watch(&access(&api, 0, "node-a").await, CordonConfig::new("cp-1")).unwrap();
    let wait = |want: vip_core::CordonState| {
        let mut c = cordon.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(10), c.wait_for(|s| *s == want))
                .await
                .unwrap_or_else(|_| panic!("cordon watch never showed {want:?}"))
                .map(|_| ())
                .unwrap();
        }
    };
    wait(vip_core::CordonState {
        cordoned: false,
        schedulable_peers: 2,
    })
    .await;
    let out = run(
        &kubectl,
        &api.kubeconfig_path(),
        home.path(),
        &["cordon", "cp-1"],
    )
    .await;
    assert!(out.contains("node/cp-1 cordoned"), "{out}");
    wait(vip_core::CordonState {
        cordoned: true,
        schedulable_peers: 2,
    })
    .await;
    run(
        &kubectl,
        &api.kubeconfig_path(),
        home.path(),
        &["cordon", "cp-2"],
    )
    .await;
    wait(vip_core::CordonState {
        cordoned: true,
        schedulable_peers: 1,
    })
    .await;
    let out = run(
        &kubectl,
        &api.kubeconfig_path(),
        home.path(),
        &["uncordon", "cp-1"],
    )
    .await;
    assert!(out.contains("node/cp-1 uncordoned"), "{out}");
    wait(vip_core::CordonState {
        cordoned: false,
        schedulable_peers: 1,
    })
    .await;
    assert!(cordon.borrow_and_update().schedulable_peers == 1);
}

/// One controller of the failover lab, with the event recorder as its
/// observer.
async fn controller_with_events(
    api: &Api,
    net: &vip_core::testutil::MemoryNetwork,
    i: usize,
    name: &str,
) -> vip_core::ControllerHandle {
    use std::sync::Arc;
    use vip_core::{Controller, MacAddr};
    use vip_lease::events::{EventCounts, EventsConfig, spawn_event_recorder};

    api.put_node(name, true, true, false).await.unwrap();
    let backend = backend(api, i, name, Duration::from_millis(750)).await;
    let (recorder, _writer) = spawn_event_recorder(
        &access(api, i, name).await,
        EventsConfig::new(vip_lease::LeaseName::default(), name),
        Arc::new(EventCounts::default()),
    )
    .unwrap();
    let (addresses, announcer) = net.node(name, MacAddr([2, 0, 0, 0, 0, i as u8 + 1]));
    let config = vip_core::testutil::lab_controller_config(name);
    Controller::new(
        config,
        Arc::new(backend),
        Arc::new(addresses),
        Arc::new(announcer),
    )
    .with_observer(Arc::new(recorder))
    .spawn()
    .unwrap()
}

async fn kubectl_get_events_tells_the_story_of_a_failover(flavor: Flavor) {
    let Some(kubectl) = kubectl() else { return };
    let home = tempfile::tempdir().unwrap();
    let users = ["node-a", "node-b"];
    let Some(api) = lab_on(flavor, 2, &users).await else {
        return;
    };
    let net = vip_core::testutil::MemoryNetwork::default();
    let is_leader =
        |h: &vip_core::ControllerHandle| h.status().borrow().role == vip_core::Role::Leader;

    // node-a leads first; node-b follows; node-a hands over on shutdown.
    let a = controller_with_events(&api, &net, 0, "node-a").await;
    common::eventually("node-a leads", Duration::from_secs(10), || is_leader(&a)).await;
    let b = controller_with_events(&api, &net, 1, "node-b").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = a.shutdown().await;
    assert!(report.released, "{report:?}");
    common::eventually("node-b takes over", Duration::from_secs(15), || {
        is_leader(&b)
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while listed_events(&api, "kube-system", "involvedObject.name=plndr-cp-lock")
        .await
        .len()
        < 3
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "three Events on the Lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let events = |namespace: &'static str, selector: &'static str, columns: bool| {
        let (kubectl, kubeconfig, home) = (
            kubectl.clone(),
            api.kubeconfig_path(),
            home.path().to_owned(),
        );
        async move {
            let mut args = vec![
                "get",
                "events",
                "-n",
                namespace,
                "--field-selector",
                selector,
            ];
            if columns {
                args.extend(["-o", "custom-columns=REASON:.reason,INSTANCE:.reportingInstance,CONTROLLER:.reportingComponent,KIND:.involvedObject.kind,COUNT:.count,MESSAGE:.message"]);
            }
            let out = run(&kubectl, &kubeconfig, &home, &args).await;
            eprintln!("{out}");
            out
        }
    };
    let story = events("kube-system", "involvedObject.name=plndr-cp-lock", true).await;
    let rows: Vec<Vec<&str>> = story
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let summary: Vec<(&str, &str, &str, &str)> =
        rows.iter().map(|r| (r[0], r[1], r[2], r[3])).collect();
    assert_eq!(
        summary,
        [
            ("LeaderAcquired", "node-a", "vip", "Lease"),
            ("LeaderReleased", "node-a", "vip", "Lease"),
            ("LeaderAcquired", "node-b", "vip", "Lease"),
        ],
        "{story}"
    );
    assert!(
        story.contains("node-a stepped down: leadership ended: shutdown; lease released"),
        "{story}"
    );
    assert!(story.contains("node-b became leader"), "{story}");

    // The default view: the real server's columns, through its Table.
    let plain = events("kube-system", "involvedObject.name=plndr-cp-lock", false).await;
    let lines: Vec<&str> = plain.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{plain}"
    );
    assert_eq!(lines.len(), 4, "a header and three Events: {plain}");
    assert!(
        lines[1].contains("Normal")
            && lines[1].contains("LeaderAcquired")
            && lines[1].contains("lease/plndr-cp-lock")
            && lines[1].contains("node-a became leader"),
        "{plain}"
    );

    // And node-a's own Events, on its Node, in `default`.
    let node = events(
        "default",
        "involvedObject.kind=Node,involvedObject.name=node-a",
        true,
    )
    .await;
    let reasons: Vec<&str> = node
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(reasons, ["LeaderAcquired", "LeaderReleased"], "{node}");
    drop(b.shutdown().await);
}
