//! The front door, as a new user meets it (issue 12): the default data
//! folder and a missing collection, usage errors (exit 2, one line),
//! `--help` and completions, exclusions and `--errors`, transparent images,
//! `dups` acting on its groups, and `config` hiding the api key.

mod common;
use common::{command, imgsim, picture, save, text};

use std::path::Path;

/// The last non-empty line of stderr.
fn error_line(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}

/// Indexes `photos` into `data` (see [`common::index_photos`]).
fn index(cwd: &Path, data: &Path, photos: &Path, extra: &[&str]) -> std::process::Output {
    common::index_photos(cwd, data, photos, extra)
}

/// Regression: after `tools/demo.sh` (which wrote ./imgsim-data) a plain
/// `imgsim query` looked in the platform folder and said only "does not
/// exist". The default is the same everywhere (HOME's data folder), and a
/// missing collection lists those that exist.
#[test]
fn one_default_data_folder_and_a_missing_collection_lists_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let home = cwd.join("home");
    let photos = cwd.join("photos");
    for i in 0..3 {
        save(&picture(10 + i, 48, 48), &photos.join(format!("{i}.png")));
    }
    let run = |args: &[&str]| {
        command(args, cwd)
            .env("HOME", &home)
            .env_remove("XDG_DATA_HOME")
            .output()
            .unwrap()
    };
    let o = run(&[
        "index",
        photos.to_str().unwrap(),
        "--collection",
        "holiday",
        "--backbone",
        "mobilenetv4-small",
        "--weights",
        "synthetic:1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(home.join(".local/share/imgsim/holiday").is_dir());
    // The same default finds it.
    let q = photos.join("0.png");
    let o = run(&["query", q.to_str().unwrap(), "-c", "holiday", "-k", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    // A collection that is not there: exit 2, and the ones that are, named.
    let o = run(&["query", q.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let line = error_line(&o);
    assert!(
        line.contains("no collection `default`") && line.contains("collections there: holiday"),
        "{line}"
    );
    assert!(line.contains(".local/share/imgsim"), "{line}");
}

/// Regression: `query -k 0` exited 1 (usage errors are 2) and `-k 100000`
/// was accepted though the API caps k at 1000; `serve --bind
/// localhost:PORT` was refused; a bad IMGSIM_* value printed a TOML snippet.
#[test]
fn usage_errors_exit_2_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let photos = cwd.join("photos");
    save(&picture(1, 48, 48), &photos.join("a.png"));
    save(&picture(2, 48, 48), &photos.join("b.png"));
    assert!(index(cwd, &data, &photos, &[]).status.success());
    let d = data.to_str().unwrap();
    let q = photos.join("a.png");
    let q = q.to_str().unwrap();
    for k in ["0", "100000", "ten"] {
        let o = imgsim(&["--data-dir", d, "query", q, "-k", k], cwd);
        assert_eq!(o.status.code(), Some(2), "-k {k}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.lines().next().unwrap().contains("-k"), "{err}");
    }
    let o = imgsim(&["--data-dir", d, "query", q, "-k", "1000"], cwd);
    assert!(o.status.success(), "{}", text(&o));
    // A bad environment value: the variable and what it should be, no snippet.
    let o = command(&["--data-dir", d, "info"], cwd)
        .env("IMGSIM_INDEX_M", "sixteen")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("IMGSIM_INDEX_M") && err.contains("whole number"),
        "{err}"
    );
    assert!(!err.contains('|') && !err.contains('^'), "{err}");
    // Out of range in a config file: refused, naming the file and the key.
    let cfg = cwd.join("bad.toml");
    std::fs::write(&cfg, "[index]\nm = 1\n").unwrap();
    let o = imgsim(&["--config", cfg.to_str().unwrap(), "info"], cwd);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = error_line(&o);
    assert!(err.contains("index.m") && err.contains("bad.toml"), "{err}");
    // An address that is not one: exit 2, saying what is expected.
    let o = imgsim(&["--data-dir", d, "serve", "--bind", "nowhere"], cwd);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(error_line(&o).contains("HOST:PORT"), "{}", text(&o));
}

/// `serve --bind localhost:PORT` is accepted (host names are resolved).
#[test]
fn serve_accepts_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let port = common::free_port();
    let mut child = command(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "serve",
            "--bind",
            &format!("localhost:{port}"),
        ],
        cwd,
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let ready = common::wait_ready(&format!("127.0.0.1:{port}"), &mut child, 30);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(ready, "{}", String::from_utf8_lossy(&out.stderr));
}

/// `--help` lists the commands in the order a user needs them, with
/// examples; every backbone is listed; completions are generated.
#[test]
fn help_orders_commands_lists_backbones_and_completions_work() {
    let dir = tempfile::tempdir().unwrap();
    let o = imgsim(&["--help"], dir.path());
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    let pos = |c: &str| {
        help.find(&format!("\n  {c} "))
            .unwrap_or_else(|| panic!("{c} not in {help}"))
    };
    let order = [
        "index",
        "query",
        "serve",
        "dups",
        "info",
        "check",
        "remove",
        "compact",
        "embed",
        "models",
        "config",
        "bench",
        "train",
        "eval",
        "completions",
    ];
    for w in order.windows(2) {
        assert!(pos(w[0]) < pos(w[1]), "{} before {}: {help}", w[0], w[1]);
    }
    for c in ["index", "query", "serve", "dups"] {
        let o = imgsim(&[c, "--help"], dir.path());
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Examples:"),
            "{c} --help has examples"
        );
    }
    let o = imgsim(&["embed", "--help"], dir.path());
    let h = String::from_utf8_lossy(&o.stdout);
    for b in [
        "resnet18",
        "resnet50",
        "mobilenetv4-small",
        "dinov2-small",
        "clip-b32",
    ] {
        assert!(h.contains(b), "{b} in embed --help: {h}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let o = imgsim(&["completions", shell], dir.path());
        assert!(o.status.success(), "{}", text(&o));
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(s.contains("imgsim") && s.contains("dups"), "{shell}: {s}");
    }
    let o = imgsim(&["completions", "powershell9"], dir.path());
    assert_eq!(o.status.code(), Some(2));
}

/// Hidden files and folders and @eaDir are skipped; --exclude and
/// .imgsimignore leave out what they match; --errors lists what was not
/// indexed (failed, and not images).
#[test]
fn exclusions_and_the_errors_file() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let photos = cwd.join("photos");
    save(&picture(1, 48, 48), &photos.join("a.png"));
    save(&picture(2, 48, 48), &photos.join(".thumbnails/t.png"));
    save(&picture(3, 48, 48), &photos.join("._a.png"));
    save(&picture(4, 48, 48), &photos.join("@eaDir/a.png/thumb.png"));
    save(&picture(5, 48, 48), &photos.join("screens/s.png"));
    save(&picture(6, 48, 48), &photos.join("raw/r.png"));
    save(&picture(7, 48, 48), &photos.join("keep/k.png"));
    std::fs::write(photos.join("raw/.imgsimignore"), "*.png\n").unwrap();
    std::fs::write(photos.join("notes.txt"), "not a picture").unwrap();
    std::fs::write(photos.join("broken.jpg"), b"\xFF\xD8\xFF\xE0 truncated").unwrap();
    let errors = cwd.join("errors.json");
    let o = index(
        cwd,
        &data,
        &photos,
        &[
            "--exclude",
            "screens/",
            "--errors",
            errors.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "one file failed: {}", text(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["indexed"], 2, "a.png and keep/k.png: {summary}");
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&errors).unwrap()).unwrap();
    let find = |name: &str| {
        listed
            .iter()
            .find(|e| e["path"].as_str().unwrap().ends_with(name))
            .map(|e| e["error"].as_str().unwrap().to_string())
    };
    assert!(find("broken.jpg").is_some(), "{listed:?}");
    assert_eq!(find("notes.txt").as_deref(), Some("not an image"));
    assert!(find("t.png").is_none() && find("s.png").is_none());
    // --hidden takes the hidden ones (and @eaDir) too.
    let o = index(
        cwd,
        &data,
        &photos,
        &["--hidden", "--exclude", "screens/", "--json"],
    );
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        summary["indexed"], 3,
        "t.png, ._a.png, thumb.png: {summary}"
    );
}

/// Regression: five wallpapers that differ only in alpha were exact
/// duplicates (distance 0) because alpha was dropped. They are composited
/// onto one background first, so they differ.
#[test]
fn images_differing_only_in_alpha_are_not_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let photos = cwd.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let rgb = picture(9, 64, 64);
    for (i, a) in [255u8, 200, 140, 80, 20].iter().enumerate() {
        let img = image::RgbaImage::from_fn(64, 64, |x, y| {
            let p = rgb.get_pixel(x, y).0;
            // A soft alpha ramp, different per image.
            let ramp = ((x + y) * 2).min(255) as u8;
            image::Rgba([p[0], p[1], p[2], a.saturating_sub(ramp / 4)])
        });
        img.save(photos.join(format!("w{i}.png"))).unwrap();
    }
    assert!(index(cwd, &data, &photos, &[]).status.success());
    let o = imgsim(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "dups",
            "--threshold",
            "0.999999",
            "--json",
        ],
        cwd,
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["groups"].as_array().unwrap().len(), 0, "{v}");
}

/// `dups --move-to` is a dry run without --apply; with it, the copies move
/// and leave the collection, the largest stays.
#[test]
fn dups_moves_the_copies_only_when_applied() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let photos = cwd.join("photos");
    let img = picture(4, 64, 64);
    save(&img, &photos.join("small.png"));
    // The same picture, larger file (a text chunk-free 16-bit PNG).
    image::DynamicImage::ImageRgb8(img.clone())
        .into_rgb16()
        .save(photos.join("large.png"))
        .unwrap();
    save(&picture(50, 64, 64), &photos.join("other.png"));
    assert!(index(cwd, &data, &photos, &[]).status.success());
    let d = data.to_str().unwrap();
    let target = cwd.join("dups");
    let t = target.to_str().unwrap();
    // Random weights make every picture look alike: only exact copies count.
    let strict = ["--threshold", "0.99999"];
    let o = imgsim(
        &[&["--data-dir", d, "dups", "--move-to", t], &strict[..]].concat(),
        cwd,
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("would move") && out.contains("dry run"),
        "{out}"
    );
    assert!(photos.join("small.png").exists() && !target.exists());
    let o = imgsim(
        &[
            &["--data-dir", d, "dups", "--move-to", t, "--apply"],
            &strict[..],
        ]
        .concat(),
        cwd,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(!photos.join("small.png").exists(), "{}", text(&o));
    assert!(target.join("small.png").exists() && photos.join("large.png").exists());
    let o = imgsim(&["--data-dir", d, "info", "--json"], cwd);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["count"], 2, "{info}");
}

/// `imgsim config` never prints the api key.
#[test]
fn config_hides_the_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let o = command(&["config"], dir.path())
        .env("IMGSIM_SERVER_API_KEY", "hunter2-secret")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("hunter2-secret"), "{out}");
    assert!(out.contains("api_key is set"), "{out}");
}
