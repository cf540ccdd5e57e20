//! An `AF_PACKET`/`SOCK_RAW` socket bound to one interface, with a
//! classic-BPF filter that lets only ARP and ICMPv6 neighbour discovery in.

use std::io::{self, Read};

use socket2::{Domain, Protocol, SockFilter, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::sys;

const ETH_P_ALL: u16 = 0x0003;

// Classic BPF opcodes (linux/filter.h).
const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// Accept ARP, and IPv6 whose next header is ICMPv6 (58) with type 135 (NS)
/// or 136 (NA); drop everything else in the kernel, before it is copied.
/// Offsets are from the start of the Ethernet frame (SOCK_RAW).
const FILTER: [SockFilter; 10] = [
    SockFilter::new(LD_H_ABS, 0, 0, 12),       // 0: A = EtherType
    SockFilter::new(JEQ_K, 6, 0, 0x0806),      // 1: ARP -> accept (8)
    SockFilter::new(JEQ_K, 0, 6, 0x86dd),      // 2: not IPv6 -> drop (9)
    SockFilter::new(LD_B_ABS, 0, 0, 14 + 6),   // 3: A = IPv6 next header
    SockFilter::new(JEQ_K, 0, 4, 58),          // 4: not ICMPv6 -> drop (9)
    SockFilter::new(LD_B_ABS, 0, 0, 14 + 40),  // 5: A = ICMPv6 type
    SockFilter::new(JEQ_K, 1, 0, 135),         // 6: NS -> accept (8)
    SockFilter::new(JEQ_K, 0, 1, 136),         // 7: not NA -> drop (9)
    SockFilter::new(RET_K, 0, 0, 0x0004_0000), // 8: accept whole frame
    SockFilter::new(RET_K, 0, 0, 0),           // 9: drop
];

/// The largest frame read; ARP and NDP frames are far smaller, longer ones
/// are truncated and then refused by the parsers.
pub(crate) const RECV_BUFFER: usize = 2048;

/// A non-blocking packet socket registered with tokio.
#[derive(Debug)]
pub(crate) struct PacketSocket {
    fd: AsyncFd<Socket>,
}

impl PacketSocket {
    /// Open a socket on interface `ifindex`. Needs `CAP_NET_RAW` and a
    /// tokio runtime.
    ///
    /// The socket is created with protocol 0 (it receives nothing), gets its
    /// filter, and only then is bound with `ETH_P_ALL`, so no unfiltered
    /// frame is ever queued.
    pub(crate) fn open(ifindex: u32) -> io::Result<Self> {
        let socket = Socket::new(Domain::PACKET, Type::RAW.cloexec(), Some(Protocol::from(0)))?;
        socket.set_nonblocking(true)?;
        socket.attach_filter(&FILTER)?;
        socket.bind(&sys::packet_sockaddr(ifindex, ETH_P_ALL))?;
        Ok(Self {
            fd: sys::register_socket(socket)?,
        })
    }

    /// Send one whole Ethernet frame out of the bound interface.
    pub(crate) async fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|s| s.get_ref().send(frame)) {
                Ok(Ok(n)) if n == frame.len() => return Ok(()),
                Ok(Ok(n)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("short send: {n} of {} bytes", frame.len()),
                    ));
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Receive one frame into `buf`; returns its length (at most
    /// `buf.len()`).
    pub(crate) async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|s| {
                let mut socket: &Socket = s.get_ref();
                socket.read(buf)
            }) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}
