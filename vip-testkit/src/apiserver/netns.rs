//! The real API servers inside lab namespaces, as on the control-plane
//! nodes of a k3s cluster with embedded etcd: one etcd member and one
//! `kube-apiserver` per node namespace ([`RealApi::start_in`]), each server
//! on `0.0.0.0:6443` of its namespace (so on `127.0.0.1:6443` there, on
//! the node's address, and on the VIP when the node holds it), advertising
//! the node's address and talking to its own member at
//! `https://127.0.0.1:2379`. The serving certificates name the node's
//! address, `127.0.0.1` and [`RealApiConfig::extra_sans`] (the VIP, for a
//! correctly prepared cluster).
//!
//! [`RealApi::url`] and [`RealApi::kubeconfig_for`] name
//! `https://127.0.0.1:6443`: they are valid inside the server's namespace,
//! not on the host, which has no route to the lab.

use std::path::Path;
use std::time::Duration;

use super::{RealApi, RealApiConfig, RealApiError, binary, readyz};
use crate::etcd::EtcdCluster;
use crate::placement::Placement;

/// The port a placed server listens on (kube-apiserver's and k3s's).
pub const PORT: u16 = 6443;

/// The etcd a placed server talks to: its own node's member.
pub const LOCAL_ETCD: &str = "https://127.0.0.1:2379";

/// How long a placed server may take to answer `/readyz`: three servers
/// and three etcd members start at once on what may be a small, shared
/// machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// One `/readyz` probe through `kubeconfig` (which names `127.0.0.1:6443`),
/// made from inside `place`'s namespace.
pub(super) async fn readyz_in(place: &Placement, kubeconfig: &Path) -> Result<(), String> {
    let kubeconfig = kubeconfig.to_owned();
    let probe = place
        .ns
        .spawn(Duration::from_secs(10), move || async move {
            readyz(&kubeconfig).await
        })
        .map_err(|e| e.to_string())?;
    // The probe's own thread and runtime are in the namespace; this task
    // only waits for it, without blocking its worker.
    while !probe.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    probe.join().map_err(|e| e.to_string())?
}

impl RealApi {
    /// Start an etcd member and a server in each of `places` (a node's
    /// namespace and address; see the [module](self) docs) and wait,
    /// bounded by [`READY_TIMEOUT`], until every server is ready.
    /// `config.servers` is ignored: one server per place.
    pub async fn start_in(
        config: RealApiConfig,
        places: &[Placement],
    ) -> Result<Self, RealApiError> {
        let binary = binary::kube_apiserver()?;
        let etcd = EtcdCluster::start_in(places).await?;
        Self::launch(
            binary,
            config,
            etcd,
            places.iter().cloned().map(Some).collect(),
        )
        .await
    }

    /// Where server `i` runs: its namespace and address, or `None` on the
    /// host's loopback.
    pub fn place(&self, i: usize) -> Option<&Placement> {
        self.servers.get(i).and_then(|s| s.place.as_ref())
    }

    /// Whether server `i` runs (was started and not killed).
    pub fn is_running(&self, i: usize) -> bool {
        self.servers.get(i).is_some_and(|s| s.child.is_some())
    }
}
