//! DINOv2 ViT-S/14: the final-norm CLS token (384-d).
//!
//! Oquab et al., "DINOv2: Learning Robust Visual Features without
//! Supervision" (2023). Weight names follow timm's `vit_small_patch14_dinov2`
//! (and Meta's original checkpoints, whose `mask_token` is ignored). Unlike
//! candle-transformers' `dinov2`, this implementation batches, resamples the
//! position embedding once at load time to the grid it will see
//! (antialiased bicubic, as timm's `resample_abs_pos_embed`), uses LayerNorm
//! ε = 1e-6 and the exact (erf) GELU, and needs no classifier weights.

use candle_core::{Device, Tensor};

use crate::error::{EmbedError, Result};
use crate::nn::{resample_bicubic_aa, LayerNorm, Linear};
use crate::weights::Weights;

use super::Network;

const MODEL: &str = "vit_small_patch14_dinov2";
const DIM: usize = 384;
const DEPTH: usize = 12;
const HEADS: usize = 6;
const MLP: usize = 1536;
const PATCH: usize = 14;
const EPS: f32 = 1e-6;

struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ls1: Tensor,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    ls2: Tensor,
}

impl Block {
    fn load(w: &Weights, i: usize) -> Result<Self> {
        let p = format!("blocks.{i}");
        Ok(Block {
            norm1: LayerNorm::load(w, MODEL, &format!("{p}.norm1"), DIM, EPS)?,
            qkv: Linear::load(w, MODEL, &format!("{p}.attn.qkv"), DIM, 3 * DIM)?,
            proj: Linear::load(w, MODEL, &format!("{p}.attn.proj"), DIM, DIM)?,
            ls1: w.get(MODEL, &format!("{p}.ls1.gamma"), &[DIM])?,
            norm2: LayerNorm::load(w, MODEL, &format!("{p}.norm2"), DIM, EPS)?,
            fc1: Linear::load(w, MODEL, &format!("{p}.mlp.fc1"), DIM, MLP)?,
            fc2: Linear::load(w, MODEL, &format!("{p}.mlp.fc2"), MLP, DIM)?,
            ls2: w.get(MODEL, &format!("{p}.ls2.gamma"), &[DIM])?,
        })
    }

    fn attention(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let hd = DIM / HEADS;
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, n, 3, HEADS, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let q = (qkv.get(0)?.contiguous()? * (hd as f64).powf(-0.5))?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let att = q.matmul(&k.t()?)?;
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, n, DIM))?;
        self.proj.forward(&y)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.attention(&self.norm1.forward(x)?)?;
        let x = (x + a.broadcast_mul(&self.ls1)?)?;
        let h = self.fc1.forward(&self.norm2.forward(&x)?)?;
        let h = crate::nn::gelu(&h)?;
        let m = self.fc2.forward(&h)?;
        Ok((x + m.broadcast_mul(&self.ls2)?)?)
    }
}

/// DINOv2 ViT-S/14 for a fixed input size.
pub struct DinoV2 {
    patch_w: Tensor,
    patch_b: Tensor,
    cls: Tensor,
    pos: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    grid: usize,
}

impl DinoV2 {
    /// Builds ViT-S/14 for `image_size × image_size` inputs (a multiple of 14).
    pub fn vit_small(w: &Weights, image_size: usize) -> Result<Self> {
        if image_size == 0 || !image_size.is_multiple_of(PATCH) {
            return Err(EmbedError::Input(format!(
                "DINOv2 input size {image_size} is not a positive multiple of {PATCH}"
            )));
        }
        let grid = image_size / PATCH;
        let patch_w = w
            .get(MODEL, "patch_embed.proj.weight", &[DIM, 3, PATCH, PATCH])?
            .reshape((DIM, 3 * PATCH * PATCH))?
            .t()?
            .contiguous()?;
        let patch_b = w.get(MODEL, "patch_embed.proj.bias", &[DIM])?;
        let cls = w.get(MODEL, "cls_token", &[1, 1, DIM])?;
        // The stored position embedding: 1 + g² tokens (g = 37 for 518 px).
        let n_pos = w
            .dims("pos_embed")
            .map_or(1 + 37 * 37, |d| d.get(1).copied().unwrap_or(0));
        let g0 = ((n_pos.saturating_sub(1)) as f64).sqrt() as usize;
        if g0 == 0 || 1 + g0 * g0 != n_pos {
            return Err(EmbedError::Weights {
                source_name: w.origin().to_string(),
                reason: format!("pos_embed has {n_pos} tokens, not 1 + a square grid"),
            });
        }
        let pos_all = w.get_vec(MODEL, "pos_embed", &[1, n_pos, DIM])?;
        let pos = if g0 == grid {
            pos_all
        } else {
            // (g0*g0, DIM) token-major → channel-major, resample, back.
            let mut chw = vec![0f32; DIM * g0 * g0];
            for t in 0..g0 * g0 {
                for c in 0..DIM {
                    chw[c * g0 * g0 + t] = pos_all[(1 + t) * DIM + c];
                }
            }
            let r = resample_bicubic_aa(&chw, DIM, (g0, g0), (grid, grid));
            let mut out = pos_all[..DIM].to_vec();
            out.resize(DIM * (1 + grid * grid), 0.0);
            for t in 0..grid * grid {
                for c in 0..DIM {
                    out[(1 + t) * DIM + c] = r[c * grid * grid + t];
                }
            }
            out
        };
        let pos = Tensor::from_vec(pos, (1, 1 + grid * grid, DIM), &Device::Cpu)?;
        let blocks = (0..DEPTH)
            .map(|i| Block::load(w, i))
            .collect::<Result<Vec<_>>>()?;
        let norm = LayerNorm::load(w, MODEL, "norm", DIM, EPS)?;
        Ok(DinoV2 {
            patch_w,
            patch_b,
            cls,
            pos,
            blocks,
            norm,
            grid,
        })
    }
}

impl Network for DinoV2 {
    fn dim(&self) -> usize {
        DIM
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let side = self.grid * PATCH;
        match x.dims() {
            [_, 3, h, w] if *h == side && *w == side => {}
            d => {
                return Err(EmbedError::Input(format!(
                    "DINOv2 built for (B, 3, {side}, {side}) inputs, got {d:?}"
                )))
            }
        }
        let b = x.dim(0)?;
        let g = self.grid;
        // Non-overlapping 14×14 patches as rows: a single matrix product.
        let patches = x
            .reshape((b, 3, g, PATCH, g, PATCH))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * g * g, 3 * PATCH * PATCH))?;
        let tokens = patches
            .matmul(&self.patch_w)?
            .broadcast_add(&self.patch_b)?
            .reshape((b, g * g, DIM))?;
        let cls = self.cls.broadcast_as((b, 1, DIM))?;
        let mut t = Tensor::cat(&[&cls, &tokens], 1)?.broadcast_add(&self.pos)?;
        for blk in &self.blocks {
            t = blk.forward(&t)?;
        }
        let t = self.norm.forward(&t)?;
        Ok(t.narrow(1, 0, 1)?.contiguous()?.reshape((b, DIM))?)
    }
}
