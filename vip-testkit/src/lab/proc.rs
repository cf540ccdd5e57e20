//! What a lab process costs, read from `/proc`.

use std::path::Path;

/// Resident set size and CPU time of a process, from `/proc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStats {
    /// `VmRSS` in KiB.
    pub rss_kib: u64,
    /// `RssAnon` in KiB: heap, stacks, private data.
    pub rss_anon_kib: u64,
    /// `RssFile` in KiB: mapped pages of the binary and libraries.
    pub rss_file_kib: u64,
    /// CPU time of all its threads, in nanoseconds: the scheduler's
    /// `sum_exec_runtime` (`/proc/<pid>/task/*/schedstat`), exact, where
    /// `utime + stime` are sampled at the timer tick and charge a process
    /// that wakes 100 times a second (a heartbeat) by where its wake-ups
    /// fall against the tick.
    pub cpu_ns: u64,
}

impl ProcStats {
    /// Read them for `pid`; `None` when the process is gone.
    pub fn read(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        };
        let rss_kib = field("VmRSS:")?;
        let rss_anon_kib = field("RssAnon:").unwrap_or(0);
        let rss_file_kib = field("RssFile:").unwrap_or(0);
        let cpu_ns = thread_runtimes_ns(pid)?;
        Some(Self {
            rss_kib,
            rss_anon_kib,
            rss_file_kib,
            cpu_ns,
        })
    }

    /// The CPU used between `before` and `after`, `seconds` apart, in
    /// percent of one core.
    pub fn cpu_percent(before: &Self, after: &Self, seconds: f64) -> f64 {
        percent_of_core(after.cpu_ns.saturating_sub(before.cpu_ns), seconds)
    }
}

/// `ns` of CPU time over `seconds` of wall time, in percent of one core.
pub fn percent_of_core(ns: u64, seconds: f64) -> f64 {
    ns as f64 / 1e9 / seconds * 100.0
}

/// The calling thread's own CPU time, in ns (`/proc/thread-self/schedstat`),
/// read the same way as [`ProcStats::cpu_ns`]; `None` without procfs.
pub fn thread_cpu_ns() -> Option<u64> {
    run_ns(Path::new("/proc/thread-self/schedstat"))
}

/// The first field of a `schedstat` file: time on the CPU, ns.
fn run_ns(schedstat: &Path) -> Option<u64> {
    std::fs::read_to_string(schedstat)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The sum of the first field of `/proc/<pid>/task/*/schedstat` (time on
/// the CPU, ns); `None` when the process is gone. Threads that ended are
/// not counted (the daemon's threads live as long as it does).
fn thread_runtimes_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    // A thread that ends between the listing and the read counts nothing.
    Some(
        tasks
            .flatten()
            .filter_map(|task| run_ns(&task.path().join("schedstat")))
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_cpu_a_busy_thread_uses_and_nothing_for_a_gone_process() {
        let pid = std::process::id();
        let before = ProcStats::read(pid).expect("our own /proc entry");
        assert!(before.rss_kib > 0 && before.rss_kib >= before.rss_anon_kib);
        // Spin until this thread has run 50 ms by its own count (bounded
        // in wall time, however loaded the machine): the process's count
        // holds at least that, and its percentage follows.
        let own = thread_cpu_ns().expect("our own schedstat");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut x = 0u64;
        while thread_cpu_ns().expect("our own schedstat") - own < 50_000_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "50 ms of CPU not had in 20 s"
            );
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        let after = ProcStats::read(pid).expect("our own /proc entry");
        let spent = after.cpu_ns - before.cpu_ns;
        assert!(
            spent >= 50_000_000,
            "only {spent} ns counted for a thread that ran 50 ms"
        );
        assert!(ProcStats::cpu_percent(&before, &after, 0.05) >= 100.0);
        // Pid 0 has no /proc entry.
        assert!(ProcStats::read(0).is_none());
    }
}
