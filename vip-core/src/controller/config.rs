//! The controller's configuration: election timings, announcement and
//! health policies, the kernel-lifetime budget, and their validation.

use std::time::Duration;

use crate::model::{InterfaceSelector, NodeIdentity, Timings, VipSpec};

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

/// Fenced fast failover: how often the leader sends heartbeats, how many
/// a follower may miss before it probes the VIP, how long the probe waits,
/// and the step of the followers' rank-based stagger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastFailoverPolicy {
    /// Heartbeat interval; zero turns fast failover off (no heartbeats
    /// sent or heeded: failover waits for the lease to expire).
    pub heartbeat: Duration,
    /// Heartbeats (at the sender's own interval) a follower may miss before
    /// it probes the VIP.
    pub misses: u32,
    /// How long the probe of the VIP waits for an answer.
    pub probe_timeout: Duration,
    /// Step of the stagger: a follower of rank `r` (0, 1 or 2, drawn from
    /// its identity and the term) waits `r` steps longer, so that one write
    /// normally wins.
    pub stagger: Duration,
}

impl FastFailoverPolicy {
    /// Fast failover off.
    pub const OFF: Self = Self {
        heartbeat: Duration::ZERO,
        misses: 3,
        probe_timeout: Duration::from_millis(10),
        stagger: Duration::from_millis(5),
    };

    /// Whether heartbeats are sent and heeded.
    pub fn enabled(&self) -> bool {
        !self.heartbeat.is_zero()
    }
}

impl Default for FastFailoverPolicy {
    /// A heartbeat every 10 ms, 3 misses, a 10 ms probe, 5 ms stagger
    /// steps: a dead leader is replaced about 45 ms after its last
    /// heartbeat.
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(10),
            ..Self::OFF
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
    /// Fenced fast failover (used when the controller has a heartbeat
    /// channel).
    pub fast_failover: FastFailoverPolicy,
    /// The lock's name (`namespace/name` of the Lease, or the etcd key),
    /// bound with the cluster identity and the VIPs into the election
    /// scope of heartbeats ([`crate::heartbeat_scope`]).
    pub lock: String,
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
            fast_failover: FastFailoverPolicy::default(),
            lock: "vip".into(),
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
        let f = &self.fast_failover;
        if f.enabled() {
            if f.heartbeat > Duration::from_secs(1) {
                return Err(invalid(
                    "fast_failover.heartbeat",
                    f.heartbeat,
                    "at most 1 s (0 turns fast failover off)",
                ));
            }
            if f.misses == 0 || f.misses > 1000 {
                return Err(invalid("fast_failover.misses", f.misses, "1 to 1000"));
            }
            if f.probe_timeout.is_zero() || f.probe_timeout > Duration::from_secs(1) {
                return Err(invalid(
                    "fast_failover.probe_timeout",
                    f.probe_timeout,
                    "positive and at most 1 s",
                ));
            }
            let detect = f.heartbeat * f.misses + f.probe_timeout + f.stagger * 2;
            if detect >= self.timings.renew_deadline() {
                return Err(invalid(
                    "fast_failover",
                    f,
                    format!(
                        "heartbeat x misses + probe + 2 stagger steps ({detect:?}) below the renew deadline ({:?}), or fast failover would be slower than the lease",
                        self.timings.renew_deadline()
                    ),
                ));
            }
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
