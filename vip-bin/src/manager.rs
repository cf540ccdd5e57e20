//! `vip manager`: the static-pod daemon. It composes the election backend
//! (the Lease, or etcd with `--leaderElectionType=etcd`), the netlink
//! address manager, the packet-socket announcer, the local `/readyz` probe
//! and the cordon watch into the vip-core controller, serves metrics and
//! health, and runs the graceful order on SIGTERM/SIGINT.
//!
//! With etcd the election does not go through the API server. The health
//! probe still follows the local API server's `/readyz` (turn it off with
//! `vip_healthcheck=false`), and the cordon watch still needs the API: it
//! runs when a kubeconfig is found and is left out (a warning says so)
//! when none is; while the API is down it keeps the last state it saw.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use vip_arp::{NetlinkAddressManager, PacketAnnouncer, SignedHeartbeats};
use vip_core::{
    Controller, ControllerConfig, ControllerEvent, HeartbeatKey, HeartbeatKeySource, LockBackend,
    Observer, PresharedKey, Status,
};
use vip_etcd::{EtcdBackend, EtcdConfig, election_key};
use vip_lease::{
    ClusterAccess, CordonConfig, DiscoveryOptions, EventsConfig, HealthConfig, KubeconfigSource,
    LeaseBackend, LeaseConfig, LeaseHeartbeatKeys, LeaseName, ReadyzProbe, spawn_cordon_watch,
    spawn_event_recorder,
};

use crate::config::{LeaderElection, Settings};
use crate::metrics::{self, Metrics};

/// How long SIGTERM may take: stop announcing, remove, release.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(2);

/// How long the stop may wait for the last Events (the step-down) to be
/// written after the lease is released.
pub const EVENTS_DRAIN_BOUND: Duration = Duration::from_secs(1);

/// The controller configuration for these settings.
pub fn controller_config(s: &Settings, health: &HealthConfig) -> ControllerConfig {
    let mut c = ControllerConfig::new(
        s.node_name.clone(),
        s.vips.clone(),
        s.interface.clone(),
        s.timings,
    );
    c.announce.refresh = s.arp_rate;
    c.fast_failover = s.fast_failover;
    c.lock = format!("{}/{}", s.lease_namespace, s.lease_name);
    c.health = health.policy;
    c
}

/// The heartbeat key source: the backend's own `keys`, or the pre-shared
/// key of `vip_heartbeat_key_file` with the backend's cluster identity.
fn key_source<S: HeartbeatKeySource>(
    keys: S,
    file: Option<&HeartbeatKey>,
) -> Arc<dyn HeartbeatKeySource> {
    match file {
        Some(key) => Arc::new(PresharedKey::new(keys, key.clone())),
        None => Arc::new(keys),
    }
}

/// The Lease backend's configuration: request bound from the retry
/// period, `vip_leaseannotations` kept on the Lease.
pub fn lease_config(s: &Settings, lease: LeaseName) -> LeaseConfig {
    let mut c = LeaseConfig::for_retry_period(lease, s.timings.retry_period());
    c.annotations.clone_from(&s.lease_annotations);
    c
}

/// The Lease's namespace when it is not the configured one: in-cluster
/// (a DaemonSet) with no namespace set, the ServiceAccount's, as kube-vip
/// v1.1+ does, so both elect on the same Lease. `vip manifest daemonset`
/// sets `cp_namespace`, so its pods use the namespace `vip manifest rbac`
/// grants.
pub fn lease_namespace(
    s: &Settings,
    in_cluster: bool,
    service_account_namespace: impl FnOnce() -> Option<String>,
) -> Option<String> {
    if s.lease_namespace_explicit || !in_cluster {
        return None;
    }
    service_account_namespace().filter(|ns| *ns != s.lease_namespace)
}

/// Several observers, each seeing every event in order (metrics, then the
/// event recorder, which only enqueues).
struct Observers(Vec<Arc<dyn Observer>>);

impl Observer for Observers {
    fn on_event(&self, event: &ControllerEvent) {
        for o in &self.0 {
            o.on_event(event);
        }
    }
}

/// Print the configuration and state, as kube-vip does on SIGUSR1.
fn dump(settings: &Settings, status: &Status) {
    let mut out = String::from("vip configuration:\n");
    for (k, v) in settings.describe() {
        out.push_str(&format!("  {k}={v}\n"));
    }
    let now = tokio::time::Instant::now();
    out.push_str(&format!(
        "state: role={} for {:?}, holder={}, interface={}, address_present={}, healthy={:?}, cordoned={}, carrier_up={}\n",
        status.role,
        now.saturating_duration_since(status.role_since),
        status.holder.as_deref().unwrap_or("?"),
        status.interface.as_ref().map_or("?", |i| i.name.as_str()),
        status.addresses_present,
        status.healthy,
        status.cordoned,
        status.carrier_up,
    ));
    if let Some(t) = status.last_renewal {
        out.push_str(&format!(
            "last renewal sent {:?} ago\n",
            now.saturating_duration_since(t)
        ));
    }
    out.push_str(&format!("counters: {:?}\n", status.counters));
    eprint!("{out}");
}

/// Run the daemon until SIGTERM/SIGINT. Exit 0 after a graceful stop; 1
/// when it cannot start (no kubeconfig, no permission).
pub async fn run(settings: Settings) -> ExitCode {
    match run_inner(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("vip: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run_inner(settings: Settings) -> Result<(), String> {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        node = %settings.node_name,
        vips = %settings.vips,
        interface = %settings.interface,
        lease = format!("{}/{}", settings.lease_namespace, settings.lease_name),
        election = settings.leader_election.name(),
        "starting vip manager"
    );
    for n in &settings.notes {
        tracing::info!(
            key = n.key,
            value = %n.value,
            "kube-vip setting honoured differently: {}",
            n.note
        );
    }
    let lease = LeaseName::new(&settings.lease_namespace, &settings.lease_name)
        .map_err(|e| format!("vip_leasename: {e}"))?;
    let mut discovery = DiscoveryOptions::from_env(settings.kubeconfig.clone());
    discovery.auth_probe = lease.clone();
    let discovery = discovery.control_plane(settings.local_api.map_or(settings.port, |a| a.port()));
    let retry = settings.timings.retry_period();
    let etcd = settings.leader_election == LeaderElection::Etcd;
    let access = match ClusterAccess::discover(&discovery).await {
        Ok(a) => {
            tracing::info!(kubeconfig = %a.source(), server = %a.server(), "cluster access");
            Some(a)
        }
        // With etcd only the health probe and the cordon watch need the API.
        Err(e) if etcd && !settings.health_check => {
            tracing::warn!(error = %e, "no cluster access: electing through etcd without the cordon hand-over");
            None
        }
        Err(e) if etcd => {
            return Err(format!(
                "{e} (the /readyz health probe needs it; vip_healthcheck=false runs without the API)"
            ));
        }
        Err(e) => return Err(e.to_string()),
    };

    // The Lease (of the Lease backend and of the Events): in-cluster with
    // no namespace set, the ServiceAccount's, as kube-vip v1.1+ does.
    let lease = match &access {
        Some(access) if !etcd => match lease_namespace(
            &settings,
            matches!(access.source(), KubeconfigSource::InCluster),
            || discovery.service_account_namespace(),
        ) {
            Some(ns) => {
                let lease = LeaseName::new(&ns, &settings.lease_name)
                    .map_err(|e| format!("the ServiceAccount's namespace: {e}"))?;
                tracing::info!(lease = %lease, "in-cluster: the Lease is in the ServiceAccount's namespace (cp_namespace not set)");
                lease
            }
            None => lease,
        },
        _ => lease,
    };
    // The pre-shared heartbeat key, if configured (checked before start).
    let key_file = match &settings.heartbeat_key_file {
        Some(path) => Some(crate::config::heartbeat_key::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    // The backend, the key source of authenticated heartbeats, and the
    // lock's name bound into their election scope.
    let (backend, keys, lock): (Arc<dyn LockBackend>, _, String) =
        match (settings.leader_election, &access) {
            (LeaderElection::Etcd, _) => {
                let key = election_key(&settings.lease_namespace, &settings.lease_name);
                let config = EtcdConfig::for_retry_period(
                    settings.etcd.endpoints.clone(),
                    settings.etcd.tls(),
                    key.clone(),
                    retry,
                );
                let etcd = EtcdBackend::connect(config)
                    .await
                    .map_err(|e| e.to_string())?;
                let keys = key_source(etcd.heartbeat_keys(), key_file.as_ref());
                (Arc::new(etcd), keys, key)
            }
            (LeaderElection::Kubernetes, Some(access)) => {
                let backend = LeaseBackend::new(access, lease_config(&settings, lease.clone()))
                    .map_err(|e| e.to_string())?;
                let keys = LeaseHeartbeatKeys::new(access, lease.clone(), retry.mul_f64(0.75))
                    .map_err(|e| e.to_string())?;
                let keys = key_source(keys, key_file.as_ref());
                (Arc::new(backend), keys, lease.to_string())
            }
            (LeaderElection::Kubernetes, None) => {
                return Err("no cluster access for the Lease election".into());
            }
        };
    tracing::info!(backend = %backend.describe(), "election");
    let addresses = NetlinkAddressManager::new().map_err(|e| e.to_string())?;
    let announcer = PacketAnnouncer::new();
    let health_config = HealthConfig::default();
    let cordon = match &access {
        Some(access) => Some(
            spawn_cordon_watch(access, CordonConfig::new(settings.node_name.as_str()))
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let mut observers: Vec<Arc<dyn Observer>> = vec![metrics.clone()];
    let event_writer = match (&access, settings.events) {
        (Some(access), true) => {
            let events = EventsConfig::new(lease.clone(), settings.node_name.as_str());
            let (recorder, writer) =
                spawn_event_recorder(access, events, metrics.clone()).map_err(|e| e.to_string())?;
            observers.push(Arc::new(recorder));
            Some(writer)
        }
        (None, true) => {
            tracing::warn!("no cluster access: leadership changes are not recorded as Events");
            None
        }
        (_, false) => None,
    };

    let mut config = controller_config(&settings, &health_config);
    config.lock = lock;
    let mut controller = Controller::new(config, backend, Arc::new(addresses), Arc::new(announcer))
        .with_observer(Arc::new(Observers(observers)));
    if let Some((watch, _task)) = cordon {
        controller = controller.with_cordon(watch);
    }
    if settings.health_check
        && let Some(access) = &access
    {
        let probe = ReadyzProbe::new(access, health_config).map_err(|e| e.to_string())?;
        controller = controller.with_health(Arc::new(probe));
    }
    let fast = settings.fast_failover;
    if fast.enabled() {
        tracing::info!(
            heartbeat = ?fast.heartbeat,
            misses = fast.misses,
            probe = ?fast.probe_timeout,
            key = if key_file.is_some() { "vip_heartbeat_key_file" } else { "from the election backend" },
            "fast failover configured: authenticated layer-2 heartbeats, probe, lease compare-and-swap (on once the key is read)"
        );
        controller = controller.with_heartbeats(Arc::new(SignedHeartbeats::new()), keys);
    } else {
        tracing::info!("fast failover off (vip_heartbeat_ms=0): failover at lease expiry");
    }

    // Bind the metrics port before anything changes on the host, so a
    // taken port fails the start cleanly.
    let listener = match settings.metrics {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => None,
    };
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let mut sigusr1 =
        signal(SignalKind::user_defined1()).map_err(|e| format!("SIGUSR1 handler: {e}"))?;

    let handle = controller.spawn().map_err(|e| e.to_string())?;
    metrics.watch_heartbeat_drops(handle.heartbeat_drops());
    let status = handle.status();
    let stall = settings.timings.lease_duration() * 2 + retry;
    let server =
        listener.map(|l| tokio::spawn(metrics::serve(l, metrics.clone(), status.clone(), stall)));
    let mut watch_roles = status.clone();
    let roles = tokio::spawn(async move {
        let mut last = watch_roles.borrow().role;
        while watch_roles.changed().await.is_ok() {
            let s = watch_roles.borrow().clone();
            if s.role != last {
                tracing::info!(from = %last, to = %s.role, holder = s.holder.as_deref().unwrap_or(""), "role changed");
                last = s.role;
            }
        }
    });

    let which = loop {
        tokio::select! {
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            _ = sigusr1.recv() => dump(&settings, &status.borrow()),
        }
    };
    tracing::info!(signal = which, "stopping: withdraw, remove, release");
    let report = match tokio::time::timeout(SHUTDOWN_BOUND, handle.shutdown()).await {
        Ok(r) => r,
        Err(_) => {
            return Err(format!(
                "graceful stop did not finish within {SHUTDOWN_BOUND:?}"
            ));
        }
    };
    if let Some(writer) = event_writer {
        // The controller has dropped its recorder: the writer ends once the
        // queue is written out.
        if tokio::time::timeout(EVENTS_DRAIN_BOUND, writer)
            .await
            .is_err()
        {
            tracing::warn!(
                "the last Kubernetes Events were not written within {EVENTS_DRAIN_BOUND:?}"
            );
        }
    }
    roles.abort();
    if let Some(s) = server {
        s.abort();
    }
    tracing::info!(
        was_leader = report.was_leader,
        removed = ?report.removed,
        released = report.released,
        errors = ?report.errors,
        elapsed = ?report.elapsed,
        "stopped"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sources;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_sources(&Sources::env_only(pairs), "node").unwrap()
    }

    #[test]
    fn in_cluster_without_a_namespace_uses_the_service_accounts() {
        let sa = || Some("vip-system".to_string());
        let bare = settings(&[("address", "198.18.0.1")]);
        assert_eq!(lease_namespace(&bare, true, sa), Some("vip-system".into()));
        // Not in-cluster (a static pod has no ServiceAccount): configured.
        assert_eq!(lease_namespace(&bare, false, sa), None);
        // No namespace file: configured.
        assert_eq!(lease_namespace(&bare, true, || None), None);
        // The same namespace: nothing to change.
        assert_eq!(
            lease_namespace(&bare, true, || Some("kube-system".into())),
            None
        );
        // Set explicitly (vip manifest daemonset does): it wins.
        for pairs in [
            &[("address", "198.18.0.1"), ("cp_namespace", "kube-system")][..],
            &[
                ("address", "198.18.0.1"),
                ("vip_leasename", "kube-system/lock"),
            ],
        ] {
            assert_eq!(
                lease_namespace(&settings(pairs), true, sa),
                None,
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn the_lease_annotations_reach_the_backend_config() {
        let s = settings(&[
            ("address", "198.18.0.1"),
            ("vip_leaseannotations", r#"{"team":"infra"}"#),
        ]);
        let c = lease_config(&s, LeaseName::default());
        assert_eq!(c.annotations.get("team").map(String::as_str), Some("infra"));
        assert_eq!(c.annotations.len(), 1);
        assert!(
            lease_config(
                &settings(&[("address", "198.18.0.1")]),
                LeaseName::default()
            )
            .annotations
            .is_empty()
        );
    }
}
