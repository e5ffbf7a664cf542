//! CLIP ViT-B/32's text transformer (Radford et al., 2021): token and
//! position embeddings, 12 pre-norm blocks under a causal mask, the final
//! LayerNorm, the features at the end-of-text token, and the projection
//! into the joint image–text space.
//!
//! Why not candle-transformers' `ClipTextTransformer`: it gives the same
//! numbers (same formulas, the transformers layout), but its linear layers
//! run one matrix product per sequence of the batch, and it reads only the
//! transformers layout. This tower reuses the blocks of our image towers
//! (one product over every token of the batch, through the same GEMM as the
//! image tower), reads all three checkpoint layouts through one translation
//! (`backbones::clip`), and computes only up to the longest sequence of the
//! batch: under the causal mask, padding after the end-of-text token cannot
//! change its features, so open_clip's fixed 77-token padding is work thrown
//! away. docs/EMBEDDING.md gives the measured throughput of both beside
//! PyTorch's.

use candle_core::{Device, Tensor};

use crate::backbones::clip::{CONTEXT, DEPTH, EMBED_DIM, TEXT_DIM, TEXT_MLP, TEXT_PREFIX, VOCAB};
use crate::backbones::transformer::{Act, Block, BlockShape};
use crate::error::{EmbedError, Result};
use crate::nn::{LayerNorm, Linear};
use crate::weights::Weights;

/// Model name in weight errors.
pub(crate) const MODEL: &str = "clip_vit_b32_text";

/// The text tower, weights in our names (see `backbones::clip`).
pub(crate) struct TextTower {
    token_embedding: Vec<f32>,
    pos: Vec<f32>,
    blocks: Vec<Block>,
    norm: LayerNorm,
    head: Linear,
}

impl TextTower {
    /// Builds the tower from weights translated to our names.
    pub(crate) fn load(w: &Weights) -> Result<Self> {
        let p = TEXT_PREFIX;
        let d = TEXT_DIM;
        let shape = BlockShape {
            model: MODEL,
            dim: d,
            heads: 8,
            mlp: TEXT_MLP,
            eps: 1e-5,
            layer_scale: false,
            act: Act::QuickGelu,
        };
        Ok(TextTower {
            token_embedding: w.get_vec(
                MODEL,
                &format!("{p}.token_embedding.weight"),
                &[VOCAB, d],
            )?,
            pos: w.get_vec(MODEL, &format!("{p}.pos_embed"), &[CONTEXT, d])?,
            blocks: (0..DEPTH)
                .map(|i| Block::load(w, &shape, &format!("{p}.blocks.{i}")))
                .collect::<Result<Vec<_>>>()?,
            norm: LayerNorm::load(w, MODEL, &format!("{p}.norm"), d, 1e-5)?,
            head: Linear::load_optional_bias(w, MODEL, &format!("{p}.head"), d, EMBED_DIM)?,
        })
    }

    /// Features `(B, 512)` (not normalised) of token sequences, each
    /// starting with the start token and holding an end token, at most
    /// [`CONTEXT`] long. Each sequence is read at its first end-of-text
    /// token (the highest id, as CLIP's `argmax` pooling finds it).
    pub(crate) fn forward(&self, sequences: &[Vec<u32>]) -> Result<Tensor> {
        let d = TEXT_DIM;
        let b = sequences.len();
        if b == 0 {
            return Ok(Tensor::zeros(
                (0, EMBED_DIM),
                candle_core::DType::F32,
                &Device::Cpu,
            )?);
        }
        let mut pool = Vec::with_capacity(b);
        for s in sequences {
            if s.is_empty() || s.len() > CONTEXT {
                return Err(EmbedError::Input(format!(
                    "{MODEL}: a token sequence must hold 1 to {CONTEXT} tokens, not {}",
                    s.len()
                )));
            }
            if let Some(bad) = s.iter().find(|&&t| t as usize >= VOCAB) {
                return Err(EmbedError::Input(format!(
                    "{MODEL}: token id {bad} is outside the vocabulary of {VOCAB}"
                )));
            }
            let max = *s.iter().max().expect("not empty");
            pool.push(s.iter().position(|&t| t == max).expect("max is present"));
        }
        // Only up to the last pooled position is needed: later tokens never
        // reach an earlier one through the causal mask.
        let n = pool.iter().max().expect("b > 0") + 1;
        let mut x = vec![0f32; b * n * d];
        for (i, s) in sequences.iter().enumerate() {
            for j in 0..n {
                let tok = s.get(j).copied().unwrap_or(0) as usize;
                let row = &mut x[(i * n + j) * d..(i * n + j + 1) * d];
                let e = &self.token_embedding[tok * d..(tok + 1) * d];
                let p = &self.pos[j * d..(j + 1) * d];
                for ((r, e), p) in row.iter_mut().zip(e).zip(p) {
                    *r = e + p;
                }
            }
        }
        let mut t = Tensor::from_vec(x, (b, n, d), &Device::Cpu)?;
        for blk in &self.blocks {
            t = blk.forward(&t, true)?;
        }
        let rows = pool
            .iter()
            .enumerate()
            .map(|(i, &j)| t.get(i)?.get(j))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let pooled = Tensor::stack(&rows, 0)?;
        let pooled = self.norm.forward(&pooled)?;
        self.head.forward(&pooled)
    }
}
