//! Hostile image files (tests/common/corpus.rs): each must give a clear
//! error or a correct result, through the decoder and through `imgsim
//! index`, with the indexer's memory bounded (its peak is printed).

mod common;
use common::command;
use common::corpus::{self, Expect};

use std::path::Path;

use imgsim_embed::ImageLimits;

/// The corpus' compressed bomb (8,000 × 8,000 zeros) is under the pixel
/// limits; this allocation limit refuses it before decoding.
const MAX_DECODED: u64 = 64 << 20;

/// Peak resident memory the indexer may reach on the corpus.
const RSS_BOUND_MIB: u64 = 768;

fn limits() -> ImageLimits {
    ImageLimits {
        max_decoded_bytes: MAX_DECODED,
        ..ImageLimits::default()
    }
}

#[test]
fn every_hostile_file_decodes_correctly_or_fails_clearly() {
    for case in corpus::cases() {
        let name = Path::new(case.name);
        let exact = imgsim_embed::decode_rgb(&case.bytes, name, &limits());
        let reduced = imgsim_embed::decode_rgb_reduced(&case.bytes, name, &limits(), 224);
        match case.expect {
            Expect::Error(want) => {
                for r in [&exact, &reduced] {
                    let e = r
                        .as_ref()
                        .err()
                        .unwrap_or_else(|| panic!("{}: decoded, but must be refused", case.name));
                    let msg = e.to_string();
                    assert!(
                        msg.to_lowercase().contains(want),
                        "{}: error does not say `{want}`: {msg}",
                        case.name
                    );
                    assert!(msg.contains(case.name), "{}: unnamed: {msg}", case.name);
                }
            }
            Expect::Damaged => {
                for r in [&exact, &reduced] {
                    match r {
                        Ok(img) => assert_eq!(img.dimensions(), (96, 80), "{}", case.name),
                        Err(e) => {
                            assert!(
                                matches!(e, imgsim_embed::EmbedError::Decode { .. }),
                                "{}: not a clear decode error: {e}",
                                case.name
                            );
                            assert!(e.to_string().contains(case.name), "{}: {e}", case.name);
                        }
                    }
                }
                eprintln!(
                    "{}: {}",
                    case.name,
                    match &exact {
                        Ok(_) => "decoded (errors concealed)".to_string(),
                        Err(e) => e.to_string(),
                    }
                );
            }
            Expect::Indexed => {
                let img = exact.unwrap_or_else(|e| panic!("{}: {e}", case.name));
                let img2 = reduced.unwrap_or_else(|e| panic!("{}: {e}", case.name));
                assert_eq!(img.dimensions(), img2.dimensions(), "{}", case.name);
                if let Some((seed, w, h)) = case.source {
                    // The pixels are the picture's, up to lossy coding.
                    let want = common::picture(seed, w, h);
                    assert_eq!(img.dimensions(), (w, h), "{}", case.name);
                    let diff: f64 = img
                        .as_raw()
                        .iter()
                        .zip(want.as_raw())
                        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
                        .sum::<f64>()
                        / want.as_raw().len() as f64;
                    assert!(diff < 12.0, "{}: mean pixel error {diff:.1}", case.name);
                }
            }
        }
    }
}

/// Runs `cmd` to completion; returns its exit code, output and peak RSS (KiB).
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives its rusage
fn run_measured(mut cmd: std::process::Command) -> (i32, String, u64) {
    use std::os::unix::process::ExitStatusExt;
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let child = cmd
        .stdout(out_file.reopen().unwrap())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are valid.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    let code = std::process::ExitStatus::from_raw(status)
        .code()
        .unwrap_or(-1);
    let out = std::fs::read_to_string(out_file.path()).unwrap();
    (
        code,
        format!("{out}{}", err.join().unwrap()),
        usage.ru_maxrss as u64,
    )
}

#[test]
fn indexing_the_hostile_corpus_fails_each_bad_file_alone_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let folder = cwd.join("corpus");
    let cases = corpus::write(&folder);
    let data = cwd.join("data");
    let errors = cwd.join("errors.json");
    let mut cmd = command(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "index",
            folder.to_str().unwrap(),
            "--json",
            "--errors",
            errors.to_str().unwrap(),
            "--backbone",
            "mobilenetv4-small",
            "--weights",
            "synthetic:1",
        ],
        cwd,
    );
    cmd.env("IMGSIM_LIMITS_MAX_DECODED_BYTES", MAX_DECODED.to_string());
    let (code, out, peak_kib) = run_measured(cmd);
    assert_eq!(code, 3, "some files fail, the run finishes: {out}");
    let failed: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&errors).unwrap()).unwrap();
    let error_of = |name: &str| {
        failed
            .iter()
            .find(|f| f["path"].as_str().unwrap().ends_with(&format!("/{name}")))
            .map(|f| f["error"].as_str().unwrap().to_string())
    };
    let c = imgsim_pipeline::open(&data.join("default"), &Default::default()).unwrap();
    let indexed: Vec<String> = c
        .items()
        .unwrap()
        .into_iter()
        .map(|(_, m)| m.external_id)
        .collect();
    for case in &cases {
        let path = folder.join(case.name).to_str().unwrap().to_string();
        match case.expect {
            Expect::Error(want) => {
                let e = error_of(case.name)
                    .unwrap_or_else(|| panic!("{} is not reported as failed: {out}", case.name));
                assert!(e.to_lowercase().contains(want), "{}: {e}", case.name);
                assert!(!indexed.contains(&path), "{} was indexed", case.name);
            }
            Expect::Indexed => {
                assert_eq!(error_of(case.name), None, "{}", case.name);
                assert!(indexed.contains(&path), "{} was not indexed", case.name);
            }
            // Indexed, or reported as undecodable: never both, never lost.
            Expect::Damaged => match error_of(case.name) {
                Some(e) => {
                    assert!(e.contains("cannot decode"), "{}: {e}", case.name);
                    assert!(!indexed.contains(&path), "{} was indexed", case.name);
                }
                None => assert!(indexed.contains(&path), "{} was lost", case.name),
            },
        }
    }
    // Each indexed file is found by its own vector; the collection is sound.
    let report = c.verify(usize::MAX).unwrap();
    assert!(report.is_consistent(), "{report:?}");
    let bad = cases
        .iter()
        .filter(|c| matches!(c.expect, Expect::Error(_)))
        .count();
    let damaged = cases
        .iter()
        .filter(|c| matches!(c.expect, Expect::Damaged))
        .count();
    eprintln!(
        "hostile corpus: {} files ({} refused with a reason, {} damaged, {} indexed); peak RSS of imgsim index {:.1} MiB",
        cases.len(),
        bad,
        damaged,
        cases.len() - bad - damaged,
        peak_kib as f64 / 1024.0
    );
    assert!(
        peak_kib < RSS_BOUND_MIB * 1024,
        "peak RSS {peak_kib} KiB over {RSS_BOUND_MIB} MiB"
    );
}
