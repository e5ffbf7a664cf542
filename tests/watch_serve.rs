//! `imgsim serve --watch DIR` end to end, on a loopback port: the missing
//! collection is created as `imgsim index` would create it, the folder's
//! images are indexed at start, images copied in become searchable and
//! deleted ones leave, and `/stats` and `/metrics` show the watcher.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{command, free_port, http, picture, save, wait_ready, Running};

/// Waits (30 s at most) until `done` holds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "not within 30 s: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stats(addr: &str) -> serde_json::Value {
    http(addr, "GET /collections/default/stats HTTP/1.1", b"")
        .unwrap()
        .json()
}

/// The path of the nearest neighbour of the image at `file`.
fn nearest(addr: &str, file: &Path) -> String {
    let bytes = std::fs::read(file).unwrap();
    let a = http(
        addr,
        "POST /collections/default/search?k=1 HTTP/1.1\nContent-Type: image/png",
        &bytes,
    )
    .unwrap();
    if a.status != 200 {
        return String::new();
    }
    a.json()["results"][0]["path"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn watched_folders_are_indexed_followed_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let inbox = cwd.join("inbox");
    let staging = cwd.join("staging");
    for i in 0..2 {
        save(&picture(i, 64, 64), &inbox.join(format!("old-{i}.png")));
    }
    for i in 0..3 {
        save(
            &picture(10 + i, 64, 64),
            &staging.join(format!("new-{i}.png")),
        );
    }
    let addr = format!("127.0.0.1:{}", free_port());
    let child = command(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "serve",
            "--bind",
            &addr,
            "--watch",
            inbox.to_str().unwrap(),
        ],
        cwd,
    )
    .env("IMGSIM_EMBED_BACKBONE", "mobilenetv4-small")
    .env("IMGSIM_EMBED_WEIGHTS", "synthetic:1")
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let mut server = Running(child);
    assert!(
        wait_ready(&addr, &mut server.0, 60),
        "the server did not start"
    );
    // The first pass.
    eventually("the folder's images indexed at start", || {
        stats(&addr)["count"] == 2
    });
    let s = stats(&addr);
    assert_eq!(
        s["embedder"]["spec"]["backbone"], "mobilenetv4-small",
        "created with the configured embedder: {s}"
    );
    // Copied in: searchable.
    let inbox = std::fs::canonicalize(&inbox).unwrap();
    for i in 0..3 {
        let name = format!("new-{i}.png");
        std::fs::copy(staging.join(&name), inbox.join(&name)).unwrap();
    }
    for i in 0..3 {
        let file = inbox.join(format!("new-{i}.png"));
        eventually("a copied image searchable", || {
            nearest(&addr, &file) == file.to_str().unwrap()
        });
    }
    // Deleted: gone.
    for i in 0..3 {
        std::fs::remove_file(inbox.join(format!("new-{i}.png"))).unwrap();
    }
    // The watcher counts a removal once its batch is done, a moment after
    // the delete is committed.
    eventually("deleted images removed", || {
        let s = stats(&addr);
        s["count"] == 2 && s["watch"]["removed"] == 3
    });
    for i in 0..3 {
        let file = staging.join(format!("new-{i}.png"));
        assert!(
            nearest(&addr, &file).contains("old-"),
            "the deleted copy is not found any more"
        );
    }
    let w = &stats(&addr)["watch"];
    assert_eq!(w["folders"][0], inbox.to_str().unwrap(), "{w}");
    assert_eq!(w["indexed"], 5, "{w}");
    assert_eq!(w["removed"], 3, "{w}");
    assert_eq!(w["failed"], 0, "{w}");
    assert_eq!(w["notifications"], true, "{w}");
    assert!(w["last_scan_unix_s"].as_u64().is_some(), "{w}");
    let m = http(&addr, "GET /metrics HTTP/1.1", b"").unwrap().text();
    assert!(
        m.contains("imgsim_watch_indexed_total{collection=\"default\"} 5"),
        "{m}"
    );
    assert!(
        m.contains("imgsim_watch_queued{collection=\"default\"} 0"),
        "{m}"
    );
}
