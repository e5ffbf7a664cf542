//! One owner, many clients (issue 13): while `imgsim serve` owns a data
//! directory, the collection commands work through it and print what they
//! print offline (compared with a twin collection worked on directly);
//! indexing through it is confined to `[server] library_roots`; a second
//! server, or a direct writer, is refused; the owner record is removed on
//! a clean stop and a stale one is ignored.

mod common;
use common::{command, free_port, imgsim, indexed_collection, picture, save, text, wait_ready};

use std::path::{Path, PathBuf};
use std::process::{Child, Output};

/// A running `imgsim serve`, stopped (SIGKILL) if the test ends early.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `imgsim serve` on `data` at `addr` with `config`.
fn serve(cwd: &Path, data: &Path, config: &Path, addr: &str) -> Server {
    let mut child = command(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "serve",
            "--bind",
            addr,
        ],
        cwd,
    )
    .env_remove("IMGSIM_SERVER_API_KEY")
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    assert!(
        wait_ready(addr, &mut child, 120),
        "the server did not start"
    );
    Server(child)
}

/// Copies a folder tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// `imgsim --data-dir DATA ARGS` in `cwd`.
fn on(data: &Path, args: &[&str], cwd: &Path) -> Output {
    let mut all = vec!["--data-dir", data.to_str().unwrap()];
    all.extend_from_slice(args);
    command(&all, cwd)
        .env_remove("IMGSIM_SERVER_API_KEY")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// `v` without the keys that differ between two runs (times, the data
/// directory, disk use).
fn steady(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(m) = v.as_object_mut() {
        for k in [
            "seconds",
            "pipeline_seconds",
            "embed_seconds",
            "images_per_s",
            "embed_images_per_s",
            "path",
            "disk_bytes",
            "memory_bytes",
            "took_ms",
            "timings",
        ] {
            m.remove(k);
        }
    }
    v
}

/// Text output with the figures that differ between runs (times, disk
/// use) cut off the lines that carry them.
fn steady_text(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| {
            let cut = [";", " results in ", ", disk "]
                .iter()
                .filter_map(|m| l.find(m))
                .min();
            l[..cut.unwrap_or(l.len())].to_string()
        })
        .collect()
}

#[test]
fn the_cli_works_through_a_running_server_as_it_does_offline() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let twin = cwd.join("twin");
    indexed_collection(cwd, &data, 100);
    copy_dir(&data, &twin);
    // The folder to index: three new pictures and an exact copy of one (a
    // duplicate group), one damaged PNG (exit 3), one text file (not an
    // image).
    let library = cwd.join("library");
    let new = library.join("new");
    for i in 0..3 {
        save(&picture(200 + i, 64, 64), &new.join(format!("{i}.png")));
    }
    std::fs::copy(new.join("2.png"), new.join("copy.png")).unwrap();
    std::fs::write(new.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    std::fs::write(new.join("notes.txt"), b"not an image").unwrap();
    let outside = cwd.join("outside");
    save(&picture(300, 64, 64), &outside.join("x.png"));
    let config = cwd.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlibrary_roots = [{:?}]\n",
            library.to_str().unwrap()
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let server = serve(cwd, &data, &config, &addr);

    // The owner record and the token file, readable by this user only.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join(".imgsim-server.json")).unwrap()).unwrap();
    assert_eq!(record["url"], format!("http://{addr}"));
    assert_eq!(record["pid"], server.0.id());
    let token_file = PathBuf::from(record["token_file"].as_str().unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap().trim().len(),
        64
    );

    // index: the same summary and exit code (3: a file failed) as offline.
    let new_s = new.to_str().unwrap();
    let remote = on(&data, &["index", new_s], cwd);
    let offline = on(&twin, &["index", new_s], cwd);
    assert_eq!(remote.status.code(), Some(3), "{}", text(&remote));
    assert_eq!(offline.status.code(), Some(3), "{}", text(&offline));
    assert_eq!(
        steady_text(&stdout(&remote)),
        steady_text(&stdout(&offline)),
        "{}",
        text(&remote)
    );
    assert!(
        stdout(&remote).contains("1 duplicates, 1 failed, 1 not images"),
        "{}",
        text(&remote)
    );
    let remote = on(&data, &["index", new_s, "--json"], cwd);
    let offline = on(&twin, &["index", new_s, "--json"], cwd);
    assert_eq!(remote.status.code(), Some(3), "{}", text(&remote));
    assert_eq!(steady(json(&remote)), steady(json(&offline)));
    assert_eq!(json(&remote)["unchanged"], 4);

    // query, info, dups, check: the same answers.
    let q = new.join("0.png");
    let q = q.to_str().unwrap();
    let remote = on(&data, &["query", q, "-k", "3", "--exact"], cwd);
    let offline = on(&twin, &["query", q, "-k", "3", "--exact"], cwd);
    assert!(remote.status.success(), "{}", text(&remote));
    assert_eq!(
        steady_text(&stdout(&remote)),
        steady_text(&stdout(&offline))
    );
    let remote = on(&data, &["query", "--id", "1", "--json"], cwd);
    let offline = on(&twin, &["query", "--id", "1", "--json"], cwd);
    assert_eq!(steady(json(&remote)), steady(json(&offline)));
    for args in [
        &["info", "--json"][..],
        &["dups", "--json"],
        &["check", "--json"],
    ] {
        let remote = on(&data, args, cwd);
        let offline = on(&twin, args, cwd);
        assert_eq!(remote.status.code(), offline.status.code(), "{args:?}");
        assert!(remote.status.success(), "{args:?}: {}", text(&remote));
        assert_eq!(steady(json(&remote)), steady(json(&offline)), "{args:?}");
    }
    let remote = on(&data, &["info"], cwd);
    assert!(
        stdout(&remote).contains("images      8"),
        "{}",
        text(&remote)
    );
    // dups: the same groups and the same plan (a dry run).
    let plan = ["dups", "--move-to", "library/dupes"];
    let remote = on(&data, &plan, cwd);
    let offline = on(&twin, &plan, cwd);
    assert!(remote.status.success(), "{}", text(&remote));
    assert_eq!(stdout(&remote), stdout(&offline));
    assert!(stdout(&remote).contains("would move"), "{}", text(&remote));
    // ... but the server moves files only inside library_roots.
    let o = on(
        &data,
        &["dups", "--move-to", "outside/dupes", "--apply"],
        cwd,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("403"), "{}", text(&o));
    assert!(new.join("copy.png").exists() && new.join("2.png").exists());

    // remove (a path relative to the client's folder), compact.
    let rel = Path::new("library/new/1.png");
    let remote = on(&data, &["remove", rel.to_str().unwrap()], cwd);
    let offline = on(&twin, &["remove", rel.to_str().unwrap()], cwd);
    assert!(remote.status.success(), "{}", text(&remote));
    assert_eq!(stdout(&remote), stdout(&offline));
    assert!(stdout(&remote).starts_with("removed 1; 7 images left"));
    let remote = on(&data, &["compact"], cwd);
    let offline = on(&twin, &["compact"], cwd);
    assert!(remote.status.success(), "{}", text(&remote));
    assert_eq!(
        steady_text(&stdout(&remote)),
        steady_text(&stdout(&offline))
    );
    // tag: this collection has no text tower; the same refusal (exit 2).
    let remote = on(&data, &["tag", "--labels", "a,b"], cwd);
    let offline = on(&twin, &["tag", "--labels", "a,b"], cwd);
    assert_eq!(remote.status.code(), Some(2), "{}", text(&remote));
    assert_eq!(offline.status.code(), Some(2), "{}", text(&offline));

    // A folder outside library_roots: 403, named, and a failure exit.
    let o = on(&data, &["index", outside.to_str().unwrap()], cwd);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("403") && t.contains("library_roots") && t.contains("outside"),
        "{t}"
    );
    // `..` does not get out either.
    let sneaky = library.join("../outside");
    let o = on(&data, &["index", sneaky.to_str().unwrap()], cwd);
    assert!(text(&o).contains("403"), "{}", text(&o));

    // A second server on the same data directory fails, naming the first.
    let other = format!("127.0.0.1:{}", free_port());
    let o = command(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "serve",
            "--bind",
            &other,
        ],
        cwd,
    )
    .output()
    .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains(&format!("http://{addr}")), "{}", text(&o));

    // A direct writer while the server owns the collection: locked, and
    // the error names the server. (The record is pointed at a port where
    // nothing answers, so the client does not go through the server.)
    let mut fake = record.clone();
    fake["url"] = format!("http://127.0.0.1:{}", free_port()).into();
    std::fs::write(
        data.join(".imgsim-server.json"),
        serde_json::to_vec(&fake).unwrap(),
    )
    .unwrap();
    let o = on(&data, &["remove", "1"], cwd);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("locked") && t.contains("owned by imgsim serve"),
        "{t}"
    );
    std::fs::write(
        data.join(".imgsim-server.json"),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();

    // A clean stop removes the record and the token.
    let pid = server.0.id() as i32;
    // SAFETY: sending SIGTERM to the child this test started.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let mut server = server;
    let status = server.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!data.join(".imgsim-server.json").exists());
    assert!(!token_file.exists());

    // A stale record (a dead process) is ignored: the command opens the
    // collection itself; the next server overwrites it.
    let stale = serde_json::json!({
        "pid": 999_999_999u32,
        "url": format!("http://127.0.0.1:{}", free_port()),
        "started_unix_ms": 1,
        "token_file": data.join(".imgsim-server.token"),
    });
    std::fs::write(
        data.join(".imgsim-server.json"),
        serde_json::to_vec(&stale).unwrap(),
    )
    .unwrap();
    let o = on(&data, &["info", "--json"], cwd);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json(&o)["count"], 7);
    let addr = format!("127.0.0.1:{}", free_port());
    let server = serve(cwd, &data, &config, &addr);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join(".imgsim-server.json")).unwrap()).unwrap();
    assert_eq!(record["pid"], server.0.id());
    // --server names it explicitly too.
    let o = imgsim(
        &[
            "--data-dir",
            twin.to_str().unwrap(),
            "--server",
            &format!("http://{addr}"),
            "info",
            "--json",
        ],
        cwd,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json(&o)["path"], serde_json::json!(data.join("default")));
}
