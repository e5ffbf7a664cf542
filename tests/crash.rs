//! Crash safety, end to end: `imgsim index` and `imgsim serve` killed with
//! SIGKILL at random moments, again and again, reopening the collection
//! after every kill; a full disk under the service; a read-only collection.
//!
//! After every kill the collection must open, every acknowledged image must
//! be there with its own vector and be found by searching with it, nothing
//! may be stored twice, and the graphs and sled must agree (the same ids).
//! The random moments come from a seeded generator: the seed is printed and
//! `IMGSIM_CRASH_SEED` replays a run.

mod common;
use common::{command, http, png_bytes, save, text, wait_ready, Rng, Tmpfs};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imgsim_index::OpenOptions;

/// A real backbone with deterministic random weights (no download).
const BACKBONE: [&str; 4] = [
    "--backbone",
    "mobilenetv4-small",
    "--weights",
    "synthetic:1",
];

/// SIGKILLs each test must land on a running process.
const KILLS: usize = 20;

const API_KEY: &str = "crash-test-key";

fn seed() -> u64 {
    let s = std::env::var("IMGSIM_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_abcd);
    eprintln!("IMGSIM_CRASH_SEED={s}");
    s
}

/// What a reopened collection holds.
struct Snapshot {
    /// id → (path or upload name, vector).
    by_id: BTreeMap<u64, (String, Vec<f32>)>,
    /// path → (id, vector), for files (uploads may share a name).
    items: BTreeMap<String, (u64, Vec<f32>)>,
    /// id → blake3 of the image's bytes.
    blake3: HashMap<u64, String>,
}

/// Opens the collection at `dir` as a restarted process would, checks it
/// (graphs and sled agree, every vector finite, every item found by its own
/// vector, no path or upload stored twice) and returns what it holds.
fn reopen_and_check(dir: &Path) -> Snapshot {
    if !imgsim_index::Collection::exists(dir) {
        // Killed before the collection was created.
        return Snapshot {
            by_id: BTreeMap::new(),
            items: BTreeMap::new(),
            blake3: HashMap::new(),
        };
    }
    let c = imgsim_pipeline::open(dir, &OpenOptions::default())
        .unwrap_or_else(|e| panic!("the collection does not reopen after a kill: {e}"));
    let report = c.verify(usize::MAX).unwrap();
    assert!(
        report.is_consistent(),
        "inconsistent after a kill: {report:?}"
    );
    assert_eq!(report.self_searched, report.live);
    let mut by_id = BTreeMap::new();
    let mut items = BTreeMap::new();
    let mut blake3 = HashMap::new();
    let mut uploads = HashMap::new();
    for (id, meta) in c.items().unwrap() {
        let v = c.vector(id).unwrap();
        by_id.insert(id, (meta.external_id.clone(), v.clone()));
        if meta.source != "upload" {
            let prev = items.insert(meta.external_id.clone(), (id, v));
            assert!(
                prev.is_none(),
                "{} is stored twice (ids {} and {id})",
                meta.external_id,
                prev.unwrap().0
            );
        }
        if let Some(h) = meta.attrs.get("blake3").and_then(|h| h.as_str()) {
            blake3.insert(id, h.to_string());
            if meta.source == "upload" {
                if let Some(first) = uploads.insert(h.to_string(), id) {
                    panic!("upload {h} is stored twice (ids {first} and {id})");
                }
            }
        }
    }
    Snapshot {
        by_id,
        items,
        blake3,
    }
}

fn close_to(a: &[f32], b: &[f32]) -> bool {
    let d: f32 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    let n: f32 = b.iter().map(|x| x.abs()).fold(0.0, f32::max);
    a.len() == b.len() && d <= 1e-4 * n.max(1.0)
}

/// Seals a graph segment every 8 vectors and merges past 3 segments, so
/// that kills also land in HNSW builds, segment writes and compactions.
fn small_segments(mut c: std::process::Command) -> std::process::Command {
    c.env("IMGSIM_STORAGE_SEAL_THRESHOLD", "8")
        .env("IMGSIM_STORAGE_MAX_SEGMENTS", "3");
    c
}

/// Sends SIGKILL unless the process has already exited; true if it was running.
fn kill9(child: &mut Child) -> bool {
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    child.wait().unwrap();
    running
}

#[test]
fn indexing_survives_sigkill_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let photos = cwd.join("photos");
    let mut next_image = 0u32;
    let mut add_images = |n: u32| {
        for _ in 0..n {
            save(
                &common::picture(1000 + next_image, 64, 64),
                &photos.join(format!("{next_image:04}.png")),
            );
            next_image += 1;
        }
    };
    add_images(60);
    let photos_s = photos.to_str().unwrap().to_string();
    let index_args = |data: &Path| -> Vec<String> {
        let mut a: Vec<String> = ["--data-dir", data.to_str().unwrap(), "index", &photos_s]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(["--batch-size", "2"].iter().map(|s| s.to_string()));
        a.extend(BACKBONE.iter().map(|s| s.to_string()));
        a
    };
    // The reference: the same images indexed without interruption.
    let ref_data = cwd.join("reference");
    let reference_run = |cwd: &Path| {
        let args = index_args(&ref_data);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let t = Instant::now();
        let o = common::imgsim(&argv, cwd);
        assert!(o.status.success(), "{}", text(&o));
        t.elapsed()
    };
    let full_run = reference_run(cwd);
    let reference = |cwd: &Path| {
        let _ = cwd;
        reopen_and_check(&ref_data.join("default")).items
    };
    let mut expected = reference(cwd);
    assert_eq!(expected.len(), 60);

    let data = cwd.join("data");
    let coll = data.join("default");
    let args = index_args(&data);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut rng = Rng(seed());
    let max_delay = full_run.as_millis() as u64;
    let (mut kills, mut before_first_commit, mut rounds) = (0, 0, 0);
    let mut previous: BTreeMap<String, (u64, Vec<f32>)> = BTreeMap::new();
    while kills < KILLS {
        rounds += 1;
        assert!(rounds < 200, "could not land {KILLS} kills in 200 rounds");
        let mut child = small_segments(command(&argv, cwd))
            .env("IMGSIM_LOG", "imgsim_pipeline=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Count the batches the indexer acknowledges (committed, durable).
        let stderr = child.stderr.take().unwrap();
        let acked = std::thread::spawn(move || {
            let mut n = 0u64;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("batch committed") {
                    n += line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("added="))
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
            n
        });
        std::thread::sleep(Duration::from_millis(rng.range(0, max_delay)));
        let was_running = kill9(&mut child);
        let acked = acked.join().unwrap();
        if was_running {
            kills += 1;
            if acked == 0 {
                before_first_commit += 1;
            }
        }
        let now = reopen_and_check(&coll).items;
        // Nothing acknowledged is lost: what was there is still there,
        // unchanged, and this round's commits are on top.
        for (path, (id, v)) in &previous {
            let (id2, v2) = now
                .get(path)
                .unwrap_or_else(|| panic!("{path} was lost after kill {kills}"));
            assert!(id == id2 && v == v2, "{path} changed after kill {kills}");
        }
        assert!(
            now.len() as u64 >= previous.len() as u64 + acked,
            "kill {kills}: {} items, {} before + {acked} acknowledged",
            now.len(),
            previous.len()
        );
        // Every item holds its own image's vector.
        for (path, (_, v)) in &now {
            let (_, want) = &expected[path];
            assert!(close_to(v, want), "{path} does not hold its own vector");
        }
        if now.len() == expected.len() {
            // Everything is in: give the next rounds new work.
            add_images(12);
            reference_run(cwd);
            expected = reference(cwd);
        }
        previous = now;
    }
    // A last, uninterrupted run completes the collection.
    let mut done = argv.clone();
    done.push("--json");
    let o = common::imgsim(&done, cwd);
    assert!(o.status.success(), "{}", text(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["total"], expected.len(), "{summary}");
    let now = reopen_and_check(&coll).items;
    assert_eq!(now.len(), expected.len());
    let o = common::imgsim(
        &["--data-dir", data.to_str().unwrap(), "check", "--json"],
        cwd,
    );
    assert!(o.status.success(), "imgsim check: {}", text(&o));
    eprintln!(
        "indexing: {kills} SIGKILLs landed in {rounds} rounds ({before_first_commit} before the first commit of their run), \
         delays 0..{max_delay} ms, {} images, every reopen consistent",
        expected.len()
    );
}

fn serve(cwd: &Path, data: &Path, addr: &str) -> Child {
    serve_watching(cwd, data, addr, &[])
}

/// [`serve`], also following folder `watch` (`serve --watch`).
fn serve_watching(cwd: &Path, data: &Path, addr: &str, watch: &[&Path]) -> Child {
    let mut args = vec![
        "--data-dir",
        data.to_str().unwrap(),
        "serve",
        "--bind",
        addr,
    ];
    for w in watch {
        args.extend(["--watch", w.to_str().unwrap()]);
    }
    small_segments(command(&args, cwd))
        .env("IMGSIM_SERVER_API_KEY", API_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn add(addr: &str, bytes: &[u8]) -> std::io::Result<common::Answer> {
    http(
        addr,
        &format!(
            "POST /collections/default/images HTTP/1.1\nContent-Type: image/png\napi-key: {API_KEY}"
        ),
        bytes,
    )
}

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// The vector the collection's embedder gives `bytes` (what an upload must hold).
fn embedding(dir: &Path, bytes: &[u8]) -> Vec<f32> {
    let c = imgsim_pipeline::open(dir, &OpenOptions::default()).unwrap();
    let record = imgsim_pipeline::EmbedderRecord::read(&c).unwrap().unwrap();
    let metric = c.spec().metric;
    drop(c);
    let e = record.load(dir).unwrap();
    let mut v = imgsim_pipeline::search::embed_bytes_timed(
        e.as_ref(),
        &record,
        bytes,
        Path::new("x.png"),
        &imgsim_embed::ImageLimits::default(),
    )
    .unwrap()
    .vector;
    // As the collection stores it (cosine: normalised).
    metric.prepare(&mut v, 0).unwrap();
    v
}

fn delete(addr: &str, id: u64) -> std::io::Result<common::Answer> {
    http(
        addr,
        &format!("DELETE /collections/default/images/{id} HTTP/1.1\napi-key: {API_KEY}"),
        b"",
    )
}

/// Uploads waiting to be sent: (seed, PNG bytes).
type Queue = VecDeque<(u32, Vec<u8>)>;

/// What the clients and the folder feeder did, across all rounds.
#[derive(Default)]
struct Ledger {
    /// Deletes the service acknowledged (200).
    deleted: std::collections::BTreeSet<u64>,
    /// Deletes whose answer was lost to a kill: either outcome is fine.
    maybe_deleted: std::collections::BTreeSet<u64>,
    /// Files now in the watched folder, by path, with their blake3.
    watched: BTreeMap<String, String>,
    /// Files removed from the watched folder.
    unwatched: std::collections::BTreeSet<String>,
}

/// Writes a new picture into `folder` every 40 ms and removes one of the
/// older ones every fifth time, until `stop`.
fn feed_folder(
    folder: &Path,
    ledger: &Mutex<Ledger>,
    next: &Mutex<u32>,
    stop: &std::sync::atomic::AtomicBool,
) {
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let n = {
            let mut n = next.lock().unwrap();
            *n += 1;
            *n
        };
        let bytes = png_bytes(n, 40, 40);
        let path = folder.join(format!("w{n}.png"));
        std::fs::write(&path, &bytes).unwrap();
        let mut l = ledger.lock().unwrap();
        l.watched
            .insert(path.to_str().unwrap().to_string(), blake3_hex(&bytes));
        if n.is_multiple_of(5) {
            let victim = l
                .watched
                .keys()
                .nth((n as usize / 5) % l.watched.len())
                .cloned();
            if let Some(v) = victim {
                std::fs::remove_file(&v).unwrap();
                l.watched.remove(&v);
                l.unwatched.insert(v);
            }
        }
        drop(l);
        std::thread::sleep(Duration::from_millis(40));
    }
}

/// Paths of the file items the service lists under `folder`.
fn listed_under(addr: &str, folder: &Path) -> std::io::Result<std::collections::BTreeSet<String>> {
    let mut out = std::collections::BTreeSet::new();
    let mut offset = 0;
    loop {
        let a = http(
            addr,
            &format!("GET /collections/default/images?offset={offset}&limit=500 HTTP/1.1"),
            b"",
        )?;
        let page = a.json()["images"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            return Ok(out);
        }
        offset += page.len();
        for im in page {
            let path = im["path"].as_str().unwrap_or_default();
            if im["source"] == "file" && Path::new(path).starts_with(folder) {
                out.insert(path.to_string());
            }
        }
    }
}

/// The service killed 20 times while a watched folder receives and loses
/// files and two clients upload (one also deletes what it uploaded):
/// after every kill nothing acknowledged is lost, no acknowledged delete
/// comes back, nothing is stored twice; in the end the watched folder and
/// the collection agree, file for file and byte for byte.
#[test]
fn uploads_survive_sigkill_of_the_service_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    common::indexed_collection(cwd, &data, 50);
    let coll = data.join("default");
    let watched = cwd.join("watched");
    std::fs::create_dir_all(&watched).unwrap();
    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    let next_file = Arc::new(Mutex::new(90_000u32));
    let mut rng = Rng(seed() ^ 0xa5a5);
    // Images waiting to be uploaded (seed, bytes); unanswered ones go back.
    let pending: Arc<Mutex<Queue>> = Arc::default();
    let next_seed = Arc::new(Mutex::new(5000u32));
    // seed → id, for every upload the service acknowledged.
    let acked: Arc<Mutex<BTreeMap<u32, u64>>> = Arc::default();
    let bytes_of: Arc<Mutex<HashMap<u32, Vec<u8>>>> = Arc::default();
    let (mut kills, mut rounds, mut retried_existing) = (0, 0, 0u64);
    let mut previous: Option<Snapshot> = None;
    while kills < KILLS {
        rounds += 1;
        assert!(rounds < 100, "could not land {KILLS} kills in 100 rounds");
        let addr = format!("127.0.0.1:{}", common::free_port());
        let stop_feed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let feeder = {
            let (watched, ledger, next_file, stop) = (
                watched.clone(),
                ledger.clone(),
                next_file.clone(),
                stop_feed.clone(),
            );
            std::thread::spawn(move || feed_folder(&watched, &ledger, &next_file, &stop))
        };
        let mut server = serve_watching(cwd, &data, &addr, &[&watched]);
        assert!(
            wait_ready(&addr, &mut server, 120),
            "the service did not start"
        );
        let clients: Vec<_> = (0..2)
            .map(|client| {
                let (pending, next_seed, acked, bytes_of, addr, ledger) = (
                    pending.clone(),
                    next_seed.clone(),
                    acked.clone(),
                    bytes_of.clone(),
                    addr.clone(),
                    ledger.clone(),
                );
                std::thread::spawn(move || {
                    let mut existing = 0u64;
                    let mut mine: VecDeque<u64> = VecDeque::new();
                    let mut uploaded = 0u64;
                    loop {
                        // Client 1 deletes its oldest uploads: a third of them.
                        if client == 1 && mine.len() as u64 > uploaded - uploaded / 3 {
                            let id = mine.pop_front().unwrap();
                            match delete(&addr, id) {
                                Ok(a) if a.status == 200 => {
                                    ledger.lock().unwrap().deleted.insert(id);
                                }
                                Ok(a) => {
                                    panic!("delete of {id} answered {}: {}", a.status, a.text())
                                }
                                Err(_) => {
                                    ledger.lock().unwrap().maybe_deleted.insert(id);
                                    return existing;
                                }
                            }
                        }
                        let job = pending.lock().unwrap().pop_front();
                        let (s, bytes) = job.unwrap_or_else(|| {
                            let mut n = next_seed.lock().unwrap();
                            *n += 1;
                            (*n, png_bytes(*n, 48, 48))
                        });
                        bytes_of.lock().unwrap().insert(s, bytes.clone());
                        match add(&addr, &bytes) {
                            Ok(a) if a.status == 201 || a.status == 200 => {
                                let id = a.json()["id"].as_u64().unwrap();
                                existing += u64::from(a.status == 200);
                                if a.status == 201 {
                                    mine.push_back(id);
                                    uploaded += 1;
                                }
                                if let Some(old) = acked.lock().unwrap().insert(s, id) {
                                    assert_eq!(old, id, "an upload changed id on retry");
                                }
                            }
                            Ok(a) => panic!("add answered {}: {}", a.status, a.text()),
                            Err(_) => {
                                // Killed mid-request: not acknowledged, retry later.
                                pending.lock().unwrap().push_back((s, bytes));
                                return existing;
                            }
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.range(0, 1500)));
        if kill9(&mut server) {
            kills += 1;
        }
        for c in clients {
            retried_existing += c.join().unwrap();
        }
        stop_feed.store(true, std::sync::atomic::Ordering::SeqCst);
        feeder.join().unwrap();
        let snap = reopen_and_check(&coll);
        let acked = acked.lock().unwrap();
        let l = ledger.lock().unwrap();
        for id in &l.deleted {
            assert!(
                !snap.by_id.contains_key(id),
                "acknowledged delete of {id} undone after kill {kills}"
            );
        }
        for (s, id) in acked
            .iter()
            .filter(|(_, id)| !l.deleted.contains(id) && !l.maybe_deleted.contains(id))
        {
            let h = blake3_hex(&bytes_of.lock().unwrap()[s]);
            assert_eq!(
                snap.blake3.get(id),
                Some(&h),
                "acknowledged upload {s} (id {id}) lost or changed after kill {kills}"
            );
        }
        if let Some(prev) = &previous {
            for (id, (name, v)) in &prev.by_id {
                if l.deleted.contains(id)
                    || l.maybe_deleted.contains(id)
                    || l.unwatched.contains(name)
                {
                    continue;
                }
                let now = snap.by_id.get(id);
                assert!(
                    now.is_some_and(|(n, v2)| n == name && v2 == v),
                    "{name} (id {id}) lost or changed after kill {kills}"
                );
            }
        }
        drop(l);
        previous = Some(snap);
    }
    // One more start: the watcher catches up with the folder as it is.
    let addr = format!("127.0.0.1:{}", common::free_port());
    let mut server = serve_watching(cwd, &data, &addr, &[&watched]);
    assert!(
        wait_ready(&addr, &mut server, 120),
        "the service did not start"
    );
    let want: std::collections::BTreeSet<String> =
        ledger.lock().unwrap().watched.keys().cloned().collect();
    let until = Instant::now() + Duration::from_secs(120);
    let mut listed = listed_under(&addr, &watched).unwrap();
    while listed != want && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
        listed = listed_under(&addr, &watched).unwrap();
    }
    kill9(&mut server);
    assert_eq!(
        listed.difference(&want).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "items of files removed from the watched folder"
    );
    assert_eq!(
        want.difference(&listed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "files of the watched folder never indexed"
    );
    let snap = reopen_and_check(&coll);
    let l = ledger.lock().unwrap();
    for (path, hash) in &l.watched {
        let (id, _) = &snap.items[path];
        assert_eq!(snap.blake3.get(id), Some(hash), "{path} holds other bytes");
    }
    // Every acknowledged upload holds the vector of its own bytes.
    let acked = acked.lock().unwrap().clone();
    let bytes_of = bytes_of.lock().unwrap();
    let by_id: HashMap<u64, &Vec<f32>> = snap.by_id.iter().map(|(i, (_, v))| (*i, v)).collect();
    for (s, id) in acked
        .iter()
        .filter(|(_, id)| !l.deleted.contains(id) && !l.maybe_deleted.contains(id))
    {
        let want = embedding(&coll, &bytes_of[s]);
        assert!(
            close_to(by_id[id], &want),
            "upload {s} (id {id}) does not hold its own vector"
        );
    }
    let o = common::imgsim(
        &["--data-dir", data.to_str().unwrap(), "check", "--json"],
        cwd,
    );
    assert!(o.status.success(), "imgsim check: {}", text(&o));
    eprintln!(
        "service: {kills} SIGKILLs landed in {rounds} rounds, {} uploads acknowledged, \
         {} deletes acknowledged ({} unanswered), {retried_existing} retries answered with the \
         existing id, {} files in the watched folder ({} removed) all indexed once, every reopen \
         consistent",
        acked.len(),
        l.deleted.len(),
        l.maybe_deleted.len(),
        l.watched.len(),
        l.unwatched.len()
    );
}

/// The service on a disk that fills up: adds answer 507 with a clear
/// message while searches go on; after space is freed and the service
/// restarted, every acknowledged upload is there and the collection is
/// consistent.
#[test]
fn a_full_disk_under_the_service_refuses_adds_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let Some(fs) = Tmpfs::mount(&cwd.join("small-disk"), "16m") else {
        common::skip("cannot mount a tmpfs here (not root)");
        return;
    };
    let data = fs.0.join("data");
    common::indexed_collection(cwd, &data, 50);
    let coll = data.join("default");
    let addr = format!("127.0.0.1:{}", common::free_port());
    let mut server = serve(cwd, &data, &addr);
    assert!(wait_ready(&addr, &mut server, 60));
    let mut acked = Vec::new();
    for s in 0..3 {
        let bytes = png_bytes(7000 + s, 64, 64);
        let a = add(&addr, &bytes).unwrap();
        assert_eq!(a.status, 201, "{}", a.text());
        acked.push((a.json()["id"].as_u64().unwrap(), blake3_hex(&bytes)));
    }
    // Fill the disk, then keep adding until the service says it is full.
    let ballast = fs.0.join("ballast");
    std::fs::write(
        &ballast,
        vec![0u8; (fs.free_kib().saturating_sub(64) * 1024) as usize],
    )
    .unwrap();
    let mut full = None;
    for s in 0..200 {
        let bytes = png_bytes(8000 + s, 160, 160);
        let a = add(&addr, &bytes).unwrap();
        match a.status {
            201 => acked.push((a.json()["id"].as_u64().unwrap(), blake3_hex(&bytes))),
            _ => {
                full = Some(a);
                break;
            }
        }
    }
    let a = full.expect("the disk never filled up");
    assert_eq!(a.status, 507, "{}", a.text());
    let msg = a.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("disk") && msg.contains("full"), "{msg}");
    assert!(
        !msg.contains(fs.0.to_str().unwrap()),
        "leaks a server path: {msg}"
    );
    // Searches go on.
    let q = http(
        &addr,
        "POST /collections/default/search HTTP/1.1\nContent-Type: application/json",
        format!("{{\"id\": {}, \"k\": 3}}", acked[0].0).as_bytes(),
    )
    .unwrap();
    assert_eq!(q.status, 200, "{}", q.text());
    // Space again, restart: everything acknowledged is there, adds work.
    std::fs::remove_file(&ballast).unwrap();
    assert!(kill9(&mut server));
    let snap = reopen_and_check(&coll);
    for (id, h) in &acked {
        assert_eq!(
            snap.blake3.get(id),
            Some(h),
            "acknowledged upload {id} lost"
        );
    }
    let mut server = serve(cwd, &data, &addr);
    assert!(wait_ready(&addr, &mut server, 60));
    let a = add(&addr, &png_bytes(9999, 64, 64)).unwrap();
    assert_eq!(a.status, 201, "{}", a.text());
    kill9(&mut server);
    reopen_and_check(&coll);
    eprintln!(
        "full disk: {} uploads acknowledged before 507: {msg}",
        acked.len()
    );
}

/// Makes `dir` read-only: a read-only bind mount when root (root ignores
/// permissions), else permissions. Undone on drop.
struct ReadOnly(PathBuf, bool);

impl ReadOnly {
    fn new(dir: &Path) -> ReadOnly {
        let run = |args: &[&str]| {
            std::process::Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if run(&["--bind"]) {
            let ok = std::process::Command::new("mount")
                .args(["-o", "remount,ro,bind"])
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "remount read-only failed");
            return ReadOnly(dir.to_path_buf(), true);
        }
        set_writable(dir, false);
        ReadOnly(dir.to_path_buf(), false)
    }
}

fn set_writable(dir: &Path, writable: bool) {
    use std::os::unix::fs::PermissionsExt;
    for e in walkdir(dir) {
        let mode = e.metadata().unwrap().permissions().mode();
        let mode = if writable {
            mode | 0o200
        } else {
            mode & !0o222
        };
        std::fs::set_permissions(&e, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walkdir(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        } else {
            set_writable(&self.0, true);
        }
    }
}

#[test]
fn a_read_only_collection_is_a_clear_error_and_stays_intact() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    common::indexed_collection(cwd, &data, 50);
    let coll = data.join("default");
    let before = reopen_and_check(&coll).items;
    let photos = cwd.join("more");
    save(&common::picture(77, 64, 64), &photos.join("x.png"));
    let ro = ReadOnly::new(&coll);
    let d = data.to_str().unwrap();
    let mut args = vec!["--data-dir", d, "index", photos.to_str().unwrap()];
    args.extend_from_slice(&BACKBONE);
    for argv in [
        args.clone(),
        vec!["--data-dir", d, "info"],
        vec!["--data-dir", d, "serve", "--bind", "127.0.0.1:1"],
    ] {
        let o = common::imgsim(&argv, cwd);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{argv:?}: {t}");
        assert!(
            t.contains("read-only") && t.contains("default"),
            "{argv:?} does not say the collection is read-only: {t}"
        );
        assert!(!t.contains("panicked"), "{t}");
    }
    drop(ro);
    let after = reopen_and_check(&coll).items;
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    let o = common::imgsim(&args, cwd);
    assert!(o.status.success(), "{}", text(&o));
}
