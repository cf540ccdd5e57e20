//! [`NetlinkAddressManager`]: the [`AddressManager`] over rtnetlink.
//!
//! - VIPs are added with their prefix, **preferred lifetime 0** (the kernel
//!   marks them deprecated and never picks them as a source address) and a
//!   **finite valid lifetime** (`IFA_CACHEINFO`), so the kernel deletes a VIP
//!   by itself when its daemon stops refreshing it (`docs/architecture.md`, invariant 8).
//!   A refresh is one `RTM_NEWADDR` with `NLM_F_REPLACE`.
//! - IPv6 VIPs are added with `IFA_F_NODAD`: usable at once, never stuck
//!   tentative or `dadfailed` after a fast failover.
//! - Add and remove are idempotent (`EEXIST` / `EADDRNOTAVAIL` are success).
//! - A VIP is refused with [`AddressError::WouldBeOnlyAddress`] when it would
//!   be the only usable global address of its family on the interface
//!   (kube-vip #682: kubelet would adopt it as the node IP). Deprecated
//!   addresses (other VIPs) do not count as usable.
//!
//! Lifetimes are whole seconds: a requested lifetime is rounded *down* (the
//! kernel never keeps an address longer than asked) and is at least 1 s.
//! The kernel deletes an unrefreshed address a little after its valid
//! lifetime, because its address-lifetime workers run on rounded timer
//! boundaries: measured 15–440 ms on Linux 6.18 depending on the phase of
//! the add (`tests/kernel/address.rs`,
//! `unrefreshed_address_expires_and_refreshed_one_stays`; figures in the
//! crate README). Budget 1 s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope, CacheInfo,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteHeader, RouteMessage, RouteType};
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::sys::AsyncSocket;
use rtnetlink::{AddressMessageBuilder, Handle, MulticastGroup, RouteMessageBuilder};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use vip_core::{
    AddressError, AddressManager, Interface, InterfaceSelector, LinkEvent, MacAddr, Presence,
    VipAddress, VipSpec,
};

use crate::detect::{self, AddrInfo, LinkInfo};

/// The kernel's "forever" lifetime (`INFINITY_LIFE_TIME`).
pub const INFINITE_LIFETIME: u32 = u32::MAX;
/// Capacity of a [`AddressManager::subscribe`] channel.
pub const EVENT_CAPACITY: usize = 64;

/// The valid lifetime in seconds the kernel is given for `lifetime`:
/// rounded down, at least 1, `INFINITE_LIFETIME` for `None`.
pub fn lifetime_seconds(lifetime: Option<Duration>) -> u32 {
    match lifetime {
        None => INFINITE_LIFETIME,
        Some(d) => d.as_secs().clamp(1, u64::from(INFINITE_LIFETIME - 1)) as u32,
    }
}

/// Makes VIPs present or absent with rtnetlink, resolves interfaces and
/// watches link and address events.
///
/// ```no_run
/// # async fn demo() -> Result<(), vip_core::AddressError> {
/// use std::time::Duration;
/// use vip_core::{AddressManager, InterfaceSelector, VipSpec};
/// let manager = vip_arp::NetlinkAddressManager::new()?;
/// let spec: VipSpec = "198.18.0.140".parse().unwrap();
/// let interface = manager.resolve(&InterfaceSelector::Auto, &spec).await?;
/// let vip = spec.addresses()[0];
/// manager.ensure_present(&interface, &vip, Some(Duration::from_secs(4))).await?;
/// # Ok(()) }
/// ```
///
/// It talks to the network namespace of the thread that called
/// [`new`](Self::new), from inside a tokio runtime.
#[derive(Debug)]
pub struct NetlinkAddressManager {
    handle: Handle,
    connection: JoinHandle<()>,
    /// Our netlink port id: the kernel stamps it on the notifications our
    /// own requests cause, which is how [`AddressManager::subscribe`] tells
    /// our removals from everyone else's.
    port: u32,
}

impl Drop for NetlinkAddressManager {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

fn kernel_error(operation: String, e: rtnetlink::Error) -> AddressError {
    match errno(&e) {
        Some(libc::EPERM | libc::EACCES) => AddressError::PermissionDenied { operation },
        Some(code) => AddressError::Kernel {
            operation,
            message: std::io::Error::from_raw_os_error(code).to_string(),
            source: Some(Box::new(e)),
        },
        None => AddressError::Kernel {
            operation,
            message: e.to_string(),
            source: Some(Box::new(e)),
        },
    }
}

fn io_error(operation: &str, e: std::io::Error) -> AddressError {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        return AddressError::PermissionDenied {
            operation: operation.to_string(),
        };
    }
    AddressError::Kernel {
        operation: operation.to_string(),
        message: e.to_string(),
        source: Some(Box::new(e)),
    }
}

/// The address an `RTM_NEWADDR`/`RTM_DELADDR` message is about
/// (`IFA_LOCAL` for IPv4, `IFA_ADDRESS` for IPv6).
pub(crate) fn address_of(m: &AddressMessage) -> Option<IpAddr> {
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    match m.header.family {
        AddressFamily::Inet => local.or(address),
        _ => address.or(local),
    }
}

fn is_deprecated(m: &AddressMessage) -> bool {
    m.header.flags.contains(AddressHeaderFlags::Deprecated)
        || m.attributes.iter().any(|a| match a {
            AddressAttribute::Flags(f) => f.contains(AddressFlags::Deprecated),
            _ => false,
        })
}

/// Whether message `m` is `vip`: same address, and for IPv4 (where the
/// kernel keys addresses by address and prefix) the same prefix.
fn is_vip(m: &AddressMessage, vip: &VipAddress) -> bool {
    address_of(m) == Some(vip.addr()) && (!vip.is_ipv4() || m.header.prefix_len == vip.prefix())
}

fn family_of(vip: &VipAddress) -> (AddressFamily, &'static str) {
    if vip.is_ipv4() {
        (AddressFamily::Inet, "IPv4")
    } else {
        (AddressFamily::Inet6, "IPv6")
    }
}

fn link_name(m: &LinkMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

fn interface_from(m: &LinkMessage) -> Result<Interface, AddressError> {
    let name = link_name(m).unwrap_or_else(|| format!("#{}", m.header.index));
    let mac = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
        _ => None,
    });
    match mac {
        Some(mac) => Ok(Interface {
            name,
            index: m.header.index,
            mac: MacAddr(mac),
        }),
        None => Err(AddressError::Kernel {
            operation: format!("resolving interface {name}"),
            message: "it has no Ethernet hardware address; ARP mode needs one".into(),
            source: None,
        }),
    }
}

/// Whether the link has carrier: administratively up and lower layer up.
pub(crate) fn has_carrier(flags: LinkFlags) -> bool {
    flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp)
}

fn is_main_table(r: &RouteMessage) -> bool {
    let table = r
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table));
    table == u32::from(RouteHeader::RT_TABLE_MAIN)
}

fn route_interfaces(r: &RouteMessage) -> Vec<u32> {
    let mut out = Vec::new();
    for a in &r.attributes {
        match a {
            RouteAttribute::Oif(i) => out.push(*i),
            RouteAttribute::MultiPath(hops) => {
                out.extend(hops.iter().map(|h| h.interface_index).filter(|i| *i != 0));
            }
            _ => {}
        }
    }
    out
}

impl NetlinkAddressManager {
    /// Open a netlink connection in the calling thread's network namespace
    /// and spawn its driver task. Must be called inside a tokio runtime.
    pub fn new() -> Result<Self, AddressError> {
        let (mut connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| io_error("opening a netlink socket", e))?;
        let port = connection
            .socket_mut()
            .socket_mut()
            .bind_auto()
            .map_err(|e| io_error("binding a netlink socket", e))?
            .port_number();
        Ok(Self {
            handle,
            connection: tokio::spawn(connection),
            port,
        })
    }

    async fn link_by_name(&self, name: &str) -> Result<LinkMessage, AddressError> {
        let request = self.handle.link().get().match_name(name.to_string());
        Self::one_link(request, name).await
    }

    async fn link_by_index(&self, index: u32, name: &str) -> Result<LinkMessage, AddressError> {
        let request = self.handle.link().get().match_index(index);
        Self::one_link(request, name).await
    }

    /// The one link a filtered request finds, or `NoSuchInterface`.
    async fn one_link(
        request: rtnetlink::LinkGetRequest,
        name: &str,
    ) -> Result<LinkMessage, AddressError> {
        let mut links = request.execute();
        match links.try_next().await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(AddressError::NoSuchInterface { name: name.into() }),
            Err(e) if errno(&e) == Some(libc::ENODEV) => {
                Err(AddressError::NoSuchInterface { name: name.into() })
            }
            Err(e) => Err(kernel_error(format!("looking up interface {name}"), e)),
        }
    }

    async fn links(&self) -> Result<Vec<LinkMessage>, AddressError> {
        self.handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| kernel_error("listing interfaces".into(), e))
    }

    /// Addresses of one family (or all), on one interface (or all).
    async fn addresses(
        &self,
        index: Option<u32>,
        family: Option<AddressFamily>,
    ) -> Result<Vec<AddressMessage>, AddressError> {
        let mut request = self.handle.address().get();
        if let Some(f) = family {
            request.message_mut().header.family = f;
        }
        if let Some(i) = index {
            request = request.set_link_index_filter(i);
        }
        request
            .execute()
            .try_filter(|m| futures::future::ready(family.is_none_or(|f| m.header.family == f)))
            .try_collect()
            .await
            .map_err(|e| kernel_error("listing addresses".into(), e))
    }

    async fn default_route_interfaces(&self, v6: bool) -> Result<Vec<u32>, AddressError> {
        let query = if v6 {
            RouteMessageBuilder::<Ipv6Addr>::new().build()
        } else {
            RouteMessageBuilder::<Ipv4Addr>::new().build()
        };
        let routes: Vec<RouteMessage> = self
            .handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(|e| kernel_error("listing routes".into(), e))?;
        Ok(routes
            .iter()
            .filter(|r| {
                r.header.destination_prefix_length == 0
                    && r.header.kind == RouteType::Unicast
                    && is_main_table(r)
            })
            .flat_map(route_interfaces)
            .collect())
    }

    async fn auto_detect(&self, vips: &VipSpec) -> Result<Interface, AddressError> {
        let links = self.links().await?;
        let infos: Vec<LinkInfo> = links
            .iter()
            .map(|l| LinkInfo {
                index: l.header.index,
                name: link_name(l).unwrap_or_else(|| format!("#{}", l.header.index)),
                loopback: l.header.flags.contains(LinkFlags::Loopback),
            })
            .collect();
        let addrs: Vec<AddrInfo> = self
            .addresses(None, None)
            .await?
            .iter()
            .filter_map(|m| {
                address_of(m).map(|addr| AddrInfo {
                    index: m.header.index,
                    addr,
                    prefix: m.header.prefix_len,
                })
            })
            .collect();
        let v4 = self.default_route_interfaces(false).await?;
        let v6 = self.default_route_interfaces(true).await?;
        let index = detect::choose(vips.addresses(), &infos, &addrs, &v4, &v6)?;
        let link = links
            .iter()
            .find(|l| l.header.index == index)
            .ok_or_else(|| AddressError::NoSuchInterface {
                name: format!("#{index}"),
            })?;
        interface_from(link)
    }

    async fn add(
        &self,
        interface: &Interface,
        vip: &VipAddress,
        valid_lifetime: Option<Duration>,
        replace: bool,
    ) -> Result<(), rtnetlink::Error> {
        let mut request = self
            .handle
            .address()
            .add(interface.index, vip.addr(), vip.prefix());
        if replace {
            request = request.replace();
        }
        let message = request.message_mut();
        let mut cache = CacheInfo::default();
        cache.ifa_preferred = 0;
        cache.ifa_valid = lifetime_seconds(valid_lifetime);
        message.attributes.push(AddressAttribute::CacheInfo(cache));
        if !vip.is_ipv4() {
            message.header.flags |= AddressHeaderFlags::Nodad;
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        request.execute().await
    }

    /// Whether `vip` may be added to `interface`: another usable global
    /// address of its family must be there already.
    async fn check_not_only(
        &self,
        interface: &Interface,
        vip: &VipAddress,
        existing: &[AddressMessage],
    ) -> Result<(), AddressError> {
        let others = existing.iter().any(|m| {
            address_of(m).is_some_and(|a| a != vip.addr())
                && m.header.scope == AddressScope::Universe
                && !is_deprecated(m)
        });
        if others {
            return Ok(());
        }
        // An empty list may mean the interface does not exist.
        self.link_by_index(interface.index, &interface.name).await?;
        Err(AddressError::WouldBeOnlyAddress {
            vip: *vip,
            interface: interface.name.clone(),
            family: family_of(vip).1,
        })
    }
}

#[async_trait]
impl AddressManager for NetlinkAddressManager {
    async fn resolve(
        &self,
        selector: &InterfaceSelector,
        vips: &VipSpec,
    ) -> Result<Interface, AddressError> {
        match selector {
            InterfaceSelector::Name(name) => interface_from(&self.link_by_name(name).await?),
            InterfaceSelector::Auto => self.auto_detect(vips).await,
        }
    }

    async fn ensure_present(
        &self,
        interface: &Interface,
        vip: &VipAddress,
        valid_lifetime: Option<Duration>,
    ) -> Result<Presence, AddressError> {
        let (family, _) = family_of(vip);
        let existing = self.addresses(Some(interface.index), Some(family)).await?;
        let present = existing.iter().any(|m| is_vip(m, vip));
        if !present {
            self.check_not_only(interface, vip, &existing).await?;
        }
        let operation = || format!("adding {vip} to {}", interface.name);
        match self.add(interface, vip, valid_lifetime, present).await {
            Ok(()) if present => Ok(Presence::Refreshed),
            Ok(()) => Ok(Presence::Added),
            // Added by someone else between the dump and the add.
            Err(e) if errno(&e) == Some(libc::EEXIST) => self
                .add(interface, vip, valid_lifetime, true)
                .await
                .map(|()| Presence::Refreshed)
                .map_err(|e| kernel_error(operation(), e)),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Err(AddressError::NoSuchInterface {
                name: interface.name.clone(),
            }),
            Err(e) => Err(kernel_error(operation(), e)),
        }
    }

    async fn ensure_absent(
        &self,
        interface: &Interface,
        vip: &VipAddress,
    ) -> Result<bool, AddressError> {
        let message = match vip.addr() {
            IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(interface.index)
                .address(a, vip.prefix())
                .build(),
            IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(interface.index)
                .address(a, vip.prefix())
                .build(),
        };
        match self.handle.address().del(message).execute().await {
            Ok(()) => Ok(true),
            // Not there, or its interface is gone (and the address with it).
            Err(e) if matches!(errno(&e), Some(libc::EADDRNOTAVAIL | libc::ENODEV)) => Ok(false),
            Err(e) => Err(kernel_error(
                format!("removing {vip} from {}", interface.name),
                e,
            )),
        }
    }

    async fn is_present(
        &self,
        interface: &Interface,
        vip: &VipAddress,
    ) -> Result<bool, AddressError> {
        let (family, _) = family_of(vip);
        Ok(self
            .addresses(Some(interface.index), Some(family))
            .await?
            .iter()
            .any(|m| is_vip(m, vip)))
    }

    /// Carrier changes of the interface (up = administratively up with
    /// lower layer up) and removals of any of `vips` from it by someone
    /// else or by the kernel (lifetime expiry, link flush) — not the
    /// removals this manager makes itself — from the
    /// kernel's `RTNLGRP_LINK`, `RTNLGRP_IPV4_IFADDR` and
    /// `RTNLGRP_IPV6_IFADDR` multicast groups. The subscription is in place
    /// when this returns; it ends when the receiver is dropped.
    async fn subscribe(
        &self,
        interface: &Interface,
        vips: &VipSpec,
    ) -> Result<mpsc::Receiver<LinkEvent>, AddressError> {
        let (connection, _handle, mut messages) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
        ])
        .map_err(|e| io_error("subscribing to netlink events", e))?;
        let driver = tokio::spawn(connection);
        // Read the carrier after subscribing, so no change falls in between.
        let link = match self.link_by_index(interface.index, &interface.name).await {
            Ok(l) => l,
            Err(e) => {
                driver.abort();
                return Err(e);
            }
        };
        let mut watch = Watch {
            index: interface.index,
            vips: vips.addresses().iter().map(VipAddress::addr).collect(),
            carrier: has_carrier(link.header.flags),
            own_port: self.port,
        };
        let (tx, rx) = mpsc::channel(EVENT_CAPACITY);
        let name = interface.name.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tx.closed() => break,
                    message = messages.next() => {
                        let Some((message, _)) = message else {
                            tracing::warn!(interface = %name, "netlink event stream ended");
                            break;
                        };
                        let sender = message.header.port_number;
                        let NetlinkPayload::InnerMessage(inner) = message.payload else {
                            continue;
                        };
                        if let Some(event) = watch.event(sender, &inner) {
                            tracing::debug!(interface = %name, ?event, "link event");
                            if tx.send(event).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            driver.abort();
        });
        Ok(rx)
    }
}

/// Turns rtnetlink notifications into [`LinkEvent`]s for one interface.
#[derive(Debug, Clone)]
pub(crate) struct Watch {
    pub(crate) index: u32,
    pub(crate) vips: Vec<IpAddr>,
    pub(crate) carrier: bool,
    /// The manager's own netlink port: address removals it caused are not
    /// reported.
    pub(crate) own_port: u32,
}

impl Watch {
    /// The event a notification means, if any. `sender` is the port id the
    /// kernel stamped on it: the requester's, or 0 for the kernel itself.
    pub(crate) fn event(
        &mut self,
        sender: u32,
        message: &RouteNetlinkMessage,
    ) -> Option<LinkEvent> {
        match message {
            RouteNetlinkMessage::NewLink(m) if m.header.index == self.index => {
                let carrier = has_carrier(m.header.flags);
                if carrier == self.carrier {
                    return None;
                }
                self.carrier = carrier;
                Some(if carrier {
                    LinkEvent::CarrierUp
                } else {
                    LinkEvent::CarrierDown
                })
            }
            RouteNetlinkMessage::DelLink(m) if m.header.index == self.index && self.carrier => {
                self.carrier = false;
                Some(LinkEvent::CarrierDown)
            }
            RouteNetlinkMessage::DelAddress(m)
                if m.header.index == self.index && (sender == 0 || sender != self.own_port) =>
            {
                address_of(m)
                    .filter(|a| self.vips.contains(a))
                    .map(LinkEvent::AddressRemoved)
            }
            _ => None,
        }
    }
}

/// The state of an interface, for `vip preflight` and `vip status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkReport {
    /// Administratively up.
    pub up: bool,
    /// Up with carrier (lower layer up).
    pub carrier: bool,
    /// Its addresses with their prefix lengths, both families.
    pub addresses: Vec<(IpAddr, u8)>,
}

impl NetlinkAddressManager {
    /// Whether `interface` is up, has carrier, and which addresses it has.
    pub async fn link_report(&self, interface: &Interface) -> Result<LinkReport, AddressError> {
        let link = self.link_by_index(interface.index, &interface.name).await?;
        let addresses = self
            .addresses(Some(interface.index), None)
            .await?
            .iter()
            .filter_map(|m| address_of(m).map(|a| (a, m.header.prefix_len)))
            .collect();
        Ok(LinkReport {
            up: link.header.flags.contains(LinkFlags::Up),
            carrier: has_carrier(link.header.flags),
            addresses,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, flags: LinkFlags) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = flags;
        m
    }

    fn addr(index: u32, ip: &str) -> AddressMessage {
        let ip: IpAddr = ip.parse().unwrap();
        let mut m = match ip {
            IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(index)
                .address(a, 32)
                .build(),
            IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(index)
                .address(a, 128)
                .build(),
        };
        m.header.index = index;
        m
    }

    #[test]
    fn lifetimes_round_down_and_stay_positive() {
        assert_eq!(lifetime_seconds(None), INFINITE_LIFETIME);
        assert_eq!(lifetime_seconds(Some(Duration::from_millis(4999))), 4);
        assert_eq!(lifetime_seconds(Some(Duration::from_millis(200))), 1);
        assert_eq!(lifetime_seconds(Some(Duration::from_secs(5))), 5);
        assert_eq!(
            lifetime_seconds(Some(Duration::from_secs(u64::MAX))),
            INFINITE_LIFETIME - 1
        );
    }

    #[test]
    fn watch_reports_carrier_transitions_once() {
        let up = LinkFlags::Up | LinkFlags::LowerUp | LinkFlags::Running;
        let mut w = Watch {
            index: 7,
            vips: vec!["198.18.0.10".parse().unwrap()],
            carrier: true,
            own_port: 4242,
        };
        assert_eq!(w.event(0, &RouteNetlinkMessage::NewLink(link(7, up))), None);
        assert_eq!(
            w.event(0, &RouteNetlinkMessage::NewLink(link(7, LinkFlags::Up))),
            Some(LinkEvent::CarrierDown)
        );
        assert_eq!(
            w.event(
                0,
                &RouteNetlinkMessage::NewLink(link(7, LinkFlags::empty()))
            ),
            None
        );
        assert_eq!(w.event(0, &RouteNetlinkMessage::NewLink(link(8, up))), None);
        assert_eq!(
            w.event(0, &RouteNetlinkMessage::NewLink(link(7, up))),
            Some(LinkEvent::CarrierUp)
        );
        assert_eq!(
            w.event(0, &RouteNetlinkMessage::DelLink(link(7, up))),
            Some(LinkEvent::CarrierDown)
        );
    }

    #[test]
    fn watch_reports_only_our_vips_on_our_interface() {
        let mut w = Watch {
            index: 7,
            vips: vec![
                "198.18.0.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
            ],
            carrier: true,
            own_port: 4242,
        };
        assert_eq!(
            w.event(0, &RouteNetlinkMessage::DelAddress(addr(7, "198.18.0.10"))),
            Some(LinkEvent::AddressRemoved("198.18.0.10".parse().unwrap()))
        );
        assert_eq!(
            w.event(0, &RouteNetlinkMessage::DelAddress(addr(7, "2001:db8::10"))),
            Some(LinkEvent::AddressRemoved("2001:db8::10".parse().unwrap()))
        );
        assert_eq!(
            w.event(0, &RouteNetlinkMessage::DelAddress(addr(8, "198.18.0.10"))),
            None
        );
        assert_eq!(
            w.event(0, &RouteNetlinkMessage::DelAddress(addr(7, "198.18.0.11"))),
            None
        );
        assert_eq!(
            w.event(0, &RouteNetlinkMessage::NewAddress(addr(7, "198.18.0.10"))),
            None
        );
        // Our own removal is not news; someone else's request is.
        assert_eq!(
            w.event(
                4242,
                &RouteNetlinkMessage::DelAddress(addr(7, "198.18.0.10"))
            ),
            None
        );
        assert_eq!(
            w.event(
                777,
                &RouteNetlinkMessage::DelAddress(addr(7, "198.18.0.10"))
            ),
            Some(LinkEvent::AddressRemoved("198.18.0.10".parse().unwrap()))
        );
    }

    #[test]
    fn vip_matching_and_deprecation() {
        let vip: VipAddress = "198.18.0.10/32".parse().unwrap();
        let m = addr(7, "198.18.0.10");
        assert!(is_vip(&m, &vip));
        let other: VipAddress = "198.18.0.10/24".parse().unwrap();
        assert!(!is_vip(&m, &other));
        let v6: VipAddress = "2001:db8::10/64".parse().unwrap();
        assert!(is_vip(&addr(7, "2001:db8::10"), &v6));
        let mut d = addr(7, "198.18.0.1");
        assert!(!is_deprecated(&d));
        d.attributes
            .push(AddressAttribute::Flags(AddressFlags::Deprecated));
        assert!(is_deprecated(&d));
    }
}
