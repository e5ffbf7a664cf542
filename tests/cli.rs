//! End-to-end tests of the `imgsim` binary.

mod common;
use common::{imgsim, text};

use std::process::Command;

use imgsim_datasets::synthetic::Clustered;
use imgsim_datasets::{fvecs, npy, Dense};

#[test]
fn bench_ann_on_synthetic_writes_json_csv_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let o = imgsim(
        &[
            "bench",
            "ann",
            "--dataset",
            "synthetic",
            "--n",
            "3000",
            "--dim",
            "16",
            "--queries",
            "100",
            "--ef",
            "10,64",
            "--runs",
            "1",
            "--out",
            "out",
            "--json",
            json.to_str().unwrap(),
            "-q",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("| ef | recall@10 |"), "{out}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for key in ["build_seconds", "reopen_seconds", "disk_bytes", "rss_bytes"] {
        assert!(r[key].as_f64().is_some(), "{key} in {r}");
    }
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["ef"], 64);
    assert!(runs[1]["recall_at_10"].as_f64().unwrap() > 0.9, "{r}");
    assert!(runs[1]["qps_single_thread"].as_f64().unwrap() > 0.0);
    let name = "synthetic-3000x16";
    assert!(dir.path().join(format!("out/{name}.csv")).exists());
    let svg = std::fs::read_to_string(dir.path().join(format!("out/{name}.svg"))).unwrap();
    assert!(svg.contains("<svg"));
}

#[test]
fn bench_ann_reads_user_vectors_in_fvecs_and_npy() {
    let dir = tempfile::tempdir().unwrap();
    let g = Clustered::new(8, 3);
    let base = Dense {
        dim: 8,
        data: g.rows(0, 1500),
    };
    let queries = Dense {
        dim: 8,
        data: Clustered::new(8, 4).rows(0, 20),
    };
    fvecs::write_fvecs(&dir.path().join("base.fvecs"), &base).unwrap();
    npy::write_npy(&dir.path().join("q.npy"), &queries).unwrap();
    let o = imgsim(
        &[
            "bench",
            "ann",
            "--base",
            "base.fvecs",
            "--queries",
            "q.npy",
            "--ef",
            "32",
            "--runs",
            "1",
            "--out",
            "o",
            "-q",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("o/base.json")).unwrap()).unwrap();
    assert_eq!(r["n_base"], 1500);
    assert_eq!(r["n_queries"], 20);

    // A truncated file is a clear error naming it, exit code 2.
    let bytes = std::fs::read(dir.path().join("base.fvecs")).unwrap();
    std::fs::write(dir.path().join("base.fvecs"), &bytes[..bytes.len() - 3]).unwrap();
    let o = imgsim(
        &[
            "bench",
            "ann",
            "--base",
            "base.fvecs",
            "--queries",
            "q.npy",
            "-q",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("base.fvecs"), "{}", text(&o));
}

#[test]
fn missing_fashion_mnist_names_the_debian_package() {
    let dir = tempfile::tempdir().unwrap();
    let o = imgsim(
        &[
            "bench",
            "ann",
            "--dataset",
            "fashion-mnist",
            "--data-path",
            "nowhere",
            "-q",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("apt-get install dataset-fashion-mnist"),
        "{}",
        text(&o)
    );
}

#[test]
fn invalid_index_parameters_exit_with_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let o = imgsim(
        &[
            "bench",
            "ann",
            "--dataset",
            "synthetic",
            "--n",
            "100",
            "--dim",
            "4",
            "--m",
            "1000",
            "--out",
            "o",
            "-q",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("invalid parameter m"), "{}", text(&o));
}

#[test]
fn config_command_prints_effective_settings_with_overrides() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), "[index]\nm = 24\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_imgsim"))
        .args(["--config", "c.toml", "config"])
        .current_dir(dir.path())
        .env("IMGSIM_INDEX_EF_SEARCH", "99")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("m = 24") && t.contains("ef_search = 99"), "{t}");
    let o = imgsim(&["--config", "absent.toml", "config"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("absent.toml"));
}
