//! The health monitor: a task that checks the local control plane every
//! period and turns the answers into a verdict with thresholds.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use super::HealthPolicy;
use crate::health::HealthProbe;

/// The health monitor's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HealthState {
    Unknown,
    Healthy,
    Unhealthy(String),
}

pub(super) fn spawn_health_monitor(
    probe: Arc<dyn HealthProbe>,
    policy: HealthPolicy,
) -> watch::Receiver<HealthState> {
    let (tx, rx) = watch::channel(HealthState::Unknown);
    tokio::spawn(async move {
        let (mut fails, mut oks) = (0u32, 0u32);
        loop {
            let started = Instant::now();
            let result = match tokio::time::timeout(policy.timeout, probe.check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.reason),
                Err(_) => Err(format!("no answer within {:?}", policy.timeout)),
            };
            let current = tx.borrow().clone();
            let next = match result {
                Ok(()) => {
                    fails = 0;
                    oks = oks.saturating_add(1);
                    match current {
                        HealthState::Unknown => HealthState::Healthy,
                        HealthState::Unhealthy(_) if oks >= policy.success_threshold => {
                            HealthState::Healthy
                        }
                        other => other,
                    }
                }
                Err(reason) => {
                    oks = 0;
                    fails = fails.saturating_add(1);
                    match current {
                        HealthState::Unknown => HealthState::Unhealthy(reason),
                        HealthState::Healthy if fails >= policy.failure_threshold => {
                            HealthState::Unhealthy(reason)
                        }
                        other => other,
                    }
                }
            };
            tx.send_if_modified(|cur| {
                if *cur != next {
                    *cur = next;
                    true
                } else {
                    false
                }
            });
            tokio::select! {
                () = tokio::time::sleep_until(started + policy.period) => {}
                () = tx.closed() => return,
            }
        }
    });
    rx
}
