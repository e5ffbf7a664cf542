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

/// Inference convolution (groups = 1) as im2col + one GEMM per group of
/// images, with the folded batch-norm bias, the residual and the ReLU fused
/// into the output pass. NCHW in and out; the weights are `(O, C·k·k)`
/// row-major, the natural layout of a PyTorch kernel. A 1×1 stride-1
/// convolution of one image at a time reads the input in place. This replaces candle's CPU convolution, which converts every
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
    /// Product scratch for grouped images, reused the same way.
    static PROD: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
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
        // Images go through the matrix product in groups wide enough to
        // keep its kernel busy: the deep layers have few output pixels (49
        // in ResNet's last stage), and one product per image would repack
        // the weights for every image and run mostly edge tiles.
        let in_place = k == 1 && stride == 1 && p == 0;
        let g = if groupable(c_out, n, kk, in_place) {
            GROUP_COLUMNS.div_ceil(n).clamp(1, b.max(1))
        } else {
            1
        };
        let direct = g == 1 && in_place;
        let mut out: Vec<f32> = Vec::with_capacity(b * c_out * n);
        // The scratch is taken out of the thread-local, not borrowed: the
        // matrix product runs on rayon, and a thread waiting inside it may
        // steal another convolution (another request's, in the server)
        // that then runs on this same thread and needs scratch of its own.
        let mut cols = COLS.with(|c| std::mem::take(&mut *c.borrow_mut()));
        let mut prod = PROD.with(|c| std::mem::take(&mut *c.borrow_mut()));
        let cols_len = if direct { 0 } else { kk * g * n };
        if cols.len() < cols_len {
            cols.resize(cols_len, 0.0);
        }
        let prod_len = if g == 1 { 0 } else { c_out * g * n };
        if prod.len() < prod_len {
            prod.resize(prod_len, 0.0);
        }
        let out_ptr = SendPtr(out.as_mut_ptr());
        let mut first = 0;
        while first < b {
            let gn = g.min(b - first);
            let imgs = &x[first * c * h * w..(first + gn) * c * h * w];
            let rhs: &[f32] = if direct {
                imgs
            } else {
                im2col_rows(imgs, (gn, c, h, w), k, stride, p, (oh, ow), &mut cols);
                &cols[..kk * gn * n]
            };
            if g == 1 {
                // SAFETY: image `first`'s block of `out` (capacity b·c_out·n)
                // is in bounds and written in full by the product.
                unsafe {
                    crate::blas::sgemm_raw(
                        c_out,
                        n,
                        kk,
                        self.weight,
                        rhs,
                        out_ptr.at(first * c_out * n),
                    )
                };
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(out_ptr.at(first * c_out * n), c_out * n)
                };
                self.epilogue_in_place(dst, residual.map(|r| &r[first * c_out * n..]));
            } else {
                let y = &mut prod[..c_out * gn * n];
                crate::blas::sgemm(c_out, gn * n, kk, self.weight, rhs, y);
                // `y` is (c_out, gn, n); `out` is (b, c_out, n).
                let y = &*y;
                (0..gn * c_out).into_par_iter().for_each(|i| {
                    let (gi, o) = (i / c_out, i % c_out);
                    let plane = (first + gi) * c_out + o;
                    let src = &y[(o * gn + gi) * n..(o * gn + gi + 1) * n];
                    // SAFETY: every task writes its own plane of `out`,
                    // inside the capacity.
                    let dst = unsafe { std::slice::from_raw_parts_mut(out_ptr.at(plane * n), n) };
                    let res = residual.map(|r| &r[plane * n..(plane + 1) * n]);
                    self.epilogue(src, dst, o, res);
                });
            }
            first += gn;
        }
        // SAFETY: every group wrote all of its planes above.
        unsafe { out.set_len(b * c_out * n) };
        COLS.with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot.len() < cols.len() {
                *slot = cols;
            }
        });
        PROD.with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot.len() < prod.len() {
                *slot = prod;
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c_out, oh, ow))))
    }

    /// `dst = act(src + bias[o] + residual)` for one output plane.
    fn epilogue(&self, src: &[f32], dst: &mut [f32], o: usize, residual: Option<&[f32]>) {
        let (bv, relu) = (self.bias[o], self.relu);
        match residual {
            Some(r) => {
                for ((d, s), r) in dst.iter_mut().zip(src).zip(r) {
                    *d = activate(s + bv + r, relu);
                }
            }
            None => {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = activate(s + bv, relu);
                }
            }
        }
    }

    /// The epilogue over one image's `(c_out, n)` block, in place.
    fn epilogue_in_place(&self, block: &mut [f32], residual: Option<&[f32]>) {
        use rayon::prelude::*;
        let n = block.len() / self.spec.c_out;
        let relu = self.relu;
        block.par_chunks_mut(n).enumerate().for_each(|(o, plane)| {
            let bv = self.bias[o];
            match residual.map(|r| &r[o * n..(o + 1) * n]) {
                Some(r) => {
                    for (v, r) in plane.iter_mut().zip(r) {
                        *v = activate(*v + bv + r, relu);
                    }
                }
                None => plane.iter_mut().for_each(|v| *v = activate(*v + bv, relu)),
            }
        });
    }
}

/// The layer's activation: ReLU or none.
#[inline(always)]
fn activate(v: f32, relu: bool) -> f32 {
    if relu {
        v.max(0.0)
    } else {
        v
    }
}

/// Output columns a convolution's matrix product is given at least, by
/// grouping images (see [`GemmConv::run`]).
/// 4096 measured best on ResNet-18 and MobileNetV4 at batch 32 among
/// 1 (one product per image), 512, 1024, 4096, 8192 and 16384 (+10–18%
/// over one per image; docs/BENCHMARKS.md).
const GROUP_COLUMNS: usize = 4096;

/// Whether an image's `(m × k) · (k × n)` product gives bit for bit the
/// same result inside a wider grouped product, so that a photo's vector
/// does not depend on the batch it was embedded in (a query embedded alone
/// must find its own stored vector at distance 0). The `gemm` crate sums
/// each output over `k` in blocks whose size depends on `k` alone, except
/// on two paths: a single column (`n = 1`, matrix-vector) and small
/// products (`m, n <= 64`), which cut `k > 512` into blocks of 512 where
/// the general path balances them. A 1×1 stride-1 convolution of one image
/// multiplies its input in place, and that product differed in the last
/// bit from the same columns of a grouped one (MobileNetV4), so those are
/// not grouped either. `every_image_gets_the_same_vector_in_any_batch`
/// (tests/models.rs) holds all this to account.
fn groupable(m: usize, n: usize, k: usize, in_place: bool) -> bool {
    !in_place && n >= 2 && k > 2 && (k <= 512 || m > 64 || n > 64)
}

/// A raw pointer into the output that rayon tasks may share; each task
/// writes a disjoint range.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the tasks that share it write disjoint ranges (see its uses).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer `i` elements further on (dereferenced only by callers
    /// that stay within the allocation's capacity).
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
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

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::{Act, ConvBn, ConvSpec, GROUP_COLUMNS};

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0) - 1.0)
            .collect()
    }

    /// The grouped matrix product (whole groups, a partial last group, and
    /// one image at a time) with bias, residual and ReLU, against candle's
    /// own convolution followed by the same element-wise steps.
    #[test]
    fn grouped_products_match_candle() {
        // 40×40 outputs: groups of 3 images, so a batch of 4 ends with a
        // partial group; 80×80 outputs: one image per product.
        for (side, k, stride, b) in [(40, 3, 1, 4), (40, 1, 1, 4), (80, 3, 2, 3), (80, 1, 1, 1)] {
            let (c_in, c_out) = (5, 6);
            let spec = ConvSpec::new(c_in, c_out, k, stride);
            let kernel = values(c_out * c_in * k * k, 1);
            let bias = values(c_out, 2);
            let conv = ConvBn::from_parts(kernel.clone(), bias.clone(), spec, Act::Relu).unwrap();
            let x = Tensor::from_vec(
                values(b * c_in * side * side, 3),
                (b, c_in, side, side),
                &Device::Cpu,
            )
            .unwrap();
            let w = Tensor::from_vec(kernel, (c_out, c_in, k, k), &Device::Cpu).unwrap();
            let pad = k / 2;
            let plain = x.conv2d(&w, pad, stride, 1, 1).unwrap();
            let residual =
                Tensor::from_vec(values(plain.elem_count(), 4), plain.dims(), &Device::Cpu)
                    .unwrap();
            let bias_t = Tensor::from_vec(bias, (1, c_out, 1, 1), &Device::Cpu).unwrap();
            let want = (plain.broadcast_add(&bias_t).unwrap() + &residual)
                .unwrap()
                .relu()
                .unwrap();
            let got = conv.forward_res(&x, Some(&residual)).unwrap();
            let n = plain.dim(2).unwrap() * plain.dim(3).unwrap();
            let g = GROUP_COLUMNS.div_ceil(n).clamp(1, b);
            let (a, e) = (
                got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            assert_eq!(a.len(), e.len());
            let worst = a
                .iter()
                .zip(&e)
                .map(|(a, e)| (a - e).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 1e-4,
                "side {side} k {k} s {stride} b {b} (groups of {g}): {worst}"
            );
        }
    }
}
