//! Vision transformers with timm's weight names, two presets:
//!
//! - DINOv2 ViT-S/14 (Oquab et al., "DINOv2: Learning Robust Visual Features
//!   without Supervision", 2023): the final-norm CLS token, 384-d. timm's
//!   `vit_small_patch14_dinov2` (Meta's original checkpoints use the same
//!   names; their `mask_token` is ignored). Unlike candle-transformers'
//!   `dinov2`, this batches, resamples the position embedding once at load
//!   time to the grid it will see (antialiased bicubic, as timm's
//!   `resample_abs_pos_embed`), uses LayerNorm ε = 1e-6, layer scale and the
//!   exact (erf) GELU, and needs no classifier weights.
//! - CLIP ViT-B/32's image tower (Radford et al., "Learning Transferable
//!   Visual Models From Natural Language Supervision", 2021): pre-norm
//!   (`ln_pre`), QuickGELU, final-norm CLS token projected to the 512-d joint
//!   image–text space. timm's `vit_base_patch32_clip_quickgelu_224` names.

use candle_core::{Device, Tensor};

use crate::error::{EmbedError, Result};
use crate::nn::{resample_bicubic_aa, LayerNorm, Linear};

use super::transformer::{Act, Block, BlockShape};
use crate::weights::Weights;

use super::Network;

/// The shape of a ViT.
#[derive(Debug, Clone, Copy)]
struct VitConfig {
    model: &'static str,
    dim: usize,
    depth: usize,
    heads: usize,
    mlp: usize,
    patch: usize,
    eps: f32,
    layer_scale: bool,
    patch_bias: bool,
    norm_pre: bool,
    act: Act,
    /// Side of the stored position embedding's grid when it cannot be read
    /// from the weights (synthetic weights).
    default_grid: usize,
    /// Projection after the final norm: output size.
    head: Option<usize>,
}

const DINOV2_S14: VitConfig = VitConfig {
    model: "vit_small_patch14_dinov2",
    dim: 384,
    depth: 12,
    heads: 6,
    mlp: 1536,
    patch: 14,
    eps: 1e-6,
    layer_scale: true,
    patch_bias: true,
    norm_pre: false,
    act: Act::Gelu,
    default_grid: 37,
    head: None,
};

const CLIP_B32: VitConfig = VitConfig {
    model: "vit_base_patch32_clip_quickgelu_224",
    dim: 768,
    depth: 12,
    heads: 12,
    mlp: 3072,
    patch: 32,
    eps: 1e-5,
    layer_scale: false,
    patch_bias: false,
    norm_pre: true,
    act: Act::QuickGelu,
    default_grid: 7,
    head: Some(512),
};

/// A vision transformer for a fixed input size; its output is the
/// final-norm CLS token (projected by the head, when the model has one).
pub struct Vit {
    cfg: VitConfig,
    patch_w: Tensor,
    patch_b: Option<Tensor>,
    cls: Tensor,
    pos: Tensor,
    norm_pre: Option<LayerNorm>,
    blocks: Vec<Block>,
    norm: LayerNorm,
    head: Option<Linear>,
    grid: usize,
}

/// DINOv2 ViT-S/14 (kept as a name for the preset).
pub type DinoV2 = Vit;

impl Vit {
    /// DINOv2 ViT-S/14 for `image_size × image_size` inputs (a multiple of 14).
    pub fn vit_small(w: &Weights, image_size: usize) -> Result<Self> {
        Self::build(w, DINOV2_S14, image_size)
    }

    /// CLIP ViT-B/32's image tower for `image_size` inputs (a multiple of 32).
    pub fn clip_b32(w: &Weights, image_size: usize) -> Result<Self> {
        Self::build(w, CLIP_B32, image_size)
    }

    fn build(w: &Weights, cfg: VitConfig, image_size: usize) -> Result<Self> {
        let (m, d, p) = (cfg.model, cfg.dim, cfg.patch);
        if image_size == 0 || !image_size.is_multiple_of(p) {
            return Err(EmbedError::Input(format!(
                "{m}: input size {image_size} is not a positive multiple of {p}"
            )));
        }
        let grid = image_size / p;
        let patch_w = w
            .get(m, "patch_embed.proj.weight", &[d, 3, p, p])?
            .reshape((d, 3 * p * p))?
            .t()?
            .contiguous()?;
        let patch_b = if cfg.patch_bias {
            Some(w.get(m, "patch_embed.proj.bias", &[d])?)
        } else {
            None
        };
        let cls = w.get(m, "cls_token", &[1, 1, d])?;
        // The stored position embedding: 1 + g² tokens (g = 37 for DINOv2's 518 px).
        let n_pos = w
            .dims("pos_embed")
            .map_or(1 + cfg.default_grid.pow(2), |s| {
                s.get(1).copied().unwrap_or(0)
            });
        let g0 = ((n_pos.saturating_sub(1)) as f64).sqrt() as usize;
        if g0 == 0 || 1 + g0 * g0 != n_pos {
            return Err(EmbedError::Weights {
                source_name: w.origin().to_string(),
                reason: format!("pos_embed has {n_pos} tokens, not 1 + a square grid"),
            });
        }
        let pos_all = w.get_vec(m, "pos_embed", &[1, n_pos, d])?;
        let pos = if g0 == grid {
            pos_all
        } else {
            // (g0*g0, d) token-major → channel-major, resample, back.
            let mut chw = vec![0f32; d * g0 * g0];
            for t in 0..g0 * g0 {
                for c in 0..d {
                    chw[c * g0 * g0 + t] = pos_all[(1 + t) * d + c];
                }
            }
            let r = resample_bicubic_aa(&chw, d, (g0, g0), (grid, grid));
            let mut out = pos_all[..d].to_vec();
            out.resize(d * (1 + grid * grid), 0.0);
            for t in 0..grid * grid {
                for c in 0..d {
                    out[(1 + t) * d + c] = r[c * grid * grid + t];
                }
            }
            out
        };
        let pos = Tensor::from_vec(pos, (1, 1 + grid * grid, d), &Device::Cpu)?;
        let norm_pre = if cfg.norm_pre {
            Some(LayerNorm::load(w, m, "norm_pre", d, cfg.eps)?)
        } else {
            None
        };
        let shape = BlockShape {
            model: m,
            dim: d,
            heads: cfg.heads,
            mlp: cfg.mlp,
            eps: cfg.eps,
            layer_scale: cfg.layer_scale,
            act: cfg.act,
        };
        let blocks = (0..cfg.depth)
            .map(|i| Block::load(w, &shape, &format!("blocks.{i}")))
            .collect::<Result<Vec<_>>>()?;
        let norm = LayerNorm::load(w, m, "norm", d, cfg.eps)?;
        let head = match cfg.head {
            Some(out) => Some(Linear::load_optional_bias(w, m, "head", d, out)?),
            None => None,
        };
        Ok(Vit {
            cfg,
            patch_w,
            patch_b,
            cls,
            pos,
            norm_pre,
            blocks,
            norm,
            head,
            grid,
        })
    }
}

impl Network for Vit {
    fn dim(&self) -> usize {
        self.cfg.head.unwrap_or(self.cfg.dim)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (p, d) = (self.cfg.patch, self.cfg.dim);
        let side = self.grid * p;
        match x.dims() {
            [_, 3, h, w] if *h == side && *w == side => {}
            s => {
                return Err(EmbedError::Input(format!(
                    "{} built for (B, 3, {side}, {side}) inputs, got {s:?}",
                    self.cfg.model
                )))
            }
        }
        let b = x.dim(0)?;
        let g = self.grid;
        // Non-overlapping patches as rows: a single matrix product.
        let patches = x
            .reshape((b, 3, g, p, g, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * g * g, 3 * p * p))?;
        let mut tokens = patches.matmul(&self.patch_w)?;
        if let Some(pb) = &self.patch_b {
            tokens = tokens.broadcast_add(pb)?;
        }
        let tokens = tokens.reshape((b, g * g, d))?;
        let cls = self.cls.broadcast_as((b, 1, d))?;
        let mut t = Tensor::cat(&[&cls, &tokens], 1)?.broadcast_add(&self.pos)?;
        if let Some(n) = &self.norm_pre {
            t = n.forward(&t)?;
        }
        for blk in &self.blocks {
            t = blk.forward(&t, false)?;
        }
        let t = self.norm.forward(&t)?;
        let cls = t.narrow(1, 0, 1)?.contiguous()?.reshape((b, d))?;
        match &self.head {
            Some(h) => h.forward(&cls),
            None => Ok(cls),
        }
    }
}
