//! Fast failover's sending side: the leader's heartbeat sender task and
//! the [`Beacon`] that tells it what to send. What to send is decided in
//! `fast.rs` ([`BeatPlan`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use super::{ControllerEvent, Observer};
use crate::heartbeat::{ElectionId, Heartbeat, HeartbeatChannel};
use crate::model::Interface;

/// What the sender task sends, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BeatPlan {
    pub(super) election: ElectionId,
    pub(super) holder: String,
    pub(super) term: u32,
    /// [`version_tag`](crate::version_tag) of the record last written.
    pub(super) version: u64,
    pub(super) interval: Duration,
    /// No heartbeat at or after this instant: the earlier of the lease's
    /// validity and the VIP's earliest kernel expiry.
    pub(super) until: Instant,
}

/// A task aborted when this is dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The sender: one heartbeat every interval while the plan says so. A new
/// holder or term starts at once, with sequence 0; a new record version (a
/// renewal) is sent at once too, so followers hear it before they could
/// miss it.
fn spawn_sender(
    channel: Arc<dyn HeartbeatChannel>,
    interface: Interface,
    mut plan: watch::Receiver<Option<BeatPlan>>,
    observer: Option<Arc<dyn Observer>>,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut term: Option<(String, u32)> = None;
        let mut version = None;
        let mut sequence = 0u64;
        let mut next = Instant::now();
        let mut warned = false;
        loop {
            let current = plan.borrow_and_update().clone();
            let now = Instant::now();
            let Some(p) = current.filter(|p| now < p.until) else {
                // Idle until a new plan; the next one starts at once.
                term = None;
                version = None;
                if plan.changed().await.is_err() {
                    return;
                }
                continue;
            };
            if term.as_ref() != Some(&(p.holder.clone(), p.term)) {
                term = Some((p.holder.clone(), p.term));
                sequence = 0;
                next = now;
            }
            if version != Some(p.version) {
                version = Some(p.version);
                next = now;
            }
            if now >= next {
                let beat = Heartbeat {
                    election: p.election,
                    holder: p.holder.clone(),
                    term: p.term,
                    sequence,
                    version: p.version,
                    interval: p.interval,
                };
                sequence += 1;
                match channel.send(&interface, &beat).await {
                    Ok(()) => {
                        warned = false;
                        if let Some(o) = &observer {
                            o.on_event(&ControllerEvent::HeartbeatSent);
                        }
                    }
                    Err(e) if !warned => {
                        warned = true;
                        tracing::warn!(error = %e, "sending a heartbeat failed");
                    }
                    Err(_) => {}
                }
                next += p.interval;
                if next <= Instant::now() {
                    // Late (a stall): resume the rhythm from now.
                    next = Instant::now() + p.interval;
                }
            }
            tokio::select! {
                () = sleep_until(next.min(p.until)) => {}
                r = plan.changed() => if r.is_err() { return },
            }
        }
    }))
}

/// The leader's heartbeats: the plan the sender task follows, and the task
/// (started once the interface is known, when fast failover is on).
#[derive(Debug)]
pub(super) struct Beacon {
    plan: watch::Sender<Option<BeatPlan>>,
    sender: Option<AbortOnDrop>,
}

impl Beacon {
    pub(super) fn new() -> Self {
        Self {
            plan: watch::channel(None).0,
            sender: None,
        }
    }

    /// Start the sender task on `interface`.
    pub(super) fn start(
        &mut self,
        channel: Arc<dyn HeartbeatChannel>,
        interface: Interface,
        observer: Option<Arc<dyn Observer>>,
    ) {
        self.sender = Some(spawn_sender(
            channel,
            interface,
            self.plan.subscribe(),
            observer,
        ));
    }

    /// Send by `plan` from now on (nothing changes if it is the same).
    pub(super) fn send(&self, plan: BeatPlan) {
        self.plan.send_if_modified(|p| {
            if p.as_ref() == Some(&plan) {
                false
            } else {
                *p = Some(plan);
                true
            }
        });
    }

    /// Stop sending (the first step of every way out, and of a VIP gone
    /// missing).
    pub(super) fn stop(&self) {
        self.plan.send_if_modified(|p| p.take().is_some());
    }
}
