//! Heartbeats only the cluster can speak (issue 20), with real `vip
//! manager` processes in network namespaces and the lab's spare "foreign"
//! host as the adversary: it captures the leader's frames, then sends one
//! forged frame (the documented version 1 layout, term 1000), a stream of
//! forged frames at 100/s for 5 s (version 1, version 2 under a key it
//! made up, captured frames with their term raised), and finally replays
//! the frames it captured. Asserted from the observer (the VIP never moves
//! and is always answered by the leader) and from the nodes' kernels (the
//! leader alone holds it at every sample), no yield or step-down counted,
//! every kind of forgery counted by the followers; then fast failover
//! still works: the leader's crash is taken over fast. And a second vip
//! cluster on the same bridge (default Lease name, its own API-server
//! stand-in and VIP, a higher term) moves nothing in the first.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use vip_arp::{HeartbeatTap, PacketHeartbeats, SignedHeartbeats};
use vip_core::{ElectionId, Heartbeat, HeartbeatKey, version_tag};
use vip_e2e::Scenario;
use vip_testkit::lab::{SECOND_NODE, VIP};

const V4: IpAddr = IpAddr::V4(VIP);
const SETTLE: Duration = Duration::from_secs(15);
/// A fast takeover, with room for a loaded CI machine; a lease expiry
/// takes 5 s.
const FAST: Duration = Duration::from_millis(1500);
/// Where a version 2 frame keeps its term (after the Ethernet header,
/// magic, version, flags, key id and election).
const TERM_AT: usize = 32;

fn counter(s: &Scenario, i: usize, name: &str) -> f64 {
    s.metric(i, name)
        .unwrap_or_else(|e| panic!("{}: metrics of node {i}: {e}", s.name))
        .unwrap_or(0.0)
}

fn dropped(s: &Scenario, i: usize, reason: &str) -> f64 {
    counter(
        s,
        i,
        &format!("vip_heartbeat_frames_dropped_total{{reason=\"{reason}\"}}"),
    )
}

/// The forged beat: `holder` claims term 1000 of the default lock.
fn forged(election: ElectionId, holder: &str, sequence: u64) -> Heartbeat {
    Heartbeat {
        election,
        holder: holder.into(),
        term: 1000,
        sequence,
        version: version_tag("forged"),
        interval: Duration::from_millis(10),
    }
}

/// While `attack` runs, assert every 50 ms from the nodes' kernels that
/// node `old` alone holds the VIP.
async fn hold_while<T>(s: &Scenario, old: usize, attack: vip_testkit::netns::NsThread<T>) -> T {
    let limit = Instant::now() + Duration::from_secs(30);
    while !attack.is_finished() && Instant::now() < limit {
        assert_eq!(
            s.vip_holders(),
            [old],
            "{}: the VIP left the leader's kernel during the attack",
            s.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    attack.join().expect("the adversary finished")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a01_forged_and_replayed_heartbeats_move_nothing() {
    let name = "a01_forged_and_replayed_heartbeats_move_nothing";
    let Some(mut s) = Scenario::new(name, &[V4], Duration::from_secs(90)).await else {
        return;
    };
    s.start_all();
    let old = s.settle(SETTLE).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let follower = (old + 1) % 3;
    let follower_name = s.nodes[follower].name.clone();
    let foreign = s.foreign();
    let iface = foreign.interface().expect("the foreign host's interface");
    let limit = Duration::from_secs(30);

    // 1. Capture one second of the leader's genuine frames.
    let tap_iface = iface.clone();
    let captured: Vec<Vec<u8>> = foreign
        .ns
        .run(limit, move || async move {
            let tap = HeartbeatTap::open(&tap_iface).expect("tap");
            let end = tokio::time::Instant::now() + Duration::from_secs(1);
            let mut frames = vec![];
            while let Ok(Ok(f)) = tokio::time::timeout_at(end, tap.recv()).await {
                frames.push(f);
            }
            frames
        })
        .expect("capturing");
    assert!(
        captured.len() > 20,
        "{name}: captured only {} frames of the leader",
        captured.len()
    );
    let t0 = Instant::now();

    // 2. One forged frame, then 5 s of forgeries at 100/s.
    let (attack_iface, captures, who) = (iface.clone(), captured.clone(), follower_name.clone());
    let attack = foreign
        .ns
        .spawn(limit, move || async move {
            let v1 = PacketHeartbeats::new();
            let v2 = SignedHeartbeats::new();
            let lock = ElectionId::of("kube-system/plndr-cp-lock");
            v1.send(&attack_iface, &forged(lock, "intruder", 0))
                .await
                .expect("one forged frame");
            tokio::time::sleep(Duration::from_millis(500)).await;
            let tap = HeartbeatTap::open(&attack_iface).expect("tap");
            let made_up = HeartbeatKey::new([0x66; 32]);
            let election = ElectionId(u64::from_be_bytes(
                captures[0][24..32].try_into().expect("8 bytes"),
            ));
            let mut template = v2
                .template(&attack_iface, &forged(election, &who, 0), &made_up)
                .expect("a frame");
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for i in 0..500u64 {
                tick.tick().await;
                match i % 3 {
                    0 => v1
                        .send(&attack_iface, &forged(lock, &who, i))
                        .await
                        .expect("v1"),
                    1 => v2
                        .send_beat(&attack_iface, &mut template, i)
                        .await
                        .expect("v2 under a made-up key"),
                    _ => {
                        // A capture with its term raised, sent from the
                        // forger's own MAC: the code no longer matches.
                        let mut f = captures[i as usize % captures.len()].clone();
                        f[TERM_AT] = 0x7f;
                        f[6..12].copy_from_slice(&attack_iface.mac.0);
                        tap.send(&f).await.expect("a tampered capture");
                    }
                }
            }
        })
        .expect("the forger");
    hold_while(&s, old, attack).await;

    // 3. The captured frames replayed, at 100/s.
    let (replay_iface, captures) = (iface.clone(), captured.clone());
    let replay = foreign
        .ns
        .spawn(limit, move || async move {
            let tap = HeartbeatTap::open(&replay_iface).expect("tap");
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for f in captures.iter().chain(captures.iter().rev()) {
                tick.tick().await;
                tap.send(f).await.expect("a replayed frame");
            }
        })
        .expect("the replayer");
    hold_while(&s, old, replay).await;

    let seen = s.seen();
    s.assert_no_overlap(&seen);
    assert_eq!(
        seen.moves(V4, t0, Instant::now()),
        0,
        "{name}: the VIP moved"
    );
    assert_eq!(s.settled(), Some(old), "{name}: the leader changed");
    for i in 0..3 {
        assert_eq!(
            counter(&s, i, "vip_yields_total"),
            0.0,
            "{name}: node {i} yielded"
        );
    }
    for i in (0..3).filter(|&i| i != old) {
        for reason in ["old_version", "unknown_key", "bad_code", "replay"] {
            assert!(
                dropped(&s, i, reason) >= 1.0,
                "{name}: node {i} counted no {reason} drop"
            );
        }
    }

    // 4. Fast failover still works: the leader's host dies.
    crash_is_taken_over_fast(&mut s, old).await;
    s.finish().await;
}

/// `leaseTransitions` of the lab's Lease.
fn our_term(s: &Scenario) -> u32 {
    let lease = s
        .api()
        .store()
        .get(
            vip_testkit::testapi::Kind::Lease,
            "kube-system",
            "plndr-cp-lock",
        )
        .expect("our Lease");
    lease["spec"]["leaseTransitions"].as_u64().unwrap_or(0) as u32
}

/// Node crash of the leader `old`: another node takes over fast.
async fn crash_is_taken_over_fast(s: &mut Scenario, old: usize) {
    let t1 = Instant::now();
    s.set_link(old, false).expect("port down");
    s.kill(old).await.expect("SIGKILL");
    let new = s
        .settle_on(Duration::from_secs(10), "another node takes over", |i| {
            i != old
        })
        .await;
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    let first = seen.first_answer(V4, s.mac(new), t1).expect("new answers");
    assert!(
        first - t1 <= FAST,
        "{}: taken {:?} after the crash",
        s.name,
        first - t1
    );
    assert_eq!(counter(s, new, "vip_fast_takeovers_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a02_a_second_cluster_with_the_default_lease_on_the_same_bridge() {
    let name = "a02_a_second_cluster_with_the_default_lease_on_the_same_bridge";
    let Some(mut s) = Scenario::new(name, &[V4], Duration::from_secs(90)).await else {
        return;
    };
    s.start_all();
    let old = s.settle(SETTLE).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ours = our_term(&s);
    let their_vip: IpAddr = "198.18.0.101".parse().expect("an address");
    let t0 = Instant::now();
    let second = s
        .start_second_cluster(their_vip, ours + 50)
        .await
        .expect("the second cluster");
    assert_eq!(second.holder().as_deref(), Some(SECOND_NODE));
    assert!(second.term().expect("its term") > u64::from(ours));
    // Eight seconds of both clusters beating on one bridge.
    let end = Instant::now() + Duration::from_secs(8);
    while Instant::now() < end {
        assert_eq!(s.vip_holders(), [old], "{name}: our VIP left the leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = s.seen();
    s.assert_no_overlap(&seen);
    assert_eq!(
        seen.moves(V4, t0, Instant::now()),
        0,
        "{name}: our VIP moved"
    );
    assert_eq!(s.settled(), Some(old));
    assert_eq!(our_term(&s), ours, "{name}: our term moved");
    for i in 0..3 {
        assert_eq!(
            counter(&s, i, "vip_yields_total"),
            0.0,
            "{name}: node {i} yielded"
        );
        assert!(
            dropped(&s, i, "other_election") >= 1.0,
            "{name}: node {i} never heard the other cluster"
        );
    }
    assert_eq!(second.holder().as_deref(), Some(SECOND_NODE));
    crash_is_taken_over_fast(&mut s, old).await;
    drop(second);
    s.finish().await;
}
