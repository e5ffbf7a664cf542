//! Linear layers (`y = x Wᵀ + b` over the last dimension) on the crate's GEMM.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use super::contiguous_f32;
use crate::error::Result;
use crate::weights::Weights;

/// A linear layer `y = x Wᵀ + b` over the last dimension, on [`crate::blas`].
pub(crate) struct Linear {
    wt: Vec<f32>,
    bias: Vec<f32>,
    d_in: usize,
    out: usize,
}

struct LinearOp<'a>(&'a Linear);

impl CustomOp1 for LinearOp<'_> {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let lin = self.0;
        let x = contiguous_f32(s, l, "linear")?;
        let rows = x.len() / lin.d_in;
        let mut y = vec![0f32; rows * lin.out];
        crate::blas::sgemm(rows, lin.out, lin.d_in, x, &lin.wt, &mut y);
        for r in y.chunks_exact_mut(lin.out) {
            r.iter_mut().zip(&lin.bias).for_each(|(v, b)| *v += b);
        }
        let mut dims = l.shape().dims().to_vec();
        *dims.last_mut().expect("rank >= 1") = lin.out;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }
}

impl Linear {
    pub fn load(
        w: &Weights,
        model: &'static str,
        name: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<Self> {
        let bias = w.get_vec(model, &format!("{name}.bias"), &[d_out])?;
        Self::with_bias(w, model, name, d_in, d_out, bias)
    }

    /// A linear layer whose bias may be absent from the weights (then zero),
    /// as CLIP's projection in OpenAI's checkpoints.
    pub fn load_optional_bias(
        w: &Weights,
        model: &'static str,
        name: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<Self> {
        let bias_name = format!("{name}.bias");
        let bias = if w.contains(&bias_name) {
            w.get_vec(model, &bias_name, &[d_out])?
        } else {
            vec![0.0; d_out]
        };
        Self::with_bias(w, model, name, d_in, d_out, bias)
    }

    fn with_bias(
        w: &Weights,
        model: &'static str,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: Vec<f32>,
    ) -> Result<Self> {
        let weight = w.get(model, &format!("{name}.weight"), &[d_out, d_in])?;
        Ok(Linear {
            wt: weight.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?,
            bias,
            d_in,
            out: d_out,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.dims().last() != Some(&self.d_in) {
            return Err(crate::error::EmbedError::Input(format!(
                "linear layer expects {} features, got shape {:?}",
                self.d_in,
                x.dims()
            )));
        }
        Ok(x.contiguous()?.apply_op1_no_bwd(&LinearOp(self))?)
    }
}
