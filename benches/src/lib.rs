//! Benchmarks of vip; see `benches/`. The benchmark binaries (failover,
//! footprint, soak) share their runtime and their way of ending here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The runtime of the benchmark binaries: a multi-thread runtime with two
/// workers, as `vip manager`'s.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// End a benchmark named `name`: print its report and write it to `report`
/// when given (exit 0), or print why it failed (exit 1).
pub fn finish(name: &str, result: Result<String, String>, report: Option<&Path>) -> ExitCode {
    match result {
        Ok(text) => {
            println!("{text}");
            if let Some(p) = report
                && let Err(e) = std::fs::write(p, &text)
            {
                eprintln!("writing {}: {e}", p.display());
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name} failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// The `vip` binary a benchmark runs: `explicit` when given, else
/// `$VIP_BIN`, else `vip` next to the benchmark's own executable (see
/// [`vip_testkit::lab::locate_vip`]).
pub fn vip_exe(explicit: Option<PathBuf>) -> Result<PathBuf, String> {
    vip_testkit::lab::locate_vip(explicit, || {
        std::env::current_exe()
            .map(|me| me.with_file_name("vip"))
            .map_err(|e| format!("current_exe: {e}"))
    })
}
