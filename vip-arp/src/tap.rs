//! [`HeartbeatTap`]: heartbeat frames as raw bytes, as any host on the
//! segment can see and send them: no parsing, no verification. For tests
//! of what a host that captures, forges or replays frames can do (the e2e
//! adversary scenarios), and for diagnostics. The same socket as the
//! heartbeat channels (EtherType 0x88B5, the heartbeat group, the BPF
//! filter that admits only heartbeat frames this host did not send).

use std::io;

use vip_core::Interface;

use crate::packet::PacketSocket;
use crate::wire::heartbeat::HEARTBEAT_MAC;

/// Raw heartbeat frames on one interface.
#[derive(Debug)]
pub struct HeartbeatTap {
    socket: PacketSocket,
}

impl HeartbeatTap {
    /// Open the tap on `interface` (in the calling thread's network
    /// namespace; needs `CAP_NET_RAW` and a tokio runtime).
    pub fn open(interface: &Interface) -> io::Result<Self> {
        Ok(Self {
            socket: PacketSocket::open_heartbeat(interface.index, HEARTBEAT_MAC)?,
        })
    }

    /// The next heartbeat frame heard from another host, whole.
    pub async fn recv(&self) -> io::Result<Vec<u8>> {
        let mut buf = [0u8; 1514];
        let n = self.socket.recv(&mut buf).await?;
        Ok(buf[..n].to_vec())
    }

    /// Send `frame` as it is (Ethernet header included).
    pub async fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.socket.send(frame).await
    }
}
