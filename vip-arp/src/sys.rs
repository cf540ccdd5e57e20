//! The crate's only `unsafe` code: small system calls that neither socket2
//! nor std expose safely. Each block says why it is sound.
#![allow(unsafe_code)]

use std::mem::size_of;

use socket2::{SockAddr, SockAddrStorage, socklen_t};

/// A `sockaddr_ll` naming interface `ifindex` and EtherType `protocol`
/// (host byte order), for binding an `AF_PACKET` socket or sending from
/// one (`sendto` with an unbound socket).
pub fn packet_sockaddr(ifindex: u32, protocol: u16) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `sockaddr_ll` is one of this platform's `sockaddr_*` types and
    // is smaller than `sockaddr_storage` (view_as asserts it); the storage is
    // zeroed, a valid `sockaddr_ll`.
    let sll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    sll.sll_family = libc::AF_PACKET as libc::c_ushort;
    sll.sll_protocol = protocol.to_be();
    // Interface indexes are positive `int`s in the kernel.
    sll.sll_ifindex = ifindex as libc::c_int;
    // SAFETY: the storage holds an initialised `sockaddr_ll`, and the length
    // given is exactly its size.
    unsafe { SockAddr::new(storage, size_of::<libc::sockaddr_ll>() as socklen_t) }
}

/// Join the link-layer multicast group `mac` on interface `ifindex`
/// (`PACKET_ADD_MEMBERSHIP`, `PACKET_MR_MULTICAST`), so the NIC passes
/// frames sent to it. The membership ends when the socket is closed.
pub(crate) fn add_packet_membership(
    socket: &socket2::Socket,
    ifindex: u32,
    mac: [u8; 6],
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut mreq = libc::packet_mreq {
        // Interface indexes are positive `int`s in the kernel.
        mr_ifindex: ifindex as libc::c_int,
        mr_type: libc::PACKET_MR_MULTICAST as libc::c_ushort,
        mr_alen: 6,
        mr_address: [0; 8],
    };
    mreq.mr_address[..6].copy_from_slice(&mac);
    // SAFETY: the descriptor is open (borrowed from `socket` for the call);
    // the option value points at an initialised `packet_mreq` that lives
    // across the call, and the length given is exactly its size. The kernel
    // only reads it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&raw const mreq).cast(),
            size_of::<libc::packet_mreq>() as socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Register a non-blocking socket with tokio's reactor.
pub(crate) fn register_socket(
    socket: socket2::Socket,
) -> std::io::Result<tokio::io::unix::AsyncFd<socket2::Socket>> {
    // SAFETY: `Socket` owns a valid, open file descriptor; the `AsyncFd`
    // takes ownership of it, and nothing in this crate replaces or closes the
    // descriptor while it is registered (no `get_mut`, no raw `close`).
    unsafe { tokio::io::unix::AsyncFd::register(socket) }.map_err(|e| e.into_parts().1)
}
