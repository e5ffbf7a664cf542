//! End-to-end tests of the model commands: `imgsim embed`, `train
//! autoencoder`, `eval`, `bench embed`, on small data sets written by the
//! tests (a Fashion-MNIST-shaped IDX set, images, weight files).

mod common;
use common::labelled::{colour_folder, tiny_fashion};
use common::{imgsim, text};

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
    assert!(!o.status.success() && text(&o).contains("raw, pca:D, autoencoder:PATH or head:PATH"));
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

/// A labelled folder: `red`, `green` and `blue`, 4 noisy images each
/// (PNG and JPEG), made with a fixed seed.
#[test]
fn eval_a_labelled_folder_with_the_colour_histogram_and_baselines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let set = d.join("set");
    colour_folder(&set);
    // A truncated JPEG: reported, not fatal.
    let mut jpeg = Vec::new();
    image::RgbImage::from_pixel(64, 64, image::Rgb([200, 30, 30]))
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    std::fs::write(set.join("red/cut.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    let o = imgsim(
        &[
            "eval",
            "--images",
            "set",
            "--embedder",
            "colour-histogram",
            "--baselines",
            "--json",
            "q.json",
            "--markdown",
            "q.md",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("q.json")).unwrap()).unwrap();
    assert_eq!(r["images"], 12, "{r}");
    assert_eq!(r["labels"], 3, "{r}");
    assert_eq!(
        (r["dim"].as_u64(), r["metric"].as_str()),
        (Some(512), Some("l2"))
    );
    // Each image's 3 same-coloured ones come first among its 11 others:
    // AP 1, and 3 of its 10 nearest relevant; chance is 3/11.
    let close = |v: &serde_json::Value, x: f64| (v.as_f64().unwrap() - x).abs() < 1e-9;
    assert!(close(&r["precision_at_10"], 0.3), "{r}");
    assert!(close(&r["map_at_100"], 1.0), "{r}");
    assert!(close(&r["chance_precision_at_10"], 3.0 / 11.0), "{r}");
    let per = r["per_label"].as_array().unwrap();
    let labels: Vec<&str> = per.iter().map(|l| l["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["blue", "green", "red"]);
    assert!(
        per.iter()
            .all(|l| l["images"] == 4 && close(&l["chance"], 3.0 / 11.0)),
        "{r}"
    );
    let failed = r["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{r}");
    assert!(
        failed[0]["path"].as_str().unwrap().ends_with("cut.jpg"),
        "{r}"
    );
    assert!(text(&o).contains("cut.jpg"), "{}", text(&o));
    let names: Vec<&str> = r["baselines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["embedder"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tiny", "colour-histogram"]);
    assert!(close(&r["baselines"][0]["map_at_100"], 1.0), "{r}");
    let table = std::fs::read_to_string(d.join("q.md")).unwrap();
    assert!(
        table.contains("| tiny P@10 | colour-histogram P@10 |"),
        "{table}"
    );
    assert!(
        table.contains("| all | 12 | 0.3000 | 1.0000 | 0.2727 |"),
        "{table}"
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&table),
        "{}",
        text(&o)
    );

    // The same images listed in a CSV file, relative to --images.
    std::fs::write(
        d.join("labels.csv"),
        "path,label\nred/0.png,warm\nred/1.jpg,warm\ngreen/0.png,cold\ngreen/2.png,cold\n",
    )
    .unwrap();
    let o = imgsim(
        &[
            "eval",
            "--labels",
            "labels.csv",
            "--images",
            "set",
            "--embedder",
            "tiny",
            "--json",
            "c.json",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("c.json")).unwrap()).unwrap();
    assert_eq!(
        (r["images"].as_u64(), r["dim"].as_u64()),
        (Some(4), Some(768)),
        "{r}"
    );
    assert!(close(&r["map_at_100"], 1.0), "{r}");
}

#[test]
fn eval_refuses_one_label_an_empty_label_and_a_bad_embedder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    colour_folder(&d.join("set"));
    let run = |args: &[&str]| {
        let o = imgsim(args, d);
        (o.status.code(), text(&o))
    };
    let eval =
        |images: &str, embedder: &str| run(&["eval", "--images", images, "--embedder", embedder]);
    std::fs::create_dir_all(d.join("one")).unwrap();
    std::fs::rename(d.join("set/red"), d.join("one/red")).unwrap();
    let (code, out) = eval("one", "tiny");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("one label only: red"), "{out}");

    std::fs::create_dir(d.join("set/empty")).unwrap();
    std::fs::write(d.join("set/empty/notes.txt"), "no image").unwrap();
    let (code, out) = eval("set", "tiny");
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("label `empty`") && out.contains("no images"),
        "{out}"
    );
    std::fs::remove_dir_all(d.join("set/empty")).unwrap();

    let (code, out) = eval("nowhere", "tiny");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("nowhere"), "{out}");
    let (code, out) = eval("set", "raw");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("collection:NAME"), "{out}");
    let (code, out) = run(&[
        "--data-dir",
        "data",
        "eval",
        "--images",
        "set",
        "--embedder",
        "collection:absent",
    ]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("no collection `absent`"), "{out}");
    let (code, out) = run(&["eval", "--embedder", "raw", "--baselines"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--baselines applies to --images"), "{out}");
}

#[test]
fn eval_with_a_collections_embedder_equals_eval_with_that_backbone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    colour_folder(&d.join("set"));
    let o = imgsim(
        &[
            "--data-dir",
            "data",
            "index",
            "set",
            "--collection",
            "c",
            "--backbone",
            "mobilenetv4-small",
            "--weights",
            "synthetic:1",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let eval = |embedder: &str, extra: &[&str], json: &str| -> serde_json::Value {
        let mut args = vec![
            "--data-dir",
            "data",
            "eval",
            "--images",
            "set",
            "--embedder",
            embedder,
            "--json",
            json,
        ];
        args.extend(extra);
        let o = imgsim(&args, d);
        assert!(o.status.success(), "{embedder}: {}", text(&o));
        serde_json::from_slice(&std::fs::read(d.join(json)).unwrap()).unwrap()
    };
    let from_collection = eval("collection:c", &[], "c.json");
    let direct = eval(
        "backbone:mobilenetv4-small",
        &["--weights", "synthetic:1"],
        "b.json",
    );
    assert_eq!(from_collection["architecture"], "mobilenetv4-small");
    assert_eq!(from_collection["metric"], "cosine");
    for key in [
        "dim",
        "images",
        "precision_at_10",
        "map_at_100",
        "per_label",
    ] {
        assert_eq!(from_collection[key], direct[key], "{key}");
    }
    // --weights only goes with a backbone.
    let o = imgsim(
        &[
            "eval",
            "--images",
            "set",
            "--embedder",
            "tiny",
            "--weights",
            "synthetic:1",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
