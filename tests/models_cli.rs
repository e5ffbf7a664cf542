//! End-to-end tests of the model commands: `imgsim embed`, `train
//! autoencoder`, `eval`, `bench embed`, on small data sets written by the
//! tests (a Fashion-MNIST-shaped IDX set, images, weight files).

mod common;
use common::{imgsim, text};

use std::io::Write;
use std::path::Path;

/// Writes an IDX file (gzip) of u8 data with the given dimensions.
fn idx(path: &Path, dims: &[u32], data: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    gz.write_all(&[0, 0, 0x08, dims.len() as u8]).unwrap();
    for d in dims {
        gz.write_all(&d.to_be_bytes()).unwrap();
    }
    gz.write_all(data).unwrap();
    gz.finish().unwrap();
}

/// A tiny labelled set shaped like Fashion-MNIST: class `c` is a bright
/// square at a class-specific place, with per-image jitter.
fn tiny_fashion(dir: &Path, train: usize, test: usize) {
    let make = |n: usize, salt: usize| {
        let mut px = Vec::with_capacity(n * 784);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let c = (i * 7 + salt) % 10;
            labels.push(c as u8);
            let (cx, cy) = (4 + (c % 5) * 5, 6 + (c / 5) * 12);
            let j = (i * 31 + salt) % 3;
            for y in 0..28 {
                for x in 0..28 {
                    let on = x >= cx + j && x < cx + j + 6 && y >= cy && y < cy + 8;
                    px.push(if on {
                        200 + ((x * y + i) % 50) as u8
                    } else {
                        ((x + y + i) % 13) as u8
                    });
                }
            }
        }
        (px, labels)
    };
    let (p, l) = make(train, 0);
    idx(
        &dir.join("train-images-idx3-ubyte.gz"),
        &[train as u32, 28, 28],
        &p,
    );
    idx(&dir.join("train-labels-idx1-ubyte.gz"), &[train as u32], &l);
    let (p, l) = make(test, 3);
    idx(
        &dir.join("t10k-images-idx3-ubyte.gz"),
        &[test as u32, 28, 28],
        &p,
    );
    idx(&dir.join("t10k-labels-idx1-ubyte.gz"), &[test as u32], &l);
}

#[test]
fn train_autoencoder_then_eval_it_against_raw_and_pca() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fm");
    std::fs::create_dir(&data).unwrap();
    tiny_fashion(&data, 400, 100);
    let dp = data.to_str().unwrap();
    let o = imgsim(
        &[
            "train",
            "autoencoder",
            "--dataset",
            "fashion-mnist",
            "--data-path",
            dp,
            "--dim",
            "8",
            "--epochs",
            "2",
            "--batch-size",
            "64",
            "--out",
            "ae",
            "--noise",
            "0.05",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let log = text(&o);
    assert!(log.contains("epoch 2: loss"), "{log}");
    for f in [
        "model.safetensors",
        "config.json",
        "loss.svg",
        "reconstructions.png",
    ] {
        assert!(dir.path().join("ae").join(f).exists(), "{f} written");
    }
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ae/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["training"]["history"].as_array().unwrap().len(), 2);

    // Training into an existing checkpoint needs --resume; with it, epochs continue.
    let o = imgsim(
        &[
            "train",
            "autoencoder",
            "--dataset",
            "fashion-mnist",
            "--data-path",
            dp,
            "--epochs",
            "1",
            "--out",
            "ae",
        ],
        dir.path(),
    );
    assert!(
        !o.status.success() && text(&o).contains("--resume"),
        "{}",
        text(&o)
    );
    let o = imgsim(
        &[
            "train",
            "autoencoder",
            "--dataset",
            "fashion-mnist",
            "--data-path",
            dp,
            "--epochs",
            "1",
            "--out",
            "ae",
            "--resume",
            "--batch-size",
            "64",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("epoch 3: loss"), "{}", text(&o));

    for (emb, dim) in [("raw", 784), ("pca:8", 8), ("autoencoder:ae", 8)] {
        let json = dir.path().join("q.json");
        let o = imgsim(
            &[
                "eval",
                "--dataset",
                "fashion-mnist",
                "--data-path",
                dp,
                "--embedder",
                emb,
                "--json",
                "q.json",
            ],
            dir.path(),
        );
        assert!(o.status.success(), "{emb}: {}", text(&o));
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(r["dim"].as_u64(), Some(dim), "{r}");
        let p = r["precision_at_10"].as_f64().unwrap();
        let m = r["map_at_100"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p) && (0.0..=1.0).contains(&m), "{r}");
        if emb == "raw" {
            // The classes are separable by position: raw pixels find them.
            assert!(p > 0.9, "raw precision@10 {p}");
        }
    }
    let o = imgsim(
        &["eval", "--data-path", dp, "--embedder", "vgg"],
        dir.path(),
    );
    assert!(!o.status.success() && text(&o).contains("raw, pca:D or autoencoder:PATH"));
    let o = imgsim(
        &[
            "eval",
            "--data-path",
            dp,
            "--embedder",
            "autoencoder:nowhere",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("nowhere"), "{}", text(&o));
}

#[test]
fn embed_images_with_a_backbone_and_report_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let img = image::RgbImage::from_fn(300, 200, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    img.save(dir.path().join("a.png")).unwrap();
    std::fs::write(dir.path().join("bad.jpg"), b"not a jpeg").unwrap();
    let o = imgsim(
        &[
            "embed",
            "a.png",
            "--backbone",
            "resnet18",
            "--weights",
            "synthetic:1",
            "--json",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let mut lines = out.lines();
    let head: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(head["embedder"]["architecture"], "resnet18");
    assert_eq!(head["embedder"]["dim"], 512);
    let row: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(row["embedding"].as_array().unwrap().len(), 512);

    // A bad file among good ones: the good one is still embedded, the run fails.
    let o = imgsim(
        &[
            "embed",
            "a.png",
            "bad.jpg",
            "--backbone",
            "mobilenetv4-small",
            "--weights",
            "synthetic:1",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("a.png: [") && t.contains("bad.jpg") && t.contains("1 of 2 images failed"),
        "{t}"
    );

    // Missing weights file, offline hub, unknown backbone: exit code 2, clear words.
    let o = imgsim(
        &[
            "embed",
            "a.png",
            "--backbone",
            "resnet50",
            "--weights",
            "nope.safetensors",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("nope.safetensors"), "{}", text(&o));
    let o = imgsim(&["embed", "a.png", "--backbone", "resnet50"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--weights PATH"), "{}", text(&o));
    let o = imgsim(&["embed", "a.png", "--backbone", "vgg16"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn bench_embed_reports_images_per_second() {
    let dir = tempfile::tempdir().unwrap();
    let o = imgsim(
        &[
            "bench",
            "embed",
            "--backbones",
            "mobilenetv4-small",
            "--batch-sizes",
            "1,2",
            "--seconds",
            "0.1",
            "--json",
            "b.json",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("b.json")).unwrap()).unwrap();
    let rows = r["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|x| x["images_per_s"].as_f64().unwrap() > 0.0));
    let o = imgsim(&["models"], dir.path());
    assert!(
        text(&o).contains("timm/vit_small_patch14_dinov2.lvd142m"),
        "{}",
        text(&o)
    );
}
