//! The in-memory segment: interfaces whose address managers honour
//! address lifetimes the way the kernel does and record every action with
//! its time, the announcer, and the heartbeats, with the faults of fast
//! failover (links cut, hosts powered off, daemons frozen, heartbeats
//! filtered while ARP passes).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::address::{AddressError, AddressManager, LinkEvent, Presence};
use crate::announce::{AnnounceError, Announcer, Conflict};
use crate::heartbeat::{ElectionId, HeardBeat, Heartbeat, HeartbeatChannel, HeartbeatError};
use crate::model::{Interface, InterfaceSelector, MacAddr, VipAddress, VipSpec};

use super::lock;

/// What happened to an address, for the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressAction {
    /// Added by the node's manager.
    Added,
    /// Lifetime refreshed by the node's manager.
    Refreshed,
    /// Removed by the node's manager.
    Removed,
    /// Removed by someone else ([`MemoryNetwork::remove_external`]).
    RemovedExternally,
}

/// One address action with its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRecord {
    /// When.
    pub at: Instant,
    /// Which node.
    pub node: String,
    /// Which address.
    pub address: IpAddr,
    /// What.
    pub action: AddressAction,
    /// The valid lifetime set, if any.
    pub lifetime: Option<Duration>,
}

/// A time interval during which a node held an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldInterval {
    /// The node.
    pub node: String,
    /// The address.
    pub address: IpAddr,
    /// When it appeared.
    pub start: Instant,
    /// When it went away (removed, or expired by its lifetime); `None`
    /// while still held.
    pub end: Option<Instant>,
}

/// One announcement on the in-memory segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncementRecord {
    /// When.
    pub at: Instant,
    /// By which node.
    pub node: String,
    /// For which address.
    pub address: IpAddr,
}

#[derive(Debug)]
struct HeldAddress {
    start: Instant,
    expires: Option<Instant>,
}

#[derive(Debug, Default)]
struct NetState {
    macs: HashMap<String, MacAddr>,
    held: HashMap<(String, IpAddr), HeldAddress>,
    closed: Vec<HeldInterval>,
    actions: Vec<AddressRecord>,
    announcements: Vec<AnnouncementRecord>,
    link_subs: Vec<(String, Vec<IpAddr>, mpsc::Sender<LinkEvent>)>,
    conflict_subs: Vec<(String, Vec<IpAddr>, mpsc::Sender<Conflict>)>,
    foreign: HashMap<IpAddr, MacAddr>,
    /// Nodes whose link is down (cut, or the host powered off).
    link_down: HashSet<String>,
    /// Every link change: when, which node, up.
    link_log: Vec<(Instant, String, bool)>,
    /// Per node: frozen (its parts' calls wait).
    frozen: HashMap<String, watch::Sender<bool>>,
    /// Nodes whose heartbeats are dropped in both directions.
    beat_filter: HashSet<String>,
    beat_subs: Vec<(String, ElectionId, mpsc::Sender<HeardBeat>)>,
    beats_sent: HashMap<String, u64>,
}

impl NetState {
    fn link_up(&self, node: &str) -> bool {
        !self.link_down.contains(node)
    }

    fn frozen_rx(&mut self, node: &str) -> watch::Receiver<bool> {
        self.frozen
            .entry(node.to_string())
            .or_insert_with(|| watch::channel(false).0)
            .subscribe()
    }

    /// The node whose kernel answers for `address` now (holds it with its
    /// link up), other than `except`.
    fn answering(&self, address: IpAddr, except: &str) -> Option<String> {
        self.held
            .keys()
            .find(|(n, a)| *a == address && n != except && self.link_up(n))
            .map(|(n, _)| n.clone())
    }

    fn close(&mut self, node: &str, address: IpAddr, at: Instant) -> bool {
        match self.held.remove(&(node.to_string(), address)) {
            Some(h) => {
                self.closed.push(HeldInterval {
                    node: node.to_string(),
                    address,
                    start: h.start,
                    end: Some(at),
                });
                true
            }
            None => false,
        }
    }
}

impl NetState {
    /// Let the "kernel" delete addresses whose lifetime ran out.
    fn expire(&mut self, now: Instant) {
        let expired: Vec<_> = self
            .held
            .iter()
            .filter(|(_, h)| h.expires.is_some_and(|e| e <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some(h) = self.held.remove(&k) {
                self.closed.push(HeldInterval {
                    node: k.0,
                    address: k.1,
                    start: h.start,
                    end: h.expires,
                });
            }
        }
    }
}

/// An in-memory layer-2 segment: per-node address tables that honour valid
/// lifetimes (with a worst-case kernel lag), a log of every action, and
/// announcements.
#[derive(Debug, Clone)]
pub struct MemoryNetwork {
    state: Arc<Mutex<NetState>>,
    kernel_lag: Duration,
}

impl Default for MemoryNetwork {
    fn default() -> Self {
        Self::new(Duration::from_secs(1))
    }
}

impl MemoryNetwork {
    /// A segment whose "kernel" deletes an address `kernel_lag` after its
    /// valid lifetime ran out (the worst case of Linux's ~1 s lag).
    pub fn new(kernel_lag: Duration) -> Self {
        Self {
            state: Arc::new(Mutex::new(NetState::default())),
            kernel_lag,
        }
    }

    /// The address manager and announcer of node `name` with hardware
    /// address `mac`.
    pub fn node(&self, name: &str, mac: MacAddr) -> (MemoryAddressManager, MemoryAnnouncer) {
        lock(&self.state).macs.insert(name.to_string(), mac);
        (
            MemoryAddressManager {
                net: self.clone(),
                node: name.to_string(),
                mac,
            },
            MemoryAnnouncer {
                net: self.clone(),
                node: name.to_string(),
            },
        )
    }

    /// Every interval during which a node held an address, up to now.
    pub fn intervals(&self) -> Vec<HeldInterval> {
        let mut st = lock(&self.state);
        st.expire(Instant::now());
        let mut v = st.closed.clone();
        v.extend(st.held.iter().map(|((n, a), h)| HeldInterval {
            node: n.clone(),
            address: *a,
            start: h.start,
            end: None,
        }));
        v.sort_by_key(|i| i.start);
        v
    }

    /// The nodes holding `address` now.
    pub fn holders(&self, address: IpAddr) -> Vec<String> {
        let mut st = lock(&self.state);
        st.expire(Instant::now());
        let mut v: Vec<_> = st
            .held
            .keys()
            .filter(|(_, a)| *a == address)
            .map(|(n, _)| n.clone())
            .collect();
        v.sort();
        v
    }

    /// Every address action so far.
    pub fn actions(&self) -> Vec<AddressRecord> {
        lock(&self.state).actions.clone()
    }

    /// Every announcement so far.
    pub fn announcements(&self) -> Vec<AnnouncementRecord> {
        lock(&self.state).announcements.clone()
    }

    /// Forget the history (closed intervals, actions, announcements; the
    /// addresses held now stay), so that a long run's memory is the code's
    /// under test, not the records'.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use vip_core::testutil::MemoryNetwork;
    /// use vip_core::{AddressManager, Interface, MacAddr, VipAddress};
    /// let net = MemoryNetwork::default();
    /// let (addresses, _announcer) = net.node("a", MacAddr([2, 0, 0, 0, 0, 1]));
    /// let vip = VipAddress::host("198.18.0.100".parse().unwrap()).unwrap();
    /// let iface = Interface { name: "eth0".into(), index: 1, mac: MacAddr([2, 0, 0, 0, 0, 1]) };
    /// addresses.ensure_present(&iface, &vip, Some(Duration::from_secs(3))).await.unwrap();
    /// assert!(!net.actions().is_empty());
    /// net.clear_history();
    /// assert!(net.actions().is_empty());
    /// assert_eq!(net.holders(vip.addr()), ["a"]);
    /// # }
    /// ```
    pub fn clear_history(&self) {
        let mut st = lock(&self.state);
        st.closed = Vec::new();
        st.actions = Vec::new();
        st.announcements = Vec::new();
    }

    /// Remove an address from a node as an administrator's `ip addr del`
    /// would, raising [`LinkEvent::AddressRemoved`].
    pub fn remove_external(&self, node: &str, address: IpAddr) {
        let mut st = lock(&self.state);
        let now = Instant::now();
        st.expire(now);
        if let Some(h) = st.held.remove(&(node.to_string(), address)) {
            st.closed.push(HeldInterval {
                node: node.to_string(),
                address,
                start: h.start,
                end: Some(now),
            });
            st.actions.push(AddressRecord {
                at: now,
                node: node.to_string(),
                address,
                action: AddressAction::RemovedExternally,
                lifetime: None,
            });
        }
        for (n, vips, tx) in &st.link_subs {
            if n == node && vips.contains(&address) {
                let _ = tx.try_send(LinkEvent::AddressRemoved(address));
            }
        }
    }

    /// Put an address on a node directly, as a crashed daemon or an old
    /// kube-vip would have left it (no lifetime).
    pub fn add_stale(&self, node: &str, address: IpAddr) {
        let mut st = lock(&self.state);
        st.held.insert(
            (node.to_string(), address),
            HeldAddress {
                start: Instant::now(),
                expires: None,
            },
        );
    }

    /// Carrier down or up on a node's interface: the link is cut (no
    /// heartbeats, probes or answers cross it) or restored, and the node's
    /// manager reports the carrier change.
    pub fn set_carrier(&self, node: &str, up: bool) {
        let mut st = lock(&self.state);
        let now = Instant::now();
        st.expire(now);
        let changed = if up {
            st.link_down.remove(node)
        } else {
            st.link_down.insert(node.to_string())
        };
        if changed {
            st.link_log.push((now, node.to_string(), up));
        }
        let ev = if up {
            LinkEvent::CarrierUp
        } else {
            LinkEvent::CarrierDown
        };
        for (n, _, tx) in &st.link_subs {
            if n == node {
                let _ = tx.try_send(ev.clone());
            }
        }
    }

    /// The host loses power: its addresses are gone at once and its link
    /// is down (the daemon is killed separately, e.g. by aborting its
    /// controller). [`power_on`](Self::power_on) brings the link back.
    pub fn power_off(&self, node: &str) {
        {
            let mut st = lock(&self.state);
            let now = Instant::now();
            st.expire(now);
            let mine: Vec<IpAddr> = st
                .held
                .keys()
                .filter(|(n, _)| n == node)
                .map(|(_, a)| *a)
                .collect();
            for a in mine {
                st.close(node, a, now);
            }
            // A dead host reports nothing.
            st.link_subs.retain(|(n, _, _)| n != node);
            st.conflict_subs.retain(|(n, _, _)| n != node);
            st.beat_subs.retain(|(n, _, _)| n != node);
        }
        self.set_carrier(node, false);
    }

    /// The host is back (its link up, its tables empty).
    pub fn power_on(&self, node: &str) {
        self.set_carrier(node, true);
    }

    /// Freeze a node's daemon as SIGSTOP would (every call of its address
    /// manager, announcer and heartbeat channel waits), or thaw it. Its
    /// kernel goes on: held addresses answer and expire.
    pub fn set_frozen(&self, node: &str, frozen: bool) {
        let mut st = lock(&self.state);
        st.frozen_rx(node);
        if let Some(tx) = st.frozen.get(node) {
            tx.send_replace(frozen);
        }
    }

    /// Drop a node's heartbeats in both directions (a switch filter),
    /// while ARP and everything else pass.
    pub fn filter_heartbeats(&self, node: &str, on: bool) {
        let mut st = lock(&self.state);
        if on {
            st.beat_filter.insert(node.to_string());
        } else {
            st.beat_filter.remove(node);
        }
    }

    /// How many heartbeats a node sent (including dropped ones).
    pub fn beats_sent(&self, node: &str) -> u64 {
        lock(&self.state).beats_sent.get(node).copied().unwrap_or(0)
    }

    /// Every interval during which a node's kernel *answered* for an
    /// address: it held it and its link was up. Two nodes answering at
    /// once is the overlap fast failover must never cause.
    pub fn answering(&self) -> Vec<HeldInterval> {
        let held = self.intervals();
        let log = lock(&self.state).link_log.clone();
        let far = Instant::now() + Duration::from_secs(24 * 3600);
        let mut out = vec![];
        for iv in held {
            // The node's link-down periods, as [from, to).
            let mut downs: Vec<(Instant, Instant)> = vec![];
            let mut down_since: Option<Instant> = None;
            for (t, n, up) in &log {
                if *n != iv.node {
                    continue;
                }
                match (up, down_since) {
                    (false, None) => down_since = Some(*t),
                    (true, Some(d)) => {
                        downs.push((d, *t));
                        down_since = None;
                    }
                    _ => {}
                }
            }
            if let Some(d) = down_since {
                downs.push((d, far));
            }
            let end = iv.end.unwrap_or(far);
            let mut start = iv.start;
            for (d0, d1) in downs {
                if d1 <= start || d0 >= end {
                    continue;
                }
                if d0 > start {
                    out.push(HeldInterval {
                        end: Some(d0),
                        start,
                        ..iv.clone()
                    });
                }
                start = start.max(d1);
            }
            if start < end {
                out.push(HeldInterval {
                    start,
                    end: iv.end.map(|_| end),
                    ..iv.clone()
                });
            }
        }
        out.sort_by_key(|i| i.start);
        out
    }

    /// The heartbeat channel of node `name` (hardware address `mac`).
    pub fn heartbeats(&self, name: &str, mac: MacAddr) -> MemoryHeartbeats {
        lock(&self.state).macs.insert(name.to_string(), mac);
        MemoryHeartbeats {
            net: self.clone(),
            node: name.to_string(),
            mac,
        }
    }

    /// Wait while `node` is frozen.
    async fn thawed(&self, node: &str) {
        let mut rx = lock(&self.state).frozen_rx(node);
        let _ = rx.wait_for(|f| !*f).await;
    }

    /// A foreign host with `mac` claims `address` (and answers probes for
    /// it), until [`clear_foreign`](Self::clear_foreign).
    pub fn inject_claim(&self, address: IpAddr, mac: MacAddr) {
        let mut st = lock(&self.state);
        st.foreign.insert(address, mac);
        for (node, vips, tx) in &st.conflict_subs {
            if vips.contains(&address) && st.macs.get(node) != Some(&mac) {
                let _ = tx.try_send(Conflict { address, mac });
            }
        }
    }

    /// The foreign host goes away.
    pub fn clear_foreign(&self, address: IpAddr) {
        lock(&self.state).foreign.remove(&address);
    }
}

/// A node's in-memory address manager.
#[derive(Debug, Clone)]
pub struct MemoryAddressManager {
    net: MemoryNetwork,
    node: String,
    mac: MacAddr,
}

impl MemoryAddressManager {
    fn record(
        &self,
        st: &mut NetState,
        address: IpAddr,
        action: AddressAction,
        lifetime: Option<Duration>,
    ) {
        st.actions.push(AddressRecord {
            at: Instant::now(),
            node: self.node.clone(),
            address,
            action,
            lifetime,
        });
    }
}

#[async_trait]
impl AddressManager for MemoryAddressManager {
    async fn resolve(
        &self,
        selector: &InterfaceSelector,
        _vips: &VipSpec,
    ) -> Result<Interface, AddressError> {
        let name = match selector {
            InterfaceSelector::Name(n) => n.clone(),
            InterfaceSelector::Auto => "eth0".to_string(),
        };
        Ok(Interface {
            name,
            index: 2,
            mac: self.mac,
        })
    }

    async fn ensure_present(
        &self,
        _interface: &Interface,
        vip: &VipAddress,
        valid_lifetime: Option<Duration>,
    ) -> Result<Presence, AddressError> {
        self.net.thawed(&self.node).await;
        let now = Instant::now();
        let mut st = lock(&self.net.state);
        st.expire(now);
        // Like the kernel: whole seconds, and up to `kernel_lag` late.
        let lifetime = valid_lifetime.map(|l| Duration::from_secs(l.as_secs()));
        if lifetime == Some(Duration::ZERO) {
            return Err(AddressError::Kernel {
                operation: format!("add {vip}"),
                message: "a valid lifetime of 0 s".into(),
                source: None,
            });
        }
        let expires = lifetime.map(|l| now + l + self.net.kernel_lag);
        let key = (self.node.clone(), vip.addr());
        let presence = if let Some(h) = st.held.get_mut(&key) {
            h.expires = expires;
            Presence::Refreshed
        } else {
            st.held.insert(
                key,
                HeldAddress {
                    start: now,
                    expires,
                },
            );
            Presence::Added
        };
        let action = match presence {
            Presence::Added => AddressAction::Added,
            Presence::Refreshed => AddressAction::Refreshed,
        };
        self.record(&mut st, vip.addr(), action, lifetime);
        Ok(presence)
    }

    async fn ensure_absent(
        &self,
        _interface: &Interface,
        vip: &VipAddress,
    ) -> Result<bool, AddressError> {
        self.net.thawed(&self.node).await;
        let now = Instant::now();
        let mut st = lock(&self.net.state);
        st.expire(now);
        match st.held.remove(&(self.node.clone(), vip.addr())) {
            Some(h) => {
                st.closed.push(HeldInterval {
                    node: self.node.clone(),
                    address: vip.addr(),
                    start: h.start,
                    end: Some(now),
                });
                self.record(&mut st, vip.addr(), AddressAction::Removed, None);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn is_present(
        &self,
        _interface: &Interface,
        vip: &VipAddress,
    ) -> Result<bool, AddressError> {
        self.net.thawed(&self.node).await;
        let mut st = lock(&self.net.state);
        st.expire(Instant::now());
        Ok(st.held.contains_key(&(self.node.clone(), vip.addr())))
    }

    async fn subscribe(
        &self,
        _interface: &Interface,
        vips: &VipSpec,
    ) -> Result<mpsc::Receiver<LinkEvent>, AddressError> {
        let (tx, rx) = mpsc::channel(64);
        let addrs = vips.addresses().iter().map(VipAddress::addr).collect();
        lock(&self.net.state)
            .link_subs
            .push((self.node.clone(), addrs, tx));
        Ok(rx)
    }
}

/// A node's in-memory announcer: records announcements, answers probes
/// from the segment's address tables, and delivers injected claims.
#[derive(Debug, Clone)]
pub struct MemoryAnnouncer {
    net: MemoryNetwork,
    node: String,
}

#[async_trait]
impl Announcer for MemoryAnnouncer {
    async fn announce(&self, _interface: &Interface, vip: IpAddr) -> Result<(), AnnounceError> {
        self.net.thawed(&self.node).await;
        lock(&self.net.state)
            .announcements
            .push(AnnouncementRecord {
                at: Instant::now(),
                node: self.node.clone(),
                address: vip,
            });
        Ok(())
    }

    async fn probe(
        &self,
        _interface: &Interface,
        address: IpAddr,
        timeout: Duration,
    ) -> Result<Option<MacAddr>, AnnounceError> {
        // Like an RFC 5227 probe: a host whose kernel holds the address
        // when the request goes out answers at once; otherwise any
        // announcement of it by another host within the wait counts.
        self.net.thawed(&self.node).await;
        let started = Instant::now();
        let cut_off = {
            let mut st = lock(&self.net.state);
            st.expire(started);
            if let Some(m) = st.foreign.get(&address) {
                return Ok(Some(*m));
            }
            if st.link_up(&self.node)
                && let Some(n) = st.answering(address, &self.node)
            {
                return Ok(st.macs.get(&n).copied());
            }
            !st.link_up(&self.node)
        };
        tokio::time::sleep(timeout).await;
        if cut_off {
            return Ok(None);
        }
        let st = lock(&self.net.state);
        let announcer = st
            .announcements
            .iter()
            .rev()
            .take_while(|a| a.at >= started)
            .find(|a| a.address == address && a.node != self.node && st.link_up(&a.node))
            .map(|a| a.node.clone());
        Ok(announcer.and_then(|n| st.macs.get(&n).copied()))
    }

    async fn subscribe_conflicts(
        &self,
        _interface: &Interface,
        vips: &[IpAddr],
    ) -> Result<mpsc::Receiver<Conflict>, AnnounceError> {
        let (tx, rx) = mpsc::channel(64);
        lock(&self.net.state)
            .conflict_subs
            .push((self.node.clone(), vips.to_vec(), tx));
        Ok(rx)
    }
}

/// A node's in-memory heartbeat channel: a heartbeat reaches every other
/// node whose link is up, unless the sender's or the receiver's heartbeats
/// are filtered ([`MemoryNetwork::filter_heartbeats`]).
#[derive(Debug, Clone)]
pub struct MemoryHeartbeats {
    net: MemoryNetwork,
    node: String,
    mac: MacAddr,
}

#[async_trait]
impl HeartbeatChannel for MemoryHeartbeats {
    async fn send(&self, _interface: &Interface, beat: &Heartbeat) -> Result<(), HeartbeatError> {
        self.net.thawed(&self.node).await;
        let mut st = lock(&self.net.state);
        *st.beats_sent.entry(self.node.clone()).or_default() += 1;
        if !st.link_up(&self.node) || st.beat_filter.contains(&self.node) {
            return Ok(());
        }
        st.beat_subs.retain(|(_, _, tx)| !tx.is_closed());
        for (n, election, tx) in &st.beat_subs {
            if *n != self.node
                && *election == beat.election
                && st.link_up(n)
                && !st.beat_filter.contains(n)
            {
                let _ = tx.try_send(HeardBeat {
                    beat: beat.clone(),
                    from: self.mac,
                });
            }
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        _interface: &Interface,
        election: ElectionId,
    ) -> Result<mpsc::Receiver<HeardBeat>, HeartbeatError> {
        let (tx, rx) = mpsc::channel(256);
        lock(&self.net.state)
            .beat_subs
            .push((self.node.clone(), election, tx));
        Ok(rx)
    }
}
