//! The exact (erf) GELU activation, with a vectorising `erf`.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use super::contiguous_f32;
use crate::error::Result;

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
