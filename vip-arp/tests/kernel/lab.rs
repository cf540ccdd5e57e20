//! The lab itself: names, clean-up, running code inside a namespace.

use std::time::Duration;

use vip_testkit::netns::{LabError, Netns, Segment, wait_until};

use crate::needs_root;

fn namespaces() -> String {
    std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[test]
fn namespaces_are_unique_and_removed_on_drop() {
    needs_root!("namespaces_are_unique_and_removed_on_drop");
    let a = Netns::new("vlab").unwrap();
    let b = Netns::new("vlab").unwrap();
    assert_ne!(a.name(), b.name());
    let (na, nb) = (a.name().to_string(), b.name().to_string());
    assert!(namespaces().contains(&na));
    drop(a);
    drop(b);
    let list = namespaces();
    assert!(
        !list
            .lines()
            .any(|l| l.split_whitespace().next() == Some(na.as_str())),
        "{list}"
    );
    assert!(
        !list
            .lines()
            .any(|l| l.split_whitespace().next() == Some(nb.as_str())),
        "{list}"
    );
    assert!(matches!(Netns::new("has space"), Err(LabError::Prefix(_))));
    assert!(matches!(Netns::new("waytoolong"), Err(LabError::Prefix(_))));
}

#[test]
fn code_runs_inside_the_namespace() {
    needs_root!("code_runs_inside_the_namespace");
    let ns = Netns::new("vlab").unwrap();
    ns.add_stub("marker0").unwrap();
    // Inside, the namespace's own interfaces are visible (through the
    // thread's view of /proc: /proc/self is the main thread's namespace).
    let names = ns
        .run(Duration::from_secs(10), || async {
            std::fs::read_to_string("/proc/thread-self/net/dev").unwrap()
        })
        .unwrap();
    assert!(names.contains("marker0"), "{names}");
    let outside = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
    assert!(!outside.contains("marker0"), "{outside}");
    let e = ns
        .run(Duration::from_millis(100), || async {
            tokio::time::sleep(Duration::from_secs(10)).await;
        })
        .unwrap_err();
    assert!(matches!(e, LabError::Timeout { .. }), "{e}");
    let e = ns
        .run(Duration::from_secs(10), || async { panic!("boom") })
        .unwrap_err();
    assert!(
        matches!(&e, LabError::Panicked { message, .. } if message == "boom"),
        "{e}"
    );
    let e = ns.ip(&["link", "show", "dev", "nosuch0"]).unwrap_err();
    assert!(matches!(e, LabError::Command { .. }), "{e}");
}

#[test]
fn segment_hosts_reach_each_other() {
    needs_root!("segment_hosts_reach_each_other");
    let seg = Segment::new("vseg", 2).unwrap();
    seg.hosts[0]
        .ns
        .add_address("eth0", "198.18.9.1/24")
        .unwrap();
    seg.hosts[1]
        .ns
        .add_address("eth0", "198.18.9.2/24")
        .unwrap();
    let a = seg.hosts[0].interface().unwrap();
    let b = seg.hosts[1].interface().unwrap();
    assert_ne!(a.mac, b.mac);
    // A UDP datagram makes host 0's kernel resolve host 1 over ARP.
    seg.hosts[0]
        .ns
        .run(Duration::from_secs(10), || async {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            s.send_to(b"x", "198.18.9.2:9").unwrap();
        })
        .unwrap();
    let shell = seg.hosts[0].ns.shell();
    wait_until(
        "host 1 resolved over the bridge",
        Duration::from_secs(5),
        || Ok(shell.neighbour("eth0", "198.18.9.2".parse().unwrap())? == Some(b.mac)),
    )
    .unwrap();
    let e = wait_until("never", Duration::from_millis(50), || Ok(false)).unwrap_err();
    assert!(matches!(e, LabError::WaitTimeout { .. }));
}
