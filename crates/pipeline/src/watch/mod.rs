//! Watched folders: a background thread that keeps a collection in step with
//! folders, from file-system notifications (inotify on Linux, recursive)
//! and periodic rescans (the fallback for network shares and missed events).
//!
//! The files, by job:
//!
//! - `mod.rs`: the options, the [`WatchTarget`] the changes go to, the
//!   watcher's [`WatchStats`], and [`FolderWatcher`], which owns the thread;
//! - `follow.rs`: the thread's loop: notifications and rescans become
//!   pending files, complete files become indexing batches, gone files
//!   leave the collection, recent files that fail are retried;
//! - `settle.rs`: when a file looks complete (closed after writing, or its
//!   size and modification time stable for a settle time);
//! - `filter.rs`: whether a path reported by a notification is one the
//!   folder walk would take (hidden files, `--exclude`, `.imgsimignore`);
//! - `forget.rs`: removing the items of files that are gone, by path.
//!
//! What the watcher promises: a file is handed to the indexer only once it
//! looks complete; many files arriving together become a few batches (the
//! thread waits [`WatchOptions::batch_delay`] after the first complete
//! file, and whatever completes while a batch is being indexed goes into
//! the next); a file that fails while it was modified within
//! [`WatchOptions::recent`] is retried (it may still be being written by a
//! program that does not close it), and only reported failed after
//! [`WatchOptions::retries`] attempts or once it is no longer recent.

mod filter;
mod follow;
mod forget;
mod settle;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use crate::error::{PipelineError, Result};
use crate::files::{Failure, Walk, WalkOptions};
use crate::indexer::{Catalog, IndexOptions, Summary};

pub use forget::forget_missing;

/// How to watch.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// What the walk leaves out (the same rules as `imgsim index`).
    pub walk: WalkOptions,
    /// How to index (batch size, decoding threads, limits; `prune` is set
    /// by the watcher itself: on for the first full pass, off after).
    pub index: IndexOptions,
    /// Follow file-system notifications; when off (or when they cannot be
    /// set up), only the periodic rescans see changes.
    pub notifications: bool,
    /// Time between two full rescans of the folders.
    pub rescan_interval: Duration,
    /// How long a file's size and modification time must stay the same
    /// before it is taken as complete (when no close-after-write was seen).
    pub settle: Duration,
    /// How long to wait after the first complete file before indexing, so
    /// that files arriving together are indexed together.
    pub batch_delay: Duration,
    /// A file that fails to decode while modified less than this long ago
    /// is retried rather than reported failed.
    pub recent: Duration,
    /// Attempts for a recent file that fails, before it is reported failed.
    pub retries: u32,
    /// Wait before the first retry (then twice that, three times...).
    pub retry_delay: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            walk: WalkOptions::default(),
            index: IndexOptions::default(),
            notifications: true,
            rescan_interval: Duration::from_secs(60),
            settle: Duration::from_millis(400),
            batch_delay: Duration::from_millis(150),
            recent: Duration::from_secs(5),
            retries: 4,
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// Where the watcher's work goes: the collection, reached through whatever
/// serialises access to it (the service indexes through its per-collection
/// lock). Every method blocks; they are called from the watcher's thread.
pub trait WatchTarget: Send + Sync + 'static {
    /// The target's error.
    type Error: std::fmt::Display;
    /// Indexes `walk`'s files incrementally, as [`crate::index_files`] does.
    fn index(
        &self,
        walk: Walk,
        roots: &[PathBuf],
        options: &IndexOptions,
        cancel: &AtomicBool,
    ) -> std::result::Result<Summary, Self::Error>;
    /// Removes the items of files gone from `paths` (files, or folders: the
    /// items under them), as [`forget_missing`] does; returns how many.
    fn forget(&self, paths: &[PathBuf]) -> std::result::Result<usize, Self::Error>;
    /// What the collection holds, by path.
    fn catalog(&self) -> std::result::Result<Catalog, Self::Error>;
}

/// Most failures kept in [`WatchStats::recent_failures`].
pub const RECENT_FAILURES: usize = 20;

/// What the watcher has done, for the service's stats and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WatchStats {
    /// The folders followed.
    pub folders: Vec<PathBuf>,
    /// Whether file-system notifications are in use (false: rescans only).
    pub notifications: bool,
    /// Seconds between rescans.
    pub rescan_interval_s: f64,
    /// Files waiting: settling, ready for the next batch, or to be retried.
    pub queued: usize,
    /// Images indexed (new and changed files, exact copies included).
    pub indexed: u64,
    /// Files reported failed (after their retries).
    pub failed: u64,
    /// Items removed because their files were deleted or moved away.
    pub removed: u64,
    /// Indexing batches run.
    pub batches: u64,
    /// Full scans of the folders done (the first pass included).
    pub scans: u64,
    /// When the last full scan finished, seconds since the Unix epoch.
    pub last_scan_unix_s: Option<u64>,
    /// The last error (a failed batch, an unreadable folder, notifications
    /// that could not be set up), if any.
    pub last_error: Option<String>,
    /// The most recent failures (at most [`RECENT_FAILURES`]).
    pub recent_failures: Vec<Failure>,
    /// True once the first full pass over the folders is done.
    pub caught_up: bool,
}

/// A message to the watcher's thread.
enum Msg {
    /// A file-system notification.
    Event(notify::Result<notify::Event>),
    /// Stop.
    Stop,
}

/// Follows folders and keeps a collection in step with them, on its own
/// thread, until stopped or dropped.
pub struct FolderWatcher {
    stop: Arc<AtomicBool>,
    tx: Sender<Msg>,
    stats: Arc<Mutex<WatchStats>>,
    thread: Option<JoinHandle<()>>,
    // Kept alive while the thread runs; dropped (stopping its own thread)
    // after it.
    notifier: Option<notify::RecommendedWatcher>,
}

impl std::fmt::Debug for FolderWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderWatcher")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl FolderWatcher {
    /// Starts following `folders` (each must be an existing folder) into
    /// `target`: first a full pass (as `imgsim index FOLDERS --prune`:
    /// new and changed files indexed, entries of deleted files removed),
    /// then notifications and rescans. Notifications that cannot be set up
    /// (e.g. the inotify watch limit) are reported in
    /// [`WatchStats::last_error`] and the rescans carry on alone.
    pub fn start<T: WatchTarget>(
        folders: &[PathBuf],
        options: WatchOptions,
        target: T,
    ) -> Result<FolderWatcher> {
        let mut roots = Vec::new();
        for f in folders {
            let abs = std::path::absolute(f).map_err(crate::error::io(f))?;
            match std::fs::metadata(&abs) {
                Ok(m) if m.is_dir() => roots.push(abs),
                Ok(_) => {
                    return Err(PipelineError::BadRoot {
                        path: f.clone(),
                        reason: "not a folder (only folders can be watched)".into(),
                    })
                }
                Err(e) => {
                    return Err(PipelineError::BadRoot {
                        path: f.clone(),
                        reason: match e.kind() {
                            std::io::ErrorKind::NotFound => "no such folder".into(),
                            _ => e.to_string(),
                        },
                    })
                }
            }
        }
        roots.sort();
        roots.dedup();
        if options.index.batch_size == 0 {
            return Err(PipelineError::Invalid(
                "batch size must be at least 1".into(),
            ));
        }
        if options.rescan_interval.is_zero() {
            return Err(PipelineError::Invalid(
                "the rescan interval must be more than 0".into(),
            ));
        }
        let filter = filter::PathFilter::new(&roots, &options.walk)?;
        let (tx, rx) = channel::<Msg>();
        let stats = Arc::new(Mutex::new(WatchStats {
            folders: roots.clone(),
            notifications: false,
            rescan_interval_s: options.rescan_interval.as_secs_f64(),
            ..WatchStats::default()
        }));
        // Notifications first, so that nothing changed during the first
        // pass is missed.
        let mut notifier = None;
        if options.notifications {
            match watch_folders(&roots, tx.clone()) {
                Ok(w) => {
                    notifier = Some(w);
                    lock(&stats).notifications = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "file-system notifications unavailable: rescans only");
                    lock(&stats).last_error =
                        Some(format!("notifications unavailable, rescans only: {e}"));
                }
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let follower =
            follow::Follower::new(roots, options, target, filter, stats.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("imgsim-watch".into())
            .spawn(move || follower.run(rx))
            .map_err(|e| PipelineError::Invalid(format!("cannot start the watcher thread: {e}")))?;
        Ok(FolderWatcher {
            stop,
            tx,
            stats,
            thread: Some(thread),
            notifier,
        })
    }

    /// What the watcher has done so far.
    pub fn stats(&self) -> WatchStats {
        lock(&self.stats).clone()
    }

    /// Stops the thread (an indexing run in flight stops after its batch)
    /// and waits for it.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.notifier = None;
    }
}

impl Drop for FolderWatcher {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn lock(stats: &Mutex<WatchStats>) -> std::sync::MutexGuard<'_, WatchStats> {
    stats.lock().unwrap_or_else(|p| p.into_inner())
}

/// A recursive notification watch on each root, sending to `tx`.
fn watch_folders(roots: &[PathBuf], tx: Sender<Msg>) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let mut w = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        let _ = tx.send(Msg::Event(e));
    })?;
    for r in roots {
        w.watch(r, notify::RecursiveMode::Recursive)?;
    }
    Ok(w)
}
