//! The Lease backend against the API-server stand-in and the real
//! kube-apiserver: the same bodies run on both (`<test>::stand_in`,
//! `<test>::real`); stalls, refused connections by token and injected
//! errors are the stand-in's fault injection, so those tests are
//! stand-in-only.

mod common;

use std::time::Duration;

use common::{backend, eventually, held, lab, lab_on};
use serde_json::json;
use vip_core::{BackendError, LockBackend};
use vip_testkit::api::Flavor;
use vip_testkit::testapi::{Fault, Kind};

const T: Duration = Duration::from_millis(500);
const LEASE: &str = "plndr-cp-lock";

on_both!(
    create_update_conflict_and_gone,
    three_electors_race_and_exactly_one_wins,
    replace_keeps_metadata_others_wrote_and_fields_round_trip,
    expiry_and_release_at_the_record_level,
    watch_delivers_a_release_without_polling,
    watch_recovers_from_410_gone_by_listing_again,
);

async fn create_update_conflict_and_gone(flavor: Flavor) {
    let Some(api) = lab_on(flavor, 1, &["node-a", "node-b"]).await else {
        return;
    };
    let a = backend(&api, 0, "node-a", T).await;
    let b = backend(&api, 0, "node-b", T).await;
    assert_eq!(a.describe(), "lease kube-system/plndr-cp-lock");
    assert!(a.get().await.unwrap().is_none());

    let v1 = a.create(&held("node-a", 0)).await.unwrap();
    assert!(matches!(
        b.create(&held("node-b", 0)).await,
        Err(BackendError::AlreadyExists)
    ));
    let seen = b.get().await.unwrap().unwrap();
    assert_eq!(seen, v1);

    let v2 = a.update(&v1, &held("node-a", 0)).await.unwrap();
    assert_ne!(v2.version, v1.version);
    // b still names v1: the API server refuses with 409 Conflict.
    assert!(matches!(
        b.update(&v1, &held("node-b", 1)).await,
        Err(BackendError::Conflict)
    ));

    api.delete(Kind::Lease, "kube-system", LEASE).await.unwrap();
    // A replace naming a version of a Lease that is gone: its precondition
    // fails, 409 (not 404) on the real server and the stand-in alike.
    let r = a.update(&v2, &held("node-a", 0)).await;
    assert!(matches!(r, Err(BackendError::Conflict)), "{r:?}");
}

async fn three_electors_race_and_exactly_one_wins(flavor: Flavor) {
    let users = ["node-a", "node-b", "node-c"];
    let Some(api) = lab_on(flavor, 3, &users).await else {
        return;
    };
    let mut electors = Vec::new();
    for (i, u) in users.iter().enumerate() {
        electors.push(backend(&api, i, u, Duration::from_secs(2)).await);
    }
    // Creation race.
    let results = futures::future::join_all(
        electors
            .iter()
            .zip(users)
            .map(|(b, u)| async move { b.create(&held(u, 0)).await }),
    )
    .await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let lost = results
        .iter()
        .filter(|r| matches!(r, Err(BackendError::AlreadyExists)))
        .count();
    assert_eq!((won, lost), (1, 2), "{results:?}");
    let mut last = results.into_iter().find_map(Result::ok).unwrap();

    // Twenty read-then-update races.
    for round in 0..20u32 {
        // Each elector reads through its own server: every one must see
        // the last winner's version (bounded re-reads, so a lagging server
        // shows as a failure here rather than as a hang).
        let mut reads = Vec::new();
        for b in &electors {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let mut cur = b.get().await.unwrap().unwrap();
            while cur.version != last.version {
                assert!(tokio::time::Instant::now() < deadline, "reads converge");
                tokio::time::sleep(Duration::from_millis(10)).await;
                cur = b.get().await.unwrap().unwrap();
            }
            reads.push(cur);
        }
        assert!(
            reads.windows(2).all(|w| w[0] == w[1]),
            "all read the same version"
        );
        let results = futures::future::join_all(
            electors
                .iter()
                .zip(&reads)
                .zip(users)
                .map(|((b, cur), u)| async move { (u, b.update(cur, &held(u, round + 1)).await) }),
        )
        .await;
        let winners: Vec<_> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(u, _)| *u)
            .collect();
        let conflicts = results
            .iter()
            .filter(|(_, r)| matches!(r, Err(BackendError::Conflict)))
            .count();
        assert_eq!(
            (winners.len(), conflicts),
            (1, 2),
            "round {round}: {results:?}"
        );
        last = results.into_iter().find_map(|(_, r)| r.ok()).unwrap();
        assert_eq!(last.record.holder_identity, winners[0]);
        let now = electors[0].get().await.unwrap().unwrap();
        assert_eq!(now.version, last.version, "a GET reads the last write");
    }
}

async fn replace_keeps_metadata_others_wrote_and_fields_round_trip(flavor: Flavor) {
    let Some(api) = lab_on(flavor, 1, &["node-a"]).await else {
        return;
    };
    let a = backend(&api, 0, "node-a", T).await;
    let v1 = a.create(&held("node-a", 0)).await.unwrap();
    api.merge_patch(
        Kind::Lease,
        "kube-system",
        LEASE,
        &json!({"metadata": {"labels": {"team": "infra"}, "annotations": {"note": "kept"}}, "spec": {"preferredHolder": "node-z", "strategy": "OldestEmulationVersion"}}),
    )
    .await
    .unwrap();
    let current = a.get().await.unwrap().unwrap();
    assert_ne!(current.version, v1.version);
    let record = held("node-a", 0);
    let v3 = a.update(&current, &record).await.unwrap();
    assert_eq!(v3.record, record, "times survive at microsecond precision");
    let obj = api
        .get(Kind::Lease, "kube-system", LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(obj["metadata"]["labels"]["team"], "infra");
    assert_eq!(obj["metadata"]["annotations"]["note"], "kept");
    // The real server drops the CoordinatedLeaderElection fields (its
    // feature gate is off by default); the stand-in does the same.
    assert_eq!(obj["spec"]["preferredHolder"], serde_json::Value::Null);
    assert_eq!(obj["spec"]["strategy"], serde_json::Value::Null);
    assert_eq!(
        obj["spec"]["renewTime"],
        common::micro_text(record.renew_time.unwrap())
    );
}

async fn expiry_and_release_at_the_record_level(flavor: Flavor) {
    let Some(api) = lab_on(flavor, 1, &["node-a", "node-b"]).await else {
        return;
    };
    let a = backend(&api, 0, "node-a", T).await;
    let b = backend(&api, 0, "node-b", T).await;
    let v = a.create(&held("node-a", 0)).await.unwrap();
    // Release as client-go does: empty holder, duration 1 s, same transitions.
    let release = common::released(0);
    let released = a.update(&v, &release).await.unwrap();
    let seen = b.get().await.unwrap().unwrap();
    assert!(seen.record.is_released());
    assert_eq!(seen.record.lease_duration_seconds, 1);
    let obj = api
        .get(Kind::Lease, "kube-system", LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        obj["spec"]["holderIdentity"], "",
        "an empty holder is written, not omitted"
    );
    // b takes the released lease; a different holder counts a transition.
    let taken = b.update(&released, &held("node-b", 1)).await.unwrap();
    assert_eq!(taken.record.lease_transitions, 1);
    // a, still naming the released version, cannot renew any more (expired
    // leadership is seen as a conflict at the record level).
    assert!(matches!(
        a.update(&released, &held("node-a", 0)).await,
        Err(BackendError::Conflict)
    ));
}

async fn watch_delivers_a_release_without_polling(flavor: Flavor) {
    let Some(api) = lab_on(flavor, 2, &["node-a", "node-b"]).await else {
        return;
    };
    let a = backend(&api, 0, "node-a", T).await;
    let b = backend(&api, 1, "node-b", T).await;
    let v = a.create(&held("node-a", 0)).await.unwrap();
    let mut rx = b.watch().expect("the lease backend watches");
    tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|r| r.as_ref() == Some(&v)),
    )
    .await
    .expect("initial state")
    .unwrap();
    let count = |verb: &str| api.counters().map(|c| c.by_user("node-b", verb, "leases"));
    let gets_before = count("get");
    let mut release = held("", 0);
    release.lease_duration_seconds = 1;
    let sent = tokio::time::Instant::now();
    let released = a.update(&v, &release).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|r| r.as_ref() == Some(&released)),
    )
    .await
    .expect("the watch delivers the release")
    .unwrap();
    eprintln!(
        "release seen by the watch {:?} after it was sent",
        sent.elapsed()
    );
    // Request counts are the stand-in's only.
    assert_eq!(
        count("get"),
        gets_before,
        "delivered by the watch, not by a GET"
    );
    if let Some(watches) = count("watch") {
        assert_eq!(watches, 1, "one watch stream carried it");
    }
    // Deleting the lease shows as None.
    api.delete(Kind::Lease, "kube-system", LEASE).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(Option::is_none))
        .await
        .expect("delete seen")
        .unwrap();
    // The watch task ends with its receiver.
    drop(rx);
    let watches = count("watch");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count("watch"), watches);
}

async fn watch_recovers_from_410_gone_by_listing_again(flavor: Flavor) {
    let Some(mut api) = lab_on(flavor, 2, &["node-a", "node-b"]).await else {
        return;
    };
    let a = backend(&api, 0, "node-a", T).await;
    let b = backend(&api, 1, "node-b", Duration::from_secs(2)).await;
    let mut v = a.create(&held("node-a", 0)).await.unwrap();
    let mut rx = b.watch().unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|r| r.is_some()))
        .await
        .unwrap()
        .unwrap();
    let lists = api
        .counters()
        .map(|c| c.by_user("node-b", "list", "leases"));
    // Cut b's server (its watch stream ends), move on without b, and drop
    // the history so b's resume point is gone: the stand-in trims its
    // history; the real etcd is compacted, and the real server b talks to
    // restarts with only the current state in its watch cache.
    api.cut(1).await.unwrap();
    for _ in 0..5 {
        v = a.update(&v, &held("node-a", 0)).await.unwrap();
    }
    api.compact().await.unwrap();
    api.heal(1).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(15),
        rx.wait_for(|r| r.as_ref() == Some(&v)),
    )
    .await
    .expect("b catches up after 410")
    .unwrap();
    if let (Some(before), Some(counters)) = (lists, api.counters()) {
        assert!(
            counters.by_user("node-b", "list", "leases") > before,
            "the 410 made b list again"
        );
    }
    // And it keeps following.
    let v2 = a.update(&v, &held("node-a", 0)).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|r| r.as_ref() == Some(&v2)),
    )
    .await
    .unwrap()
    .unwrap();
}

// Fault injection (stalls, refusals by token, injected error codes and
// latency) is the stand-in's: these run against it only.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_under_a_stall() {
    let api = lab(1, &["node-a"]).await;
    let a = backend(&api, 0, "node-a", Duration::from_millis(300)).await;
    a.create(&held("node-a", 0)).await.unwrap();
    api.listener(0).set_fault(Some(Fault::Stall));
    let started = tokio::time::Instant::now();
    let r = a.get().await;
    assert!(
        matches!(r, Err(BackendError::Timeout(d)) if d == Duration::from_millis(300)),
        "{r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by the request timeout"
    );
    api.listener(0).set_fault(None);
    assert!(
        a.get().await.unwrap().is_some(),
        "works again once the stall is lifted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_client_fails_while_the_others_work() {
    let users = ["node-a", "node-b", "node-c"];
    let api = lab(3, &users).await;
    let mut bs = Vec::new();
    for (i, u) in users.iter().enumerate() {
        bs.push(backend(&api, i, u, Duration::from_millis(400)).await);
    }
    let v = bs[0].create(&held("node-a", 0)).await.unwrap();
    // node-c's token is black-holed (through any listener): timeouts.
    api.set_token_fault("node-c", Some(Fault::Stall));
    assert!(matches!(bs[2].get().await, Err(BackendError::Timeout(_))));
    assert!(matches!(
        bs[2].update(&v, &held("node-c", 1)).await,
        Err(BackendError::Timeout(_))
    ));
    let v = bs[0].update(&v, &held("node-a", 0)).await.unwrap();
    assert_eq!(bs[1].get().await.unwrap().unwrap(), v);
    api.set_token_fault("node-c", None);
    // node-b's local API server refuses connections: transport errors.
    api.listener(1).set_fault(Some(Fault::Refuse));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = bs[1].get().await;
    assert!(matches!(r, Err(BackendError::Transport { .. })), "{r:?}");
    assert_eq!(bs[2].get().await.unwrap().unwrap(), v, "node-c is back");
    api.listener(1).set_fault(None);
    eventually("node-b reconnects", Duration::from_secs(5), || true).await;
    let mut ok = false;
    for _ in 0..50 {
        if bs[1].get().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "node-b works again once its API server listens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_errors_surface_without_hidden_retries() {
    let api = lab(1, &["node-a"]).await;
    let a = backend(&api, 0, "node-a", T).await;
    let v = a.create(&held("node-a", 0)).await.unwrap();
    for code in [500u16, 429, 503] {
        api.set_token_fault("node-a", Some(Fault::Error { code }));
        let before = api.counters().by_user("node-a", "update", "leases");
        let r = a.update(&v, &held("node-a", 0)).await;
        assert!(
            matches!(&r, Err(BackendError::Api { code: c, .. }) if *c == code),
            "{r:?}"
        );
        assert_eq!(
            api.counters().by_user("node-a", "update", "leases"),
            before + 1,
            "exactly one request"
        );
    }
    api.set_token_fault("node-a", Some(Fault::Latency { ms: 700 }));
    assert!(
        matches!(a.get().await, Err(BackendError::Timeout(_))),
        "latency beyond the bound times out"
    );
    api.set_token_fault("node-a", Some(Fault::Latency { ms: 50 }));
    assert!(a.get().await.is_ok(), "small latency is fine");
}
