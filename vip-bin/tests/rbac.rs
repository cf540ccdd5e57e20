//! Real RBAC: on a real kube-apiserver, `vip` runs with a ServiceAccount
//! token bound only to what `vip manifest rbac` prints (applied with real
//! `kubectl`).
//!
//! - Enough: two controllers (the Lease election, the event recorder as
//!   observer, the cordon watch, the `/readyz` probe; in-memory data plane)
//!   elect one leader, write their Events, and hand over when the leader's
//!   Node is cordoned.
//! - Minimal: each rule the manifest prints is removed in turn (the rules
//!   are read from the manifest, not listed here, so a rule added to it is
//!   covered at once); then the feature needing it fails, within bounded
//!   waits, with a one-line error naming the refused verb and resource,
//!   and every failure seen names it (nothing else breaks). A rule whose
//!   removal breaks none of the [`probe`]'s features fails the test: the
//!   feature needing it must be added to the probe.
//!
//! In the etcd mode the election goes to etcd, and the Kubernetes API is
//! used for the Events and the cordon watch only: the same rules and the
//! same probes cover it.
//!
//! Without a kube-apiserver (no Go) or kubectl this skips loudly; under
//! `CI=true` it fails.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use vip_core::HeartbeatKeySource;
use vip_core::testutil::{MemoryNetwork, RecordingObserver};
use vip_core::{Controller, ControllerHandle, CordonState, LockBackend, MacAddr, Observer, Role};
use vip_lease::events::{EventCounts, EventsConfig, spawn_event_recorder};
use vip_lease::{
    ClusterAccess, CordonConfig, HealthConfig, LeaseBackend, LeaseConfig, LeaseHeartbeatKeys,
    LeaseName, ReadyzProbe, heartbeat_key, spawn_cordon_watch,
};
use vip_testkit::api::{Api, Flavor};
use vip_testkit::testapi::{Kind, TestApiConfig};

const NODES: [&str; 3] = ["cp-1", "cp-2", "cp-3"];
const NS: &str = "kube-system";

/// Every warning logged by the code under test, captured (installed once
/// per test binary).
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let ours = tracing_subscriber::filter::Targets::new()
            .with_target("vip_lease", tracing::Level::WARN)
            .with_target("vip_core", tracing::Level::WARN);
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || Capture(writer.clone()))
                    .with_filter(ours),
            )
            .init();
        buf
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(b);
        std::io::stderr().write_all(b)?;
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The distinct log lines written since `from` (a byte offset), without
/// their timestamps, and the new offset.
fn logged_since(from: usize) -> (Vec<String>, usize) {
    let logs = logs();
    let buf = logs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let text = String::from_utf8_lossy(&buf[from.min(buf.len())..]).into_owned();
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.split_once(' ').map_or(line, |(_, rest)| rest).trim();
        if !lines.iter().any(|l| l == line) {
            lines.push(line.to_owned());
        }
    }
    (lines, buf.len())
}

/// The distinct lines logged since `mark` that contain `needle`, joined.
fn logged_with(mark: usize, needle: &str) -> String {
    let lines: Vec<String> = logged_since(mark)
        .0
        .into_iter()
        .filter(|l| l.contains(needle))
        .collect();
    lines.join(" || ")
}

fn kubectl_available() -> bool {
    let ok = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kubectl is needed in CI"
        );
        eprintln!("\n*** SKIPPED: kubectl is not runnable; the RBAC test did not run ***\n");
    }
    ok
}

/// `kubectl --kubeconfig <k> <args>` with `stdin`: (success, stdout + stderr).
fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let home = std::env::temp_dir();
    let mut child = std::process::Command::new("kubectl")
        .env("HOME", &home)
        .env_remove("KUBECONFIG")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--request-timeout=10s")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    drop(input);
    let out = child.wait_with_output().expect("kubectl ends");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A role rule of the manifest: which object holds it and where.
#[derive(Debug, Clone)]
struct RuleRef {
    object: Value,
    index: usize,
}

impl RuleRef {
    fn rule(&self) -> &Value {
        &self.object["rules"][self.index]
    }

    fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"].as_str()
    }

    fn describe(&self) -> String {
        format!(
            "{} {}{} rule {}: {}",
            self.object["kind"].as_str().unwrap_or_default(),
            self.namespace()
                .map(|n| format!("{n}/"))
                .unwrap_or_default(),
            self.object["metadata"]["name"].as_str().unwrap_or_default(),
            self.index,
            self.rule()
        )
    }

    /// The object without this rule.
    fn without(&self) -> Value {
        let mut o = self.object.clone();
        if let Some(rules) = o["rules"].as_array_mut() {
            rules.remove(self.index);
        }
        o
    }

    /// `kubectl auth can-i` arguments for the rule's first verb.
    fn can_i(&self, user: &str) -> Vec<String> {
        let rule = self.rule();
        let verb = rule["verbs"][0].as_str().unwrap_or_default().to_owned();
        let group = rule["apiGroups"][0].as_str().unwrap_or_default();
        let mut resource = rule["resources"][0].as_str().unwrap_or_default().to_owned();
        if !group.is_empty() {
            resource = format!("{resource}.{group}");
        }
        if let Some(name) = rule["resourceNames"][0].as_str() {
            resource = format!("{resource}/{name}");
        }
        let mut args = vec![
            "auth".into(),
            "can-i".into(),
            verb,
            resource,
            format!("--as={user}"),
        ];
        if let Some(ns) = self.namespace() {
            args.extend(["-n".into(), ns.into()]);
        }
        args
    }

    /// Whether `error` names this rule's refusal: `cannot <verb> resource
    /// "<resource>"` for one of its verbs (and its namespace, for a Role).
    fn named_by(&self, error: &str) -> bool {
        let rule = self.rule();
        let resources: Vec<&str> = rule["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let names = verbs.iter().any(|v| {
            resources
                .iter()
                .any(|r| error.contains(&format!("cannot {v} resource \"{r}\"")))
        });
        names
            && self
                .namespace()
                .is_none_or(|ns| error.contains(&format!("in the namespace \"{ns}\"")))
    }
}

struct Lab {
    api: Api,
    admin: PathBuf,
    sa: PathBuf,
    user: String,
    rules: Vec<RuleRef>,
}

async fn lab() -> Option<Lab> {
    if !kubectl_available() {
        return None;
    }
    let mut api = Api::start_or_skip(Flavor::Real, TestApiConfig::default()).await?;
    let admin = api.kubeconfig_path();
    // What an operator applies.
    let out = common::vip(common::BRIEF_ENV, &["manifest", "rbac"]);
    assert!(out.status.success(), "{out:?}");
    let manifest = String::from_utf8(out.stdout).expect("UTF-8 YAML");
    let (ok, text) = kubectl(&admin, &["apply", "-f", "-"], Some(&manifest));
    assert!(ok, "kubectl apply of `vip manifest rbac`: {text}");
    let (ok, text) = kubectl(
        &admin,
        &["create", "--dry-run=client", "-o", "json", "-f", "-"],
        Some(&manifest),
    );
    assert!(ok, "{text}");
    // One JSON object per document.
    let items: Vec<Value> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .expect("JSON objects");
    let account = items
        .iter()
        .find(|o| o["kind"] == "ServiceAccount")
        .expect("the manifest has a ServiceAccount");
    let name = account["metadata"]["name"].as_str().unwrap().to_owned();
    let namespace = account["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_owned();
    let rules: Vec<RuleRef> = items
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
        .flat_map(|o| {
            let n = o["rules"].as_array().map_or(0, Vec::len);
            (0..n).map(|index| RuleRef {
                object: o.clone(),
                index,
            })
        })
        .collect();
    assert!(rules.len() >= 3, "{rules:#?}");
    for n in NODES {
        api.put_node(n, true, true, false).await.unwrap();
    }
    let sa = api
        .real()
        .unwrap()
        .service_account_kubeconfig(0, &namespace, &name)
        .await
        .expect("a ServiceAccount token");
    Some(Lab {
        api,
        admin,
        sa,
        user: format!("system:serviceaccount:{namespace}:{name}"),
        rules,
    })
}

/// Waits (bounded) until `kubectl auth can-i` for `rule` says `want`.
async fn until_can_i(lab: &Lab, rule: &RuleRef, want: bool) {
    let args = rule.can_i(&lab.user);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = kubectl(&lab.admin, &args, None);
        // The answer is the first line (a warning may follow).
        if (text.lines().next() == Some("yes")) == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "RBAC never settled: {args:?} said {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn replace(lab: &Lab, object: &Value) {
    let (ok, text) = kubectl(
        &lab.admin,
        &["replace", "-f", "-"],
        Some(&object.to_string()),
    );
    assert!(ok, "kubectl replace: {text}");
}

async fn access(kubeconfig: &Path) -> ClusterAccess {
    ClusterAccess::from_kubeconfig_file(kubeconfig, None)
        .await
        .expect("access")
}

fn lease_backend(access: &ClusterAccess) -> LeaseBackend {
    let config = LeaseConfig {
        lease: LeaseName::default(),
        request_timeout: Duration::from_secs(2),
        ..LeaseConfig::default()
    };
    LeaseBackend::new(access, config).expect("backend")
}

type Outcome = (&'static str, Result<(), String>);

/// Each Kubernetes feature of `vip`, once, as the ServiceAccount, every
/// wait bounded. A new rule in `vip manifest rbac` needs its feature here.
async fn probe(lab: &Lab) -> Vec<Outcome> {
    let sa = access(&lab.sa).await;
    let admin = lease_backend(&access(&lab.admin).await);
    let backend = lease_backend(&sa);
    let mut out: Vec<Outcome> = Vec::new();

    // Creating the Lease (the first node to start).
    lab.api
        .delete(Kind::Lease, NS, "plndr-cp-lock")
        .await
        .unwrap();
    let r = backend
        .create(&vip_core::testutil::held_record("cp-1", 5, 0))
        .await;
    out.push(("create the Lease", r.map(drop).map_err(|e| e.to_string())));

    // Reading, renewing and watching it (every node, every retry period).
    if admin.get().await.unwrap().is_none() {
        admin
            .create(&vip_core::testutil::held_record("cp-2", 5, 0))
            .await
            .unwrap();
    }
    let renew = async {
        let current = backend
            .get()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the Lease is gone")?;
        let renewed = backend
            .update(&current, &vip_core::testutil::held_record("cp-1", 5, 0))
            .await
            .map_err(|e| e.to_string())?;
        let mut rx = backend.watch().ok_or("no watch")?;
        tokio::time::timeout(
            Duration::from_secs(5),
            rx.wait_for(|r| r.as_ref() == Some(&renewed)),
        )
        .await
        .map_err(|_| "the Lease watch delivered nothing within 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    };
    out.push(("read, renew and watch the Lease", renew.await));

    // The heartbeat key (fast failover without a key file): the first node
    // to miss the Secret creates it, every node reads it.
    lab.api
        .delete(
            Kind::Secret,
            NS,
            &heartbeat_key::secret_name(&LeaseName::default()),
        )
        .await
        .unwrap();
    let keys = LeaseHeartbeatKeys::new(&sa, LeaseName::default(), Duration::from_secs(2))
        .expect("key source");
    let r = async {
        let created = keys.heartbeat_auth().await.map_err(|e| e.to_string())?;
        let read = keys.shared_key().await.map_err(|e| e.to_string())?;
        if read.id() == created.key.id() {
            Ok(())
        } else {
            Err("the heartbeat key read back differs from the one created".to_owned())
        }
    };
    out.push(("create and read the heartbeat key", r.await));

    // Events on the Lease and on the Node.
    let mark = logged_since(0).1;
    let counts = Arc::new(EventCounts::default());
    let (recorder, task) = spawn_event_recorder(
        &sa,
        EventsConfig::new(LeaseName::default(), "cp-1"),
        counts.clone(),
    )
    .expect("recorder");
    recorder.on_event(&vip_core::ControllerEvent::Acquired { new: true });
    recorder.on_event(&vip_core::ControllerEvent::Acquired { new: true });
    drop(recorder);
    let ended = tokio::time::timeout(Duration::from_secs(20), task).await;
    let failures = logged_with(mark, "cannot write a Kubernetes Event");
    out.push((
        "write Events",
        match (ended, counts.failed.load(Ordering::Relaxed)) {
            (Err(_), _) => Err("the event writer did not finish within 20 s".into()),
            (_, 0) => Ok(()),
            (_, n) => Err(format!("{n} Event writes failed: {}", failures)),
        },
    ));

    // The cordon watch.
    let mark = logged_since(0).1;
    let (mut cordon, _task) = spawn_cordon_watch(&sa, CordonConfig::new("cp-1")).unwrap();
    let want = CordonState {
        cordoned: false,
        schedulable_peers: 2,
    };
    let seen = tokio::time::timeout(Duration::from_secs(5), cordon.wait_for(|s| *s == want))
        .await
        .map(|r| r.map(|_| ()));
    let failures = logged_with(mark, "cordon watch");
    out.push((
        "watch the Nodes (cordon)",
        match seen {
            Ok(Ok(_)) => Ok(()),
            _ => Err(format!(
                "the cordon watch saw nothing within 5 s: {}",
                failures
            )),
        },
    ));
    drop(cordon);

    // The /readyz probe (non-resource; allowed to every user).
    let r = match ReadyzProbe::new(&sa, HealthConfig::default()) {
        Ok(p) => vip_core::HealthProbe::check(&p)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    out.push(("probe /readyz", r));
    out
}

/// One controller as `vip manager` wires it, as the ServiceAccount.
async fn controller(
    lab: &Lab,
    net: &MemoryNetwork,
    obs: &RecordingObserver,
    i: usize,
    counts: &Arc<EventCounts>,
) -> ControllerHandle {
    let name = NODES[i];
    let sa = access(&lab.sa).await;
    let (recorder, _writer) = spawn_event_recorder(
        &sa,
        EventsConfig::new(LeaseName::default(), name),
        counts.clone(),
    )
    .unwrap();
    let (cordon, _task) = spawn_cordon_watch(&sa, CordonConfig::new(name)).unwrap();
    let (addresses, announcer) = net.node(name, MacAddr([2, 0, 0, 0, 0, i as u8 + 1]));
    let config = vip_core::testutil::lab_controller_config(name);
    let observers: Vec<Arc<dyn Observer>> = vec![Arc::new(recorder), Arc::new(obs.for_node(name))];
    Controller::new(
        config,
        Arc::new(lease_backend(&sa)),
        Arc::new(addresses),
        Arc::new(announcer),
    )
    .with_observer(Arc::new(Both(observers)))
    .with_cordon(cordon)
    .with_health(Arc::new(
        ReadyzProbe::new(&sa, HealthConfig::default()).unwrap(),
    ))
    .spawn()
    .unwrap()
}

struct Both(Vec<Arc<dyn Observer>>);

impl Observer for Both {
    fn on_event(&self, event: &vip_core::ControllerEvent) {
        for o in &self.0 {
            o.on_event(event);
        }
    }
}

fn leaders(handles: &[ControllerHandle]) -> Vec<usize> {
    (0..handles.len())
        .filter(|&i| handles[i].status().borrow().role == Role::Leader)
        .collect()
}

async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifest_rbac_is_enough_for_vip_and_every_rule_is_needed() {
    logs();
    let Some(lab) = lab().await else {
        return;
    };

    // Enough: every feature works as the ServiceAccount.
    for (feature, r) in probe(&lab).await {
        assert!(r.is_ok(), "{feature} as {}: {r:?}", lab.user);
    }
    // An election, Events, and a hand-over when the leader is cordoned.
    lab.api
        .delete(Kind::Lease, NS, "plndr-cp-lock")
        .await
        .unwrap();
    let net = MemoryNetwork::default();
    let obs = RecordingObserver::new("rbac");
    let counts = Arc::new(EventCounts::default());
    let mut handles = Vec::new();
    for i in 0..2 {
        handles.push(controller(&lab, &net, &obs, i, &counts).await);
    }
    wait_for("one leader", Duration::from_secs(15), || {
        leaders(&handles).len() == 1
    })
    .await;
    let first = leaders(&handles)[0];
    let patch = json!({"spec": {"unschedulable": true}});
    lab.api
        .merge_patch(Kind::Node, "", NODES[first], &patch)
        .await
        .unwrap();
    wait_for(
        "the cordoned leader hands over",
        Duration::from_secs(15),
        || leaders(&handles).len() == 1 && leaders(&handles)[0] != first,
    )
    .await;
    let vip = "198.18.0.100".parse().unwrap();
    wait_for(
        "the new leader holds the VIP alone",
        Duration::from_secs(5),
        || net.holders(vip) == [NODES[1 - first]],
    )
    .await;
    let intervals = net.intervals();
    let old_end = intervals
        .iter()
        .find(|iv| iv.node == NODES[first])
        .and_then(|iv| iv.end)
        .expect("the cordoned leader removed its VIP");
    let new_start = intervals
        .iter()
        .find(|iv| iv.node != NODES[first])
        .map(|iv| iv.start)
        .unwrap();
    assert!(old_end <= new_start, "never two holders");
    for h in handles {
        h.shutdown().await;
    }
    let events = lab
        .api
        .list(Kind::Event, NS, "involvedObject.name=plndr-cp-lock")
        .await
        .unwrap();
    assert!(
        events.iter().any(|e| e["reason"] == "LeaderAcquired"),
        "{events:#?}"
    );
    assert_eq!(
        counts.failed.load(Ordering::Relaxed),
        0,
        "no Event write failed"
    );
    lab.api
        .merge_patch(
            Kind::Node,
            "",
            NODES[first],
            &json!({"spec": {"unschedulable": false}}),
        )
        .await
        .unwrap();

    // Minimal: without any one rule, a feature fails, naming it.
    for rule in &lab.rules {
        eprintln!("without {}", rule.describe());
        replace(&lab, &rule.without());
        until_can_i(&lab, rule, false).await;
        let started = Instant::now();
        let outcomes = probe(&lab).await;
        let failed: Vec<(&str, String)> = outcomes
            .into_iter()
            .filter_map(|(f, r)| r.err().map(|e| (f, e)))
            .collect();
        eprintln!("  failed in {:?}: {failed:#?}", started.elapsed());
        assert!(
            !failed.is_empty(),
            "nothing the probe exercises needs {}: drop the rule, or add the feature needing it to probe()",
            rule.describe()
        );
        for (feature, error) in &failed {
            assert!(
                rule.named_by(error) && !error.contains('\n'),
                "{feature} failed without {}, but its error does not name the refused permission in one line: {error}",
                rule.describe()
            );
        }
        replace(&lab, &rule.object);
        until_can_i(&lab, rule, true).await;
    }
}
