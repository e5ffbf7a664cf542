//! Inference convolutions: a convolution with batch norm folded in
//! ([`ConvBn`]), run as im2col + GEMM (groups = 1), as a direct depthwise
//! kernel (one filter per channel), or by candle (other groupings).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use super::im2col::im2col_rows;
use super::{contiguous_f32, conv_out_dims, valid_cols};
use crate::error::Result;
use crate::weights::Weights;

/// Activation after a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Act {
    None,
    Relu,
}

/// Geometry of a convolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvSpec {
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub groups: usize,
}

impl ConvSpec {
    pub fn new(c_in: usize, c_out: usize, k: usize, stride: usize) -> Self {
        ConvSpec {
            c_in,
            c_out,
            k,
            stride,
            groups: 1,
        }
    }
    pub fn depthwise(c: usize, k: usize, stride: usize) -> Self {
        ConvSpec {
            c_in: c,
            c_out: c,
            k,
            stride,
            groups: c,
        }
    }
}

/// A convolution followed by batch norm (folded into the kernel and a bias
/// at load time: `w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)`) and an activation.
pub(crate) struct ConvBn {
    weight: Tensor,
    bias: Tensor,
    bias_vec: Vec<f32>,
    weight_vec: Vec<f32>,
    spec: ConvSpec,
    act: Act,
}

impl ConvBn {
    /// Loads `{conv}.weight` and the batch norm `{bn}.*` (eps `eps`).
    pub fn load(
        w: &Weights,
        model: &'static str,
        conv: &str,
        bn: &str,
        spec: ConvSpec,
        act: Act,
        eps: f64,
    ) -> Result<Self> {
        let cin_g = spec.c_in / spec.groups;
        let shape = [spec.c_out, cin_g, spec.k, spec.k];
        let mut kernel = w.get_vec(model, &format!("{conv}.weight"), &shape)?;
        let c = spec.c_out;
        let gamma = w.get_vec(model, &format!("{bn}.weight"), &[c])?;
        let beta = w.get_vec(model, &format!("{bn}.bias"), &[c])?;
        let mean = w.get_vec(model, &format!("{bn}.running_mean"), &[c])?;
        let var = w.get_vec(model, &format!("{bn}.running_var"), &[c])?;
        // An optional convolution bias: only a stored one (synthetic
        // weights, like torchvision's, have none before a batch norm).
        let bias_name = format!("{conv}.bias");
        let conv_bias = match w.dims(&bias_name) {
            Some(_) => Some(w.get_vec(model, &bias_name, &[c])?),
            None => None,
        };
        let per = cin_g * spec.k * spec.k;
        let mut bias = vec![0f32; c];
        for o in 0..c {
            let scale = (f64::from(gamma[o]) / (f64::from(var[o]) + eps).sqrt()) as f32;
            for v in &mut kernel[o * per..(o + 1) * per] {
                *v *= scale;
            }
            let cb = conv_bias.as_ref().map_or(0.0, |b| b[o]);
            bias[o] = beta[o] + (cb - mean[o]) * scale;
        }
        Self::from_parts(kernel, bias, spec, act)
    }

    /// A convolution with an explicit kernel and bias (no batch norm).
    pub fn from_parts(kernel: Vec<f32>, bias: Vec<f32>, spec: ConvSpec, act: Act) -> Result<Self> {
        let cin_g = spec.c_in / spec.groups;
        let weight = Tensor::from_vec(
            kernel.clone(),
            (spec.c_out, cin_g, spec.k, spec.k),
            &candle_core::Device::Cpu,
        )?;
        let b = Tensor::from_vec(
            bias.clone(),
            (1, spec.c_out, 1, 1),
            &candle_core::Device::Cpu,
        )?;
        Ok(ConvBn {
            weight,
            bias: b,
            bias_vec: bias,
            weight_vec: kernel,
            spec,
            act,
        })
    }

    /// Applies the layer to an NCHW tensor; `residual`, when given, is added
    /// before the activation.
    pub fn forward_res(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let pad = self.spec.k / 2;
        if self.spec.groups == self.spec.c_in
            && self.spec.groups == self.spec.c_out
            && self.spec.groups > 1
            && residual.is_none()
        {
            let op = DepthwiseConv {
                kernel: &self.weight_vec,
                bias: &self.bias_vec,
                k: self.spec.k,
                stride: self.spec.stride,
                pad,
                relu: self.act == Act::Relu,
            };
            return Ok(x.contiguous()?.apply_op1_no_bwd(&op)?);
        }
        if self.spec.groups == 1 {
            let op = GemmConv {
                weight: &self.weight_vec,
                bias: &self.bias_vec,
                spec: self.spec,
                pad,
                relu: self.act == Act::Relu,
            };
            let x = x.contiguous()?;
            return Ok(match residual {
                None => x.apply_op1_no_bwd(&op)?,
                Some(r) => x.apply_op2_no_bwd(&r.contiguous()?, &op)?,
            });
        }
        let mut y = x.conv2d(&self.weight, pad, self.spec.stride, 1, self.spec.groups)?;
        y = y.broadcast_add(&self.bias)?;
        if let Some(r) = residual {
            y = (y + r)?;
        }
        Ok(match self.act {
            Act::None => y,
            Act::Relu => y.relu()?,
        })
    }

    /// Applies the layer to an NCHW tensor.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_res(x, None)
    }
}

/// Direct depthwise convolution (one filter per channel) with bias and an
/// optional ReLU, parallel over (image, channel) planes. candle runs grouped
/// convolutions one group at a time, which is slow for depthwise layers.
struct DepthwiseConv<'a> {
    kernel: &'a [f32],
    bias: &'a [f32],
    k: usize,
    stride: usize,
    pad: usize,
    relu: bool,
}

impl CustomOp1 for DepthwiseConv<'_> {
    fn name(&self) -> &'static str {
        "depthwise-conv2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        use rayon::prelude::*;
        let (b, c, h, w) = l.shape().dims4()?;
        let input = contiguous_f32(s, l, "depthwise conv")?;
        let (k, s_, p) = (self.k, self.stride, self.pad);
        let (oh, ow) = conv_out_dims((h, w), k, s_, p, "depthwise conv")?;
        let mut out = vec![0f32; b * c * oh * ow];
        out.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(plane, o)| {
                let ch = plane % c;
                let src = &input[plane * h * w..(plane + 1) * h * w];
                let ker = &self.kernel[ch * k * k..(ch + 1) * k * k];
                o.fill(self.bias[ch]);
                for oy in 0..oh {
                    let orow = &mut o[oy * ow..(oy + 1) * ow];
                    for ky in 0..k {
                        let iy = (oy * s_ + ky) as isize - p as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let irow = &src[iy as usize * w..(iy as usize + 1) * w];
                        for kx in 0..k {
                            let wv = ker[ky * k + kx];
                            let (lo, hi_excl) = valid_cols(kx, p, s_, w, ow);
                            if lo >= hi_excl {
                                continue;
                            }
                            if s_ == 1 {
                                let off = lo + kx - p;
                                let n = hi_excl - lo;
                                for (ov, iv) in
                                    orow[lo..hi_excl].iter_mut().zip(&irow[off..off + n])
                                {
                                    *ov += wv * iv;
                                }
                            } else {
                                for ox in lo..hi_excl {
                                    orow[ox] += wv * irow[ox * s_ + kx - p];
                                }
                            }
                        }
                    }
                }
                if self.relu {
                    for v in o.iter_mut() {
                        *v = v.max(0.0);
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, c, oh, ow))))
    }
}

/// Inference convolution (groups = 1) as im2col + one GEMM per image, with
/// the folded batch-norm bias and the ReLU fused into the output pass.
/// NCHW in and out; the weights are `(O, C·k·k)` row-major, the natural
/// layout of a PyTorch kernel. A 1×1 stride-1 convolution reads the input
/// in place. This replaces candle's CPU convolution, which converts every
/// input to NHWC single-threaded and runs a GEMM per 512-pixel tile.
struct GemmConv<'a> {
    weight: &'a [f32],
    bias: &'a [f32],
    spec: ConvSpec,
    pad: usize,
    relu: bool,
}

thread_local! {
    /// im2col scratch, reused across layers and calls (every element is
    /// written by [`im2col_rows`], so it is never cleared).
    static COLS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl GemmConv<'_> {
    /// The convolution of `x` (`(b, c, h, w)`), plus bias, plus `residual`
    /// (same shape as the output) when given, then the ReLU if asked.
    fn run(
        &self,
        x: &[f32],
        (b, c, h, w): (usize, usize, usize, usize),
        residual: Option<&[f32]>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        use rayon::prelude::*;
        let ConvSpec {
            c_out, k, stride, ..
        } = self.spec;
        if c != self.spec.c_in {
            candle_core::bail!(
                "conv2d: input has {c} channels, the layer expects {}",
                self.spec.c_in
            );
        }
        let p = self.pad;
        let (oh, ow) = conv_out_dims((h, w), k, stride, p, "conv2d")?;
        let n = oh * ow;
        let kk = c * k * k;
        if residual.is_some_and(|r| r.len() != b * c_out * n) {
            candle_core::bail!("conv2d: residual does not match the output shape");
        }
        let direct = k == 1 && stride == 1 && p == 0;
        let mut out = vec![0f32; b * c_out * n];
        // The scratch is taken out of the thread-local, not borrowed: the
        // matrix product runs on rayon, and a thread waiting inside it may
        // steal another convolution (another request's, in the server)
        // that then runs on this same thread and needs scratch of its own.
        let mut cols = COLS.with(|c| std::mem::take(&mut *c.borrow_mut()));
        if !direct && cols.len() < kk * n {
            cols.resize(kk * n, 0.0);
        }
        for bi in 0..b {
            let img = &x[bi * c * h * w..(bi + 1) * c * h * w];
            let rhs: &[f32] = if direct {
                img
            } else {
                im2col_rows(img, (h, w), k, stride, p, (oh, ow), &mut cols[..kk * n]);
                &cols[..kk * n]
            };
            let dst = &mut out[bi * c_out * n..(bi + 1) * c_out * n];
            crate::blas::sgemm(c_out, n, kk, self.weight, rhs, dst);
        }
        COLS.with(|c| {
            let mut slot = c.borrow_mut();
            if slot.len() < cols.len() {
                *slot = cols;
            }
        });
        let relu = self.relu;
        out.par_chunks_mut(n).enumerate().for_each(|(i, plane)| {
            let bv = self.bias[i % c_out];
            match residual {
                Some(r) => {
                    let rp = &r[i * n..(i + 1) * n];
                    if relu {
                        plane
                            .iter_mut()
                            .zip(rp)
                            .for_each(|(v, r)| *v = (*v + bv + r).max(0.0));
                    } else {
                        plane.iter_mut().zip(rp).for_each(|(v, r)| *v += bv + r);
                    }
                }
                None if relu => plane.iter_mut().for_each(|v| *v = (*v + bv).max(0.0)),
                None => plane.iter_mut().for_each(|v| *v += bv),
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c_out, oh, ow))))
    }
}

impl CustomOp1 for GemmConv<'_> {
    fn name(&self) -> &'static str {
        "gemm-conv2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = l.shape().dims4()?;
        self.run(contiguous_f32(s, l, "conv2d")?, dims, None)
    }
}

/// The same convolution with a residual added before the activation.
impl candle_core::CustomOp2 for GemmConv<'_> {
    fn name(&self) -> &'static str {
        "gemm-conv2d-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = l1.shape().dims4()?;
        let r = contiguous_f32(s2, l2, "conv2d residual")?;
        self.run(contiguous_f32(s1, l1, "conv2d")?, dims, Some(r))
    }
}
