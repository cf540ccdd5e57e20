//! keepalived on the lab, for the comparison runs of the failover
//! benchmark.

use std::net::IpAddr;

/// keepalived's settings for a comparison run on the lab.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeepalivedConfig {
    /// VRRP version, 2 or 3.
    pub version: u8,
    /// Advertisement interval in seconds (whole seconds for VRRPv2,
    /// centiseconds for VRRPv3).
    pub advert_int: f64,
}

impl KeepalivedConfig {
    /// The configuration text for node `index` (named `name`): one VRRP
    /// instance on `eth0`, every node `BACKUP` with `nopreempt` (like vip,
    /// which never preempts), priority 200 - 10 × index, the VIPs as host
    /// routes, default GARP settings.
    pub fn render(&self, name: &str, index: usize, vips: &[IpAddr]) -> String {
        let addresses: String = vips
            .iter()
            .map(|v| match v {
                IpAddr::V4(a) => format!("    {a}/32 dev eth0\n"),
                IpAddr::V6(a) => format!("    {a}/128 dev eth0\n"),
            })
            .collect();
        format!(
            "global_defs {{\n  router_id {name}\n  vrrp_version {}\n  script_user root\n  enable_script_security\n}}\n\
             vrrp_instance VI_1 {{\n  state BACKUP\n  nopreempt\n  interface eth0\n  virtual_router_id 51\n  priority {}\n  advert_int {}\n  virtual_ipaddress {{\n{addresses}  }}\n}}\n",
            self.version,
            200 - 10 * index.min(15),
            self.advert_int,
        )
    }
}
