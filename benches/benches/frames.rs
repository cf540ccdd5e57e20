//! Building and parsing the frames vip sends and reads.
//!
//! Run: `cargo bench -p vip-benches --bench frames`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vip_arp::wire::Claim;
use vip_arp::wire::arp::ArpRepr;
use vip_arp::wire::heartbeat::{HeartbeatRepr, MAX_FRAME_LEN};
use vip_arp::wire::ndp::{NdpRepr, NeighborAdvertRepr, NeighborSolicitRepr};
use vip_core::{ElectionId, Heartbeat, MacAddr};

const MAC: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);

fn frames(c: &mut Criterion) {
    let v4 = Ipv4Addr::new(198, 18, 0, 10);
    let v6: Ipv6Addr = "2001:db8::10".parse().unwrap();
    let arp = ArpRepr::announce_request(MAC, v4).to_bytes();
    let na = NdpRepr::Advert(NeighborAdvertRepr::unsolicited(MAC, v6));
    let na_bytes = na.to_vec();
    let mut buf = [0u8; 128];

    c.bench_function("build/arp_announcement_pair", |b| {
        b.iter(|| {
            let req = ArpRepr::announce_request(black_box(MAC), black_box(v4));
            let rep = ArpRepr::announce_reply(black_box(MAC), black_box(v4));
            (req.to_bytes(), rep.to_bytes())
        })
    });
    c.bench_function("build/unsolicited_na", |b| {
        b.iter(|| {
            let na = NdpRepr::Advert(NeighborAdvertRepr::unsolicited(
                black_box(MAC),
                black_box(v6),
            ));
            na.emit(&mut buf).unwrap();
            buf[56]
        })
    });
    c.bench_function("build/dad_ns", |b| {
        b.iter(|| {
            let ns = NdpRepr::Solicit(NeighborSolicitRepr::dad(black_box(MAC), black_box(v6)));
            ns.emit(&mut buf).unwrap();
            buf[56]
        })
    });
    c.bench_function("parse/arp", |b| {
        b.iter(|| ArpRepr::parse_bytes(black_box(&arp)).unwrap())
    });
    c.bench_function("parse/na_with_checksum", |b| {
        b.iter(|| NdpRepr::parse_bytes(black_box(&na_bytes)).unwrap())
    });
    c.bench_function("classify/claim_of_na", |b| {
        b.iter(|| Claim::from_frame(black_box(&na_bytes)))
    });
    let beat = Heartbeat {
        election: ElectionId::of("kube-system/plndr-cp-lock"),
        holder: "control-plane-1".into(),
        term: 3,
        sequence: 12_345,
        version: 0x1f2e_3d4c_5b6a_7988,
        interval: Duration::from_millis(10),
    };
    let mut hb_buf = [0u8; MAX_FRAME_LEN];
    c.bench_function("build/heartbeat", |b| {
        b.iter(|| {
            let repr = HeartbeatRepr::new(black_box(MAC), black_box(&beat)).unwrap();
            repr.emit(&mut hb_buf).unwrap()
        })
    });
    let hb_bytes = HeartbeatRepr::new(MAC, &beat).unwrap().to_vec().unwrap();
    c.bench_function("parse/heartbeat", |b| {
        b.iter(|| HeartbeatRepr::parse_bytes(black_box(&hb_bytes)).unwrap())
    });
    c.bench_function("parse/heartbeat_to_heard", |b| {
        b.iter(|| {
            HeartbeatRepr::parse_bytes(black_box(&hb_bytes))
                .unwrap()
                .to_heard()
        })
    });
    let noise = [0x42u8; 60];
    c.bench_function("classify/not_arp_or_ndp", |b| {
        b.iter(|| Claim::from_frame(black_box(&noise)))
    });
}

criterion_group!(benches, frames);
criterion_main!(benches);
