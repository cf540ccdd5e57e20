//! Which `vip` binary a lab runs.

use std::path::PathBuf;

/// The environment variable that names a prebuilt `vip` binary for the
/// labs (the e2e suite and the benchmarks).
pub const VIP_BIN: &str = "VIP_BIN";

/// The `vip` binary a lab runs: `explicit` when given, else `$VIP_BIN`,
/// else what `fallback` finds (or builds). It must be a file; the path is
/// made absolute, because the lab runs it from inside namespaces and other
/// directories. An error is one line naming the path and the way out.
pub fn locate_vip(
    explicit: Option<PathBuf>,
    fallback: impl FnOnce() -> Result<PathBuf, String>,
) -> Result<PathBuf, String> {
    let (p, from_env) = match (explicit, std::env::var_os(VIP_BIN)) {
        (Some(p), _) => (p, false),
        (None, Some(p)) => (PathBuf::from(p), true),
        (None, None) => (fallback()?, false),
    };
    if !p.is_file() {
        return Err(if from_env {
            format!("{VIP_BIN}={} is not a file", p.display())
        } else {
            format!(
                "the vip binary {} is not a file: build it with `cargo build -p vip-bin --bin vip` (same profile), or set {VIP_BIN}",
                p.display()
            )
        });
    }
    std::path::absolute(&p).map_err(|e| format!("{}: {e}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_vip_binary_must_be_a_file_and_comes_back_absolute() {
        let never = || -> Result<PathBuf, String> { panic!("no fallback with an explicit path") };
        let e = locate_vip(Some(PathBuf::from("/nonexistent/vip")), never).unwrap_err();
        assert!(e.contains("/nonexistent/vip is not a file"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        // This crate's manifest, named relative to the crate: a file.
        let rel = PathBuf::from("Cargo.toml");
        let found = locate_vip(Some(rel), never).unwrap();
        assert!(
            found.is_absolute() && found.ends_with("Cargo.toml"),
            "{found:?}"
        );
    }
}
