//! The search page in a real browser: headless Chromium (Debian package
//! `chromium`) driven by Playwright (npm `playwright-core`, installed into
//! tests/browser/ by tools/ci/install-deps.sh): load the page, upload an image,
//! see the results, click one; search a CLIP collection by words and filter
//! by a zero-shot label.

mod common;
use common::{command, text};

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stops the server when the test ends, pass or fail.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn save(seed: u32, path: &Path) {
    image::RgbImage::from_fn(96, 72, |x, y| {
        let v = |k: u32| ((x * k + y * (seed + 3) + seed * 41) % 256) as u8;
        image::Rgb([v(seed + 2), v(seed * 3 + 1), v(11)])
    })
    .save(path)
    .unwrap();
}

/// Checks the browser test's tools are installed.
fn tools(root: &Path) {
    assert!(
        root.join("tests/browser/node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `bash tools/ci/install-deps.sh` (npm install --prefix tests/browser)"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists() || std::env::var_os("CHROMIUM").is_some(),
        "no Chromium: run `bash tools/ci/install-deps.sh` (Debian package chromium)"
    );
}

/// Serves `data` on a free loopback port until dropped; its address.
fn serve(data: &Path, cwd: &Path) -> (Server, String) {
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let server = command(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "serve",
            "--bind",
            &bind,
        ],
        cwd,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let server = Server(server);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&bind).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, bind)
}

/// Runs a Playwright script with `args`; it must succeed and print `OK:`.
fn drive(root: &Path, script: &Path, args: &[&str]) {
    let o = std::process::Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(root.join("tests/browser"))
        .output()
        .expect("node runs");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("OK:"),
        "{}",
        text(&o)
    );
}

#[test]
fn search_page_uploads_an_image_and_clicks_a_result() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/browser/search_page.mjs");
    tools(root);
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let photos = cwd.join("photos");
    std::fs::create_dir(&photos).unwrap();
    for i in 0..6 {
        save(i, &photos.join(format!("img{i}.png")));
    }
    let data = cwd.join("data");
    let o = common::index_photos(cwd, &data, &photos, &[]);
    assert!(o.status.success(), "{}", text(&o));

    let (_server, bind) = serve(&data, cwd);

    let image = photos.join("img3.png");
    drive(
        root,
        &script,
        &[
            &format!("http://{bind}/"),
            image.to_str().unwrap(),
            "img3.png",
        ],
    );
}

#[test]
fn search_page_searches_by_words_and_filters_by_label() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    tools(root);
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let photos = cwd.join("photos");
    std::fs::create_dir(&photos).unwrap();
    for i in 0..10 {
        save(i, &photos.join(format!("img{i}.png")));
    }
    let data = cwd.join("data");
    let d = data.to_str().unwrap();
    // A collection without a text tower, and a CLIP one with labels.
    let o = common::index_photos(cwd, &data, &photos, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let p = photos.to_str().unwrap();
    for args in [
        vec![
            "--data-dir",
            d,
            "index",
            p,
            "--collection",
            "clip",
            "--backbone",
            "clip-b32",
            "--weights",
            "synthetic:3",
        ],
        vec![
            "--data-dir",
            d,
            "tag",
            "--collection",
            "clip",
            "--labels",
            "red,green,blue",
            "--top",
            "2",
            "--min-score",
            "0",
        ],
    ] {
        let o = common::imgsim(&args, cwd);
        assert!(o.status.success(), "{}", text(&o));
    }
    let (_server, bind) = serve(&data, cwd);
    drive(
        root,
        &root.join("tests/browser/text_search.mjs"),
        &[&format!("http://{bind}/"), "clip", "default"],
    );
}
