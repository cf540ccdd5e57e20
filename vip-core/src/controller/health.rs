//! Health: the monitor task that checks the local control plane every
//! period and turns the answers into a verdict with thresholds, and the
//! controller's [`HealthGate`] over that verdict (an unhealthy node does
//! not campaign, and hands the VIP over if it leads).

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

/// The controller's view of the verdict: the monitor's channel, and the
/// verdict last reported.
#[derive(Debug)]
pub(super) struct HealthGate {
    verdict: watch::Receiver<HealthState>,
    /// The monitor has not ended.
    pub(super) open: bool,
    reported: Option<bool>,
}

/// A verdict to report: the status's `healthy`, and the event when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HealthChange {
    pub(super) healthy: Option<bool>,
    /// Healthy now, and the failure when not.
    pub(super) event: Option<(bool, Option<String>)>,
}

impl HealthGate {
    pub(super) fn new(verdict: watch::Receiver<HealthState>) -> Self {
        Self {
            verdict,
            open: true,
            reported: None,
        }
    }

    /// Whether the verdict is healthy (unknown is not).
    pub(super) fn healthy(&self) -> bool {
        *self.verdict.borrow() == HealthState::Healthy
    }

    /// Whether no verdict came yet.
    pub(super) fn unknown(&self) -> bool {
        *self.verdict.borrow() == HealthState::Unknown
    }

    /// Wait for the verdict to change; `false` when the monitor ended.
    pub(super) async fn changed(&mut self) -> bool {
        self.verdict.changed().await.is_ok()
    }

    /// Take the verdict: what to report, if it differs from what was.
    pub(super) fn take_change(&mut self) -> Option<HealthChange> {
        let state = self.verdict.borrow_and_update().clone();
        let change = judge(self.reported, state)?;
        self.reported = change.healthy;
        Some(change)
    }
}

/// What `state` changes, given the verdict last reported.
fn judge(reported: Option<bool>, state: HealthState) -> Option<HealthChange> {
    let healthy = match &state {
        HealthState::Unknown => None,
        HealthState::Healthy => Some(true),
        HealthState::Unhealthy(_) => Some(false),
    };
    if healthy == reported {
        return None;
    }
    let reason = match state {
        HealthState::Unhealthy(r) => Some(r),
        _ => None,
    };
    Some(HealthChange {
        healthy,
        event: healthy.map(|h| (h, reason)),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_are_reported_and_unknown_has_no_event() {
        let sick = || HealthState::Unhealthy("readyz: 500".into());
        assert_eq!(judge(None, HealthState::Unknown), None);
        assert_eq!(judge(Some(true), HealthState::Healthy), None);
        assert_eq!(judge(Some(false), sick()), None);
        assert_eq!(
            judge(None, HealthState::Healthy),
            Some(HealthChange {
                healthy: Some(true),
                event: Some((true, None))
            })
        );
        assert_eq!(
            judge(Some(true), sick()),
            Some(HealthChange {
                healthy: Some(false),
                event: Some((false, Some("readyz: 500".into())))
            })
        );
        assert_eq!(
            judge(Some(true), HealthState::Unknown),
            Some(HealthChange {
                healthy: None,
                event: None
            })
        );
    }

    #[test]
    fn the_gate_reports_each_change_once() {
        let (tx, rx) = watch::channel(HealthState::Unknown);
        let mut g = HealthGate::new(rx);
        assert!(g.unknown() && !g.healthy());
        assert_eq!(g.take_change(), None);
        tx.send(HealthState::Healthy).unwrap();
        assert!(g.healthy());
        assert_eq!(g.take_change().unwrap().healthy, Some(true));
        assert_eq!(g.take_change(), None);
    }
}
