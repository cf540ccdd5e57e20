//! Where the real `kube-apiserver` comes from: `VIP_KUBE_APISERVER_BIN`, or
//! the project's Go module `vip-testkit/apiserver/` built with the ordinary
//! `go` command into `<target>/go/kube-apiserver`.
//!
//! The module requires `k8s.io/kubernetes` at a pinned version and maps
//! every `k8s.io/*` staging module to its matching published version (the
//! wrapper that `k8s.io/kubernetes`'s own replace directives make
//! necessary); no Kubernetes source is in the repository. The binary is
//! built once and reused while it is newer than `go.mod`, `go.sum` and
//! `main.go`; Go's build cache makes a rebuild after a change quick. A
//! lock file keeps concurrent test processes from building it twice.
//! `.ci/run` builds it up front with the same command.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The longest a cold build may take (module downloads included).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Why there is no `kube-apiserver` to run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BinaryError {
    /// `VIP_KUBE_APISERVER_BIN` names no file.
    #[error("VIP_KUBE_APISERVER_BIN={0} is not a file")]
    NotAFile(PathBuf),
    /// Not built, and no Go toolchain to build it.
    #[error(
        "no kube-apiserver at {0} and no `go` on PATH to build it (install Go, or set VIP_KUBE_APISERVER_BIN)"
    )]
    NoGo(PathBuf),
    /// The build failed.
    #[error("building kube-apiserver in {dir} failed: {reason}")]
    Build {
        /// The Go module's directory.
        dir: PathBuf,
        /// What went wrong (the end of go's output).
        reason: String,
    },
}

/// The Go module that builds the fixture (`vip-testkit/apiserver`).
pub fn module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("apiserver")
}

/// Where the build puts the binary: `$CARGO_TARGET_DIR/go/kube-apiserver`,
/// else `<workspace>/target/go/kube-apiserver`.
pub fn built_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("go").join("kube-apiserver")
}

/// The `kube-apiserver` to run, built if needed (once per process).
pub fn kube_apiserver() -> Result<PathBuf, BinaryError> {
    static FOUND: OnceLock<Result<PathBuf, BinaryError>> = OnceLock::new();
    FOUND.get_or_init(find_or_build).clone()
}

fn find_or_build() -> Result<PathBuf, BinaryError> {
    if let Some(p) = std::env::var_os("VIP_KUBE_APISERVER_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(BinaryError::NotAFile(p))
        };
    }
    let out = built_path();
    let dir = module_dir();
    if is_fresh(&out, &dir) {
        return Ok(out);
    }
    if !go_available() {
        return Err(BinaryError::NoGo(out));
    }
    build(&dir, &out)?;
    Ok(out)
}

/// Whether `out` exists and is newer than every input of the module.
fn is_fresh(out: &Path, dir: &Path) -> bool {
    let Ok(built) = std::fs::metadata(out).and_then(|m| m.modified()) else {
        return false;
    };
    ["go.mod", "go.sum", "main.go"].iter().all(|f| {
        std::fs::metadata(dir.join(f))
            .and_then(|m| m.modified())
            .is_ok_and(|t| t <= built)
    })
}

fn go_available() -> bool {
    Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn build(dir: &Path, out: &Path) -> Result<(), BinaryError> {
    let fail = |reason: String| BinaryError::Build {
        dir: dir.to_owned(),
        reason,
    };
    let parent = out.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| fail(format!("create {}: {e}", parent.display())))?;
    let lock_path = parent.join("kube-apiserver.lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| fail(format!("create {}: {e}", lock_path.display())))?;
    lock.lock()
        .map_err(|e| fail(format!("lock {}: {e}", lock_path.display())))?;
    // Another process may have built it while this one waited.
    if is_fresh(out, dir) {
        return Ok(());
    }
    let tmp = parent.join(format!("kube-apiserver.{}.tmp", std::process::id()));
    let log_path = parent.join("kube-apiserver-build.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| fail(format!("create {}: {e}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(|e| fail(format!("duplicate a handle: {e}")))?;
    eprintln!(
        "building kube-apiserver from {} (once; a cold build downloads modules and takes minutes)",
        dir.display()
    );
    let mut child = go_build_command(dir, &tmp)
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| fail(format!("start go: {e}")))?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < BUILD_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("no result within {BUILD_TIMEOUT:?}")));
            }
            Err(e) => return Err(fail(format!("wait for go: {e}"))),
        }
    };
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(format!(
            "{status}: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )));
    }
    std::fs::rename(&tmp, out).map_err(|e| fail(format!("rename into {}: {e}", out.display())))
}

/// The `k8s.io/kubernetes` version `go.mod` requires (`v1.34.4`), if
/// `go.mod` names one.
pub fn kubernetes_version(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("go.mod")).ok()?;
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        let first = words.next()?;
        let (module, version) = if first == "require" {
            (words.next()?, words.next()?)
        } else {
            (first, words.next()?)
        };
        (module == "k8s.io/kubernetes").then(|| version.to_owned())
    })
}

/// `go build` of the module into `out`: the module graph exactly as
/// `go.sum` pins it (`-mod=readonly`), the version stamped as the release
/// build stamps it (so `/version` and `kubectl version` tell the truth);
/// `GOSUMDB=off` because this project's machines reach the module proxy
/// but not the checksum database (`go.sum` still verifies every module).
pub fn go_build_command(dir: &Path, out: &Path) -> Command {
    let mut cmd = Command::new("go");
    cmd.current_dir(dir)
        .env("GOSUMDB", "off")
        .env("GOFLAGS", "-mod=readonly")
        .args(["build", "-trimpath"]);
    if let Some(v) = kubernetes_version(dir) {
        let mut parts = v.trim_start_matches('v').split('.');
        let (major, minor) = (parts.next().unwrap_or("1"), parts.next().unwrap_or("0"));
        let pkg = "k8s.io/component-base/version";
        cmd.arg(format!(
            "-ldflags=-X {pkg}.gitVersion={v} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean"
        ));
    }
    cmd.arg("-o").arg(out).arg(".").stdin(Stdio::null());
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_kubernetes_version_is_read_from_go_mod() {
        let v = kubernetes_version(&module_dir()).expect("go.mod names k8s.io/kubernetes");
        assert!(v.starts_with("v1.34."), "{v}");
    }
}
