//! An `AF_PACKET`/`SOCK_RAW` socket bound to one interface, with a
//! classic-BPF filter: the announcer's lets only ARP and ICMPv6 neighbour
//! discovery in, the heartbeat channel's only vip heartbeats.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use socket2::{Domain, Protocol, SockFilter, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;
use vip_core::{AnnounceError, Interface, MacAddr};

use crate::sys;
use crate::wire::heartbeat::{ETHERTYPE_HEARTBEAT, MAGIC};

const ETH_P_ALL: u16 = 0x0003;

// Classic BPF opcodes (linux/filter.h).
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
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

/// `SKF_AD_OFF + SKF_AD_PKTTYPE`: where a classic-BPF load reads the
/// frame's packet type (`sll_pkttype`) instead of frame bytes.
const PKTTYPE: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32;

/// Accept vip heartbeats (EtherType 0x88B5 whose payload starts with the
/// magic) that this host did not send; drop everything else in the kernel.
/// The packet-type test (`PACKET_OUTGOING`) is defence in depth: the kernel
/// shows outgoing frames only to sockets bound to `ETH_P_ALL`, and the
/// heartbeat socket is bound to 0x88B5. Frames that come back with our own
/// source MAC (a looping segment) are skipped by the reader.
const HEARTBEAT_FILTER: [SockFilter; 8] = [
    SockFilter::new(LD_H_ABS, 0, 0, 12), // 0: A = EtherType
    SockFilter::new(JEQ_K, 0, 5, ETHERTYPE_HEARTBEAT as u32), // 1: not 0x88B5 -> drop (7)
    SockFilter::new(LD_W_ABS, 0, 0, 14), // 2: A = first payload word
    SockFilter::new(JEQ_K, 0, 3, u32::from_be_bytes(MAGIC)), // 3: not "VIPH" -> drop (7)
    SockFilter::new(LD_W_ABS, 0, 0, PKTTYPE), // 4: A = packet type
    SockFilter::new(JEQ_K, 1, 0, libc::PACKET_OUTGOING as u32), // 5: our own -> drop (7)
    SockFilter::new(RET_K, 0, 0, 0x0004_0000), // 6: accept whole frame
    SockFilter::new(RET_K, 0, 0, 0),     // 7: drop
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
        Self::open_filtered(ifindex, ETH_P_ALL, &FILTER, None)
    }

    /// Open the heartbeat socket on interface `ifindex`: bound to EtherType
    /// 0x88B5 only, filtered to vip heartbeats from other hosts, and a
    /// member of the multicast group `group` so the NIC passes it. Needs
    /// `CAP_NET_RAW` and a tokio runtime.
    ///
    /// Bound to one EtherType rather than `ETH_P_ALL`, the socket is served
    /// after the interface's `tc` ingress hook (taps bound to `ETH_P_ALL`
    /// see frames before it): a filter there drops heartbeats for it, as a
    /// filtering switch would.
    pub(crate) fn open_heartbeat(ifindex: u32, group: MacAddr) -> io::Result<Self> {
        Self::open_filtered(ifindex, ETHERTYPE_HEARTBEAT, &HEARTBEAT_FILTER, Some(group))
    }

    fn open_filtered(
        ifindex: u32,
        protocol: u16,
        filter: &[SockFilter],
        group: Option<MacAddr>,
    ) -> io::Result<Self> {
        let socket = Socket::new(Domain::PACKET, Type::RAW.cloexec(), Some(Protocol::from(0)))?;
        socket.set_nonblocking(true)?;
        socket.attach_filter(filter)?;
        socket.bind(&sys::packet_sockaddr(ifindex, protocol))?;
        if let Some(group) = group {
            sys::add_packet_membership(&socket, ifindex, group.0)?;
        }
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

    /// Send one frame now, from any thread (the socket is non-blocking: a
    /// full send buffer is `WouldBlock`, not a wait).
    pub(crate) fn send_now(&self, frame: &[u8]) -> io::Result<()> {
        match self.fd.get_ref().send(frame)? {
            n if n == frame.len() => Ok(()),
            n => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short send: {n} of {} bytes", frame.len()),
            )),
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

    /// Take whatever frames the kernel has queued on the socket now,
    /// without waiting, and hand each to `on_frame`: a caller whose task
    /// may have been descheduled (a loaded host) sees every frame that
    /// arrived before this call, whether or not the reader task has run.
    pub(crate) fn drain(&self, mut on_frame: impl FnMut(&[u8])) {
        let mut buf = [0u8; RECV_BUFFER];
        // Bounded: a flood cannot keep the caller here.
        for _ in 0..256 {
            let mut socket: &Socket = self.fd.get_ref();
            match socket.read(&mut buf) {
                Ok(n) => on_frame(&buf[..n]),
                Err(_) => return,
            }
        }
    }

    /// Receive frames forever and hand each to `on_frame`. A link going
    /// down is reported once (`ENETDOWN`) and ignored: the socket stays
    /// bound and receives again when it comes back. Other errors are logged
    /// naming `interface`, with a bounded back-off so a persistent one
    /// cannot spin.
    pub(crate) async fn read_frames(&self, interface: &str, mut on_frame: impl FnMut(&[u8])) {
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut failures = 0u32;
        loop {
            match self.recv(&mut buf).await {
                Ok(n) => {
                    failures = 0;
                    on_frame(&buf[..n]);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {}
                Err(e) => {
                    failures += 1;
                    tracing::warn!(%interface, error = %e, "packet socket receive failed");
                    let pause = Duration::from_millis(10 * u64::from(failures.min(100)));
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// One interface's packet socket, the state its reader task shares, and
/// that task (aborted on drop).
#[derive(Debug)]
pub(crate) struct Link<T> {
    pub(crate) socket: Arc<PacketSocket>,
    pub(crate) shared: T,
    reader: JoinHandle<()>,
}

impl<T> Drop for Link<T> {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The links of one announcer or channel by interface index: each opened
/// on first use and kept until a send finds its interface gone.
#[derive(Debug)]
pub(crate) struct Links<T>(Mutex<HashMap<u32, Arc<Link<T>>>>);

impl<T> Default for Links<T> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<T: Clone> Links<T> {
    fn lock(&self) -> MutexGuard<'_, HashMap<u32, Arc<Link<T>>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `interface`'s link; the first time, its socket is opened with `open`
    /// and a reader task `read(socket, shared)` is spawned (in the current
    /// tokio runtime) with a clone of `shared()`.
    pub(crate) fn get_or_open<Fut>(
        &self,
        interface: &Interface,
        open: impl FnOnce(u32) -> io::Result<PacketSocket>,
        shared: impl FnOnce() -> T,
        read: impl FnOnce(Arc<PacketSocket>, T) -> Fut,
    ) -> Result<Arc<Link<T>>, AnnounceError>
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut links = self.lock();
        if let Some(link) = links.get(&interface.index) {
            return Ok(link.clone());
        }
        let socket = Arc::new(open(interface.index).map_err(|e| open_error(interface, e))?);
        let shared = shared();
        let reader = tokio::spawn(read(socket.clone(), shared.clone()));
        let link = Arc::new(Link {
            socket,
            shared,
            reader,
        });
        links.insert(interface.index, link.clone());
        Ok(link)
    }

    /// Send one whole frame on `link`, `interface`'s. When the interface is
    /// gone (or was replaced), the link is dropped, to be reopened next
    /// time; the error names `operation`.
    pub(crate) async fn send(
        &self,
        interface: &Interface,
        link: &Link<T>,
        frame: &[u8],
        operation: &'static str,
    ) -> Result<(), AnnounceError> {
        link.socket.send(frame).await.map_err(|source| {
            if matches!(source.raw_os_error(), Some(libc::ENXIO | libc::ENODEV)) {
                self.lock().remove(&interface.index);
            }
            AnnounceError::Io {
                operation,
                interface: interface.name.clone(),
                source,
            }
        })
    }
}

/// The error of opening a packet socket on `interface`: `PermissionDenied`
/// without `CAP_NET_RAW`, `Io` otherwise.
fn open_error(interface: &Interface, source: io::Error) -> AnnounceError {
    match source.kind() {
        io::ErrorKind::PermissionDenied => AnnounceError::PermissionDenied {
            interface: interface.name.clone(),
        },
        _ => AnnounceError::Io {
            operation: "opening a packet socket",
            interface: interface.name.clone(),
            source,
        },
    }
}
