//! Fast failover's sending side: the leader's heartbeat sender and the
//! [`Beacon`] that tells it what to send. What to send is decided in
//! `fast.rs` ([`BeatPlan`]); when, by [`Rhythm`] (pure). The sender is a
//! dedicated thread when the channel offers a [`BeatSink`] (the packet
//! channel: one `sendto` per beat, no future, no allocation), else a task
//! on tokio's clock (the in-memory segment, paused-time tests).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use super::{ControllerEvent, Observer};
use crate::heartbeat::{BeatSink, ElectionId, Heartbeat, HeartbeatChannel, HeartbeatError};
use crate::heartbeat_auth::HeartbeatKey;
use crate::model::Interface;

/// What the sender sends, until when.
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
pub(super) struct AbortOnDrop(pub(super) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The sender's rhythm, decided without IO: one heartbeat every interval
/// while the plan says so. A new holder or term starts at once, with
/// sequence 0; a new record version (a renewal) is sent at once too, so
/// followers hear it before they could miss it; after the plan ends (or
/// is withdrawn) the next one starts afresh.
#[derive(Debug)]
pub(super) struct Rhythm {
    /// The next beat to send (its sequence is the next one), while sending.
    beat: Option<Heartbeat>,
    until: Instant,
    next: Instant,
}

impl Rhythm {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            beat: None,
            until: now,
            next: now,
        }
    }

    /// Follow `plan` (none: stop) from `now`.
    pub(super) fn plan(&mut self, plan: Option<&BeatPlan>, now: Instant) {
        let Some(p) = plan.filter(|p| now < p.until) else {
            self.beat = None;
            return;
        };
        self.until = p.until;
        match self.beat.as_mut() {
            Some(b) if b.holder == p.holder && b.term == p.term => {
                if b.version != p.version {
                    b.version = p.version;
                    self.next = now;
                }
                b.election = p.election;
                b.interval = p.interval;
            }
            _ => {
                self.beat = Some(Heartbeat {
                    election: p.election,
                    holder: p.holder.clone(),
                    term: p.term,
                    sequence: 0,
                    version: p.version,
                    interval: p.interval,
                });
                self.next = now;
            }
        }
    }

    /// The beat to send at `now`, if one is due; then call
    /// [`sent`](Self::sent).
    pub(super) fn due(&mut self, now: Instant) -> Option<&Heartbeat> {
        if now >= self.until {
            self.beat = None;
        }
        self.beat.as_ref().filter(|_| now >= self.next)
    }

    /// The due beat went out (or failed) at `now`: the next sequence, one
    /// interval later (from now after a stall, not a burst to catch up).
    pub(super) fn sent(&mut self, now: Instant) {
        if let Some(b) = self.beat.as_mut() {
            b.sequence += 1;
            self.next += b.interval;
            if self.next <= now {
                self.next = now + b.interval;
            }
        }
    }

    /// When to look again: `None` while idle (until a new plan).
    pub(super) fn wake(&self) -> Option<Instant> {
        self.beat.as_ref().map(|_| self.next.min(self.until))
    }
}

/// A failed send is one warning until a send works again; a sent beat is
/// an event.
struct Outcomes {
    warned: bool,
    observer: Option<Arc<dyn Observer>>,
}

impl Outcomes {
    fn record(&mut self, result: Result<(), HeartbeatError>) {
        match result {
            Ok(()) => {
                self.warned = false;
                if let Some(o) = &self.observer {
                    o.on_event(&ControllerEvent::HeartbeatSent);
                }
            }
            Err(e) if !self.warned => {
                self.warned = true;
                tracing::warn!(error = %e, "sending a heartbeat failed");
            }
            Err(_) => {}
        }
    }
}

/// The sender as a task on tokio's clock, through the channel's `send`.
fn spawn_task(
    channel: Arc<dyn HeartbeatChannel>,
    interface: Interface,
    key: HeartbeatKey,
    mut plan: watch::Receiver<Option<BeatPlan>>,
    mut outcomes: Outcomes,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut rhythm = Rhythm::new(Instant::now());
        loop {
            let now = Instant::now();
            rhythm.plan(plan.borrow_and_update().as_ref(), now);
            if let Some(beat) = rhythm.due(now) {
                outcomes.record(channel.send(&interface, beat, &key).await);
                rhythm.sent(now);
            }
            match rhythm.wake() {
                None => {
                    if plan.changed().await.is_err() {
                        return;
                    }
                }
                Some(at) => tokio::select! {
                    () = sleep_until(at) => {}
                    r = plan.changed() => if r.is_err() { return },
                },
            }
        }
    }))
}

/// The sender as a dedicated thread: it sleeps to each beat's deadline and
/// sends through the sink; a task on the runtime only wakes it when the
/// plan changes. Stopped (and woken to see it) when dropped.
#[derive(Debug)]
struct SenderThread {
    stop: Arc<AtomicBool>,
    thread: std::thread::Thread,
    _waker: AbortOnDrop,
}

impl Drop for SenderThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

fn spawn_thread(
    mut sink: Box<dyn BeatSink>,
    mut plan: watch::Receiver<Option<BeatPlan>>,
    mut outcomes: Outcomes,
) -> std::io::Result<SenderThread> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut changes = plan.clone();
    let stopped = stop.clone();
    let handle = std::thread::Builder::new()
        .name("vip-heartbeat".into())
        .spawn(move || {
            let mut rhythm = Rhythm::new(Instant::now());
            rhythm.plan(plan.borrow_and_update().as_ref(), Instant::now());
            while !stopped.load(Ordering::Acquire) {
                match plan.has_changed() {
                    Err(_) => return,
                    Ok(true) => rhythm.plan(plan.borrow_and_update().as_ref(), Instant::now()),
                    Ok(false) => {}
                }
                let now = Instant::now();
                if let Some(beat) = rhythm.due(now) {
                    outcomes.record(sink.send(beat));
                    rhythm.sent(now);
                }
                match rhythm.wake() {
                    None => std::thread::park(),
                    Some(at) => {
                        std::thread::park_timeout(at.saturating_duration_since(Instant::now()))
                    }
                }
            }
        })?;
    let thread = handle.thread().clone();
    let wake = thread.clone();
    let waker = tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            wake.unpark();
        }
        wake.unpark();
    });
    Ok(SenderThread {
        stop,
        thread,
        _waker: AbortOnDrop(waker),
    })
}

/// The running sender, either kind (kept for its drop, which stops it).
#[derive(Debug)]
enum Sender {
    Task { _task: AbortOnDrop },
    Thread { _thread: SenderThread },
}

/// The sender for `channel` on `interface`: a thread on the channel's
/// sink when it offers one, else a task.
fn spawn_sender(
    channel: Arc<dyn HeartbeatChannel>,
    interface: Interface,
    key: HeartbeatKey,
    plan: watch::Receiver<Option<BeatPlan>>,
    observer: Option<Arc<dyn Observer>>,
) -> Sender {
    let outcomes = || Outcomes {
        warned: false,
        observer: observer.clone(),
    };
    match channel.beat_sink(&interface, &key) {
        Ok(Some(sink)) => match spawn_thread(sink, plan.clone(), outcomes()) {
            Ok(thread) => return Sender::Thread { _thread: thread },
            Err(e) => tracing::warn!(error = %e, "no heartbeat thread; sending from a task"),
        },
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "no heartbeat sink; sending from a task"),
    }
    Sender::Task {
        _task: spawn_task(channel, interface, key, plan, outcomes()),
    }
}

/// The leader's heartbeats: the plan the sender task follows, and the task
/// (started once the interface is known, when fast failover is on).
#[derive(Debug)]
pub(super) struct Beacon {
    plan: watch::Sender<Option<BeatPlan>>,
    sender: Option<Sender>,
}

impl Beacon {
    pub(super) fn new() -> Self {
        Self {
            plan: watch::channel(None).0,
            sender: None,
        }
    }

    /// Start the sender task on `interface`, signing with `key`.
    pub(super) fn start(
        &mut self,
        channel: Arc<dyn HeartbeatChannel>,
        interface: Interface,
        key: HeartbeatKey,
        observer: Option<Arc<dyn Observer>>,
    ) {
        self.sender = Some(spawn_sender(
            channel,
            interface,
            key,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(holder: &str, term: u32, version: u64, until: Instant) -> BeatPlan {
        BeatPlan {
            election: ElectionId(7),
            holder: holder.into(),
            term,
            version,
            interval: Duration::from_millis(10),
            until,
        }
    }

    /// Sequence and deadline of the due beat at `now`, marking it sent.
    fn send(r: &mut Rhythm, now: Instant) -> Option<(u64, u64)> {
        let beat = r.due(now).map(|b| (b.sequence, b.version))?;
        r.sent(now);
        Some(beat)
    }

    #[test]
    fn beats_every_interval_restart_on_a_new_term_and_resend_a_new_version_at_once() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut r = Rhythm::new(t0);
        assert_eq!(r.wake(), None, "idle without a plan");
        r.plan(Some(&plan("a", 1, 100, ms(1000))), t0);
        assert_eq!(
            send(&mut r, t0),
            Some((0, 100)),
            "a new term starts at once"
        );
        assert_eq!(send(&mut r, ms(5)), None, "not before the interval");
        assert_eq!(r.wake(), Some(ms(10)));
        assert_eq!(send(&mut r, ms(10)), Some((1, 100)));
        // A renewal: the new version at once, the sequence goes on.
        r.plan(Some(&plan("a", 1, 101, ms(2000))), ms(13));
        assert_eq!(send(&mut r, ms(13)), Some((2, 101)));
        assert_eq!(r.wake(), Some(ms(23)));
        // The same plan again changes nothing.
        r.plan(Some(&plan("a", 1, 101, ms(2000))), ms(15));
        assert_eq!(send(&mut r, ms(15)), None);
        // A stall: the rhythm resumes from now, no burst.
        assert_eq!(send(&mut r, ms(80)), Some((3, 101)));
        assert_eq!(r.wake(), Some(ms(90)));
        // A new term: sequence 0, at once.
        r.plan(Some(&plan("a", 2, 102, ms(2000))), ms(81));
        assert_eq!(send(&mut r, ms(81)), Some((0, 102)));
    }

    #[test]
    fn nothing_is_sent_at_or_after_until_or_once_withdrawn_and_the_next_plan_starts_afresh() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut r = Rhythm::new(t0);
        r.plan(Some(&plan("a", 1, 100, ms(25))), t0);
        assert_eq!(send(&mut r, t0), Some((0, 100)));
        assert_eq!(send(&mut r, ms(10)), Some((1, 100)));
        assert_eq!(r.wake(), Some(ms(20)));
        assert_eq!(send(&mut r, ms(20)), Some((2, 100)));
        assert_eq!(r.wake(), Some(ms(25)), "woken at until");
        assert_eq!(send(&mut r, ms(30)), None, "past until");
        assert_eq!(r.wake(), None);
        // An expired plan is no plan.
        r.plan(Some(&plan("a", 1, 100, ms(25))), ms(30));
        assert_eq!(r.wake(), None);
        // Extended: the same term starts again from 0 (the controller
        // only extends after a renewal, whose new version followers see).
        r.plan(Some(&plan("a", 1, 101, ms(1000))), ms(31));
        assert_eq!(send(&mut r, ms(31)), Some((0, 101)));
        // Withdrawn.
        r.plan(None, ms(35));
        assert_eq!(send(&mut r, ms(41)), None);
        assert_eq!(r.wake(), None);
    }
}
