//! CLIP checkpoints in the three layouts (timm's image tower, open_clip's
//! and transformers' full models) hold the same weights in different names
//! and shapes: written by the test from the synthetic weights, each must
//! give bit-identical image vectors, and the full ones identical text
//! vectors, to the synthetic weights themselves. transformers' names and
//! shapes come from the PyTorch reference (tests/parity/clip_hf_names.json),
//! so the loader is checked against a real `CLIPModel` state dict.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use imgsim_embed::{synthetic, Backbone, Embedder, PretrainedEmbedder, Weights, WeightsSource};

const SEED: u64 = 5;
const DEPTH: usize = 12;

/// The image tower's tensors in timm's names (what the synthetic
/// generator gives the image tower), with a zero projection bias as in
/// timm's conversion of OpenAI's checkpoint (CLIP's projection has none).
fn timm_image() -> HashMap<String, Tensor> {
    let w = Weights::synthetic_recording(SEED);
    Backbone::ClipB32.build(&w, 224).unwrap();
    let mut t = w.recorded_tensors().unwrap();
    t.insert(
        "head.bias".into(),
        Tensor::zeros(512, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    t
}

/// transformers' text-tower names and shapes, from the PyTorch reference.
fn hf_text_names() -> Vec<(String, Vec<usize>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity/clip_hf_names.json");
    let all: Vec<(String, Vec<usize>)> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    all.into_iter()
        .filter(|(n, _)| n.starts_with("text_model.") || n == "text_projection.weight")
        .collect()
}

/// The text tower in transformers' names with the synthetic values (as
/// the synthetic weights generate them).
fn hf_text() -> HashMap<String, Tensor> {
    hf_text_names()
        .into_iter()
        .map(|(n, s)| {
            let v = synthetic::tensor_values(SEED, &n, &s);
            let t = Tensor::from_vec(v, s.as_slice(), &Device::Cpu).unwrap();
            (n, t)
        })
        .collect()
}

fn take(m: &mut HashMap<String, Tensor>, n: &str) -> Tensor {
    m.remove(n).unwrap_or_else(|| panic!("no tensor {n}"))
}

fn cat(ts: &[Tensor]) -> Tensor {
    Tensor::cat(ts, 0).unwrap()
}

fn split3(t: &Tensor) -> [Tensor; 3] {
    let n = t.dim(0).unwrap() / 3;
    [0, 1, 2].map(|i| t.narrow(0, i * n, n).unwrap().contiguous().unwrap())
}

fn tr(t: &Tensor) -> Tensor {
    t.t().unwrap().contiguous().unwrap()
}

fn flat(t: &Tensor, shape: &[usize]) -> Tensor {
    t.reshape(shape).unwrap()
}

/// The whole model in open_clip's layout.
fn open_clip_layout() -> HashMap<String, Tensor> {
    let mut img = timm_image();
    let mut out = HashMap::new();
    let d = 768;
    out.insert(
        "visual.class_embedding".into(),
        flat(&take(&mut img, "cls_token"), &[d]),
    );
    out.insert(
        "visual.positional_embedding".into(),
        flat(&take(&mut img, "pos_embed"), &[50, d]),
    );
    out.insert(
        "visual.conv1.weight".into(),
        take(&mut img, "patch_embed.proj.weight"),
    );
    out.insert("visual.proj".into(), tr(&take(&mut img, "head.weight")));
    take(&mut img, "head.bias");
    for (ours, theirs) in [("norm_pre", "visual.ln_pre"), ("norm", "visual.ln_post")] {
        for s in ["weight", "bias"] {
            out.insert(
                format!("{theirs}.{s}"),
                take(&mut img, &format!("{ours}.{s}")),
            );
        }
    }
    for i in 0..DEPTH {
        let (o, t) = (
            format!("blocks.{i}"),
            format!("visual.transformer.resblocks.{i}"),
        );
        for (a, b) in [
            ("norm1", "ln_1"),
            ("attn.proj", "attn.out_proj"),
            ("norm2", "ln_2"),
            ("mlp.fc1", "mlp.c_fc"),
            ("mlp.fc2", "mlp.c_proj"),
        ] {
            for s in ["weight", "bias"] {
                out.insert(
                    format!("{t}.{b}.{s}"),
                    take(&mut img, &format!("{o}.{a}.{s}")),
                );
            }
        }
        out.insert(
            format!("{t}.attn.in_proj_weight"),
            take(&mut img, &format!("{o}.attn.qkv.weight")),
        );
        out.insert(
            format!("{t}.attn.in_proj_bias"),
            take(&mut img, &format!("{o}.attn.qkv.bias")),
        );
    }
    assert!(
        img.is_empty(),
        "untranslated: {:?}",
        img.keys().collect::<Vec<_>>()
    );
    let mut txt = hf_text();
    out.insert(
        "token_embedding.weight".into(),
        take(&mut txt, "text_model.embeddings.token_embedding.weight"),
    );
    out.insert(
        "positional_embedding".into(),
        take(&mut txt, "text_model.embeddings.position_embedding.weight"),
    );
    out.insert(
        "text_projection".into(),
        tr(&take(&mut txt, "text_projection.weight")),
    );
    for s in ["weight", "bias"] {
        out.insert(
            format!("ln_final.{s}"),
            take(&mut txt, &format!("text_model.final_layer_norm.{s}")),
        );
    }
    for i in 0..DEPTH {
        let (h, t) = (
            format!("text_model.encoder.layers.{i}"),
            format!("transformer.resblocks.{i}"),
        );
        for (a, b) in [
            ("layer_norm1", "ln_1"),
            ("self_attn.out_proj", "attn.out_proj"),
            ("layer_norm2", "ln_2"),
            ("mlp.fc1", "mlp.c_fc"),
            ("mlp.fc2", "mlp.c_proj"),
        ] {
            for s in ["weight", "bias"] {
                out.insert(
                    format!("{t}.{b}.{s}"),
                    take(&mut txt, &format!("{h}.{a}.{s}")),
                );
            }
        }
        for (s, name) in [("weight", "in_proj_weight"), ("bias", "in_proj_bias")] {
            let q = ["q_proj", "k_proj", "v_proj"]
                .map(|p| take(&mut txt, &format!("{h}.self_attn.{p}.{s}")));
            out.insert(format!("{t}.attn.{name}"), cat(&q));
        }
    }
    assert!(
        txt.is_empty(),
        "untranslated: {:?}",
        txt.keys().collect::<Vec<_>>()
    );
    out.insert(
        "logit_scale".into(),
        Tensor::new(4.6052f32, &Device::Cpu).unwrap(),
    );
    out
}

/// The whole model in transformers' layout.
fn transformers_layout() -> HashMap<String, Tensor> {
    let mut img = timm_image();
    let mut out = hf_text();
    let d = 768;
    let v = "vision_model";
    out.insert(
        format!("{v}.embeddings.class_embedding"),
        flat(&take(&mut img, "cls_token"), &[d]),
    );
    out.insert(
        format!("{v}.embeddings.position_embedding.weight"),
        flat(&take(&mut img, "pos_embed"), &[50, d]),
    );
    out.insert(
        format!("{v}.embeddings.patch_embedding.weight"),
        take(&mut img, "patch_embed.proj.weight"),
    );
    out.insert(
        "visual_projection.weight".into(),
        take(&mut img, "head.weight"),
    );
    take(&mut img, "head.bias");
    for (ours, theirs) in [("norm_pre", "pre_layrnorm"), ("norm", "post_layernorm")] {
        for s in ["weight", "bias"] {
            out.insert(
                format!("{v}.{theirs}.{s}"),
                take(&mut img, &format!("{ours}.{s}")),
            );
        }
    }
    for i in 0..DEPTH {
        let (o, t) = (format!("blocks.{i}"), format!("{v}.encoder.layers.{i}"));
        for (a, b) in [
            ("norm1", "layer_norm1"),
            ("attn.proj", "self_attn.out_proj"),
            ("norm2", "layer_norm2"),
            ("mlp.fc1", "mlp.fc1"),
            ("mlp.fc2", "mlp.fc2"),
        ] {
            for s in ["weight", "bias"] {
                out.insert(
                    format!("{t}.{b}.{s}"),
                    take(&mut img, &format!("{o}.{a}.{s}")),
                );
            }
        }
        for s in ["weight", "bias"] {
            let [q, k, vv] = split3(&take(&mut img, &format!("{o}.attn.qkv.{s}")));
            out.insert(format!("{t}.self_attn.q_proj.{s}"), q);
            out.insert(format!("{t}.self_attn.k_proj.{s}"), k);
            out.insert(format!("{t}.self_attn.v_proj.{s}"), vv);
        }
    }
    assert!(
        img.is_empty(),
        "untranslated: {:?}",
        img.keys().collect::<Vec<_>>()
    );
    out.insert(
        "logit_scale".into(),
        Tensor::new(4.6052f32, &Device::Cpu).unwrap(),
    );
    out
}

fn save(t: HashMap<String, Tensor>, dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    candle_core::safetensors::save(&t, &p).unwrap();
    p
}

fn load(p: &Path) -> PretrainedEmbedder {
    PretrainedEmbedder::load(
        Backbone::ClipB32,
        Some(&WeightsSource::File {
            path: p.to_path_buf(),
        }),
    )
    .unwrap()
}

fn image_input() -> Vec<f32> {
    synthetic::values(9, "img", 3 * 224 * 224, -1.0, 1.0)
}

const TEXTS: [&str; 3] = [
    "a photo of a dog",
    "",
    "Two parrots on a branch, at night 🌙",
];

#[test]
fn every_checkpoint_layout_gives_identical_image_and_text_vectors() {
    let dir = tempfile::tempdir().unwrap();
    // Text: the synthetic weights (generated in transformers' names).
    let reference = PretrainedEmbedder::load(
        Backbone::ClipB32,
        Some(&WeightsSource::Synthetic { seed: SEED }),
    )
    .unwrap();
    let want_text = reference.embed_texts(&TEXTS).unwrap();
    drop(reference);

    // timm: the image tower only, in the names the tower reads.
    let p = save(timm_image(), dir.path(), "timm.safetensors");
    let e = load(&p);
    let want_image = e.embed_batch(&[image_input()]).unwrap();
    let err = e.embed_texts(&["a dog"]).unwrap_err().to_string();
    assert!(
        err.contains("image tower only") && err.contains("open_clip_model.safetensors"),
        "{err}"
    );
    std::fs::remove_file(&p).unwrap();

    for (name, tensors) in [
        (
            "open_clip",
            open_clip_layout as fn() -> HashMap<String, Tensor>,
        ),
        ("transformers", transformers_layout),
    ] {
        let p = save(tensors(), dir.path(), &format!("{name}.safetensors"));
        let e = load(&p);
        assert!(e.has_text());
        assert_eq!(
            e.embed_batch(&[image_input()]).unwrap(),
            want_image,
            "{name}: image vectors"
        );
        assert_eq!(
            e.embed_texts(&TEXTS).unwrap(),
            want_text,
            "{name}: text vectors"
        );
        drop(e);
        std::fs::remove_file(&p).unwrap();
    }
}

#[test]
fn a_checkpoint_missing_a_text_tensor_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = open_clip_layout();
    t.remove("transformer.resblocks.4.ln_2.weight");
    let p = save(t, dir.path(), "broken.safetensors");
    let e = load(&p);
    // The image tower is whole; the text tower is read on first use.
    assert!(e.embed_batch(&[image_input()]).is_ok());
    let err = e.embed_texts(&["a dog"]).unwrap_err().to_string();
    assert!(
        err.contains("transformer.resblocks.4.ln_2.weight") && err.contains("broken.safetensors"),
        "{err}"
    );
}
