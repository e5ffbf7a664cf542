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
