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
    /// `utime + stime` in clock ticks (USER_HZ, 100 per second on Linux).
    pub cpu_ticks: u64,
}

impl ProcStats {
    /// Clock ticks per second of `/proc/<pid>/stat` (Linux's `USER_HZ`).
    pub const TICKS_PER_SECOND: u64 = 100;

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
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command (which may contain spaces) in parens.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest starts at field 3 (state); utime is field 14, stime 15.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(Self {
            rss_kib,
            rss_anon_kib,
            rss_file_kib,
            cpu_ticks: utime + stime,
        })
    }
}
