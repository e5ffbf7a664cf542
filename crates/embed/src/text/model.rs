//! CLIP ViT-B/32's text transformer (Radford et al., 2021): token and
//! position embeddings, 12 pre-norm blocks under a causal mask, the final
//! LayerNorm, the features at the end-of-text token, and the projection
//! into the joint image–text space.
//!
//! Why not candle-transformers' `ClipTextTransformer`: it gives the same
//! numbers (same formulas, the transformers layout), but its linear layers
//! run one matrix product per sequence of the batch, it always computes
//! every position it is given, and it reads only the transformers layout.
//! This tower reuses the blocks of our image towers (one product over every
//! token of the batch, through the same GEMM as the image tower), reads all
//! three checkpoint layouts through one translation (`backbones::clip`), and
//! does less work: under the causal mask, tokens after the end-of-text
//! token cannot change its features, so a sequence is computed only up to
//! it (open_clip always computes 77 positions), and sequences of similar
//! lengths run together so that short prompts are not padded to a long
//! caption (transformers pads a batch to its longest). docs/EMBEDDING.md
//! gives the measured throughput beside PyTorch's.

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
        // Sequences of similar lengths run together, each group padded only
        // to its own longest (see `groups`); results go back in order.
        let mut order: Vec<usize> = (0..b).collect();
        order.sort_by_key(|&i| pool[i]);
        let mut out: Vec<Option<Tensor>> = vec![None; b];
        for group in groups(&order, &pool) {
            let seqs: Vec<&[u32]> = group.iter().map(|&i| sequences[i].as_slice()).collect();
            let at: Vec<usize> = group.iter().map(|&i| pool[i]).collect();
            let y = self.forward_group(&seqs, &at)?;
            for (row, &i) in group.iter().enumerate() {
                out[i] = Some(y.get(row)?);
            }
        }
        let rows: Vec<Tensor> = out
            .into_iter()
            .map(|t| t.expect("every row computed"))
            .collect();
        Ok(Tensor::stack(&rows, 0)?)
    }

    /// One group: padded to the last pooled position (later tokens never
    /// reach an earlier one through the causal mask), read at `pool`.
    fn forward_group(&self, sequences: &[&[u32]], pool: &[usize]) -> Result<Tensor> {
        let d = TEXT_DIM;
        let b = sequences.len();
        let n = pool.iter().max().expect("a group is not empty") + 1;
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

/// Splits `order` (indices sorted by pooled position) into groups whose
/// padding wastes at most a quarter of their tokens: a batch of short
/// prompts and a few long captions runs as two products, not one padded to
/// the longest caption. Fewer, larger groups are faster per token, so a
/// group grows while the waste stays under that bound.
fn groups(order: &[usize], pool: &[usize]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut tokens = 0;
    for &i in order {
        let len = pool[i] + 1;
        // Sorted ascending: `len` is the new group maximum.
        let padded = (cur.len() + 1) * len;
        if !cur.is_empty() && padded * 4 > (tokens + len) * 5 {
            out.push(std::mem::take(&mut cur));
            tokens = 0;
        }
        cur.push(i);
        tokens += len;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_keep_padding_under_a_quarter() {
        // 28 prompts of 8-10 tokens and 4 captions of 20-23.
        let pool: Vec<usize> = (0..28).map(|i| 7 + i % 3).chain([19, 20, 21, 22]).collect();
        let mut order: Vec<usize> = (0..pool.len()).collect();
        order.sort_by_key(|&i| pool[i]);
        let g = super::groups(&order, &pool);
        assert!(g.len() >= 2 && g.len() <= 4, "{g:?}");
        let mut all: Vec<usize> = g.concat();
        all.sort_unstable();
        assert_eq!(all, (0..pool.len()).collect::<Vec<_>>());
        for grp in &g {
            let max = grp.iter().map(|&i| pool[i] + 1).max().unwrap();
            let real: usize = grp.iter().map(|&i| pool[i] + 1).sum();
            assert!(grp.len() * max * 4 <= real * 5 || grp.len() == 1, "{grp:?}");
        }
        // Equal lengths: one group.
        assert_eq!(super::groups(&[0, 1, 2], &[5, 5, 5]).len(), 1);
    }
}
