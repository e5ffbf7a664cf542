//! Fault injection without root: every storage operation of a write (file
//! writes, renames, removals, folder creations and fsyncs, sled's flush)
//! is failed in turn through `imgsim_common::FaultyFs`, and the collection
//! must report the failure, keep every acknowledged write, apply the failed
//! call all-or-nothing and reopen consistent with no stray files.
//!
//! Each scenario first runs its call once with a counting double to learn
//! the call's storage operations, then, for every operation n, on a freshly
//! prepared collection: fails operation n (EIO; also ENOSPC for file
//! writes; once, or sticky: every later operation too), checks the call's
//! answer and the handle, drops it and reopens with the real storage.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use imgsim_common::{FaultyFs, Op};
use imgsim_index::{
    Collection, CollectionSpec, HnswParams, IndexError, ItemMeta, Metric, NewItem, OpenOptions,
};

const DIM: usize = 8;
const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// Seeded vectors (xorshift).
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n * DIM)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        })
        .collect()
}

fn items(n: usize, seed: u64) -> Vec<NewItem> {
    data(n, seed)
        .chunks_exact(DIM)
        .enumerate()
        .map(|(i, v)| NewItem {
            vector: v.to_vec(),
            meta: ItemMeta::new(format!("{seed}-{i}"), "faults"),
        })
        .collect()
}

fn bulk(c: &Collection, n: usize, seed: u64) -> imgsim_index::Result<()> {
    c.bulk_insert(
        data(n, seed),
        &|i| ItemMeta::new(format!("bulk-{seed}-{i}"), "faults"),
        &|_, _, _| {},
    )
    .map(drop)
}

fn spec() -> CollectionSpec {
    CollectionSpec {
        dim: DIM,
        metric: Metric::L2,
        params: HnswParams::default(),
    }
}

/// What a collection holds, as far as these tests judge it.
#[derive(Debug, Clone, PartialEq)]
struct View {
    /// Every live id and its stored vector.
    items: BTreeMap<u64, Vec<f32>>,
    next_id: u64,
    /// The sealed segments the manifest lists.
    segments: Vec<u64>,
}

impl View {
    fn of(c: &Collection) -> View {
        let m = c.manifest();
        View {
            items: c
                .ids()
                .into_iter()
                .map(|id| (id, c.vector(id).unwrap()))
                .collect(),
            next_id: m.next_id,
            segments: m.segments.iter().map(|s| s.id).collect(),
        }
    }
}

/// Asserts that `segments/` holds exactly the files the manifest lists:
/// no temporary, no unlisted segment file.
fn assert_only_listed_files(c: &Collection, p: &Path, ctx: &str) {
    let mut want: Vec<String> = c
        .manifest()
        .segments
        .iter()
        .map(|s| format!("{:016x}.seg", s.id))
        .collect();
    want.sort();
    let mut have: Vec<String> = std::fs::read_dir(p.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    have.sort();
    assert_eq!(have, want, "{ctx}: files in segments/");
}

fn reopen(p: &Path, options: &OpenOptions, ctx: &str) -> Collection {
    Collection::open(p, options.clone(), &|_, _, _| {})
        .unwrap_or_else(|e| panic!("{ctx}: reopening failed: {e}"))
}

/// Checks after every reopen: consistent, only listed files, writable.
fn assert_healthy(c: &Collection, p: &Path, ctx: &str) {
    let report = c.verify(usize::MAX).unwrap();
    assert!(report.is_consistent(), "{ctx}: {report:?}");
    assert_only_listed_files(c, p, ctx);
    assert!(
        !p.join("sled.creating").exists(),
        "{ctx}: a staging database is left"
    );
    let ids = c.insert(items(1, 999)).unwrap();
    assert!(
        c.contains(ids[0]),
        "{ctx}: the reopened collection takes writes"
    );
}

/// The fault modes for an operation: EIO once and sticky; for file writes
/// also ENOSPC once and sticky.
fn modes(kind: Op) -> Vec<(i32, bool)> {
    let mut m = vec![(EIO, false), (EIO, true)];
    if kind == Op::Write {
        m.extend([(ENOSPC, false), (ENOSPC, true)]);
    }
    m
}

/// Which operation of a call fails, and how.
struct Fault {
    /// Its index among the call's storage operations.
    n: usize,
    /// Its kind (as the counting run saw it).
    kind: Op,
    errno: i32,
    /// Every later operation fails too.
    sticky: bool,
    /// It is a step of the call's own commit (at or before its first flush),
    /// not of the maintenance or garbage collection after it.
    own: bool,
}

/// A write call on a prepared collection.
struct Scenario {
    name: &'static str,
    options: OpenOptions,
    prepare: fn(&Collection),
    call: fn(&Collection) -> imgsim_index::Result<()>,
}

impl Scenario {
    /// A new collection at `p`, prepared with the real storage, opened
    /// afresh through `fs`.
    fn prepared(&self, p: &Path, fs: &Arc<FaultyFs>) -> Collection {
        {
            let c = Collection::create(p, spec(), self.options.clone()).unwrap();
            (self.prepare)(&c);
        }
        Collection::open_with(p, self.options.clone(), fs.clone(), &|_, _, _| {}).unwrap()
    }

    /// The counting run, then every fault; returns the number of storage
    /// operations the call performs.
    fn run(&self) -> usize {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c");
        let fs = Arc::new(FaultyFs::new());
        let c = self.prepared(&p, &fs);
        let nothing = View::of(&c);
        let base = fs.ops().len();
        (self.call)(&c).unwrap();
        let kinds: Vec<Op> = fs.ops()[base..].iter().map(|(op, _)| *op).collect();
        let full = View::of(&c);
        drop(c);
        assert_ne!(nothing, full, "{}: the call changes nothing", self.name);
        let c = reopen(&p, &self.options, self.name);
        assert_eq!(View::of(&c), full, "{}: the call did not last", self.name);
        drop(c);
        // The call's own commit is its first flush; what follows is
        // maintenance (sealing, merging) or garbage collection, whose
        // failures must not fail the committed call.
        let commit = kinds
            .iter()
            .position(|&op| op == Op::Barrier)
            .unwrap_or_else(|| panic!("{}: no flush in {kinds:?}", self.name));
        for (n, &kind) in kinds.iter().enumerate() {
            for (errno, sticky) in modes(kind) {
                let ctx = format!(
                    "{}: fault at operation {n} of {kinds:?} (errno {errno}, sticky {sticky})",
                    self.name
                );
                let fault = Fault {
                    n,
                    kind,
                    errno,
                    sticky,
                    own: n <= commit,
                };
                self.fault(&fault, &nothing, &full, &ctx);
            }
        }
        kinds.len()
    }

    /// One run with `fault` injected; `nothing` and `full` are the views
    /// before and after the call of the counting run.
    fn fault(&self, fault: &Fault, nothing: &View, full: &View, ctx: &str) {
        let &Fault {
            n,
            kind,
            errno,
            sticky,
            own,
        } = fault;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c");
        let fs = Arc::new(FaultyFs::new());
        let c = self.prepared(&p, &fs);
        let base = fs.ops().len();
        fs.fail(None, n as u64, errno, sticky);
        let res = (self.call)(&c);
        assert!(fs.tripped(), "{ctx}: the fault was not reached");
        assert_eq!(
            fs.ops()[base + n].0,
            kind,
            "{ctx}: the call's operations differ from the counting run"
        );
        match &res {
            Err(e) => {
                assert!(
                    own,
                    "{ctx}: a failure after the commit failed the call: {e}"
                );
                assert!(!e.is_user_error(), "{ctx}: {e} blames the user");
                if kind == Op::Barrier {
                    assert!(matches!(e, IndexError::NeedsReopen(_)), "{ctx}: {e}");
                } else if errno == ENOSPC {
                    assert!(e.is_storage_full(), "{ctx}: {e} is not 'storage full'");
                }
            }
            Ok(()) => assert!(!own, "{ctx}: the call succeeded though its step failed"),
        }
        // The handle: refuses writes after a failed flush (reads go on);
        // otherwise, if the storage recovered, it takes writes and its view
        // is what is on disk.
        let mut handle_view = None;
        if kind == Op::Barrier {
            let q = data(1, 7);
            let e = c.insert(items(1, 8)).unwrap_err();
            assert!(matches!(e, IndexError::NeedsReopen(_)), "{ctx}: {e}");
            let e = c.set_property("probe", "x").unwrap_err();
            assert!(matches!(e, IndexError::NeedsReopen(_)), "{ctx}: {e}");
            let hits = c.search(&q, 3, None, None).unwrap();
            assert_eq!(hits.len(), 3.min(c.len()), "{ctx}");
            for id in c.ids() {
                c.vector(id).unwrap();
            }
        } else if !sticky {
            c.set_property("probe", "after the fault").unwrap();
            handle_view = Some(View::of(&c));
        }
        drop(c);

        let c = reopen(&p, &self.options, ctx);
        let view = View::of(&c);
        match &res {
            Err(_) if kind != Op::Barrier => {
                assert_eq!(&view, nothing, "{ctx}: a failed call left a trace")
            }
            Err(_) => assert!(
                (view.items == nothing.items && view.next_id == nothing.next_id)
                    || (view.items == full.items && view.next_id == full.next_id),
                "{ctx}: neither all nor nothing: {view:?}"
            ),
            Ok(()) => {
                assert_eq!(view.items, full.items, "{ctx}: acknowledged items");
                assert_eq!(view.next_id, full.next_id, "{ctx}");
            }
        }
        if let Some(h) = handle_view {
            assert_eq!(h, view, "{ctx}: the handle's view is not what is on disk");
            assert_eq!(
                c.manifest().properties.get("probe").map(String::as_str),
                Some("after the fault"),
                "{ctx}"
            );
        }
        assert_healthy(&c, &p, ctx);
    }
}

#[test]
fn an_insert_that_seals_a_segment() {
    let ops = Scenario {
        name: "insert that seals",
        options: OpenOptions {
            seal_threshold: 16,
            ..OpenOptions::default()
        },
        prepare: |c| {
            bulk(c, 40, 1).unwrap();
            c.insert(items(12, 2)).unwrap();
        },
        call: |c| c.insert(items(4, 3)).map(drop),
    }
    .run();
    // The insert's flush; the segment's write, rename, folder fsync; the seal's flush.
    assert_eq!(ops, 5);
}

#[test]
fn a_delete_that_triggers_a_compaction() {
    let ops = Scenario {
        name: "delete",
        options: OpenOptions::default(),
        prepare: |c| {
            bulk(c, 40, 1).unwrap();
            c.insert(items(6, 2)).unwrap();
        },
        // 10 of 40 sealed items (tombstones past the 20% compaction share)
        // and 2 appendable ones.
        call: |c| {
            let ids: Vec<u64> = (0..10).chain([40, 41]).collect();
            assert_eq!(c.delete(&ids)?, 12);
            Ok(())
        },
    }
    .run();
    // The delete's flush; the compaction's write, rename, fsync, flush; the old file's removal.
    assert_eq!(ops, 6);
}

#[test]
fn a_compaction() {
    let ops = Scenario {
        name: "compaction",
        options: OpenOptions {
            compact_tombstone_share: 1.0,
            ..OpenOptions::default()
        },
        prepare: |c| {
            bulk(c, 30, 1).unwrap();
            bulk(c, 30, 2).unwrap();
            c.insert(items(5, 3)).unwrap();
            c.delete(&[1, 2, 35]).unwrap();
        },
        call: |c| c.compact(&|_, _, _| {}),
    }
    .run();
    assert_eq!(ops, 6, "write, rename, fsync, flush, two removals");
}

#[test]
fn a_segment_merge() {
    let ops = Scenario {
        name: "merge",
        options: OpenOptions {
            max_segments: 2,
            ..OpenOptions::default()
        },
        prepare: |c| {
            bulk(c, 25, 1).unwrap();
            bulk(c, 25, 2).unwrap();
            c.insert(items(3, 3)).unwrap();
        },
        // A third segment: past max_segments, the three are merged.
        call: |c| bulk(c, 20, 4),
    }
    .run();
    assert_eq!(
        ops, 11,
        "the new segment (4), the merged one (4), three removals"
    );
}

#[test]
fn a_creation() {
    let options = OpenOptions::default();
    let counting = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultyFs::new());
    let c = Collection::create_with(
        &counting.path().join("c"),
        spec(),
        options.clone(),
        fs.clone(),
    )
    .unwrap();
    drop(c);
    let kinds: Vec<Op> = fs.ops().iter().map(|(op, _)| *op).collect();
    assert_eq!(
        kinds,
        [
            Op::CreateDir,
            Op::SyncDir,
            Op::SyncDir,
            Op::Barrier,
            Op::Rename,
            Op::SyncDir
        ]
    );
    for (n, &kind) in kinds.iter().enumerate() {
        for (errno, sticky) in modes(kind) {
            let ctx = format!(
                "creation: fault at operation {n} ({kind:?}, errno {errno}, sticky {sticky})"
            );
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("c");
            let fs = Arc::new(FaultyFs::new());
            fs.fail(None, n as u64, errno, sticky);
            let e = Collection::create_with(&p, spec(), options.clone(), fs.clone()).unwrap_err();
            assert!(fs.tripped(), "{ctx}");
            assert!(!e.is_user_error(), "{ctx}: {e} blames the user");
            // All or nothing: a collection that opens empty, or none, and
            // then a creation with the real storage succeeds.
            let c = if Collection::exists(&p) {
                let c = reopen(&p, &options, &ctx);
                assert!(c.is_empty(), "{ctx}");
                c
            } else {
                Collection::create(&p, spec(), options.clone())
                    .unwrap_or_else(|e| panic!("{ctx}: creating again: {e}"))
            };
            assert_eq!(c.spec(), spec(), "{ctx}");
            assert_healthy(&c, &p, &ctx);
        }
    }
}
