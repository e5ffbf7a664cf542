//! Building blocks shared by the backbones: convolutions with batch norm
//! folded in at load time, a direct depthwise convolution, linear layers,
//! layer norm, and an antialiased bicubic resampler for position embeddings.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

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

/// The output columns `[lo, hi)` whose input column `ox·s + kx − p` lies
/// inside `0..w` (kernel column `kx`, stride `s`, padding `p`, `ow` outputs).
fn valid_cols(kx: usize, p: usize, s: usize, w: usize, ow: usize) -> (usize, usize) {
    let lo = if kx >= p { 0 } else { (p - kx).div_ceil(s) };
    let hi = if w + p > kx {
        ((w + p - kx - 1) / s + 1).min(ow)
    } else {
        0
    };
    (lo, hi)
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

/// Max pooling 3×3, stride 2, padding 1 (ResNet's stem). Inputs are ReLU
/// outputs (≥ 0), so zero padding equals PyTorch's −∞ padding.
pub(crate) fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    let x = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
    Ok(x.max_pool2d_with_stride(3, 2)?)
}

/// Global average pooling NCHW → NC.
pub(crate) fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    Ok(x.mean((2, 3))?)
}

/// Resamples `src` (`c` channels of `ih × iw`, channel-major) to `oh × ow`
/// as PyTorch's `F.interpolate(mode="bicubic", antialias=True,
/// align_corners=False)` does (timm's `resample_abs_pos_embed`): separable
/// Keys cubic with a = −0.5, support widened by the scale when downsampling.
pub(crate) fn resample_bicubic_aa(
    src: &[f32],
    c: usize,
    (ih, iw): (usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<f32> {
    use crate::resample::bicubic as cubic;
    // Per output index: (first input index, weights).
    fn weights(n_in: usize, n_out: usize) -> Vec<(usize, Vec<f64>)> {
        let scale = n_in as f64 / n_out as f64;
        let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
        let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
        (0..n_out)
            .map(|i| {
                let center = scale * (i as f64 + 0.5);
                let xmin = ((center - support + 0.5).trunc() as isize).max(0) as usize;
                let xmax = ((center + support + 0.5).trunc() as usize).min(n_in);
                let mut ws: Vec<f64> = (xmin..xmax)
                    .map(|j| cubic((j as f64 - center + 0.5) * invscale))
                    .collect();
                let total: f64 = ws.iter().sum();
                if total != 0.0 {
                    for v in &mut ws {
                        *v /= total;
                    }
                }
                (xmin, ws)
            })
            .collect()
    }
    let wy = weights(ih, oh);
    let wx = weights(iw, ow);
    let mut out = vec![0f32; c * oh * ow];
    for ch in 0..c {
        let plane = &src[ch * ih * iw..(ch + 1) * ih * iw];
        // Horizontal pass then vertical, in f32 like PyTorch's CPU kernel.
        let mut tmp = vec![0f32; ih * ow];
        for y in 0..ih {
            for (x, (x0, ws)) in wx.iter().enumerate() {
                let mut acc = 0f32;
                for (j, wv) in ws.iter().enumerate() {
                    acc += plane[y * iw + x0 + j] * *wv as f32;
                }
                tmp[y * ow + x] = acc;
            }
        }
        for (y, (y0, ws)) in wy.iter().enumerate() {
            for x in 0..ow {
                let mut acc = 0f32;
                for (j, wv) in ws.iter().enumerate() {
                    acc += tmp[(y0 + j) * ow + x] * *wv as f32;
                }
                out[ch * oh * ow + y * ow + x] = acc;
            }
        }
    }
    out
}

/// Unfolds `(B, C, H, W)` into patches `(B, OH·OW, C·k·k)` (each row one
/// output position, its values ordered channel, row, column, like a
/// flattened `(C, k, k)` kernel), so a convolution becomes one matrix
/// product. Differentiable: the gradient folds patches back ([`Col2Im`]).
/// candle's own convolution backward goes through a direct transposed
/// convolution that is slow on CPU; this is what makes training fast.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Im2Col {
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Im2Col {
    fn out_dims(&self, h: usize, w: usize) -> (usize, usize) {
        (
            (h + 2 * self.pad - self.k) / self.stride + 1,
            (w + 2 * self.pad - self.k) / self.stride + 1,
        )
    }
}

/// Output size of a `k × k` convolution with stride `s` and padding `p` on
/// an `h × w` input; an error (naming the operation) when the padded input
/// is smaller than the kernel.
fn conv_out_dims(
    (h, w): (usize, usize),
    k: usize,
    s: usize,
    p: usize,
    what: &str,
) -> candle_core::Result<(usize, usize)> {
    if h + 2 * p < k || w + 2 * p < k {
        candle_core::bail!("{what}: input {h}x{w} smaller than kernel {k}");
    }
    Ok(((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1))
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(d) => d,
        _ => candle_core::bail!("{what}: f32 only"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: input must be contiguous"),
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        use rayon::prelude::*;
        let (b, c, h, w) = l.shape().dims4()?;
        let x = contiguous_f32(s, l, "im2col")?;
        let (k, st, p) = (self.k, self.stride, self.pad);
        let (oh, ow) = conv_out_dims((h, w), k, st, p, "im2col")?;
        let row = c * k * k;
        let mut out = vec![0f32; b * oh * ow * row];
        out.par_chunks_mut(ow * row)
            .enumerate()
            .for_each(|(bo, dst)| {
                let (bi, oy) = (bo / oh, bo % oh);
                let img = &x[bi * c * h * w..(bi + 1) * c * h * w];
                for ox in 0..ow {
                    let d = &mut dst[ox * row..(ox + 1) * row];
                    for ci in 0..c {
                        for ky in 0..k {
                            let iy = (oy * st + ky) as isize - p as isize;
                            let base = ci * k * k + ky * k;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            let src = &img
                                [ci * h * w + iy as usize * w..ci * h * w + (iy as usize + 1) * w];
                            for kx in 0..k {
                                let ix = (ox * st + kx) as isize - p as isize;
                                if ix >= 0 && ix < w as isize {
                                    d[base + kx] = src[ix as usize];
                                }
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, oh * ow, row))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (b, c, h, w) = arg.dims4()?;
        let op = Col2Im {
            im: *self,
            dims: (b, c, h, w),
        };
        Ok(Some(grad_res.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// The adjoint of [`Im2Col`]: sums patch gradients back into the image.
struct Col2Im {
    im: Im2Col,
    dims: (usize, usize, usize, usize),
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        use rayon::prelude::*;
        let (b, c, h, w) = self.dims;
        let g = contiguous_f32(s, l, "col2im")?;
        let (k, st, p) = (self.im.k, self.im.stride, self.im.pad);
        let (oh, ow) = self.im.out_dims(h, w);
        let row = c * k * k;
        if g.len() != b * oh * ow * row {
            candle_core::bail!(
                "col2im: gradient has {} values, expected {}",
                g.len(),
                b * oh * ow * row
            );
        }
        let mut out = vec![0f32; b * c * h * w];
        out.par_chunks_mut(c * h * w)
            .enumerate()
            .for_each(|(bi, img)| {
                let gb = &g[bi * oh * ow * row..(bi + 1) * oh * ow * row];
                for oy in 0..oh {
                    for ox in 0..ow {
                        let src = &gb[(oy * ow + ox) * row..(oy * ow + ox + 1) * row];
                        for ci in 0..c {
                            for ky in 0..k {
                                let iy = (oy * st + ky) as isize - p as isize;
                                if iy < 0 || iy >= h as isize {
                                    continue;
                                }
                                let drow = ci * h * w + iy as usize * w;
                                for kx in 0..k {
                                    let ix = (ox * st + kx) as isize - p as isize;
                                    if ix >= 0 && ix < w as isize {
                                        img[drow + ix as usize] += src[ci * k * k + ky * k + kx];
                                    }
                                }
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
    }
}

/// A differentiable convolution as im2col + one matrix product:
/// `x (B, C, H, W)`, `weight (O, C, k, k)`, `bias (O)` → `(B, O, OH, OW)`.
pub(crate) fn conv2d_im2col(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> candle_core::Result<Tensor> {
    let (o, c, k, _) = weight.dims4()?;
    let (b, _, h, w) = x.dims4()?;
    let op = Im2Col { k, stride, pad };
    let (oh, ow) = op.out_dims(h, w);
    let cols = x
        .contiguous()?
        .apply_op1(op)?
        .reshape((b * oh * ow, c * k * k))?;
    let mut y = cols.matmul(&weight.reshape((o, c * k * k))?.t()?)?;
    if let Some(bias) = bias {
        y = y.broadcast_add(bias)?;
    }
    y.reshape((b, oh, ow, o))?
        .permute((0, 3, 1, 2))?
        .contiguous()
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

/// Caffe-style im2col of one `(C, H, W)` image into `(C·k·k, OH·OW)`.
fn im2col_rows(
    x: &[f32],
    (h, w): (usize, usize),
    k: usize,
    s: usize,
    p: usize,
    (oh, ow): (usize, usize),
    cols: &mut [f32],
) {
    use rayon::prelude::*;
    let n = oh * ow;
    cols.par_chunks_mut(n).enumerate().for_each(|(r, dst)| {
        let (ci, ky, kx) = (r / (k * k), (r / k) % k, r % k);
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        let (lo, hi) = valid_cols(kx, p, s, w, ow);
        for oy in 0..oh {
            let drow = &mut dst[oy * ow..(oy + 1) * ow];
            let iy = (oy * s + ky) as isize - p as isize;
            if iy < 0 || iy >= h as isize || lo >= hi {
                drow.fill(0.0);
                continue;
            }
            let srow = &plane[iy as usize * w..(iy as usize + 1) * w];
            drow[..lo].fill(0.0);
            drow[hi..].fill(0.0);
            if s == 1 {
                let off = lo + kx - p;
                drow[lo..hi].copy_from_slice(&srow[off..off + (hi - lo)]);
            } else {
                for (ox, d) in drow[lo..hi].iter_mut().enumerate() {
                    *d = srow[(ox + lo) * s + kx - p];
                }
            }
        }
    });
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

/// `erf` as a rational function on `[-4, 4]` (clamped outside, where
/// `erf` is ±1 in f32): the minimax approximation Eigen and TensorFlow use,
/// max error about 1e-7. Written to vectorise, unlike libm's `erff`.
#[inline]
fn erf_fast(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

/// The exact (erf) GELU, `x·(1 + erf(x/√2))/2`, in parallel chunks.
struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        use rayon::prelude::*;
        let x = contiguous_f32(s, l, "gelu")?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(16 * 1024)
            .zip(x.par_chunks(16 * 1024))
            .for_each(|(o, i)| {
                for (o, &v) in o.iter_mut().zip(i) {
                    *o = 0.5 * v * (1.0 + erf_fast(v * std::f32::consts::FRAC_1_SQRT_2));
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
}

/// GELU (erf form) of a tensor.
pub(crate) fn gelu(x: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1_no_bwd(&Gelu)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_erf_matches_libm() {
        let mut worst = 0f32;
        for i in -6000..6000 {
            let x = i as f32 / 1000.0;
            let d = (erf_fast(x) - libm_erf(x)).abs();
            worst = worst.max(d);
        }
        assert!(worst < 5e-7, "max |erf error| {worst}");
    }

    fn libm_erf(x: f32) -> f32 {
        // Reference through candle's own (libm) erf.
        let t = Tensor::new(&[x], &candle_core::Device::Cpu).unwrap();
        t.erf().unwrap().to_vec1::<f32>().unwrap()[0]
    }
}
