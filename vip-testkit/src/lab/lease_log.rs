//! The Lease's story as the stand-in's store saw it: every write, with
//! its time, for the assertions of the e2e suite and the benchmark.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{LEASE, LabSetupError, other};
use crate::testapi::{Kind, Selectors, TestApi};

/// One write of the Lease, as the stand-in's store saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseWrite {
    /// When the store applied it (this process's clock).
    pub at: Instant,
    /// `spec.holderIdentity` after it (empty: released or deleted).
    pub holder: String,
    /// `spec.leaseTransitions` after it.
    pub transitions: u64,
}

#[allow(clippy::type_complexity)]
pub(super) fn record_lease_writes(
    api: &TestApi,
) -> Result<(Arc<Mutex<Vec<LeaseWrite>>>, tokio::task::JoinHandle<()>), LabSetupError> {
    let start = api
        .store()
        .watch(Kind::Lease, Some(LEASE.0), &Selectors::default(), None)
        .map_err(|s| other("watching the Lease", s))?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let push = {
        let log = log.clone();
        move |obj: &serde_json::Value| {
            if obj["metadata"]["name"] != LEASE.1 {
                return;
            }
            let w = LeaseWrite {
                at: Instant::now(),
                holder: obj["spec"]["holderIdentity"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                transitions: obj["spec"]["leaseTransitions"].as_u64().unwrap_or(0),
            };
            log.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(w);
        }
    };
    for (_, obj) in &start.initial {
        push(obj);
    }
    let mut live = start.live;
    let task = tokio::spawn(async move {
        loop {
            match live.recv().await {
                Ok(ev) if ev.kind == Kind::Lease => {
                    if ev.etype == crate::testapi::EventType::Deleted {
                        let mut obj = ev.object.clone();
                        obj["spec"]["holderIdentity"] = "".into();
                        push(&obj);
                    } else {
                        push(&ev.object);
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    Ok((log, task))
}
