//! End-to-end tests of indexing a folder and querying it: `imgsim index`,
//! `query`, `dups`, `info`, `remove`, `compact`, on images and broken files
//! the tests write themselves.

mod common;
use common::{command, imgsim, picture, save, text, Tmpfs};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

/// The embedder the tests use: a real backbone with deterministic random
/// weights (no download, fast enough in a debug build).
const BACKBONE: [&str; 4] = [
    "--backbone",
    "mobilenetv4-small",
    "--weights",
    "synthetic:1",
];

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(o)))
}

fn run(args: &[&str], cwd: &Path) -> Output {
    imgsim(args, cwd)
}

fn data_args<'a>(data: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--data-dir", data];
    v.extend_from_slice(rest);
    v
}

/// A folder with 6 distinct images (PNG and JPEG, one in a sub-folder), an
/// exact copy of one, and broken or non-image files.
fn photo_folder(root: &Path) -> PathBuf {
    let photos = root.join("photos");
    for i in 0..4 {
        save(&picture(i, 96, 80), &photos.join(format!("p{i}.png")));
    }
    save(&picture(4, 120, 90), &photos.join("sub/p4.jpg"));
    save(&picture(5, 90, 120), &photos.join("sub/p5.jpg"));
    std::fs::copy(photos.join("p1.png"), photos.join("sub/copy-of-p1.png")).unwrap();
    // Not images, named like images: failures.
    std::fs::write(photos.join("notes.jpg"), b"this is a text file, not a JPEG").unwrap();
    std::fs::write(photos.join("empty.png"), b"").unwrap();
    let jpeg = std::fs::read(photos.join("sub/p4.jpg")).unwrap();
    std::fs::write(photos.join("truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    // A PNG whose header declares 50,000 × 50,000 pixels (a decompression bomb).
    let mut bomb = Vec::new();
    bomb.extend_from_slice(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR");
    bomb.extend_from_slice(&50_000u32.to_be_bytes());
    bomb.extend_from_slice(&50_000u32.to_be_bytes());
    bomb.extend_from_slice(&[8, 2, 0, 0, 0]);
    let crc = crc32(&bomb[12..]);
    bomb.extend_from_slice(&crc.to_be_bytes());
    // A first IDAT chunk (the header is only believed once one follows).
    let idat_start = bomb.len() + 4;
    bomb.extend_from_slice(&[0, 0, 0, 2]);
    bomb.extend_from_slice(b"IDAT\x78\x9c");
    let crc = crc32(&bomb[idat_start..]);
    bomb.extend_from_slice(&crc.to_be_bytes());
    std::fs::write(photos.join("bomb.png"), &bomb).unwrap();
    // Not images, not named like images: skipped silently.
    std::fs::write(photos.join("readme.txt"), b"holiday photos").unwrap();
    // An image whose name does not say so: found by its content.
    std::fs::copy(photos.join("p0.png"), photos.join("p0-backup.dat")).unwrap();
    photos
}

fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

#[test]
fn index_is_incremental_reports_failures_and_queries_find_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let photos = photo_folder(cwd);
    let data = cwd.join("data");
    let data = data.to_str().unwrap();
    let photos_s = photos.to_str().unwrap();
    let errors = cwd.join("errors.json");

    // First run: 6 distinct images + one found by content; the copy of p1
    // is a duplicate; 4 failures; the .txt is skipped.
    let mut args = data_args(data, &["index", photos_s, "--json", "--errors"]);
    args.push(errors.to_str().unwrap());
    args.extend_from_slice(&BACKBONE);
    let o = run(&args, cwd);
    assert_eq!(
        o.status.code(),
        Some(3),
        "some files failed: exit 3\n{}",
        text(&o)
    );
    let s = json(&o);
    assert_eq!(s["indexed"], 6, "{s}");
    // p0-backup.dat has the same bytes as p0.png, copy-of-p1 as p1.
    assert_eq!(s["duplicates"], 2, "{s}");
    assert_eq!(s["failed"], 4, "{s}");
    assert_eq!(s["skipped"], 1, "{s}");
    assert_eq!(s["unchanged"], 0, "{s}");
    assert_eq!(s["total"], 8, "{s}");
    let errs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&errors).unwrap()).unwrap();
    let reason = |name: &str| -> String {
        errs.as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("no error for {name}: {errs}"))["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(reason("notes.jpg").contains("not an image"), "{errs}");
    assert!(reason("empty.png").contains("empty"), "{errs}");
    assert!(reason("bomb.png").contains("too large"), "{errs}");
    assert!(!reason("truncated.jpg").is_empty());

    // Second run: nothing to do.
    let mut args = data_args(data, &["index", photos_s, "--json"]);
    args.extend_from_slice(&BACKBONE);
    let s = json(&run(&args, cwd));
    assert_eq!(s["indexed"], 0, "{s}");
    assert_eq!(s["unchanged"], 8, "{s}");
    assert_eq!(s["total"], 8, "{s}");

    // A changed file is re-embedded and replaces its entry; a touched one
    // (same bytes) is not; a deleted one is pruned.
    save(&picture(40, 96, 80), &photos.join("p2.png"));
    let p3 = std::fs::read(photos.join("p3.png")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(photos.join("p3.png"), &p3).unwrap();
    std::fs::remove_file(photos.join("sub/p5.jpg")).unwrap();
    let mut args = data_args(data, &["index", photos_s, "--json", "--prune"]);
    args.extend_from_slice(&BACKBONE);
    let s = json(&run(&args, cwd));
    assert_eq!(s["indexed"], 1, "{s}");
    assert_eq!(s["replaced"], 1, "{s}");
    assert_eq!(s["pruned"], 1, "{s}");
    assert_eq!(s["unchanged"], 6, "{s}");
    assert_eq!(s["total"], 7, "{s}");

    // Query by example: the image itself comes first, with exact recall.
    let p4 = photos.join("sub/p4.jpg");
    let o = run(
        &data_args(
            data,
            &[
                "query",
                p4.to_str().unwrap(),
                "-k",
                "3",
                "--exact",
                "--json",
            ],
        ),
        cwd,
    );
    assert!(o.status.success(), "{}", text(&o));
    let q = json(&o);
    let results = q["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["rank"], 1);
    assert!(results[0]["path"].as_str().unwrap().ends_with("sub/p4.jpg"));
    assert!(
        (results[0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-4,
        "{q}"
    );
    assert!(q["took_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(q["recall_at_k"], 1.0);
    assert_eq!(q["exact"].as_array().unwrap().len(), 3);
    let p4_id = results[0]["id"].as_u64().unwrap();

    // By id: the item itself is left out; its exact copy is not.
    let p1_id = {
        let o = run(
            &data_args(
                data,
                &[
                    "query",
                    photos.join("p1.png").to_str().unwrap(),
                    "-k",
                    "2",
                    "--json",
                ],
            ),
            cwd,
        );
        let q = json(&o);
        let ids: Vec<u64> = q["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect();
        ids[0]
    };
    let id_s = p1_id.to_string();
    let q = json(&run(
        &data_args(data, &["query", "--id", &id_s, "-k", "1", "--json"]),
        cwd,
    ));
    let top = &q["results"][0];
    assert_ne!(top["id"].as_u64().unwrap(), p1_id);
    assert!(
        top["path"].as_str().unwrap().ends_with("copy-of-p1.png"),
        "{q}"
    );

    // Human-readable output too.
    let o = run(
        &data_args(data, &["query", p4.to_str().unwrap(), "-k", "2"]),
        cwd,
    );
    assert!(text(&o).contains("sub/p4.jpg"), "{}", text(&o));

    // dups finds the exact copies.
    let o = run(&data_args(data, &["dups", "--json"]), cwd);
    assert!(o.status.success(), "{}", text(&o));
    let d = json(&o);
    let groups = d["groups"].as_array().unwrap();
    let has_pair = |a: &str, b: &str| {
        groups.iter().any(|g| {
            let paths: Vec<&str> = g["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["path"].as_str().unwrap())
                .collect();
            paths.iter().any(|p| p.ends_with(a)) && paths.iter().any(|p| p.ends_with(b))
        })
    };
    assert!(has_pair("/p1.png", "copy-of-p1.png"), "{d}");
    assert!(has_pair("/p0.png", "p0-backup.dat"), "{d}");

    // info.
    let i = json(&run(&data_args(data, &["info", "--json"]), cwd));
    assert_eq!(i["count"], 7);
    assert_eq!(i["dim"], 1280);
    assert_eq!(
        i["embedder"]["identity"]["architecture"],
        "mobilenetv4-small"
    );

    // remove by path and by id; unknown ones are an error (exit 2).
    let o = run(
        &data_args(
            data,
            &["remove", photos.join("p0-backup.dat").to_str().unwrap()],
        ),
        cwd,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&data_args(data, &["remove", &p4_id.to_string()]), cwd);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&data_args(data, &["remove", "/no/such/file.jpg"]), cwd);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no image"), "{}", text(&o));
    let o = run(&data_args(data, &["compact"]), cwd);
    assert!(o.status.success(), "{}", text(&o));
    let i = json(&run(&data_args(data, &["info", "--json"]), cwd));
    assert_eq!(i["count"], 5);
    assert_eq!(i["tombstones"], 0);

    // Re-indexing brings the removed files back (they are still on disk).
    let mut args = data_args(data, &["index", photos_s, "--json"]);
    args.extend_from_slice(&BACKBONE);
    let s = json(&run(&args, cwd));
    assert_eq!(s["total"], 7, "{s}");
}

#[test]
fn another_embedder_is_refused_unless_reindex() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let photos = cwd.join("photos");
    for i in 0..3 {
        save(&picture(i, 64, 64), &photos.join(format!("{i}.png")));
    }
    let data = cwd.join("data");
    let (data, photos_s) = (data.to_str().unwrap(), photos.to_str().unwrap());
    let mut args = data_args(data, &["index", photos_s, "--json"]);
    args.extend_from_slice(&BACKBONE);
    assert_eq!(json(&run(&args, cwd))["indexed"], 3);
    // Same backbone, other weights.
    let other = data_args(
        data,
        &[
            "index",
            photos_s,
            "--backbone",
            "mobilenetv4-small",
            "--weights",
            "synthetic:2",
        ],
    );
    let o = run(&other, cwd);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--reindex"), "{}", text(&o));
    // Queries still work with the original.
    let o = run(
        &data_args(
            data,
            &["query", photos.join("0.png").to_str().unwrap(), "--json"],
        ),
        cwd,
    );
    assert!(o.status.success(), "{}", text(&o));
    // --reindex re-embeds everything with the new weights.
    let mut re = other.clone();
    re.extend_from_slice(&["--reindex", "--json"]);
    let o = run(&re, cwd);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json(&o)["indexed"], 3);
    let i = json(&run(&data_args(data, &["info", "--json"]), cwd));
    assert_eq!(i["count"], 3);
    assert_eq!(i["embedder"]["spec"]["weights"]["seed"], 2, "{i}");
    assert!(!cwd.join("data/default.reindex").exists());
    assert!(!cwd.join("data/default.old").exists());
}

/// Indexes ten generated pictures offline (no weights can be had), with
/// the `[embed] offline` objective `objective` (`None`: the default), and
/// queries one, which must come first: returns the collection's `info
/// --json` and the query's score against itself.
fn index_offline_and_query(objective: Option<&str>) -> (serde_json::Value, f64) {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let photos = cwd.join("photos");
    for i in 0..10 {
        save(&picture(100 + i, 80, 64), &photos.join(format!("{i}.png")));
    }
    let data = cwd.join("data");
    // Offline (HF_HUB_OFFLINE=1, empty cache): the default embedder cannot
    // be had, so an embedder is trained on the folder.
    let mut index = command(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "index",
            photos.to_str().unwrap(),
            "--json",
        ],
        cwd,
    );
    index.env("IMGSIM_EMBED_AUTOENCODER_EPOCHS", "2");
    if let Some(o) = objective {
        index.env("IMGSIM_EMBED_OFFLINE", o);
    }
    let o = index.output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("No pretrained weights available"),
        "{}",
        text(&o)
    );
    assert_eq!(json(&o)["indexed"], 10);
    assert!(data.join("default/autoencoder/model.safetensors").exists());
    let q = json(&imgsim(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "query",
            photos.join("3.png").to_str().unwrap(),
            "-k",
            "1",
            "--json",
        ],
        cwd,
    ));
    assert!(
        q["results"][0]["path"].as_str().unwrap().ends_with("3.png"),
        "{q}"
    );
    let score = q["results"][0]["score"].as_f64().unwrap();
    let i = json(&imgsim(
        &["--data-dir", data.to_str().unwrap(), "info", "--json"],
        cwd,
    ));
    assert_eq!(i["embedder"]["spec"]["kind"], "autoencoder");
    (i, score)
}

#[test]
fn a_contrastive_encoder_is_trained_on_the_collection_when_no_weights_are_available() {
    // The offline default: contrastive, pooled features beside colour, cosine.
    let (i, score) = index_offline_and_query(None);
    assert!(score > 1.0 - 1e-3, "cosine similarity to itself: {score}");
    assert_eq!(
        i["embedder"]["identity"]["architecture"], "contrastive-cnn",
        "{i}"
    );
    assert_eq!(i["embedder"]["identity"]["metric"], "cosine", "{i}");
    assert_eq!(i["dim"], 64 + 512);
}

#[test]
fn the_reconstruction_autoencoder_stays_available_offline() {
    let (i, score) = index_offline_and_query(Some("reconstruction"));
    assert!(score < 1e-3, "L2 distance to itself: {score}");
    assert_eq!(
        i["embedder"]["identity"]["architecture"], "autoencoder",
        "{i}"
    );
    assert_eq!(i["embedder"]["identity"]["metric"], "l2", "{i}");
    assert_eq!(i["dim"], 64);
}

#[test]
fn killed_indexer_resumes_without_losing_or_duplicating() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let photos = cwd.join("photos");
    let n = 40;
    for i in 0..n {
        save(
            &picture(200 + i, 72, 72),
            &photos.join(format!("{i:03}.png")),
        );
    }
    let data = cwd.join("data");
    let data_s = data.to_str().unwrap();
    let photos_s = photos.to_str().unwrap();
    let mut args = data_args(data_s, &["index", photos_s, "--batch-size", "2"]);
    args.extend_from_slice(&BACKBONE);
    for round in 0..3 {
        let mut child = command(&args, cwd)
            .env("IMGSIM_LOG", "imgsim_pipeline=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Kill -9 right after the (round+1)-th batch commit it reports.
        let mut commits = 0;
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        for line in lines.by_ref() {
            if line.unwrap().contains("batch committed") {
                commits += 1;
                if commits > round {
                    break;
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            commits > round,
            "the indexer finished before it could be killed"
        );
    }
    let mut args = data_args(data_s, &["index", photos_s, "--json"]);
    args.extend_from_slice(&BACKBONE);
    let o = run(&args, cwd);
    assert!(o.status.success(), "{}", text(&o));
    let s = json(&o);
    // At least the reported commits (1 + 2 + 3 batches of 2) survived.
    assert!(s["unchanged"].as_u64().unwrap() >= 6, "{s}");
    assert_eq!(
        s["unchanged"].as_u64().unwrap() + s["indexed"].as_u64().unwrap(),
        n as u64,
        "{s}"
    );
    assert_eq!(s["total"], n, "no file indexed twice: {s}");
    let s = json(&run(&args, cwd));
    assert_eq!(s["unchanged"], n, "{s}");
}

#[test]
fn bad_roots_and_locked_collections_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let data_s = data.to_str().unwrap();
    // A folder that does not exist.
    let mut args = data_args(data_s, &["index", "/no/such/folder"]);
    args.extend_from_slice(&BACKBONE);
    let o = run(&args, cwd);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("/no/such/folder: no such file or folder"),
        "{}",
        text(&o)
    );
    // Querying a collection that does not exist.
    let o = run(&data_args(data_s, &["query", "x.jpg"]), cwd);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("no collection `default`") && text(&o).contains("imgsim index FOLDER"),
        "{}",
        text(&o)
    );

    // A symlink loop and a dangling link are reported, the rest indexed.
    let photos = cwd.join("photos");
    save(&picture(1, 64, 64), &photos.join("a.png"));
    std::os::unix::fs::symlink(&photos, photos.join("loop")).unwrap();
    std::os::unix::fs::symlink(cwd.join("gone.png"), photos.join("dangling.png")).unwrap();
    let mut args = data_args(data_s, &["index", photos.to_str().unwrap(), "--json"]);
    args.extend_from_slice(&BACKBONE);
    let o = run(&args, cwd);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let s = json(&o);
    assert_eq!(s["indexed"], 1, "{s}");
    let errs = s["errors"].to_string();
    assert!(errs.contains("loop"), "{errs}");
    assert!(errs.contains("dangling"), "{errs}");

    // A bad image given as the query: exit 2, the file named.
    std::fs::write(cwd.join("q.jpg"), b"not a jpeg").unwrap();
    let o = run(&data_args(data_s, &["query", "q.jpg"]), cwd);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("q.jpg"), "{}", text(&o));

    // Another process holds the collection: a clear error, then it works
    // again once released.
    let held = imgsim_index::Collection::open(
        &data.join("default"),
        imgsim_index::OpenOptions::default(),
        &|_, _, _| {},
    )
    .unwrap();
    let o = run(
        &data_args(data_s, &["query", photos.join("a.png").to_str().unwrap()]),
        cwd,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("locked by another process"),
        "{}",
        text(&o)
    );
    drop(held);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let o = run(
        &data_args(data_s, &["query", photos.join("a.png").to_str().unwrap()]),
        cwd,
    );
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_full_disk_stops_indexing_cleanly_and_the_next_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let Some(fs) = Tmpfs::mount(&cwd.join("small-disk"), "8m") else {
        // .ci/run runs as root; elsewhere this test cannot make a full disk.
        common::skip("cannot mount a tmpfs here (not root)");
        return;
    };
    let photos = cwd.join("photos");
    for i in 0..200 {
        save(
            &picture(300 + i, 64, 64),
            &photos.join(format!("{i:03}.png")),
        );
    }
    let data = fs.0.join("data");
    let (data_s, photos_s) = (data.to_str().unwrap(), photos.to_str().unwrap());
    let mut first: Vec<String> = data_args(data_s, &["index", "--json", "--batch-size", "2"])
        .iter()
        .map(|s| s.to_string())
        .collect();
    first.extend(BACKBONE.iter().map(|s| s.to_string()));
    let mut args = first.clone();
    for i in 0..6 {
        args.push(
            photos
                .join(format!("{i:03}.png"))
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(json(&run(&argv, cwd))["total"], 6);
    // Fill the disk, leaving 600 KiB: enough to open the collection, not
    // enough for the rest.
    let ballast = fs.0.join("ballast");
    let free = fs.free_kib();
    std::fs::write(
        &ballast,
        vec![0u8; ((free.saturating_sub(600)) * 1024) as usize],
    )
    .unwrap();
    let mut args = first.clone();
    args.push(photos_s.to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&argv, cwd);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("No space left on device"), "{t}");
    assert!(t.contains("run the same command again"), "{t}");
    // Space again: the collection opens, the first six are intact, the rest
    // is indexed, nothing twice.
    std::fs::remove_file(&ballast).unwrap();
    let s = json(&run(&argv, cwd));
    assert_eq!(s["total"], 200, "{s}");
    assert!(s["unchanged"].as_u64().unwrap() >= 6, "{s}");
    let o = run(
        &data_args(
            data_s,
            &[
                "query",
                photos.join("003.png").to_str().unwrap(),
                "-k",
                "1",
                "--json",
            ],
        ),
        cwd,
    );
    let q = json(&o);
    assert!(
        q["results"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("003.png"),
        "{q}"
    );
}

#[test]
fn ctrl_c_stops_after_the_batch_in_flight_and_the_env_selects_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let photos = cwd.join("photos");
    let n = 40;
    for i in 0..n {
        save(
            &picture(500 + i, 72, 72),
            &photos.join(format!("{i:03}.png")),
        );
    }
    let data = cwd.join("env-data");
    let mut args = vec![
        "index",
        photos.to_str().unwrap(),
        "--batch-size",
        "2",
        "--json",
    ];
    args.extend_from_slice(&BACKBONE);
    let mut child = command(&args, cwd)
        .env("IMGSIM_DATA_DIR", &data)
        .env("IMGSIM_LOG", "imgsim_pipeline=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("batch committed") {
            break;
        }
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", rest.join("\n"));
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:?}");
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["interrupted"], true, "{s}");
    let done = s["total"].as_u64().unwrap();
    assert!(done >= 2 && done < n as u64, "{s}");
    // IMGSIM_DATA_DIR chose the data directory; the next run finishes.
    assert!(data.join("default").exists());
    let o = command(&args, cwd)
        .env("IMGSIM_DATA_DIR", &data)
        .output()
        .unwrap();
    let s = json(&o);
    assert_eq!(s["unchanged"].as_u64().unwrap(), done, "{s}");
    assert_eq!(s["total"], n, "{s}");
}

#[test]
fn unreadable_folders_and_files_are_reported_and_skipped() {
    // Permissions do not bind root, so the indexer runs as `nobody`
    // (setpriv, util-linux) when the tests run as root, as in CI.
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let have_setpriv = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if is_root && !have_setpriv {
        common::skip("running as root without setpriv");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::set_permissions(cwd, std::fs::Permissions::from_mode(0o755)).unwrap();
    let photos = cwd.join("photos");
    save(&picture(1, 64, 64), &photos.join("ok.png"));
    save(&picture(2, 64, 64), &photos.join("locked/hidden.png"));
    save(&picture(3, 64, 64), &photos.join("secret.png"));
    let data = cwd.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(
        photos.join("locked"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::set_permissions(
        photos.join("secret.png"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    // A copy of the binary where `nobody` can run it (the checkout may be
    // in a private home folder).
    let bin = cwd.join("imgsim");
    std::fs::copy(env!("CARGO_BIN_EXE_imgsim"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut args = vec![
        bin.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "index",
        photos.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(&BACKBONE);
    let mut cmd = if is_root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        c.args(&args);
        c
    } else {
        let mut c = std::process::Command::new(args[0]);
        c.args(&args[1..]);
        c
    };
    let o = cmd
        .current_dir(cwd)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", data.join("hf"))
        .env_remove("IMGSIM_DATA_DIR")
        .env_remove("IMGSIM_CONFIG")
        .output()
        .unwrap();
    std::fs::set_permissions(
        photos.join("locked"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let s = json(&o);
    assert_eq!(s["indexed"], 1, "{s}");
    let errors = s["errors"].as_array().unwrap();
    let denied = |name: &str| {
        errors.iter().any(|e| {
            e["path"].as_str().unwrap().ends_with(name)
                && e["error"].as_str().unwrap().contains("permission denied")
        })
    };
    assert!(denied("locked"), "{s}");
    assert!(denied("secret.png"), "{s}");
}

/// Issue 13: the indexer writes each image's thumbnail while it has the
/// decoded image, so browsing a freshly indexed collection decodes
/// nothing; a file that changes gets a new item, and its old thumbnail goes.
#[test]
fn thumbnails_exist_right_after_indexing() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let photos = cwd.join("photos");
    save(&picture(1, 640, 480), &photos.join("wide.png"));
    save(&picture(2, 200, 300), &photos.join("tall.png"));
    save(&picture(3, 40, 30), &photos.join("small.png"));
    let data = cwd.join("data");
    let d = data.to_str().unwrap();
    let p = photos.to_str().unwrap();
    let mut args = data_args(d, &["index", p]);
    args.extend_from_slice(&BACKBONE);
    let o = run(&args, cwd);
    assert!(o.status.success(), "{}", text(&o));
    let thumbs = data.join("default/thumbs");
    let listed = |dir: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let before = listed(&thumbs);
    assert_eq!(before.len(), 3, "{before:?}");
    let mut sizes = Vec::new();
    for t in &before {
        assert_eq!(t.extension().unwrap(), "jpg");
        let img = image::open(t).unwrap();
        sizes.push((img.width(), img.height()));
    }
    sizes.sort();
    assert_eq!(sizes, vec![(40, 30), (171, 256), (256, 192)]);
    // Changed: a new item and its thumbnail; the old thumbnail is removed.
    save(&picture(4, 640, 480), &photos.join("wide.png"));
    let o = run(&args, cwd);
    assert!(o.status.success(), "{}", text(&o));
    let after = listed(&thumbs);
    assert_eq!(after.len(), 3, "{after:?}");
    assert_ne!(before, after);
}

#[test]
fn a_quantized_collection_is_chosen_by_config_and_answers_with_exact_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let photos = photo_folder(cwd);
    let data = cwd.join("data");
    let data = data.to_str().unwrap();
    let mut args = data_args(data, &["index", photos.to_str().unwrap(), "--json"]);
    args.extend_from_slice(&BACKBONE);
    // A tiny seal threshold so that the photos land in a sealed (quantized) segment.
    let o = command(&args, cwd)
        .env("IMGSIM_INDEX_QUANTIZATION", "sq8")
        .env("IMGSIM_STORAGE_SEAL_THRESHOLD", "2")
        .output()
        .unwrap();
    // The broken files of the folder are reported (and make the exit code say so).
    assert_eq!(json(&o)["indexed"], 6, "{}", text(&o));
    // The choice is the collection's own: later runs need no setting.
    let i = json(&run(&data_args(data, &["info", "--json"]), cwd));
    assert_eq!(i["index"]["quantization"], "sq8", "{i}");
    assert!(i["mapped_bytes"].as_u64().unwrap() > 0, "{i}");
    assert!(i["memory_bytes_per_vector"].as_f64().unwrap() > 0.0, "{i}");
    let o = run(&data_args(data, &["info"]), cwd);
    assert!(text(&o).contains("quantization=sq8"), "{}", text(&o));
    assert!(
        text(&o).contains("memory-mapped for rescoring"),
        "{}",
        text(&o)
    );
    let p4 = photos.join("sub/p4.jpg");
    let q = json(&run(
        &data_args(
            data,
            &[
                "query",
                p4.to_str().unwrap(),
                "-k",
                "3",
                "--exact",
                "--json",
            ],
        ),
        cwd,
    ));
    let results = q["results"].as_array().unwrap();
    assert!(
        results[0]["path"].as_str().unwrap().ends_with("sub/p4.jpg"),
        "{q}"
    );
    assert!(
        (results[0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-4,
        "{q}"
    );
    assert_eq!(q["recall_at_k"], 1.0, "{q}");
    // A wrong spelling is refused before any work, naming the setting.
    let o = command(&data_args(data, &["info"]), cwd)
        .env("IMGSIM_INDEX_QUANTIZATION", "pq")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("quantization"), "{}", text(&o));
}
