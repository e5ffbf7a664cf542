//! The small harness the end-to-end tests share: run the `imgsim` binary in
//! a folder with a clean environment, and read what it printed.
#![allow(dead_code)] // each test binary uses a different part

#[allow(dead_code)]
pub mod corpus;
#[allow(dead_code)]
pub mod formats;
#[allow(dead_code)]
pub mod labelled;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::process::{Command, Output};

/// Runs `imgsim ARGS` in `cwd`, with the collection, config and server
/// environment cleared and the Hugging Face Hub offline (cache under `cwd`).
#[allow(dead_code)] // not every test binary uses it
pub fn imgsim(args: &[&str], cwd: &Path) -> Output {
    command(args, cwd).output().expect("imgsim runs")
}

/// The command [`imgsim`] runs, to add environment or spawn it.
#[allow(dead_code)] // not every test binary spawns
pub fn command(args: &[&str], cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imgsim"));
    c.args(args)
        .current_dir(cwd)
        .env_remove("IMGSIM_DATA_DIR")
        .env_remove("IMGSIM_CONFIG")
        .env_remove("IMGSIM_COLLECTION")
        .env_remove("IMGSIM_LOG")
        .env_remove("IMGSIM_SERVER")
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", cwd.join("hf-home"));
    c
}

/// stdout then stderr, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A distinct, deterministic photo-like image: a coloured gradient with a
/// bright disc and noise, different for every `seed`.
#[allow(dead_code)]
pub fn picture(seed: u32, w: u32, h: u32) -> image::RgbImage {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(12_345);
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let (r0, g0, b0) = (
        (rnd() % 200) as f32,
        (rnd() % 200) as f32,
        (rnd() % 200) as f32,
    );
    let (cx, cy, rad) = (rnd() % w, rnd() % h, 10 + rnd() % (w / 3));
    image::RgbImage::from_fn(w, h, |x, y| {
        let t = (x + y) as f32 / (w + h) as f32;
        let inside =
            (x as i64 - cx as i64).pow(2) + (y as i64 - cy as i64).pow(2) < (rad as i64).pow(2);
        let n = (rnd() % 24) as f32;
        let px = |base: f32, k: f32| {
            let v = if inside {
                250.0 - base / 4.0
            } else {
                base + t * k
            };
            (v + n).clamp(0.0, 255.0) as u8
        };
        image::Rgb([px(r0, 55.0), px(g0, -40.0), px(b0, 30.0)])
    })
}

/// Saves an image, creating its folder.
#[allow(dead_code)]
pub fn save(img: &image::RgbImage, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

/// A tmpfs mounted by the test (needs root), unmounted on drop.
#[allow(dead_code)]
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` at `at` (root only); None when it cannot.
    pub fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }

    /// Free space, KiB.
    pub fn free_kib(&self) -> u64 {
        let o = std::process::Command::new("df")
            .args(["-k", "--output=avail"])
            .arg(&self.0)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Skips a test that this machine cannot run (not root, a missing tool):
/// prints SKIPPED and lets the caller return, except under CI (`CI=true`),
/// where every test must really run, so it fails instead.
pub fn skip(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("this test cannot run here ({reason}), and under CI=true it must: run CI as root with the tools .ci/run installs");
    }
    eprintln!("SKIPPED: {reason}");
}

/// An HTTP answer: status, headers (lower-case names), body.
#[allow(dead_code)]
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

#[allow(dead_code)]
impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`),
/// written as given: `head` is the request line and headers (without the
/// final blank line and without Content-Length, which is added for `body`).
/// The minimal client the service tests need, so that they can also send
/// what no well-behaved client would.
#[allow(dead_code)]
pub fn http(addr: &str, head: &str, body: &[u8]) -> std::io::Result<Answer> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    let mut req = head.trim_end().replace('\n', "\r\n").replace("\r\r", "\r");
    req.push_str(&format!(
        "\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_answer(&raw)
}

/// Parses a raw HTTP/1.1 response.
#[allow(dead_code)]
pub fn parse_answer(raw: &[u8]) -> std::io::Result<Answer> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("bad chunk"))?;
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..nl]).trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            rest = &rest[nl + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size).ok_or_else(|| bad("short chunk"))?);
            rest = rest.get(size + 2..).unwrap_or(&[]);
        }
        body = out;
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// A port nobody listens on now.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `addr` answers `/readyz` (or the child exits); false on timeout.
#[allow(dead_code)]
pub fn wait_ready(addr: &str, child: &mut std::process::Child, secs: u64) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if http(addr, "GET /readyz HTTP/1.1", b"").is_ok_and(|a| a.status == 200) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// PNG bytes of [`picture`] `seed`.
#[allow(dead_code)]
pub fn png_bytes(seed: u32, w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    picture(seed, w, h)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A seeded xorshift generator for the tests' random choices.
#[allow(dead_code)]
pub struct Rng(pub u64);

#[allow(dead_code)]
impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

/// Indexes `photos` into `data` with MobileNetV4-small and synthetic
/// weights (a collection that records an image embedder, made in seconds),
/// with `extra` arguments.
pub fn index_photos(cwd: &Path, data: &Path, photos: &Path, extra: &[&str]) -> Output {
    index_command(cwd, data, photos, extra)
        .output()
        .expect("imgsim runs")
}

/// The command [`index_photos`] runs, to add environment first.
pub fn index_command(cwd: &Path, data: &Path, photos: &Path, extra: &[&str]) -> Command {
    let mut args = vec![
        "--data-dir",
        data.to_str().unwrap(),
        "index",
        photos.to_str().unwrap(),
        "--backbone",
        "mobilenetv4-small",
        "--weights",
        "synthetic:1",
    ];
    args.extend_from_slice(extra);
    command(&args, cwd)
}

/// Indexes 4 pictures (seeds `seed..seed + 4`, 64 × 64, written under
/// `cwd/seed-photos`) into collection `default` of `data` (see
/// [`index_photos`]): the starting point of the service tests.
pub fn indexed_collection(cwd: &Path, data: &Path, seed: u32) {
    let photos = cwd.join("seed-photos");
    for i in 0..4 {
        save(&picture(seed + i, 64, 64), &photos.join(format!("{i}.png")));
    }
    let o = index_photos(cwd, data, &photos, &[]);
    assert!(o.status.success(), "{}", text(&o));
}

/// A child process (a server) killed and reaped when dropped, so that a
/// failing test leaves nothing running.
#[allow(dead_code)]
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
