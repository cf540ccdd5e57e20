//! `vip demo`: the README's "run it" command. A throwaway lab (3 nodes, a
//! client, a bridge; 198.18.0.0/24), the API-server stand-in, three real
//! `vip manager` processes; then a daemon crash (the VIP moves when the
//! dead daemon's kernel drops it), a node crash (fast failover: heartbeats,
//! probe, Lease compare-and-swap) and a graceful hand-over, as the client
//! saw them, and as Kubernetes Events on the Lease. Exits 0 only if it saw
//! one leader, both failovers and a hand-over (with its `LeaderReleased`
//! Event). Everything is removed at the end, on Ctrl-C or on
//! failure.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vip_testkit::lab::{Lab, Ping, VIP, outage};

const NODES: usize = 3;

struct Clock(Instant);

impl Clock {
    fn say(&self, what: impl AsRef<str>) {
        println!(
            "[{:6.2}s] {}",
            self.0.elapsed().as_secs_f64(),
            what.as_ref()
        );
    }
}

/// Wait (bounded, polling every 10 ms) until `f` gives `Some`.
async fn until<T>(limit: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    vip_testkit::lab::until(limit, Duration::from_millis(10), f).await
}

/// One leader by the Lease, holding the VIP alone, and the client's kernel
/// resolving the VIP to its MAC.
fn settled(lab: &Lab) -> Option<usize> {
    let holder = lab.holder()?;
    let i = lab.node_index(&holder)?;
    (lab.vip_holders() == [i] && lab.client_resolves() == Some(lab.nodes[i].mac)).then_some(i)
}

fn describe(lab: &Lab, i: usize) -> String {
    let n = &lab.nodes[i];
    format!("{} ({}, MAC {})", n.name, n.addr, n.mac)
}

/// Run the demo; `exe` is this binary.
pub async fn run(exe: std::path::PathBuf) -> ExitCode {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        eprintln!("vip demo: needs root (it creates network namespaces): run it with sudo");
        return ExitCode::from(2);
    }
    let clock = Clock(Instant::now());
    let work = scenario(&clock, exe);
    tokio::select! {
        r = work => match r {
            Ok(()) => {
                println!("demo passed: one leader, a daemon-crash and a node-crash failover and a graceful hand-over, everything removed");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("demo failed: {e}");
                ExitCode::from(1)
            }
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: removing the lab");
            ExitCode::from(130)
        }
    }
}

async fn scenario(clock: &Clock, exe: std::path::PathBuf) -> Result<(), String> {
    clock.say(format!(
        "building a lab: {NODES} nodes, a client and an observer on one bridge (198.18.0.0/24), VIP {VIP}"
    ));
    let mut lab = Lab::new(NODES, exe).await.map_err(|e| e.to_string())?;
    let result = steps(clock, &mut lab).await;
    if result.is_err() {
        for n in &lab.nodes {
            if let Ok(log) = std::fs::read_to_string(&n.log) {
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- last lines of {}'s log:", n.name);
                for l in tail.iter().rev() {
                    eprintln!("  {l}");
                }
            }
        }
    }
    clock.say("removing the lab (processes, namespaces, files)");
    for i in 0..NODES {
        let _ = lab.signal(i, libc::SIGTERM);
        let _ = lab.wait(i, Duration::from_secs(3)).await;
    }
    drop(lab);
    result
}

async fn steps(clock: &Clock, lab: &mut Lab) -> Result<(), String> {
    clock.say(
        "API-server stand-in up, one local endpoint per node (127.0.0.1:6443 in each namespace)",
    );
    let (code, out) = lab
        .run_vip(0, &["preflight"], Duration::from_secs(20))
        .await
        .map_err(|e| e.to_string())?;
    clock.say(format!("`vip preflight` on {}:", lab.nodes[0].name));
    for line in out
        .lines()
        .filter(|l| l.starts_with("PASS") || l.starts_with("FAIL"))
    {
        println!("           {line}");
    }
    if code != Some(0) {
        return Err(format!("vip preflight failed (exit {code:?}):\n{out}"));
    }
    for i in 0..NODES {
        lab.start(i).map_err(|e| e.to_string())?;
    }
    clock.say(format!(
        "started `vip manager` on {}",
        lab.nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let pinger = lab
        .ping(
            Duration::from_millis(10),
            Duration::from_secs(60),
            stop.clone(),
        )
        .map_err(|e| e.to_string())?;

    // 1. One leader.
    let first = until(Duration::from_secs(15), || settled(lab))
        .await
        .ok_or("no single leader within 15 s")?;
    clock.say(format!(
        "leader: {}; the client resolves {VIP} to its MAC",
        describe(lab, first)
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 2. Crash: SIGKILL the leader. Its kernel drops the VIP by itself
    //    (address lifetime) before anyone may take the lease.
    let crash = Instant::now();
    lab.signal(first, libc::SIGKILL)
        .map_err(|e| e.to_string())?;
    clock.say(format!(
        "SIGKILL vip on {} (the leader)",
        lab.nodes[first].name
    ));
    let _ = lab.wait(first, Duration::from_secs(2)).await;
    until(Duration::from_secs(10), || {
        (!lab.vip_holders().contains(&first)).then_some(())
    })
    .await
    .ok_or("the dead leader's VIP did not expire")?;
    clock.say(format!(
        "the dead leader's kernel dropped the VIP by itself, {:.1} s after the crash",
        crash.elapsed().as_secs_f64()
    ));
    let second = until(Duration::from_secs(15), || {
        settled(lab).filter(|&i| i != first)
    })
    .await
    .ok_or("no failover within 15 s of the crash")?;
    clock.say(format!(
        "failover: {} leads, {:.1} s after the crash; the client resolves the VIP to it",
        describe(lab, second),
        crash.elapsed().as_secs_f64()
    ));
    // kubelet restarts the crashed pod: it rejoins as a follower.
    lab.start(first).map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    if settled(lab) != Some(second) {
        return Err(format!(
            "restarting {} disturbed the leader",
            lab.nodes[first].name
        ));
    }
    clock.say(format!(
        "{} restarted (as kubelet would) and follows",
        lab.nodes[first].name
    ));

    // 3. Node crash: the leader's port goes down and its daemon dies. Its
    //    heartbeats stop, nobody answers the followers' probe, and one of
    //    them takes the Lease by compare-and-swap: fast failover.
    let node_crash = Instant::now();
    lab.set_link(second, false).map_err(|e| e.to_string())?;
    lab.kill(second).await.map_err(|e| e.to_string())?;
    clock.say(format!(
        "node crash of {} (its port down, vip killed)",
        lab.nodes[second].name
    ));
    let crashed = second;
    // The crashed node's kernel keeps its VIP behind its dead port, so
    // "settled" here means the Lease holder has the VIP and the client
    // resolves it to its MAC.
    let second = until(Duration::from_secs(15), || {
        let i = lab.node_index(&lab.holder()?)?;
        (i != crashed
            && lab.vip_holders().contains(&i)
            && lab.client_resolves() == Some(lab.nodes[i].mac))
        .then_some(i)
    })
    .await
    .ok_or("no failover within 15 s of the node crash")?;
    let fast = lab
        .metric(second, "vip_fast_takeovers_total")
        .map_err(|e| e.to_string())?
        .unwrap_or(0.0);
    clock.say(format!(
        "fast failover: {} leads, {:.0} ms after the node crash{}",
        describe(lab, second),
        node_crash.elapsed().as_secs_f64() * 1000.0,
        if fast >= 1.0 {
            " (heartbeats stopped, nobody answered the probe, Lease taken by compare-and-swap)"
        } else {
            ""
        }
    ));
    lab.set_link(crashed, true).map_err(|e| e.to_string())?;
    lab.start(crashed).map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    if settled(lab) != Some(second) {
        return Err(format!(
            "bringing {} back disturbed the leader",
            lab.nodes[crashed].name
        ));
    }

    // 4. Graceful hand-over: SIGTERM the leader.
    let handover = Instant::now();
    lab.signal(second, libc::SIGTERM)
        .map_err(|e| e.to_string())?;
    clock.say(format!(
        "SIGTERM vip on {} (graceful hand-over)",
        lab.nodes[second].name
    ));
    let code = lab
        .wait(second, Duration::from_secs(3))
        .await
        .map_err(|e| e.to_string())?;
    if code != Some(0) {
        return Err(format!(
            "vip on {} exited with {code:?} after SIGTERM, not 0",
            lab.nodes[second].name
        ));
    }
    let third = until(Duration::from_secs(10), || {
        settled(lab).filter(|&i| i != second)
    })
    .await
    .ok_or("no hand-over within 10 s of SIGTERM")?;
    clock.say(format!(
        "hand-over: {} leads, {:.0} ms after SIGTERM",
        describe(lab, third),
        handover.elapsed().as_secs_f64() * 1000.0
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let pings: Vec<Ping> = pinger.join().map_err(|e| e.to_string())?;
    let answered = pings.iter().filter(|p| p.answered.is_some()).count();
    clock.say(format!(
        "the client sent {} pings to the VIP (one every {:.0} ms), {} answered",
        pings.len(),
        pings
            .last()
            .map_or(0.0, |l| (l.sent - pings[0].sent).as_secs_f64() * 1000.0
                / pings.len().max(1) as f64),
        answered
    ));
    match outage(&pings, crash, node_crash) {
        Some(o) => clock.say(format!(
            "client-visible outage after the daemon crash: {} ms (the dead daemon's VIP answered until its kernel dropped it)",
            o.as_millis()
        )),
        None => return Err("the client never got an answer after the crash".into()),
    }
    match outage(&pings, node_crash, handover) {
        Some(o) => clock.say(format!(
            "client-visible outage after the node crash: {} ms",
            o.as_millis()
        )),
        None => return Err("the client never got an answer after the node crash".into()),
    }
    match outage(&pings, handover, Instant::now()) {
        Some(o) => clock.say(format!(
            "client-visible outage during the hand-over: {} ms",
            o.as_millis()
        )),
        None => return Err("the client never got an answer after the hand-over".into()),
    }
    // `vip status` on a follower sees the leader's MAC answer for the VIP.
    let follower = (0..NODES)
        .find(|&i| i != third && i != second)
        .ok_or("no follower")?;
    let (code, out) = lab
        .run_vip(follower, &["status", "-o", "json"], Duration::from_secs(20))
        .await
        .map_err(|e| e.to_string())?;
    let json = out
        .lines()
        .skip_while(|l| !l.starts_with('{'))
        .collect::<Vec<_>>()
        .join("\n");
    let report: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| format!("vip status -o json: {e}: {out}"))?;
    let leader_mac = lab.nodes[third].mac.to_string();
    if code != Some(0)
        || report["holder"] != lab.nodes[third].name.as_str()
        || report["vips"][0]["held_here"] != false
        || report["vips"][0]["answered_by"] != leader_mac.as_str()
    {
        return Err(format!(
            "vip status on {} disagrees (exit {code:?}): {out}",
            lab.nodes[follower].name
        ));
    }
    clock.say(format!(
        "`vip status` on {}: holder {}, renewed {} s ago, {VIP} answered by {leader_mac}, local API {}",
        lab.nodes[follower].name, report["holder"], report["renewed_seconds_ago"], report["local_api"]
    ));
    // The leader's metrics and health endpoint, and SIGUSR1's dump.
    let metrics = http_get(lab, third, "/metrics").await?;
    let healthz = http_get(lab, third, "/healthz").await?;
    for want in [
        "vip_leader 1",
        "vip_address_present 1",
        "vip_local_api_healthy 1",
        "vip_build_info{",
    ] {
        if !metrics.contains(want) {
            return Err(format!(
                "{want:?} missing from the leader's /metrics:\n{metrics}"
            ));
        }
    }
    if !healthz.starts_with("HTTP/1.1 200") {
        return Err(format!("the leader's /healthz: {healthz}"));
    }
    let renewals = metrics
        .lines()
        .find(|l| l.starts_with("vip_renewal_duration_seconds_count"))
        .unwrap_or_default()
        .to_string();
    clock.say(format!(
        "{}'s :2112/metrics: vip_leader 1, {renewals}; /healthz 200",
        lab.nodes[third].name
    ));
    lab.signal(third, libc::SIGUSR1)
        .map_err(|e| e.to_string())?;
    until(Duration::from_secs(2), || {
        std::fs::read_to_string(&lab.nodes[third].log)
            .ok()
            .filter(|l| l.contains("vip configuration:") && l.contains("state: role=leader"))
    })
    .await
    .ok_or("SIGUSR1 printed no configuration and state")?;
    clock.say("SIGUSR1 printed the configuration and state to the log");
    // The story as Kubernetes Events on the Lease (what `kubectl get events
    // --field-selector involvedObject.name=plndr-cp-lock` lists): the
    // crashed leader could not write its end, the hand-over is complete.
    let story = until(Duration::from_secs(3), || {
        let story = lease_events(lab);
        story
            .iter()
            .any(|(reason, _)| reason == "LeaderReleased")
            .then_some(story)
    })
    .await
    .ok_or_else(|| {
        format!(
            "no LeaderReleased Event on the Lease; its Events: {:?}",
            lease_events(lab)
        )
    })?;
    clock.say(format!(
        "Events on the Lease: {}",
        story
            .iter()
            .map(|(reason, node)| format!("{reason} by {node}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if lab.vip_holders().len() != 1 {
        return Err(format!(
            "the VIP is on {:?} nodes at the end",
            lab.vip_holders()
        ));
    }
    Ok(())
}

/// The Lease's Events in the stand-in, oldest first: (reason, node).
fn lease_events(lab: &Lab) -> Vec<(String, String)> {
    use vip_testkit::testapi::{Kind, Selectors};
    let Ok(sel) = Selectors::parse(
        Kind::Event,
        Some(&format!(
            "involvedObject.name={}",
            vip_testkit::lab::LEASE.1
        )),
        None,
    ) else {
        return Vec::new();
    };
    lab.api()
        .store()
        .list(Kind::Event, Some(vip_testkit::lab::LEASE.0), &sel)
        .0
        .iter()
        .map(|e| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            (text(&e["reason"]), text(&e["reportingInstance"]))
        })
        .collect()
}

/// `GET path` on node `i`'s metrics port, from inside its namespace: the
/// whole HTTP response.
async fn http_get(lab: &Lab, i: usize, path: &str) -> Result<String, String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    lab.segment.hosts[i]
        .ns
        .run(Duration::from_secs(5), move || async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect("127.0.0.1:2112").await?;
            s.write_all(request.as_bytes()).await?;
            let mut out = String::new();
            s.read_to_string(&mut out).await?;
            Ok::<_, std::io::Error>(out)
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("GET {path} on {}: {e}", lab.nodes[i].name))
}
