//! Sealing and compaction off the write path: writes made while a graph is
//! being built are neither lost nor resurrected by the switch, the
//! maintainer thread keeps a deferred collection maintained, and both
//! survive a reopen.

use std::collections::BTreeSet;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use imgsim_index::{
    Collection, CollectionSpec, HnswParams, ItemMeta, Maintainer, Metric, NewItem, OpenOptions,
};

fn items(from: usize, n: usize) -> Vec<NewItem> {
    (from..from + n)
        .map(|i| NewItem {
            vector: (0..8)
                .map(|d| ((i * 31 + d * 17) % 97) as f32 + d as f32 * 0.5)
                .collect(),
            meta: ItemMeta::new(format!("item{i}"), "test"),
        })
        .collect()
}

fn deferred() -> OpenOptions {
    OpenOptions {
        deferred_maintenance: true,
        ..OpenOptions::default()
    }
}

fn create(dir: &std::path::Path, options: OpenOptions) -> Collection {
    let spec = CollectionSpec {
        dim: 8,
        metric: Metric::L2,
        params: HnswParams::default(),
    };
    Collection::create(dir, spec, options).unwrap()
}

/// Live ids, and a check that every one is found by its own vector and no
/// other id is ever answered.
fn live_and_searchable(c: &Collection) -> BTreeSet<u64> {
    let ids: BTreeSet<u64> = c.ids().into_iter().collect();
    let report = c.verify(usize::MAX).unwrap();
    assert!(report.is_consistent(), "{report:?}");
    for &id in &ids {
        let v = c.vector(id).unwrap();
        let hits = c.search_exact(&v, 3, None).unwrap();
        assert!(
            hits.iter().all(|h| ids.contains(&h.id)),
            "a deleted id answered"
        );
    }
    ids
}

#[test]
fn writes_during_a_seal_and_a_compaction_are_reconciled_by_the_switch() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    let c = Arc::new(create(&p, deferred()));
    let first = c.insert(items(0, 300)).unwrap();

    // A seal whose build sees 60 inserts and 10 deletes of rows it is
    // sealing (the writer lock is free during the build).
    let during = Once::new();
    let added = std::sync::Mutex::new(Vec::new());
    c.seal(&|_, _, _| {
        during.call_once(|| {
            added
                .lock()
                .unwrap()
                .extend(c.insert(items(1000, 60)).unwrap());
            assert_eq!(c.delete(&first[..10]).unwrap(), 10);
        })
    })
    .unwrap();
    assert!(during.is_completed(), "the build reported no progress");
    let added = added.into_inner().unwrap();
    let stats = c.stats();
    assert_eq!(stats.segments, 1);
    assert_eq!(stats.sealed_rows, 300);
    assert_eq!(
        stats.appendable_rows, 60,
        "inserts during the build stay appendable"
    );
    assert_eq!(
        stats.tombstones, 10,
        "deletes during the build become tombstones"
    );
    let mut expect: BTreeSet<u64> = first[10..].iter().chain(&added).copied().collect();
    assert_eq!(live_and_searchable(&c), expect);

    // A compaction whose build sees deletes of sealed and appendable rows
    // and new inserts.
    let during = Once::new();
    let added2 = std::sync::Mutex::new(Vec::new());
    c.compact(&|_, _, _| {
        during.call_once(|| {
            assert_eq!(c.delete(&first[10..15]).unwrap(), 5);
            assert_eq!(c.delete(&added[..5]).unwrap(), 5);
            added2
                .lock()
                .unwrap()
                .extend(c.insert(items(2000, 20)).unwrap());
        })
    })
    .unwrap();
    let added2 = added2.into_inner().unwrap();
    let stats = c.stats();
    assert_eq!(stats.segments, 1);
    assert_eq!(stats.sealed_rows, 290 + 60, "the snapshot's live rows");
    assert_eq!(stats.appendable_rows, 20);
    assert_eq!(
        stats.tombstones, 10,
        "the old tombstones dropped, the new ones kept"
    );
    for id in first[10..15].iter().chain(&added[..5]) {
        expect.remove(id);
    }
    expect.extend(&added2);
    assert_eq!(live_and_searchable(&c), expect);

    // Reopened: the same items, and a compaction clears the tombstones.
    drop(c);
    let c = Collection::open(&p, deferred(), &|_, _, _| {}).unwrap();
    assert_eq!(live_and_searchable(&c), expect);
    c.compact(&|_, _, _| {}).unwrap();
    assert_eq!(c.stats().tombstones, 0);
    assert_eq!(c.stats().appendable_rows, 0);
    assert_eq!(live_and_searchable(&c), expect);
}

#[test]
fn deferred_writes_leave_maintenance_to_the_maintainer_thread() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    let options = OpenOptions {
        seal_threshold: 100,
        max_segments: 2,
        ..deferred()
    };
    let c = Arc::new(create(&p, options.clone()));
    // Deferred: past the threshold, the write returns without sealing.
    c.insert(items(0, 150)).unwrap();
    assert!(c.maintenance_due());
    assert_eq!(c.stats().segments, 0);

    let m = Maintainer::start(c.clone(), 1).unwrap();
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let until = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < until, "the maintainer never {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait("sealed", &|| c.stats().appendable_rows == 0);
    // Three more seals: past max_segments, a merge.
    for round in 0..3 {
        c.insert(items(1000 + round * 100, 100)).unwrap();
        wait("sealed again", &|| c.stats().appendable_rows == 0);
    }
    wait("merged", &|| {
        !c.maintenance_due() && c.stats().segments <= 2
    });
    let status = m.status();
    assert!(status.runs >= 4, "{status:?}");
    assert_eq!(status.failures, 0, "{status:?}");
    assert_eq!(c.len(), 450);
    drop(m);
    live_and_searchable(&c);
    drop(c);
    let c = Collection::open(&p, options, &|_, _, _| {}).unwrap();
    assert_eq!(c.len(), 450);
}

#[test]
fn without_deferral_the_writing_call_still_seals() {
    let dir = tempfile::tempdir().unwrap();
    let c = create(
        &dir.path().join("c"),
        OpenOptions {
            seal_threshold: 50,
            ..OpenOptions::default()
        },
    );
    c.insert(items(0, 60)).unwrap();
    assert_eq!(c.stats().segments, 1);
    assert_eq!(c.stats().appendable_rows, 0);
}
