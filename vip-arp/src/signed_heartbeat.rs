//! [`SignedHeartbeats`]: version 2 heartbeats ([`crate::wire::heartbeat_v2`])
//! over `AF_PACKET` sockets, signed when sent and verified when heard.
//!
//! It is the controller's [`HeartbeatChannel`]. [`crate::PacketHeartbeats`]
//! (version 1) stays for tests of what an old node sends; the socket, its
//! BPF filter and the multicast group are the same (the filter admits both
//! versions, so version 1 frames reach the verifier and are counted as
//! "old version").
//!
//! - **Sending**: the leader builds one [`BeatTemplate`] per term
//!   ([`SignedHeartbeats::template`]); each beat
//!   ([`SignedHeartbeats::send_beat`]) writes the sequence, recomputes the
//!   16-byte code and costs one `sendto`. No allocation, no boxed future.
//!   Through the [`HeartbeatChannel`] trait the controller's sender is a
//!   dedicated thread on [`HeartbeatChannel::beat_sink`] (a `sendto` on
//!   the link's socket per beat); the trait's async `send` keeps the
//!   template of the last (holder, term, record version, key) too.
//! - **Hearing**: a [`SignedSubscription`] holds the key and the election
//!   scope; the interface's reader verifies every frame against each
//!   subscription and delivers only verified beats. Every other frame is
//!   counted in the subscription's [`HeartbeatDrops`] by reason and sender
//!   MAC (frames from the interface's own MAC are skipped uncounted, as
//!   before). Replays are the controller's to count, in the same table.

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::mpsc;
use vip_core::{
    AnnounceError, BeatSink, ElectionId, HeardBeat, Heartbeat, HeartbeatChannel, HeartbeatDrops,
    HeartbeatError, HeartbeatKey, Interface, MacAddr,
};

use crate::heartbeat::{Deliver, HEARTBEAT_CAPACITY, heartbeat_link};
use crate::packet::{Link, Links};
use crate::wire::heartbeat_v2::{BeatKey, BeatTemplate, MAX_FRAME_LEN, SignedRepr, verify};

/// One verifying subscription.
#[derive(Debug)]
struct Verifier {
    key: BeatKey,
    election: ElectionId,
    beats: mpsc::Sender<HeardBeat>,
    drops: Arc<HeartbeatDrops>,
}

/// The verifying subscriptions of one interface, shared with its reader.
#[derive(Debug, Default)]
struct Verifiers(Mutex<Vec<Verifier>>);

impl Verifiers {
    fn lock(&self) -> MutexGuard<'_, Vec<Verifier>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(
        &self,
        key: &HeartbeatKey,
        election: ElectionId,
        drops: Arc<HeartbeatDrops>,
    ) -> SignedSubscription {
        let (beats, rx) = mpsc::channel(HEARTBEAT_CAPACITY);
        let mut verifiers = self.lock();
        verifiers.retain(|v| !v.beats.is_closed());
        verifiers.push(Verifier {
            key: BeatKey::new(key),
            election,
            beats,
            drops: drops.clone(),
        });
        SignedSubscription { beats: rx, drops }
    }
}

impl Deliver for Verifiers {
    /// Verify one received frame for every subscription: deliver it where
    /// it verifies, count it where it does not. Frames from `own` are
    /// skipped.
    fn deliver(&self, own: MacAddr, frame: &[u8]) {
        let mut source = [0u8; 6];
        if let Some(s) = frame.get(6..12) {
            source.copy_from_slice(s);
        }
        let from = MacAddr(source);
        if from == own {
            return;
        }
        let mut verifiers = self.lock();
        verifiers.retain(|v| !v.beats.is_closed());
        for v in verifiers.iter() {
            match verify(frame, &v.key, v.election) {
                // Full: dropped, the next beat follows within an interval.
                Ok(repr) => drop(v.beats.try_send(repr.to_heard())),
                Err(reason) => v.drops.count(from, reason.kind()),
            }
        }
    }
}

/// What a follower hears: verified beats, and the table of the frames
/// that were dropped instead.
#[derive(Debug)]
pub struct SignedSubscription {
    /// Verified beats of the subscription's election (a full receiver
    /// drops beats; dropping it ends the subscription).
    pub beats: mpsc::Receiver<HeardBeat>,
    /// Dropped frames by reason and sender, for metrics and `vip status`.
    pub drops: Arc<HeartbeatDrops>,
}

/// Sends and hears signed (version 2) heartbeats on `AF_PACKET` sockets.
///
/// ```no_run
/// # async fn demo(interface: vip_core::Interface) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use vip_core::{Heartbeat, HeartbeatKey, election_scope};
/// let channel = vip_arp::SignedHeartbeats::new();
/// let key = HeartbeatKey::generate().expect("random bytes");
/// let election = election_scope("lease-uid", "kube-system/plndr-cp-lock", &["198.18.0.10".parse().unwrap()]).unwrap();
/// // A follower listens...
/// let mut heard = channel.subscribe(&interface, &key, election)?;
/// // ...a leader builds its frame once per term and sends every interval.
/// let beat = Heartbeat {
///     election,
///     holder: "node-1".into(),
///     term: 3,
///     sequence: 0,
///     version: vip_core::version_tag("4711"),
///     interval: Duration::from_millis(10),
/// };
/// let mut template = channel.template(&interface, &beat, &key)?;
/// for sequence in 0..3 {
///     channel.send_beat(&interface, &mut template, sequence).await?;
/// }
/// if let Some(h) = heard.beats.recv().await {
///     println!("{} leads term {} (from {})", h.beat.holder, h.beat.term, h.from);
/// }
/// println!("dropped: {}", heard.drops.snapshot().total.total());
/// # Ok(()) }
/// ```
///
/// Sockets are opened in the network namespace of the thread that first
/// uses an interface, and must be used inside a tokio runtime.
#[derive(Debug, Default)]
pub struct SignedHeartbeats {
    links: Links<Arc<Verifiers>>,
    /// The trait's sender: the template of the last beat sent.
    last: Mutex<Option<Sending>>,
}

/// The template the trait's `send` keeps, and what it was built for.
#[derive(Debug)]
struct Sending {
    /// The beat it was built for (its sequence is not used).
    beat: Heartbeat,
    key_id: u32,
    interface: Interface,
    template: BeatTemplate,
}

impl SignedHeartbeats {
    /// A channel with no socket open yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The leader's frame for `beat` (its sequence is replaced by every
    /// [`send_beat`](Self::send_beat)) from `interface`'s MAC, signed with
    /// `key`. A beat that cannot be framed (an empty holder or one over
    /// 253 bytes, an interval under 1 ms or over `u32::MAX` ms) is a
    /// [`HeartbeatError::Frame`] naming the wire format's refusal.
    pub fn template(
        &self,
        interface: &Interface,
        beat: &Heartbeat,
        key: &HeartbeatKey,
    ) -> Result<BeatTemplate, HeartbeatError> {
        template(interface, beat, key)
    }

    /// Send the template's frame with `sequence` on `interface`.
    pub async fn send_beat(
        &self,
        interface: &Interface,
        template: &mut BeatTemplate,
        sequence: u64,
    ) -> Result<(), AnnounceError> {
        let link = heartbeat_link(&self.links, interface)?;
        let frame = template.next(sequence);
        self.links
            .send(interface, &link, frame, "sending a heartbeat")
            .await
    }

    /// Verified heartbeats of `election` under `key` heard on
    /// `interface`, and the count of those dropped.
    pub fn subscribe(
        &self,
        interface: &Interface,
        key: &HeartbeatKey,
        election: ElectionId,
    ) -> Result<SignedSubscription, AnnounceError> {
        let drops = Arc::new(HeartbeatDrops::default());
        Ok(heartbeat_link(&self.links, interface)?
            .shared
            .add(key, election, drops))
    }
}

/// See [`SignedHeartbeats::template`].
fn template(
    interface: &Interface,
    beat: &Heartbeat,
    key: &HeartbeatKey,
) -> Result<BeatTemplate, HeartbeatError> {
    let key = BeatKey::new(key);
    SignedRepr::new(interface.mac, beat, &key)
        .and_then(|repr| BeatTemplate::new(&repr, key.clone()))
        .map_err(|e| HeartbeatError::Frame {
            interface: interface.name.clone(),
            holder: beat.holder.clone(),
            source: Box::new(e),
        })
}

/// The frame of `beat`: `sending`'s template when it was built for this
/// beat but for the sequence, else a new one (the only allocation).
fn frame<'a>(
    sending: &'a mut Option<Sending>,
    interface: &Interface,
    beat: &Heartbeat,
    key: &HeartbeatKey,
) -> Result<&'a [u8], HeartbeatError> {
    let fresh = matches!(sending, Some(s) if s.key_id == key.id()
        && s.interface == *interface
        && s.beat.same_but_sequence(beat));
    if !fresh {
        *sending = Some(Sending {
            template: template(interface, beat, key)?,
            beat: beat.clone(),
            key_id: key.id(),
            interface: interface.clone(),
        });
    }
    match sending {
        Some(s) => Ok(s.template.next(beat.sequence)),
        None => unreachable!("set above"),
    }
}

/// The leader's sink for its dedicated sender thread: the link's socket,
/// the template of the current beat, one `sendto` per beat.
struct SignedSink {
    link: Arc<Link<Arc<Verifiers>>>,
    interface: Interface,
    key: HeartbeatKey,
    sending: Option<Sending>,
}

impl BeatSink for SignedSink {
    fn send(&mut self, beat: &Heartbeat) -> Result<(), HeartbeatError> {
        let bytes = frame(&mut self.sending, &self.interface, beat, &self.key)?;
        self.link.socket.send_now(bytes).map_err(|source| {
            HeartbeatError::from(AnnounceError::Io {
                operation: "sending a heartbeat",
                interface: self.interface.name.clone(),
                source,
            })
        })
    }
}

#[async_trait]
impl HeartbeatChannel for SignedHeartbeats {
    /// Send `beat` signed with `key`: the template is rebuilt only when
    /// anything but the sequence changed (a new term, record version, key
    /// or interface), so a beat costs the code and one `sendto`.
    async fn send(
        &self,
        interface: &Interface,
        beat: &Heartbeat,
        key: &HeartbeatKey,
    ) -> Result<(), HeartbeatError> {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let len = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let bytes = frame(&mut last, interface, beat, key)?;
            buf[..bytes.len()].copy_from_slice(bytes);
            bytes.len()
        };
        let link = heartbeat_link(&self.links, interface)?;
        Ok(self
            .links
            .send(interface, &link, &buf[..len], "sending a heartbeat")
            .await?)
    }

    async fn subscribe(
        &self,
        interface: &Interface,
        key: &HeartbeatKey,
        election: ElectionId,
        drops: Arc<HeartbeatDrops>,
    ) -> Result<mpsc::Receiver<HeardBeat>, HeartbeatError> {
        Ok(heartbeat_link(&self.links, interface)?
            .shared
            .add(key, election, drops)
            .beats)
    }

    /// The leader's sink on the interface's link (opened on this thread,
    /// in its namespace, if it is not open yet).
    fn beat_sink(
        &self,
        interface: &Interface,
        key: &HeartbeatKey,
    ) -> Result<Option<Box<dyn BeatSink>>, HeartbeatError> {
        Ok(Some(Box::new(SignedSink {
            link: heartbeat_link(&self.links, interface)?,
            interface: interface.clone(),
            key: key.clone(),
            sending: None,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vip_core::DropKind;

    use crate::heartbeat::tests::peer_beat;
    use crate::wire::heartbeat::HeartbeatRepr;

    const OWN: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const PEER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
    const FORGER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x66]);

    fn key() -> HeartbeatKey {
        HeartbeatKey::new([0x11; 32])
    }

    fn signed(from: MacAddr, key: &HeartbeatKey, election: ElectionId, seq: u64) -> Vec<u8> {
        let (beat, key) = (peer_beat(election, seq), BeatKey::new(key));
        SignedRepr::new(from, &beat, &key)
            .unwrap()
            .to_vec(&key)
            .unwrap()
    }

    #[test]
    fn verified_beats_are_delivered_and_the_rest_counted_by_reason_and_sender() {
        let (ours, theirs) = (ElectionId(1), ElectionId(2));
        let verifiers = Verifiers::default();
        let mut sub = verifiers.add(&key(), ours, Arc::default());
        verifiers.deliver(OWN, &signed(PEER, &key(), ours, 7));
        verifiers.deliver(OWN, &signed(OWN, &key(), ours, 8)); // our own: skipped
        verifiers.deliver(OWN, &signed(FORGER, &HeartbeatKey::new([9; 32]), ours, 9));
        let mut tampered = signed(FORGER, &key(), ours, 10);
        tampered[35] ^= 1; // the term
        verifiers.deliver(OWN, &tampered);
        verifiers.deliver(OWN, &signed(PEER, &key(), theirs, 11));
        let v1 = HeartbeatRepr::new(FORGER, &peer_beat(ours, 12))
            .unwrap()
            .to_vec()
            .unwrap();
        verifiers.deliver(OWN, &v1);
        verifiers.deliver(OWN, b"short");

        let h = sub.beats.try_recv().unwrap();
        assert_eq!((h.from, h.beat.sequence, h.beat.term), (PEER, 7, 4));
        assert!(sub.beats.try_recv().is_err(), "only the one verified beat");
        let drops = sub.drops.snapshot();
        assert_eq!(drops.total.total(), 5);
        let forger = drops.by_sender[&FORGER];
        assert_eq!(forger.get(DropKind::UnknownKey), 1);
        assert_eq!(forger.get(DropKind::BadCode), 1);
        assert_eq!(forger.get(DropKind::OldVersion), 1);
        assert_eq!(drops.by_sender[&PEER].get(DropKind::OtherElection), 1);
        assert_eq!(drops.total.get(DropKind::Malformed), 1);
        assert!(!drops.by_sender.contains_key(&OWN));
    }

    #[test]
    fn closed_subscriptions_are_pruned() {
        let verifiers = Verifiers::default();
        let kept = verifiers.add(&key(), ElectionId(1), Arc::default());
        drop(verifiers.add(&key(), ElectionId(1), Arc::default()));
        verifiers.deliver(OWN, &signed(PEER, &key(), ElectionId(1), 0));
        assert_eq!(verifiers.lock().len(), 1);
        drop(kept);
    }
}
