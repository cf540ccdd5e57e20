//! Metrics (Prometheus text format), `/healthz` and `/readyz`, on
//! kube-vip's `prometheus_server` address (default `:2112`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::time::Instant;
use vip_core::{ControllerEvent, DropKind, HeartbeatDrops, Observer, Role, Status};
use vip_lease::EventMetrics;

/// Labels of `vip_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// Labels of `vip_step_downs_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// The metrics of one daemon; the [`Observer`] that feeds them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    leader: Gauge,
    transitions: Counter,
    renewal_latency: Histogram,
    renewal_failures: Counter,
    announcements: Counter,
    address_present: Gauge,
    conflicts: Counter,
    healthy: Gauge<f64, AtomicU64>,
    step_downs: Family<ReasonLabels, Counter>,
    restores: Counter,
    heartbeats_sent: Counter,
    heartbeats_received: Counter,
    fast_takeovers: Counter,
    fast_takeovers_declined: Counter,
    yields: Counter,
    heartbeat_drops: Family<ReasonLabels, Counter>,
    /// The controller's drop table, read when the metrics are encoded.
    drop_table: OnceLock<Arc<HeartbeatDrops>>,
    events_written: Counter,
    events_dropped: Counter,
    events_failed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vip");
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this node holds the lease and the VIP",
            leader.clone(),
        );
        let transitions = Counter::default();
        registry.register(
            "leader_transitions",
            "Leaderships this node began",
            transitions.clone(),
        );
        let renewal_latency =
            Histogram::new([0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]);
        registry.register(
            "renewal_duration_seconds",
            "Round trip of successful lease renewals",
            renewal_latency.clone(),
        );
        let renewal_failures = Counter::default();
        registry.register(
            "renewal_failures",
            "Failed lease renewal attempts",
            renewal_failures.clone(),
        );
        let announcements = Counter::default();
        registry.register(
            "announcements",
            "Gratuitous ARP / unsolicited NA announcements sent (per VIP, both ARP forms count once)",
            announcements.clone(),
        );
        let address_present = Gauge::default();
        registry.register(
            "address_present",
            "1 while the VIP is on this node",
            address_present.clone(),
        );
        let conflicts = Counter::default();
        registry.register(
            "conflicts",
            "Claims of our VIP by another MAC while leading",
            conflicts.clone(),
        );
        let healthy = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "local_api_healthy",
            "1 when the local API server's /readyz passes, 0 when not, NaN before the first check",
            healthy.clone(),
        );
        healthy.set(f64::NAN);
        let step_downs = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "step_downs",
            "Leaderships ended, by reason",
            step_downs.clone(),
        );
        let restores = Counter::default();
        registry.register(
            "address_restores",
            "VIPs put back after someone else removed them",
            restores.clone(),
        );
        let heartbeats_sent = Counter::default();
        registry.register(
            "heartbeats_sent",
            "Layer-2 heartbeats sent while leading (fast failover)",
            heartbeats_sent.clone(),
        );
        let heartbeats_received = Counter::default();
        registry.register(
            "heartbeats_received",
            "Heartbeats of this election heard from other nodes",
            heartbeats_received.clone(),
        );
        let fast_takeovers = Counter::default();
        registry.register(
            "fast_takeovers",
            "Leaderships taken from a silent holder whose VIP no longer answered, by lease compare-and-swap",
            fast_takeovers.clone(),
        );
        let fast_takeovers_declined = Counter::default();
        registry.register(
            "fast_takeovers_declined",
            "Probes of a silent holder's VIP that were still answered (no early takeover)",
            fast_takeovers_declined.clone(),
        );
        let yields = Counter::default();
        registry.register(
            "yields",
            "Leaderships given up on hearing a higher term from another holder",
            yields.clone(),
        );
        let heartbeat_drops = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "heartbeat_frames_dropped",
            "Heartbeat frames not acted on, by reason: bad_code, unknown_key, other_election, replay, old_version, malformed",
            heartbeat_drops.clone(),
        );
        let events_written = Counter::default();
        registry.register(
            "events_written",
            "Kubernetes Events created or updated (leadership changes on the Lease and the Node)",
            events_written.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Leadership changes not recorded as Events because the event queue was full",
            events_dropped.clone(),
        );
        let events_failed = Counter::default();
        registry.register(
            "events_failed",
            "Kubernetes Event writes that failed or timed out",
            events_failed.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register("build_info", "Always 1, labelled with the version", build);
        Self {
            registry,
            leader,
            transitions,
            renewal_latency,
            renewal_failures,
            announcements,
            address_present,
            conflicts,
            healthy,
            step_downs,
            restores,
            heartbeats_sent,
            heartbeats_received,
            fast_takeovers,
            fast_takeovers_declined,
            yields,
            heartbeat_drops,
            drop_table: OnceLock::new(),
            events_written,
            events_dropped,
            events_failed,
        }
    }

    /// Take in the gauges from a status snapshot.
    pub fn observe_status(&self, s: &Status) {
        self.leader.set(i64::from(s.role == Role::Leader));
        self.address_present.set(i64::from(s.addresses_present));
        match s.healthy {
            Some(h) => self.healthy.set(if h { 1.0 } else { 0.0 }),
            None => self.healthy.set(f64::NAN),
        };
    }

    /// Export the controller's heartbeat drop table (its counts are read
    /// at every encoding).
    pub fn watch_heartbeat_drops(&self, drops: Arc<HeartbeatDrops>) {
        let _ = self.drop_table.set(drops);
    }

    /// Bring the drop counters up to the table.
    fn sync_drops(&self) {
        let Some(table) = self.drop_table.get() else {
            return;
        };
        let total = table.snapshot().total;
        for kind in DropKind::ALL {
            let counter = self.heartbeat_drops.get_or_create(&ReasonLabels {
                reason: kind.label().into(),
            });
            counter.inc_by(total.get(kind).saturating_sub(counter.get()));
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        self.sync_drops();
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Observer for Metrics {
    fn on_event(&self, event: &ControllerEvent) {
        match event {
            ControllerEvent::Acquired { .. } => {
                self.transitions.inc();
            }
            ControllerEvent::Renewed { latency } => {
                self.renewal_latency.observe(latency.as_secs_f64())
            }
            ControllerEvent::RenewFailed { .. } => {
                self.renewal_failures.inc();
            }
            ControllerEvent::Announced { .. } | ControllerEvent::Defended { .. } => {
                self.announcements.inc();
            }
            ControllerEvent::Conflict(_) => {
                self.conflicts.inc();
            }
            ControllerEvent::SteppedDown { reason, .. } => {
                self.step_downs
                    .get_or_create(&ReasonLabels {
                        reason: format!("{reason:?}"),
                    })
                    .inc();
            }
            ControllerEvent::AddressRestored { .. } => {
                self.restores.inc();
            }
            ControllerEvent::HeartbeatSent => {
                self.heartbeats_sent.inc();
            }
            ControllerEvent::HeartbeatHeard { .. } => {
                self.heartbeats_received.inc();
            }
            ControllerEvent::FastTakeover { .. } => {
                self.fast_takeovers.inc();
            }
            ControllerEvent::FastTakeoverDeclined { .. } => {
                self.fast_takeovers_declined.inc();
            }
            ControllerEvent::Yielded { .. } => {
                self.yields.inc();
            }
            _ => {}
        }
    }
}

impl EventMetrics for Metrics {
    fn written(&self) {
        self.events_written.inc();
    }
    fn dropped(&self) {
        self.events_dropped.inc();
    }
    fn failed(&self) {
        self.events_failed.inc();
    }
}

/// Whether the controller loop is making progress: it wakes at least every
/// retry period, so a loop silent for longer than `stall` is stuck.
pub fn healthy(s: &Status, now: Instant, stall: Duration) -> bool {
    s.role != Role::Stopped && now.saturating_duration_since(s.last_progress) <= stall
}

fn response(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Serve `/metrics`, `/healthz` and `/readyz` on `listener` until the task
/// is dropped. `stall` is how long the loop may go without progress before
/// `/healthz` fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    status: watch::Receiver<Status>,
    stall: Duration,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let metrics = metrics.clone();
        let status = status.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let s = status.borrow().clone();
                metrics.observe_status(&s);
                let r = match req.uri().path() {
                    "/metrics" => response(
                        StatusCode::OK,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        metrics.encode(),
                    ),
                    "/healthz" | "/livez" => {
                        if healthy(&s, Instant::now(), stall) {
                            response(StatusCode::OK, "text/plain", "ok\n".into())
                        } else {
                            response(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "text/plain",
                                format!(
                                    "election loop stalled: no progress for {:?}\n",
                                    Instant::now().saturating_duration_since(s.last_progress)
                                ),
                            )
                        }
                    }
                    "/readyz" => match s.role {
                        Role::Follower | Role::Leader => {
                            response(StatusCode::OK, "text/plain", format!("ok ({})\n", s.role))
                        }
                        other => response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "text/plain",
                            format!("{other}\n"),
                        ),
                    },
                    _ => response(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
                };
                async move { Ok::<_, Infallible>(r) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(io, svc)
                .await;
        });
    }
}

/// Bind the metrics address, with a clear error.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on prometheus_server={addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(role: Role, progress: Instant) -> Status {
        Status {
            identity: "a".into(),
            role,
            role_since: progress,
            holder: None,
            interface: None,
            last_renewal: None,
            valid_until: None,
            healthy: Some(true),
            cordoned: false,
            carrier_up: true,
            addresses_present: role == Role::Leader,
            last_progress: progress,
            counters: Default::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn healthz_follows_loop_progress() {
        let t = Instant::now();
        let s = status(Role::Follower, t);
        assert!(healthy(
            &s,
            t + Duration::from_secs(9),
            Duration::from_secs(10)
        ));
        assert!(!healthy(
            &s,
            t + Duration::from_secs(11),
            Duration::from_secs(10)
        ));
        assert!(!healthy(
            &status(Role::Stopped, t),
            t,
            Duration::from_secs(10)
        ));
    }

    #[test]
    fn every_metric_is_exported() {
        let m = Metrics::new();
        m.on_event(&ControllerEvent::Acquired { new: true });
        m.on_event(&ControllerEvent::Renewed {
            latency: Duration::from_millis(3),
        });
        m.on_event(&ControllerEvent::RenewFailed { error: "x".into() });
        m.on_event(&ControllerEvent::Announced {
            address: "198.18.0.1".parse().unwrap(),
        });
        m.on_event(&ControllerEvent::Conflict(vip_core::Conflict {
            address: "198.18.0.1".parse().unwrap(),
            mac: vip_core::MacAddr([2, 0, 0, 0, 0, 9]),
        }));
        m.on_event(&ControllerEvent::SteppedDown {
            reason: vip_core::StepDownReason::Unhealthy,
            released: true,
        });
        m.on_event(&ControllerEvent::HeartbeatSent);
        m.on_event(&ControllerEvent::HeartbeatSent);
        m.on_event(&ControllerEvent::HeartbeatHeard {
            holder: "b".into(),
            term: 1,
        });
        m.on_event(&ControllerEvent::FastTakeoverDeclined {
            holder: "b".into(),
            answered_by: vip_core::MacAddr([2, 0, 0, 0, 0, 9]),
        });
        m.on_event(&ControllerEvent::FastTakeover {
            from: "b".into(),
            term: 2,
            silent: Duration::from_millis(33),
        });
        m.on_event(&ControllerEvent::Yielded {
            to: "c".into(),
            term: 3,
        });
        m.observe_status(&status(Role::Leader, Instant::now()));
        m.written();
        m.dropped();
        m.failed();
        let drops = Arc::new(HeartbeatDrops::default());
        m.watch_heartbeat_drops(drops.clone());
        let forger = vip_core::MacAddr([2, 0, 0, 0, 0, 0x66]);
        drops.count(forger, DropKind::BadCode);
        assert!(
            m.encode()
                .contains("vip_heartbeat_frames_dropped_total{reason=\"bad_code\"} 1")
        );
        drops.count(forger, DropKind::BadCode);
        drops.count(forger, DropKind::Replay);
        let text = m.encode();
        for line in [
            "vip_heartbeats_sent_total 2",
            "vip_heartbeats_received_total 1",
            "vip_fast_takeovers_total 1",
            "vip_fast_takeovers_declined_total 1",
            "vip_yields_total 1",
            "vip_heartbeat_frames_dropped_total{reason=\"bad_code\"} 2",
            "vip_heartbeat_frames_dropped_total{reason=\"replay\"} 1",
            "vip_heartbeat_frames_dropped_total{reason=\"other_election\"} 0",
            "vip_leader 1",
            "vip_leader_transitions_total 1",
            "vip_renewal_duration_seconds_count 1",
            "vip_renewal_failures_total 1",
            "vip_announcements_total 1",
            "vip_address_present 1",
            "vip_conflicts_total 1",
            "vip_local_api_healthy 1.0",
            "vip_step_downs_total{reason=\"Unhealthy\"} 1",
            "vip_build_info{version=\"",
            "vip_events_written_total 1",
            "vip_events_dropped_total 1",
            "vip_events_failed_total 1",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
    }
}
