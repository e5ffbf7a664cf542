//! When a file looks complete: closed after writing, or its size and
//! modification time unchanged for the settle time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::files::{size_and_mtime, FoundFile};

/// One file waiting to look complete.
#[derive(Debug)]
struct Entry {
    /// Size and modification time when last looked at.
    seen: Option<(u64, u64)>,
    /// When `seen` last changed (or the file was first reported).
    since: Instant,
    /// A close-after-write was seen and the file has not changed since.
    closed: bool,
}

/// What one look at the pending files found.
#[derive(Debug, Default)]
pub(crate) struct Polled {
    /// Files that look complete.
    pub ready: Vec<FoundFile>,
    /// Paths that no longer exist.
    pub gone: Vec<PathBuf>,
    /// Paths that are folders now (created or moved in): to be walked.
    pub folders: Vec<PathBuf>,
}

/// The files reported changed, until they look complete.
#[derive(Debug)]
pub(crate) struct Settler {
    pending: HashMap<PathBuf, Entry>,
    settle: Duration,
}

/// Nanoseconds since the epoch, now.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Settler {
    pub(crate) fn new(settle: Duration) -> Settler {
        Settler {
            pending: HashMap::new(),
            settle,
        }
    }

    /// Files waiting.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// `path` changed (created, written, renamed, removed): it waits until
    /// it looks complete (or turns out gone).
    pub(crate) fn changed(&mut self, path: PathBuf, now: Instant) {
        let e = self.pending.entry(path).or_insert(Entry {
            seen: None,
            since: now,
            closed: false,
        });
        e.closed = false;
    }

    /// `path` was closed after writing: complete unless it changes again.
    pub(crate) fn closed(&mut self, path: PathBuf, now: Instant) {
        let seen = std::fs::metadata(&path).ok().map(|m| size_and_mtime(&m));
        self.pending.insert(
            path,
            Entry {
                seen,
                since: now,
                closed: true,
            },
        );
    }

    /// `file` was found changed by a rescan: complete at once when it was
    /// last modified more than the settle time ago, otherwise it settles.
    pub(crate) fn found(&mut self, file: &FoundFile, now: Instant) {
        let old = now_ns().saturating_sub(file.mtime_ns) > self.settle.as_nanos() as u64;
        self.pending.insert(
            file.path.clone(),
            Entry {
                seen: Some((file.size, file.mtime_ns)),
                since: now,
                closed: old,
            },
        );
    }

    /// Looks at every pending file: those that look complete, and those
    /// gone, leave the pending set.
    pub(crate) fn poll(&mut self, now: Instant) -> Polled {
        let mut out = Polled::default();
        let settle = self.settle;
        self.pending.retain(|path, e| {
            let meta = match std::fs::metadata(path) {
                Ok(m) => m,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    out.gone.push(path.clone());
                    return false;
                }
                // Unreadable: the indexer reports why.
                Err(_) => {
                    out.ready.push(found(path, (0, 0)));
                    return false;
                }
            };
            if meta.is_dir() {
                out.folders.push(path.clone());
                return false;
            }
            if !meta.is_file() {
                return false;
            }
            let now_seen = size_and_mtime(&meta);
            if e.seen != Some(now_seen) {
                e.seen = Some(now_seen);
                e.since = now;
                e.closed = false;
                return true;
            }
            if e.closed || now.duration_since(e.since) >= settle {
                out.ready.push(found(path, now_seen));
                return false;
            }
            true
        });
        out
    }
}

fn found(path: &Path, (size, mtime_ns): (u64, u64)) -> FoundFile {
    FoundFile {
        path: path.to_path_buf(),
        size,
        mtime_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_ready_once_closed_or_stable_and_gone_when_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let settle = Duration::from_millis(300);
        let mut s = Settler::new(settle);
        let t0 = Instant::now();
        let a = dir.path().join("a.png");
        std::fs::write(&a, b"half").unwrap();
        s.changed(a.clone(), t0);
        // First look: its size is recorded, it is not ready.
        assert!(s.poll(t0).ready.is_empty());
        assert!(s.poll(t0 + settle / 2).ready.is_empty());
        // It grows: the settle time starts again.
        std::fs::write(&a, b"half and the rest").unwrap();
        assert!(s.poll(t0 + settle).ready.is_empty());
        let p = s.poll(t0 + settle * 2 + Duration::from_millis(1));
        assert_eq!(p.ready.len(), 1);
        assert_eq!(p.ready[0].size, 17);
        assert_eq!(s.len(), 0);
        // Closed after writing: ready at the next look.
        s.closed(a.clone(), t0);
        assert_eq!(s.poll(t0).ready.len(), 1);
        // Deleted, and a folder.
        s.changed(a.clone(), t0);
        std::fs::remove_file(&a).unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        s.changed(sub.clone(), t0);
        let p = s.poll(t0);
        assert_eq!((p.gone, p.folders), (vec![a], vec![sub]));
        assert_eq!(s.len(), 0);
    }
}
