//! Unfolding images into patch matrices (im2col) so that a convolution
//! becomes one matrix product: the differentiable [`Im2Col`] / [`Col2Im`]
//! pair used in training, and the Caffe-style rows the inference
//! convolution multiplies.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use super::{contiguous_f32, conv_out_dims, valid_cols};

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

/// Caffe-style im2col of `g` consecutive images (`x` is `(g, C, H, W)`)
/// into one `(C·k·k, g·OH·OW)` matrix: row `r` holds image 0's `OH·OW`
/// values for kernel tap `r`, then image 1's, and so on, so that one matrix
/// product convolves the whole group.
pub(super) fn im2col_rows(
    x: &[f32],
    (g, c, h, w): (usize, usize, usize, usize),
    k: usize,
    s: usize,
    p: usize,
    (oh, ow): (usize, usize),
    cols: &mut [f32],
) {
    use rayon::prelude::*;
    let n = oh * ow;
    debug_assert!(x.len() >= g * c * h * w && cols.len() >= c * k * k * g * n);
    cols.par_chunks_mut(g * n)
        .take(c * k * k)
        .enumerate()
        .for_each(|(r, row)| {
            let (ci, ky, kx) = (r / (k * k), (r / k) % k, r % k);
            let (lo, hi) = valid_cols(kx, p, s, w, ow);
            for (gi, dst) in row.chunks_mut(n).enumerate() {
                let plane = &x[(gi * c + ci) * h * w..(gi * c + ci + 1) * h * w];
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
            }
        });
}
