//! The effective settings as `key=value` pairs (`vip check-config`,
//! SIGUSR1, `--help`, the manifest).

use super::{LogFormat, Settings, annotations_json, secs};

impl Settings {
    /// `(key, value)` of every setting, as the daemon runs with them
    /// (SIGUSR1, `--help`, the manifest).
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        vec![
            ("address", self.vips.to_string()),
            ("vip_interface", self.interface.to_string()),
            ("port", self.port.to_string()),
            (
                "kubernetes_addr",
                self.local_api.map(|a| a.to_string()).unwrap_or_default(),
            ),
            ("vip_nodename", self.node_name.to_string()),
            ("cp_namespace", self.lease_namespace.clone()),
            ("vip_leasename", self.lease_name.clone()),
            (
                "vip_leaseannotations",
                annotations_json(&self.lease_annotations),
            ),
            ("vip_leaseduration", secs(self.timings.lease_duration())),
            ("vip_renewdeadline", secs(self.timings.renew_deadline())),
            ("vip_retryperiod", secs(self.timings.retry_period())),
            ("vip_arpRate", self.arp_rate.as_millis().to_string()),
            (
                "vip_heartbeat_ms",
                self.fast_failover.heartbeat.as_millis().to_string(),
            ),
            (
                "vip_heartbeat_misses",
                self.fast_failover.misses.to_string(),
            ),
            (
                "vip_heartbeat_key_file",
                self.heartbeat_key_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            (
                "vip_probe_ms",
                self.fast_failover.probe_timeout.as_millis().to_string(),
            ),
            (
                "k8s_config_file",
                self.kubeconfig
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            ("vip_loglevel", self.log_level.directive().into()),
            (
                "vip_logformat",
                match self.log_format {
                    LogFormat::Text => "text".into(),
                    LogFormat::Json => "json".into(),
                },
            ),
            (
                "prometheus_server",
                self.metrics.map(|a| a.to_string()).unwrap_or_default(),
            ),
            ("vip_healthcheck", self.health_check.to_string()),
            ("vip_events", self.events.to_string()),
            (
                "vip_leaderelectiontype",
                self.leader_election.name().to_string(),
            ),
            (
                "vip_etcdcacert",
                self.etcd
                    .ca
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            (
                "vip_etcdcert",
                self.etcd
                    .cert
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            (
                "vip_etcdkey",
                self.etcd
                    .key
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            ("vip_etcdendpoints", self.etcd.endpoint_list()),
        ]
    }
}
