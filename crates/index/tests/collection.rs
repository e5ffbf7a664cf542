//! Collection behaviour: persistence, deletion, compaction, bad input, crash leftovers.

use std::path::Path;

use imgsim_index::{
    recall_at_k, Collection, CollectionSpec, HnswParams, IndexError, ItemMeta, Metric, NewItem,
    OpenOptions, Quantization, FORMAT_VERSION,
};

/// Seeded vectors with low intrinsic dimension (like real embeddings).
fn data(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    };
    let basis: Vec<f32> = {
        let mut t = 99u64;
        (0..6 * dim)
            .map(|_| {
                t ^= t << 13;
                t ^= t >> 7;
                t ^= t << 17;
                (t >> 11) as f32 / (1u64 << 53) as f32 - 0.5
            })
            .collect()
    };
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let z: Vec<f32> = (0..6).map(|_| next() * 4.0).collect();
        out.extend(
            (0..dim)
                .map(|d| (0..6).map(|j| z[j] * basis[j * dim + d]).sum::<f32>() + next() * 0.01),
        );
    }
    out
}

/// The collection's sled database opened directly, to damage it. Retries
/// while the lock of a just-dropped handle is being released.
fn raw_db(p: &Path) -> sled::Db {
    for _ in 0..100 {
        if let Ok(db) = sled::open(p.join("sled")) {
            return db;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("sled database stays locked");
}

fn spec(dim: usize, metric: Metric) -> CollectionSpec {
    CollectionSpec {
        dim,
        metric,
        params: HnswParams::default(),
    }
}

fn items(v: &[f32], dim: usize) -> Vec<NewItem> {
    v.chunks_exact(dim)
        .enumerate()
        .map(|(i, x)| NewItem {
            vector: x.to_vec(),
            meta: ItemMeta::new(format!("item-{i}"), "test"),
        })
        .collect()
}

fn open(p: &Path, o: OpenOptions) -> imgsim_index::Result<Collection> {
    Collection::open(p, o, &|_, _, _| {})
}

fn mean_recall(c: &Collection, queries: &[f32], dim: usize, k: usize, ef: usize) -> f64 {
    let mut total = 0.0;
    let n = queries.len() / dim;
    for q in queries.chunks_exact(dim) {
        let a = c.search(q, k, Some(ef), None).unwrap();
        let e = c.search_exact(q, k, None).unwrap();
        total += recall_at_k(&a, &e, k);
    }
    total / n as f64
}

#[test]
fn persistence_round_trip_reopens_without_rebuild_and_accepts_inserts() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    let dim = 24;
    let base = data(3000, dim, 1);
    let queries = data(50, dim, 2);
    let before;
    {
        let c = Collection::create(&p, spec(dim, Metric::L2), OpenOptions::default()).unwrap();
        let ids = c
            .bulk_insert(
                base,
                &|i| ItemMeta::new(i.to_string(), "bulk"),
                &|_, _, _| {},
            )
            .unwrap();
        assert_eq!(ids.len(), 3000);
        c.insert(items(&data(10, dim, 3), dim)).unwrap();
        assert_eq!(c.len(), 3010);
        before = queries
            .chunks_exact(dim)
            .map(|q| c.search(q, 10, Some(64), None).unwrap())
            .collect::<Vec<_>>();
        assert!(mean_recall(&c, &queries, dim, 10, 64) >= 0.95);
    }
    let c = open(&p, OpenOptions::default()).unwrap();
    let st = c.stats();
    assert_eq!((st.count, st.segments, st.appendable_rows), (3010, 1, 10));
    let after = queries
        .chunks_exact(dim)
        .map(|q| c.search(q, 10, Some(64), None).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(
        before, after,
        "a reopened collection answers exactly as before"
    );
    assert_eq!(c.item(5).unwrap().external_id, "5");
    assert_eq!(c.item(3001).unwrap().external_id, "item-1");
    // Inserting after a reopen works and is itself durable.
    let new = c.insert(items(&data(5, dim, 4), dim)).unwrap();
    assert_eq!(new, vec![3010, 3011, 3012, 3013, 3014]);
    let v = c.vector(3012).unwrap();
    drop(c);
    let c = open(&p, OpenOptions::default()).unwrap();
    assert_eq!(c.len(), 3015);
    let hit = c.search(&v, 1, None, None).unwrap();
    assert_eq!(hit[0].id, 3012);
}

#[test]
fn quantized_collections_map_their_vectors_and_answer_alike_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 32;
    let base = data(3000, dim, 11);
    let queries = data(40, dim, 12);
    let f32_memory = {
        let c = Collection::create(
            &dir.path().join("f32"),
            spec(dim, Metric::L2),
            OpenOptions::default(),
        )
        .unwrap();
        c.bulk_insert(
            base.clone(),
            &|i| ItemMeta::new(i.to_string(), "bulk"),
            &|_, _, _| {},
        )
        .unwrap();
        c.insert(items(&data(7, dim, 13), dim)).unwrap();
        assert_eq!(c.stats().mapped_bytes, 0);
        c.stats().memory_bytes
    };
    for quantization in [Quantization::Sq8, Quantization::Binary] {
        let p = dir.path().join(quantization.as_str());
        let mut s = spec(dim, Metric::L2);
        s.params.quantization = quantization;
        let ef = 128;
        let before;
        let heap_before;
        {
            let c = Collection::create(&p, s.clone(), OpenOptions::default()).unwrap();
            c.bulk_insert(
                base.clone(),
                &|i| ItemMeta::new(i.to_string(), "bulk"),
                &|_, _, _| {},
            )
            .unwrap();
            c.insert(items(&data(7, dim, 13), dim)).unwrap();
            let st = c.stats();
            assert_eq!(st.params.quantization, quantization);
            assert_eq!(
                st.mapped_bytes,
                3000 * dim as u64 * 4,
                "sealed rows are mapped"
            );
            heap_before = st.memory_bytes;
            before = queries
                .chunks_exact(dim)
                .map(|q| c.search(q, 10, Some(ef), None).unwrap())
                .collect::<Vec<_>>();
            let recall = mean_recall(&c, &queries, dim, 10, ef);
            assert!(recall >= 0.9, "{quantization}: recall {recall}");
        }
        let c = open(&p, OpenOptions::default()).unwrap();
        let st = c.stats();
        assert_eq!(
            st.params.quantization, quantization,
            "recorded in the manifest"
        );
        assert_eq!(st.memory_bytes, heap_before);
        // The f32 rows left the heap; their codes came in.
        let saved = 3000 * (dim * 4 - quantization.code_bytes(dim));
        assert!(
            st.memory_bytes + saved <= f32_memory + 1024,
            "{quantization}: {} bytes vs {f32_memory} unquantized",
            st.memory_bytes
        );
        assert!(st.memory_bytes_per_vector > 0.0);
        let after = queries
            .chunks_exact(dim)
            .map(|q| c.search(q, 10, Some(ef), None).unwrap())
            .collect::<Vec<_>>();
        assert_eq!(
            before, after,
            "{quantization}: reopened answers are the same"
        );
        // Exact search and stored vectors read the mapped file.
        let v = c.vector(17).unwrap();
        assert_eq!(v, base[17 * dim..18 * dim].to_vec());
        assert_eq!(c.search_exact(&v, 1, None).unwrap()[0].id, 17);
        assert_eq!(c.search(&v, 1, Some(ef), None).unwrap()[0].id, 17);
        // Deleting and compacting rebuilds a quantized segment.
        assert_eq!(c.delete(&(0..1000).collect::<Vec<_>>()).unwrap(), 1000);
        c.compact(&|_, _, _| {}).unwrap();
        assert_eq!(c.len(), 2007);
        let hit = c
            .search(&c.vector(2500).unwrap(), 1, Some(ef), None)
            .unwrap();
        assert_eq!(hit[0].id, 2500);
        assert!(c.stats().mapped_bytes > 0);
    }
}

#[test]
fn appendable_vectors_are_sealed_into_segments_and_merged() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    let dim = 16;
    let opts = OpenOptions {
        seal_threshold: 500,
        max_segments: 3,
        ..OpenOptions::default()
    };
    let c = Collection::create(&p, spec(dim, Metric::Cosine), opts.clone()).unwrap();
    let all = data(2200, dim, 7);
    for chunk in all.chunks(dim * 100) {
        c.insert(items(chunk, dim)).unwrap();
    }
    let st = c.stats();
    // 2200 = 4 seals of 500 (the 4th merges past max_segments) + 200 appendable.
    assert_eq!(st.count, 2200);
    assert!(st.segments <= 3, "{st:?}");
    assert_eq!(st.appendable_rows, 200);
    assert!(mean_recall(&c, &data(40, dim, 8), dim, 10, 64) >= 0.95);
    drop(c);
    let c = open(&p, opts).unwrap();
    assert_eq!(c.len(), 2200);
    assert!(mean_recall(&c, &data(40, dim, 8), dim, 10, 64) >= 0.95);
}

#[test]
fn delete_hides_items_and_compaction_rebuilds_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    let dim = 16;
    let opts = OpenOptions {
        compact_tombstone_share: 0.3,
        ..OpenOptions::default()
    };
    let c = Collection::create(&p, spec(dim, Metric::L2), opts.clone()).unwrap();
    c.bulk_insert(
        data(1000, dim, 11),
        &|i| ItemMeta::new(i.to_string(), "b"),
        &|_, _, _| {},
    )
    .unwrap();
    let fresh = c.insert(items(&data(3, dim, 12), dim)).unwrap();
    // Delete a sealed item and a fresh one; unknown ids are ignored.
    let target = c.vector(10).unwrap();
    assert_eq!(c.delete(&[10, fresh[0], 999_999]).unwrap(), 2);
    assert_eq!(c.delete(&[10]).unwrap(), 0, "deleting twice is a no-op");
    assert!(matches!(c.item(10), Err(IndexError::NotFound(10))));
    assert!(matches!(c.vector(fresh[0]), Err(IndexError::NotFound(_))));
    let hits = c.search(&target, 5, None, None).unwrap();
    assert!(hits.iter().all(|h| h.id != 10));
    assert_eq!(c.stats().tombstones, 1);
    assert_eq!(c.len(), 1001);
    drop(c);
    // Tombstones survive a reopen.
    let c = open(&p, opts.clone()).unwrap();
    assert_eq!(c.stats().tombstones, 1);
    assert!(c
        .search_exact(&target, 5, None)
        .unwrap()
        .iter()
        .all(|h| h.id != 10));
    // Passing the tombstone share triggers a compaction that drops them.
    let victims: Vec<u64> = (0..320).collect();
    c.delete(&victims).unwrap();
    let st = c.stats();
    assert_eq!(st.tombstones, 0, "{st:?}");
    assert_eq!(st.count, 1003 - 1 - 320);
    assert_eq!(st.sealed_rows, st.count);
    assert!(mean_recall(&c, &data(30, dim, 13), dim, 10, 64) >= 0.95);
    drop(c);
    let c = open(&p, opts).unwrap();
    assert_eq!(c.len(), 682);
    assert!(!c.contains(5) && c.contains(500));
}

#[test]
fn bad_input_is_a_typed_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    let c = Collection::create(&p, spec(4, Metric::Cosine), OpenOptions::default()).unwrap();
    // Empty collection: search works and returns nothing.
    assert!(c
        .search(&[1., 0., 0., 0.], 3, None, None)
        .unwrap()
        .is_empty());
    let ok = NewItem {
        vector: vec![1., 2., 3., 4.],
        meta: ItemMeta::default(),
    };
    let wrong = NewItem {
        vector: vec![1., 2., 3.],
        meta: ItemMeta::default(),
    };
    let nan = NewItem {
        vector: vec![1., f32::NAN, 3., 4.],
        meta: ItemMeta::default(),
    };
    let inf = NewItem {
        vector: vec![1., f32::INFINITY, 3., 4.],
        meta: ItemMeta::default(),
    };
    let zero = NewItem {
        vector: vec![0.; 4],
        meta: ItemMeta::default(),
    };
    assert!(matches!(
        c.insert(vec![ok.clone(), wrong]),
        Err(IndexError::WrongDimension {
            index: 1,
            expected: 4,
            got: 3
        })
    ));
    assert!(matches!(
        c.insert(vec![ok.clone(), nan]),
        Err(IndexError::NonFinite {
            index: 1,
            component: 1,
            ..
        })
    ));
    assert!(matches!(
        c.insert(vec![inf]),
        Err(IndexError::NonFinite { .. })
    ));
    assert!(matches!(
        c.insert(vec![zero]),
        Err(IndexError::ZeroVector { index: 0 })
    ));
    assert_eq!(c.len(), 0, "a refused batch writes nothing");
    assert!(matches!(
        c.bulk_insert(vec![1.0; 7], &|_| ItemMeta::default(), &|_, _, _| {}),
        Err(IndexError::WrongDimension { .. })
    ));
    c.insert(vec![ok]).unwrap();
    assert!(matches!(
        c.search(&[1., 0., 0.], 1, None, None),
        Err(IndexError::WrongDimension { .. })
    ));
    assert!(matches!(
        c.search(&[1., 0., 0., 0.], 0, None, None),
        Err(IndexError::ZeroK)
    ));
    assert!(matches!(
        c.search(&[f32::NAN, 0., 0., 0.], 1, None, None),
        Err(IndexError::NonFinite { .. })
    ));
    // k larger than the collection returns what there is.
    assert_eq!(
        c.search(&[1., 0., 0., 0.], 50, None, None).unwrap().len(),
        1
    );
    assert!(matches!(c.vector(77), Err(IndexError::NotFound(77))));
    drop(c);
    assert_eq!(open(&p, OpenOptions::default()).unwrap().len(), 1);
    // Creating over an existing collection is refused.
    assert!(matches!(
        Collection::create(&p, spec(4, Metric::Cosine), OpenOptions::default()),
        Err(IndexError::AlreadyExists { .. })
    ));
    // Opening where there is none.
    assert!(matches!(
        open(&dir.path().join("nothing"), OpenOptions::default()),
        Err(IndexError::NoCollection { .. })
    ));
    assert!(
        !dir.path().join("nothing").exists(),
        "open must not create a directory"
    );
    // Wrong settings on open_or_create.
    assert!(matches!(
        Collection::open_or_create(
            &p,
            spec(8, Metric::Cosine),
            OpenOptions::default(),
            &|_, _, _| {}
        ),
        Err(IndexError::SettingsMismatch(_))
    ));
    // Invalid parameters.
    let bad = CollectionSpec {
        dim: 4,
        metric: Metric::L2,
        params: HnswParams {
            m: 0,
            ..HnswParams::default()
        },
    };
    assert!(matches!(
        Collection::create(&dir.path().join("bad"), bad, OpenOptions::default()),
        Err(IndexError::InvalidParameter { .. })
    ));
}

#[test]
fn a_second_open_of_the_same_collection_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    let c = Collection::create(&p, spec(4, Metric::L2), OpenOptions::default()).unwrap();
    let err = open(&p, OpenOptions::default()).unwrap_err();
    assert!(matches!(err, IndexError::Locked { .. }), "{err}");
    drop(c);
    open(&p, OpenOptions::default()).unwrap();
}

/// Set in the child process of `a_second_process_is_refused`.
const CHILD_ENV: &str = "IMGSIM_TEST_OPEN_FROM_CHILD";

#[test]
fn a_second_process_is_refused() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        // Child: try to open the collection the parent holds open.
        let code = match open(Path::new(&path), OpenOptions::default()) {
            Err(IndexError::Locked { .. }) => 3,
            Ok(_) => 0,
            Err(e) => {
                eprintln!("unexpected: {e}");
                4
            }
        };
        std::process::exit(code);
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    let c = Collection::create(&p, spec(4, Metric::L2), OpenOptions::default()).unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_second_process_is_refused",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, &p)
        .status()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(3),
        "the second process must get IndexError::Locked"
    );
    drop(c);
}

#[test]
fn incompatible_format_version_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    drop(Collection::create(&p, spec(4, Metric::L2), OpenOptions::default()).unwrap());
    {
        let db = raw_db(&p);
        let mut m: serde_json::Value =
            serde_json::from_slice(&db.get("m").unwrap().unwrap()).unwrap();
        m["format_version"] = serde_json::json!(FORMAT_VERSION + 98);
        m["something_new"] = serde_json::json!(true);
        db.insert("m", serde_json::to_vec(&m).unwrap()).unwrap();
        db.flush().unwrap();
    }
    let err = open(&p, OpenOptions::default()).unwrap_err();
    assert!(
        matches!(err, IndexError::IncompatibleVersion { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("format version 99"));
}

#[test]
fn leftovers_of_an_interrupted_write_are_discarded_on_open() {
    // Simulates a crash after step 1 of the commit protocol (data written,
    // manifest not switched): the collection must reopen with exactly the
    // acknowledged items.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    let dim = 8;
    {
        let c = Collection::create(&p, spec(dim, Metric::L2), OpenOptions::default()).unwrap();
        c.bulk_insert(
            data(300, dim, 5),
            &|i| ItemMeta::new(i.to_string(), "b"),
            &|_, _, _| {},
        )
        .unwrap();
        c.insert(items(&data(2, dim, 6), dim)).unwrap();
    }
    {
        let db = raw_db(&p);
        let mut k = vec![b'v', b'/'];
        k.extend_from_slice(&302u64.to_be_bytes());
        db.insert(&k, vec![0u8; dim * 4]).unwrap();
        k[0] = b'i';
        db.insert(&k, b"{}".to_vec()).unwrap();
        db.flush().unwrap();
    }
    // A segment file the manifest never named (crash before the switch) and
    // temporary ones (crash while writing: the storage seam's name, and the
    // name older builds used).
    let segs = p.join("segments");
    std::fs::write(segs.join("0000000000000007.seg"), b"half a segment").unwrap();
    std::fs::write(segs.join("0000000000000008.seg.tmp"), b"partial").unwrap();
    let seam_tmp = imgsim_common::storage::temp_path(&segs.join("0000000000000009.seg"));
    std::fs::write(seam_tmp, b"partial").unwrap();
    let c = open(&p, OpenOptions::default()).unwrap();
    assert_eq!(c.len(), 302);
    assert!(!c.contains(302));
    let left: Vec<_> = std::fs::read_dir(&segs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left.len(),
        1,
        "only the listed segment file remains: {left:?}"
    );
    // The next insert reuses id 302 cleanly.
    assert_eq!(c.insert(items(&data(1, dim, 9), dim)).unwrap(), vec![302]);
    drop(c);
    let c = open(&p, OpenOptions::default()).unwrap();
    assert_eq!(c.len(), 303);
    assert_eq!(c.ids().last(), Some(&302));
}

#[test]
fn a_damaged_stored_graph_is_reported_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    {
        let c = Collection::create(&p, spec(8, Metric::L2), OpenOptions::default()).unwrap();
        c.bulk_insert(
            data(200, 8, 5),
            &|i| ItemMeta::new(i.to_string(), "b"),
            &|_, _, _| {},
        )
        .unwrap();
    }
    let seg = std::fs::read_dir(p.join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&seg).unwrap();
    // A flipped byte in the graph: the checksum catches it.
    let mut flipped = bytes.clone();
    let at = bytes.len() - 100;
    flipped[at] ^= 0x40;
    std::fs::write(&seg, &flipped).unwrap();
    let err = open(&p, OpenOptions::default()).unwrap_err();
    assert!(matches!(err, IndexError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
    // A truncated file.
    std::fs::write(&seg, &bytes[..bytes.len() / 2]).unwrap();
    let err = open(&p, OpenOptions::default()).unwrap_err();
    assert!(matches!(err, IndexError::Corrupt(_)), "{err}");
    // A missing file.
    std::fs::remove_file(&seg).unwrap();
    let err = open(&p, OpenOptions::default()).unwrap_err();
    assert!(matches!(err, IndexError::Corrupt(_)), "{err}");
}

#[test]
fn regression_failed_sealing_does_not_fail_the_committed_insert() {
    // Review finding: a seal that failed after the insert's commit turned a
    // durable write into an error (and a retry into duplicates).
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    let opts = OpenOptions {
        seal_threshold: 5,
        ..OpenOptions::default()
    };
    let c = Collection::create(&p, spec(8, Metric::L2), opts.clone()).unwrap();
    // Make every segment write fail: `segments` becomes a plain file.
    std::fs::remove_dir(p.join("segments")).unwrap();
    std::fs::write(p.join("segments"), b"in the way").unwrap();
    let ids = c.insert(items(&data(10, 8, 1), 8)).unwrap();
    assert_eq!(ids.len(), 10);
    assert_eq!(
        c.stats().appendable_rows,
        10,
        "sealing failed, the items stay appendable"
    );
    let more = c.insert(items(&data(2, 8, 2), 8)).unwrap();
    assert_eq!(more, vec![10, 11]);
    drop(c);
    std::fs::remove_file(p.join("segments")).unwrap();
    let c = open(&p, opts).unwrap();
    assert_eq!(c.len(), 12, "every acknowledged item is there, once");
    c.seal(&|_, _, _| {}).unwrap();
    assert_eq!(c.stats().segments, 1);
}

#[test]
fn regression_huge_k_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collection::create(
        &dir.path().join("c"),
        spec(4, Metric::L2),
        OpenOptions::default(),
    )
    .unwrap();
    c.bulk_insert(
        data(50, 4, 3),
        &|i| ItemMeta::new(i.to_string(), "b"),
        &|_, _, _| {},
    )
    .unwrap();
    c.insert(items(&data(3, 4, 4), 4)).unwrap();
    let q = [0.1, 0.2, 0.3, 0.4];
    assert_eq!(c.search(&q, usize::MAX, None, None).unwrap().len(), 53);
    assert_eq!(c.search_exact(&q, usize::MAX, None).unwrap().len(), 53);
    assert_eq!(c.search_exact_batch(&q, 1 << 40).unwrap()[0].len(), 53);
}

#[test]
fn regression_open_leaves_foreign_entries_in_segments_alone() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    drop(Collection::create(&p, spec(4, Metric::L2), OpenOptions::default()).unwrap());
    std::fs::create_dir(p.join("segments").join("notes")).unwrap();
    std::fs::write(p.join("segments").join("README.txt"), b"mine").unwrap();
    open(&p, OpenOptions::default()).unwrap();
    assert!(p.join("segments").join("README.txt").exists());
    assert!(p.join("segments").join("notes").is_dir());
}

#[test]
fn a_creation_killed_half_way_leaves_no_unopenable_collection() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    // What a creation killed before its manifest was durable leaves: a
    // staging database without a manifest.
    let staging = p.join("sled.creating");
    {
        let db = sled::open(&staging).unwrap();
        db.insert(b"junk", b"x".as_slice()).unwrap();
        db.flush().unwrap();
    }
    assert!(!Collection::exists(&p), "a half-made collection is not one");
    let c = Collection::create(&p, spec(8, Metric::L2), OpenOptions::default()).unwrap();
    assert!(!staging.exists());
    c.insert(items(&data(3, 8, 1), 8)).unwrap();
    drop(c);
    let c = open(&p, OpenOptions::default()).unwrap();
    assert_eq!(c.len(), 3);
    let report = c.verify(10).unwrap();
    assert!(report.is_consistent(), "{report:?}");
    assert_eq!(report.self_searched, 3);
}

#[test]
fn verify_finds_metadata_without_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    let c = Collection::create(&p, spec(8, Metric::L2), OpenOptions::default()).unwrap();
    c.insert(items(&data(20, 8, 2), 8)).unwrap();
    c.seal(&|_, _, _| {}).unwrap();
    c.insert(items(&data(5, 8, 3), 8)).unwrap();
    let r = c.verify(usize::MAX).unwrap();
    assert!(r.is_consistent(), "{r:?}");
    assert_eq!(
        (r.live, r.item_records, r.segments, r.self_searched),
        (25, 25, 1, 25)
    );
    drop(c);
    // An item record for a live id removed behind the collection's back.
    {
        let db = raw_db(&p);
        let mut k = vec![b'i', b'/'];
        k.extend_from_slice(&3u64.to_be_bytes());
        db.remove(k).unwrap();
        db.flush().unwrap();
    }
    let c = open(&p, OpenOptions::default()).unwrap();
    let r = c.verify(0).unwrap();
    assert!(!r.is_consistent());
    assert_eq!(r.missing_metadata, vec![3]);
}

#[test]
fn labels_filter_inside_the_search_and_follow_metadata_updates() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    let dim = 8;
    let n = 600;
    let v = data(n, dim, 11);
    let opts = OpenOptions {
        seal_threshold: 200,
        ..OpenOptions::default()
    };
    let c = Collection::create(&p, spec(dim, Metric::L2), opts.clone()).unwrap();
    let ids = c.insert(items(&v, dim)).unwrap();
    // Every third item is "even-ish"; the rest get no label.
    let updates: Vec<(u64, imgsim_index::ItemMeta)> = ids
        .iter()
        .filter(|id| *id % 3 == 0)
        .map(|&id| {
            let mut m = c.item(id).unwrap();
            m.set_labels(&[imgsim_index::Label {
                label: "third".into(),
                score: 0.9,
            }]);
            (id, m)
        })
        .collect();
    c.update_items(&updates).unwrap();
    assert_eq!(
        c.label_counts().unwrap(),
        vec![("third".to_string(), updates.len())]
    );
    let set = c.ids_with_label("third").unwrap();
    let f = |id: u64| set.contains(&id);
    let mut hits = 0.0;
    let mut total = 0;
    for q in 0..40 {
        let query = &v[q * dim..(q + 1) * dim];
        let approx = c.search(query, 10, Some(64), Some(&f)).unwrap();
        let exact = c.search_exact(query, 10, Some(&f)).unwrap();
        assert!(
            approx.iter().all(|h| h.id % 3 == 0),
            "a result without the label"
        );
        assert_eq!(approx.len(), 10);
        hits += imgsim_index::recall_at_k(&approx, &exact, 10) * 10.0;
        total += 10;
    }
    let recall = hits / total as f64;
    assert!(recall >= 0.95, "filtered recall {recall}");
    // An update drops the cached index: relabelled items move.
    let mut m = c.item(ids[0]).unwrap();
    m.set_labels(&[]);
    c.update_items(&[(ids[0], m)]).unwrap();
    assert!(!c.ids_with_label("third").unwrap().contains(&ids[0]));
    assert!(c.ids_with_label("none-such").unwrap().is_empty());
    // Unknown ids are refused before anything is written.
    let e = c
        .update_items(&[
            (ids[3], c.item(ids[3]).unwrap()),
            (99_999, Default::default()),
        ])
        .unwrap_err();
    assert!(
        matches!(e, imgsim_index::IndexError::NotFound(99_999)),
        "{e}"
    );
    // Labels survive a reopen (they are metadata).
    drop(c);
    let c = open(&p, opts).unwrap();
    assert_eq!(c.ids_with_label("third").unwrap().len(), updates.len() - 1);
    assert!(imgsim_index::check_label("").is_err());
    assert!(imgsim_index::check_label("beach").is_ok());
}
