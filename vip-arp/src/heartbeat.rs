//! [`PacketHeartbeats`]: the [`HeartbeatChannel`] over `AF_PACKET`
//! sockets, the wire side of fenced fast failover.
//!
//! One `SOCK_RAW` socket per interface, opened on first use and kept, for
//! both directions. Sending a heartbeat builds the frame
//! ([`crate::wire::heartbeat`]) in a stack buffer and costs one `sendto`;
//! it happens every heartbeat interval (10 ms by default).
//!
//! The socket is bound to EtherType 0x88B5 only, joins the heartbeat
//! multicast group ([`HEARTBEAT_MAC`]) so the NIC passes the frames, and
//! carries a classic-BPF filter that admits only frames whose payload
//! starts with the heartbeat magic and that this host did not send. One
//! reader task per interface parses what arrives and hands each heartbeat
//! to the subscriptions of its election, skipping frames from the
//! interface's own MAC; a full subscription drops beats, a closed one is
//! forgotten. Only `CAP_NET_RAW` is needed.

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::mpsc;
use vip_core::{
    AnnounceError, ElectionId, HeardBeat, Heartbeat, HeartbeatChannel, HeartbeatError, Interface,
    MacAddr,
};

use crate::packet::{Link, Links, PacketSocket};
use crate::wire::heartbeat::{HEARTBEAT_MAC, HeartbeatFrame, HeartbeatRepr, MAX_FRAME_LEN};

/// Capacity of one subscription; heartbeats beyond it are dropped (a
/// consumer that far behind only needs the latest ones, which follow).
pub const HEARTBEAT_CAPACITY: usize = 64;

/// One subscription: the election it wants and where its beats go.
#[derive(Debug)]
struct Subscriber {
    election: ElectionId,
    beats: mpsc::Sender<HeardBeat>,
}

/// The subscriptions of one interface, shared with its reader.
#[derive(Debug, Default)]
struct Subscribers(Mutex<Vec<Subscriber>>);

impl Subscribers {
    fn lock(&self) -> MutexGuard<'_, Vec<Subscriber>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, election: ElectionId) -> mpsc::Receiver<HeardBeat> {
        let (beats, rx) = mpsc::channel(HEARTBEAT_CAPACITY);
        let mut subscribers = self.lock();
        subscribers.retain(|s| !s.beats.is_closed());
        subscribers.push(Subscriber { election, beats });
        rx
    }

    /// Hand one received frame to the subscriptions of its election,
    /// unless it is not a heartbeat or comes from `own` (the interface's
    /// own MAC). Closed subscriptions are pruned.
    fn deliver(&self, own: MacAddr, frame: &[u8]) {
        let Ok(view) = HeartbeatFrame::new_checked(frame) else {
            return;
        };
        if view.eth_source() == own {
            return;
        }
        let repr = HeartbeatRepr::parse(&view);
        let mut subscribers = self.lock();
        subscribers.retain(|s| !s.beats.is_closed());
        for s in subscribers.iter().filter(|s| s.election == repr.election) {
            // Full: dropped, the next beat follows within an interval.
            let _ = s.beats.try_send(repr.to_heard());
        }
    }
}

/// Sends and hears vip's layer-2 heartbeats on `AF_PACKET` sockets.
///
/// ```no_run
/// # async fn demo(interface: vip_core::Interface) -> Result<(), vip_core::HeartbeatError> {
/// use std::time::Duration;
/// use vip_core::{ElectionId, Heartbeat, HeartbeatChannel};
/// let channel = vip_arp::PacketHeartbeats::new();
/// let election = ElectionId::of("kube-system/plndr-cp-lock");
/// // A follower listens...
/// let mut heard = channel.subscribe(&interface, election).await?;
/// // ...a leader sends, every interval.
/// let beat = Heartbeat {
///     election,
///     holder: "node-1".into(),
///     term: 3,
///     sequence: 0,
///     version: vip_core::version_tag("4711"),
///     interval: Duration::from_millis(10),
/// };
/// channel.send(&interface, &beat).await?;
/// if let Some(h) = heard.recv().await {
///     println!("{} leads term {} (from {})", h.beat.holder, h.beat.term, h.from);
/// }
/// # Ok(()) }
/// ```
///
/// Sockets are opened in the network namespace of the thread that first
/// uses an interface, and must be used inside a tokio runtime. When a send
/// finds the interface gone, its socket is dropped, which ends the
/// interface's subscriptions (their receivers close); the next use opens a
/// new one.
#[derive(Debug, Default)]
pub struct PacketHeartbeats {
    links: Links<Arc<Subscribers>>,
}

impl PacketHeartbeats {
    /// A channel with no socket open yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn link(&self, interface: &Interface) -> Result<Arc<Link<Arc<Subscribers>>>, AnnounceError> {
        self.links.get_or_open(
            interface,
            |index| PacketSocket::open_heartbeat(index, HEARTBEAT_MAC),
            Arc::default,
            |socket, subscribers| {
                // Only when the link is opened: a send allocates nothing.
                let (name, own) = (interface.name.clone(), interface.mac);
                async move {
                    socket
                        .read_frames(&name, |frame| subscribers.deliver(own, frame))
                        .await;
                }
            },
        )
    }
}

#[async_trait]
impl HeartbeatChannel for PacketHeartbeats {
    /// Send `beat` from the interface's MAC to [`HEARTBEAT_MAC`]. A beat
    /// that cannot be framed (an empty holder or one over 253 bytes, an
    /// interval under 1 ms or over `u32::MAX` ms) is a
    /// [`HeartbeatError::Frame`] naming the wire format's refusal, and
    /// nothing is sent.
    async fn send(&self, interface: &Interface, beat: &Heartbeat) -> Result<(), HeartbeatError> {
        let mut frame = [0u8; MAX_FRAME_LEN];
        let len = HeartbeatRepr::new(interface.mac, beat)
            .and_then(|repr| repr.emit(&mut frame))
            .map_err(|e| HeartbeatError::Frame {
                interface: interface.name.clone(),
                holder: beat.holder.clone(),
                source: Box::new(e),
            })?;
        let link = self.link(interface)?;
        Ok(self
            .links
            .send(interface, &link, &frame[..len], "sending a heartbeat")
            .await?)
    }

    async fn subscribe(
        &self,
        interface: &Interface,
        election: ElectionId,
    ) -> Result<mpsc::Receiver<HeardBeat>, HeartbeatError> {
        Ok(self.link(interface)?.shared.add(election))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const OWN: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const PEER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

    fn frame(from: MacAddr, election: ElectionId, sequence: u64) -> Vec<u8> {
        let beat = Heartbeat {
            election,
            holder: "node-2".into(),
            term: 4,
            sequence,
            version: 9,
            interval: Duration::from_millis(10),
        };
        HeartbeatRepr::new(from, &beat).unwrap().to_vec().unwrap()
    }

    #[test]
    fn beats_go_to_their_election_only_and_never_from_ourselves() {
        let (ours, theirs) = (ElectionId(1), ElectionId(2));
        let subs = Subscribers::default();
        let mut a = subs.add(ours);
        let mut b = subs.add(ours);
        let mut other = subs.add(theirs);
        subs.deliver(OWN, &frame(PEER, ours, 7));
        subs.deliver(OWN, &frame(OWN, ours, 8)); // our own: skipped
        subs.deliver(OWN, b"not a heartbeat at all");
        for rx in [&mut a, &mut b] {
            let h = rx.try_recv().unwrap();
            assert_eq!((h.from, h.beat.sequence, h.beat.term), (PEER, 7, 4));
            assert_eq!(h.beat.holder, "node-2");
            assert_eq!(h.beat.interval, Duration::from_millis(10));
            assert!(rx.try_recv().is_err(), "only one beat");
        }
        assert!(other.try_recv().is_err());
    }

    #[test]
    fn full_subscriptions_drop_and_closed_ones_are_pruned() {
        let e = ElectionId(1);
        let subs = Subscribers::default();
        let mut slow = subs.add(e);
        let closed = subs.add(e);
        drop(closed);
        for i in 0..HEARTBEAT_CAPACITY as u64 + 10 {
            subs.deliver(OWN, &frame(PEER, e, i));
        }
        assert_eq!(subs.lock().len(), 1, "the closed subscription is gone");
        // The first CAPACITY beats are kept, the rest dropped.
        for i in 0..HEARTBEAT_CAPACITY as u64 {
            assert_eq!(slow.try_recv().unwrap().beat.sequence, i);
        }
        assert!(slow.try_recv().is_err());
    }
}
