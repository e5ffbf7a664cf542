//! The pre-norm transformer block shared by the vision transformers and
//! CLIP's text tower: LayerNorm → multi-head self-attention → residual,
//! LayerNorm → MLP → residual, with optional layer scale and a causal mask.

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::nn::{LayerNorm, Linear};
use crate::weights::Weights;

/// Activation of the MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Act {
    /// The exact (erf) GELU.
    Gelu,
    /// CLIP's `x·σ(1.702·x)`.
    QuickGelu,
}

/// The shape of one block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockShape {
    /// Model name, for weight errors.
    pub model: &'static str,
    /// Width.
    pub dim: usize,
    /// Attention heads.
    pub heads: usize,
    /// Hidden size of the MLP.
    pub mlp: usize,
    /// LayerNorm epsilon.
    pub eps: f32,
    /// Whether the block has layer-scale vectors (`ls1`, `ls2`).
    pub layer_scale: bool,
    /// The MLP's activation.
    pub act: Act,
}

/// One block, with timm's tensor names under a prefix (`blocks.3`,
/// `text.blocks.3`): `norm1`, `attn.qkv` (fused), `attn.proj`, `ls1.gamma`,
/// `norm2`, `mlp.fc1`, `mlp.fc2`, `ls2.gamma`.
pub(crate) struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ls1: Option<Tensor>,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    ls2: Option<Tensor>,
    heads: usize,
    act: Act,
}

impl Block {
    /// Loads the block named `prefix`.
    pub fn load(w: &Weights, s: &BlockShape, prefix: &str) -> Result<Self> {
        let (m, d) = (s.model, s.dim);
        let ls = |n: &str| -> Result<Option<Tensor>> {
            if s.layer_scale {
                Ok(Some(w.get(m, &format!("{prefix}.{n}.gamma"), &[d])?))
            } else {
                Ok(None)
            }
        };
        Ok(Block {
            norm1: LayerNorm::load(w, m, &format!("{prefix}.norm1"), d, s.eps)?,
            qkv: Linear::load(w, m, &format!("{prefix}.attn.qkv"), d, 3 * d)?,
            proj: Linear::load(w, m, &format!("{prefix}.attn.proj"), d, d)?,
            ls1: ls("ls1")?,
            norm2: LayerNorm::load(w, m, &format!("{prefix}.norm2"), d, s.eps)?,
            fc1: Linear::load(w, m, &format!("{prefix}.mlp.fc1"), d, s.mlp)?,
            fc2: Linear::load(w, m, &format!("{prefix}.mlp.fc2"), s.mlp, d)?,
            ls2: ls("ls2")?,
            heads: s.heads,
            act: s.act,
        })
    }

    fn attention(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let hd = d / self.heads;
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, n, 3, self.heads, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let q = (qkv.get(0)?.contiguous()? * (hd as f64).powf(-0.5))?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let mut att = q.matmul(&k.t()?)?;
        if causal && n > 1 {
            att = att.broadcast_add(&causal_mask(n)?)?;
        }
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?;
        self.proj.forward(&y)
    }

    /// Runs the block on `(B, N, D)` tokens; `causal` lets each token attend
    /// only to itself and the tokens before it.
    pub fn forward(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        let scale = |t: Tensor, ls: &Option<Tensor>| -> Result<Tensor> {
            Ok(match ls {
                Some(g) => t.broadcast_mul(g)?,
                None => t,
            })
        };
        let a = scale(self.attention(&self.norm1.forward(x)?, causal)?, &self.ls1)?;
        let x = (x + a)?;
        let h = self.fc1.forward(&self.norm2.forward(&x)?)?;
        let h = match self.act {
            Act::Gelu => crate::nn::gelu(&h)?,
            Act::QuickGelu => (&h * candle_nn::ops::sigmoid(&(&h * 1.702)?)?)?,
        };
        let m = scale(self.fc2.forward(&h)?, &self.ls2)?;
        Ok((x + m)?)
    }
}

/// `(N, N)` additive mask: 0 on and below the diagonal, −∞ above.
fn causal_mask(n: usize) -> Result<Tensor> {
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(mask, (n, n), &Device::Cpu)?)
}
