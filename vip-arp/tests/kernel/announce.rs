//! The announcer, prober and conflict listener against real kernels on a
//! bridged segment.

use std::time::Duration;

use vip_arp::PacketAnnouncer;
use vip_core::Announcer;
use vip_testkit::netns::{Segment, wait_until};

use crate::{BODY_LIMIT, PROMPTLY, STALE_MAC, ip, needs_root};

/// node = host 0, observer = host 1.
fn segment(prefix: &str, v4_net: &str, v6_net: &str) -> Segment {
    let seg = Segment::new(prefix, 2).unwrap();
    for (i, host) in seg.hosts.iter().enumerate() {
        host.ns
            .add_address("eth0", &format!("{v4_net}.{}/24", i + 1))
            .unwrap();
        host.ns
            .add_address("eth0", &format!("{v6_net}::{}/64", i + 1))
            .unwrap();
    }
    seg
}

fn announcement_moves_observer_entry(prefix: &str, v4_net: &str, v6_net: &str, vip: &str) {
    let seg = segment(prefix, v4_net, v6_net);
    let (node, observer) = (&seg.hosts[0], &seg.hosts[1]);
    let node_if = node.interface().unwrap();
    let vip = ip(vip);
    // The observer believes the VIP is elsewhere.
    observer.ns.seed_neighbour("eth0", vip, STALE_MAC).unwrap();
    assert_eq!(observer.ns.neighbour("eth0", vip).unwrap(), Some(STALE_MAC));
    node.ns
        .add_address(
            "eth0",
            &format!("{vip}/{}", if vip.is_ipv4() { 32 } else { 128 }),
        )
        .unwrap();

    let iface = node_if.clone();
    node.ns
        .run(BODY_LIMIT, move || async move {
            PacketAnnouncer::new().announce(&iface, vip).await
        })
        .unwrap()
        .unwrap();
    let shell = observer.ns.shell();
    wait_until("observer's entry points at the node", PROMPTLY, || {
        Ok(shell.neighbour("eth0", vip)? == Some(node_if.mac))
    })
    .unwrap();
}

#[test]
fn gratuitous_arp_updates_observer_neighbour_entry() {
    needs_root!("gratuitous_arp_updates_observer_neighbour_entry");
    announcement_moves_observer_entry("vga", "198.18.10", "2001:db8:10", "198.18.10.100");
}

#[test]
fn unsolicited_na_updates_observer_neighbour_entry() {
    needs_root!("unsolicited_na_updates_observer_neighbour_entry");
    announcement_moves_observer_entry("vna", "198.18.11", "2001:db8:11", "2001:db8:11::100");
}

#[test]
fn each_announcement_form_alone_moves_the_entry() {
    needs_root!("each_announcement_form_alone_moves_the_entry");
    // The request and the reply forms each update a kernel's entry: send
    // them one at a time.
    use vip_arp::wire::arp::ArpRepr;
    let seg = segment("vgf", "198.18.12", "2001:db8:12");
    let (node, observer) = (&seg.hosts[0], &seg.hosts[1]);
    let node_if = node.interface().unwrap();
    let vip = ip("198.18.12.100");
    for reply in [false, true] {
        observer.ns.seed_neighbour("eth0", vip, STALE_MAC).unwrap();
        let frame = if reply {
            ArpRepr::announce_reply(node_if.mac, "198.18.12.100".parse().unwrap())
        } else {
            ArpRepr::announce_request(node_if.mac, "198.18.12.100".parse().unwrap())
        }
        .to_bytes();
        let iface = node_if.clone();
        node.ns
            .run(BODY_LIMIT, move || async move {
                PacketAnnouncer::new().send_frame(&iface, &frame).await
            })
            .unwrap()
            .unwrap();
        let shell = observer.ns.shell();
        wait_until(
            if reply { "reply form" } else { "request form" },
            PROMPTLY,
            || Ok(shell.neighbour("eth0", vip)? == Some(node_if.mac)),
        )
        .unwrap();
    }
}

#[test]
fn prober_finds_holder_and_nothing_for_a_free_address() {
    needs_root!("prober_finds_holder_and_nothing_for_a_free_address");
    let seg = segment("vpr", "198.18.13", "2001:db8:13");
    let (node, holder) = (&seg.hosts[0], &seg.hosts[1]);
    let node_if = node.interface().unwrap();
    let holder_mac = holder.interface().unwrap().mac;
    let found = node
        .ns
        .run(BODY_LIMIT, move || async move {
            let a = PacketAnnouncer::new();
            let t = Duration::from_millis(1500);
            (
                a.probe(&node_if, ip("198.18.13.2"), t).await.unwrap(),
                a.probe(&node_if, ip("198.18.13.77"), t).await.unwrap(),
                a.probe(&node_if, ip("2001:db8:13::2"), t).await.unwrap(),
                a.probe(&node_if, ip("2001:db8:13::77"), t).await.unwrap(),
                // The node's own address is not "someone else".
                a.probe(&node_if, ip("198.18.13.1"), Duration::from_millis(300))
                    .await
                    .unwrap(),
            )
        })
        .unwrap();
    assert_eq!(found.0, Some(holder_mac), "IPv4 holder");
    assert_eq!(found.1, None, "free IPv4 address");
    assert_eq!(found.2, Some(holder_mac), "IPv6 holder");
    assert_eq!(found.3, None, "free IPv6 address");
    assert_eq!(found.4, None, "own address");
}

#[test]
fn listener_reports_foreign_claims_only() {
    needs_root!("listener_reports_foreign_claims_only");
    let seg = segment("vcl", "198.18.14", "2001:db8:14");
    let (node, intruder) = (&seg.hosts[0], &seg.hosts[1]);
    let node_if = node.interface().unwrap();
    let intruder_if = intruder.interface().unwrap();
    let vips = [ip("198.18.14.100"), ip("2001:db8:14::100")];
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let listening = node
        .ns
        .spawn(BODY_LIMIT, move || async move {
            let a = PacketAnnouncer::new();
            let mut conflicts = a.subscribe_conflicts(&node_if, &vips).await.unwrap();
            // Our own announcements are not conflicts.
            for v in vips {
                a.announce(&node_if, v).await.unwrap();
            }
            let own = tokio::time::timeout(Duration::from_millis(300), conflicts.recv()).await;
            ready_tx.send(()).unwrap();
            let mut seen = Vec::new();
            while seen.len() < 2 {
                match tokio::time::timeout(Duration::from_secs(10), conflicts.recv()).await {
                    Ok(Some(c)) if !seen.contains(&c) => seen.push(c),
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
            (own.is_ok(), seen)
        })
        .unwrap();
    ready_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let iface = intruder_if.clone();
    intruder
        .ns
        .run(BODY_LIMIT, move || async move {
            let a = PacketAnnouncer::new();
            for v in vips {
                a.announce(&iface, v).await.unwrap();
            }
        })
        .unwrap();
    let (own_reported, seen) = listening.join().unwrap();
    assert!(!own_reported, "own announcement reported as a conflict");
    for v in vips {
        assert!(
            seen.iter()
                .any(|c| c.address == v && c.mac == intruder_if.mac),
            "{v} not reported: {seen:?}"
        );
    }
}
