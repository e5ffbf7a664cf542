//! The service against hostile clients, over real TCP on loopback: oversized
//! bodies (declared and streamed), slow clients (slowloris, headers and
//! body), malformed multipart, path traversal in ids and names, missing or
//! wrong API keys, and the hostile image corpus uploaded. Every answer must
//! carry the right status, no answer may be a 5xx, and none may leak a
//! server path, the key or a panic.

mod common;
use common::corpus::{self, Expect};
use common::{command, http, parse_answer, text, wait_ready, Answer};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "s3cret-hostile-key";
/// Small limits so that the tests stay cheap.
const MAX_UPLOAD: usize = 1 << 20;
const TIMEOUT_S: u64 = 2;

struct Server {
    child: Child,
    addr: String,
    data: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(cwd: &Path) -> Server {
    start_with(
        cwd,
        &[
            ("IMGSIM_SERVER_MAX_UPLOAD_BYTES", MAX_UPLOAD.to_string()),
            ("IMGSIM_SERVER_REQUEST_TIMEOUT_S", TIMEOUT_S.to_string()),
            ("IMGSIM_LIMITS_MAX_DECODED_BYTES", (64u64 << 20).to_string()),
        ],
    )
}

/// Indexes 4 images with a synthetic-weights backbone, then serves them
/// with the API key and `env`.
fn start_with(cwd: &Path, env: &[(&str, String)]) -> Server {
    let data = cwd.join("data");
    common::indexed_collection(cwd, &data, 40);
    let addr = format!("127.0.0.1:{}", common::free_port());
    let mut child = command(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "serve",
            "--bind",
            &addr,
        ],
        cwd,
    )
    .env("IMGSIM_SERVER_API_KEY", KEY)
    .envs(env.iter().map(|(k, v)| (k, v)))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    assert!(
        wait_ready(&addr, &mut child, 60),
        "the service did not start"
    );
    Server {
        child,
        addr,
        data: data.to_str().unwrap().to_string(),
    }
}

/// Checks an answer: the expected status, a JSON error body for errors,
/// and nothing leaked.
fn expect(server: &Server, what: &str, a: &Answer, statuses: &[u16]) {
    let body = a.text();
    assert!(
        statuses.contains(&a.status),
        "{what}: status {} (wanted {statuses:?}): {body}",
        a.status
    );
    assert!(
        a.status < 500 || a.status == 503 || a.status == 507,
        "{what}: {body}"
    );
    for secret in [
        server.data.as_str(),
        KEY,
        "panicked",
        "/uploads/",
        "root:x:",
    ] {
        assert!(!body.contains(secret), "{what} leaks `{secret}`: {body}");
    }
    if a.status >= 400 {
        let j = a.json();
        assert_eq!(j["error"]["status"], a.status, "{what}: {body}");
        assert!(j["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
}

/// Sends raw bytes as a request and reads the answer (the connection closes).
fn raw(addr: &str, bytes: &[u8]) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(bytes)?;
    let mut out = Vec::new();
    // The server may answer (413) and close before reading everything.
    let _ = s.read_to_end(&mut out);
    parse_answer(&out)
}

#[test]
fn hostile_clients_get_the_right_status_and_nothing_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.addr.clone();
    let search = "POST /collections/default/search HTTP/1.1";

    // --- Oversized bodies -------------------------------------------------
    let big = vec![0xFFu8; MAX_UPLOAD + 4096];
    let a = http(&addr, &format!("{search}\nContent-Type: image/jpeg"), &big).unwrap();
    expect(&server, "raw body over the limit", &a, &[413]);
    let mut json = b"{\"vector\": [".to_vec();
    json.resize(MAX_UPLOAD + 10, b' ');
    let a = http(
        &addr,
        &format!("{search}\nContent-Type: application/json"),
        &json,
    )
    .unwrap();
    expect(&server, "JSON over the limit", &a, &[413]);
    let mut mp =
        b"--B\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n"
            .to_vec();
    mp.extend_from_slice(&big);
    mp.extend_from_slice(b"\r\n--B--\r\n");
    let a = http(
        &addr,
        &format!("{search}\nContent-Type: multipart/form-data; boundary=B"),
        &mp,
    )
    .unwrap();
    expect(&server, "multipart over the limit", &a, &[413]);
    // Chunked, no length declared.
    let mut req = format!(
        "{search}\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..20 {
        req.extend_from_slice(format!("{:x}\r\n", 65536).as_bytes());
        req.extend_from_slice(&vec![0u8; 65536]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let a = raw(&addr, &req).unwrap();
    expect(&server, "chunked body over the limit", &a, &[413]);
    // A declared length far over the limit, barely any body sent.
    let a = raw(
        &addr,
        format!("{search}\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000000000000\r\nConnection: close\r\n\r\nabc").as_bytes(),
    );
    if let Ok(a) = a {
        expect(
            &server,
            "declared length over the limit",
            &a,
            &[413, 408, 400],
        );
    }

    // --- Malformed multipart ---------------------------------------------
    let ct = |b: &str| format!("{search}\nContent-Type: multipart/form-data{b}");
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        ("no boundary parameter", ct(""), b"--B\r\n\r\nx\r\n--B--\r\n".to_vec()),
        ("boundary mismatch", ct("; boundary=B"), b"--C\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nx\r\n--C--\r\n".to_vec()),
        ("unterminated part", ct("; boundary=B"), b"--B\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nxxxxxxxx".to_vec()),
        ("no content-disposition", ct("; boundary=B"), b"--B\r\n\r\nxyz\r\n--B--\r\n".to_vec()),
        ("no image field", ct("; boundary=B"), b"--B\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nxyz\r\n--B--\r\n".to_vec()),
        ("garbage headers", ct("; boundary=B"), b"--B\r\n\x00\x01\x02: \xff\xfe\r\n\r\nxyz\r\n--B--\r\n".to_vec()),
        ("empty body", ct("; boundary=B"), Vec::new()),
        ("image field not an image", ct("; boundary=B"), b"--B\r\nContent-Disposition: form-data; name=\"image\"; filename=\"../../etc/passwd\"\r\n\r\nroot:x:0:0\r\n--B--\r\n".to_vec()),
    ];
    for (what, head, body) in &cases {
        let a = http(&addr, head, body).unwrap();
        expect(&server, what, &a, &[400, 415]);
    }

    // --- Path traversal in ids and names -----------------------------------
    for path in [
        "/collections/..%2F..%2Fetc/stats",
        "/collections/../../etc/passwd",
        "/collections/%2e%2e/images/1",
        "/collections/default/images/..%2F..%2Fetc%2Fpasswd",
        "/collections/default/images/1%2F..%2F..%2Fpasswd/thumbnail",
        "/collections/default/images/-1",
        "/collections/default/images/99999999999999999999999",
        "/collections/default/images/1.5/thumbnail",
        "/collections/default/images/%00",
        "/collections/default%00/stats",
        "/collections/default/images/424242/thumbnail",
        "/static/../../../../etc/passwd",
    ] {
        let a = http(&addr, &format!("GET {path} HTTP/1.1"), b"").unwrap();
        expect(&server, path, &a, &[400, 404]);
    }
    let a = http(
        &addr,
        &format!("DELETE /collections/default/images/..%2F1 HTTP/1.1\napi-key: {KEY}"),
        b"",
    )
    .unwrap();
    expect(&server, "delete with a traversal id", &a, &[400, 404]);

    // Paging bounds are the documented ones (regression: an offset over
    // the schema's maximum was accepted, found by schemathesis).
    for q in [
        "limit=501",
        "offset=1000000001",
        "offset=99999999999999999999999",
        "limit=-1",
    ] {
        let head = format!("GET /collections/default/images?{q} HTTP/1.1");
        let a = http(&addr, &head, b"").unwrap();
        expect(&server, &head, &a, &[400]);
    }

    // --- Methods a path does not take: 405 with Allow (regression: the
    // catch-all answered 404, found by schemathesis) ----------------------
    for (head, allow) in [
        ("TRACE /healthz HTTP/1.1", "GET"),
        ("PUT /collections HTTP/1.1", "GET"),
        ("GET /collections/default/search HTTP/1.1", "POST"),
        ("DELETE /collections/default/images HTTP/1.1", "GET, POST"),
        (
            "PATCH /collections/default/images/1 HTTP/1.1",
            "GET, DELETE",
        ),
    ] {
        let a = http(&addr, head, b"").unwrap();
        expect(&server, head, &a, &[405]);
        assert_eq!(a.header("allow"), Some(allow), "{head}");
    }

    // --- API keys ---------------------------------------------------------
    let png = common::png_bytes(99, 48, 48);
    let add = "POST /collections/default/images HTTP/1.1\nContent-Type: image/png";
    for (what, head) in [
        ("no key", add.to_string()),
        ("wrong key", format!("{add}\napi-key: wrong")),
        (
            "key with another case",
            format!("{add}\napi-key: {}", KEY.to_uppercase()),
        ),
        (
            "key as a prefix",
            format!("{add}\napi-key: {}", &KEY[..KEY.len() - 1]),
        ),
        ("empty key", format!("{add}\napi-key: ")),
        (
            "key in the query string",
            format!(
                "POST /collections/default/images?api-key={KEY} HTTP/1.1\nContent-Type: image/png"
            ),
        ),
        (
            "key as a bearer token",
            format!("{add}\nAuthorization: Bearer {KEY}"),
        ),
    ] {
        let a = http(&addr, &head, &png).unwrap();
        expect(&server, what, &a, &[401]);
    }
    for head in [
        "DELETE /collections/default/images/0 HTTP/1.1".to_string(),
        "DELETE /collections/default/images/0 HTTP/1.1\napi-key: nope".to_string(),
    ] {
        let a = http(&addr, &head, b"").unwrap();
        expect(&server, &head, &a, &[401]);
    }
    let a = http(&addr, &format!("{add}\napi-key: {KEY}"), &png).unwrap();
    expect(&server, "right key", &a, &[201]);
    // The same bytes again: the existing id, nothing added twice.
    let id = a.json()["id"].as_u64().unwrap();
    let again = http(&addr, &format!("{add}\napi-key: {KEY}"), &png).unwrap();
    expect(&server, "same upload again", &again, &[200]);
    assert_eq!(again.json()["id"], id);
    assert_eq!(again.json()["existing"], true);
    let info = http(
        &addr,
        &format!("GET /collections/default/images/{id} HTTP/1.1"),
        b"",
    )
    .unwrap();
    expect(&server, "metadata of an upload", &info, &[200]);

    // --- The hostile corpus, uploaded ---------------------------------------
    for case in corpus::cases() {
        let a = http(
            &addr,
            "POST /collections/default/search?k=3 HTTP/1.1\nContent-Type: application/octet-stream",
            &case.bytes,
        )
        .unwrap();
        let want: &[u16] = match case.expect {
            _ if case.bytes.len() > MAX_UPLOAD => &[413],
            Expect::Indexed => &[200],
            Expect::Error(_) if case.bytes.is_empty() => &[400],
            Expect::Error(_) => &[415, 422],
            Expect::Damaged => &[200, 422],
        };
        expect(&server, case.name, &a, want);
        let a = http(
            &addr,
            "POST /embed HTTP/1.1\nContent-Type: image/png",
            &case.bytes,
        )
        .unwrap();
        expect(&server, &format!("/embed {}", case.name), &a, want);
    }

    // --- Slow clients -------------------------------------------------------
    // 40 connections trickle their headers, 10 their body; meanwhile the
    // service answers others, and cuts the slow ones after the timeout.
    let started = Instant::now();
    let mut slow = Vec::new();
    for i in 0..50 {
        let mut s = TcpStream::connect(&addr).unwrap();
        let head = if i < 40 {
            format!("{search}\r\nHost: x\r\n")
        } else {
            format!(
                "{search}\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
            )
        };
        s.write_all(head.as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        slow.push((s, i < 40));
    }
    let mut cut = vec![None; slow.len()];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let others = {
        let (addr, stop) = (addr.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut n, mut worst) = (0u32, Duration::ZERO);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let a = http(&addr, "GET /collections/default/stats HTTP/1.1", b"").unwrap();
                assert_eq!(a.status, 200, "{}", a.text());
                worst = worst.max(t.elapsed());
                n += 1;
            }
            (n, worst)
        })
    };
    while started.elapsed() < Duration::from_secs(TIMEOUT_S * 5) && cut.iter().any(Option::is_none)
    {
        for (i, (s, headers)) in slow.iter_mut().enumerate() {
            if cut[i].is_some() {
                continue;
            }
            let trickle: &[u8] = if *headers { b"X-A: b\r\n" } else { b"\x89" };
            let mut buf = [0u8; 4096];
            match s.read(&mut buf) {
                Ok(0) => cut[i] = Some((started.elapsed(), String::new())),
                Ok(n) => {
                    cut[i] = Some((
                        started.elapsed(),
                        String::from_utf8_lossy(&buf[..n]).into_owned(),
                    ))
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    if s.write_all(trickle).is_err() {
                        cut[i] = Some((started.elapsed(), String::new()));
                    }
                }
                Err(_) => cut[i] = Some((started.elapsed(), String::new())),
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (served, worst) = others.join().unwrap();
    let still_open = cut.iter().filter(|c| c.is_none()).count();
    assert_eq!(
        still_open,
        0,
        "slow clients still connected after {:?}",
        started.elapsed()
    );
    let latest = cut.iter().flatten().map(|(t, _)| *t).max().unwrap();
    for (t, answer) in cut.iter().flatten() {
        if !answer.is_empty() {
            assert!(
                answer.starts_with("HTTP/1.1 408") || answer.starts_with("HTTP/1.1 400"),
                "a slow client got: {answer}"
            );
        }
        let _ = t;
    }
    assert!(served > 0);
    eprintln!(
        "slow clients: 50 cut within {latest:?} (timeout {TIMEOUT_S} s); meanwhile {served} other requests served, the slowest in {worst:?}"
    );
    // Still alive and well.
    let a = http(&addr, "GET /healthz HTTP/1.1", b"").unwrap();
    expect(&server, "healthz at the end", &a, &[200]);
}

/// Concurrent adds that seal and compact segments, with deletes, to the
/// end. The soak test found a deadlock here after ~2.5 minutes of mixed
/// traffic (gdb: a worker holding the upload table's lock while waiting
/// inside an HNSW build on rayon had stolen a queued delete, which blocked
/// on that same lock; the other worker blocked too; every later request
/// was a 503). The interleaving is rare: this test did not hit it in two
/// runs against the old code, so it guards the behaviour, not that exact
/// schedule; the fix (workers are plain threads, not a rayon pool) removes
/// the stealing that made it possible.
#[test]
fn concurrent_adds_deletes_and_searches_while_sealing_do_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let server = start_with(
        cwd,
        &[
            ("IMGSIM_SERVER_WORKERS", "2".into()),
            ("IMGSIM_SERVER_REQUEST_TIMEOUT_S", "20".into()),
            ("IMGSIM_STORAGE_SEAL_THRESHOLD", "64".into()),
            ("IMGSIM_STORAGE_MAX_SEGMENTS", "2".into()),
        ],
    );
    let addr = server.addr.clone();
    // Three clients add (each add may seal a segment and, past 2 segments,
    // compact: HNSW builds under the locks), three delete as fast as they
    // can (ids that mostly do not exist: each still takes the locks), until
    // the adds are done.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let adders: Vec<_> = (0..3u32)
        .map(|w| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                (0..100u32)
                    .map(|i| {
                        let a = http(
                            &addr,
                            &format!("POST /collections/default/images HTTP/1.1\nContent-Type: image/png\napi-key: {KEY}"),
                            &common::png_bytes(10_000 + w * 1000 + i, 32, 32),
                        )
                        .unwrap();
                        (a.status, a.text())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let deleters: Vec<_> = (0..3u64)
        .map(|w| {
            let (addr, done) = (addr.clone(), done.clone());
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let mut id = w;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    id = (id * 7 + 13) % 600;
                    let a = http(
                        &addr,
                        &format!(
                            "DELETE /collections/default/images/{id} HTTP/1.1\napi-key: {KEY}"
                        ),
                        b"",
                    )
                    .unwrap();
                    out.push((a.status, a.text()));
                }
                out
            })
        })
        .collect();
    let mut n = 0;
    for w in adders {
        for (status, body) in w.join().unwrap() {
            assert_eq!(status, 201, "add: {body}");
            n += 1;
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in deleters {
        for (status, body) in w.join().unwrap() {
            assert!(status == 200 || status == 404, "delete: {status} {body}");
        }
    }
    assert_eq!(n, 300);
    let data = server.data.clone();
    drop(server);
    let o = common::imgsim(&["--data-dir", &data, "check"], cwd);
    assert!(o.status.success(), "{}", text(&o));
}
