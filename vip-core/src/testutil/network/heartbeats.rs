//! The in-memory segment's heartbeats: signed frames, verified by every
//! subscriber the way `vip_arp::SignedHeartbeats` verifies version 2
//! frames (election scope, key id, then the code), with the drops counted
//! by reason and sender; and an adversary's tools: frames captured for
//! replay ([`MemoryNetwork::captured_beats`]) and frames injected from a
//! host outside the cluster ([`MemoryNetwork::inject_beat`]).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{MemoryNetwork, NetState};
use crate::heartbeat::{ElectionId, HeardBeat, Heartbeat, HeartbeatChannel, HeartbeatError};
use crate::heartbeat_auth::HeartbeatKey;
use crate::heartbeat_drops::{DropKind, HeartbeatDrops};
use crate::model::{Interface, MacAddr};
use crate::testutil::lock;

/// How many sent frames the segment keeps for replay.
pub(super) const CAPTURE: usize = 4096;

/// One heartbeat frame on the in-memory segment: the beat, its Ethernet
/// source, and the key id and code it was signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryFrame {
    /// The beat.
    pub beat: Heartbeat,
    /// The Ethernet source.
    pub from: MacAddr,
    /// The id of the key that signed it.
    pub key_id: u32,
    /// HMAC-SHA256 over every field, truncated to 16 bytes.
    pub code: [u8; 16],
}

impl MemoryFrame {
    /// `beat` from `from`, signed with `key`.
    pub fn signed(beat: &Heartbeat, from: MacAddr, key: &HeartbeatKey) -> Self {
        Self {
            beat: beat.clone(),
            from,
            key_id: key.id(),
            code: code(beat, from, key),
        }
    }

    /// Why a subscriber holding `key` for `election` drops this frame, if
    /// it does.
    pub fn verify(&self, key: &HeartbeatKey, election: ElectionId) -> Result<(), DropKind> {
        if self.beat.election != election {
            Err(DropKind::OtherElection)
        } else if self.key_id != key.id() {
            Err(DropKind::UnknownKey)
        } else if self.code != code(&self.beat, self.from, key) {
            Err(DropKind::BadCode)
        } else {
            Ok(())
        }
    }
}

/// The code of `beat` from `from` under `key`: every field, length-prefixed
/// where variable.
fn code(beat: &Heartbeat, from: MacAddr, key: &HeartbeatKey) -> [u8; 16] {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.bytes());
    let mut ctx = ring::hmac::Context::with_key(&k);
    ctx.update(&from.0);
    ctx.update(&beat.election.0.to_be_bytes());
    ctx.update(&(beat.holder.len() as u64).to_be_bytes());
    ctx.update(beat.holder.as_bytes());
    ctx.update(&beat.term.to_be_bytes());
    ctx.update(&beat.sequence.to_be_bytes());
    ctx.update(&beat.version.to_be_bytes());
    ctx.update(&(beat.interval.as_nanos() as u64).to_be_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&ctx.sign().as_ref()[..16]);
    out
}

/// One node's verifying subscription.
#[derive(Debug)]
pub(super) struct BeatSub {
    pub(super) node: String,
    key: HeartbeatKey,
    election: ElectionId,
    beats: mpsc::Sender<HeardBeat>,
    drops: Arc<HeartbeatDrops>,
}

impl NetState {
    /// Hand `frame` to every subscriber but `sender`'s own whose link is
    /// up and whose heartbeats pass: delivered where it verifies, counted
    /// where not.
    fn deliver_beat(&mut self, frame: &MemoryFrame, sender: Option<&str>) {
        self.beat_subs.retain(|s| !s.beats.is_closed());
        for s in &self.beat_subs {
            if Some(s.node.as_str()) == sender
                || !self.link_up(&s.node)
                || self.beat_filter.contains(&s.node)
            {
                continue;
            }
            match frame.verify(&s.key, s.election) {
                Ok(()) => drop(s.beats.try_send(HeardBeat {
                    beat: frame.beat.clone(),
                    from: frame.from,
                })),
                Err(kind) => s.drops.count(frame.from, kind),
            }
        }
    }
}

impl MemoryNetwork {
    /// Every frame the nodes sent so far (the newest few thousand), oldest
    /// first: what an adversary on the segment captures.
    pub fn captured_beats(&self) -> Vec<MemoryFrame> {
        lock(&self.state).beat_log.iter().cloned().collect()
    }

    /// Put `frame` on the segment from a host outside the cluster: every
    /// node whose link is up and whose heartbeats pass sees it.
    pub fn inject_beat(&self, frame: &MemoryFrame) {
        lock(&self.state).deliver_beat(frame, None);
    }
}

/// A node's in-memory heartbeat channel: a heartbeat reaches every other
/// node whose link is up, unless the sender's or the receiver's heartbeats
/// are filtered ([`MemoryNetwork::filter_heartbeats`]).
#[derive(Debug, Clone)]
pub struct MemoryHeartbeats {
    pub(super) net: MemoryNetwork,
    pub(super) node: String,
    pub(super) mac: MacAddr,
}

#[async_trait]
impl HeartbeatChannel for MemoryHeartbeats {
    async fn send(
        &self,
        _interface: &Interface,
        beat: &Heartbeat,
        key: &HeartbeatKey,
    ) -> Result<(), HeartbeatError> {
        self.net.thawed(&self.node).await;
        let frame = MemoryFrame::signed(beat, self.mac, key);
        let mut st = lock(&self.net.state);
        *st.beats_sent.entry(self.node.clone()).or_default() += 1;
        if !st.link_up(&self.node) || st.beat_filter.contains(&self.node) {
            return Ok(());
        }
        if st.beat_log.len() == CAPTURE {
            st.beat_log.pop_front();
        }
        st.beat_log.push_back(frame.clone());
        st.deliver_beat(&frame, Some(&self.node));
        Ok(())
    }

    async fn subscribe(
        &self,
        _interface: &Interface,
        key: &HeartbeatKey,
        election: ElectionId,
        drops: Arc<HeartbeatDrops>,
    ) -> Result<mpsc::Receiver<HeardBeat>, HeartbeatError> {
        let (beats, rx) = mpsc::channel(256);
        lock(&self.net.state).beat_subs.push(BeatSub {
            node: self.node.clone(),
            key: key.clone(),
            election,
            beats,
            drops,
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn beat() -> Heartbeat {
        Heartbeat {
            election: ElectionId(7),
            holder: "node-0".into(),
            term: 3,
            sequence: 11,
            version: 5,
            interval: Duration::from_millis(10),
        }
    }

    #[test]
    fn frames_verify_only_unchanged_under_their_key_and_election() {
        let key = HeartbeatKey::new([1; 32]);
        let from = MacAddr([2, 0, 0, 0, 0, 1]);
        let f = MemoryFrame::signed(&beat(), from, &key);
        assert_eq!(f.verify(&key, ElectionId(7)), Ok(()));
        assert_eq!(f.verify(&key, ElectionId(8)), Err(DropKind::OtherElection));
        let other = HeartbeatKey::new([2; 32]);
        assert_eq!(f.verify(&other, ElectionId(7)), Err(DropKind::UnknownKey));
        let mut forged = MemoryFrame::signed(&beat(), from, &other);
        forged.key_id = key.id();
        assert_eq!(forged.verify(&key, ElectionId(7)), Err(DropKind::BadCode));
        for tamper in [
            |b: &mut Heartbeat| b.term += 1,
            |b: &mut Heartbeat| b.sequence += 1,
            |b: &mut Heartbeat| b.version += 1,
            |b: &mut Heartbeat| b.holder.push('x'),
            |b: &mut Heartbeat| b.interval += Duration::from_millis(1),
        ] {
            let mut t = f.clone();
            tamper(&mut t.beat);
            assert_eq!(t.verify(&key, ElectionId(7)), Err(DropKind::BadCode));
        }
        let mut moved = f.clone();
        moved.from = MacAddr([2, 0, 0, 0, 0, 9]);
        assert_eq!(moved.verify(&key, ElectionId(7)), Err(DropKind::BadCode));
    }
}
