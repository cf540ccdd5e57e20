//! The lab electing through a real etcd instead of the stand-in's Lease.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{LEASE, Lab, LabSetupError, other};

impl Lab {
    /// Make every manager elect through etcd instead of the stand-in's
    /// Lease, as on a control plane with stacked etcd: node `i`'s
    /// `127.0.0.1:2379` is forwarded to the member at `endpoints[i]` (an
    /// `https://host:port` client URL), the managers get
    /// `vip_leaderelectiontype=etcd`, the client TLS files and
    /// `vip_etcdendpoints=127.0.0.1:2379`, and [`Lab::holder`] reads the
    /// etcd record (watched by a client of this process, on all members).
    pub async fn elect_through_etcd(
        &mut self,
        endpoints: &[String],
        tls: vip_etcd::TlsFiles,
    ) -> Result<(), LabSetupError> {
        use vip_core::LockBackend as _;
        for i in 0..self.nodes.len() {
            let member: SocketAddr = endpoints
                .get(i)
                .and_then(|e| e.strip_prefix("https://"))
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| other(format!("an etcd member for node {i}"), endpoints))?;
            self.forward_local(i, 2379, member)?;
        }
        for (k, v) in [
            ("vip_leaderelectiontype", "etcd".to_string()),
            ("vip_etcdcacert", tls.ca.display().to_string()),
            ("vip_etcdcert", tls.cert.display().to_string()),
            ("vip_etcdkey", tls.key.display().to_string()),
            ("vip_etcdendpoints", "127.0.0.1:2379".to_string()),
        ] {
            self.env.insert(k.into(), v);
        }
        let backend = vip_etcd::EtcdBackend::connect(vip_etcd::EtcdConfig {
            endpoints: endpoints.to_vec(),
            tls: Some(tls),
            key: vip_etcd::election_key(LEASE.0, LEASE.1),
            request_timeout: Duration::from_millis(750),
        })
        .await
        .map_err(|e| other("an etcd client for the lab", e))?;
        let watch = backend
            .watch()
            .ok_or_else(|| other("watching the etcd record", "no runtime"))?;
        self.holder_source = Some(Arc::new(move || {
            watch
                .borrow()
                .as_ref()
                .map(|r| r.record.holder_identity.clone())
                .filter(|h| !h.is_empty())
        }));
        Ok(())
    }
}
