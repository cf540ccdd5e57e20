//! The Lease backend against the API-server stand-in.

mod common;

use std::time::Duration;

use common::{backend, eventually, held, lab};
use serde_json::json;
use vip_core::{BackendError, LockBackend};
use vip_testkit::testapi::{Fault, Kind};

const T: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_conflict_and_not_found() {
    let api = lab(1, &["node-a", "node-b"]).await;
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

    api.store()
        .delete(Kind::Lease, "kube-system", "plndr-cp-lock", None)
        .unwrap();
    assert!(matches!(
        a.update(&v2, &held("node-a", 0)).await,
        Err(BackendError::NotFound)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_electors_race_and_exactly_one_wins() {
    let users = ["node-a", "node-b", "node-c"];
    let api = lab(3, &users).await;
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

    // Twenty read-then-update races.
    for round in 0..20u32 {
        let reads = futures::future::join_all(electors.iter().map(|b| b.get())).await;
        let reads: Vec<_> = reads.into_iter().map(|r| r.unwrap().unwrap()).collect();
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
        let now = electors[0].get().await.unwrap().unwrap();
        assert_eq!(now.record.holder_identity, winners[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_keeps_metadata_others_wrote_and_fields_round_trip() {
    let api = lab(1, &["node-a"]).await;
    let a = backend(&api, 0, "node-a", T).await;
    let v1 = a.create(&held("node-a", 0)).await.unwrap();
    api.store()
        .patch(
            Kind::Lease,
            "kube-system",
            "plndr-cp-lock",
            &json!({"metadata": {"labels": {"team": "infra"}, "annotations": {"note": "kept"}}, "spec": {"preferredHolder": "node-z", "strategy": "OldestEmulationVersion"}}),
            false,
        )
        .unwrap();
    let current = a.get().await.unwrap().unwrap();
    assert_ne!(current.version, v1.version);
    let record = held("node-a", 0);
    let v3 = a.update(&current, &record).await.unwrap();
    assert_eq!(v3.record, record, "times survive at microsecond precision");
    let obj = api
        .store()
        .get(Kind::Lease, "kube-system", "plndr-cp-lock")
        .unwrap();
    assert_eq!(obj["metadata"]["labels"]["team"], "infra");
    assert_eq!(obj["metadata"]["annotations"]["note"], "kept");
    assert_eq!(obj["spec"]["preferredHolder"], "node-z");
    assert_eq!(
        obj["spec"]["renewTime"],
        common::micro_text(record.renew_time.unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_and_release_at_the_record_level() {
    let api = lab(1, &["node-a", "node-b"]).await;
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
        .store()
        .get(Kind::Lease, "kube-system", "plndr-cp-lock")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_delivers_a_release_without_polling() {
    let api = lab(2, &["node-a", "node-b"]).await;
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
    let gets_before = api.counters().by_user("node-b", "get", "leases");
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
    assert_eq!(
        api.counters().by_user("node-b", "get", "leases"),
        gets_before,
        "delivered by the watch, not by a GET"
    );
    assert_eq!(
        api.counters().by_user("node-b", "watch", "leases"),
        1,
        "one watch stream carried it"
    );
    // Deleting the lease shows as None.
    api.store()
        .delete(Kind::Lease, "kube-system", "plndr-cp-lock", None)
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(Option::is_none))
        .await
        .expect("delete seen")
        .unwrap();
    // The watch task ends with its receiver.
    drop(rx);
    let watches = api.counters().by_user("node-b", "watch", "leases");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.counters().by_user("node-b", "watch", "leases"), watches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_recovers_from_410_gone_by_listing_again() {
    let api = lab(2, &["node-a", "node-b"]).await;
    let a = backend(&api, 0, "node-a", T).await;
    let b = backend(&api, 1, "node-b", T).await;
    let mut v = a.create(&held("node-a", 0)).await.unwrap();
    let mut rx = b.watch().unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|r| r.is_some()))
        .await
        .unwrap()
        .unwrap();
    let gets = api.counters().by_user("node-b", "get", "leases");
    // Cut b's watch (its stream ends), move on without b, and trim the
    // history so b's resume point is gone.
    api.listener(1).set_fault(Some(Fault::Refuse));
    for _ in 0..5 {
        v = a.update(&v, &held("node-a", 0)).await.unwrap();
    }
    api.store().compact();
    api.listener(1).set_fault(None);
    tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|r| r.as_ref() == Some(&v)),
    )
    .await
    .expect("b catches up after 410")
    .unwrap();
    assert!(
        api.counters().by_user("node-b", "get", "leases") > gets,
        "the 410 made b list again"
    );
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
