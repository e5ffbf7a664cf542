//! Parity with PyTorch: every backbone, built from the deterministic
//! synthetic weights, must reproduce the outputs torchvision/timm computed on
//! the very same weights and input (tools/reference/parity_refs.py), to a
//! relative error of at most 1e-4 (max |ours − theirs| / max |theirs|). One
//! case runs a fixed PNG through our preprocessing against torchvision's
//! transforms. CLIP's text side: the tokenizer against open_clip's
//! `SimpleTokenizer` (ids and cleaned text, 345 varied strings) and the text
//! tower against transformers' `CLIPModel.get_text_features`
//! (tools/reference/clip_text_refs.py).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use imgsim_embed::text::clean;
use imgsim_embed::{
    load_rgb, synthetic, Backbone, ClipTokenizer, ImageLimits, Interpolation, TextEncoder,
    Transform, Weights,
};
use serde_json::Value;

const TOLERANCE: f64 = 1e-4;

fn parity_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity")
}

fn reference(name: &str) -> Value {
    let path = parity_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
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

fn check_backbone(name: &str) {
    let r = reference(name);
    let backbone = Backbone::parse(name).unwrap();
    let seed = r["seed"].as_u64().unwrap();
    let shape: Vec<usize> = r["input"]["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let n: usize = shape.iter().product();
    let x = synthetic::values(seed, r["input"]["name"].as_str().unwrap(), n, -2.0, 2.0);
    let x = Tensor::from_vec(x, shape.as_slice(), &Device::Cpu).unwrap();
    let net = backbone.build(&Weights::synthetic(seed), shape[2]).unwrap();
    let y = net.forward(&x).unwrap();
    let expect_shape: Vec<usize> = r["output_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(y.dims(), expect_shape.as_slice(), "{name}: output shape");
    let ours = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let err = rel_error(&ours, &floats(&r["output"]));
    eprintln!("{name}: relative error {err:.2e}");
    assert!(
        err <= TOLERANCE,
        "{name}: relative error {err:.3e} > {TOLERANCE:e}"
    );
}

#[test]
fn parity_resnet18() {
    check_backbone("resnet18");
}

#[test]
fn parity_resnet50() {
    check_backbone("resnet50");
}

#[test]
fn parity_mobilenetv4_small() {
    check_backbone("mobilenetv4-small");
}

#[test]
fn parity_dinov2_small() {
    check_backbone("dinov2-small");
}

/// A fixed PNG through our decode + transform + ResNet-18 against PIL +
/// torchvision's `Resize(256) → CenterCrop(224) → ToTensor → Normalize`.
#[test]
fn parity_preprocessing_resnet18() {
    let r = reference("preprocess_resnet18");
    let img = load_rgb(&parity_dir().join("pattern.png"), &ImageLimits::default()).unwrap();
    let seed = r["seed"].as_u64().unwrap();
    let net = Backbone::Resnet18
        .build(&Weights::synthetic(seed), 224)
        .unwrap();
    for (case, interp) in [
        ("bilinear", Interpolation::Bilinear),
        ("bicubic", Interpolation::Bicubic),
    ] {
        let c = &r["cases"][case];
        let t = Transform::imagenet(256, 224).with_interpolation(interp);
        let x = t.apply(&img).unwrap();
        let plane = 224 * 224;
        let sums: Vec<f32> = (0..3)
            .map(|ch| x[ch * plane..(ch + 1) * plane].iter().sum())
            .collect();
        let corner: Vec<f32> = (0..3)
            .flat_map(|ch| (0..4).flat_map(move |yy| (0..4).map(move |xx| (ch, yy, xx))))
            .map(|(ch, yy, xx)| x[ch * plane + yy * 224 + xx])
            .collect();
        let sum_err = rel_error(&sums, &floats(&c["tensor_sum_per_channel"]));
        let corner_err = rel_error(&corner, &floats(&c["tensor_corner"]));
        let y = net
            .forward(&Tensor::from_vec(x, (1, 3, 224, 224), &Device::Cpu).unwrap())
            .unwrap();
        let err = rel_error(
            &y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            &floats(&c["output"]),
        );
        eprintln!("preprocessing {case}: tensor sums {sum_err:.2e}, corner {corner_err:.2e}, features {err:.2e}");
        assert!(
            corner_err <= TOLERANCE,
            "{case}: pixels differ ({corner_err:.3e})"
        );
        assert!(
            sum_err <= TOLERANCE,
            "{case}: tensor sums differ ({sum_err:.3e})"
        );
        assert!(err <= TOLERANCE, "{case}: features differ ({err:.3e})");
    }
}

#[test]
fn parity_clip_b32() {
    check_backbone("clip-b32");
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
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
        let theirs = floats(&c["features"]);
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
