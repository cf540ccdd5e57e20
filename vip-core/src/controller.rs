//! The controller: one task, an explicit state machine over the elector,
//! the address manager, the announcer, the health probe and the cordon
//! watch. It keeps the invariants of `design.md`:
//!
//! 1. The VIP is on this node only while this node's lease is valid by its
//!    own conservative clock (last successful renewal's send time plus the
//!    renew deadline).
//! 2. Every way out of leadership runs: stop announcing, remove the
//!    address, release the lease (bounded), carry on as a follower (or
//!    exit on shutdown). Losing leadership never ends the task.
//! 3. A follower never holds the VIP: a stale address is removed at start
//!    and on every reconcile.
//! 4. On takeover: add, announce at once as a burst, then refresh
//!    periodically; re-announce at once after carrier-up or a re-add.
//! 5. An unhealthy node does not campaign, and hands the VIP over if it
//!    leads.
//! 6. A cordoned node hands over to an uncordoned one, never leaving the
//!    VIP ownerless when every node is cordoned.
//! 7. Foreign claims are logged and counted; the leader defends at a
//!    bounded rate.
//! 8. The VIP never outlives its daemon: it is added with a finite valid
//!    lifetime that ends, kernel lag included, before the earliest moment
//!    another node may take the lease; every renewal refreshes it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use crate::address::{AddressManager, LinkEvent, Presence};
use crate::announce::{Announcer, Conflict};
use crate::backend::{LockBackend, RecordWatch};
use crate::cordon::{CordonState, CordonWatch};
use crate::election::{Attempt, Elector};
use crate::health::HealthProbe;
use crate::model::{Interface, InterfaceSelector, NodeIdentity, Timings, VipAddress, VipSpec};

/// Errors of controller configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControllerError {
    /// A setting is out of range or inconsistent with another.
    #[error("invalid controller setting {name}={value}: {expected}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is expected.
        expected: String,
    },
}

fn invalid(
    name: &'static str,
    value: impl std::fmt::Debug,
    expected: impl Into<String>,
) -> ControllerError {
    ControllerError::InvalidSetting {
        name,
        value: format!("{value:?}"),
        expected: expected.into(),
    }
}

/// How the leader announces its VIPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnouncePolicy {
    /// Announcements in the takeover burst (the first is sent at once).
    pub burst_count: u32,
    /// Spacing of the burst.
    pub burst_spacing: Duration,
    /// Period of the refresh after the burst (kube-vip's `vip_arpRate`).
    pub refresh: Duration,
}

impl Default for AnnouncePolicy {
    /// 3 announcements 400 ms apart (all within the first second), then
    /// every 3 s.
    fn default() -> Self {
        Self {
            burst_count: 3,
            burst_spacing: Duration::from_millis(400),
            refresh: Duration::from_secs(3),
        }
    }
}

/// How the local control plane's health is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Time between checks.
    pub period: Duration,
    /// Bound on one check.
    pub timeout: Duration,
    /// Consecutive failures that make a healthy node unhealthy.
    pub failure_threshold: u32,
    /// Consecutive successes that make an unhealthy node healthy again.
    pub success_threshold: u32,
}

impl Default for HealthPolicy {
    /// Every 2 s, 1 s timeout, 3 failures to go unhealthy (about 6 s), 2
    /// successes to come back. A dead local API server is noticed sooner
    /// by the leader: its renewals fail and it steps down at the renew
    /// deadline.
    fn default() -> Self {
        Self {
            period: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            failure_threshold: 3,
            success_threshold: 2,
        }
    }
}

/// Everything the controller needs to know besides its parts.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This node's identity.
    pub identity: NodeIdentity,
    /// The VIPs.
    pub vips: VipSpec,
    /// Where they go.
    pub interface: InterfaceSelector,
    /// Election timings.
    pub timings: Timings,
    /// Bound on one backend request (below the retry period).
    pub request_timeout: Duration,
    /// Announcement burst and refresh.
    pub announce: AnnouncePolicy,
    /// Health checks.
    pub health: HealthPolicy,
    /// Least time between two defensive announcements of one VIP.
    pub defence_interval: Duration,
    /// How late the kernel may delete an expired address (Linux: up to
    /// about a second).
    pub kernel_lag: Duration,
    /// Extra margin taken off the address lifetime for the time the
    /// kernel takes to apply it.
    pub lifetime_margin: Duration,
    /// Bound on the release of the lease when stepping down.
    pub release_timeout: Duration,
    /// How long a cordoned follower leaves a free or expired lease to
    /// uncordoned nodes before it takes it itself.
    pub cordon_grace: Duration,
    /// Least time between two cordon hand-overs after one that found no
    /// taker (doubles up to 16 times this).
    pub handover_backoff: Duration,
    /// How long the carrier may be down before the leader hands over.
    pub carrier_grace: Duration,
}

impl ControllerConfig {
    /// A configuration with the default policies for `identity` and `vips`
    /// on `interface`, with `timings`.
    pub fn new(
        identity: NodeIdentity,
        vips: VipSpec,
        interface: InterfaceSelector,
        timings: Timings,
    ) -> Self {
        let retry = timings.retry_period();
        Self {
            identity,
            vips,
            interface,
            timings,
            request_timeout: retry.mul_f64(0.75),
            announce: AnnouncePolicy::default(),
            health: HealthPolicy::default(),
            defence_interval: Duration::from_secs(1),
            kernel_lag: Duration::from_secs(1),
            lifetime_margin: Duration::from_millis(100),
            release_timeout: Duration::from_millis(500),
            cordon_grace: timings.lease_duration(),
            handover_backoff: Duration::from_secs(30),
            carrier_grace: timings.renew_deadline(),
        }
    }

    /// The longest valid lifetime an address may get right after a
    /// renewal sent now: the lease duration less the kernel's lag and the
    /// margin, in whole seconds.
    pub fn max_address_lifetime(&self) -> Duration {
        let room = self
            .timings
            .lease_duration()
            .saturating_sub(self.kernel_lag + self.lifetime_margin);
        Duration::from_secs(room.as_secs())
    }

    /// The shortest lease duration whose address lifetime outlasts a retry
    /// period plus a request, with these settings.
    pub fn min_lease_duration(&self) -> Duration {
        let need = self.timings.retry_period() + self.request_timeout;
        (1..=3600)
            .map(Duration::from_secs)
            .find(|ld| {
                let room = ld.saturating_sub(self.kernel_lag + self.lifetime_margin);
                Duration::from_secs(room.as_secs()) > need
            })
            .unwrap_or(Duration::from_secs(3600))
    }

    /// Check that the settings can keep the invariants.
    pub fn validate(&self) -> Result<(), ControllerError> {
        let retry = self.timings.retry_period();
        if self.request_timeout.is_zero() || self.request_timeout >= retry {
            return Err(invalid(
                "request_timeout",
                self.request_timeout,
                format!("positive and below the retry period ({retry:?})"),
            ));
        }
        let a = &self.announce;
        if a.burst_count == 0
            || a.refresh.is_zero()
            || (a.burst_count > 1 && a.burst_spacing.is_zero())
        {
            return Err(invalid(
                "announce",
                a,
                "at least one burst announcement, positive spacing and refresh",
            ));
        }
        if a.refresh < Duration::from_millis(500) {
            return Err(invalid("announce.refresh", a.refresh, "at least 500 ms"));
        }
        let h = &self.health;
        if h.period.is_zero()
            || h.timeout.is_zero()
            || h.failure_threshold == 0
            || h.success_threshold == 0
        {
            return Err(invalid(
                "health",
                h,
                "positive period, timeout and thresholds",
            ));
        }
        if self.defence_interval.is_zero() {
            return Err(invalid(
                "defence_interval",
                self.defence_interval,
                "positive",
            ));
        }
        let lifetime = self.max_address_lifetime();
        // The address must outlive the next renewal, or it would blink.
        if lifetime <= retry + self.request_timeout {
            return Err(invalid(
                "lease_duration",
                self.timings.lease_duration(),
                format!(
                    "long enough that the VIP's kernel lifetime (lease duration - {:?} kernel lag - {:?} margin, in whole seconds = {:?}) outlasts a retry period plus a request ({:?}); use at least {} s",
                    self.kernel_lag,
                    self.lifetime_margin,
                    lifetime,
                    retry + self.request_timeout,
                    self.min_lease_duration().as_secs()
                ),
            ));
        }
        Ok(())
    }
}

/// The controller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Resolving the interface and reading the record.
    Starting,
    /// Not leading; never holds the VIP.
    Follower,
    /// Holds the lease and the VIP.
    Leader,
    /// Shutting down.
    Stopping,
    /// Stopped.
    Stopped,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Starting => "starting",
            Self::Follower => "follower",
            Self::Leader => "leader",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        })
    }
}

/// Why the leader stepped down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDownReason {
    /// No successful renewal within the renew deadline.
    RenewDeadline,
    /// Someone else holds the lease now.
    LeaseLost,
    /// The local control plane is unhealthy.
    Unhealthy,
    /// The node is cordoned and another node can take over.
    Cordoned,
    /// The VIP's interface has had no carrier for the carrier grace.
    CarrierDown,
    /// The address could not be added or kept.
    AddressFailure,
    /// Shutdown was requested.
    Shutdown,
}

impl std::fmt::Display for StepDownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::RenewDeadline => "renew deadline passed",
            Self::LeaseLost => "lease lost to another holder",
            Self::Unhealthy => "local API server unhealthy",
            Self::Cordoned => "node cordoned",
            Self::CarrierDown => "carrier down",
            Self::AddressFailure => "address could not be kept",
            Self::Shutdown => "shutdown",
        })
    }
}

/// Something the controller did or saw; delivered to an [`Observer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerEvent {
    /// The lease was acquired (or kept after a restart).
    Acquired {
        /// Whether it was taken from someone else or from nobody (`false`:
        /// this node already held it, e.g. after a restart).
        new: bool,
    },
    /// A renewal succeeded.
    Renewed {
        /// Its round trip.
        latency: Duration,
    },
    /// A renewal failed.
    RenewFailed {
        /// Why.
        error: String,
    },
    /// Leadership ended.
    SteppedDown {
        /// Why.
        reason: StepDownReason,
        /// Whether the lease was released.
        released: bool,
    },
    /// A VIP was announced once.
    Announced {
        /// The VIP.
        address: IpAddr,
    },
    /// An announcement failed.
    AnnounceFailed {
        /// The VIP.
        address: IpAddr,
        /// Why.
        error: String,
    },
    /// A VIP was added.
    AddressAdded {
        /// The VIP.
        address: IpAddr,
    },
    /// A VIP was removed (step-down or stale).
    AddressRemoved {
        /// The VIP.
        address: IpAddr,
        /// Whether it was a stale address found on a follower.
        stale: bool,
    },
    /// A VIP removed by someone else was put back.
    AddressRestored {
        /// The VIP.
        address: IpAddr,
    },
    /// Another host claims one of our VIPs.
    Conflict(Conflict),
    /// A defensive announcement was sent for a claimed VIP.
    Defended {
        /// The VIP.
        address: IpAddr,
    },
    /// The local control plane's health changed.
    HealthChanged {
        /// Healthy now.
        healthy: bool,
        /// The last failure, when unhealthy.
        reason: Option<String>,
    },
    /// The carrier changed.
    CarrierChanged {
        /// Up now.
        up: bool,
    },
    /// The record's holder changed, as observed.
    HolderChanged {
        /// The new holder (empty when released).
        holder: String,
    },
    /// A non-fatal error (interface resolution, removal, subscription).
    Error {
        /// What failed.
        error: String,
    },
}

/// Receives every [`ControllerEvent`], synchronously, in order (metrics,
/// logs, tests). Keep it cheap.
pub trait Observer: Send + Sync + 'static {
    /// One event.
    fn on_event(&self, event: &ControllerEvent);
}

/// Counters of what the controller did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Leaderships begun.
    pub acquisitions: u64,
    /// Successful renewals.
    pub renewals: u64,
    /// Failed renewal attempts.
    pub renewal_failures: u64,
    /// Leaderships ended.
    pub step_downs: u64,
    /// Single announcements sent.
    pub announcements: u64,
    /// Foreign claims seen while leading.
    pub conflicts: u64,
    /// Defensive announcements.
    pub defences: u64,
    /// VIPs put back after someone removed them.
    pub address_restores: u64,
    /// Stale VIPs removed while following.
    pub stale_removals: u64,
}

/// What observers see of the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub identity: String,
    /// The role.
    pub role: Role,
    /// Since when.
    pub role_since: Instant,
    /// The holder as last observed (empty: released; `None`: unknown).
    pub holder: Option<String>,
    /// The interface, once resolved.
    pub interface: Option<Interface>,
    /// When the last successful renewal was sent.
    pub last_renewal: Option<Instant>,
    /// Until when this node may lead without another renewal.
    pub valid_until: Option<Instant>,
    /// The local control plane's health (`None` until first checked).
    pub healthy: Option<bool>,
    /// This node is cordoned.
    pub cordoned: bool,
    /// The interface has carrier.
    pub carrier_up: bool,
    /// The VIPs are on this node.
    pub addresses_present: bool,
    /// The last time the loop made progress (for a liveness probe).
    pub last_progress: Instant,
    /// Counters.
    pub counters: Counters,
}

/// What shutdown did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// The node was leading when asked to stop.
    pub was_leader: bool,
    /// VIPs removed.
    pub removed: Vec<IpAddr>,
    /// The lease was released.
    pub released: bool,
    /// What failed on the way.
    pub errors: Vec<String>,
    /// How long it took.
    pub elapsed: Duration,
}

/// A running controller.
#[derive(Debug)]
pub struct ControllerHandle {
    status: watch::Receiver<Status>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<ShutdownReport>,
}

impl ControllerHandle {
    /// The status, updated on every change.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Run the graceful order (stop announcing, remove, release) and stop.
    pub async fn shutdown(mut self) -> ShutdownReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => ShutdownReport {
                was_leader: false,
                removed: vec![],
                released: false,
                errors: vec![format!("controller task failed: {e}")],
                elapsed: Duration::ZERO,
            },
        }
    }

    /// Stop the task at once, as a crash would: nothing is withdrawn. For
    /// tests of what a dead daemon leaves behind.
    pub fn abort(self) {
        self.task.abort();
    }
}

/// The controller's parts and configuration, ready to spawn.
pub struct Controller {
    config: ControllerConfig,
    backend: Arc<dyn LockBackend>,
    addresses: Arc<dyn AddressManager>,
    announcer: Arc<dyn Announcer>,
    health: Option<Arc<dyn HealthProbe>>,
    cordon: Option<CordonWatch>,
    observer: Option<Arc<dyn Observer>>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("config", &self.config)
            .field("backend", &self.backend.describe())
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller over the three required parts. Without a health
    /// probe the node counts as healthy; without a cordon watch, as
    /// uncordoned.
    pub fn new(
        config: ControllerConfig,
        backend: Arc<dyn LockBackend>,
        addresses: Arc<dyn AddressManager>,
        announcer: Arc<dyn Announcer>,
    ) -> Self {
        Self {
            config,
            backend,
            addresses,
            announcer,
            health: None,
            cordon: None,
            observer: None,
        }
    }

    /// Gate campaigning on this probe of the local control plane.
    pub fn with_health(mut self, probe: Arc<dyn HealthProbe>) -> Self {
        self.health = Some(probe);
        self
    }

    /// Follow this node's cordon state.
    pub fn with_cordon(mut self, cordon: CordonWatch) -> Self {
        self.cordon = Some(cordon);
        self
    }

    /// Deliver every event to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Validate the configuration and start the controller task (and its
    /// health-check task) on the current tokio runtime.
    pub fn spawn(self) -> Result<ControllerHandle, ControllerError> {
        self.config.validate()?;
        let now = Instant::now();
        let status = Status {
            identity: self.config.identity.to_string(),
            role: Role::Starting,
            role_since: now,
            holder: None,
            interface: None,
            last_renewal: None,
            valid_until: None,
            healthy: None,
            cordoned: false,
            carrier_up: true,
            addresses_present: false,
            last_progress: now,
            counters: Counters::default(),
        };
        let (status_tx, status_rx) = watch::channel(status);
        let (stop_tx, stop_rx) = oneshot::channel();
        let mut keepalive = KeepAlive::default();
        let health_rx = match &self.health {
            Some(probe) => spawn_health_monitor(probe.clone(), self.config.health),
            None => {
                let (tx, rx) = watch::channel(HealthState::Healthy);
                keepalive.health = Some(tx);
                rx
            }
        };
        let elector = Elector::new(
            self.backend.clone(),
            self.config.identity.clone(),
            self.config.timings,
            self.config.request_timeout,
        );
        let cordon = self.cordon.unwrap_or_else(|| {
            let (tx, rx) = watch::channel(CordonState::default());
            keepalive.cordon = Some(tx);
            rx
        });
        let run = Run {
            vips: self.config.vips.addresses().to_vec(),
            config: self.config,
            elector,
            addresses: self.addresses,
            announcer: self.announcer,
            observer: self.observer,
            status: status_tx,
            health: health_rx,
            cordon,
            record_watch: None,
            link_events: None,
            conflicts: None,
            interface: None,
            role: Role::Starting,
            next_renew: now,
            next_announce: None,
            burst_left: 0,
            last_defence: HashMap::new(),
            free_since: None,
            handover_blocked_until: None,
            handover_backoff: Duration::ZERO,
            handed_over_at: None,
            carrier_down_since: None,
            hold_off_until: None,
            addresses_present: false,
            health_open: true,
            cordon_open: true,
            _keepalive: keepalive,
        };
        let task = tokio::spawn(run.run(stop_rx));
        Ok(ControllerHandle {
            status: status_rx,
            stop: Some(stop_tx),
            task,
        })
    }
}

/// The health monitor's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HealthState {
    Unknown,
    Healthy,
    Unhealthy(String),
}

fn spawn_health_monitor(
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

/// The running state of the controller task.
struct Run {
    config: ControllerConfig,
    vips: Vec<VipAddress>,
    elector: Elector<dyn LockBackend>,
    addresses: Arc<dyn AddressManager>,
    announcer: Arc<dyn Announcer>,
    observer: Option<Arc<dyn Observer>>,
    status: watch::Sender<Status>,
    health: watch::Receiver<HealthState>,
    cordon: CordonWatch,
    record_watch: Option<RecordWatch>,
    link_events: Option<mpsc::Receiver<LinkEvent>>,
    conflicts: Option<mpsc::Receiver<Conflict>>,
    interface: Option<Interface>,
    role: Role,
    /// Leader: next renewal. Follower: next poll or attempt.
    next_renew: Instant,
    next_announce: Option<Instant>,
    burst_left: u32,
    last_defence: HashMap<IpAddr, Instant>,
    /// When this follower first saw the lease free or expired.
    free_since: Option<Instant>,
    handover_blocked_until: Option<Instant>,
    handover_backoff: Duration,
    handed_over_at: Option<Instant>,
    carrier_down_since: Option<Instant>,
    /// No follower attempt before this (after an error or a step-down), so
    /// a persistent failure never spins.
    hold_off_until: Option<Instant>,
    addresses_present: bool,
    health_open: bool,
    cordon_open: bool,
    _keepalive: KeepAlive,
}

/// Senders of the inputs the caller did not provide, kept so their
/// receivers stay open.
#[derive(Default)]
struct KeepAlive {
    health: Option<watch::Sender<HealthState>>,
    cordon: Option<watch::Sender<CordonState>>,
}

/// What woke the loop.
enum Wake {
    Stop,
    Timer,
    Record,
    RecordClosed,
    Link(Option<LinkEvent>),
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
    fn emit(&self, event: ControllerEvent) {
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

    fn update_status(&self, f: impl FnOnce(&mut Status)) {
        self.status.send_modify(|s| {
            f(s);
            s.last_progress = Instant::now();
        });
    }

    fn count(&self, f: impl FnOnce(&mut Counters)) {
        self.update_status(|s| f(&mut s.counters));
    }

    fn set_role(&mut self, role: Role) {
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

    fn healthy(&self) -> bool {
        *self.health.borrow() == HealthState::Healthy
    }

    fn cordon_state(&self) -> CordonState {
        *self.cordon.borrow()
    }

    fn carrier_up(&self) -> bool {
        self.carrier_down_since.is_none()
    }

    async fn run(mut self, mut stop: oneshot::Receiver<()>) -> ShutdownReport {
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
                Wake::Health => {
                    self.on_health_change();
                    if self.role == Role::Leader && !self.healthy() {
                        self.step_down(StepDownReason::Unhealthy, true).await;
                    } else if self.role == Role::Follower {
                        self.on_timer().await;
                    }
                }
                Wake::Cordon => self.on_cordon().await,
            }
            self.update_status(|_| {});
        }
        self.shutdown().await
    }

    fn next_deadline(&self) -> Instant {
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
        } else if self.role == Role::Follower && self.eligible() {
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

    /// When the observed lease may be taken by local observation: now when
    /// it is free, ours, or was never observed; else at its expiry.
    fn lease_available_at(&self, now: Instant) -> Instant {
        match self.elector.observed_record() {
            None => now,
            Some(r) if r.record.is_released() => now,
            Some(r) if r.record.holder_identity == self.config.identity.as_str() => now,
            Some(_) => self.elector.observed_expiry().unwrap_or(now),
        }
    }

    fn eligible(&self) -> bool {
        self.healthy() && self.carrier_up()
    }

    fn on_health_change(&mut self) {
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
    async fn attempt(&mut self) -> Option<Attempt> {
        let before = self.elector.observed_holder().map(str::to_string);
        let sent = Instant::now();
        let r = self.elector.try_acquire_or_renew().await;
        self.note_holder(before);
        match r {
            Ok(a) => {
                if matches!(a, Attempt::Leading { acquired: false }) && self.role == Role::Leader {
                    self.count(|c| c.renewals += 1);
                    self.emit(ControllerEvent::Renewed {
                        latency: Instant::now() - sent,
                    });
                }
                Some(a)
            }
            Err(e) => {
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

    fn note_holder(&mut self, before: Option<String>) {
        let after = self.elector.observed_holder().map(str::to_string);
        if after != before
            && let Some(holder) = after.clone()
        {
            self.emit(ControllerEvent::HolderChanged { holder });
        }
        let holder = after;
        self.update_status(|s| s.holder = holder);
    }

    /// The address lifetime to set right now, given the last renewal's
    /// send time: it ends, with the kernel's lag, before anyone else may
    /// take the lease. `None` when there is no room left.
    fn address_lifetime(&self) -> Option<Duration> {
        let sent = self.elector.last_renew_sent()?;
        let end = sent + self.config.timings.lease_duration();
        let room = end
            .checked_duration_since(Instant::now())?
            .checked_sub(self.config.kernel_lag + self.config.lifetime_margin)?;
        let secs = room.as_secs();
        (secs >= 1).then(|| Duration::from_secs(secs))
    }

    /// Put every VIP on the interface with a fresh lifetime. Returns
    /// whether any had to be (re-)added, or `Err` if the invariant cannot
    /// be kept.
    async fn refresh_addresses(&mut self, first: bool) -> Result<bool, ()> {
        let Some(iface) = self.interface.clone() else {
            return Err(());
        };
        let mut added = false;
        for vip in self.vips.clone() {
            if !self.elector.is_leading(Instant::now()) {
                return Err(());
            }
            let Some(lifetime) = self.address_lifetime() else {
                self.emit(ControllerEvent::Error {
                    error: "no room left for the VIP's lifetime before the lease may be taken"
                        .into(),
                });
                return Err(());
            };
            match self
                .addresses
                .ensure_present(&iface, &vip, Some(lifetime))
                .await
            {
                Ok(Presence::Added) => {
                    added = true;
                    if first {
                        self.emit(ControllerEvent::AddressAdded {
                            address: vip.addr(),
                        });
                    } else {
                        self.count(|c| c.address_restores += 1);
                        self.emit(ControllerEvent::AddressRestored {
                            address: vip.addr(),
                        });
                    }
                }
                Ok(Presence::Refreshed) => {}
                Err(e) => {
                    self.emit(ControllerEvent::Error {
                        error: format!("adding {vip} to {}: {e}", iface.name),
                    });
                    return Err(());
                }
            }
        }
        self.addresses_present = true;
        Ok(added)
    }

    /// Invariant 4 while leading: put back any VIP that went, with a fresh
    /// lifetime, and announce anew as a burst if one had to be re-added (or
    /// `always`). Steps down when a VIP cannot be kept; returns whether
    /// this node still leads.
    async fn keep_addresses(&mut self, always: bool) -> bool {
        match self.refresh_addresses(false).await {
            Ok(added) => {
                if added || always {
                    self.burst_left = self.config.announce.burst_count;
                    self.announce_all().await;
                }
                true
            }
            Err(()) => {
                self.step_down(StepDownReason::AddressFailure, true).await;
                false
            }
        }
    }

    async fn become_leader(&mut self, new: bool) {
        self.free_since = None;
        self.role = Role::Leader;
        self.next_renew = self.elector.last_renew_sent().unwrap_or_else(Instant::now)
            + self.config.timings.retry_period();
        match self.refresh_addresses(true).await {
            Ok(_) => {}
            Err(()) => {
                self.step_down(StepDownReason::AddressFailure, true).await;
                return;
            }
        }
        // Announce at once, then the rest of the burst.
        self.burst_left = self.config.announce.burst_count;
        self.announce_all().await;
        self.count(|c| c.acquisitions += 1);
        self.emit(ControllerEvent::Acquired { new });
        self.set_role(Role::Leader);
        if let Some(t) = self.handed_over_at.take()
            && self.cordon_state().cordoned
        {
            // A hand-over found no taker: back off before the next one.
            self.handover_backoff = (self.handover_backoff * 2).clamp(
                self.config.handover_backoff,
                self.config.handover_backoff * 16,
            );
            self.handover_blocked_until = Some(Instant::now() + self.handover_backoff);
            tracing::warn!(after = ?Instant::now().duration_since(t), backoff = ?self.handover_backoff, "cordon hand-over found no taker; keeping the VIP");
        }
    }

    /// One announcement of every VIP; schedules the next.
    async fn announce_all(&mut self) {
        let Some(iface) = self.interface.clone() else {
            return;
        };
        for vip in self.vips.clone() {
            match self.announcer.announce(&iface, vip.addr()).await {
                Ok(()) => {
                    self.count(|c| c.announcements += 1);
                    self.emit(ControllerEvent::Announced {
                        address: vip.addr(),
                    });
                }
                Err(e) => self.emit(ControllerEvent::AnnounceFailed {
                    address: vip.addr(),
                    error: e.to_string(),
                }),
            }
        }
        let now = Instant::now();
        self.burst_left = self.burst_left.saturating_sub(1);
        self.next_announce = Some(if self.burst_left > 0 {
            now + self.config.announce.burst_spacing
        } else {
            now + self.config.announce.refresh
        });
    }

    /// Invariant 3: a follower holds no VIP.
    async fn reconcile_follower(&mut self) {
        let Some(iface) = self.interface.clone() else {
            return;
        };
        for vip in self.vips.clone() {
            match self.addresses.is_present(&iface, &vip).await {
                Ok(false) => {}
                Ok(true) => match self.addresses.ensure_absent(&iface, &vip).await {
                    Ok(_) => {
                        self.count(|c| c.stale_removals += 1);
                        self.emit(ControllerEvent::AddressRemoved {
                            address: vip.addr(),
                            stale: true,
                        });
                    }
                    Err(e) => self.emit(ControllerEvent::Error {
                        error: format!("removing stale {vip}: {e}"),
                    }),
                },
                Err(e) => self.emit(ControllerEvent::Error {
                    error: format!("checking {vip}: {e}"),
                }),
            }
        }
        self.addresses_present = false;
    }

    /// Invariant 2: stop announcing, remove, release (bounded), follow.
    async fn step_down(
        &mut self,
        reason: StepDownReason,
        release: bool,
    ) -> (Vec<IpAddr>, bool, Vec<String>) {
        // 1. Stop announcing.
        self.next_announce = None;
        self.burst_left = 0;
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

    async fn on_timer(&mut self) {
        let now = Instant::now();
        match self.role {
            Role::Leader => self.leader_timer(now).await,
            Role::Follower => self.follower_timer(now).await,
            _ => {}
        }
    }

    async fn leader_timer(&mut self, now: Instant) {
        // Invariant 1: never past our own validity.
        let Some(valid_until) = self.elector.valid_until() else {
            self.step_down(StepDownReason::LeaseLost, false).await;
            return;
        };
        if now >= valid_until {
            self.step_down(StepDownReason::RenewDeadline, true).await;
            return;
        }
        if let Some(since) = self.carrier_down_since
            && now >= since + self.config.carrier_grace
        {
            self.step_down(StepDownReason::CarrierDown, true).await;
            return;
        }
        if now >= self.next_renew {
            self.next_renew = now + self.config.timings.retry_period();
            let attempt = tokio::select! {
                a = self.attempt() => a,
                () = sleep_until(valid_until) => None,
            };
            match attempt {
                Some(Attempt::Leading { .. }) => {
                    // Someone may have removed it meanwhile.
                    if !self.keep_addresses(false).await {
                        return;
                    }
                    let (last, valid) =
                        (self.elector.last_renew_sent(), self.elector.valid_until());
                    self.update_status(|s| {
                        s.last_renewal = last;
                        s.valid_until = valid;
                    });
                    if self.cordon_wants_handover(Instant::now()) {
                        self.handover().await;
                        return;
                    }
                }
                Some(Attempt::Held { .. }) => {
                    self.step_down(StepDownReason::LeaseLost, false).await;
                    return;
                }
                None => {
                    if Instant::now() >= valid_until {
                        self.step_down(StepDownReason::RenewDeadline, true).await;
                        return;
                    }
                }
            }
        }
        if self.next_announce.is_some_and(|a| Instant::now() >= a) {
            self.announce_all().await;
        }
    }

    fn cordon_wants_handover(&self, now: Instant) -> bool {
        let c = self.cordon_state();
        c.cordoned
            && c.schedulable_peers > 0
            && self.handover_blocked_until.is_none_or(|b| now >= b)
    }

    async fn handover(&mut self) {
        self.step_down(StepDownReason::Cordoned, true).await;
        let now = Instant::now();
        self.handed_over_at = Some(now);
        self.free_since = Some(now);
    }

    async fn follower_timer(&mut self, now: Instant) {
        self.reconcile_follower().await;
        self.next_renew = now + self.config.timings.retry_period();
        if !self.eligible() {
            self.free_since = None;
            return;
        }
        let cordoned = self.cordon_state().cordoned;
        let watching = self.record_watch.is_some();
        if cordoned && !watching {
            // Poll, to learn whether the lease is free before waiting.
            let before = self.elector.observed_holder().map(str::to_string);
            if self.elector.refresh().await.is_err() {
                return;
            }
            self.note_holder(before);
        }
        let now = Instant::now();
        if self.hold_off_until.is_some_and(|h| now < h) {
            return;
        }
        if watching || cordoned {
            if now < self.lease_available_at(now) {
                self.free_since = None;
                return;
            }
            let mine = self.elector.observed_holder() == Some(self.config.identity.as_str());
            if cordoned && !mine {
                // Leave a free lease to uncordoned nodes for a while.
                let since = *self.free_since.get_or_insert(now);
                if now < since + self.config.cordon_grace {
                    return;
                }
            }
        }
        match self.attempt().await {
            Some(Attempt::Leading { acquired }) => self.become_leader(acquired).await,
            Some(Attempt::Held { .. }) => {}
            None => self.hold_off_until = Some(Instant::now() + self.config.timings.retry_period()),
        }
    }

    async fn on_record(&mut self) {
        let Some(w) = self.record_watch.as_mut() else {
            return;
        };
        let current = w.borrow_and_update().clone();
        if self.role == Role::Leader
            && current
                .as_ref()
                .is_some_and(|r| r.record.holder_identity == self.config.identity.as_str())
        {
            // Our own writes, possibly late: the elector knows them already.
            return;
        }
        let before = self.elector.observed_holder().map(str::to_string);
        let was_leading = self.role == Role::Leader;
        self.elector.observe(current, Instant::now());
        self.note_holder(before);
        if was_leading && self.elector.valid_until().is_none() {
            // Someone else holds it now: out at once.
            self.step_down(StepDownReason::LeaseLost, false).await;
            return;
        }
        if self.role == Role::Follower
            && self
                .elector
                .observed_record()
                .is_some_and(|r| r.record.is_released())
        {
            // A released lease is taken at once.
            self.on_timer().await;
        }
    }

    async fn on_link(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::CarrierDown => {
                if self.carrier_down_since.is_none() {
                    self.carrier_down_since = Some(Instant::now());
                    self.update_status(|s| s.carrier_up = false);
                    self.emit(ControllerEvent::CarrierChanged { up: false });
                }
            }
            LinkEvent::CarrierUp => {
                if self.carrier_down_since.take().is_some() {
                    self.update_status(|s| s.carrier_up = true);
                    self.emit(ControllerEvent::CarrierChanged { up: true });
                }
                if self.role == Role::Leader {
                    // A link-down may have flushed addresses (IPv6 by
                    // default): put them back, then burst again, since
                    // the segment may have forgotten us.
                    self.keep_addresses(true).await;
                }
            }
            LinkEvent::AddressRemoved(addr) => {
                // While the carrier is down, carrier-up puts it back.
                if self.role == Role::Leader
                    && self.carrier_up()
                    && self.vips.iter().any(|v| v.addr() == addr)
                {
                    self.keep_addresses(false).await;
                }
            }
        }
    }

    async fn on_claim(&mut self, c: Conflict) {
        if self.role != Role::Leader {
            return;
        }
        self.count(|k| k.conflicts += 1);
        let address = c.address;
        self.emit(ControllerEvent::Conflict(c));
        let now = Instant::now();
        let may = self
            .last_defence
            .get(&address)
            .is_none_or(|t| now >= *t + self.config.defence_interval);
        if may && let Some(iface) = self.interface.clone() {
            self.last_defence.insert(address, now);
            if self.announcer.announce(&iface, address).await.is_ok() {
                self.count(|k| {
                    k.defences += 1;
                    k.announcements += 1;
                });
                self.emit(ControllerEvent::Defended { address });
            }
        }
    }

    async fn on_cordon(&mut self) {
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

    async fn shutdown(mut self) -> ShutdownReport {
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

    fn finish(
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
