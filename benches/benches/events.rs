//! What the event recorder costs the controller: its observer runs inline
//! in the controller's loop, so it must stay cheap even when the API
//! server hangs (the queue is full and every note is dropped and counted).
//!
//! Run: `cargo bench -p vip-benches --bench events`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vip_core::{ControllerEvent, Observer, StepDownReason};
use vip_lease::events::{EventCounts, EventsConfig, spawn_event_recorder};
use vip_lease::{ClusterAccess, LeaseName};
use vip_testkit::testapi::{Fault, TestApi, TestApiConfig};

fn events(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (_api, recorder, _task) = rt.block_on(async {
        let api = TestApi::start(TestApiConfig::default().tokens(["node-a"]))
            .await
            .unwrap();
        // A hung API server: the writer blocks on its first request and
        // the queue stays full.
        api.set_token_fault("node-a", Some(Fault::Stall));
        let access =
            ClusterAccess::from_kubeconfig_file(&api.kubeconfig_for(0, "node-a").unwrap(), None)
                .await
                .unwrap();
        let mut config = EventsConfig::new(LeaseName::default(), "node-a");
        config.queue = 1;
        config.request_timeout = Duration::from_secs(3600);
        let (recorder, task) =
            spawn_event_recorder(&access, config, Arc::new(EventCounts::default())).unwrap();
        for _ in 0..4 {
            recorder.on_event(&ControllerEvent::Acquired { new: true });
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (api, recorder, task)
    });
    let down = ControllerEvent::SteppedDown {
        reason: StepDownReason::Unhealthy,
        released: true,
    };
    let renewed = ControllerEvent::Renewed {
        latency: Duration::from_millis(3),
    };
    c.bench_function("events/observer_step_down_queue_full", |b| {
        b.iter(|| recorder.on_event(black_box(&down)))
    });
    c.bench_function("events/observer_renewal_ignored", |b| {
        b.iter(|| recorder.on_event(black_box(&renewed)))
    });
}

criterion_group!(benches, events);
criterion_main!(benches);
