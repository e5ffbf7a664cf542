//! CLIP ViT-B/32 checkpoints in their three layouts, translated to the names
//! the towers read.
//!
//! The image tower reads timm's names (`cls_token`, `blocks.0.attn.qkv`, …);
//! the text tower reads the same block names under `text.` (see
//! [`TEXT_PREFIX`]). A checkpoint may be:
//!
//! - **timm** (`timm/vit_base_patch32_clip_224.openai`, `model.safetensors`):
//!   the image tower only, already in the names the image tower reads;
//! - **open_clip** (the same repository's `open_clip_model.safetensors`):
//!   both towers, `visual.*` and `transformer.*`, fused attention
//!   projections, `x @ proj` projections;
//! - **Hugging Face transformers** (`openai/clip-vit-base-patch32`,
//!   `model.safetensors`): both towers, `vision_model.*` and `text_model.*`,
//!   separate q/k/v projections, `nn.Linear` projections.
//!
//! Translation only renames, reshapes, concatenates and transposes, which
//! are exact: the image tower gives bit-identical vectors from any of the
//! three files holding the same weights (tested).

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::error::{EmbedError, Result};
use crate::synthetic;
use crate::weights::Weights;

/// Prefix of the text tower's tensors in the translated names.
pub(crate) const TEXT_PREFIX: &str = "text";
/// Transformer blocks in each tower of ViT-B/32.
pub(crate) const DEPTH: usize = 12;
/// Width of the text tower.
pub(crate) const TEXT_DIM: usize = 512;
/// Hidden size of the text tower's MLP.
pub(crate) const TEXT_MLP: usize = 2048;
/// Token vocabulary of CLIP's BPE tokenizer.
pub(crate) const VOCAB: usize = 49408;
/// Context length of the text tower.
pub(crate) const CONTEXT: usize = 77;
/// Size of the joint image–text space.
pub(crate) const EMBED_DIM: usize = 512;

/// Which layout a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// timm's image-tower names (also what the synthetic generator uses for
    /// the image tower).
    Timm,
    /// open_clip's names.
    OpenClip,
    /// Hugging Face transformers' `CLIPModel` names.
    Transformers,
}

impl Layout {
    /// Detects the layout of `w` by its tensor names (synthetic weights are
    /// generated in timm's names for the image tower, transformers' for the
    /// text tower).
    pub(crate) fn of(w: &Weights) -> Layout {
        if w.is_synthetic() {
            Layout::Timm
        } else if w.contains("vision_model.embeddings.class_embedding")
            || w.contains("text_model.embeddings.token_embedding.weight")
        {
            Layout::Transformers
        } else if w.contains("visual.class_embedding") || w.contains("token_embedding.weight") {
            Layout::OpenClip
        } else {
            Layout::Timm
        }
    }
}

/// Per-block names: ours (timm's) and the two other layouts'.
struct BlockNames {
    norm1: &'static str,
    proj: &'static str,
    norm2: &'static str,
    fc1: &'static str,
    fc2: &'static str,
}

const HF_BLOCK: BlockNames = BlockNames {
    norm1: "layer_norm1",
    proj: "self_attn.out_proj",
    norm2: "layer_norm2",
    fc1: "mlp.fc1",
    fc2: "mlp.fc2",
};

const OPEN_CLIP_BLOCK: BlockNames = BlockNames {
    norm1: "ln_1",
    proj: "attn.out_proj",
    norm2: "ln_2",
    fc1: "mlp.c_fc",
    fc2: "mlp.c_proj",
};

/// Builds translated tensors from a source checkpoint, naming what is missing.
struct Translator<'a> {
    src: &'a Weights,
    model: &'static str,
    out: HashMap<String, Tensor>,
}

impl Translator<'_> {
    fn get(&self, name: &str) -> Result<Tensor> {
        self.src
            .tensor(name)
            .ok_or_else(|| EmbedError::MissingTensor {
                source_name: self.src.origin().to_string(),
                name: name.to_string(),
                model: self.model,
            })
    }

    fn put(&mut self, name: String, t: Tensor) {
        self.out.insert(name, t);
    }

    fn rename(&mut self, to: String, from: &str) -> Result<()> {
        let t = self.get(from)?;
        self.put(to, t);
        Ok(())
    }

    /// `.weight` and `.bias` of a layer.
    fn rename_wb(&mut self, to: &str, from: &str) -> Result<()> {
        for s in ["weight", "bias"] {
            self.rename(format!("{to}.{s}"), &format!("{from}.{s}"))?;
        }
        Ok(())
    }

    fn transpose(&mut self, to: String, from: &str) -> Result<()> {
        let t = self.get(from)?.t()?.contiguous()?;
        self.put(to, t);
        Ok(())
    }

    fn reshape(&mut self, to: String, from: &str, shape: &[usize]) -> Result<()> {
        let t = self.get(from)?;
        let t = t.reshape(shape).map_err(|_| EmbedError::TensorShape {
            source_name: self.src.origin().to_string(),
            name: from.to_string(),
            model: self.model,
            expected: shape.to_vec(),
            found: t.dims().to_vec(),
        })?;
        self.put(to, t);
        Ok(())
    }

    /// One transformer block from `from` (a block prefix in `layout`) to `to`.
    fn block(&mut self, to: &str, from: &str, layout: Layout) -> Result<()> {
        let names = match layout {
            Layout::Transformers => &HF_BLOCK,
            Layout::OpenClip => &OPEN_CLIP_BLOCK,
            Layout::Timm => unreachable!("timm blocks need no translation"),
        };
        self.rename_wb(&format!("{to}.norm1"), &format!("{from}.{}", names.norm1))?;
        self.rename_wb(
            &format!("{to}.attn.proj"),
            &format!("{from}.{}", names.proj),
        )?;
        self.rename_wb(&format!("{to}.norm2"), &format!("{from}.{}", names.norm2))?;
        self.rename_wb(&format!("{to}.mlp.fc1"), &format!("{from}.{}", names.fc1))?;
        self.rename_wb(&format!("{to}.mlp.fc2"), &format!("{from}.{}", names.fc2))?;
        match layout {
            Layout::Transformers => {
                for s in ["weight", "bias"] {
                    let parts = ["q_proj", "k_proj", "v_proj"]
                        .map(|p| self.get(&format!("{from}.self_attn.{p}.{s}")))
                        .into_iter()
                        .collect::<Result<Vec<_>>>()?;
                    let fused = Tensor::cat(&parts, 0)?;
                    self.put(format!("{to}.attn.qkv.{s}"), fused);
                }
            }
            Layout::OpenClip => {
                self.rename(
                    format!("{to}.attn.qkv.weight"),
                    &format!("{from}.attn.in_proj_weight"),
                )?;
                self.rename(
                    format!("{to}.attn.qkv.bias"),
                    &format!("{from}.attn.in_proj_bias"),
                )?;
            }
            Layout::Timm => {}
        }
        Ok(())
    }

    fn finish(self) -> Weights {
        self.src.derived(self.out)
    }
}

/// Weights as a tower reads them: the checkpoint itself when it already
/// uses the tower's names, or a translated copy.
pub(crate) enum Translated<'a> {
    /// The checkpoint as it is.
    Same(&'a Weights),
    /// Translated tensors (same origin and digest as the checkpoint).
    New(Weights),
}

impl std::ops::Deref for Translated<'_> {
    type Target = Weights;
    fn deref(&self) -> &Weights {
        match self {
            Translated::Same(w) => w,
            Translated::New(w) => w,
        }
    }
}

/// The image tower's weights in timm's names, whichever layout `w` uses.
pub(crate) fn image_weights<'a>(w: &'a Weights, model: &'static str) -> Result<Translated<'a>> {
    let layout = Layout::of(w);
    if layout == Layout::Timm {
        return Ok(Translated::Same(w));
    }
    let mut t = Translator {
        src: w,
        model,
        out: HashMap::new(),
    };
    let (root, blocks) = match layout {
        Layout::Transformers => ("vision_model", "vision_model.encoder.layers"),
        _ => ("visual", "visual.transformer.resblocks"),
    };
    let class = match layout {
        Layout::Transformers => format!("{root}.embeddings.class_embedding"),
        _ => format!("{root}.class_embedding"),
    };
    let d = t.get(&class)?.dims().iter().product::<usize>();
    t.reshape("cls_token".into(), &class, &[1, 1, d])?;
    match layout {
        Layout::Transformers => {
            let pos = format!("{root}.embeddings.position_embedding.weight");
            let n = t.get(&pos)?.dim(0)?;
            t.reshape("pos_embed".into(), &pos, &[1, n, d])?;
            t.rename(
                "patch_embed.proj.weight".into(),
                &format!("{root}.embeddings.patch_embedding.weight"),
            )?;
            t.rename_wb("norm_pre", &format!("{root}.pre_layrnorm"))?;
            t.rename_wb("norm", &format!("{root}.post_layernorm"))?;
            t.rename("head.weight".into(), "visual_projection.weight")?;
        }
        _ => {
            let pos = format!("{root}.positional_embedding");
            let n = t.get(&pos)?.dim(0)?;
            t.reshape("pos_embed".into(), &pos, &[1, n, d])?;
            t.rename(
                "patch_embed.proj.weight".into(),
                &format!("{root}.conv1.weight"),
            )?;
            t.rename_wb("norm_pre", &format!("{root}.ln_pre"))?;
            t.rename_wb("norm", &format!("{root}.ln_post"))?;
            t.transpose("head.weight".into(), &format!("{root}.proj"))?;
        }
    }
    for i in 0..DEPTH {
        t.block(&format!("blocks.{i}"), &format!("{blocks}.{i}"), layout)?;
    }
    Ok(Translated::New(t.finish()))
}

/// The names and shapes of transformers' `CLIPModel` text tower (and the
/// text projection), in which synthetic text weights are generated so that
/// the PyTorch reference can fill a `CLIPModel` by the same names.
pub(crate) fn transformers_text_tensors() -> Vec<(String, Vec<usize>)> {
    let (d, m) = (TEXT_DIM, TEXT_MLP);
    let mut v = vec![
        (
            "text_model.embeddings.token_embedding.weight".to_string(),
            vec![VOCAB, d],
        ),
        (
            "text_model.embeddings.position_embedding.weight".to_string(),
            vec![CONTEXT, d],
        ),
    ];
    for i in 0..DEPTH {
        let p = format!("text_model.encoder.layers.{i}");
        for (n, shape) in [
            ("self_attn.q_proj", vec![d, d]),
            ("self_attn.k_proj", vec![d, d]),
            ("self_attn.v_proj", vec![d, d]),
            ("self_attn.out_proj", vec![d, d]),
            ("layer_norm1", vec![d]),
            ("mlp.fc1", vec![m, d]),
            ("mlp.fc2", vec![d, m]),
            ("layer_norm2", vec![d]),
        ] {
            let out = if shape.len() == 1 { d } else { shape[0] };
            v.push((format!("{p}.{n}.weight"), shape));
            v.push((format!("{p}.{n}.bias"), vec![out]));
        }
    }
    v.push(("text_model.final_layer_norm.weight".into(), vec![d]));
    v.push(("text_model.final_layer_norm.bias".into(), vec![d]));
    v.push(("text_projection.weight".into(), vec![EMBED_DIM, d]));
    v
}

/// The text tower's weights in our names (`text.…`), whichever layout `w`
/// uses; synthetic weights are generated in transformers' names and
/// translated like a file.
pub(crate) fn text_weights<'a>(w: &'a Weights, model: &'static str) -> Result<Translated<'a>> {
    if w.is_synthetic() {
        let seed = w.synthetic_seed().expect("synthetic weights have a seed");
        let mut map = HashMap::new();
        for (name, shape) in transformers_text_tensors() {
            let values = synthetic::tensor_values(seed, &name, &shape);
            map.insert(
                name,
                Tensor::from_vec(values, shape.as_slice(), &Device::Cpu)?,
            );
        }
        let generated = w.derived(map);
        return translate_text(&generated, Layout::Transformers, model).map(Translated::New);
    }
    let layout = Layout::of(w);
    if layout == Layout::Timm {
        if w.contains(&format!("{TEXT_PREFIX}.token_embedding.weight")) {
            return Ok(Translated::Same(w));
        }
        return Err(EmbedError::Weights {
            source_name: w.origin().to_string(),
            reason: "this checkpoint holds CLIP's image tower only (timm's model.safetensors); \
                     text search needs the full CLIP checkpoint with both towers, e.g. \
                     hf:timm/vit_base_patch32_clip_224.openai:open_clip_model.safetensors \
                     or hf:openai/clip-vit-base-patch32:model.safetensors"
                .into(),
        });
    }
    translate_text(w, layout, model).map(Translated::New)
}

fn translate_text(w: &Weights, layout: Layout, model: &'static str) -> Result<Weights> {
    let mut t = Translator {
        src: w,
        model,
        out: HashMap::new(),
    };
    let p = TEXT_PREFIX;
    match layout {
        Layout::Transformers => {
            t.rename(
                format!("{p}.token_embedding.weight"),
                "text_model.embeddings.token_embedding.weight",
            )?;
            t.rename(
                format!("{p}.pos_embed"),
                "text_model.embeddings.position_embedding.weight",
            )?;
            t.rename_wb(&format!("{p}.norm"), "text_model.final_layer_norm")?;
            t.rename(format!("{p}.head.weight"), "text_projection.weight")?;
            for i in 0..DEPTH {
                t.block(
                    &format!("{p}.blocks.{i}"),
                    &format!("text_model.encoder.layers.{i}"),
                    layout,
                )?;
            }
        }
        Layout::OpenClip => {
            t.rename(
                format!("{p}.token_embedding.weight"),
                "token_embedding.weight",
            )?;
            t.rename(format!("{p}.pos_embed"), "positional_embedding")?;
            t.rename_wb(&format!("{p}.norm"), "ln_final")?;
            t.transpose(format!("{p}.head.weight"), "text_projection")?;
            for i in 0..DEPTH {
                t.block(
                    &format!("{p}.blocks.{i}"),
                    &format!("transformer.resblocks.{i}"),
                    layout,
                )?;
            }
        }
        Layout::Timm => unreachable!("handled by the caller"),
    }
    Ok(t.finish())
}
