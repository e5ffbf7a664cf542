//! The watcher thread's loop: notifications and rescans become pending
//! files; complete files become indexing batches; gone files leave the
//! collection; recent files that fail are retried.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::EventKind;

use super::filter::PathFilter;
use super::settle::Settler;
use super::{lock, Msg, WatchOptions, WatchStats, WatchTarget, RECENT_FAILURES};
use crate::files::{walk_with, Failure, FoundFile, Walk};

/// How often pending files are looked at.
const TICK: Duration = Duration::from_millis(50);
/// Most files in one batch handed to the indexer.
const MAX_BATCH: usize = 512;

/// A file that failed while recent, to be tried again.
#[derive(Debug)]
struct Retry {
    attempts: u32,
    due: Instant,
}

/// The watcher thread's state.
pub(super) struct Follower<T: WatchTarget> {
    roots: Vec<PathBuf>,
    opts: WatchOptions,
    target: T,
    filter: PathFilter,
    stats: Arc<Mutex<WatchStats>>,
    settler: Settler,
    /// Complete files waiting for the batch to be handed over.
    ready: HashMap<PathBuf, FoundFile>,
    /// Paths gone, waiting likewise.
    gone: HashSet<PathBuf>,
    /// When the first file of the batch being gathered was ready.
    batch_since: Option<Instant>,
    retries: HashMap<PathBuf, Retry>,
    /// Files reported failed, with the size and modification time they
    /// failed at: a rescan does not try them again unless they change.
    failed: HashMap<PathBuf, (u64, u64)>,
    next_scan: Instant,
    /// Set to stop: also the cancel flag of indexing runs, so that a long
    /// run stops after its batch in flight.
    stop: Arc<AtomicBool>,
}

impl<T: WatchTarget> Follower<T> {
    pub(super) fn new(
        roots: Vec<PathBuf>,
        opts: WatchOptions,
        target: T,
        filter: PathFilter,
        stats: Arc<Mutex<WatchStats>>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Follower {
            roots,
            settler: Settler::new(opts.settle),
            opts,
            target,
            filter,
            stats,
            ready: HashMap::new(),
            gone: HashSet::new(),
            batch_since: None,
            retries: HashMap::new(),
            failed: HashMap::new(),
            next_scan: Instant::now(),
            stop,
        }
    }

    /// Runs until stopped (or the sender goes away).
    pub(super) fn run(mut self, rx: Receiver<Msg>) {
        let stopped = |s: &Self| s.stop.load(Ordering::SeqCst);
        self.first_pass();
        loop {
            if stopped(&self) {
                return;
            }
            let now = Instant::now();
            let busy = self.settler.len() > 0 || !self.ready.is_empty() || !self.gone.is_empty();
            let wait = if busy {
                TICK
            } else {
                let next_retry = self.retries.values().map(|r| r.due).min();
                let until = next_retry.map_or(self.next_scan, |d| d.min(self.next_scan));
                until
                    .saturating_duration_since(now)
                    .clamp(TICK, Duration::from_secs(1))
            };
            match rx.recv_timeout(wait) {
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Msg::Event(e)) => self.on_event(e),
                Err(RecvTimeoutError::Timeout) => {}
            }
            loop {
                match rx.try_recv() {
                    Ok(Msg::Event(e)) => self.on_event(e),
                    Ok(Msg::Stop) => return,
                    Err(_) => break,
                }
            }
            if stopped(&self) {
                return;
            }
            let now = Instant::now();
            if now >= self.next_scan {
                self.rescan();
            }
            self.due_retries(now);
            self.gather(now);
            let due = self
                .batch_since
                .is_some_and(|t| now.duration_since(t) >= self.opts.batch_delay)
                || self.ready.len() >= MAX_BATCH;
            if due {
                self.hand_over();
            }
            self.update_queued();
        }
    }

    fn update_queued(&self) {
        let q = self.settler.len() + self.ready.len() + self.gone.len() + self.retries.len();
        lock(&self.stats).queued = q;
    }

    fn error(&self, what: String) {
        tracing::warn!(error = %what, "folder watcher");
        lock(&self.stats).last_error = Some(what);
    }

    fn scanned(&mut self) {
        let mut s = lock(&self.stats);
        s.scans += 1;
        s.last_scan_unix_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
        drop(s);
        self.next_scan = Instant::now() + self.opts.rescan_interval;
    }

    /// The first pass: everything under the roots, as `imgsim index ROOTS
    /// --prune` (new and changed files indexed, entries of deleted ones
    /// removed).
    fn first_pass(&mut self) {
        match walk_with(&self.roots, &self.opts.walk) {
            Ok(walk) => {
                for f in &walk.failures {
                    self.error(format!("{}: {}", f.path.display(), f.error));
                }
                let mut opts = self.opts.index.clone();
                opts.prune = true;
                self.index(walk.files, &opts);
            }
            Err(e) => self.error(format!("scanning the watched folders: {e}")),
        }
        self.scanned();
        lock(&self.stats).caught_up = true;
        self.update_queued();
    }

    /// A rescan: files new or changed since they were indexed (and not
    /// known to fail as they are) settle like notified ones; entries under
    /// the roots whose files are gone are removed.
    fn rescan(&mut self) {
        let walk = match walk_with(&self.roots, &self.opts.walk) {
            Ok(w) => w,
            Err(e) => {
                self.error(format!("rescanning the watched folders: {e}"));
                self.scanned();
                return;
            }
        };
        let catalog = match self.target.catalog() {
            Ok(c) => c,
            Err(e) => {
                self.error(format!("reading the collection for a rescan: {e}"));
                self.scanned();
                return;
            }
        };
        let now = Instant::now();
        let mut seen = HashSet::new();
        for f in &walk.files {
            let Some(p) = f.path.to_str() else { continue };
            seen.insert(p.to_string());
            if catalog.is_current(p, f.size, f.mtime_ns)
                || self.failed.get(&f.path) == Some(&(f.size, f.mtime_ns))
                || self.retries.contains_key(&f.path)
                || !self.filter.admits(&f.path)
            {
                continue;
            }
            self.settler.found(f, now);
        }
        for (p, _) in catalog.paths() {
            let path = PathBuf::from(p);
            if !seen.contains(p)
                && self.roots.iter().any(|r| path.starts_with(r))
                && matches!(std::fs::symlink_metadata(&path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
            {
                self.gone.insert(path);
                self.batch_since.get_or_insert(now);
            }
        }
        self.scanned();
    }

    fn on_event(&mut self, e: notify::Result<notify::Event>) {
        let now = Instant::now();
        let event = match e {
            Ok(ev) => ev,
            Err(err) => {
                // Events may have been lost: look at everything soon.
                self.error(format!("file-system notifications: {err}; rescanning"));
                self.next_scan = now;
                return;
            }
        };
        if event.need_rescan() {
            self.next_scan = now;
            return;
        }
        let mut paths = event.paths.into_iter();
        match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                for p in paths {
                    self.settler.closed(p, now);
                }
            }
            // Opening and reading (the indexer's own reads among them).
            EventKind::Access(_) => {}
            EventKind::Create(CreateKind::Folder) => {
                for p in paths {
                    self.walk_folder(&p, now);
                }
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                if let Some(from) = paths.next() {
                    self.settler.changed(from, now);
                }
                for to in paths {
                    self.settler.changed(to, now);
                }
            }
            EventKind::Create(_)
            | EventKind::Modify(_)
            | EventKind::Remove(_)
            | EventKind::Any
            | EventKind::Other => {
                for p in paths {
                    self.settler.changed(p, now);
                }
            }
        }
    }

    /// A folder created or moved in: its files settle.
    fn walk_folder(&mut self, dir: &std::path::Path, now: Instant) {
        let opts = crate::files::WalkOptions {
            hidden: self.opts.walk.hidden,
            exclude: Vec::new(),
        };
        if let Ok(w) = walk_with(&[dir.to_path_buf()], &opts) {
            for f in w.files {
                self.settler.changed(f.path, now);
            }
        }
    }

    fn due_retries(&mut self, now: Instant) {
        let due: Vec<PathBuf> = self
            .retries
            .iter()
            .filter(|(_, r)| r.due <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for p in due {
            // Stays in `retries` (with its count) until it succeeds or fails for good.
            if let Some(r) = self.retries.get_mut(&p) {
                r.due = now + Duration::from_secs(3600);
            }
            self.settler.changed(p, now);
        }
    }

    /// Moves what the settler finds complete (or gone) into the batch.
    fn gather(&mut self, now: Instant) {
        let polled = self.settler.poll(now);
        for d in polled.folders {
            self.walk_folder(&d, now);
        }
        let got = !polled.ready.is_empty() || !polled.gone.is_empty();
        for f in polled.ready {
            if self.filter.admits(&f.path) {
                self.gone.remove(&f.path);
                self.ready.insert(f.path.clone(), f);
            }
        }
        for g in polled.gone {
            self.ready.remove(&g);
            self.retries.remove(&g);
            self.failed.remove(&g);
            self.gone.insert(g);
        }
        if got && (!self.ready.is_empty() || !self.gone.is_empty()) {
            self.batch_since.get_or_insert(now);
        }
    }

    /// Hands the batch over: gone files leave first (a file moved within
    /// the folders is then indexed under its new path), then the complete
    /// files are indexed.
    fn hand_over(&mut self) {
        self.batch_since = None;
        let gone: Vec<PathBuf> = self.gone.drain().collect();
        if !gone.is_empty() {
            match self.target.forget(&gone) {
                Ok(n) => lock(&self.stats).removed += n as u64,
                Err(e) => self.error(format!("removing deleted files from the collection: {e}")),
            }
        }
        let mut files: Vec<FoundFile> = self.ready.drain().map(|(_, f)| f).collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        if !files.is_empty() {
            let mut opts = self.opts.index.clone();
            opts.prune = false;
            self.index(files, &opts);
        }
    }

    /// Indexes `files`; sorts the failures into retries and failures.
    fn index(&mut self, files: Vec<FoundFile>, opts: &crate::IndexOptions) {
        let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
        let walk = Walk {
            files,
            failures: Vec::new(),
        };
        let roots = if opts.prune {
            self.roots.clone()
        } else {
            Vec::new()
        };
        let summary = match self.target.index(walk, &roots, opts, &self.stop) {
            Ok(s) => s,
            Err(e) => {
                // Nothing is lost: the next rescan finds these files again.
                self.error(format!("indexing changed files: {e}"));
                return;
            }
        };
        let now = Instant::now();
        let failed: HashSet<&PathBuf> = summary.errors.iter().map(|f| &f.path).collect();
        for p in &paths {
            if !failed.contains(p) {
                self.retries.remove(p);
                self.failed.remove(p);
            }
        }
        let mut reported = Vec::new();
        for f in &summary.errors {
            let meta = std::fs::metadata(&f.path).ok();
            let stamp = meta
                .as_ref()
                .map(crate::files::size_and_mtime)
                .unwrap_or((0, 0));
            let recent = meta
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age < self.opts.recent);
            let attempts = self.retries.get(&f.path).map_or(0, |r| r.attempts);
            if recent && attempts < self.opts.retries {
                let delay = self.opts.retry_delay * (attempts + 1);
                tracing::debug!(path = %f.path.display(), error = %f.error, attempts, "recent file failed; trying again later");
                self.retries.insert(
                    f.path.clone(),
                    Retry {
                        attempts: attempts + 1,
                        due: now + delay,
                    },
                );
            } else {
                self.retries.remove(&f.path);
                self.failed.insert(f.path.clone(), stamp);
                reported.push(f.clone());
            }
        }
        let mut s = lock(&self.stats);
        s.batches += 1;
        s.indexed += (summary.indexed + summary.duplicates) as u64;
        s.removed += summary.pruned as u64;
        s.failed += reported.len() as u64;
        for f in reported {
            tracing::warn!(path = %f.path.display(), error = %f.error, "watched file could not be indexed");
            s.last_error = Some(format!("{}: {}", f.path.display(), f.error));
            s.recent_failures.push(Failure {
                path: f.path,
                error: f.error,
            });
        }
        let extra = s.recent_failures.len().saturating_sub(RECENT_FAILURES);
        s.recent_failures.drain(..extra);
    }
}
