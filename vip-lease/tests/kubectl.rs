//! The real `kubectl` against the stand-in: it must read what the backend
//! writes, stream renewals, and its `cordon` must reach the cordon watch.
//! Without kubectl the tests are skipped loudly, unless CI=true.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{access, backend, held, lab, micro_text};
use tokio::io::{AsyncBufReadExt, BufReader};
use vip_core::LockBackend;
use vip_lease::{CordonConfig, spawn_cordon_watch};

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
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_the_lease_the_backend_wrote() {
    let Some(kubectl) = kubectl() else { return };
    let home = tempfile::tempdir().unwrap();
    let users = ["node-a", "node-b", "node-c"];
    let api = lab(3, &users).await;
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
        api.kubeconfig_path(),
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
        api.kubeconfig_path(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_watch_streams_renewals() {
    let Some(kubectl) = kubectl() else { return };
    let home = tempfile::tempdir().unwrap();
    let api = lab(1, &["node-a"]).await;
    let a = backend(&api, 0, "node-a", Duration::from_secs(2)).await;
    let mut v = a.create(&held("node-a", 0)).await.unwrap();
    let mut child = command(&kubectl, api.kubeconfig_path(), home.path())
        .args([
            "get",
            "lease",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_cordon_reaches_the_cordon_watch() {
    let Some(kubectl) = kubectl() else { return };
    let home = tempfile::tempdir().unwrap();
    let api = lab(1, &["node-a"]).await;
    for n in ["cp-1", "cp-2", "cp-3"] {
        api.store().put_node(n, true, true, false).unwrap();
    }
    api.store()
        .put_node("worker-1", false, true, false)
        .unwrap();
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
        api.kubeconfig_path(),
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
        api.kubeconfig_path(),
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
        api.kubeconfig_path(),
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
    api: &vip_testkit::testapi::TestApi,
    net: &vip_core::testutil::MemoryNetwork,
    i: usize,
    name: &str,
) -> vip_core::ControllerHandle {
    use std::sync::Arc;
    use vip_core::{Controller, ControllerConfig, InterfaceSelector, MacAddr, NodeIdentity};
    use vip_lease::events::{EventCounts, EventsConfig, spawn_event_recorder};

    api.store().put_node(name, true, true, false).unwrap();
    let backend = backend(api, i, name, Duration::from_millis(750)).await;
    let (recorder, _writer) = spawn_event_recorder(
        &access(api, i, name).await,
        EventsConfig::new(vip_lease::LeaseName::default(), name),
        Arc::new(EventCounts::default()),
    )
    .unwrap();
    let (addresses, announcer) = net.node(name, MacAddr([2, 0, 0, 0, 0, i as u8 + 1]));
    let config = ControllerConfig::new(
        NodeIdentity::new(name).unwrap(),
        "198.18.0.100".parse().unwrap(),
        InterfaceSelector::named("eth0").unwrap(),
        vip_core::Timings::default(),
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_events_tells_the_story_of_a_failover() {
    let Some(kubectl) = kubectl() else { return };
    let home = tempfile::tempdir().unwrap();
    let users = ["node-a", "node-b"];
    let api = lab(2, &users).await;
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
    common::eventually("three Events on the Lease", Duration::from_secs(10), || {
        common::stored_events(&api, "kube-system", "involvedObject.name=plndr-cp-lock").len() >= 3
    })
    .await;

    let events = |namespace: &'static str, selector: &'static str, columns: bool| {
        let (kubectl, kubeconfig, home) = (
            kubectl.clone(),
            api.kubeconfig_path().to_owned(),
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
