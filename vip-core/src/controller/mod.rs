//! The controller: one task, an explicit state machine over the elector,
//! the address manager, the announcer, the health probe and the cordon
//! watch. It keeps these invariants (`docs/architecture.md`):
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
//!
//! The files, one concern each. Each concern's type owns its state and
//! decides without IO (unit-tested without a runtime); its `impl Run`
//! carries the decisions out. `run.rs` gathers the wake-ups and hands each
//! to its concern.
//!
//! | file | concern | its type |
//! |---|---|---|
//! | `config.rs` | [`ControllerConfig`] and its policies, validated | |
//! | `status.rs` | what the world sees: [`Role`], [`StepDownReason`], [`ControllerEvent`], [`Status`], [`ShutdownReport`] | |
//! | `report.rs` | publishing the status and the events | `Report` |
//! | `run.rs` | the task: start-up, the loop over wake-ups, shutdown | `Run`, `Inputs` |
//! | `leadership.rs` | the lease: role, renew/poll schedule, hold-off, election attempts, stepping down | `Leadership` |
//! | `leader.rs`, `follower.rs` | the two roles' rounds, in order, over the concerns | |
//! | `vips.rs` | the VIPs on the interface: lifetimes, presence, carrier, link events | `Vips` |
//! | `announce.rs` | announcements (burst, refresh) and foreign claims (bounded defence) | `Announcements` |
//! | `health.rs` | the health monitor task and the controller's gate | `HealthGate` |
//! | `cordon.rs` | the cordon: hand-over and its back-off, a cordoned follower's grace | `Cordon` |
//! | `fast.rs` | fast failover's decisions: beats heard, the armed holder, probe schedule, stagger, yield, the beat plan | `FastFailover` |
//! | `heartbeat.rs` | fast failover's sender task | `Beacon` |

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::address::AddressManager;
use crate::announce::Announcer;
use crate::backend::LockBackend;
use crate::cordon::{CordonState, CordonWatch};
use crate::election::Elector;
use crate::health::HealthProbe;
use crate::heartbeat::HeartbeatChannel;

mod announce;
mod config;
mod cordon;
mod fast;
mod follower;
mod health;
mod heartbeat;
mod leader;
mod leadership;
mod report;
mod run;
mod status;
mod vips;

pub use config::{
    AnnouncePolicy, ControllerConfig, ControllerError, FastFailoverPolicy, HealthPolicy,
};
pub use status::{
    ControllerEvent, Counters, Failure, Observer, Role, ShutdownReport, Status, StepDownReason,
};

use announce::Announcements;
use cordon::Cordon;
use fast::FastFailover;
use health::{HealthGate, HealthState, spawn_health_monitor};
use heartbeat::Beacon;
use leadership::Leadership;
use report::Report;
use run::{Inputs, KeepAlive, Run};
use vips::Vips;

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
                errors: vec![Failure::new("controller task failed", e)],
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
    heartbeats: Option<Arc<dyn HeartbeatChannel>>,
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
            heartbeats: None,
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

    /// Fenced fast failover over this heartbeat channel (when the
    /// configuration's heartbeat interval is not zero): send heartbeats
    /// while leading, and replace a silent holder whose VIP no longer
    /// answers by a compare-and-swap on the lease. Without it, or with
    /// the interval at zero, a dead leader is replaced when its lease
    /// expires.
    pub fn with_heartbeats(mut self, channel: Arc<dyn HeartbeatChannel>) -> Self {
        self.heartbeats = Some(channel);
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
        let heartbeats = self
            .heartbeats
            .filter(|_| self.config.fast_failover.enabled());
        let fast = FastFailover::new(
            heartbeats.is_some(),
            self.config.fast_failover,
            self.config.identity.as_str(),
        );
        let run = Run {
            elector,
            addresses: self.addresses,
            announcer: self.announcer,
            report: Report {
                status: status_tx,
                observer: self.observer,
            },
            inputs: Inputs::new(heartbeats, keepalive),
            lease: Leadership::new(&self.config.timings, now),
            vips: Vips::new(&self.config),
            announcements: Announcements::new(self.config.announce, self.config.defence_interval),
            health: HealthGate::new(health_rx),
            cordon: Cordon::new(
                cordon,
                self.config.cordon_grace,
                self.config.handover_backoff,
            ),
            fast,
            beacon: Beacon::new(),
            config: self.config,
        };
        let task = tokio::spawn(run.run(stop_rx));
        Ok(ControllerHandle {
            status: status_rx,
            stop: Some(stop_tx),
            task,
        })
    }
}
