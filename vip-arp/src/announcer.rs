//! [`PacketAnnouncer`]: the [`Announcer`] over `AF_PACKET` sockets.
//!
//! One `SOCK_RAW` socket per interface, opened on first use and kept. Raw
//! (not `SOCK_DGRAM`) so that vip writes the whole Ethernet frame: IPv6
//! neighbour discovery needs a multicast destination MAC, and the listener
//! needs every received frame's Ethernet source. A classic-BPF filter lets
//! only ARP and ICMPv6 NS/NA into the socket, so a busy interface costs
//! nothing. Only `CAP_NET_RAW` is needed.
//!
//! Each interface has one reader task that parses every received frame
//! into a [`Claim`] (who uses which address) and broadcasts it to the
//! prober and the conflict listeners.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, sleep_until};
use vip_core::{AnnounceError, Announcer, Conflict, Interface, MacAddr};

use crate::packet::{Link, Links, PacketSocket};
use crate::wire::Claim;
use crate::wire::arp::ArpRepr;
use crate::wire::ndp::{NdpRepr, NeighborAdvertRepr, NeighborSolicitRepr};

/// How many probes [`PacketAnnouncer::probe`] sends within its timeout, at
/// most (RFC 5227's PROBE_NUM).
pub const PROBE_COUNT: u32 = 3;
/// The shortest gap between two probes.
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// Capacity of a conflict subscription; claims beyond it are dropped (the
/// consumer already knows of the conflict).
pub const CONFLICT_CAPACITY: usize = 64;
const CLAIM_CAPACITY: usize = 256;

/// Announces VIPs with gratuitous ARP and unsolicited neighbour
/// advertisements, probes addresses, and reports foreign claims.
///
/// ```no_run
/// # async fn demo(interface: vip_core::Interface) -> Result<(), vip_core::AnnounceError> {
/// use vip_core::Announcer;
/// let announcer = vip_arp::PacketAnnouncer::new();
/// announcer.announce(&interface, "198.18.0.10".parse().unwrap()).await?;
/// # Ok(()) }
/// ```
///
/// Sockets are opened in the network namespace of the thread that first
/// uses an interface, and must be used inside a tokio runtime.
#[derive(Debug, Default)]
pub struct PacketAnnouncer {
    links: Links<Claims>,
}

/// What an interface's reader broadcasts to the prober and the listeners.
type Claims = broadcast::Sender<Claim>;

async fn read_claims(socket: Arc<PacketSocket>, claims: Claims, name: String) {
    socket
        .read_frames(&name, |frame| {
            if let Some(claim) = Claim::from_frame(frame) {
                // No receiver is fine: nobody is listening right now.
                let _ = claims.send(claim);
            }
        })
        .await;
}

impl PacketAnnouncer {
    /// An announcer with no socket open yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn link(&self, interface: &Interface) -> Result<Arc<Link<Claims>>, AnnounceError> {
        self.links.get_or_open(
            interface,
            PacketSocket::open,
            || broadcast::channel(CLAIM_CAPACITY).0,
            |socket, claims| read_claims(socket, claims, interface.name.clone()),
        )
    }

    /// Send one whole Ethernet frame (e.g. built with [`crate::wire`]) out
    /// of `interface` on its packet socket.
    pub async fn send_frame(
        &self,
        interface: &Interface,
        frame: &[u8],
    ) -> Result<(), AnnounceError> {
        let link = self.link(interface)?;
        self.links
            .send(interface, &link, frame, "sending a frame")
            .await
    }

    fn probe_frame(mac: MacAddr, address: IpAddr) -> Vec<u8> {
        match address {
            IpAddr::V4(a) => ArpRepr::probe(mac, a).to_bytes().to_vec(),
            IpAddr::V6(a) => NdpRepr::Solicit(NeighborSolicitRepr::dad(mac, a)).to_vec(),
        }
    }
}

#[async_trait]
impl Announcer for PacketAnnouncer {
    /// IPv4: the request form, then the reply form (RFC 5227 announcement;
    /// some devices honour only one opcode). IPv6: one unsolicited NA.
    async fn announce(&self, interface: &Interface, vip: IpAddr) -> Result<(), AnnounceError> {
        let link = self.link(interface)?;
        match vip {
            IpAddr::V4(a) => {
                let request = ArpRepr::announce_request(interface.mac, a).to_bytes();
                self.links
                    .send(interface, &link, &request, "sending an ARP announcement")
                    .await?;
                let reply = ArpRepr::announce_reply(interface.mac, a).to_bytes();
                self.links
                    .send(interface, &link, &reply, "sending an ARP announcement")
                    .await?;
            }
            IpAddr::V6(a) => {
                let na = NdpRepr::Advert(NeighborAdvertRepr::unsolicited(interface.mac, a));
                self.links
                    .send(
                        interface,
                        &link,
                        &na.to_vec(),
                        "sending a neighbour advertisement",
                    )
                    .await?;
            }
        }
        tracing::debug!(interface = %interface.name, %vip, "announced");
        Ok(())
    }

    /// Sends up to [`PROBE_COUNT`] probes spread over `timeout` (an RFC 5227
    /// ARP probe, or a DAD neighbour solicitation for IPv6) and returns the
    /// first other MAC seen using `address`: an ARP with it as sender
    /// address, an NA with it as target, or an NS from it.
    async fn probe(
        &self,
        interface: &Interface,
        address: IpAddr,
        timeout: Duration,
    ) -> Result<Option<MacAddr>, AnnounceError> {
        let link = self.link(interface)?;
        // Subscribe before sending so no answer can be missed.
        let mut claims = link.shared.subscribe();
        let frame = Self::probe_frame(interface.mac, address);
        self.links
            .send(interface, &link, &frame, "sending a probe")
            .await?;
        // The window opens when the probe is out, not before.
        let start = Instant::now();
        let deadline = start + timeout;
        let interval = (timeout / PROBE_COUNT).max(MIN_PROBE_INTERVAL);
        let mut sent = 1;
        let mut next_probe = start + interval;
        let answers = |c: &Claim| c.address == address && c.mac != interface.mac;
        loop {
            tokio::select! {
                biased;
                claim = claims.recv() => match claim {
                    Ok(c) if answers(&c) => {
                        tracing::debug!(interface = %interface.name, %address, mac = %c.mac, "probe answered");
                        return Ok(Some(c.mac));
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Ok(None),
                },
                () = sleep_until(next_probe), if sent < PROBE_COUNT && next_probe < deadline => {
                    self.links.send(interface, &link, &frame, "sending a probe").await?;
                    sent += 1;
                    next_probe += interval;
                }
                () = sleep_until(deadline) => break,
            }
        }
        // "Nobody answered" must not mean "this task was not scheduled":
        // read what the kernel queued for the socket (an answer within the
        // window is there, whether or not the reader task ran), and every
        // claim already handed on.
        link.socket.drain(|f| {
            if let Some(c) = Claim::from_frame(f) {
                let _ = link.shared.send(c);
            }
        });
        loop {
            match claims.try_recv() {
                Ok(c) if answers(&c) => {
                    tracing::debug!(interface = %interface.name, %address, mac = %c.mac, "probe answered (read late)");
                    return Ok(Some(c.mac));
                }
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => return Ok(None),
            }
        }
    }

    async fn subscribe_conflicts(
        &self,
        interface: &Interface,
        vips: &[IpAddr],
    ) -> Result<mpsc::Receiver<Conflict>, AnnounceError> {
        let link = self.link(interface)?;
        let mut claims = link.shared.subscribe();
        let (tx, rx) = mpsc::channel(CONFLICT_CAPACITY);
        let vips = vips.to_vec();
        let own = interface.mac;
        let name = interface.name.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tx.closed() => break,
                    claim = claims.recv() => match claim {
                        Ok(c) if c.mac != own && vips.contains(&c.address) => {
                            tracing::debug!(interface = %name, address = %c.address, mac = %c.mac, "foreign claim");
                            let conflict = Conflict { address: c.address, mac: c.mac };
                            if tx.try_send(conflict).is_err() && tx.is_closed() {
                                break;
                            }
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
        });
        Ok(rx)
    }
}
