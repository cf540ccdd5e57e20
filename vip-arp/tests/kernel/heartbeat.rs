//! The heartbeat channel against real kernels on a bridged segment: who
//! hears what, and a `tc` filter that drops heartbeats while ARP passes.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use vip_arp::wire::heartbeat::HeartbeatRepr;
use vip_arp::{PacketAnnouncer, PacketHeartbeats};
use vip_core::{
    AnnounceError, Announcer, ElectionId, HeardBeat, Heartbeat, HeartbeatChannel, HeartbeatError,
    Interface,
};
use vip_testkit::netns::{Host, NsThread, Segment, drop_privileges_of_this_thread, wait_until};

use crate::{BODY_LIMIT, PROMPTLY, ip, needs_root};

const INTERVAL: Duration = Duration::from_millis(10);

fn election() -> ElectionId {
    ElectionId::of("kube-system/plndr-cp-lock")
}

fn beat(holder: &str, sequence: u64) -> Heartbeat {
    Heartbeat {
        election: election(),
        holder: holder.into(),
        term: 5,
        sequence,
        version: 0x5eed,
        interval: INTERVAL,
    }
}

/// Send heartbeats `sequences` of `holder` from `host`, one per interval,
/// on a channel opened for the purpose.
fn send_beats(host: &Host, holder: &'static str, sequences: Range<u64>) {
    let iface = host.interface().unwrap();
    host.ns
        .run(BODY_LIMIT, move || async move {
            let channel = PacketHeartbeats::new();
            for seq in sequences {
                channel.send(&iface, &beat(holder, seq)).await.unwrap();
                tokio::time::sleep(INTERVAL).await;
            }
        })
        .unwrap();
}

/// A subscription running in a host's namespace, recording every beat.
struct Listener {
    heard: Arc<Mutex<Vec<HeardBeat>>>,
    stop: oneshot::Sender<()>,
    thread: NsThread<()>,
}

impl Listener {
    /// Subscribe to `election` on `host` and return once subscribed.
    fn start(host: &Host, election: ElectionId) -> Self {
        let iface = host.interface().unwrap();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let record = heard.clone();
        let thread = host
            .ns
            .spawn(BODY_LIMIT, move || async move {
                let channel = PacketHeartbeats::new();
                let mut beats = channel.subscribe(&iface, election).await.unwrap();
                ready_tx.send(()).unwrap();
                loop {
                    tokio::select! {
                        beat = beats.recv() => match beat {
                            Some(b) => record.lock().unwrap().push(b),
                            None => break,
                        },
                        _ = &mut stopped => break,
                    }
                }
            })
            .unwrap();
        ready_rx.recv_timeout(PROMPTLY).unwrap();
        Self {
            heard,
            stop,
            thread,
        }
    }

    fn sequences(&self) -> Vec<u64> {
        let heard = self.heard.lock().unwrap();
        heard.iter().map(|h| h.beat.sequence).collect()
    }

    fn wait_for(&self, what: &str, sequence: u64) {
        wait_until(what, PROMPTLY, || Ok(self.sequences().contains(&sequence))).unwrap();
    }

    fn stop(self) -> Vec<HeardBeat> {
        let _ = self.stop.send(());
        self.thread.join().unwrap();
        self.heard.lock().unwrap().clone()
    }
}

#[test]
fn heartbeats_reach_the_other_hosts_of_their_election_only() {
    needs_root!("heartbeats_reach_the_other_hosts_of_their_election_only");
    let seg = Segment::new("vhb", 3).unwrap();
    // Layer 2 only: no IPv4 anywhere, IPv6 on the followers just to show
    // it does not matter.
    for (i, host) in seg.hosts.iter().enumerate().skip(1) {
        host.ns
            .add_address("eth0", &format!("2001:db8:20::{i}/64"))
            .unwrap();
    }
    let (leader, b, c) = (&seg.hosts[0], &seg.hosts[1], &seg.hosts[2]);
    let leader_if = leader.interface().unwrap();
    let on_b = Listener::start(b, election());
    let on_c = Listener::start(c, election());
    let other_election = Listener::start(b, ElectionId::of("kube-system/other-lock"));
    // On the sender's host: another socket, which the kernel shows the
    // sender's frames to as outgoing.
    let on_leader_host = Listener::start(leader, election());

    // The sender itself also subscribes, on the channel it sends with; at
    // the end, C reflects one of the sender's beats back onto the segment
    // (the sender's MAC as source, as a looping switch would).
    let iface = leader_if.clone();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let (reflected_tx, reflected_rx) = oneshot::channel::<()>();
    let sender = leader
        .ns
        .spawn(BODY_LIMIT, move || async move {
            let channel = PacketHeartbeats::new();
            let mut mine = channel.subscribe(&iface, election()).await.unwrap();
            for seq in 0..20 {
                channel.send(&iface, &beat("node-a", seq)).await.unwrap();
                tokio::time::sleep(INTERVAL).await;
            }
            sent_tx.send(()).unwrap();
            reflected_rx.await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut own = Vec::new();
            while let Ok(b) = mine.try_recv() {
                own.push(b);
            }
            own
        })
        .unwrap();
    sent_rx.recv_timeout(BODY_LIMIT).unwrap();
    on_b.wait_for("B heard the last beat", 19);
    on_c.wait_for("C heard the last beat", 19);
    let reflected = beat("node-a", 1000);
    let frame = HeartbeatRepr::new(leader_if.mac, &reflected)
        .unwrap()
        .to_vec()
        .unwrap();
    let c_if = c.interface().unwrap();
    c.ns.run(BODY_LIMIT, move || async move {
        PacketAnnouncer::new().send_frame(&c_if, &frame).await
    })
    .unwrap()
    .unwrap();
    on_b.wait_for("B heard the reflected beat", 1000);
    reflected_tx.send(()).unwrap();
    let own = sender.join().unwrap();

    assert!(own.is_empty(), "the sender heard itself: {own:?}");
    for (name, heard) in [("B", on_b.stop()), ("C", on_c.stop())] {
        let seqs: Vec<u64> = heard.iter().map(|h| h.beat.sequence).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{name}: {seqs:?}");
        for h in &heard {
            assert_eq!(h.from, leader_if.mac, "{name}");
            assert_eq!(h.beat, beat("node-a", h.beat.sequence), "{name}");
        }
    }
    assert_eq!(other_election.stop(), vec![], "another election's beats");
    assert_eq!(on_leader_host.stop(), vec![], "the sender's own frames");
}

#[test]
fn a_heartbeat_filter_drops_heartbeats_while_arp_passes() {
    needs_root!("a_heartbeat_filter_drops_heartbeats_while_arp_passes");
    let seg = Segment::new("vhf", 2).unwrap();
    for (i, host) in seg.hosts.iter().enumerate() {
        host.ns
            .add_address("eth0", &format!("198.18.21.{}/24", i + 1))
            .unwrap();
    }
    let (a, b) = (&seg.hosts[0], &seg.hosts[1]);
    let (a_if, b_if) = (a.interface().unwrap(), b.interface().unwrap());
    let on_a = Listener::start(a, election());
    let on_b = Listener::start(b, election());

    send_beats(a, "node-a", 0..10);
    on_b.wait_for("B hears A before the filter", 9);

    // The filter on B's cable, switch side: heartbeats stop in both
    // directions (and B's sends still succeed)...
    seg.drop_heartbeats(1).unwrap();
    seg.drop_heartbeats(1).unwrap(); // idempotent
    send_beats(a, "node-a", 100..110);
    send_beats(b, "node-b", 200..210);
    // ...while ARP crosses it both ways: each host's probe of the other's
    // address is answered (the answers follow the beats on the same path).
    let probe = |from: &Host, iface: Interface, target: &'static str| {
        from.ns
            .run(BODY_LIMIT, move || async move {
                let timeout = Duration::from_millis(1500);
                PacketAnnouncer::new()
                    .probe(&iface, ip(target), timeout)
                    .await
                    .unwrap()
            })
            .unwrap()
    };
    assert_eq!(probe(a, a_if.clone(), "198.18.21.2"), Some(b_if.mac));
    assert_eq!(probe(b, b_if.clone(), "198.18.21.1"), Some(a_if.mac));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !on_b.sequences().iter().any(|s| *s >= 100),
        "B heard A through the filter: {:?}",
        on_b.sequences()
    );
    assert_eq!(
        on_a.sequences(),
        Vec::<u64>::new(),
        "A heard B through the filter"
    );

    // Removed, they flow again.
    seg.pass_heartbeats(1).unwrap();
    send_beats(a, "node-a", 300..310);
    send_beats(b, "node-b", 400..410);
    on_b.wait_for("B hears A after the filter", 309);
    on_a.wait_for("A hears B after the filter", 409);
    assert!(
        b.ns.pass_heartbeats("eth0").is_err(),
        "nothing left to remove"
    );

    let heard_by_a = on_a.stop();
    assert!(
        heard_by_a
            .iter()
            .all(|h| h.from == b_if.mac && h.beat.holder == "node-b")
    );
    on_b.stop();
}

#[test]
fn a_heartbeat_filter_on_the_hosts_own_link_drops_both_ways() {
    needs_root!("a_heartbeat_filter_on_the_hosts_own_link_drops_both_ways");
    let seg = Segment::new("vhl", 2).unwrap();
    let (a, b) = (&seg.hosts[0], &seg.hosts[1]);
    let on_b = Listener::start(b, election());
    b.ns.drop_heartbeats("eth0").unwrap();
    send_beats(a, "node-a", 0..10);
    // B's own sends are refused by its egress filter.
    let b_if = b.interface().unwrap();
    let sent =
        b.ns.run(BODY_LIMIT, move || async move {
            PacketHeartbeats::new()
                .send(&b_if, &beat("node-b", 0))
                .await
        })
        .unwrap();
    assert!(
        matches!(sent, Err(HeartbeatError::Socket(AnnounceError::Io { .. }))),
        "{sent:?}"
    );
    b.ns.pass_heartbeats("eth0").unwrap();
    send_beats(a, "node-a", 10..20);
    on_b.wait_for("B hears A once the filter is gone", 19);
    let seqs = on_b
        .stop()
        .iter()
        .map(|h| h.beat.sequence)
        .collect::<Vec<_>>();
    assert!(
        seqs.iter().all(|s| *s >= 10),
        "heard through the filter: {seqs:?}"
    );
}

#[test]
fn heartbeats_need_cap_net_raw() {
    needs_root!("heartbeats_need_cap_net_raw");
    let seg = Segment::new("vhp", 1).unwrap();
    let iface = seg.hosts[0].interface().unwrap();
    let (sent, subscribed) = seg.hosts[0]
        .ns
        .run(BODY_LIMIT, move || async move {
            drop_privileges_of_this_thread().unwrap();
            let channel = PacketHeartbeats::new();
            (
                channel.send(&iface, &beat("node-a", 0)).await,
                channel.subscribe(&iface, election()).await.map(drop),
            )
        })
        .unwrap();
    for r in [sent, subscribed] {
        assert!(
            matches!(&r, Err(HeartbeatError::Socket(AnnounceError::PermissionDenied { interface })) if interface == "eth0"),
            "{r:?}"
        );
    }
}
