//! Search by words end to end (issue 14), on CLIP's architecture with
//! synthetic weights: semantics cannot be checked without trained weights,
//! so this checks the plumbing. A text query's results are exact search
//! over the stored vectors for the vector `imgsim embed --text` prints;
//! image+text queries work; `imgsim tag` labels every image and `--label`
//! returns only labelled images with recall against exact filtered search
//! of at least 0.95; a text query on a collection without a text tower is
//! a usage error naming the embedder and the way out.

mod common;
use common::{command, imgsim, picture, save, text};

use std::path::Path;

use imgsim_index::{Collection, OpenOptions};
use serde_json::Value;

const CLIP: [&str; 4] = ["--backbone", "clip-b32", "--weights", "synthetic:3"];

fn json(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_u64().unwrap())
        .collect()
}

/// Indexes `n` drawn pictures with CLIP (synthetic weights), sealing
/// graphs every 40 images so that searches walk HNSW graphs.
fn clip_collection(cwd: &Path, n: u32) -> String {
    let photos = cwd.join("photos");
    for i in 0..n {
        save(&picture(i, 48, 40), &photos.join(format!("p{i:03}.png")));
    }
    let data = cwd.join("data");
    let d = data.to_str().unwrap().to_string();
    let mut args = vec!["--data-dir", &d, "index", photos.to_str().unwrap()];
    args.extend(CLIP);
    let o = command(&args, cwd)
        .env("IMGSIM_STORAGE_SEAL_THRESHOLD", "40")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    d
}

/// The data folder's `default` collection, opened in this process.
fn open_default(data: &str) -> Collection {
    Collection::open(
        &Path::new(data).join("default"),
        OpenOptions::default(),
        &|_, _, _| {},
    )
    .unwrap()
}

#[test]
fn text_queries_are_exact_search_for_the_printed_text_vector_and_labels_filter() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let d = clip_collection(cwd, 120);

    // The vector `imgsim embed --text` prints.
    let words = "a red square on a blue background";
    let mut args = vec!["embed", "--text", words, "--json"];
    args.extend(CLIP);
    let o = imgsim(&args, cwd);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .nth(1)
        .expect("a header line, then the text's line");
    let printed: Value = serde_json::from_str(line).unwrap();
    assert_eq!(printed["text"], words);
    let vector: Vec<f32> = printed["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(vector.len(), 512);

    // The text query, with recall against exact search.
    let answer = json(&imgsim(
        &[
            "--data-dir",
            &d,
            "query",
            "--text",
            words,
            "-k",
            "10",
            "--exact",
            "--json",
        ],
        cwd,
    ));
    let found = ids(&answer["results"]);
    assert_eq!(found.len(), 10);
    assert!(answer["recall_at_k"].as_f64().unwrap() >= 0.9, "{answer}");

    // Exact search over the stored vectors for the printed vector.
    {
        let c = open_default(&d);
        assert!(
            c.stats().segments >= 2,
            "graphs were sealed: {:?}",
            c.stats()
        );
        let truth: Vec<u64> = c
            .search_exact(&vector, 10, None)
            .unwrap()
            .iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(ids(&answer["exact"]), truth, "the query's exact answer");
        let overlap = found.iter().filter(|id| truth.contains(id)).count();
        assert!(overlap >= 9, "HNSW found {overlap} of the exact 10");
    }

    // Image and words together: between the two, and the weight is checked.
    let photo = cwd.join("photos/p007.png");
    let p = photo.to_str().unwrap();
    let both = json(&imgsim(
        &[
            "--data-dir",
            &d,
            "query",
            p,
            "--text",
            words,
            "--text-weight",
            "0.3",
            "--json",
        ],
        cwd,
    ));
    assert_eq!(ids(&both["results"]).len(), 10);
    let o = imgsim(
        &[
            "--data-dir",
            &d,
            "query",
            p,
            "--text",
            words,
            "--text-weight",
            "1.5",
        ],
        cwd,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("between 0 and 1"), "{}", text(&o));

    // Zero-shot labels.
    let report = json(&imgsim(
        &[
            "--data-dir",
            &d,
            "tag",
            "--labels",
            "red,green,blue,yellow,circle,square",
            "--top",
            "2",
            "--min-score",
            "0",
            "--json",
        ],
        cwd,
    ));
    assert_eq!(report["images"], 120);
    let per_label: Vec<(String, u64)> = report["per_label"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_u64().unwrap()))
        .collect();
    assert_eq!(
        per_label.iter().map(|(_, n)| n).sum::<u64>(),
        240,
        "{per_label:?}"
    );
    // A label carried by some images but not all: the one nearest half.
    let (label, count) = per_label
        .iter()
        .filter(|(_, n)| *n >= 10 && *n < 120)
        .min_by_key(|(_, n)| n.abs_diff(60))
        .cloned()
        .unwrap_or_else(|| panic!("no label with 10..120 images: {per_label:?}"));
    let labelled: std::collections::HashSet<u64> = {
        let c = open_default(&d);
        let set = c.ids_with_label(&label).unwrap();
        assert_eq!(set.len() as u64, count);
        for (id, meta) in c.items().unwrap() {
            let labels = meta.labels();
            assert_eq!(labels.len(), 2, "item {id}: {labels:?}");
            assert!(labels[0].score >= labels[1].score);
        }
        set.iter().copied().collect()
    };
    // Filtered queries by id: only labelled images, recall against exact
    // filtered search.
    let mut recall = 0.0;
    let queries: u32 = 20;
    for q in 0..queries {
        let a = json(&imgsim(
            &[
                "--data-dir",
                &d,
                "query",
                "--id",
                &q.to_string(),
                "--label",
                &label,
                "-k",
                "5",
                "--exact",
                "--json",
            ],
            cwd,
        ));
        let got = ids(&a["results"]);
        assert_eq!(
            got.len(),
            5.min(count as usize - usize::from(labelled.contains(&u64::from(q))))
        );
        assert!(
            got.iter().all(|id| labelled.contains(id)),
            "{got:?} not all `{label}`"
        );
        assert!(ids(&a["exact"]).iter().all(|id| labelled.contains(id)));
        recall += a["recall_at_k"].as_f64().unwrap();
    }
    let recall = recall / f64::from(queries);
    eprintln!(
        "filtered recall@5 over {queries} queries, label `{label}` ({count} images): {recall:.3}"
    );
    assert!(recall >= 0.95, "filtered recall {recall}");
    // A text query with a label.
    let a = json(&imgsim(
        &[
            "--data-dir",
            &d,
            "query",
            "--text",
            "circle",
            "--label",
            &label,
            "--json",
        ],
        cwd,
    ));
    assert!(ids(&a["results"]).iter().all(|id| labelled.contains(id)));
    // `info` says the collection takes words and lists its labels.
    let info = json(&imgsim(&["--data-dir", &d, "info", "--json"], cwd));
    assert_eq!(info["text_search"], true, "{info}");
    let listed: u64 = info["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_u64().unwrap())
        .sum();
    assert_eq!(listed, 240, "{info}");
    let o = imgsim(&["--data-dir", &d, "info"], cwd);
    assert!(text(&o).contains("searchable by text"), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{label} ({count})")),
        "{}",
        text(&o)
    );
    // An unknown label: nothing, said so.
    let o = imgsim(
        &[
            "--data-dir",
            &d,
            "query",
            "--id",
            "0",
            "--label",
            "none-such",
        ],
        cwd,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("no image carries the label"),
        "{}",
        text(&o)
    );
}

#[test]
fn words_on_a_collection_without_a_text_tower_are_refused_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let photos = cwd.join("photos");
    for i in 0..3 {
        save(&picture(i, 32, 32), &photos.join(format!("{i}.png")));
    }
    let data = cwd.join("data");
    let d = data.to_str().unwrap();
    let o = common::index_photos(cwd, &data, &photos, &[]);
    assert!(o.status.success(), "{}", text(&o));
    for args in [
        vec!["--data-dir", d, "query", "--text", "a dog"],
        vec!["--data-dir", d, "tag", "--labels", "dog,cat"],
    ] {
        let o = imgsim(&args, cwd);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let e = text(&o);
        assert!(
            e.contains("mobilenetv4-small")
                && e.contains("clip-b32")
                && e.contains("no text tower"),
            "{e}"
        );
    }
    // `embed --text` with a backbone that has none.
    let o = imgsim(
        &[
            "embed",
            "--text",
            "a dog",
            "--backbone",
            "resnet18",
            "--weights",
            "synthetic:0",
        ],
        cwd,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no text tower"), "{}", text(&o));
    // Bad tag options are refused before anything is read.
    let o = imgsim(&["--data-dir", d, "tag", "--labels", "dog"], cwd);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("at least two labels"), "{}", text(&o));
}
