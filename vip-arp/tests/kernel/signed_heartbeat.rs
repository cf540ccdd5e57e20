//! Signed (version 2) heartbeats against real kernels on a bridged
//! segment: a signed beat is heard; forged, tampered, version 1 and
//! other-election frames from a third host are dropped and counted by
//! reason and sender.

use std::time::Duration;

use vip_arp::wire::heartbeat::HeartbeatRepr;
use vip_arp::wire::heartbeat_v2::{BeatKey, SignedRepr};
use vip_arp::{PacketAnnouncer, SignedHeartbeats};
use vip_core::{DropKind, DropSnapshot, HeardBeat, Heartbeat, HeartbeatKey, election_scope};
use vip_testkit::netns::Segment;

use crate::{BODY_LIMIT, PROMPTLY, ip};

const INTERVAL: Duration = Duration::from_millis(10);

fn key() -> HeartbeatKey {
    HeartbeatKey::new([0x42; 32])
}

fn beat(election: vip_core::ElectionId, sequence: u64) -> Heartbeat {
    Heartbeat {
        election,
        holder: "node-a".into(),
        term: 5,
        sequence,
        version: 0x5eed,
        interval: INTERVAL,
    }
}

#[test]
fn signed_beats_are_heard_and_forgeries_dropped_and_counted() {
    crate::needs_root!("signed_beats_are_heard_and_forgeries_dropped_and_counted");
    let seg = Segment::new("vsh", 3).unwrap();
    let (leader, follower, forger) = (&seg.hosts[0], &seg.hosts[1], &seg.hosts[2]);
    let (leader_if, follower_if, forger_if) = (
        leader.interface().unwrap(),
        follower.interface().unwrap(),
        forger.interface().unwrap(),
    );
    let vips = [ip("198.18.30.10")];
    let ours = election_scope("uid-of-this-cluster", "kube-system/plndr-cp-lock", &vips).unwrap();
    let theirs = election_scope("uid-of-another", "kube-system/plndr-cp-lock", &vips).unwrap();

    // The follower subscribes, then hears the leader's 10 signed beats and
    // the forger's frames, and reports what it heard and dropped.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
    let listener = follower
        .ns
        .spawn(BODY_LIMIT, move || async move {
            let channel = SignedHeartbeats::new();
            let mut sub = channel.subscribe(&follower_if, &key(), ours).unwrap();
            ready_tx.send(()).unwrap();
            sent_rx.await.unwrap();
            // Until the forger's last frame is counted (bounded).
            let deadline = tokio::time::Instant::now() + PROMPTLY;
            while sub.drops.snapshot().total.total() < 5 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut heard: Vec<HeardBeat> = Vec::new();
            while let Ok(b) = sub.beats.try_recv() {
                heard.push(b);
            }
            (heard, sub.drops.snapshot())
        })
        .unwrap();
    ready_rx.recv_timeout(PROMPTLY).unwrap();

    let send_if = leader_if.clone();
    leader
        .ns
        .run(BODY_LIMIT, move || async move {
            let channel = SignedHeartbeats::new();
            let mut template = channel.template(&send_if, &beat(ours, 0), &key()).unwrap();
            for seq in 0..10 {
                channel
                    .send_beat(&send_if, &mut template, seq)
                    .await
                    .unwrap();
                tokio::time::sleep(INTERVAL).await;
            }
        })
        .unwrap();

    // The forger: a frame signed with its own key under our key id, a
    // captured beat with its term altered, a version 1 frame, and a beat
    // of another cluster's election (signed with our key, even).
    let (leader_mac, forger_mac) = (leader_if.mac, forger_if.mac);
    let frames = {
        let ours_key = BeatKey::new(&key());
        let wrong = BeatKey::new(&HeartbeatKey::new([0x66; 32]));
        let b = beat(ours, 100);
        let mut forged = SignedRepr::new(forger_if.mac, &b, &wrong)
            .unwrap()
            .to_vec(&wrong)
            .unwrap();
        forged[20..24].copy_from_slice(&ours_key.id().to_be_bytes());
        let mut tampered = SignedRepr::new(forger_if.mac, &b, &ours_key)
            .unwrap()
            .to_vec(&ours_key)
            .unwrap();
        tampered[35] = 0xff; // term 255
        let v1 = HeartbeatRepr::new(forger_if.mac, &b)
            .unwrap()
            .to_vec()
            .unwrap();
        let other_b = beat(theirs, 100);
        let other = SignedRepr::new(forger_if.mac, &other_b, &ours_key)
            .unwrap()
            .to_vec(&ours_key)
            .unwrap();
        // Not from the forger's MAC: a spoofed copy of the leader's source.
        let mut spoofed = SignedRepr::new(leader_mac, &b, &wrong)
            .unwrap()
            .to_vec(&wrong)
            .unwrap();
        spoofed[20..24].copy_from_slice(&ours_key.id().to_be_bytes());
        vec![forged, tampered, v1, other, spoofed]
    };
    forger
        .ns
        .run(BODY_LIMIT, move || async move {
            let announcer = PacketAnnouncer::new();
            for frame in frames {
                announcer.send_frame(&forger_if, &frame).await.unwrap();
            }
        })
        .unwrap();
    sent_tx.send(()).unwrap();
    let (heard, drops): (Vec<HeardBeat>, DropSnapshot) = listener.join().unwrap();

    let seqs: Vec<u64> = heard.iter().map(|h| h.beat.sequence).collect();
    assert_eq!(
        seqs,
        (0..10).collect::<Vec<_>>(),
        "only the leader's signed beats"
    );
    assert!(
        heard
            .iter()
            .all(|h| h.from == leader_if.mac && h.beat.term == 5)
    );
    let forger_counts = drops.by_sender[&forger_mac];
    assert_eq!(forger_counts.get(DropKind::BadCode), 2, "{drops:?}");
    assert_eq!(forger_counts.get(DropKind::OldVersion), 1, "{drops:?}");
    assert_eq!(forger_counts.get(DropKind::OtherElection), 1, "{drops:?}");
    // The spoofed frame is counted under the MAC it claims.
    assert_eq!(drops.by_sender[&leader_if.mac].get(DropKind::BadCode), 1);
    assert_eq!(drops.total.total(), 5, "{drops:?}");
}

/// The controller's dedicated sender: the sink is opened on the leader's
/// namespace thread and driven from a plain thread (no runtime, no
/// future); the follower verifies every beat, and a new term through the
/// same sink is signed afresh.
#[test]
fn a_beat_sink_sends_from_a_plain_thread() {
    crate::needs_root!("a_beat_sink_sends_from_a_plain_thread");
    let seg = Segment::new("vbs", 2).unwrap();
    let (leader, follower) = (&seg.hosts[0], &seg.hosts[1]);
    let (leader_if, follower_if) = (leader.interface().unwrap(), follower.interface().unwrap());
    let ours = election_scope("uid", "kube-system/plndr-cp-lock", &[ip("198.18.31.10")]).unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let listener = follower
        .ns
        .spawn(BODY_LIMIT, move || async move {
            let channel = SignedHeartbeats::new();
            let mut sub = channel.subscribe(&follower_if, &key(), ours).unwrap();
            ready_tx.send(()).unwrap();
            let mut heard = Vec::new();
            while heard.len() < 6 {
                match tokio::time::timeout(PROMPTLY, sub.beats.recv()).await {
                    Ok(Some(b)) => heard.push((b.beat.term, b.beat.sequence)),
                    _ => break,
                }
            }
            (heard, sub.drops.snapshot().total.total())
        })
        .unwrap();
    ready_rx.recv_timeout(PROMPTLY).unwrap();
    let send_if = leader_if.clone();
    leader
        .ns
        .run(BODY_LIMIT, move || async move {
            use vip_core::HeartbeatChannel;
            let channel = SignedHeartbeats::new();
            let mut sink = channel
                .beat_sink(&send_if, &key())
                .unwrap()
                .expect("the packet channel offers a sink");
            std::thread::spawn(move || {
                let mut b = beat(ours, 0);
                for seq in 0..6 {
                    if seq == 3 {
                        b.term = 6;
                    }
                    b.sequence = seq % 3;
                    sink.send(&b).unwrap();
                    std::thread::sleep(INTERVAL);
                }
            })
            .join()
            .unwrap();
        })
        .unwrap();
    let (heard, dropped) = listener.join().unwrap();
    assert_eq!(heard, [(5, 0), (5, 1), (5, 2), (6, 0), (6, 1), (6, 2)]);
    assert_eq!(dropped, 0);
}
