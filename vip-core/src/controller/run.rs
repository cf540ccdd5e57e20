//! The controller task: its state, the event loop and what both roles
//! share (events, status, elections, stepping down, link and cordon
//! events, shutdown).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};

use super::health::HealthState;
use super::{
    ControllerConfig, ControllerEvent, Counters, Observer, Role, ShutdownReport, Status,
    StepDownReason,
};
use crate::address::{AddressManager, LinkEvent};
use crate::announce::{Announcer, Conflict};
use crate::backend::{BackendError, LockBackend, RecordWatch};
use crate::cordon::{CordonState, CordonWatch};
use crate::election::{Attempt, Elector};
use crate::heartbeat::{HeardBeat, HeartbeatChannel};
use crate::model::{Interface, VipAddress};

use super::heartbeat::{AbortOnDrop, BeatPlan, Heard};

/// The running state of the controller task.
pub(super) struct Run {
    pub(super) config: ControllerConfig,
    pub(super) vips: Vec<VipAddress>,
    pub(super) elector: Elector<dyn LockBackend>,
    pub(super) addresses: Arc<dyn AddressManager>,
    pub(super) announcer: Arc<dyn Announcer>,
    pub(super) observer: Option<Arc<dyn Observer>>,
    pub(super) status: watch::Sender<Status>,
    pub(super) health: watch::Receiver<HealthState>,
    pub(super) cordon: CordonWatch,
    pub(super) record_watch: Option<RecordWatch>,
    pub(super) link_events: Option<mpsc::Receiver<LinkEvent>>,
    pub(super) conflicts: Option<mpsc::Receiver<Conflict>>,
    pub(super) interface: Option<Interface>,
    pub(super) role: Role,
    /// Leader: next renewal. Follower: next poll or attempt.
    pub(super) next_renew: Instant,
    pub(super) next_announce: Option<Instant>,
    pub(super) burst_left: u32,
    pub(super) last_defence: HashMap<IpAddr, Instant>,
    /// When this follower first saw the lease free or expired.
    pub(super) free_since: Option<Instant>,
    pub(super) handover_blocked_until: Option<Instant>,
    pub(super) handover_backoff: Duration,
    pub(super) handed_over_at: Option<Instant>,
    pub(super) carrier_down_since: Option<Instant>,
    /// No follower attempt before this (after an error or a step-down), so
    /// a persistent failure never spins.
    pub(super) hold_off_until: Option<Instant>,
    pub(super) addresses_present: bool,
    pub(super) health_open: bool,
    pub(super) cordon_open: bool,
    pub(super) _keepalive: KeepAlive,
    /// Fast failover's channel; `None` when it is off.
    pub(super) heartbeats: Option<Arc<dyn HeartbeatChannel>>,
    /// Heartbeats heard on the segment.
    pub(super) beats: Option<mpsc::Receiver<HeardBeat>>,
    /// What the sender task sends (`None`: nothing).
    pub(super) beat_plan: watch::Sender<Option<BeatPlan>>,
    pub(super) beat_sender: Option<AbortOnDrop>,
    /// The last heartbeat of the observed holder and term.
    pub(super) heard: Option<Heard>,
    /// A follower that found the VIP still answering probes again then.
    pub(super) next_probe: Option<Instant>,
    /// Leader (fast failover): the VIP went (carrier loss, a removal) and
    /// comes back only after a successful renewal.
    pub(super) readd_pending: bool,
    /// The earliest moment the kernel may remove the VIPs: when the last
    /// refresh was sent plus the lifetime it set.
    pub(super) addresses_expire: Option<Instant>,
    /// The last election attempt failed because another write came first.
    pub(super) lost_race: bool,
}

/// Senders of the inputs the caller did not provide, kept so their
/// receivers stay open.
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
    Cordon,
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
    pub(super) fn emit(&self, event: ControllerEvent) {
        match &event {
            ControllerEvent::SteppedDown { reason, released } => {
                tracing::warn!(%reason, released, "stepped down: leadership ended")
            }
            ControllerEvent::Acquired { new } => tracing::info!(new, "became leader"),
            ControllerEvent::Conflict(c) => {
                tracing::warn!(address = %c.address, mac = %c.mac, "another host claims our VIP")
            }
            ControllerEvent::HealthChanged { healthy, reason } => {
                tracing::info!(
                    healthy,
                    reason = reason.as_deref().unwrap_or(""),
                    "local API server health changed"
                )
            }
            ControllerEvent::HolderChanged { holder } => {
                tracing::info!(%holder, "lease holder changed")
            }
            ControllerEvent::AddressRemoved {
                address,
                stale: true,
            } => {
                tracing::warn!(%address, "removed a stale VIP from this follower")
            }
            ControllerEvent::AddressRestored { address } => {
                tracing::warn!(%address, "VIP was removed by someone else; restored")
            }
            ControllerEvent::RenewFailed { error } => tracing::warn!(%error, "renewal failed"),
            ControllerEvent::Error { error } => tracing::warn!(%error, "error"),
            ControllerEvent::CarrierChanged { up } => tracing::info!(up, "carrier changed"),
            other => tracing::debug!(event = ?other, "controller event"),
        }
        if let Some(o) = &self.observer {
            o.on_event(&event);
        }
    }

    pub(super) fn update_status(&self, f: impl FnOnce(&mut Status)) {
        self.status.send_modify(|s| {
            f(s);
            s.last_progress = Instant::now();
        });
    }

    pub(super) fn count(&self, f: impl FnOnce(&mut Counters)) {
        self.update_status(|s| f(&mut s.counters));
    }

    pub(super) fn set_role(&mut self, role: Role) {
        self.role = role;
        let holder = self.elector.observed_holder().map(str::to_string);
        let (last, valid) = (self.elector.last_renew_sent(), self.elector.valid_until());
        let present = self.addresses_present;
        self.update_status(|s| {
            if s.role != role {
                s.role = role;
                s.role_since = Instant::now();
            }
            s.holder = holder;
            s.last_renewal = last;
            s.valid_until = valid;
            s.addresses_present = present;
        });
    }

    pub(super) fn healthy(&self) -> bool {
        *self.health.borrow() == HealthState::Healthy
    }

    pub(super) fn cordon_state(&self) -> CordonState {
        *self.cordon.borrow()
    }

    pub(super) fn carrier_up(&self) -> bool {
        self.carrier_down_since.is_none()
    }

    pub(super) async fn run(mut self, mut stop: oneshot::Receiver<()>) -> ShutdownReport {
        // 1. Resolve the interface (retrying) and subscribe to its events.
        loop {
            match self
                .addresses
                .resolve(&self.config.interface, &self.config.vips)
                .await
            {
                Ok(i) => {
                    tracing::info!(interface = %i.name, mac = %i.mac, "interface resolved");
                    self.interface = Some(i);
                    break;
                }
                Err(e) => self.emit(ControllerEvent::Error {
                    error: format!("resolving interface {}: {e}", self.config.interface),
                }),
            }
            let wait = Instant::now() + self.config.timings.retry_period();
            tokio::select! {
                _ = &mut stop => return self.finish(Instant::now(), false, vec![], false, vec![]),
                () = sleep_until(wait) => {}
            }
        }
        let iface = self.interface.clone().expect("resolved above");
        let interface = iface.clone();
        self.update_status(|s| s.interface = Some(interface));
        match self.addresses.subscribe(&iface, &self.config.vips).await {
            Ok(rx) => self.link_events = Some(rx),
            Err(e) => self.emit(ControllerEvent::Error {
                error: format!("subscribing to link events: {e}"),
            }),
        }
        let vip_addrs: Vec<IpAddr> = self.vips.iter().map(VipAddress::addr).collect();
        match self.announcer.subscribe_conflicts(&iface, &vip_addrs).await {
            Ok(rx) => self.conflicts = Some(rx),
            Err(e) => self.emit(ControllerEvent::Error {
                error: format!("listening for foreign claims: {e}"),
            }),
        }
        self.record_watch = self.elector.watch();
        if let Some(channel) = self.heartbeats.clone() {
            match channel.subscribe(&iface, self.config.election).await {
                Ok(rx) => self.beats = Some(rx),
                Err(e) => self.emit(ControllerEvent::Error {
                    error: format!("listening for heartbeats: {e}"),
                }),
            }
            self.beat_sender = Some(super::heartbeat::spawn_sender(
                channel,
                iface.clone(),
                self.beat_plan.subscribe(),
                self.observer.clone(),
            ));
        }

        // 2. Wait (bounded) for the first health verdict.
        if *self.health.borrow() == HealthState::Unknown {
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
                    error: format!("reading the record at start: {e}"),
                });
                false
            }
        };
        if started_as_holder {
            self.become_leader(false).await;
        } else {
            self.reconcile_follower().await;
            self.set_role(Role::Follower);
            self.next_renew = Instant::now();
        }

        // 4. The loop.
        loop {
            let deadline = self.next_deadline();
            let wake = tokio::select! {
                biased;
                _ = &mut stop => Wake::Stop,
                r = changed_opt(&mut self.record_watch) => if r { Wake::Record } else { Wake::RecordClosed },
                ev = recv_opt(&mut self.link_events) => Wake::Link(ev),
                c = recv_opt(&mut self.conflicts) => Wake::Claim(c),
                b = recv_opt(&mut self.beats) => Wake::Beat(b),
                r = self.health.changed(), if self.health_open => {
                    if r.is_ok() { Wake::Health } else { self.health_open = false; Wake::Timer }
                },
                r = self.cordon.changed(), if self.cordon_open => {
                    if r.is_ok() { Wake::Cordon } else { self.cordon_open = false; Wake::Timer }
                },
                () = sleep_until(deadline) => Wake::Timer,
            };
            match wake {
                Wake::Stop => break,
                Wake::Timer => self.on_timer().await,
                Wake::Record => self.on_record().await,
                Wake::RecordClosed => {
                    tracing::warn!("record watch ended; polling every retry period");
                    self.record_watch = None;
                }
                Wake::Link(Some(ev)) => self.on_link(ev).await,
                Wake::Link(None) => self.link_events = None,
                Wake::Claim(Some(c)) => self.on_claim(c).await,
                Wake::Claim(None) => self.conflicts = None,
                Wake::Beat(Some(b)) => {
                    // 100 a second from the leader: no status update.
                    self.on_beat(b).await;
                    continue;
                }
                Wake::Beat(None) => self.beats = None,
                Wake::Health => {
                    self.on_health_change();
                    if self.role == Role::Leader && !self.healthy() {
                        self.step_down(StepDownReason::Unhealthy, true).await;
                    } else if self.role == Role::Follower {
                        self.follower_timer(Instant::now()).await;
                    }
                }
                Wake::Cordon => self.on_cordon().await,
            }
            self.update_status(|_| {});
        }
        self.shutdown().await
    }

    pub(super) fn next_deadline(&self) -> Instant {
        let mut d = self.next_renew;
        if self.role == Role::Leader {
            if let Some(v) = self.elector.valid_until() {
                d = d.min(v);
            }
            if let Some(a) = self.next_announce {
                d = d.min(a);
            }
            if let Some(since) = self.carrier_down_since {
                d = d.min(since + self.config.carrier_grace);
            }
        } else if self.role == Role::Follower {
            d = d.min(self.follower_due());
            if let Some(f) = self.fast_due() {
                d = d.min(f);
            }
        }
        d
    }

    /// When the follower's regular work (reconcile, poll, campaign) is due.
    pub(super) fn follower_due(&self) -> Instant {
        let mut d = self.next_renew;
        if self.eligible() {
            let mut due = if self.record_watch.is_some() {
                self.lease_available_at(Instant::now())
            } else {
                self.next_renew
            };
            if self.cordon_state().cordoned
                && let Some(f) = self.free_since
            {
                due = due.max(f + self.config.cordon_grace);
            }
            if let Some(h) = self.hold_off_until {
                due = due.max(h);
            }
            // Reconcile at least every retry period.
            d = d.min(due);
        }
        d
    }

    pub(super) fn eligible(&self) -> bool {
        self.healthy() && self.carrier_up()
    }

    pub(super) fn on_health_change(&mut self) {
        let state = self.health.borrow_and_update().clone();
        let healthy = match &state {
            HealthState::Unknown => None,
            HealthState::Healthy => Some(true),
            HealthState::Unhealthy(_) => Some(false),
        };
        let prev = self.status.borrow().healthy;
        if prev != healthy {
            self.update_status(|s| s.healthy = healthy);
            if let Some(h) = healthy {
                let reason = match state {
                    HealthState::Unhealthy(r) => Some(r),
                    _ => None,
                };
                self.emit(ControllerEvent::HealthChanged { healthy: h, reason });
            }
        }
    }

    /// Run one election attempt, emitting what it found.
    pub(super) async fn attempt(&mut self) -> Option<Attempt> {
        let before = self.elector.observed_holder().map(str::to_string);
        let sent = Instant::now();
        let r = self.elector.try_acquire_or_renew().await;
        self.note_holder(before);
        match r {
            Ok(a) => {
                self.lost_race = false;
                if matches!(a, Attempt::Leading { acquired: false }) && self.role == Role::Leader {
                    self.count(|c| c.renewals += 1);
                    self.emit(ControllerEvent::Renewed {
                        latency: Instant::now() - sent,
                    });
                }
                Some(a)
            }
            Err(e) => {
                self.lost_race = matches!(
                    e.backend_error(),
                    BackendError::Conflict | BackendError::AlreadyExists
                );
                if self.role == Role::Leader {
                    self.count(|c| c.renewal_failures += 1);
                    self.emit(ControllerEvent::RenewFailed {
                        error: format!("{e}: {}", e.backend_error()),
                    });
                } else {
                    tracing::debug!(error = %e, "election attempt failed");
                }
                None
            }
        }
    }

    pub(super) fn note_holder(&mut self, before: Option<String>) {
        let after = self.elector.observed_holder().map(str::to_string);
        if after != before
            && let Some(holder) = after.clone()
        {
            self.emit(ControllerEvent::HolderChanged { holder });
        }
        let holder = after;
        self.update_status(|s| s.holder = holder);
    }

    /// Invariant 2: stop announcing, remove, release (bounded), follow.
    pub(super) async fn step_down(
        &mut self,
        reason: StepDownReason,
        release: bool,
    ) -> (Vec<IpAddr>, bool, Vec<String>) {
        // 1. Stop announcing (heartbeats first).
        self.stop_heartbeats();
        self.next_announce = None;
        self.burst_left = 0;
        self.heard = None;
        self.next_probe = None;
        self.readd_pending = false;
        self.role = if reason == StepDownReason::Shutdown {
            Role::Stopping
        } else {
            Role::Follower
        };
        // 2. Remove the addresses.
        let mut removed = vec![];
        let mut errors = vec![];
        if let Some(iface) = self.interface.clone() {
            for vip in self.vips.clone() {
                match self.addresses.ensure_absent(&iface, &vip).await {
                    Ok(was) => {
                        if was {
                            removed.push(vip.addr());
                            self.emit(ControllerEvent::AddressRemoved {
                                address: vip.addr(),
                                stale: false,
                            });
                        }
                    }
                    Err(e) => {
                        let msg = format!("removing {vip}: {e}");
                        self.emit(ControllerEvent::Error { error: msg.clone() });
                        errors.push(msg);
                    }
                }
            }
        }
        self.addresses_present = false;
        self.addresses_expire = None;
        // 3. Release, bounded.
        let mut released = false;
        if release {
            match tokio::time::timeout(self.config.release_timeout, self.elector.release()).await {
                Ok(Ok(r)) => released = r,
                Ok(Err(e)) => {
                    errors.push(format!("releasing the lease: {e}: {}", e.backend_error()))
                }
                Err(_) => errors.push(format!(
                    "releasing the lease: no answer within {:?}",
                    self.config.release_timeout
                )),
            }
        }
        self.elector.forget_leadership();
        self.count(|c| c.step_downs += 1);
        self.emit(ControllerEvent::SteppedDown { reason, released });
        // 4. Carry on as a follower, after a pause: give the others the
        //    first chance, and never spin on a failure.
        let now = Instant::now();
        self.next_renew = now + self.config.timings.retry_period();
        self.hold_off_until = Some(
            now + if reason == StepDownReason::AddressFailure {
                self.config.timings.lease_duration()
            } else {
                self.config.timings.retry_period()
            },
        );
        let role = self.role;
        self.set_role(role);
        (removed, released, errors)
    }

    pub(super) async fn on_timer(&mut self) {
        let now = Instant::now();
        match self.role {
            Role::Leader => self.leader_timer(now).await,
            Role::Follower => {
                if self.fast_due().is_some_and(|d| now >= d) {
                    self.fast_takeover().await;
                    if self.role != Role::Follower {
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

    pub(super) async fn on_link(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::CarrierDown => {
                if self.carrier_down_since.is_none() {
                    self.carrier_down_since = Some(Instant::now());
                    self.update_status(|s| s.carrier_up = false);
                    self.emit(ControllerEvent::CarrierChanged { up: false });
                }
                if self.fast() && self.role == Role::Leader {
                    // Followers take over within milliseconds of our
                    // silence: a link that comes back must not bring a
                    // stale VIP with it. It returns after a renewal.
                    self.withdraw_until_renewed().await;
                }
            }
            LinkEvent::CarrierUp => {
                if self.carrier_down_since.take().is_some() {
                    self.update_status(|s| s.carrier_up = true);
                    self.emit(ControllerEvent::CarrierChanged { up: true });
                }
                if self.role == Role::Leader {
                    if self.fast() {
                        // Never from memory: renew first; a follower may
                        // have taken over meanwhile.
                        self.readd_pending = true;
                        self.next_renew = Instant::now();
                    } else {
                        // A link-down may have flushed addresses (IPv6 by
                        // default): put them back, then burst again, since
                        // the segment may have forgotten us.
                        self.keep_addresses(true).await;
                    }
                }
            }
            LinkEvent::AddressRemoved(addr) => {
                // While the carrier is down, carrier-up puts it back.
                if self.role == Role::Leader
                    && self.carrier_up()
                    && self.vips.iter().any(|v| v.addr() == addr)
                {
                    if self.fast() {
                        // Gone by its lifetime (a stall) or by someone
                        // else: back only after a successful renewal.
                        self.stop_heartbeats();
                        self.readd_pending = true;
                        self.next_renew = Instant::now();
                    } else {
                        self.keep_addresses(false).await;
                    }
                }
            }
        }
    }

    pub(super) async fn on_cordon(&mut self) {
        let c = *self.cordon.borrow_and_update();
        self.update_status(|s| s.cordoned = c.cordoned);
        if !c.cordoned {
            self.handover_blocked_until = None;
            self.handover_backoff = Duration::ZERO;
            self.handed_over_at = None;
        }
        if self.role == Role::Leader && self.cordon_wants_handover(Instant::now()) {
            self.handover().await;
        }
    }

    pub(super) async fn shutdown(mut self) -> ShutdownReport {
        let started = Instant::now();
        let was_leader = self.role == Role::Leader;
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
        errors: Vec<String>,
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
