//! The crate's only `unsafe` code: the system calls the namespace lab
//! needs that std does not expose. Each block says why it is sound.
#![allow(unsafe_code)]

/// Whether the effective user is root.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments, cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Move the calling thread into the network namespace `fd` refers to.
pub(crate) fn enter_netns(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: setns only reads the descriptor, which `BorrowedFd` keeps
    // open for the duration of the call; it changes the namespace of the
    // calling thread alone (the lab calls it on a thread it owns).
    let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Switch the calling thread, and only it, to user and group `id`: with a
/// non-zero id it loses every capability. Raw system calls, because the
/// libc wrappers change every thread of the process.
pub(crate) fn become_unprivileged(id: u32) -> std::io::Result<()> {
    // SAFETY: setresgid/setresuid take plain integers and touch no memory;
    // the raw syscall affects the calling thread's credentials only.
    let rc = unsafe { libc::syscall(libc::SYS_setresgid, id, id, id) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    let rc = unsafe { libc::syscall(libc::SYS_setresuid, id, id, id) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
