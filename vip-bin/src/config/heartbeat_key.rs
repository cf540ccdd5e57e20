//! `vip_heartbeat_key_file` (`--vip-heartbeat-key-file`): an optional
//! pre-shared key for authenticated heartbeats, keepalived's `auth_hmac`
//! in vip's terms.
//!
//! Not needed in the common case: without it every node obtains the
//! cluster's key from the election backend (a Secret next to the Lease,
//! or a key in etcd; see `vip_core::heartbeat_auth`). With it, the file's
//! key is used on this node and the backend's key store is never asked
//! (no Secret permission needed); every node of the cluster must then use
//! the same file.
//!
//! The file holds the key as 64 hex digits (`openssl rand -hex 32`),
//! surrounding white space ignored. It must be an absolute path, and a file
//! others cannot read (no permission bit for "other"): a key anyone on the
//! host can read protects nothing. Every fault is refused in one line
//! naming the key and the path before anything touches the host.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use vip_core::HeartbeatKey;

use super::{ConfigError, Sources, invalid};

/// The setting's name.
pub const KEY: &str = "vip_heartbeat_key_file";

/// The path of `vip_heartbeat_key_file`, if set (empty: unset). Relative
/// paths are refused: the daemon's working directory is not the operator's.
pub fn key_file(sources: &Sources) -> Result<Option<PathBuf>, ConfigError> {
    match sources.get(KEY).map(str::trim) {
        None | Some("") => Ok(None),
        Some(p) if Path::new(p).is_absolute() => Ok(Some(PathBuf::from(p))),
        Some(p) => Err(invalid(
            KEY,
            p,
            "an absolute path to a file of 64 hex digits",
        )),
    }
}

/// Read and check the key file at `path`.
pub fn load(path: &Path) -> Result<HeartbeatKey, ConfigError> {
    let shown = path.display().to_string();
    let fail = |expected: String| invalid(KEY, &shown, expected);
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("a readable file ({e})")))?;
    if !meta.is_file() {
        return Err(fail("a regular file".into()));
    }
    let mode = meta.permissions().mode();
    if mode & 0o007 != 0 {
        return Err(fail(format!(
            "a file others cannot read (mode {:03o}; chmod 600 it)",
            mode & 0o777
        )));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| fail(format!("a readable UTF-8 file ({e})")))?;
    HeartbeatKey::from_hex(&text, &shown).map_err(|e| match e {
        vip_core::HeartbeatKeyError::Invalid { reason, .. } => fail(format!(
            "64 hex digits, e.g. from `openssl rand -hex 32` ({reason})"
        )),
        other => fail(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn file(contents: &str, mode: u32) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    #[test]
    fn the_path_is_optional_and_absolute() {
        assert_eq!(key_file(&Sources::env_only(&[])), Ok(None));
        assert_eq!(key_file(&Sources::env_only(&[(KEY, "")])), Ok(None));
        assert_eq!(
            key_file(&Sources::env_only(&[(KEY, "/etc/vip/hb.key")])),
            Ok(Some(PathBuf::from("/etc/vip/hb.key")))
        );
        assert_eq!(
            key_file(&Sources::env_only(&[(KEY, "hb.key")]))
                .unwrap_err()
                .to_string(),
            "invalid vip_heartbeat_key_file=\"hb.key\": expected an absolute path to a file of 64 hex digits"
        );
    }

    #[test]
    fn a_good_file_gives_the_key() {
        let f = file(&format!("{HEX}\n"), 0o600);
        let key = load(f.path()).unwrap();
        assert_eq!(key, HeartbeatKey::new(std::array::from_fn(|i| i as u8)));
        let f = file(HEX, 0o640);
        assert!(load(f.path()).is_ok(), "group-readable is allowed");
    }

    #[test]
    fn bad_files_are_refused_in_one_line() {
        let world = file(HEX, 0o644);
        let e = load(world.path()).unwrap_err().to_string();
        assert!(
            e.ends_with("expected a file others cannot read (mode 644; chmod 600 it)"),
            "{e}"
        );
        let short = file("abc", 0o600);
        let e = load(short.path()).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "expected 64 hex digits, e.g. from `openssl rand -hex 32` (3 characters, expected 64 hex digits)"
            ),
            "{e}"
        );
        let e = load(Path::new("/nonexistent/vip-hb.key"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid vip_heartbeat_key_file=\"/nonexistent/vip-hb.key\": expected a readable file ("),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.ends_with("expected a regular file"), "{e}");
        for e in [load(world.path()), load(short.path())] {
            assert_eq!(e.unwrap_err().to_string().lines().count(), 1);
        }
    }
}
