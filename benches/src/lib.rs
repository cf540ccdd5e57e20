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

/// The `vip` binary a benchmark runs: `$VIP_BIN`, else `vip` next to the
/// benchmark's own executable.
pub fn vip_exe() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("VIP_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let vip = me.with_file_name("vip");
    if vip.is_file() {
        Ok(vip)
    } else {
        Err(format!(
            "{} not found: build it with `cargo build -p vip-bin --bin vip` (same profile), or set VIP_BIN",
            vip.display()
        ))
    }
}
