//! The client's pinger: echo requests to the VIP through the client's own
//! kernel, and the outages they show.

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use pnet_packet::Packet;
use pnet_packet::icmp::echo_reply::EchoReplyPacket;
use pnet_packet::icmp::echo_request::MutableEchoRequestPacket;
use pnet_packet::icmp::{IcmpCode, IcmpPacket, IcmpTypes};
use pnet_packet::ipv4::Ipv4Packet;
use socket2::{Domain, Protocol, Socket, Type};

use super::{Lab, LabSetupError};
use crate::netns::NsThread;

/// One echo request and whether (and when) it was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    /// Its sequence number.
    pub seq: u16,
    /// When it was sent.
    pub sent: Instant,
    /// When the reply came, if it did.
    pub answered: Option<Instant>,
}

/// Which echo reply this is, if it is one for `id`: its sequence number.
fn echo_reply(target: IpAddr, bytes: &[u8], id: u16) -> Option<u16> {
    match target {
        IpAddr::V4(t) => {
            let ip = Ipv4Packet::new(bytes)?;
            if ip.get_source() != t {
                return None;
            }
            let reply = EchoReplyPacket::new(ip.payload())?;
            (reply.get_icmp_type() == IcmpTypes::EchoReply && reply.get_identifier() == id)
                .then(|| reply.get_sequence_number())
        }
        // A raw ICMPv6 socket reads the ICMPv6 message alone; the socket
        // is connected to the target, so only its packets arrive.
        IpAddr::V6(_) => {
            (bytes.len() >= 8 && bytes[0] == 129 && u16::from_be_bytes([bytes[4], bytes[5]]) == id)
                .then(|| u16::from_be_bytes([bytes[6], bytes[7]]))
        }
    }
}

pub(super) fn pinger(
    target: IpAddr,
    interval: Duration,
    limit: Duration,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Vec<Ping>> {
    static IDS: AtomicU32 = AtomicU32::new(0);
    let socket = match target {
        IpAddr::V4(_) => Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?,
        IpAddr::V6(_) => Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?,
    };
    socket.connect(&SocketAddr::new(target, 0).into())?;
    let id = ((std::process::id() << 4) as u16) ^ (IDS.fetch_add(1, Ordering::Relaxed) as u16);
    let mut pings = Vec::<Ping>::new();
    let started = Instant::now();
    let mut seq: u16 = 0;
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
        let mut pkt = [0u8; 16];
        {
            let mut req =
                MutableEchoRequestPacket::new(&mut pkt).expect("16 bytes hold an echo request");
            req.set_icmp_type(IcmpTypes::EchoRequest);
            req.set_icmp_code(IcmpCode::new(0));
            req.set_identifier(id);
            req.set_sequence_number(seq);
        }
        if target.is_ipv6() {
            // ICMPv6 echo request; the kernel computes the checksum.
            pkt[0] = 128;
        } else {
            let sum = pnet_packet::icmp::checksum(&IcmpPacket::new(&pkt).expect("an ICMP packet"));
            pkt[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        let sent = Instant::now();
        // A send may fail while the neighbour is unresolved (EHOSTUNREACH
        // after failed resolution): count it as unanswered.
        let _ = socket.send(&pkt);
        pings.push(Ping {
            seq,
            sent,
            answered: None,
        });
        let next = sent + interval;
        loop {
            let now = Instant::now();
            if now >= next {
                break;
            }
            socket.set_read_timeout(Some(next - now))?;
            let n = match (&socket).read(&mut buf) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                // Errors queued by ICMP (unreachable) on a connected socket.
                Err(_) => continue,
            };
            let Some(s) = echo_reply(target, &buf[..n], id) else {
                continue;
            };
            if let Some(p) = pings
                .iter_mut()
                .rev()
                .find(|p| p.seq == s && p.answered.is_none())
            {
                p.answered = Some(Instant::now());
            }
        }
        seq = seq.wrapping_add(1);
    }
    Ok(pings)
}

/// The client-visible outage in `[from, to)`: the longest time between two
/// consecutive answered echoes sent in that window (the first one counted
/// from `from`). `None` when nothing in the window was answered.
pub fn outage(pings: &[Ping], from: Instant, to: Instant) -> Option<Duration> {
    let mut last = from;
    let mut worst = Duration::ZERO;
    let mut any = false;
    for p in pings
        .iter()
        .filter(|p| p.sent >= from && p.sent < to && p.answered.is_some())
    {
        worst = worst.max(p.sent - last);
        last = p.sent;
        any = true;
    }
    any.then_some(worst)
}

/// The longest client-visible loss in `[from, to)`: from the send time of
/// the first unanswered echo of a run to the send time of the next
/// answered one (or `to`). Zero when every echo in the window was
/// answered; its resolution is the ping interval.
pub fn lost_time(pings: &[Ping], from: Instant, to: Instant) -> Duration {
    let mut worst = Duration::ZERO;
    let mut run_start: Option<Instant> = None;
    for p in pings.iter().filter(|p| p.sent >= from && p.sent < to) {
        match (p.answered.is_some(), run_start) {
            (false, None) => run_start = Some(p.sent),
            (true, Some(s)) => {
                worst = worst.max(p.sent - s);
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = run_start {
        worst = worst.max(to - s);
    }
    worst
}

/// The longest time in `[from, to)` during which no answer *arrived*:
/// between consecutive answers, the first counted from the last answer
/// before `from` (else from `from`). Where [`lost_time`] dates a probe by
/// its sending, this dates it by its answer, which is what a client of a
/// TCP service feels: a connection attempt made during an outage may
/// succeed a second later (a retransmitted SYN) and must not hide the
/// outage. `None` when nothing was answered in the window.
pub fn answer_gap(probes: &[Ping], from: Instant, to: Instant) -> Option<Duration> {
    let mut answers: Vec<Instant> = probes.iter().filter_map(|p| p.answered).collect();
    answers.sort();
    let mut last = answers
        .iter()
        .rev()
        .find(|&&a| a < from)
        .copied()
        .unwrap_or(from);
    let mut worst = None::<Duration>;
    for &a in answers.iter().filter(|&&a| a >= from && a < to) {
        worst = Some(worst.unwrap_or_default().max(a - last));
        last = a;
    }
    worst
}

impl Lab {
    /// Start a pinger in the client namespace: an ICMP echo to the first
    /// VIP every `interval` until `stop` is set (bounded by `limit`).
    pub fn ping(
        &self,
        interval: Duration,
        limit: Duration,
        stop: Arc<AtomicBool>,
    ) -> Result<NsThread<Vec<Ping>>, LabSetupError> {
        self.ping_addr(self.vips[0], interval, limit, stop)
    }

    /// Like [`ping`](Self::ping), to `target` (IPv4 or IPv6).
    pub fn ping_addr(
        &self,
        target: IpAddr,
        interval: Duration,
        limit: Duration,
        stop: Arc<AtomicBool>,
    ) -> Result<NsThread<Vec<Ping>>, LabSetupError> {
        Ok(self
            .client()
            .ns
            .spawn(limit + Duration::from_secs(1), move || async move {
                pinger(target, interval, limit, stop).unwrap_or_default()
            })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(sent: Instant, answered: Option<Duration>) -> Ping {
        Ping {
            seq: 0,
            sent,
            answered: answered.map(|d| sent + d),
        }
    }

    #[test]
    fn a_late_answer_to_an_early_probe_does_not_hide_the_outage() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Answered at once before the fault (+10 ms); then every probe
        // sent is answered one second late (its SYN retransmitted).
        let mut probes = vec![probe(t0, Some(ms(5)))];
        probes.extend((1..50).map(|k| probe(t0 + ms(20 * k), Some(ms(1000)))));
        let from = t0 + ms(10);
        let to = t0 + ms(2000);
        // By send time every probe was answered: no outage shows.
        assert_eq!(outage(&probes, from, to), Some(ms(20)));
        assert_eq!(lost_time(&probes, from, to), Duration::ZERO);
        // By answer time: nothing arrived from +5 ms to +1020 ms.
        assert_eq!(answer_gap(&probes, from, to), Some(ms(1015)));
        // Nothing answered in the window.
        assert_eq!(answer_gap(&probes, t0 + ms(2000), t0 + ms(3000)), None);
    }
}
