//! Replays the committed corpus of every fuzz target on stable.

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        body(&data);
        count += 1;
    }
    assert!(count >= 5, "{target}: only {count} corpus files");
}

#[test]
fn arp_parser_corpus() {
    replay("arp_parser", vip_fuzz::arp_parser);
}

#[test]
fn ndp_parser_corpus() {
    replay("ndp_parser", vip_fuzz::ndp_parser);
}

#[test]
fn builder_round_trip_corpus() {
    replay("builder_round_trip", vip_fuzz::builder_round_trip);
}

#[test]
fn heartbeat_parser_corpus() {
    replay("heartbeat_parser", vip_fuzz::heartbeat_parser);
}

#[test]
fn heartbeat_v2_corpus() {
    replay("heartbeat_v2", vip_fuzz::heartbeat_v2);
}

/// The seeds reach the accepted path: at least one verifies as it is.
#[test]
fn heartbeat_v2_corpus_holds_a_verifying_frame() {
    use vip_arp::wire::heartbeat_v2::{BeatKey, verify};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/heartbeat_v2");
    let key = BeatKey::new(&vip_core::HeartbeatKey::new(vip_fuzz::FUZZ_KEY));
    let verifying = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            let data = std::fs::read(e.as_ref().unwrap().path()).unwrap();
            verify(&data, &key, vip_fuzz::FUZZ_ELECTION).is_ok()
        })
        .count();
    assert!(verifying >= 1, "no seed verifies");
}
