//! `imgsim train head` end to end: train on a labelled folder and on
//! Fashion-MNIST, resume, evaluate, index a collection with base + head,
//! and refuse bad input and mismatched bases.

mod common;
use common::labelled::{colour_folder, tiny_fashion};
use common::{command, text};

use std::path::Path;

/// Runs `imgsim ARGS` in `d` with its collections in `d/data`.
fn imgsim(args: &[&str], d: &Path) -> std::process::Output {
    command(args, d)
        .env("IMGSIM_DATA_DIR", d.join("data"))
        .output()
        .expect("imgsim runs")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

const MOBILENET: [&str; 4] = [
    "--base",
    "backbone:mobilenetv4-small",
    "--weights",
    "synthetic:1",
];

fn train_head(d: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train", "head", "--images", "set", "--out", out, "--dim", "8", "--hidden", "16",
    ];
    args.extend_from_slice(extra);
    imgsim(&args, d)
}

#[test]
fn train_a_head_on_a_folder_resume_it_evaluate_it_and_index_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    colour_folder(&d.join("set"));

    let mut args = MOBILENET.to_vec();
    args.extend(["--epochs", "3"]);
    let o = train_head(d, "h", &args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("held-out precision@10"), "{}", text(&o));
    assert!(text(&o).contains("computed and cached"), "{}", text(&o));
    let cfg = json(&d.join("h/config.json"));
    assert_eq!(cfg["base"]["spec"], "backbone:mobilenetv4-small", "{cfg}");
    assert_eq!(cfg["base"]["weights"], "synthetic:1", "{cfg}");
    assert_eq!(cfg["base"]["identity"]["architecture"], "mobilenetv4-small");
    assert_eq!(cfg["model"]["output_dim"], 8);
    let t = &cfg["training"];
    assert_eq!(t["history"].as_array().unwrap().len(), 3, "{cfg}");
    // 4 images per label, 20% held out: one of each label.
    assert_eq!(
        (t["train_samples"].as_u64(), t["val_samples"].as_u64()),
        (Some(9), Some(3))
    );
    assert_eq!(t["labels"], serde_json::json!(["blue", "green", "red"]));

    // An existing head is not overwritten; --resume continues it from
    // the cached vectors.
    let o = train_head(d, "h", &args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--resume"), "{}", text(&o));
    let mut more = MOBILENET.to_vec();
    more.extend(["--epochs", "5", "--resume"]);
    let o = train_head(d, "h", &more);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("read from the cache"), "{}", text(&o));
    let cfg = json(&d.join("h/config.json"));
    assert_eq!(cfg["training"]["history"].as_array().unwrap().len(), 5);

    // Evaluated like any embedder: base then head, cosine.
    let o = imgsim(
        &[
            "eval",
            "--images",
            "set",
            "--embedder",
            "head:h",
            "--json",
            "e.json",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let e = json(&d.join("e.json"));
    assert_eq!(
        (e["dim"].as_u64(), e["metric"].as_str()),
        (Some(8), Some("cosine")),
        "{e}"
    );
    assert_eq!(e["architecture"], "mobilenetv4-small+head");

    // `imgsim embed --head`: one 8-d unit vector.
    let o = imgsim(&["embed", "set/red/0.png", "--head", "h", "--json"], d);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0]["embedder"]["architecture"],
        "mobilenetv4-small+head"
    );
    let v = &lines[1];
    let vector = v["embedding"].as_array().unwrap();
    assert_eq!(vector.len(), 8, "{v}");
    let norm: f64 = vector.iter().map(|x| x.as_f64().unwrap().powi(2)).sum();
    assert!((norm - 1.0).abs() < 1e-4, "{v}");

    // Indexed with base + head: the head is copied into the collection
    // and the base comes from the head's record.
    let o = imgsim(&["index", "set", "--head", "h", "--collection", "c"], d);
    assert!(o.status.success(), "{}", text(&o));
    let o = imgsim(&["info", "--collection", "c", "--json"], d);
    assert!(o.status.success(), "{}", text(&o));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        info.to_string().contains("mobilenetv4-small+head"),
        "{info}"
    );
    assert!(d.join("data/c/head/head.safetensors").exists());
    let o = imgsim(
        &[
            "query",
            "set/red/0.png",
            "--collection",
            "c",
            "-k",
            "1",
            "--json",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("red/0.png"),
        "{}",
        text(&o)
    );

    // Another base than the head's is refused before anything is made.
    let o = imgsim(
        &[
            "index",
            "set",
            "--head",
            "h",
            "--backbone",
            "mobilenetv4-small",
            "--weights",
            "synthetic:2",
            "--collection",
            "other",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("this head was trained on"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_collections_head_is_verified_when_it_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    colour_folder(&d.join("set"));
    let mut args = MOBILENET.to_vec();
    args.extend(["--epochs", "1"]);
    assert!(train_head(d, "h", &args).status.success());
    args.extend(["--seed", "7"]);
    assert!(train_head(d, "h7", &args).status.success());
    let o = imgsim(&["index", "set", "--head", "h", "--collection", "c"], d);
    assert!(o.status.success(), "{}", text(&o));
    // Swap the collection's head for another: queries are refused.
    let head_dir = d.join("data/c/head");
    std::fs::copy(
        d.join("h7/head.safetensors"),
        head_dir.join("head.safetensors"),
    )
    .unwrap();
    let o = imgsim(&["query", "set/red/0.png", "--collection", "c"], d);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).to_lowercase().contains("changed") || text(&o).contains("weights"),
        "{}",
        text(&o)
    );
}

#[test]
fn train_head_refuses_one_label_empty_labels_and_unreadable_images() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    colour_folder(&d.join("set"));
    let base = ["--base", "colour-histogram"];

    std::fs::create_dir_all(d.join("one")).unwrap();
    std::fs::rename(d.join("set/red"), d.join("one/red")).unwrap();
    let o = imgsim(
        &[
            "train",
            "head",
            "--images",
            "one",
            "--out",
            "x",
            "--base",
            "colour-histogram",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("red"), "{}", text(&o));
    std::fs::rename(d.join("one/red"), d.join("set/red")).unwrap();

    std::fs::create_dir_all(d.join("set/empty")).unwrap();
    let o = train_head(d, "x", &base);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("empty"), "{}", text(&o));
    std::fs::remove_dir(d.join("set/empty")).unwrap();

    std::fs::write(
        d.join("set/red/cut.jpg"),
        b"\xff\xd8\xff\xe0 not a whole jpeg",
    )
    .unwrap();
    let o = train_head(d, "x", &base);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("cut.jpg"), "{}", text(&o));
    assert!(text(&o).contains("--skip-unreadable"), "{}", text(&o));
    let mut skip = base.to_vec();
    skip.extend(["--skip-unreadable", "--epochs", "2"]);
    let o = train_head(d, "x", &skip);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("cut.jpg"), "{}", text(&o));
}

#[test]
fn heads_on_fashion_mnist_pixels_and_autoencoder_are_evaluated_on_its_test_set() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("fm");
    std::fs::create_dir_all(&data).unwrap();
    tiny_fashion(&data, 400, 100);
    let fm = ["--dataset", "fashion-mnist", "--data-path", "fm"];
    let o = imgsim(
        &[
            &["train", "autoencoder"][..],
            &fm,
            &["--dim", "8", "--epochs", "1", "--out", "ae"],
        ]
        .concat(),
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    for (base, out) in [("raw", "hr"), ("autoencoder:ae", "ha")] {
        let o = imgsim(
            &[
                &["train", "head"][..],
                &fm,
                &["--base", base, "--out", out, "--epochs", "4", "--dim", "16"],
            ]
            .concat(),
            d,
        );
        assert!(o.status.success(), "{}", text(&o));
        let head = format!("head:{out}");
        let o = imgsim(
            &[
                &["eval"][..],
                &fm,
                &["--embedder", &head, "--json", "q.json"],
            ]
            .concat(),
            d,
        );
        assert!(o.status.success(), "{}", text(&o));
        let q = json(&d.join("q.json"));
        assert_eq!(
            (q["queries"].as_u64(), q["base"].as_u64()),
            (Some(100), Some(400)),
            "{q}"
        );
        // Ten well-separated classes: a head that learnt anything is far
        // above chance (0.1).
        assert!(q["precision_at_10"].as_f64().unwrap() > 0.5, "{base}: {q}");
    }
    // A head on pixels cannot embed images.
    let o = imgsim(&["index", "fm", "--head", "hr", "--collection", "c"], d);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("raw"), "{}", text(&o));
}
