//! The controller task: its parts, the start-up, and the loop that gathers
//! wake-ups and hands each to the concern it belongs to.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};

use super::announce::Announcements;
use super::cordon::Cordon;
use super::fast::FastFailover;
use super::health::{HealthGate, HealthState};
use super::heartbeat::Beacon;
use super::leadership::Leadership;
use super::report::Report;
use super::vips::Vips;
use super::{ControllerConfig, ControllerEvent, Failure, Role, ShutdownReport, StepDownReason};
use crate::address::{AddressManager, LinkEvent};
use crate::announce::{Announcer, Conflict};
use crate::backend::{LockBackend, RecordWatch, VersionedRecord};
use crate::cordon::CordonState;
use crate::election::{Attempt, Elector};
use crate::heartbeat::{HeardBeat, HeartbeatChannel};
use crate::model::VipAddress;

/// The controller task: the elector, the two parts it acts through, and
/// one owner per concern.
pub(super) struct Run {
    pub(super) config: ControllerConfig,
    pub(super) elector: Elector<dyn LockBackend>,
    pub(super) addresses: Arc<dyn AddressManager>,
    pub(super) announcer: Arc<dyn Announcer>,
    pub(super) report: Report,
    pub(super) inputs: Inputs,
    pub(super) lease: Leadership,
    pub(super) vips: Vips,
    pub(super) announcements: Announcements,
    pub(super) health: HealthGate,
    pub(super) cordon: Cordon,
    pub(super) fast: FastFailover,
    pub(super) beacon: Beacon,
}

/// The event sources the loop waits on besides the timer, the health
/// verdict and the cordon (each `None` until subscribed, or once ended).
#[derive(Default)]
pub(super) struct Inputs {
    record: Option<RecordWatch>,
    link: Option<mpsc::Receiver<LinkEvent>>,
    claims: Option<mpsc::Receiver<Conflict>>,
    beats: Option<mpsc::Receiver<HeardBeat>>,
    /// Fast failover's channel, when it is on.
    heartbeats: Option<Arc<dyn HeartbeatChannel>>,
    /// Senders of the inputs the caller did not provide, kept so their
    /// receivers stay open.
    _keepalive: KeepAlive,
}

impl Inputs {
    pub(super) fn new(heartbeats: Option<Arc<dyn HeartbeatChannel>>, keepalive: KeepAlive) -> Self {
        Self {
            heartbeats,
            _keepalive: keepalive,
            ..Self::default()
        }
    }

    /// Whether the record is watched (else polled).
    pub(super) fn watching(&self) -> bool {
        self.record.is_some()
    }

    /// The watched record, marked seen; `None` when not watching.
    pub(super) fn take_record(&mut self) -> Option<Option<VersionedRecord>> {
        Some(self.record.as_mut()?.borrow_and_update().clone())
    }

    /// A heartbeat already waiting, if any.
    pub(super) fn try_beat(&mut self) -> Option<HeardBeat> {
        self.beats.as_mut()?.try_recv().ok()
    }
}

/// Senders of the inputs the caller did not provide.
#[derive(Default)]
pub(super) struct KeepAlive {
    pub(super) health: Option<watch::Sender<HealthState>>,
    pub(super) cordon: Option<watch::Sender<CordonState>>,
}

/// What woke the loop.
enum Wake {
    Stop,
    Timer,
    Record,
    RecordClosed,
    Link(Option<LinkEvent>),
    Beat(Option<HeardBeat>),
    Claim(Option<Conflict>),
    Health,
    HealthClosed,
    Cordon,
    CordonClosed,
}

async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn changed_opt<T>(rx: &mut Option<watch::Receiver<T>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

impl Run {
    /// Healthy, with carrier: may campaign.
    pub(super) fn eligible(&self) -> bool {
        self.health.healthy() && self.vips.carrier_up()
    }

    pub(super) async fn run(mut self, mut stop: oneshot::Receiver<()>) -> ShutdownReport {
        // 1. Resolve the interface (retrying) and subscribe to its events.
        if !self.start(&mut stop).await {
            return self.finish(Instant::now(), false, vec![], false, vec![]);
        }
        // 2. Wait (bounded) for the first health verdict.
        if self.health.unknown() {
            let until = Instant::now() + self.config.health.timeout + Duration::from_millis(50);
            tokio::select! {
                _ = &mut stop => return self.finish(Instant::now(), false, vec![], false, vec![]),
                _ = self.health.changed() => {}
                () = sleep_until(until) => {}
            }
        }
        self.on_health_change();
        // 3. A restarted holder renews and keeps the VIP; otherwise any
        //    stale VIP goes before anything else.
        let started_as_holder = match self.elector.refresh().await {
            Ok(Some(r))
                if r.record.holder_identity == self.config.identity.as_str() && self.eligible() =>
            {
                matches!(self.attempt().await, Some(Attempt::Leading { .. }))
            }
            Ok(_) => false,
            Err(e) => {
                self.emit(ControllerEvent::Error {
                    error: Failure::new("reading the record at start", e),
                });
                false
            }
        };
        if started_as_holder {
            self.become_leader(false).await;
        } else {
            self.reconcile_follower().await;
            self.set_role(Role::Follower);
            self.lease.next_renew = Instant::now();
        }
        // 4. The loop: one wake-up at a time, to the concern it belongs to.
        loop {
            let deadline = self.next_deadline();
            let inputs = &mut self.inputs;
            let wake = tokio::select! {
                biased;
                _ = &mut stop => Wake::Stop,
                r = changed_opt(&mut inputs.record) => if r { Wake::Record } else { Wake::RecordClosed },
                ev = recv_opt(&mut inputs.link) => Wake::Link(ev),
                c = recv_opt(&mut inputs.claims) => Wake::Claim(c),
                b = recv_opt(&mut inputs.beats) => Wake::Beat(b),
                r = self.health.changed(), if self.health.open => if r { Wake::Health } else { Wake::HealthClosed },
                r = self.cordon.changed(), if self.cordon.open => if r { Wake::Cordon } else { Wake::CordonClosed },
                () = sleep_until(deadline) => Wake::Timer,
            };
            match wake {
                Wake::Stop => break,
                Wake::Timer => self.on_timer().await,
                Wake::Record => self.on_record().await,
                Wake::RecordClosed => {
                    tracing::warn!("record watch ended; polling every retry period");
                    self.inputs.record = None;
                }
                Wake::Link(Some(ev)) => self.on_link(ev).await,
                Wake::Link(None) => self.inputs.link = None,
                Wake::Claim(Some(c)) => self.on_claim(c).await,
                Wake::Claim(None) => self.inputs.claims = None,
                Wake::Beat(Some(b)) => {
                    // 100 a second from the leader: no status update.
                    self.on_beat(b).await;
                    continue;
                }
                Wake::Beat(None) => self.inputs.beats = None,
                Wake::Health => self.on_health().await,
                Wake::HealthClosed => {
                    self.health.open = false;
                    self.on_timer().await;
                }
                Wake::Cordon => self.on_cordon().await,
                Wake::CordonClosed => {
                    self.cordon.open = false;
                    self.on_timer().await;
                }
            }
            self.update_status(|_| {});
        }
        self.shutdown().await
    }

    /// Resolve the interface (retrying every retry period) and subscribe
    /// to what happens on it; `false` when stopped first.
    async fn start(&mut self, stop: &mut oneshot::Receiver<()>) -> bool {
        let iface = loop {
            match self
                .addresses
                .resolve(&self.config.interface, &self.config.vips)
                .await
            {
                Ok(i) => break i,
                Err(e) => self.emit(ControllerEvent::Error {
                    error: Failure::new(
                        format!("resolving interface {}", self.config.interface),
                        e,
                    ),
                }),
            }
            let wait = Instant::now() + self.config.timings.retry_period();
            tokio::select! {
                _ = &mut *stop => return false,
                () = sleep_until(wait) => {}
            }
        };
        tracing::info!(interface = %iface.name, mac = %iface.mac, "interface resolved");
        self.vips.interface = Some(iface.clone());
        let interface = iface.clone();
        self.update_status(|s| s.interface = Some(interface));
        match self.addresses.subscribe(&iface, &self.config.vips).await {
            Ok(rx) => self.inputs.link = Some(rx),
            Err(e) => self.emit(ControllerEvent::Error {
                error: Failure::new("subscribing to link events", e),
            }),
        }
        let vip_addrs: Vec<IpAddr> = self.vips.list.iter().map(VipAddress::addr).collect();
        match self.announcer.subscribe_conflicts(&iface, &vip_addrs).await {
            Ok(rx) => self.inputs.claims = Some(rx),
            Err(e) => self.emit(ControllerEvent::Error {
                error: Failure::new("listening for foreign claims", e),
            }),
        }
        self.inputs.record = self.elector.watch();
        if let Some(channel) = self.inputs.heartbeats.clone() {
            match channel.subscribe(&iface, self.config.election).await {
                Ok(rx) => self.inputs.beats = Some(rx),
                Err(e) => self.emit(ControllerEvent::Error {
                    error: Failure::new("listening for heartbeats", e),
                }),
            }
            self.beacon
                .start(channel, iface, self.report.observer.clone());
        }
        true
    }

    /// The earliest moment something is due.
    pub(super) fn next_deadline(&self) -> Instant {
        let mut d = self.lease.next_renew;
        if self.lease.role == Role::Leader {
            let leader_due = [
                self.elector.valid_until(),
                self.announcements.next(),
                self.vips.carrier_deadline(),
            ];
            d = leader_due.into_iter().flatten().fold(d, Instant::min);
        } else if self.lease.role == Role::Follower {
            d = d.min(self.follower_due());
            if let Some(f) = self.fast_due() {
                d = d.min(f);
            }
        }
        d
    }

    pub(super) async fn on_timer(&mut self) {
        let now = Instant::now();
        match self.lease.role {
            Role::Leader => self.leader_timer(now).await,
            Role::Follower => {
                if self.fast_due().is_some_and(|d| now >= d) {
                    self.fast_takeover().await;
                    if self.lease.role != Role::Follower {
                        return;
                    }
                }
                let now = Instant::now();
                if now >= self.follower_due() {
                    self.follower_timer(now).await;
                }
            }
            _ => {}
        }
    }

    /// Report a new health verdict.
    pub(super) fn on_health_change(&mut self) {
        let Some(change) = self.health.take_change() else {
            return;
        };
        let healthy = change.healthy;
        self.update_status(|s| s.healthy = healthy);
        if let Some((healthy, reason)) = change.event {
            self.emit(ControllerEvent::HealthChanged { healthy, reason });
        }
    }

    /// Invariant 5: an unhealthy leader hands over; a follower
    /// reconsiders at once.
    async fn on_health(&mut self) {
        self.on_health_change();
        if self.lease.role == Role::Leader && !self.health.healthy() {
            self.step_down(StepDownReason::Unhealthy, true).await;
        } else if self.lease.role == Role::Follower {
            self.follower_timer(Instant::now()).await;
        }
    }

    /// Invariant 6: a cordoned leader hands over when someone can take it.
    async fn on_cordon(&mut self) {
        let c = self.cordon.take_change();
        self.update_status(|s| s.cordoned = c.cordoned);
        if self.lease.role == Role::Leader && self.cordon.wants_handover(Instant::now()) {
            self.handover().await;
        }
    }

    pub(super) async fn shutdown(mut self) -> ShutdownReport {
        let started = Instant::now();
        let was_leader = self.lease.role == Role::Leader;
        let (removed, released, errors) = if was_leader {
            self.step_down(StepDownReason::Shutdown, true).await
        } else {
            // Belt and braces: no VIP stays behind on a follower either.
            self.reconcile_follower().await;
            (vec![], false, vec![])
        };
        self.finish(started, was_leader, removed, released, errors)
    }

    pub(super) fn finish(
        &mut self,
        started: Instant,
        was_leader: bool,
        removed: Vec<IpAddr>,
        released: bool,
        errors: Vec<Failure>,
    ) -> ShutdownReport {
        self.set_role(Role::Stopped);
        ShutdownReport {
            was_leader,
            removed,
            released,
            errors,
            elapsed: Instant::now() - started,
        }
    }
}
