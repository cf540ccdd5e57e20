//! The deployment brief's topology with real API servers (issue 19): three
//! node namespaces, each running an etcd member (one three-member cluster,
//! as k3s with embedded etcd) and a real `kube-apiserver` on its own
//! address and on `127.0.0.1:6443`, `vip manager` on each node talking to
//! its local server, the VIP in front, and a client namespace that runs
//! the brief's validation table literally (`curl -k`, `kubectl get
//! lease`, `vip preflight`). Then the faults a control plane meets: a
//! node crash, the leader's API server killed, a graceful hand-over, each
//! asserted from the ARP/NDP observer (never two MACs in one round) and
//! from the client's `GET /readyz` through the VIP.
//!
//! Needs root, a `kube-apiserver` (built from `vip-testkit/apiserver/`
//! with Go) and etcd: without them the tests skip loudly, and fail under
//! `CI=true`. One real lab runs at a time (three API servers and three
//! etcd members start in each).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vip_e2e::{LEASE, RENEW_DEADLINE, RETRY, Scenario, until};
use vip_testkit::lab::{LEASE as LEASE_NAME, LabConfig, Ping, VIP, answer_gap, client_host};
use vip_testkit::netns::NsThread;

const V4: IpAddr = IpAddr::V4(VIP);
/// Generous: three API servers on a small shared machine answer slower.
const SETTLE: Duration = Duration::from_secs(30);
const PROBE: Duration = Duration::from_millis(20);

/// One real lab at a time in this process.
static ONE_LAB: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

async fn real_lab(name: &'static str, vip_in_certificate: bool) -> Option<Scenario> {
    let started = Instant::now();
    let s = Scenario::with_config(
        name,
        LabConfig::new(3).real_api(vip_in_certificate),
        secs(240),
    )
    .await?;
    eprintln!(
        "{name}: lab with 3 kube-apiservers and 3 etcd members built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Some(s)
}

/// `vip preflight` on node `i`: its exit code and output.
async fn preflight(s: &Scenario, i: usize) -> (Option<i32>, String) {
    s.run_vip(i, &["preflight"], secs(60))
        .await
        .expect("vip preflight runs")
}

/// Start the managers and wait for one settled leader.
async fn led(s: &mut Scenario) -> usize {
    s.start_all();
    s.settle(SETTLE).await
}

/// The client's `/readyz` poll through the VIP, every [`PROBE`].
fn poll(s: &Scenario, stop: &Arc<AtomicBool>) -> NsThread<Vec<Ping>> {
    s.poll_api(PROBE, secs(120), stop.clone())
        .expect("the /readyz poller")
}

/// Stop the poll; the longest stretch from `t0` to now in which no
/// `/readyz` answer arrived ([`answer_gap`]), asserting that some answer
/// came after the fault.
fn api_outage(
    name: &str,
    stop: &Arc<AtomicBool>,
    poller: NsThread<Vec<Ping>>,
    t0: Instant,
) -> Duration {
    let end = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let probes = poller.join().expect("the /readyz poller");
    let before = probes.iter().filter(|p| p.sent < t0).count();
    assert!(
        probes.iter().any(|p| p.sent < t0 && p.answered.is_some()),
        "{name}: no /readyz through the VIP was answered before the fault ({before} probes)"
    );
    let out = answer_gap(&probes, t0, end).unwrap_or_else(|| {
        panic!("{name}: no /readyz through the VIP was answered after the fault")
    });
    eprintln!(
        "{name}: API outage through the VIP {:.0} ms ({} probes)",
        out.as_secs_f64() * 1000.0,
        probes.len()
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r01_validation_table() {
    let name = "r01_validation_table";
    let _one = ONE_LAB.lock().await;
    let Some(mut s) = real_lab(name, true).await else {
        return;
    };
    // Pre-deployment: the VIP is unused and in the serving certificate.
    let (code, out) = preflight(&s, 0).await;
    assert!(
        out.contains("PASS serving certificate lists the VIP") && code == Some(0),
        "{name}: vip preflight (exit {code:?}):\n{out}"
    );
    let leader = led(&mut s).await;
    let leader_name = s.nodes[leader].name.clone();
    let client = client_host(s.nodes.len());
    // | VIP responds | curl -k https://VIP:6443/healthz | ok |
    let (ok, out) = s.client_curl("/healthz").await.expect("curl");
    assert!(ok && out == "ok", "{name}: curl -k /healthz said {out:?}");
    // | Leader election | kubectl get lease -n kube-system <lease> | One holder |
    let (ok, out) = s
        .kubectl(client, &["get", "lease", "-n", LEASE_NAME.0, LEASE_NAME.1])
        .await
        .expect("kubectl");
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert!(
        ok && rows.len() == 1 && rows[0].split_whitespace().nth(1) == Some(leader_name.as_str()),
        "{name}: kubectl get lease through the VIP shows {out:?}, the leader is {leader_name}"
    );
    let (ok, out) = s
        .kubectl(
            client,
            &[
                "get",
                "lease",
                "-n",
                LEASE_NAME.0,
                LEASE_NAME.1,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
        )
        .await
        .expect("kubectl");
    assert!(ok && out == leader_name, "{name}: holderIdentity {out:?}");
    // | ARP entry | arp -n VIP (from another host) | the leader's MAC |
    let resolved = until(secs(5), || {
        s.client_resolves().filter(|&m| m == s.mac(leader))
    })
    .await;
    assert_eq!(
        resolved,
        Some(s.mac(leader)),
        "{name}: the client's ARP entry"
    );
    // Every node's vip uses its own server: the Lease is the real one.
    let (ok, out) = s
        .kubectl(0, &["get", "nodes", "-o", "name"])
        .await
        .expect("kubectl");
    assert!(ok && out.lines().count() == 3, "{name}: nodes {out:?}");
    let seen = s.finish().await;
    assert!(
        seen.overlaps().is_empty(),
        "{name}: two MACs answered at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r02_preflight_without_the_vip_in_the_certificate() {
    let name = "r02_preflight_without_the_vip_in_the_certificate";
    let _one = ONE_LAB.lock().await;
    let Some(s) = real_lab(name, false).await else {
        return;
    };
    let (code, out) = preflight(&s, 1).await;
    assert_eq!(code, Some(1), "{name}: vip preflight passed:\n{out}");
    assert!(
        out.contains("PASS kubeconfig found and the API answers"),
        "{name}: the API check should pass:\n{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("FAIL serving certificate lists the VIP"))
        .unwrap_or_else(|| panic!("{name}: no failed SAN check:\n{out}"));
    assert!(
        line.contains(&format!("not valid for {VIP}"))
            && line.contains(&format!("--tls-san {VIP}")),
        "{name}: unclear failure: {line}"
    );
    s.finish().await;
}

/// The fault at t0 and what it is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Port down, then vip, the API server and the etcd member killed.
    NodeCrash,
    /// The leader's kube-apiserver killed (SIGKILL); vip runs on.
    ApiServerKilled,
    /// SIGTERM to the leader's vip.
    Graceful,
}

async fn fault(name: &'static str, f: Fault) {
    let _one = ONE_LAB.lock().await;
    let Some(mut s) = real_lab(name, true).await else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let old = led(&mut s).await;
    let poller = poll(&s, &stop);
    tokio::time::sleep(secs(2)).await;
    let t0 = Instant::now();
    match f {
        Fault::NodeCrash => {
            s.set_link(old, false).expect("port down");
            s.kill(old).await.expect("SIGKILL vip");
            let real = s.real_api().expect("real API servers");
            real.kill(old).expect("kill the API server");
            real.etcd().kill(old).expect("kill the etcd member");
        }
        Fault::ApiServerKilled => {
            let real = s.real_api().expect("real API servers");
            real.kill(old).expect("kill the API server");
        }
        Fault::Graceful => {
            s.signal(old, libc::SIGTERM).expect("SIGTERM");
            let code = s.wait(old, secs(10)).await.expect("exit");
            assert_eq!(code, Some(0), "{name}: vip exited with {code:?}");
        }
    }
    let new = s
        .settle_on(secs(60), "another node takes over", |i| i != old)
        .await;
    // The client's API comes back through the VIP.
    let answered = until(secs(30), || (!s.has_address(old, V4)).then_some(())).await;
    assert!(
        answered.is_some(),
        "{name}: the VIP is still on the old leader"
    );
    tokio::time::sleep(secs(2)).await;
    let out = api_outage(name, &stop, poller, t0);
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    let first_new = seen.first_answer(V4, s.mac(new), t0).expect("new answered");
    eprintln!(
        "{name}: the new leader answered ARP {:.0} ms after the fault",
        (first_new - t0).as_secs_f64() * 1000.0
    );
    // Bounds that separate a takeover from a failure, not timings: a
    // graceful hand-over is not a lease expiry; the others wait at most a
    // renew deadline (API death) or less (fast failover), plus the new
    // server's answer and a loaded machine's slack.
    let bound = match f {
        Fault::Graceful => secs(2),
        Fault::NodeCrash | Fault::ApiServerKilled => LEASE + RENEW_DEADLINE + 2 * RETRY + secs(5),
    };
    assert!(
        out <= bound,
        "{name}: the client saw the API through the VIP down for {out:?} (bound {bound:?})"
    );
    if f == Fault::ApiServerKilled {
        // The old leader lost its API: it withdrew, and nobody gave it
        // the VIP back while its server was dead.
        assert_ne!(
            s.settled(),
            Some(old),
            "{name}: back on the node without API"
        );
    }
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r03_node_crash() {
    fault("r03_node_crash", Fault::NodeCrash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r04_leader_api_server_killed() {
    fault("r04_leader_api_server_killed", Fault::ApiServerKilled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r05_graceful_handover() {
    fault("r05_graceful_handover", Fault::Graceful).await;
}
