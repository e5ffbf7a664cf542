//! Pooling: ResNet's stem max pool and global average pooling.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use super::{contiguous_f32, conv_out_dims};
use crate::error::Result;

/// Max pooling 3×3, stride 2, padding 1 (ResNet's stem), parallel over
/// channel planes (candle's pooling runs on one thread). Padding never
/// wins, as with PyTorch's −∞ padding.
pub(crate) fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1_no_bwd(&MaxPool3x3S2)?)
}

struct MaxPool3x3S2;

impl CustomOp1 for MaxPool3x3S2 {
    fn name(&self) -> &'static str {
        "max-pool-3x3-s2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        use rayon::prelude::*;
        let (b, c, h, w) = l.shape().dims4()?;
        let x = contiguous_f32(s, l, "max pool")?;
        let (oh, ow) = conv_out_dims((h, w), 3, 2, 1, "max pool")?;
        let mut out = vec![0f32; b * c * oh * ow];
        out.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(h * w))
            .for_each(|(dst, plane)| {
                for oy in 0..oh {
                    let rows = (oy * 2).saturating_sub(1)..(oy * 2 + 2).min(h);
                    for ox in 0..ow {
                        let cols = (ox * 2).saturating_sub(1)..(ox * 2 + 2).min(w);
                        let mut m = f32::NEG_INFINITY;
                        for iy in rows.clone() {
                            for v in &plane[iy * w + cols.start..iy * w + cols.end] {
                                m = m.max(*v);
                            }
                        }
                        dst[oy * ow + ox] = m;
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, c, oh, ow))))
    }
}

/// Global average pooling NCHW → NC.
pub(crate) fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    Ok(x.mean((2, 3))?)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    /// Against candle's own pooling on an explicitly −∞-padded input, with
    /// negative values (so padding must not win) and odd and even sizes.
    #[test]
    fn matches_padded_reference() {
        for (h, w) in [(7, 7), (8, 6), (1, 1), (2, 5)] {
            let n = 2 * 3 * h * w;
            let data: Vec<f32> = (0..n).map(|i| ((i * 37 % 23) as f32) - 11.0).collect();
            let x = Tensor::from_vec(data, (2, 3, h, w), &Device::Cpu).unwrap();
            let ours = super::max_pool_3x3_s2(&x).unwrap();
            let neg = Tensor::full(f32::NEG_INFINITY, (2, 3, h + 2, w + 2), &Device::Cpu).unwrap();
            let padded = neg
                .slice_assign(&[0..2, 0..3, 1..h + 1, 1..w + 1], &x)
                .unwrap();
            let want = padded.max_pool2d_with_stride(3, 2).unwrap();
            assert_eq!(ours.dims(), want.dims(), "{h}x{w}");
            let (a, b) = (
                ours.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            assert_eq!(a, b, "{h}x{w}");
        }
    }
}
