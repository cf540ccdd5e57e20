//! The event recorder: Events on the Lease and on the Node with
//! client-go's fields, repeats aggregated into one Event (a series PATCH),
//! read back by field selector, on the stand-in and the real
//! kube-apiserver alike; and a hung API server that never blocks the
//! observer (drops are counted), stand-in-only (a stall is its fault
//! injection).

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{eventually, held, lab, lab_on, listed_events};
use serde_json::Value;
use vip_core::{ControllerEvent, LockBackend, Observer, StepDownReason};
use vip_lease::LeaseName;
use vip_lease::events::{EventCounts, EventsConfig, spawn_event_recorder};
use vip_testkit::api::Flavor;
use vip_testkit::testapi::{Fault, Kind};

on_both!(leadership_events_land_on_the_lease_and_the_node_and_repeats_aggregate);

async fn leadership_events_land_on_the_lease_and_the_node_and_repeats_aggregate(flavor: Flavor) {
    let Some(api) = lab_on(flavor, 1, &["node-a"]).await else {
        return;
    };
    let node = api.put_node("node-a", true, true, false).await.unwrap();
    let backend = common::backend(&api, 0, "node-a", Duration::from_secs(2)).await;
    backend.create(&held("node-a", 0)).await.unwrap();
    let lease = api
        .get(Kind::Lease, "kube-system", "plndr-cp-lock")
        .await
        .unwrap()
        .unwrap();
    let counts = Arc::new(EventCounts::default());
    let (recorder, task) = spawn_event_recorder(
        &common::access(&api, 0, "node-a").await,
        EventsConfig::new(LeaseName::default(), "node-a"),
        counts.clone(),
    )
    .unwrap();
    recorder.on_event(&ControllerEvent::Acquired { new: true });
    recorder.on_event(&ControllerEvent::SteppedDown {
        reason: StepDownReason::Unhealthy,
        released: true,
    });
    recorder.on_event(&ControllerEvent::SteppedDown {
        reason: StepDownReason::Unhealthy,
        released: true,
    });
    drop(recorder);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the writer drains its queue and ends")
        .unwrap();
    // Three notes, each on two objects; the repeat is a patch.
    assert_eq!(counts.written.load(Ordering::Relaxed), 6);
    assert_eq!(counts.failed.load(Ordering::Relaxed), 0);

    let on_lease = listed_events(&api, "kube-system", "involvedObject.name=plndr-cp-lock").await;
    assert_eq!(on_lease.len(), 2, "{on_lease:#?}");
    let acquired = &on_lease[0];
    assert_eq!(acquired["reason"], "LeaderAcquired");
    assert_eq!(acquired["message"], "node-a became leader");
    assert_eq!(acquired["type"], "Normal");
    assert_eq!(acquired["count"], 1);
    assert_eq!(acquired["reportingComponent"], "vip");
    assert_eq!(acquired["reportingInstance"], "node-a");
    assert_eq!(acquired["source"]["component"], "vip");
    assert_eq!(acquired["source"]["host"], "node-a");
    let involved = &acquired["involvedObject"];
    assert_eq!(involved["kind"], "Lease");
    assert_eq!(involved["apiVersion"], "coordination.k8s.io/v1");
    assert_eq!(involved["namespace"], "kube-system");
    assert_eq!(involved["uid"], lease["metadata"]["uid"]);
    let name = acquired["metadata"]["name"].as_str().unwrap();
    let (object, hex) = name.rsplit_once('.').unwrap();
    assert_eq!(object, "plndr-cp-lock");
    assert_eq!(hex.len(), 16, "{name}");
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");

    let down = &on_lease[1];
    assert_eq!(down["reason"], "SteppedDownUnhealthy");
    assert_eq!(down["type"], "Warning");
    assert_eq!(
        down["message"],
        "node-a stepped down: leadership ended: local API server unhealthy; lease released"
    );
    assert_eq!(down["count"], 2, "the repeat bumped the count");
    assert!(down["lastTimestamp"].as_str().unwrap() >= down["firstTimestamp"].as_str().unwrap());

    // The other field labels of Events select too; an unknown one is a
    // 400 naming it, on both servers.
    let warnings = listed_events(
        &api,
        "kube-system",
        "involvedObject.name=plndr-cp-lock,type=Warning,reason=SteppedDownUnhealthy",
    )
    .await;
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0]["metadata"]["name"], down["metadata"]["name"]);
    let bad = api
        .list(Kind::Event, "kube-system", "spec.colour=blue")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("400") && bad.contains("field label not supported: spec.colour"),
        "{bad}"
    );

    // The Node's Events live in `default`, about the cluster-scoped Node.
    let on_node = listed_events(
        &api,
        "default",
        "involvedObject.kind=Node,involvedObject.name=node-a",
    )
    .await;
    assert_eq!(on_node.len(), 2, "{on_node:#?}");
    assert_eq!(on_node[0]["involvedObject"]["uid"], node["metadata"]["uid"]);
    assert_eq!(on_node[0]["involvedObject"]["namespace"], Value::Null);
    assert_eq!(on_node[1]["count"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_api_server_never_blocks_the_observer_and_drops_are_counted() {
    let api = lab(1, &["node-a"]).await;
    api.set_token_fault("node-a", Some(Fault::Stall));
    let counts = Arc::new(EventCounts::default());
    let mut config = EventsConfig::new(LeaseName::default(), "node-a");
    config.queue = 4;
    config.request_timeout = Duration::from_secs(60);
    let (recorder, task) = spawn_event_recorder(
        &common::access(&api, 0, "node-a").await,
        config,
        counts.clone(),
    )
    .unwrap();
    // The first note is taken by the writer, which hangs on its first
    // request.
    recorder.on_event(&ControllerEvent::Acquired { new: true });
    eventually(
        "the writer's first request",
        Duration::from_secs(10),
        || api.counters().by_user("node-a", "get", "leases") >= 1,
    )
    .await;
    // Four fit in the queue, the rest are dropped; none of it waits (the
    // observer is synchronous: it returns, or this test hangs).
    for _ in 0..10 {
        recorder.on_event(&ControllerEvent::SteppedDown {
            reason: StepDownReason::CarrierDown,
            released: false,
        });
    }
    assert_eq!(counts.dropped.load(Ordering::Relaxed), 6);
    assert_eq!(counts.written.load(Ordering::Relaxed), 0);
    task.abort();
}
