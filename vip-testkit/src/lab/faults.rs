//! Faults and the kernel's view: addresses and links of the nodes, the
//! client's neighbour entries, cordons, a foreign claimant.

use std::net::IpAddr;
use std::time::Duration;

use vip_arp::PacketAnnouncer;
use vip_core::{Announcer, MacAddr};

use super::{Lab, LabSetupError, foreign_host, other};
use crate::netns::NsThread;

impl Lab {
    /// Whether node (or host) `i` has `address` on its `eth0` now.
    pub fn has_address(&self, i: usize, address: IpAddr) -> bool {
        let needle = format!(" {address}/");
        self.segment.hosts[i]
            .ns
            .address_lines("eth0")
            .map(|lines| lines.iter().any(|l| l.contains(&needle)))
            .unwrap_or(false)
    }

    /// Which nodes have any of the lab's VIPs on their interface now.
    pub fn vip_holders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.vips.iter().any(|&v| self.has_address(i, v)))
            .collect()
    }

    /// The MAC the client's kernel has for the first VIP.
    pub fn client_resolves(&self) -> Option<MacAddr> {
        self.client_resolves_addr(self.vips[0])
    }

    /// The MAC the client's kernel has for `address`.
    pub fn client_resolves_addr(&self, address: IpAddr) -> Option<MacAddr> {
        self.client().ns.neighbour("eth0", address).ok().flatten()
    }

    /// Take node `i`'s `eth0` administratively down (`up == false`) or up.
    pub fn set_link(&self, i: usize, up: bool) -> Result<(), LabSetupError> {
        let ns = &self.segment.hosts[i].ns;
        if up {
            ns.set_up("eth0")?;
        } else {
            ns.set_down("eth0")?;
        }
        Ok(())
    }

    fn host_prefix(address: IpAddr) -> String {
        match address {
            IpAddr::V4(a) => format!("{a}/32"),
            IpAddr::V6(a) => format!("{a}/128"),
        }
    }

    /// Remove `address` from host `i`'s `eth0` behind everyone's back, as
    /// an administrator's `ip addr del` would.
    pub fn del_address(&self, i: usize, address: IpAddr) -> Result<(), LabSetupError> {
        self.segment.hosts[i]
            .ns
            .del_address("eth0", &Self::host_prefix(address))?;
        Ok(())
    }

    /// Add `address` to host `i`'s `eth0` with an infinite lifetime, as a
    /// crashed older daemon (or an administrator) would leave it.
    pub fn add_stale_address(&self, i: usize, address: IpAddr) -> Result<(), LabSetupError> {
        self.segment.hosts[i]
            .ns
            .add_address("eth0", &Self::host_prefix(address))?;
        Ok(())
    }

    /// Cordon (`unschedulable`) or uncordon node `i`, as `kubectl cordon`
    /// would (the Node's `spec.unschedulable`): in the stand-in's store, or
    /// on real API servers with `kubectl cordon` on that node.
    pub async fn cordon(&self, i: usize, unschedulable: bool) -> Result<(), LabSetupError> {
        if self.is_real_api() {
            return self.cordon_real(i, unschedulable).await;
        }
        let name = &self.nodes[i].name;
        self.api()
            .store()
            .put_node(name, true, true, unschedulable)
            .map(drop)
            .map_err(|s| other(format!("cordoning {name}"), s))
    }

    /// Make the foreign host claim `address`: add it to its `eth0` and send
    /// `count` announcements `interval` apart (gratuitous ARP or
    /// unsolicited NA), in the background.
    pub fn foreign_claim(
        &self,
        address: IpAddr,
        count: u32,
        interval: Duration,
    ) -> Result<NsThread<Result<u32, String>>, LabSetupError> {
        let host = self.foreign();
        self.add_stale_address(foreign_host(self.nodes.len()), address)?;
        let iface = host.interface()?;
        let limit = interval * count + Duration::from_secs(5);
        Ok(host.ns.spawn(limit, move || async move {
            let announcer = PacketAnnouncer::new();
            let mut sent = 0;
            for _ in 0..count {
                announcer
                    .announce(&iface, address)
                    .await
                    .map_err(|e| e.to_string())?;
                sent += 1;
                tokio::time::sleep(interval).await;
            }
            Ok(sent)
        })?)
    }
}
