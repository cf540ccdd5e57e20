//! The twelve fault scenarios of issue 6 (see `e2e/src/lib.rs`). Each one
//! asserts safety (never two MACs answering for the VIP in one probe
//! round, unless a foreign host is the second) and generous bounds; none
//! asserts a tight timing. The defaults are kube-vip's: lease 5 s, renew
//! deadline 3 s, retry 1 s.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vip_e2e::{LEASE, RENEW_DEADLINE, RETRY, Scenario, until};
use vip_testkit::lab::{VIP, VIP6, foreign_host, outage};
use vip_testkit::testapi::{Fault, Kind};

const V4: IpAddr = IpAddr::V4(VIP);
const V6: IpAddr = IpAddr::V6(VIP6);
const SETTLE: Duration = Duration::from_secs(15);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

// 1. Exactly one holder; the client's neighbour entry points at its MAC.

async fn one_holder(name: &'static str, vips: &[IpAddr]) {
    let Some(mut s) = Scenario::new(name, vips, secs(60)).await else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let pingers: Vec<_> = vips
        .iter()
        .map(|&v| {
            s.ping_addr(v, Duration::from_millis(100), secs(40), stop.clone())
                .expect("pinger")
        })
        .collect();
    s.start_all();
    let leader = s.settle(SETTLE).await;
    // Steady state for a while: still exactly one holder.
    sleep(secs(3)).await;
    assert_eq!(s.settled(), Some(leader), "{name}: the leader changed");
    for &v in vips {
        let resolved = until(secs(5), || {
            s.client_resolves_addr(v).filter(|&m| m == s.mac(leader))
        })
        .await;
        assert_eq!(
            resolved,
            Some(s.mac(leader)),
            "{name}: the client's neighbour entry for {v} is {:?}, not the leader's {}",
            s.client_resolves_addr(v),
            s.mac(leader)
        );
    }
    stop.store(true, Ordering::Relaxed);
    for (p, v) in pingers.into_iter().zip(vips) {
        let pings = p.join().expect("pinger");
        let late = pings
            .iter()
            .rev()
            .take(10)
            .filter(|p| p.answered.is_some())
            .count();
        assert!(
            late >= 8,
            "{name}: the client's last pings to {v} went unanswered: {late}/10"
        );
    }
    let seen = s.finish().await;
    for &v in vips {
        assert!(
            !seen.answers(v).is_empty(),
            "{name}: the observer asked nothing for {v}"
        );
    }
    let overlaps = seen.overlaps();
    assert!(
        overlaps.is_empty(),
        "{name}: overlap {:?}",
        overlaps.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s01_one_holder_ipv4() {
    one_holder("s01_one_holder_ipv4", &[V4]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s01_one_holder_ipv6() {
    one_holder("s01_one_holder_ipv6", &[V6]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s01_one_holder_dual_stack() {
    one_holder("s01_one_holder_dual_stack", &[V4, V6]).await;
}

// 2. SIGKILL of the leader's vip, restarted 1 s later as kubelet would.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s02_sigkill_restart() {
    let Some(mut s) = Scenario::new("s02_sigkill_restart", &[V4], secs(60)).await else {
        return;
    };
    s.start_all();
    let leader = s.settle(SETTLE).await;
    sleep(secs(1)).await;
    let crash = Instant::now();
    s.kill(leader).await.expect("SIGKILL");
    sleep(secs(1)).await;
    s.start(leader).expect("restart");
    // Served again by someone, and settled.
    s.settle(secs(20)).await;
    sleep(secs(2)).await;
    let end = Instant::now();
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    let bound = LEASE + 2 * RETRY + secs(1);
    let silence = seen.longest_silence(V4, crash, end);
    assert!(
        silence <= bound,
        "the VIP went unanswered for {silence:?} after the crash (bound {bound:?})"
    );
    s.finish().await;
}

// 2b. SIGKILL with no restart, and SIGSTOP: the old node's kernel drops the
// VIP by itself before another node adds it.

async fn dead_leader(name: &'static str, signal: i32) {
    let Some(mut s) = Scenario::new(name, &[V4], secs(60)).await else {
        return;
    };
    s.start_all();
    let old = s.settle(SETTLE).await;
    sleep(secs(1)).await;
    let t0 = Instant::now();
    s.signal(old, signal).expect("signal");
    if signal == libc::SIGKILL {
        s.wait(old, secs(5)).await.expect("reaped");
    }
    let new = s
        .settle_on(secs(20), "another node takes over", |i| i != old)
        .await;
    // Nobody else could have removed it: the old node's daemon is dead or
    // stopped; its kernel did (the address's valid lifetime).
    assert!(
        !s.has_address(old, V4),
        "{name}: the VIP is still on the old leader"
    );
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    let last_old = seen.last_answer(V4, s.mac(old)).expect("old answered");
    let first_new = seen.first_answer(V4, s.mac(new), t0).expect("new answered");
    assert!(
        last_old < first_new,
        "{name}: the old leader answered until +{:?}, the new one from +{:?}",
        last_old - t0,
        first_new - t0
    );
    // The kernel's lifetime ends the old VIP within the lease duration
    // (lifetime 3 s + up to 1 s of kernel lag after the last renewal).
    assert!(
        last_old - t0 <= LEASE + secs(1),
        "{name}: the old leader's kernel answered {:?} after the crash",
        last_old - t0
    );
    if signal == libc::SIGSTOP {
        // The hung daemon wakes up: it must see it lost, and not add the
        // VIP back.
        let woke = Instant::now();
        s.signal(old, libc::SIGCONT).expect("SIGCONT");
        sleep(secs(4)).await;
        let seen = s.seen();
        s.assert_no_overlap(&seen);
        assert_eq!(
            seen.moves(V4, woke, Instant::now()),
            0,
            "{name}: the VIP moved after the stopped daemon woke up"
        );
        assert_eq!(
            s.settled(),
            Some(new),
            "{name}: the new leader lost the VIP"
        );
    }
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s02b_sigkill_no_restart() {
    dead_leader("s02b_sigkill_no_restart", libc::SIGKILL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s02b_sigstop_hung_daemon() {
    dead_leader("s02b_sigstop_hung_daemon", libc::SIGSTOP).await;
}

// 3. SIGTERM: a hand-over with no overlap and no outage above 1 s.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s03_sigterm_handover() {
    let Some(mut s) = Scenario::new("s03_sigterm_handover", &[V4], secs(60)).await else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = s
        .ping(Duration::from_millis(10), secs(45), stop.clone())
        .expect("pinger");
    s.start_all();
    let old = s.settle(SETTLE).await;
    sleep(secs(1)).await;
    let t0 = Instant::now();
    s.signal(old, libc::SIGTERM).expect("SIGTERM");
    let code = s.wait(old, secs(5)).await.expect("exit");
    assert_eq!(code, Some(0), "vip exited with {code:?} after SIGTERM");
    s.settle_on(secs(10), "hand-over", |i| i != old).await;
    sleep(secs(1)).await;
    let end = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let pings = pinger.join().expect("pinger");
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    let silence = seen.longest_silence(V4, t0, end);
    assert!(
        silence < secs(1),
        "the observer saw no owner for {silence:?}"
    );
    let out = outage(&pings, t0, end).expect("the client got answers");
    assert!(out < secs(1), "the client saw an outage of {out:?}");
    s.finish().await;
}

// 4. The leader's local API endpoint stopped: the VIP moves.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s04_local_api_stopped() {
    let Some(mut s) = Scenario::new("s04_local_api_stopped", &[V4], secs(60)).await else {
        return;
    };
    s.start_all();
    let old = s.settle(SETTLE).await;
    s.api().listener(old).set_fault(Some(Fault::Refuse));
    let new = s
        .settle_on(secs(20), "the VIP moves off the node without API", |i| {
            i != old
        })
        .await;
    // It stays away while that API server is down.
    sleep(secs(4)).await;
    assert_eq!(
        s.settled(),
        Some(new),
        "the VIP did not stay on a healthy node"
    );
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    s.api().listener(old).set_fault(None);
    s.finish().await;
}

// 5. The leader partitioned from the API, still on the segment: it
// withdraws before anyone adds the VIP.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s05_api_partition() {
    let Some(mut s) = Scenario::new("s05_api_partition", &[V4], secs(60)).await else {
        return;
    };
    s.start_all();
    let old = s.settle(SETTLE).await;
    sleep(secs(1)).await;
    let t0 = Instant::now();
    let old_name = s.nodes[old].name.clone();
    s.api().set_token_fault(&old_name, Some(Fault::Stall));
    let new = s
        .settle_on(secs(20), "the VIP moves off the partitioned node", |i| {
            i != old
        })
        .await;
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    let last_old = seen.last_answer(V4, s.mac(old)).expect("old answered");
    let first_new = seen.first_answer(V4, s.mac(new), t0).expect("new answered");
    let new_name = s.nodes[new].name.clone();
    let taken = s
        .lease_writes()
        .into_iter()
        .find(|w| w.at >= t0 && w.holder == new_name)
        .expect("the new holder wrote the Lease")
        .at;
    assert!(
        last_old < taken && taken <= first_new + Duration::from_millis(50),
        "withdrawn at +{:?}, lease taken at +{:?}, VIP added at +{:?}",
        last_old - t0,
        taken - t0,
        first_new - t0
    );
    // The partitioned leader withdrew by its renew deadline (plus a retry
    // and slack), without hearing from anyone.
    assert!(
        last_old - t0 <= RENEW_DEADLINE + RETRY + secs(1),
        "the partitioned leader answered until +{:?}",
        last_old - t0
    );
    s.api().set_token_fault(&old_name, None);
    s.finish().await;
}

// 6. The whole API down for 2 × the lease duration: the leader steps down
// at its renew deadline and the VIP goes (its validity cannot be proven);
// nobody else takes it while the API is down; one leader afterwards.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s06_api_down() {
    let Some(mut s) = Scenario::new("s06_api_down", &[V4], secs(90)).await else {
        return;
    };
    s.start_all();
    let old = s.settle(SETTLE).await;
    sleep(secs(1)).await;
    let t0 = Instant::now();
    for i in 0..s.nodes.len() {
        s.api().listener(i).set_fault(Some(Fault::Stall));
    }
    sleep(2 * LEASE).await;
    let t1 = Instant::now();
    for i in 0..s.nodes.len() {
        s.api().listener(i).set_fault(None);
    }
    let seen = s.seen();
    let last_old = seen.last_answer(V4, s.mac(old)).expect("old answered");
    assert!(
        last_old - t0 <= RENEW_DEADLINE + RETRY + secs(1),
        "the leader kept the VIP {:?} into the API outage",
        last_old - t0
    );
    let during = seen.timeline_between(V4, last_old + Duration::from_millis(20), t1);
    assert!(
        during.iter().all(|st| st.macs.is_empty()),
        "someone answered for the VIP while the API was down: {during:?}"
    );
    // Recovery: one leader, then stable.
    let leader = s.settle(secs(20)).await;
    let t2 = Instant::now();
    sleep(secs(3)).await;
    assert_eq!(
        s.settled(),
        Some(leader),
        "the leader changed after recovery"
    );
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    assert_eq!(
        seen.moves(V4, t2, Instant::now()),
        0,
        "the VIP flapped after recovery"
    );
    s.finish().await;
}

// 7. Link down/up on the leader: re-announced. An external `ip addr del`
// on the leader: restored. (With fast failover a leader whose link goes
// is replaced at once instead: `fast_failover.rs` f04/f05; this is the
// lease-only path, with heartbeats off.)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s07_link_down_up() {
    let Some(mut s) = Scenario::new("s07_link_down_up", &[V4], secs(60)).await else {
        return;
    };
    s.env.insert("vip_heartbeat_ms".into(), "0".into());
    s.start_all();
    let leader = s.settle(SETTLE).await;
    sleep(secs(4)).await; // past the takeover burst
    s.set_link(leader, false).expect("link down");
    sleep(secs(1)).await;
    let up = Instant::now();
    s.set_link(leader, true).expect("link up");
    let announced = s.announced_after(leader, V4, up, secs(3)).await;
    assert!(
        announced.is_some(),
        "no announcement within 3 s of carrier-up"
    );
    // Well before the next periodic refresh (3 s): carrier-up announces at once.
    let lag = announced.map(|a| a - up).unwrap_or_default();
    assert!(
        lag < Duration::from_millis(1500),
        "re-announced only after {lag:?}"
    );
    s.settle_on(secs(5), "the leader keeps the VIP", |i| i == leader)
        .await;
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s07_address_deleted_restored() {
    let Some(mut s) = Scenario::new("s07_address_deleted_restored", &[V4], secs(60)).await else {
        return;
    };
    s.start_all();
    let leader = s.settle(SETTLE).await;
    sleep(secs(4)).await;
    let t0 = Instant::now();
    s.del_address(leader, V4).expect("ip addr del");
    let back = until(secs(5), || s.has_address(leader, V4).then(Instant::now)).await;
    assert!(back.is_some(), "the VIP was not restored within 5 s");
    let announced = s.announced_after(leader, V4, t0, secs(3)).await;
    let lag = announced.map(|a| a - t0);
    assert!(
        lag.is_some_and(|l| l < Duration::from_millis(1500)),
        "not re-announced promptly after the restore: {lag:?}"
    );
    s.settle_on(secs(5), "the leader keeps the VIP", |i| i == leader)
        .await;
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    s.finish().await;
}

// 8. A stale VIP on a follower (as a crash leaves it): removed at start.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s08_stale_vip_removed() {
    let Some(mut s) = Scenario::new("s08_stale_vip_removed", &[V4], secs(60)).await else {
        return;
    };
    s.start(0).expect("start");
    s.start(1).expect("start");
    let leader = s.settle(SETTLE).await;
    // Node 3 (not running yet) has the VIP, forever, as a crashed daemon
    // without lifetimes would leave it.
    s.add_stale_address(2, V4).expect("stale VIP");
    s.start(2).expect("start");
    let gone = until(secs(10), || (!s.has_address(2, V4)).then_some(())).await;
    assert!(
        gone.is_some(),
        "the stale VIP on node-3 was not removed within 10 s"
    );
    let t = Instant::now();
    s.settle_on(secs(5), "the leader keeps the VIP", |i| i == leader)
        .await;
    sleep(secs(1)).await;
    let seen = s.seen();
    let after = seen.timeline_between(V4, t, Instant::now());
    assert!(
        after.iter().all(|st| st.macs == [s.mac(leader)]),
        "after the removal only the leader answers: {after:?}"
    );
    s.finish().await;
}

// 9. `kubectl cordon` of the leader: the VIP moves. With every node
// cordoned, the VIP stays owned.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s09_cordon_leader() {
    let Some(mut s) = Scenario::new("s09_cordon_leader", &[V4], secs(60)).await else {
        return;
    };
    s.start_all();
    let old = s.settle(SETTLE).await;
    sleep(secs(1)).await;
    s.cordon(old, true).await.expect("cordon");
    s.settle_on(secs(15), "the VIP moves off the cordoned node", |i| {
        i != old
    })
    .await;
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s09_all_cordoned_stays_owned() {
    let Some(mut s) = Scenario::new("s09_all_cordoned_stays_owned", &[V4], secs(60)).await else {
        return;
    };
    s.start_all();
    let leader = s.settle(SETTLE).await;
    // The followers first, then the leader: no uncordoned node is left
    // to take over.
    for i in (0..3).filter(|&i| i != leader) {
        s.cordon(i, true).await.expect("cordon");
    }
    sleep(secs(1)).await;
    let t0 = Instant::now();
    s.cordon(leader, true).await.expect("cordon");
    sleep(LEASE + secs(3)).await;
    let end = Instant::now();
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    let silence = seen.longest_silence(V4, t0, end);
    assert!(
        silence < secs(1),
        "with every node cordoned the VIP went unanswered for {silence:?}"
    );
    assert!(s.settled().is_some(), "the VIP is not owned at the end");
    s.finish().await;
}

// 10. A foreign host adds the VIP and announces it: detected, counted,
// logged; the defence stays bounded.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_foreign_claim() {
    let Some(mut s) = Scenario::new("s10_foreign_claim", &[V4], secs(60)).await else {
        return;
    };
    s.start_all();
    let leader = s.settle(SETTLE).await;
    sleep(secs(4)).await; // past the takeover burst
    let foreign = foreign_host(s.nodes.len());
    let foreign_mac = s.foreign().interface().expect("foreign MAC").mac;
    let t0 = Instant::now();
    // 5 s of claims: its kernel answers every probe round too (100/s).
    let claim = s
        .foreign_claim(V4, 20, Duration::from_millis(250))
        .expect("foreign claim");
    let sent = claim.join().expect("claimant").expect("claims sent");
    assert_eq!(sent, 20);
    let t1 = Instant::now();
    s.del_address(foreign, V4).expect("foreign leaves");
    let conflicts = s
        .metric(leader, "vip_conflicts_total")
        .expect("metrics")
        .unwrap_or(0.0);
    assert!(
        conflicts >= 1.0,
        "vip_conflicts_total = {conflicts} on the leader"
    );
    let log = std::fs::read_to_string(&s.nodes[leader].log).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains(&foreign_mac.to_string()) && l.contains("WARN")),
        "the leader's log does not name the foreign MAC {foreign_mac} in a warning"
    );
    let seen = s.seen();
    let defended = seen.announcements(V4, s.mac(leader), t0, t1 + secs(1));
    let span = (t1 + secs(1) - t0).as_secs_f64();
    // Defence at most once a second, refresh every 3 s, 2 frames each
    // (request and reply forms): ~1 frame/s... allow 4 frames/s + 8.
    let bound = (4.0 * span) as usize + 8;
    assert!(
        defended.len() <= bound,
        "the leader sent {} announcements in {span:.1} s of conflict (bound {bound}): a storm",
        defended.len()
    );
    assert!(
        !defended.is_empty(),
        "the leader did not defend (no announcement) during the conflict"
    );
    // The observer saw the two owners (its overlap detection works), and
    // the only second owner was the foreign host.
    let overlaps = seen.overlaps();
    assert!(
        !overlaps.is_empty(),
        "the observer never saw the foreign host and the leader answer together"
    );
    for (round, macs) in overlaps {
        assert!(
            macs.contains(&foreign_mac),
            "overlap without the foreign host at +{:?}: {macs:?}",
            round.sent - s.started
        );
    }
    // Afterwards the leader alone, and the client resolves it.
    s.settle_on(secs(5), "the leader keeps the VIP", |i| i == leader)
        .await;
    s.finish().await;
}

// 11. Rolling restart of all three nodes: each restart moves the VIP at
// most once.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_rolling_restart() {
    let Some(mut s) = Scenario::new("s11_rolling_restart", &[V4], secs(120)).await else {
        return;
    };
    s.start_all();
    s.settle(SETTLE).await;
    for i in 0..3 {
        let t0 = Instant::now();
        s.signal(i, libc::SIGTERM).expect("SIGTERM");
        let code = s.wait(i, secs(5)).await.expect("exit");
        assert_eq!(code, Some(0));
        sleep(secs(1)).await;
        s.start(i).expect("restart");
        s.settle(secs(15)).await;
        sleep(secs(3)).await;
        let seen = s.seen();
        let moves = seen.moves(V4, t0, Instant::now());
        assert!(
            moves <= 1,
            "restarting {} moved the VIP {moves} times",
            s.nodes[i].name
        );
    }
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    s.finish().await;
}

// 12. A kube-vip-style record already in the Lease (another
// implementation's holder, 15 s) is respected until it expires.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_foreign_lease_respected() {
    let Some(mut s) = Scenario::new("s12_foreign_lease_respected", &[V4], secs(90)).await else {
        return;
    };
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string();
    let lease = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "plndr-cp-lock", "namespace": "kube-system"},
        "spec": {
            "holderIdentity": "kube-vip-node",
            "leaseDurationSeconds": 15,
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": 3,
        },
    });
    s.api()
        .store()
        .create(Kind::Lease, "kube-system", lease)
        .expect("the kube-vip record");
    let t0 = Instant::now();
    s.start_all();
    let taken = until(secs(30), || {
        s.holder()
            .filter(|h| h != "kube-vip-node")
            .map(|_| Instant::now())
    })
    .await
    .expect("the record expired and someone took the Lease within 30 s");
    // The managers first saw the record after t0: nobody may take it
    // before 15 s have passed (1 s of slack for polling).
    assert!(
        taken - t0 >= secs(14),
        "the kube-vip holder's lease was taken after only {:?}",
        taken - t0
    );
    let seen = s.seen();
    let before = seen.timeline_between(V4, t0, taken - Duration::from_millis(500));
    assert!(
        before.iter().all(|st| st.macs.is_empty()),
        "a node answered for the VIP while kube-vip held the Lease: {before:?}"
    );
    s.settle(secs(10)).await;
    let w = s.lease_writes();
    let last = w.last().expect("writes");
    assert!(
        last.transitions >= 4,
        "leaseTransitions not carried on: {w:?}"
    );
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    s.finish().await;
}
