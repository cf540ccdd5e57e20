//! The netlink address manager against a real kernel.

use std::time::Duration;

use tokio::time::Instant;
use vip_arp::NetlinkAddressManager;
use vip_core::{AddressError, AddressManager, InterfaceSelector, LinkEvent, Presence, VipSpec};
use vip_testkit::netns::Netns;

use crate::{BODY_LIMIT, ip, needs_root, vip};

/// A namespace with a stub `eth0` holding the given addresses.
fn host(prefix: &str, addrs: &[&str]) -> Netns {
    let ns = Netns::new(prefix).unwrap();
    ns.add_stub("eth0").unwrap();
    for a in addrs {
        ns.add_address("eth0", a).unwrap();
    }
    ns
}

fn line_of(ns: &Netns, addr: &str) -> Option<String> {
    ns.address_lines("eth0")
        .unwrap()
        .into_iter()
        .find(|l| l.contains(&format!(" {addr}/")))
}

#[test]
fn add_and_remove_are_idempotent_with_preferred_lifetime_zero() {
    needs_root!("add_and_remove_are_idempotent_with_preferred_lifetime_zero");
    let ns = host("vad", &["198.18.20.1/24", "2001:db8:20::1/64"]);
    let shell = ns.shell();
    for v in ["198.18.20.100/32", "2001:db8:20::100/128"] {
        let v = vip(v);
        let shell = shell.clone();
        ns.run(BODY_LIMIT, move || async move {
            let m = NetlinkAddressManager::new().unwrap();
            let spec = VipSpec::single(v);
            let i = m
                .resolve(&InterfaceSelector::named("eth0").unwrap(), &spec)
                .await
                .unwrap();
            assert!(!m.is_present(&i, &v).await.unwrap());
            let life = Some(Duration::from_secs(30));
            assert_eq!(
                m.ensure_present(&i, &v, life).await.unwrap(),
                Presence::Added
            );
            assert_eq!(
                m.ensure_present(&i, &v, life).await.unwrap(),
                Presence::Refreshed
            );
            assert!(m.is_present(&i, &v).await.unwrap());
            let line = shell
                .address_lines("eth0")
                .unwrap()
                .into_iter()
                .find(|l| l.contains(&format!(" {}/", v.addr())))
                .unwrap();
            assert!(line.contains("preferred_lft 0sec"), "{line}");
            assert!(line.contains("deprecated"), "{line}");
            assert!(!line.contains("valid_lft forever"), "{line}");
            assert!(!line.contains("tentative"), "{line}");
            assert!(line.contains(&format!("/{}", v.prefix())), "{line}");
            assert!(m.ensure_absent(&i, &v).await.unwrap());
            assert!(!m.ensure_absent(&i, &v).await.unwrap());
            assert!(!m.is_present(&i, &v).await.unwrap());
            // Forever is possible too, still deprecated (the kernel then
            // reports both lifetimes as forever, with the deprecated flag).
            m.ensure_present(&i, &v, None).await.unwrap();
            let line = shell
                .address_lines("eth0")
                .unwrap()
                .into_iter()
                .find(|l| l.contains(&format!(" {}/", v.addr())))
                .unwrap();
            assert!(line.contains("valid_lft forever"), "{line}");
            assert!(line.contains("deprecated"), "{line}");
            assert!(m.ensure_absent(&i, &v).await.unwrap());
        })
        .unwrap();
    }
    assert_eq!(line_of(&ns, "198.18.20.100"), None);
}

#[test]
fn refuses_to_be_the_only_address_of_its_family() {
    needs_root!("refuses_to_be_the_only_address_of_its_family");
    // eth0 has only a link-local IPv6 address and a deprecated IPv4 one.
    let ns = host("vonly", &[]);
    ns.ip(&[
        "addr",
        "add",
        "198.18.21.5/32",
        "dev",
        "eth0",
        "preferred_lft",
        "0",
    ])
    .unwrap();
    ns.run(BODY_LIMIT, || async {
        let m = NetlinkAddressManager::new().unwrap();
        let spec: VipSpec = "198.18.21.100".parse().unwrap();
        let i = m
            .resolve(&InterfaceSelector::named("eth0").unwrap(), &spec)
            .await
            .unwrap();
        for v in [vip("198.18.21.100"), vip("2001:db8:21::100")] {
            let e = m
                .ensure_present(&i, &v, Some(Duration::from_secs(30)))
                .await
                .unwrap_err();
            assert!(
                matches!(e, AddressError::WouldBeOnlyAddress { .. }),
                "{v}: {e}"
            );
            assert!(e.to_string().contains("node IP"), "{e}");
            assert!(!m.is_present(&i, &v).await.unwrap());
        }
        // A missing interface is named as such.
        let gone = vip_core::Interface {
            name: "gone0".into(),
            index: 9999,
            mac: vip_core::MacAddr::ZERO,
        };
        let e = m
            .ensure_present(&gone, &vip("198.18.21.100"), None)
            .await
            .unwrap_err();
        assert!(matches!(e, AddressError::NoSuchInterface { .. }), "{e}");
        assert!(!m.ensure_absent(&gone, &vip("198.18.21.100")).await.unwrap());
        let e = m
            .resolve(&InterfaceSelector::named("gone0").unwrap(), &spec)
            .await
            .unwrap_err();
        assert!(matches!(e, AddressError::NoSuchInterface { .. }), "{e}");
    })
    .unwrap();
}

/// Adds VIPs with a 2 s lifetime at staggered sub-second offsets (the
/// kernel's lifetime worker runs on rounded timer boundaries, so the lag
/// depends on the phase), refreshes others, and measures when the kernel
/// deletes the unrefreshed ones. Prints each lag past the lifetime.
#[test]
fn unrefreshed_address_expires_and_refreshed_one_stays() {
    needs_root!("unrefreshed_address_expires_and_refreshed_one_stays");
    let ns = host("vlt", &["198.18.22.1/24", "2001:db8:22::1/64"]);
    const LIFE: Duration = Duration::from_secs(2);
    // (VIP, offset of its add in ms)
    let expiring = [
        ("198.18.22.110", 0),
        ("198.18.22.111", 100),
        ("198.18.22.112", 200),
        ("198.18.22.113", 300),
        ("198.18.22.114", 400),
        ("198.18.22.115", 500),
        ("198.18.22.116", 600),
        ("198.18.22.117", 700),
        ("198.18.22.118", 800),
        ("198.18.22.119", 900),
        ("2001:db8:22::110", 0),
        ("2001:db8:22::113", 300),
        ("2001:db8:22::116", 600),
        ("2001:db8:22::119", 900),
    ];
    let measured = ns
        .run(BODY_LIMIT, move || async move {
            let m = NetlinkAddressManager::new().unwrap();
            let spec: VipSpec = "198.18.22.100".parse().unwrap();
            let i = m
                .resolve(&InterfaceSelector::named("eth0").unwrap(), &spec)
                .await
                .unwrap();
            let kept = [vip("198.18.22.101"), vip("2001:db8:22::101")];
            let start = Instant::now();
            for v in &kept {
                m.ensure_present(&i, v, Some(LIFE)).await.unwrap();
            }
            let mut added: Vec<Option<Instant>> = vec![None; expiring.len()];
            let mut gone: Vec<Option<Duration>> = vec![None; expiring.len()];
            let mut last_refresh = start;
            // Bounded: last offset + lifetime + 3 s.
            while start.elapsed() < Duration::from_millis(900) + LIFE + Duration::from_secs(3) {
                for (k, (v, offset)) in expiring.iter().enumerate() {
                    let v = vip(v);
                    match added[k] {
                        None if start.elapsed() >= Duration::from_millis(*offset) => {
                            m.ensure_present(&i, &v, Some(LIFE)).await.unwrap();
                            added[k] = Some(Instant::now());
                        }
                        Some(at) if gone[k].is_none() && !m.is_present(&i, &v).await.unwrap() => {
                            gone[k] = Some(at.elapsed());
                        }
                        _ => {}
                    }
                }
                if last_refresh.elapsed() >= Duration::from_millis(500) {
                    for v in &kept {
                        assert_eq!(
                            m.ensure_present(&i, v, Some(LIFE)).await.unwrap(),
                            Presence::Refreshed,
                            "{v} vanished although refreshed"
                        );
                    }
                    last_refresh = Instant::now();
                }
                if gone.iter().all(Option::is_some) && start.elapsed() > LIFE * 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for v in &kept {
                assert!(m.is_present(&i, v).await.unwrap(), "{v} expired");
            }
            gone
        })
        .unwrap();
    for ((v, offset), gone) in expiring.iter().zip(measured) {
        let gone = gone.unwrap_or_else(|| panic!("{v} never expired"));
        eprintln!(
            "lifetime measurement: {v} (added at +{offset} ms, valid_lft 2 s) removed after {:.3} s: lag {:+.3} s",
            gone.as_secs_f64(),
            gone.as_secs_f64() - LIFE.as_secs_f64()
        );
        // Never before its lifetime (less the 10 ms polling and add time),
        // and within lifetime + 2 s (generous; the measured lag is below
        // 1 s).
        assert!(gone >= LIFE - Duration::from_millis(50), "{v}: {gone:?}");
        assert!(gone <= LIFE + Duration::from_secs(2), "{v}: {gone:?}");
    }
}

#[test]
fn external_delete_and_carrier_changes_raise_events() {
    needs_root!("external_delete_and_carrier_changes_raise_events");
    let ns = Netns::new("vev").unwrap();
    ns.add_veth("eth0", &ns, "peer0").unwrap();
    ns.set_up("peer0").unwrap();
    ns.set_up("eth0").unwrap();
    ns.add_address("eth0", "198.18.23.1/24").unwrap();
    ns.add_address("eth0", "2001:db8:23::1/64").unwrap();
    let shell = ns.shell();
    let delays = ns
        .run(BODY_LIMIT, move || async move {
            let m = NetlinkAddressManager::new().unwrap();
            let spec: VipSpec = "198.18.23.100,2001:db8:23::100".parse().unwrap();
            let i = m
                .resolve(&InterfaceSelector::named("eth0").unwrap(), &spec)
                .await
                .unwrap();
            for v in spec.addresses() {
                m.ensure_present(&i, v, Some(Duration::from_secs(60)))
                    .await
                    .unwrap();
            }
            let mut events = m.subscribe(&i, &spec).await.unwrap();
            let next = async |events: &mut tokio::sync::mpsc::Receiver<LinkEvent>| {
                tokio::time::timeout(Duration::from_secs(5), events.recv())
                    .await
                    .expect("no event within 5 s")
                    .expect("event stream closed")
            };
            let mut delays = Vec::new();
            for v in ["198.18.23.100/32", "2001:db8:23::100/128"] {
                let t = Instant::now();
                shell.del_address("eth0", v).unwrap();
                assert_eq!(
                    next(&mut events).await,
                    LinkEvent::AddressRemoved(ip(v.split('/').next().unwrap()))
                );
                delays.push(t.elapsed());
            }
            // Carrier loss: the peer goes down, eth0 stays administratively up.
            shell.set_down("peer0").unwrap();
            assert_eq!(next(&mut events).await, LinkEvent::CarrierDown);
            shell.set_up("peer0").unwrap();
            assert_eq!(next(&mut events).await, LinkEvent::CarrierUp);
            // Administrative down/up of eth0 itself.
            shell.set_down("eth0").unwrap();
            assert_eq!(next(&mut events).await, LinkEvent::CarrierDown);
            shell.set_up("eth0").unwrap();
            assert_eq!(next(&mut events).await, LinkEvent::CarrierUp);
            // Our own removal is not reported; the kernel's expiry is.
            // (IPv4 here: an administrative down flushes eth0's IPv6
            // addresses, kernel default keep_addr_on_down=0.)
            let v4 = spec.addresses()[0];
            m.ensure_present(&i, &v4, None).await.unwrap();
            m.ensure_absent(&i, &v4).await.unwrap();
            let t = Instant::now();
            m.ensure_present(&i, &v4, Some(Duration::from_secs(1)))
                .await
                .unwrap();
            assert_eq!(
                next(&mut events).await,
                LinkEvent::AddressRemoved(ip("198.18.23.100"))
            );
            // Had our own removal been reported, it would have come at once.
            assert!(
                t.elapsed() >= Duration::from_millis(900),
                "{:?}",
                t.elapsed()
            );
            delays
        })
        .unwrap();
    for d in delays {
        eprintln!(
            "event delivery: address removal reported {:.1} ms after starting `ip addr del`",
            d.as_secs_f64() * 1000.0
        );
        // Includes starting the `ip` process; the bound is generous.
        assert!(d < Duration::from_secs(1), "{d:?}");
    }
}

#[test]
fn auto_detection_picks_the_right_interface() {
    needs_root!("auto_detection_picks_the_right_interface");
    let ns = Netns::new("vauto").unwrap();
    ns.add_stub("eth0").unwrap();
    ns.add_stub("eth1").unwrap();
    ns.add_address("eth0", "198.18.24.1/24").unwrap();
    ns.add_address("eth0", "2001:db8:24::1/64").unwrap();
    ns.add_address("eth1", "198.18.25.1/24").unwrap();
    ns.ip(&[
        "route",
        "add",
        "default",
        "via",
        "198.18.25.254",
        "dev",
        "eth1",
    ])
    .unwrap();
    let shell = ns.shell();
    ns.run(BODY_LIMIT, move || async move {
        let m = NetlinkAddressManager::new().unwrap();
        let pick = async |spec: &str| {
            let spec: VipSpec = spec.parse().unwrap();
            m.resolve(&InterfaceSelector::Auto, &spec).await
        };
        assert_eq!(pick("198.18.24.100").await.unwrap().name, "eth0");
        assert_eq!(pick("2001:db8:24::100").await.unwrap().name, "eth0");
        assert_eq!(pick("198.18.25.100").await.unwrap().name, "eth1");
        assert_eq!(
            pick("198.18.24.100,2001:db8:24::100").await.unwrap().name,
            "eth0"
        );
        // No connected prefix: the default route's interface.
        assert_eq!(pick("198.19.9.9").await.unwrap().name, "eth1");
        // VIPs on two interfaces: ambiguous, both named.
        let e = pick("198.18.24.100,198.18.25.100").await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains("eth0") && text.contains("eth1"), "{text}");
        // No default route either: ambiguous, candidates listed.
        shell.ip(&["route", "del", "default"]).unwrap();
        let e = pick("198.19.9.9").await.unwrap_err();
        let AddressError::Ambiguous { candidates, .. } = &e else {
            panic!("{e}")
        };
        assert!(candidates.contains(&"eth0".to_string()), "{e}");
        assert!(candidates.contains(&"eth1".to_string()), "{e}");
        assert!(!candidates.contains(&"lo".to_string()), "{e}");
        // The resolved interface carries its index and MAC.
        let i = pick("198.18.24.100").await.unwrap();
        assert_eq!(i, shell.interface("eth0").unwrap());
    })
    .unwrap();
}

#[test]
fn missing_capabilities_are_named() {
    needs_root!("missing_capabilities_are_named");
    let ns = host("vperm", &["198.18.26.1/24"]);
    let iface = ns.interface("eth0").unwrap();
    let (announce, add, absent) = ns
        .run(BODY_LIMIT, move || async move {
            vip_testkit::netns::drop_privileges_of_this_thread().unwrap();
            use vip_core::Announcer;
            let announce = vip_arp::PacketAnnouncer::new()
                .announce(&iface, ip("198.18.26.100"))
                .await
                .unwrap_err();
            let m = NetlinkAddressManager::new().unwrap();
            let v = vip("198.18.26.100");
            let add = m
                .ensure_present(&iface, &v, Some(Duration::from_secs(5)))
                .await
                .unwrap_err();
            let absent = m
                .ensure_absent(&iface, &vip("198.18.26.1/24"))
                .await
                .unwrap_err();
            (announce, add, absent)
        })
        .unwrap();
    assert!(
        matches!(announce, vip_core::AnnounceError::PermissionDenied { .. }),
        "{announce}"
    );
    assert!(announce.to_string().contains("CAP_NET_RAW"), "{announce}");
    assert!(
        matches!(add, AddressError::PermissionDenied { .. }),
        "{add}"
    );
    assert!(add.to_string().contains("CAP_NET_ADMIN"), "{add}");
    assert!(
        matches!(absent, AddressError::PermissionDenied { .. }),
        "{absent}"
    );
    // Nothing was changed.
    assert!(line_of(&ns, "198.18.26.100").is_none());
    assert!(line_of(&ns, "198.18.26.1").is_some());
}
