//! Parity of CLIP's text side with the reference implementations: the
//! tokenizer against open_clip's `SimpleTokenizer` (ids and cleaned text,
//! 345 varied strings), and the text tower against transformers'
//! `CLIPModel.get_text_features` on the deterministic synthetic weights, to
//! a relative error of at most 1e-4 (references computed once by
//! tools/reference/clip_text_refs.py and committed).

use std::path::{Path, PathBuf};

use imgsim_embed::text::clean;
use imgsim_embed::{ClipTokenizer, TextEncoder, Weights};
use serde_json::Value;

const TOLERANCE: f64 = 1e-4;

fn reference(name: &str) -> Value {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/parity")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn rel_error(ours: &[f32], theirs: &[f32]) -> f64 {
    assert_eq!(ours.len(), theirs.len(), "output sizes differ");
    let scale = theirs.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
    let diff = ours
        .iter()
        .zip(theirs)
        .fold(0f64, |m, (a, b)| m.max(f64::from((a - b).abs())));
    diff / scale.max(1e-12)
}

#[test]
fn parity_clip_tokenizer_matches_open_clip_on_every_case() {
    let r = reference("clip_tokenizer");
    let tok = ClipTokenizer::new().unwrap();
    let cases = r["cases"].as_array().unwrap();
    assert!(cases.len() >= 200, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want_clean = c["clean"].as_str().unwrap();
        let want = ids(&c["ids"]);
        let got_clean = clean(text);
        let got = tok.tokenize(text);
        if got_clean != want_clean || got != want {
            failures.push(format!(
                "{text:?}\n  clean ours   {got_clean:?}\n  clean theirs {want_clean:?}\n  ids ours   {got:?}\n  ids theirs {want:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn parity_clip_text_features_match_transformers() {
    let r = reference("clip_text");
    let seed = r["seed"].as_u64().unwrap();
    let enc = TextEncoder::load(&Weights::synthetic(seed)).unwrap();
    let cases = r["cases"].as_array().unwrap();
    assert!(cases.len() >= 8);
    let mut texts = Vec::new();
    let mut worst = 0f64;
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want_ids = ids(&c["ids"]);
        assert_eq!(enc.tokenizer().tokenize(text), want_ids, "{text:?}: ids");
        let theirs: Vec<f32> = c["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let ours = enc.features(&[text]).unwrap().remove(0);
        let err = rel_error(&ours, &theirs);
        eprintln!("{text:?}: relative error {err:.2e}");
        worst = worst.max(err);
        texts.push(text);
    }
    assert!(
        worst <= TOLERANCE,
        "relative error {worst:.3e} > {TOLERANCE:e}"
    );
    // A batch of different lengths gives each text what it gives alone:
    // padding never reaches the end-of-text token.
    let batch = enc.features(&texts).unwrap();
    for (t, row) in texts.iter().zip(&batch) {
        let alone = enc.features(&[t]).unwrap().remove(0);
        let err = rel_error(row, &alone);
        assert!(
            err <= 1e-5,
            "{t:?}: batched differs from alone by {err:.2e}"
        );
    }
}

#[test]
fn text_vectors_are_unit_length_and_long_text_is_refused() {
    let enc = TextEncoder::load(&Weights::synthetic(0)).unwrap();
    let v = enc.embed(&["a photo of a dog"]).unwrap().remove(0);
    let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((n - 1.0).abs() < 1e-5, "norm {n}");
    let long = "word ".repeat(10_000);
    let e = enc.embed(&[long.as_str()]).unwrap_err().to_string();
    assert!(e.contains("bytes long"), "{e}");
}
