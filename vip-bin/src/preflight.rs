//! `vip preflight`: the deployment brief's pre-deployment checks, done
//! properly. One PASS/FAIL line each with the fix; exit 1 on any FAIL.
//! It changes nothing on the host.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use vip_arp::{NetlinkAddressManager, PacketAnnouncer};
use vip_core::{AddressManager, Announcer, Interface, VipAddress};
use vip_lease::{ClusterAccess, DiscoveryOptions, LeaseName};

use crate::config::Settings;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Whether it passed.
    pub pass: bool,
    /// What was found, and on failure, the fix.
    pub detail: String,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            pass: true,
            detail: detail.into(),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            pass: false,
            detail: detail.into(),
        }
    }
}

/// Linux capability numbers (include/uapi/linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

/// The effective capability set of this process, from `/proc/self/status`.
pub fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// The capabilities check: NET_ADMIN and NET_RAW in `caps`.
pub fn check_capabilities(caps: Option<u64>) -> Check {
    let name = "capabilities NET_ADMIN and NET_RAW";
    let Some(caps) = caps else {
        return Check::fail(name, "cannot read /proc/self/status");
    };
    let missing: Vec<&str> = [(CAP_NET_ADMIN, "NET_ADMIN"), (CAP_NET_RAW, "NET_RAW")]
        .into_iter()
        .filter(|(bit, _)| caps & (1 << bit) == 0)
        .map(|(_, n)| n)
        .collect();
    if missing.is_empty() {
        Check::pass(name, "present")
    } else {
        Check::fail(
            name,
            format!(
                "missing {}: add them to the container's securityContext.capabilities.add (vip manifest pod does)",
                missing.join(", ")
            ),
        )
    }
}

/// Whether `vip` lies in one of `prefixes` (address, prefix length) other
/// than the VIP itself.
pub fn in_connected_prefix(vip: &VipAddress, prefixes: &[(IpAddr, u8)]) -> Option<(IpAddr, u8)> {
    prefixes
        .iter()
        .copied()
        .filter(|(a, _)| *a != vip.addr())
        .find(|(a, p)| same_prefix(*a, vip.addr(), *p))
}

fn same_prefix(a: IpAddr, b: IpAddr, prefix: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

async fn check_interface(
    s: &Settings,
    out: &mut Vec<Check>,
) -> Option<(NetlinkAddressManager, Interface)> {
    let name = "interface exists and is up";
    let manager = match NetlinkAddressManager::new() {
        Ok(m) => m,
        Err(e) => {
            out.push(Check::fail(name, format!("netlink: {e}")));
            return None;
        }
    };
    let iface = match manager.resolve(&s.interface, &s.vips).await {
        Ok(i) => i,
        Err(e) => {
            out.push(Check::fail(
                name,
                format!("{e}; set vip_interface to the node's interface on the VIP's segment"),
            ));
            return None;
        }
    };
    match manager.link_report(&iface).await {
        Ok(r) if r.up && r.carrier => {
            out.push(Check::pass(
                name,
                format!("{} (MAC {}) is up with carrier", iface.name, iface.mac),
            ));
            let prefixes = r.addresses;
            for vip in s.vips.addresses() {
                let name = "VIP in a connected prefix";
                match in_connected_prefix(vip, &prefixes) {
                    Some((a, p)) => out.push(Check::pass(name, format!("{} is in {a}/{p} on {}", vip.addr(), iface.name))),
                    None => out.push(Check::fail(
                        name,
                        format!(
                            "{} is in no prefix of {} ({}): hosts on the segment would not ARP for it; pick a VIP from the node subnet",
                            vip.addr(),
                            iface.name,
                            prefixes.iter().map(|(a, p)| format!("{a}/{p}")).collect::<Vec<_>>().join(", ")
                        ),
                    )),
                }
            }
        }
        Ok(r) => out.push(Check::fail(
            name,
            format!(
                "{} is {}: bring it up (ip link set {} up) and check the cable",
                iface.name,
                if r.up {
                    "up but has no carrier"
                } else {
                    "down"
                },
                iface.name
            ),
        )),
        Err(e) => out.push(Check::fail(name, e.to_string())),
    }
    Some((manager, iface))
}

async fn check_vip_unused(
    s: &Settings,
    manager: &NetlinkAddressManager,
    iface: &Interface,
    out: &mut Vec<Check>,
) {
    let name = "VIP unused on the segment";
    let announcer = PacketAnnouncer::new();
    for vip in s.vips.addresses() {
        let held_here = manager.is_present(iface, vip).await.unwrap_or(false);
        match announcer.probe(iface, vip.addr(), Duration::from_secs(1)).await {
            Ok(None) if held_here => out.push(Check::pass(name, format!("{} is held by this node (vip runs here)", vip.addr()))),
            Ok(None) => out.push(Check::pass(name, format!("nobody answered an ARP/ND probe for {} within 1 s", vip.addr()))),
            Ok(Some(mac)) => out.push(Check::fail(
                name,
                format!(
                    "{} is answered by {mac}: another host uses it (or a kube-vip/vip on another node already holds it); choose a free address",
                    vip.addr()
                ),
            )),
            Err(e) => out.push(Check::fail(name, format!("probing {}: {e}", vip.addr()))),
        }
    }
}

async fn check_api(s: &Settings, out: &mut Vec<Check>) {
    let name = "kubeconfig found and the API answers";
    let lease = match LeaseName::new(&s.lease_namespace, &s.lease_name) {
        Ok(l) => l,
        Err(e) => {
            out.push(Check::fail(name, e.to_string()));
            return;
        }
    };
    let mut discovery = DiscoveryOptions::from_env(s.kubeconfig.clone());
    discovery.auth_probe = lease;
    let port = s.local_api.map_or(s.port, |a| a.port());
    let discovery = discovery.control_plane(port);
    let access = match ClusterAccess::discover(&discovery).await {
        Ok(a) => a,
        Err(e) => {
            out.push(Check::fail(name, e.to_string()));
            return;
        }
    };
    match version(access.kube_config().clone()).await {
        Ok(v) => out.push(Check::pass(
            name,
            format!(
                "{}; the local API server (127.0.0.1:{port}) answers, {v}",
                access.source()
            ),
        )),
        Err(e) => {
            out.push(Check::fail(
                name,
                format!(
                    "{} found, but the local API server on 127.0.0.1:{port} does not answer: {e}",
                    access.source()
                ),
            ));
            return;
        }
    }
    let name = "serving certificate lists the VIP";
    for vip in s.vips.addresses() {
        let mut config = access.kube_config().clone();
        config.tls_server_name = Some(vip.addr().to_string());
        match version(config).await {
            Ok(_) => out.push(Check::pass(name, format!("the certificate on 127.0.0.1:{port} is valid for {}", vip.addr()))),
            Err(e) => out.push(Check::fail(
                name,
                format!(
                    "the certificate on 127.0.0.1:{port} is not valid for {} ({e}); add it to the API server's SANs (k3s: --tls-san {})",
                    vip.addr(),
                    vip.addr()
                ),
            )),
        }
    }
}

async fn version(config: kube::Config) -> Result<String, String> {
    let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(3), client.apiserver_version()).await {
        Ok(Ok(v)) => Ok(format!("version {}", v.git_version)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 3 s".into()),
    }
}

/// Run every check.
pub async fn checks(s: &Settings) -> Vec<Check> {
    let mut out = vec![];
    if let Some((manager, iface)) = check_interface(s, &mut out).await {
        check_vip_unused(s, &manager, &iface, &mut out).await;
    }
    out.push(check_capabilities(effective_capabilities()));
    check_api(s, &mut out).await;
    out
}

/// `vip preflight`.
pub async fn run(s: Settings) -> ExitCode {
    let results = checks(&s).await;
    for c in &results {
        println!(
            "{} {}: {}",
            if c.pass { "PASS" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    let failed = results.iter().filter(|c| !c.pass).count();
    if failed == 0 {
        println!("all {} checks passed", results.len());
        ExitCode::SUCCESS
    } else {
        println!("{failed} of {} checks failed", results.len());
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_read_from_the_mask() {
        assert!(check_capabilities(Some((1 << 12) | (1 << 13))).pass);
        let c = check_capabilities(Some(1 << 12));
        assert!(!c.pass && c.detail.contains("NET_RAW") && !c.detail.contains("NET_ADMIN,"));
        assert!(!check_capabilities(Some(0)).detail.is_empty());
        assert!(!check_capabilities(None).pass);
    }

    #[test]
    fn connected_prefixes() {
        let vip: VipAddress = "192.168.20.140".parse().unwrap();
        let p = |a: &str, l| (a.parse().unwrap(), l);
        assert_eq!(
            in_connected_prefix(&vip, &[p("192.168.20.11", 24)]),
            Some(p("192.168.20.11", 24))
        );
        assert_eq!(in_connected_prefix(&vip, &[p("192.168.21.11", 24)]), None);
        // The VIP's own /32 does not count.
        assert_eq!(in_connected_prefix(&vip, &[p("192.168.20.140", 32)]), None);
        assert_eq!(
            in_connected_prefix(&vip, &[p("192.168.0.1", 16)]),
            Some(p("192.168.0.1", 16))
        );
        let v6: VipAddress = "2001:db8::140".parse().unwrap();
        assert_eq!(
            in_connected_prefix(&v6, &[p("2001:db8::11", 64), p("192.168.20.1", 24)]),
            Some(p("2001:db8::11", 64))
        );
        assert_eq!(in_connected_prefix(&v6, &[p("2001:db9::11", 64)]), None);
    }
}
