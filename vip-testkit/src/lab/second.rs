//! A second, independent vip cluster on the lab's segment: one `vip
//! manager` on the spare foreign host, with its own API-server stand-in,
//! the default Lease name in the same namespace as the lab's, and its own
//! VIP. Two clusters on one VLAN, as home labs and offices run them: they
//! must never hear each other's heartbeats as one election.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use tokio::process::Child;

use super::forward::forward_into;
use super::{LEASE, Lab, LabSetupError, foreign_host, io, other};
use crate::testapi::{Kind, TestApi, TestApiConfig};

/// The second cluster's node name.
pub const SECOND_NODE: &str = "other-1";

/// A running second cluster; stopped (its manager killed, its stand-in
/// shut) on drop.
#[derive(Debug)]
pub struct SecondCluster {
    api: TestApi,
    process: Child,
    proxy: tokio::task::JoinHandle<()>,
    /// The manager's log.
    pub log: PathBuf,
}

impl SecondCluster {
    /// `leaseTransitions` of the second cluster's Lease (its term).
    pub fn term(&self) -> Option<u64> {
        let lease = self.api.store().get(Kind::Lease, LEASE.0, LEASE.1).ok()?;
        lease["spec"]["leaseTransitions"].as_u64()
    }

    /// The holder of the second cluster's Lease.
    pub fn holder(&self) -> Option<String> {
        let lease = self.api.store().get(Kind::Lease, LEASE.0, LEASE.1).ok()?;
        lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
    }
}

impl Drop for SecondCluster {
    fn drop(&mut self) {
        let _ = self.process.start_kill();
        self.proxy.abort();
    }
}

impl Lab {
    /// Start a second vip cluster on the foreign host electing `vip`
    /// through its own stand-in, whose Lease (the default name) starts
    /// released after `transitions` hand-overs, so its term is ahead of
    /// the lab's.
    pub async fn start_second_cluster(
        &self,
        vip: IpAddr,
        transitions: u32,
    ) -> Result<SecondCluster, LabSetupError> {
        let api = TestApi::start(
            TestApiConfig {
                extra_sans: vec![vip.to_string()],
                ..TestApiConfig::default()
            }
            .tokens(["admin", SECOND_NODE]),
        )
        .await?;
        api.store()
            .put_node(SECOND_NODE, true, true, false)
            .map_err(|s| other("creating the second cluster's node", s))?;
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE.1, "namespace": LEASE.0},
            "spec": {"holderIdentity": "", "leaseDurationSeconds": 1, "leaseTransitions": transitions},
        });
        api.store()
            .create(Kind::Lease, LEASE.0, lease)
            .map_err(|s| other("creating the second cluster's Lease", s))?;
        let host = &self.segment.hosts[foreign_host(self.nodes.len())];
        let proxy = forward_into(host, 6443, api.listener(0).addr())?;
        let kubeconfig = api.kubeconfig_for(0, SECOND_NODE)?;
        let log = self.dir.join("second-cluster.log");
        let out = std::fs::File::create(&log).map_err(io("the second cluster's log"))?;
        let err = out.try_clone().map_err(io("the second cluster's log"))?;
        let process = self
            .manager_command(host, &vip.to_string(), SECOND_NODE, &kubeconfig)
            .arg("manager")
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io("starting the second cluster's vip manager"))?;
        let cluster = SecondCluster {
            api,
            process,
            proxy,
            log,
        };
        // Bounded: it takes its released Lease within a few retry periods.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while cluster.holder().as_deref() != Some(SECOND_NODE) {
            if tokio::time::Instant::now() > deadline {
                return Err(other(
                    "the second cluster's manager did not take its Lease within 20 s",
                    std::fs::read_to_string(&cluster.log).unwrap_or_default(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(cluster)
    }
}
