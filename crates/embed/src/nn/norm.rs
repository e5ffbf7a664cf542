//! Layer normalisation over the last dimension.

use candle_core::Tensor;

use crate::error::Result;
use crate::weights::Weights;

/// Layer norm over the last dimension.
pub(crate) struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub fn load(w: &Weights, model: &'static str, name: &str, d: usize, eps: f32) -> Result<Self> {
        Ok(LayerNorm {
            gamma: w.get(model, &format!("{name}.weight"), &[d])?,
            beta: w.get(model, &format!("{name}.bias"), &[d])?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(
            x,
            &self.gamma,
            &self.beta,
            self.eps,
        )?)
    }
}
