//! What a lab process costs, read from `/proc`.

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
        after.cpu_ns.saturating_sub(before.cpu_ns) as f64 / 1e9 / seconds * 100.0
    }
}

/// The sum of the first field of `/proc/<pid>/task/*/schedstat` (time on
/// the CPU, ns); `None` when the process is gone. Threads that ended are
/// not counted (the daemon's threads live as long as it does).
fn thread_runtimes_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue; // a thread that just ended
        };
        total += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_cpu_a_busy_thread_uses_and_nothing_for_a_gone_process() {
        let pid = std::process::id();
        let before = ProcStats::read(pid).expect("our own /proc entry");
        assert!(before.rss_kib > 0 && before.rss_kib >= before.rss_anon_kib);
        // Spin 50 ms of wall time on this thread: at least most of it is
        // charged to it, however the ticks fall.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = ProcStats::read(pid).expect("our own /proc entry");
        let spent = after.cpu_ns - before.cpu_ns;
        assert!(
            spent >= 10_000_000,
            "only {spent} ns counted for a 50 ms spin"
        );
        assert!(ProcStats::cpu_percent(&before, &after, 0.05) > 20.0);
        // Pid 0 has no /proc entry.
        assert!(ProcStats::read(0).is_none());
    }
}
