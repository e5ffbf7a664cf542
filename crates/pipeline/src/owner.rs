//! Who owns a data directory: the lock `imgsim serve` holds on it, the
//! owner record it writes (`.imgsim-server.json`: how to reach it) and its
//! token file (`.imgsim-server.token`: what local clients of the same user
//! write with), how clients read them, and whether the owner still lives.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use imgsim_common::Storage;
use serde::{Deserialize, Serialize};

use crate::error::{io, PipelineError, Result};

/// The owner record's file name, in the data directory.
pub const RECORD_FILE: &str = ".imgsim-server.json";
/// The token file's name, in the data directory.
pub const TOKEN_FILE: &str = ".imgsim-server.token";
/// The lock file's name, in the data directory: a running server holds an
/// exclusive lock on it.
pub const LOCK_FILE: &str = ".imgsim-server.lock";

/// How to reach the server that owns a data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRecord {
    /// The server's process id.
    pub pid: u32,
    /// Its base URL, `http://HOST:PORT` (loopback when it listens on all
    /// addresses).
    pub url: String,
    /// When it started, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// The file holding its local token (readable by its user only).
    pub token_file: PathBuf,
}

impl OwnerRecord {
    /// The record's path in `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(RECORD_FILE)
    }

    /// The record of `data_dir`, if there is a readable one (an unreadable
    /// or malformed record is no record: the next server overwrites it).
    pub fn read(data_dir: &Path) -> Option<OwnerRecord> {
        let bytes = std::fs::read(Self::path(data_dir)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes the record into `data_dir` atomically (temporary file, fsync,
    /// rename).
    pub fn write(&self, data_dir: &Path, storage: &dyn Storage) -> Result<()> {
        let path = Self::path(data_dir);
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| PipelineError::Invalid(format!("owner record: {e}")))?;
        storage.write(&path, &json).map_err(io(&path))
    }

    /// Whether the process named by the record still runs (on Linux, from
    /// `/proc`; elsewhere assumed, and left to the health check).
    pub fn pid_alive(&self) -> bool {
        if cfg!(target_os = "linux") {
            Path::new("/proc").join(self.pid.to_string()).exists()
        } else {
            true
        }
    }

    /// The local token, when the token file is readable (by this user).
    pub fn token(&self) -> Option<String> {
        let t = std::fs::read_to_string(&self.token_file).ok()?;
        let t = t.trim();
        (!t.is_empty()).then(|| t.to_string())
    }

    /// Removes the record and its token file from `data_dir` if the record
    /// still names process `pid` (a later server's record is left alone).
    pub fn remove_if_owned_by(data_dir: &Path, pid: u32, storage: &dyn Storage) -> Result<()> {
        let Some(r) = Self::read(data_dir) else {
            return Ok(());
        };
        if r.pid != pid {
            return Ok(());
        }
        let token = data_dir.join(TOKEN_FILE);
        if token.exists() {
            storage.remove_file(&token).map_err(io(&token))?;
        }
        let path = Self::path(data_dir);
        storage.remove_file(&path).map_err(io(&path))
    }
}

/// The URL clients use for a server listening on `bind`: `http://HOST:PORT`,
/// with an unspecified address (0.0.0.0, `[::]`) replaced by loopback.
pub fn url_for(bind: SocketAddr) -> String {
    let mut a = bind;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{a}")
}

/// A fresh random token: 32 bytes from `/dev/urandom`, as 64 hex digits.
pub fn new_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io("/dev/urandom"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `token` to `data_dir`'s token file, readable and writable by
/// this user only (mode 0600); returns its path.
pub fn write_token(data_dir: &Path, token: &str, storage: &dyn Storage) -> Result<PathBuf> {
    let path = data_dir.join(TOKEN_FILE);
    storage
        .write_private(&path, token.as_bytes())
        .map_err(io(&path))?;
    // Absolute: clients read it from their own working folders.
    Ok(std::path::absolute(&path).unwrap_or(path))
}

/// The exclusive lock a server holds on its data directory for as long as
/// it runs (released when dropped or when the process ends, even killed).
#[derive(Debug)]
pub struct ServerLock {
    _file: File,
}

impl ServerLock {
    /// Takes the lock of `data_dir`. When another process holds it, the
    /// error ([`PipelineError::Served`]) names that server from its record.
    pub fn acquire(data_dir: &Path) -> Result<ServerLock> {
        let path = data_dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(ServerLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {
                let r = OwnerRecord::read(data_dir);
                Err(PipelineError::Served {
                    data_dir: data_dir.to_path_buf(),
                    pid: r.as_ref().map_or(0, |r| r.pid),
                    url: r.map_or_else(|| "address not recorded yet".into(), |r| r.url),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
        }
    }

    /// Whether some process holds `data_dir`'s lock now.
    pub fn is_held(data_dir: &Path) -> bool {
        let Ok(file) = File::open(data_dir.join(LOCK_FILE)) else {
            return false;
        };
        match file.try_lock_shared() {
            Ok(()) => false,
            Err(std::fs::TryLockError::WouldBlock) => true,
            Err(std::fs::TryLockError::Error(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_loopback_for_unspecified_addresses() {
        assert_eq!(
            url_for("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(url_for("[::]:9000".parse().unwrap()), "http://[::1]:9000");
        assert_eq!(
            url_for("192.168.1.2:80".parse().unwrap()),
            "http://192.168.1.2:80"
        );
    }

    #[test]
    fn tokens_are_fresh_hex() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn a_second_lock_fails_naming_the_owner_and_records_are_removed_by_their_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let fs = imgsim_common::LocalFs;
        let token = write_token(dir.path(), "t0k3n", &fs).unwrap();
        let rec = OwnerRecord {
            pid: std::process::id(),
            url: "http://127.0.0.1:1234".into(),
            started_unix_ms: 1,
            token_file: token,
        };
        rec.write(dir.path(), &fs).unwrap();
        assert_eq!(OwnerRecord::read(dir.path()), Some(rec.clone()));
        assert!(rec.pid_alive());
        assert_eq!(rec.token().as_deref(), Some("t0k3n"));
        let lock = ServerLock::acquire(dir.path()).unwrap();
        assert!(ServerLock::is_held(dir.path()));
        let e = ServerLock::acquire(dir.path()).unwrap_err();
        assert!(e.to_string().contains("http://127.0.0.1:1234"), "{e}");
        assert_eq!(e.kind(), imgsim_common::ErrorKind::Locked);
        drop(lock);
        assert!(!ServerLock::is_held(dir.path()));
        OwnerRecord::remove_if_owned_by(dir.path(), rec.pid + 1, &fs).unwrap();
        assert!(OwnerRecord::read(dir.path()).is_some());
        OwnerRecord::remove_if_owned_by(dir.path(), rec.pid, &fs).unwrap();
        assert!(OwnerRecord::read(dir.path()).is_none());
        assert!(!dir.path().join(TOKEN_FILE).exists());
    }
}
