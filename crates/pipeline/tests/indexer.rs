//! The indexer with a small test embedder: files that vanish, vectors the
//! model gets wrong, cancellation, duplicates within one run.

mod common;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use common::{collection, solid, Means};
use imgsim_pipeline::{index_files, walk, IndexOptions};

#[test]
fn vanished_files_and_bad_vectors_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("p");
    std::fs::create_dir(&photos).unwrap();
    solid(&photos.join("blue.png"), [0, 0, 255]);
    solid(&photos.join("green.png"), [0, 255, 0]);
    solid(&photos.join("red.png"), [255, 0, 0]);
    std::fs::copy(photos.join("blue.png"), photos.join("blue-copy.png")).unwrap();
    let mut w = walk(std::slice::from_ref(&photos)).unwrap();
    // Found by the walk, gone before it is read.
    let gone = photos.join("gone.png");
    solid(&gone, [9, 9, 9]);
    let mut w2 = walk(std::slice::from_ref(&gone)).unwrap();
    std::fs::remove_file(&gone).unwrap();
    w.files.append(&mut w2.files);
    let c = collection(dir.path());
    let s = index_files(
        &c,
        &Means::new(),
        w,
        &[photos],
        &IndexOptions {
            batch_size: 8,
            ..IndexOptions::default()
        },
        &AtomicBool::new(false),
        &|_| {},
    )
    .unwrap();
    assert_eq!(s.indexed, 2, "{s:?}");
    assert_eq!(s.duplicates, 1, "{s:?}");
    assert_eq!(s.failed, 2, "{s:?}");
    let reason = |name: &str| {
        s.errors
            .iter()
            .find(|e| e.path.ends_with(name))
            .map(|e| e.error.clone())
            .unwrap_or_default()
    };
    assert!(reason("gone.png").contains("vanished"), "{s:?}");
    assert!(reason("red.png").contains("non-finite"), "{s:?}");
    assert_eq!(c.len(), 3);
}

#[test]
fn a_cancelled_run_commits_nothing_more_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("p");
    std::fs::create_dir(&photos).unwrap();
    for i in 0..5u8 {
        solid(&photos.join(format!("{i}.png")), [i * 40, 10, 10]);
    }
    let c = collection(dir.path());
    let roots: Vec<PathBuf> = vec![photos.clone()];
    let s = index_files(
        &c,
        &Means::new(),
        walk(&roots).unwrap(),
        &roots,
        &IndexOptions::default(),
        &AtomicBool::new(true),
        &|_| {},
    )
    .unwrap();
    assert!(s.interrupted);
    assert_eq!(s.indexed, 0);
    assert_eq!(c.len(), 0);
    // The next run does it all.
    let s = index_files(
        &c,
        &Means::new(),
        walk(&roots).unwrap(),
        &roots,
        &IndexOptions::default(),
        &AtomicBool::new(false),
        &|_| {},
    )
    .unwrap();
    assert!(!s.interrupted);
    assert_eq!(s.indexed, 5);
}

/// Regression: the indexer read `limit + 1 - 64` more bytes after the
/// header, which underflowed when `max_file_bytes` was under 63 (a panic
/// in debug builds, no limit at all in release). Every file over the limit
/// now fails alone with the limit named.
#[test]
fn regression_a_tiny_file_limit_fails_files_instead_of_underflowing() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("p");
    std::fs::create_dir(&photos).unwrap();
    solid(&photos.join("a.png"), [10, 20, 30]);
    let c = collection(dir.path());
    let roots: Vec<PathBuf> = vec![photos.clone()];
    for limit in [10, 63, 64, 65] {
        let mut opts = IndexOptions::default();
        opts.limits.max_file_bytes = limit;
        let s = index_files(
            &c,
            &Means::new(),
            walk(&roots).unwrap(),
            &roots,
            &opts,
            &AtomicBool::new(false),
            &|_| {},
        )
        .unwrap();
        assert_eq!((s.indexed, s.failed), (0, 1), "limit {limit}");
        assert!(
            s.errors[0].error.contains("limits.max_file_bytes"),
            "{}",
            s.errors[0].error
        );
    }
}

/// Thumbnails written at index time go through the storage seam: a write
/// that fails (a full disk, a kill) leaves that image without a thumbnail
/// and a torn temporary, never a torn thumbnail, and costs no item; the
/// sweep removes the temporary and the thumbnail is then made on first
/// request.
#[test]
fn a_failed_thumbnail_write_loses_no_item_and_leaves_nothing_torn() {
    use imgsim_common::{FaultyFs, Op};
    use imgsim_pipeline::thumbnails::Thumbnails;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("p");
    std::fs::create_dir(&photos).unwrap();
    for i in 0..3u8 {
        solid(&photos.join(format!("{i}.png")), [10, i * 60, 200]);
    }
    let c = collection(dir.path());
    let fs = Arc::new(FaultyFs::new());
    // The second thumbnail write fails half-way.
    fs.fail(Some(Op::Write), 1, 28, false);
    let roots: Vec<PathBuf> = vec![photos.clone()];
    let s = index_files(
        &c,
        &Means::new(),
        walk(&roots).unwrap(),
        &roots,
        &IndexOptions {
            thumbnails: Some(fs.clone()),
            ..IndexOptions::default()
        },
        &AtomicBool::new(false),
        &|_| {},
    )
    .unwrap();
    assert!(fs.tripped());
    assert_eq!((s.indexed, s.failed), (3, 0), "{s:?}");
    let thumbs_dir = dir.path().join("c/thumbs");
    let names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&thumbs_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let left = names();
    assert_eq!(
        left.iter().filter(|n| n.ends_with(".jpg")).count(),
        2,
        "{left:?}"
    );
    assert_eq!(
        left.iter().filter(|n| n.ends_with(".tmp")).count(),
        1,
        "{left:?}"
    );
    for n in left.iter().filter(|n| n.ends_with(".jpg")) {
        image::open(thumbs_dir.join(n)).expect("a whole JPEG");
    }
    let thumbs = Thumbnails::new(c.path(), imgsim_common::local());
    assert_eq!(thumbs.sweep(&c).unwrap(), 1, "the torn temporary");
    for id in c.ids() {
        thumbs
            .get(&c, id, &imgsim_embed::ImageLimits::default())
            .unwrap();
    }
    assert_eq!(names().len(), 3);
}
