//! The folder watcher with a small test embedder: files copied in are
//! indexed in a few batches, a changed file is re-indexed once, deleted and
//! moved files leave, a half-written file is indexed whole and not counted
//! failed, a broken file is reported after its retries, and the rescans
//! alone (notifications off) see every change, deletions while the watcher
//! was not running included.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{collection, noise, Means};
use imgsim_index::Collection;
use imgsim_pipeline::watch::{forget_missing, FolderWatcher, WatchOptions, WatchTarget};
use imgsim_pipeline::{Catalog, IndexOptions, PipelineError, Summary, Walk};

/// The collection itself as the watcher's target, indexing runs
/// serialised as the service serialises them.
#[derive(Clone)]
struct Direct(Arc<(Collection, Means, Mutex<()>)>);

impl WatchTarget for Direct {
    type Error = PipelineError;

    fn index(
        &self,
        walk: Walk,
        roots: &[PathBuf],
        options: &IndexOptions,
        cancel: &AtomicBool,
    ) -> Result<Summary, PipelineError> {
        let _one = self.0 .2.lock().unwrap();
        imgsim_pipeline::index_files(
            &self.0 .0,
            &self.0 .1,
            walk,
            roots,
            options,
            cancel,
            &|_| {},
        )
    }

    fn forget(&self, paths: &[PathBuf]) -> Result<usize, PipelineError> {
        let _one = self.0 .2.lock().unwrap();
        forget_missing(&self.0 .0, paths)
    }

    fn catalog(&self) -> Result<Catalog, PipelineError> {
        Catalog::load(&self.0 .0)
    }
}

impl Direct {
    fn new(dir: &Path) -> Direct {
        Direct(Arc::new((collection(dir), Means::new(), Mutex::new(()))))
    }

    fn c(&self) -> &Collection {
        &self.0 .0
    }

    fn id_of(&self, path: &Path) -> Option<u64> {
        Catalog::load(self.c())
            .unwrap()
            .id_of_path(path.to_str().unwrap())
    }

    fn hash_of(&self, path: &Path) -> Option<String> {
        let id = self.id_of(path)?;
        let meta = self.c().item(id).ok()?;
        meta.attrs
            .get(imgsim_pipeline::indexer::ATTR_HASH)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }
}

fn options() -> WatchOptions {
    WatchOptions {
        settle: Duration::from_millis(300),
        rescan_interval: Duration::from_secs(600),
        ..WatchOptions::default()
    }
}

/// Waits (30 s at most) until `done` holds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "not within 30 s: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hash(path: &Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap())
        .to_hex()
        .to_string()
}

#[test]
fn copied_changed_deleted_and_moved_files_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    let staging = dir.path().join("staging");
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::create_dir_all(&staging).unwrap();
    let target = Direct::new(dir.path());
    let w = FolderWatcher::start(std::slice::from_ref(&photos), options(), target.clone()).unwrap();
    eventually("the first pass", || w.stats().caught_up);
    assert!(w.stats().notifications);
    // 40 files copied in at once (and a hidden one, left out).
    for i in 0..40 {
        noise(&staging.join(format!("{i}.png")), i, 24, 24);
    }
    noise(&staging.join("hidden.png"), 99, 24, 24);
    for i in 0..40 {
        let name = format!("{i}.png");
        std::fs::copy(staging.join(&name), photos.join(&name)).unwrap();
    }
    std::fs::copy(staging.join("hidden.png"), photos.join(".hidden.png")).unwrap();
    // The watcher counts a batch once its indexing run has returned, a
    // moment after the items are committed.
    eventually("40 files indexed", || {
        target.c().len() == 40 && w.stats().indexed == 40
    });
    let s = w.stats();
    assert_eq!((s.indexed, s.failed), (40, 0), "{s:?}");
    assert!(s.batches <= 12, "40 files in {} batches", s.batches);
    assert!(target.id_of(&photos.join(".hidden.png")).is_none());
    // Thumbnails were made while indexing.
    let id = target.id_of(&photos.join("0.png")).unwrap();
    assert!(dir
        .path()
        .join("c/thumbs")
        .join(format!("{id}.jpg"))
        .exists());

    // A changed file is re-indexed, once.
    let changed = photos.join("3.png");
    let old_id = target.id_of(&changed).unwrap();
    noise(&changed, 1003, 24, 24);
    eventually("the changed file re-indexed", || {
        target.hash_of(&changed) == Some(hash(&changed))
    });
    eventually("the change counted", || w.stats().indexed >= 41);
    std::thread::sleep(Duration::from_millis(800));
    let s = w.stats();
    assert_eq!(s.indexed, 41, "{s:?}");
    assert_eq!(target.c().len(), 40);
    let thumb = |id: u64| dir.path().join("c/thumbs").join(format!("{id}.jpg"));
    assert!(
        !thumb(old_id).exists(),
        "the replaced item's thumbnail is removed"
    );
    assert!(thumb(target.id_of(&changed).unwrap()).exists());

    // Deleted files leave.
    std::fs::remove_file(photos.join("5.png")).unwrap();
    std::fs::remove_file(photos.join("6.png")).unwrap();
    eventually("deleted files removed", || target.c().len() == 38);
    assert!(target.id_of(&photos.join("5.png")).is_none());

    // Moved within the folder: indexed under the new path; moved away: gone.
    std::fs::create_dir(photos.join("album")).unwrap();
    std::fs::rename(photos.join("7.png"), photos.join("album/7.png")).unwrap();
    std::fs::rename(photos.join("8.png"), staging.join("8-out.png")).unwrap();
    eventually("moves followed", || {
        target.id_of(&photos.join("album/7.png")).is_some()
            && target.id_of(&photos.join("7.png")).is_none()
            && target.id_of(&photos.join("8.png")).is_none()
    });
    assert_eq!(target.c().len(), 37);
    // A folder moved in.
    std::fs::create_dir(staging.join("trip")).unwrap();
    noise(&staging.join("trip/t.png"), 500, 24, 24);
    std::fs::rename(staging.join("trip"), photos.join("trip")).unwrap();
    eventually("a folder moved in", || {
        target.id_of(&photos.join("trip/t.png")).is_some()
    });
    // A late event (the folder's, or a second one for its file) may still
    // be settling: it drains without indexing anything again.
    eventually("the queue drained", || {
        let s = w.stats();
        s.queued == 0 && s.removed >= 4
    });
    let s = w.stats();
    assert_eq!((s.removed, s.failed), (4, 0), "{s:?}");
    assert_eq!(target.c().len(), 38, "{s:?}");
    w.stop();
}

#[test]
fn a_half_written_file_is_indexed_whole_and_a_broken_one_fails_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let whole = dir.path().join("whole.png");
    noise(&whole, 7, 96, 96);
    let bytes = std::fs::read(&whole).unwrap();
    let target = Direct::new(dir.path());
    let opts = WatchOptions {
        recent: Duration::from_secs(3),
        retry_delay: Duration::from_millis(200),
        ..options()
    };
    let w = FolderWatcher::start(std::slice::from_ref(&photos), opts, target.clone()).unwrap();
    eventually("the first pass", || w.stats().caught_up);
    // Half the bytes, a pause past the settle time with the file open,
    // then the rest.
    let slow = photos.join("slow.png");
    let mut f = std::fs::File::create(&slow).unwrap();
    f.write_all(&bytes[..bytes.len() / 2]).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(900));
    f.write_all(&bytes[bytes.len() / 2..]).unwrap();
    drop(f);
    eventually("the whole file indexed", || {
        target.hash_of(&slow) == Some(hash(&whole))
    });
    // A file that is broken for good: retried while recent, then reported.
    let broken = photos.join("broken.png");
    std::fs::write(&broken, &bytes[..bytes.len() / 3]).unwrap();
    eventually("the broken file reported", || w.stats().failed == 1);
    let s = w.stats();
    assert_eq!(s.recent_failures.len(), 1, "{s:?}");
    assert_eq!(s.recent_failures[0].path, broken);
    assert_eq!(target.c().len(), 1);
    assert_eq!(target.hash_of(&slow), Some(hash(&whole)));
    assert!(s.last_error.unwrap_or_default().contains("broken.png"));
    w.stop();
}

#[test]
fn rescans_alone_find_changes_and_the_first_pass_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for i in 0..3 {
        noise(&photos.join(format!("{i}.png")), i, 24, 24);
    }
    let target = Direct::new(dir.path());
    let opts = WatchOptions {
        notifications: false,
        rescan_interval: Duration::from_millis(300),
        ..options()
    };
    // A first watcher indexes the folder, then stops.
    let w =
        FolderWatcher::start(std::slice::from_ref(&photos), opts.clone(), target.clone()).unwrap();
    eventually("the first pass", || w.stats().caught_up);
    assert_eq!(target.c().len(), 3);
    assert!(!w.stats().notifications);
    w.stop();
    // While nothing watches: one file deleted, one added.
    std::fs::remove_file(photos.join("0.png")).unwrap();
    noise(&photos.join("3.png"), 3, 24, 24);
    let w = FolderWatcher::start(std::slice::from_ref(&photos), opts, target.clone()).unwrap();
    eventually("the first pass", || w.stats().caught_up);
    assert!(target.id_of(&photos.join("0.png")).is_none());
    assert!(target.id_of(&photos.join("3.png")).is_some());
    assert_eq!(target.c().len(), 3);
    // Changes while it watches, seen by rescans only.
    noise(&photos.join("sub.png"), 40, 24, 24);
    std::fs::remove_file(photos.join("1.png")).unwrap();
    noise(&photos.join("2.png"), 1002, 24, 24);
    eventually("rescans found the changes", || {
        target.id_of(&photos.join("sub.png")).is_some()
            && target.id_of(&photos.join("1.png")).is_none()
            && target.hash_of(&photos.join("2.png")) == Some(hash(&photos.join("2.png")))
            && target.c().len() == 3
    });
    let s = w.stats();
    assert!(s.scans >= 2 && s.last_scan_unix_s.is_some(), "{s:?}");
    w.stop();
}

#[test]
fn a_missing_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let target = Direct::new(dir.path());
    let e = FolderWatcher::start(&[dir.path().join("nope")], options(), target).unwrap_err();
    assert_eq!(e.kind(), imgsim_common::ErrorKind::Invalid);
    assert!(e.to_string().contains("no such folder"), "{e}");
}
