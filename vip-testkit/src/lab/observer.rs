//! The observer: an ARP/NDP prober in its own namespace that asks who has
//! each VIP every few milliseconds and records every answering MAC with
//! its time, and every announcement seen on the wire.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockFilter, Socket, Type};
use vip_arp::PacketAnnouncer;
use vip_arp::wire::arp::{ArpOp, ArpRepr};
use vip_arp::wire::ndp::{NdpRepr, NeighborSolicitRepr, multicast_mac, solicited_node};
use vip_core::MacAddr;

use super::{Lab, observer_host};
use super::{LabSetupError, host_v4, host_v6, io, other};
use crate::netns::{Host, NsThread};

/// How long after its send a probe round is judged (see
/// [`Observer::judged`]): younger rounds may not have their answers read
/// yet (the observer's reader is a thread that a loaded machine runs late).
pub const ANSWER_GRACE: Duration = Duration::from_millis(100);

/// The first two bytes of the source hardware address the observer puts in
/// its requests; the other four are the round number, so every answer
/// (which the kernel sends to that address) names its round exactly, however
/// late it arrives.
const ROUND_MAC_PREFIX: [u8; 2] = [0x02, 0xee];

fn round_mac(round: u32) -> MacAddr {
    let r = round.to_be_bytes();
    MacAddr([
        ROUND_MAC_PREFIX[0],
        ROUND_MAC_PREFIX[1],
        r[0],
        r[1],
        r[2],
        r[3],
    ])
}

fn round_of(mac: MacAddr) -> Option<u32> {
    (mac.0[..2] == ROUND_MAC_PREFIX)
        .then(|| u32::from_be_bytes([mac.0[2], mac.0[3], mac.0[4], mac.0[5]]))
}

/// What a frame seen by the observer was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeenKind {
    /// An answer to the observer's request of this round (ARP reply or
    /// solicited NA).
    Answer {
        /// The round.
        round: u32,
    },
    /// A gratuitous ARP (request or reply form) or an unsolicited NA.
    Announcement,
    /// An RFC 5227 probe or a DAD solicitation for the address.
    Probe,
    /// Any other frame that shows its sender using the address (e.g. the
    /// holder's own ARP requests sent from the VIP).
    Claim,
}

/// One frame about a VIP seen by the observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// When it was read.
    pub at: Instant,
    /// The VIP it is about.
    pub address: IpAddr,
    /// Who sent it (the sender hardware address for ARP, the Ethernet
    /// source for NDP).
    pub mac: MacAddr,
    /// What it was.
    pub kind: SeenKind,
}

/// One probe round: a request for one VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Its number (unique across the VIPs of one observer).
    pub id: u32,
    /// The VIP asked for.
    pub address: IpAddr,
    /// When it was sent.
    pub sent: Instant,
}

/// A stretch of time during which the same set of MACs answered for a VIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stretch {
    /// The MACs that answered (empty: nobody; two or more: overlap).
    pub macs: Vec<MacAddr>,
    /// The first round's send time.
    pub from: Instant,
    /// The send time of the round after the last one.
    pub to: Instant,
    /// How many rounds.
    pub rounds: usize,
}

/// What an [`Observer`] recorded.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// The rounds, in order.
    pub rounds: Vec<Round>,
    /// The frames about the VIPs, in order of arrival.
    pub seen: Vec<Seen>,
}

impl Observations {
    /// For each round of `address` (in order), the distinct MACs that
    /// answered it.
    pub fn answers(&self, address: IpAddr) -> Vec<(Round, Vec<MacAddr>)> {
        let mut by_round: BTreeMap<u32, BTreeSet<MacAddr>> = BTreeMap::new();
        for s in &self.seen {
            if let SeenKind::Answer { round } = s.kind
                && s.address == address
            {
                by_round.entry(round).or_default().insert(s.mac);
            }
        }
        self.rounds
            .iter()
            .filter(|r| r.address == address)
            .map(|r| {
                (
                    *r,
                    by_round
                        .get(&r.id)
                        .map(|m| m.iter().copied().collect())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The rounds of any VIP answered by two or more MACs: the instants
    /// with two owners.
    pub fn overlaps(&self) -> Vec<(Round, Vec<MacAddr>)> {
        let addresses: BTreeSet<IpAddr> = self.rounds.iter().map(|r| r.address).collect();
        addresses
            .into_iter()
            .flat_map(|a| self.answers(a))
            .filter(|(_, macs)| macs.len() > 1)
            .collect()
    }

    /// The stretches of `address`'s rounds with the same answering MACs,
    /// in order; the last stretch ends at the last round's send time.
    pub fn timeline(&self, address: IpAddr) -> Vec<Stretch> {
        let answers = self.answers(address);
        let mut out: Vec<Stretch> = Vec::new();
        for (i, (round, macs)) in answers.iter().enumerate() {
            let next = answers.get(i + 1).map_or(round.sent, |(r, _)| r.sent);
            match out.last_mut() {
                Some(s) if s.macs == *macs => {
                    s.to = next;
                    s.rounds += 1;
                }
                _ => out.push(Stretch {
                    macs: macs.clone(),
                    from: round.sent,
                    to: next,
                    rounds: 1,
                }),
            }
        }
        out
    }

    /// These observations with only the rounds sent in `[from, to)` (every
    /// frame is kept; frames of dropped rounds no longer count as answers).
    pub fn rounds_between(&self, from: Instant, to: Instant) -> Observations {
        Observations {
            rounds: self
                .rounds
                .iter()
                .filter(|r| r.sent >= from && r.sent < to)
                .copied()
                .collect(),
            seen: self.seen.clone(),
        }
    }

    /// These observations without the rounds sent at or after `to`: a
    /// round too young to have had its answers read would otherwise read
    /// as unanswered.
    pub fn rounds_before(mut self, to: Instant) -> Observations {
        self.rounds.retain(|r| r.sent < to);
        self
    }

    /// The timeline of `address` restricted to rounds sent in `[from, to)`.
    pub fn timeline_between(&self, address: IpAddr, from: Instant, to: Instant) -> Vec<Stretch> {
        self.rounds_between(from, to).timeline(address)
    }

    /// Total time of the stretches of `address` with two or more MACs.
    pub fn overlap_time(&self, address: IpAddr) -> Duration {
        self.timeline(address)
            .iter()
            .filter(|s| s.macs.len() > 1)
            .map(|s| s.to - s.from)
            .sum()
    }

    /// The longest run of unanswered rounds of `address` sent in
    /// `[from, to)`, from the first unanswered round's send time to the
    /// next answered round's (or `to`).
    pub fn longest_silence(&self, address: IpAddr, from: Instant, to: Instant) -> Duration {
        self.timeline_between(address, from, to)
            .iter()
            .filter(|s| s.macs.is_empty())
            .map(|s| s.to.min(to) - s.from)
            .max()
            .unwrap_or_default()
    }

    /// The send time of the first round of `address` sent at or after
    /// `after` that `mac` answered.
    pub fn first_answer(&self, address: IpAddr, mac: MacAddr, after: Instant) -> Option<Instant> {
        self.answers(address)
            .into_iter()
            .find(|(r, macs)| r.sent >= after && macs.contains(&mac))
            .map(|(r, _)| r.sent)
    }

    /// The send time of the last round of `address` that `mac` answered.
    pub fn last_answer(&self, address: IpAddr, mac: MacAddr) -> Option<Instant> {
        self.answers(address)
            .into_iter()
            .rev()
            .find(|(_, macs)| macs.contains(&mac))
            .map(|(r, _)| r.sent)
    }

    /// The MACs that answered the last answered round of `address`.
    pub fn current(&self, address: IpAddr) -> Vec<MacAddr> {
        self.answers(address)
            .into_iter()
            .rev()
            .find(|(_, m)| !m.is_empty())
            .map(|(_, m)| m)
            .unwrap_or_default()
    }

    /// The announcements of `address` by `mac` read in `[from, to)`.
    pub fn announcements(
        &self,
        address: IpAddr,
        mac: MacAddr,
        from: Instant,
        to: Instant,
    ) -> Vec<Instant> {
        self.seen
            .iter()
            .filter(|s| {
                s.kind == SeenKind::Announcement
                    && s.address == address
                    && s.mac == mac
                    && s.at >= from
                    && s.at < to
            })
            .map(|s| s.at)
            .collect()
    }

    /// How many times the answering MAC of `address` changed from one owner
    /// to a different one among rounds sent in `[from, to)` (silences in
    /// between do not count; returning to the same MAC is no move).
    pub fn moves(&self, address: IpAddr, from: Instant, to: Instant) -> usize {
        let mut last: Option<Vec<MacAddr>> = None;
        let mut moves = 0;
        for s in self.timeline_between(address, from, to) {
            if s.macs.is_empty() {
                continue;
            }
            if let Some(prev) = &last
                && *prev != s.macs
            {
                moves += 1;
            }
            last = Some(s.macs);
        }
        moves
    }
}

/// An ARP/NDP prober running in the observer namespace (see
/// [`Lab::observe`](super::Lab::observe)): it asks for every VIP each interval and records every
/// answer and every announcement, with their times.
///
/// Each request carries the round number in its sender hardware address;
/// the kernel that owns the VIP answers to that address, so an answer is
/// attributed to its round even when it arrives late. The replies reach
/// the observer's port because the bridge floods unknown destinations, and
/// its packet socket reads them whatever their destination.
#[derive(Debug)]
pub struct Observer {
    log: Arc<Mutex<Observations>>,
    stop: Arc<AtomicBool>,
    sender: Option<NsThread<Result<(), String>>>,
}

/// Only ARP, and IPv6 ICMPv6 NS (135) / NA (136), into the capture socket.
const CAPTURE_FILTER: [SockFilter; 10] = [
    SockFilter::new(0x28, 0, 0, 12),          // A = EtherType
    SockFilter::new(0x15, 6, 0, 0x0806),      // ARP -> accept
    SockFilter::new(0x15, 0, 6, 0x86dd),      // not IPv6 -> drop
    SockFilter::new(0x30, 0, 0, 14 + 6),      // A = next header
    SockFilter::new(0x15, 0, 4, 58),          // not ICMPv6 -> drop
    SockFilter::new(0x30, 0, 0, 14 + 40),     // A = ICMPv6 type
    SockFilter::new(0x15, 1, 0, 135),         // NS -> accept
    SockFilter::new(0x15, 0, 1, 136),         // not NA -> drop
    SockFilter::new(0x06, 0, 0, 0x0004_0000), // accept
    SockFilter::new(0x06, 0, 0, 0),           // drop
];

fn classify(frame: &[u8], vips: &[IpAddr], at: Instant) -> Option<Seen> {
    if let Ok(arp) = ArpRepr::parse_bytes(frame) {
        let (address, kind) = if arp.sender_ip.is_unspecified() {
            (IpAddr::V4(arp.target_ip), SeenKind::Probe)
        } else {
            let kind = match (arp.operation, round_of(arp.target_mac)) {
                (ArpOp::Reply, Some(round)) => SeenKind::Answer { round },
                (ArpOp::Request, _) if arp.target_ip == arp.sender_ip => SeenKind::Announcement,
                (ArpOp::Reply, _)
                    if arp.target_ip == arp.sender_ip
                        && (arp.target_mac == arp.sender_mac
                            || arp.eth_destination == MacAddr::BROADCAST) =>
                {
                    SeenKind::Announcement
                }
                _ => SeenKind::Claim,
            };
            (IpAddr::V4(arp.sender_ip), kind)
        };
        return vips.contains(&address).then_some(Seen {
            at,
            address,
            mac: arp.sender_mac,
            kind,
        });
    }
    match NdpRepr::parse_bytes(frame).ok()? {
        NdpRepr::Advert(na) => {
            let address = IpAddr::V6(na.target);
            let kind = match round_of(na.eth_destination) {
                Some(round) => SeenKind::Answer { round },
                None if !na.solicited => SeenKind::Announcement,
                None => SeenKind::Claim,
            };
            vips.contains(&address).then_some(Seen {
                at,
                address,
                mac: na.eth_source,
                kind,
            })
        }
        NdpRepr::Solicit(ns) => {
            let (address, kind) = if ns.ip_source.is_unspecified() {
                (IpAddr::V6(ns.target), SeenKind::Probe)
            } else {
                (IpAddr::V6(ns.ip_source), SeenKind::Claim)
            };
            vips.contains(&address).then_some(Seen {
                at,
                address,
                mac: ns.eth_source,
                kind,
            })
        }
    }
}

fn request_frame(mac: MacAddr, own: (Ipv4Addr, Ipv6Addr), vip: IpAddr, round: u32) -> Vec<u8> {
    let hw = round_mac(round);
    match vip {
        IpAddr::V4(v) => ArpRepr {
            eth_destination: MacAddr::BROADCAST,
            eth_source: mac,
            operation: ArpOp::Request,
            sender_mac: hw,
            sender_ip: own.0,
            target_mac: MacAddr::ZERO,
            target_ip: v,
        }
        .to_bytes()
        .to_vec(),
        IpAddr::V6(v) => {
            let group = solicited_node(v);
            NdpRepr::Solicit(NeighborSolicitRepr {
                eth_destination: multicast_mac(group),
                eth_source: mac,
                ip_source: own.1,
                ip_destination: group,
                target: v,
                source_mac: Some(hw),
            })
            .to_vec()
        }
    }
}

impl Observer {
    pub(super) fn start(
        host: &Host,
        index: usize,
        vips: &[IpAddr],
        interval: Duration,
        limit: Duration,
    ) -> Result<Self, LabSetupError> {
        let iface = host.interface()?;
        let log = Arc::new(Mutex::new(Observations::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let own = (host_v4(index), host_v6(index));
        // The capture socket is opened in the namespace, then read on a
        // plain thread (a socket stays in the namespace it was made in).
        let capture = host
            .ns
            .run(Duration::from_secs(5), || async {
                let eth_p_all = i32::from(0x0003u16.to_be());
                let s = Socket::new(
                    Domain::PACKET,
                    Type::RAW.cloexec(),
                    Some(Protocol::from(eth_p_all)),
                )?;
                s.attach_filter(&CAPTURE_FILTER)?;
                s.set_recv_buffer_size(4 << 20)?;
                s.set_read_timeout(Some(Duration::from_millis(20)))?;
                Ok::<_, std::io::Error>(s)
            })?
            .map_err(io("opening the observer's capture socket"))?;
        let reader = {
            let (log, stop, vips) = (log.clone(), stop.clone(), vips.to_vec());
            std::thread::Builder::new()
                .name("lab-observer-rx".into())
                .spawn(move || {
                    let mut buf = [0u8; 2048];
                    let end = Instant::now() + limit + Duration::from_secs(2);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        let n = match (&capture).read(&mut buf) {
                            Ok(n) => n,
                            Err(_) => continue,
                        };
                        let at = Instant::now();
                        if let Some(seen) = classify(&buf[..n], &vips, at) {
                            log.lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .seen
                                .push(seen);
                        }
                    }
                })
                .map_err(io("starting the observer's reader"))?
        };
        let sender = {
            let (log, stop, vips) = (log.clone(), stop.clone(), vips.to_vec());
            host.ns
                .spawn(limit + Duration::from_secs(3), move || async move {
                    let announcer = PacketAnnouncer::new();
                    let started = Instant::now();
                    let mut tick = tokio::time::interval(interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    let mut round: u32 = 0;
                    let mut result = Ok(());
                    'outer: while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                        tick.tick().await;
                        for &vip in &vips {
                            let frame = request_frame(iface.mac, own, vip, round);
                            let sent = Instant::now();
                            if let Err(e) = announcer.send_frame(&iface, &frame).await {
                                result = Err(e.to_string());
                                break 'outer;
                            }
                            log.lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .rounds
                                .push(Round {
                                    id: round,
                                    address: vip,
                                    sent,
                                });
                            round = round.wrapping_add(1);
                        }
                    }
                    // Let the last answers come in, then stop the reader.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    stop.store(true, Ordering::Relaxed);
                    let _ = reader.join();
                    result
                })?
        };
        Ok(Self {
            log,
            stop,
            sender: Some(sender),
        })
    }

    /// What was recorded so far. Rounds sent in the last few milliseconds
    /// may not have their answers yet.
    pub fn snapshot(&self) -> Observations {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// What was recorded so far without the rounds younger than
    /// [`ANSWER_GRACE`], whose answers may still be in flight: the view to
    /// judge who owns a VIP *now* from.
    pub fn judged(&self) -> Observations {
        let all = self.snapshot();
        match Instant::now().checked_sub(ANSWER_GRACE) {
            Some(judged) => all.rounds_before(judged),
            None => Observations::default(),
        }
    }

    /// Stop probing, wait for the last answers, and return everything.
    pub fn finish(mut self) -> Result<Observations, LabSetupError> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sender) = self.sender.take() {
            sender
                .join()?
                .map_err(|e| other("the observer could not send", e))?;
        }
        Ok(self.snapshot())
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sender) = self.sender.take() {
            let _ = sender.join();
        }
    }
}

impl Lab {
    /// Start an [`Observer`] in the observer namespace: every `interval` an
    /// ARP request (IPv4) or neighbour solicitation (IPv6) for each of the
    /// lab's VIPs, for at most `limit`.
    pub fn observe(&self, interval: Duration, limit: Duration) -> Result<Observer, LabSetupError> {
        Observer::start(
            self.observer_host(),
            observer_host(self.nodes.len()),
            &self.vips,
            interval,
            limit,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));

    /// Five rounds 10 ms apart; node A answers rounds 0..=3, round 4 is
    /// still in flight.
    fn recorded(t0: Instant) -> Observations {
        let a = MacAddr([2, 0, 0, 0, 0, 0xa]);
        let at = |ms| t0 + Duration::from_millis(ms);
        Observations {
            rounds: (0..5)
                .map(|id| Round {
                    id,
                    address: VIP,
                    sent: at(u64::from(id) * 10),
                })
                .collect(),
            seen: (0..4)
                .map(|id| Seen {
                    at: at(u64::from(id) * 10 + 1),
                    address: VIP,
                    mac: a,
                    kind: SeenKind::Answer { round: id },
                })
                .collect(),
        }
    }

    #[test]
    fn a_round_in_flight_reads_as_silence_until_it_is_left_out() {
        let t0 = Instant::now();
        let o = recorded(t0);
        let all = o.timeline(VIP);
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all[1].macs.is_empty());
        let judged = o
            .clone()
            .rounds_before(t0 + Duration::from_millis(40))
            .timeline(VIP);
        assert_eq!(judged.len(), 1, "{judged:?}");
        assert_eq!(judged[0].rounds, 4);
        assert!(!judged[0].macs.is_empty());
        assert_eq!(o.rounds_before(t0).rounds.len(), 0);
    }

    #[test]
    fn rounds_between_is_half_open() {
        let t0 = Instant::now();
        let o = recorded(t0);
        let sub = o.rounds_between(
            t0 + Duration::from_millis(10),
            t0 + Duration::from_millis(30),
        );
        let ids: Vec<u32> = sub.rounds.iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(sub.seen.len(), 4, "frames are kept");
    }
}
