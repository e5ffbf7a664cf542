//! Distance metrics and the SIMD kernels behind them.
//!
//! Internally every search ranks by a *monotone surrogate* of the distance,
//! which is cheaper to compute:
//! - L2 ranks by the squared Euclidean distance; [`Metric::to_user`] takes the root.
//! - Cosine stores unit-normalised vectors and ranks by `1 - dot(a, b)`, which is
//!   already the cosine distance.
//!
//! The kernels are chosen once per process by runtime CPU detection: AVX-512F,
//! then AVX2+FMA, then a portable version written so that the compiler
//! auto-vectorises it (eight independent accumulators).

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

use crate::error::{IndexError, Result};

/// The distance a collection is searched by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Euclidean distance.
    L2,
    /// Cosine distance (`1 - cos`), on vectors normalised to unit length at insert time.
    Cosine,
}

impl Metric {
    /// Parses `l2`/`euclidean` or `cosine`/`angular`.
    pub fn parse(s: &str) -> Result<Metric> {
        match s.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" => Ok(Metric::L2),
            "cosine" | "angular" => Ok(Metric::Cosine),
            other => Err(IndexError::InvalidParameter {
                name: "metric",
                reason: format!("unknown metric {other:?} (use l2 or cosine)"),
            }),
        }
    }

    /// The metric's name as written in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
        }
    }

    /// The kernel that computes this metric's internal (ranking) distance.
    pub fn kernel(self) -> DistFn {
        let k = kernels();
        match self {
            Metric::L2 => k.l2_sq,
            Metric::Cosine => k.cosine,
        }
    }

    /// Converts an internal ranking distance to the distance users see.
    pub fn to_user(self, internal: f32) -> f32 {
        match self {
            Metric::L2 => internal.max(0.0).sqrt(),
            // Rounding can take 1 - dot a hair below zero for identical vectors.
            Metric::Cosine => internal.max(0.0),
        }
    }

    /// Prepares a vector for storage or querying: checks it is finite and, for
    /// cosine, normalises it in place. `index` names the vector in errors.
    pub fn prepare(self, v: &mut [f32], index: usize) -> Result<()> {
        check_finite(v, index)?;
        if self == Metric::Cosine {
            let inv = 1.0 / cosine_norm(v, index)?;
            v.iter_mut().for_each(|x| *x *= inv);
        }
        Ok(())
    }

    /// Whether [`Metric::prepare`] would accept `v`, without changing it:
    /// for a caller that hands the vector on to an insert (which prepares
    /// it), since preparing it twice can change its last bits.
    pub fn check(self, v: &[f32], index: usize) -> Result<()> {
        check_finite(v, index)?;
        if self == Metric::Cosine {
            cosine_norm(v, index)?;
        }
        Ok(())
    }
}

/// The length of a finite vector that cosine can normalise.
fn cosine_norm(v: &[f32], index: usize) -> Result<f32> {
    let norm = dot(v, v).sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err(IndexError::ZeroVector { index });
    }
    Ok(norm)
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks that every component of `v` is finite.
pub fn check_finite(v: &[f32], index: usize) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(component) => Err(IndexError::NonFinite {
            index,
            component,
            value: v[component],
        }),
    }
}

/// A distance kernel: two slices of equal length to a distance.
pub type DistFn = fn(&[f32], &[f32]) -> f32;

struct Kernels {
    l2_sq: DistFn,
    dot: DistFn,
    cosine: DistFn,
    name: &'static str,
}

fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Kernels {
                    l2_sq: x86::l2_sq_avx512,
                    dot: x86::dot_avx512,
                    cosine: x86::cosine_avx512,
                    name: "avx512f",
                };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Kernels {
                    l2_sq: x86::l2_sq_avx2,
                    dot: x86::dot_avx2,
                    cosine: x86::cosine_avx2,
                    name: "avx2+fma",
                };
            }
        }
        Kernels {
            l2_sq: l2_sq_portable,
            dot: dot_portable,
            cosine: cosine_portable,
            name: "portable",
        }
    })
}

/// Name of the SIMD kernel family selected on this CPU (for reports).
pub fn kernel_name() -> &'static str {
    kernels().name
}

/// Squared Euclidean distance, with the fastest kernel for this CPU.
#[inline]
pub fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    (kernels().l2_sq)(a, b)
}

/// Dot product, with the fastest kernel for this CPU.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernels().dot)(a, b)
}

/// Portable squared L2 (eight accumulators so that it auto-vectorises).
pub fn l2_sq_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        let d = x - y;
        s += d * d;
    }
    s
}

/// Portable dot product (eight accumulators so that it auto-vectorises).
pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}

fn cosine_portable(a: &[f32], b: &[f32]) -> f32 {
    1.0 - dot_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    //! x86-64 kernels. Each safe wrapper is only ever handed out by
    //! `kernels()` after the CPU features it needs were detected.
    use std::arch::x86_64::*;

    pub(super) fn l2_sq_avx2(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: selected only when avx2 and fma were detected at runtime.
        unsafe { l2_sq_avx2_impl(a, b) }
    }
    pub(super) fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: selected only when avx2 and fma were detected at runtime.
        unsafe { dot_avx2_impl(a, b) }
    }
    pub(super) fn cosine_avx2(a: &[f32], b: &[f32]) -> f32 {
        1.0 - dot_avx2(a, b)
    }
    pub(super) fn l2_sq_avx512(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: selected only when avx512f was detected at runtime.
        unsafe { l2_sq_avx512_impl(a, b) }
    }
    pub(super) fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: selected only when avx512f was detected at runtime.
        unsafe { dot_avx512_impl(a, b) }
    }
    pub(super) fn cosine_avx512(a: &[f32], b: &[f32]) -> f32 {
        1.0 - dot_avx512(a, b)
    }

    /// Sum of the eight lanes (shared with the quantized kernels).
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn hsum256(v: __m256) -> f32 {
        let hi = _mm256_extractf128_ps(v, 1);
        let lo = _mm256_castps256_ps128(v);
        let s = _mm_add_ps(hi, lo);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn l2_sq_avx2_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY (all loads): i + 16 <= n or i + 8 <= n bounds every unaligned load.
        while i + 16 <= n {
            let d0 = _mm256_sub_ps(unsafe { _mm256_loadu_ps(pa.add(i)) }, unsafe {
                _mm256_loadu_ps(pb.add(i))
            });
            let d1 = _mm256_sub_ps(unsafe { _mm256_loadu_ps(pa.add(i + 8)) }, unsafe {
                _mm256_loadu_ps(pb.add(i + 8))
            });
            acc0 = _mm256_fmadd_ps(d0, d0, acc0);
            acc1 = _mm256_fmadd_ps(d1, d1, acc1);
            i += 16;
        }
        if i + 8 <= n {
            let d0 = _mm256_sub_ps(unsafe { _mm256_loadu_ps(pa.add(i)) }, unsafe {
                _mm256_loadu_ps(pb.add(i))
            });
            acc0 = _mm256_fmadd_ps(d0, d0, acc0);
            i += 8;
        }
        let mut s = unsafe { hsum256(_mm256_add_ps(acc0, acc1)) };
        while i < n {
            let d = a[i] - b[i];
            s += d * d;
            i += 1;
        }
        s
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_avx2_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(
                unsafe { _mm256_loadu_ps(pa.add(i)) },
                unsafe { _mm256_loadu_ps(pb.add(i)) },
                acc0,
            );
            acc1 = _mm256_fmadd_ps(
                unsafe { _mm256_loadu_ps(pa.add(i + 8)) },
                unsafe { _mm256_loadu_ps(pb.add(i + 8)) },
                acc1,
            );
            i += 16;
        }
        if i + 8 <= n {
            acc0 = _mm256_fmadd_ps(
                unsafe { _mm256_loadu_ps(pa.add(i)) },
                unsafe { _mm256_loadu_ps(pb.add(i)) },
                acc0,
            );
            i += 8;
        }
        let mut s = unsafe { hsum256(_mm256_add_ps(acc0, acc1)) };
        while i < n {
            s += a[i] * b[i];
            i += 1;
        }
        s
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn l2_sq_avx512_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        // Four accumulators hide the FMA latency (4 cycles, 2 per cycle).
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, a_j) in acc.iter_mut().enumerate() {
                let d = _mm512_sub_ps(unsafe { _mm512_loadu_ps(pa.add(i + 16 * j)) }, unsafe {
                    _mm512_loadu_ps(pb.add(i + 16 * j))
                });
                *a_j = _mm512_fmadd_ps(d, d, *a_j);
            }
            i += 64;
        }
        while i + 16 <= n {
            let d = _mm512_sub_ps(unsafe { _mm512_loadu_ps(pa.add(i)) }, unsafe {
                _mm512_loadu_ps(pb.add(i))
            });
            acc[0] = _mm512_fmadd_ps(d, d, acc[0]);
            i += 16;
        }
        if i < n {
            // Masked tail: the mask keeps the loads inside both slices.
            let mask: __mmask16 = ((1u32 << (n - i)) - 1) as __mmask16;
            let d = _mm512_sub_ps(unsafe { _mm512_maskz_loadu_ps(mask, pa.add(i)) }, unsafe {
                _mm512_maskz_loadu_ps(mask, pb.add(i))
            });
            acc[1] = _mm512_fmadd_ps(d, d, acc[1]);
        }
        let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        _mm512_reduce_add_ps(s)
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn dot_avx512_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        while i + 32 <= n {
            acc0 = _mm512_fmadd_ps(
                unsafe { _mm512_loadu_ps(pa.add(i)) },
                unsafe { _mm512_loadu_ps(pb.add(i)) },
                acc0,
            );
            acc1 = _mm512_fmadd_ps(
                unsafe { _mm512_loadu_ps(pa.add(i + 16)) },
                unsafe { _mm512_loadu_ps(pb.add(i + 16)) },
                acc1,
            );
            i += 32;
        }
        if i + 16 <= n {
            acc0 = _mm512_fmadd_ps(
                unsafe { _mm512_loadu_ps(pa.add(i)) },
                unsafe { _mm512_loadu_ps(pb.add(i)) },
                acc0,
            );
            i += 16;
        }
        if i < n {
            let mask: __mmask16 = ((1u32 << (n - i)) - 1) as __mmask16;
            acc1 = _mm512_fmadd_ps(
                unsafe { _mm512_maskz_loadu_ps(mask, pa.add(i)) },
                unsafe { _mm512_maskz_loadu_ps(mask, pb.add(i)) },
                acc1,
            );
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    /// Hints the CPU to fetch the cache lines at `p` (best effort, no fault).
    #[inline(always)]
    pub(crate) fn prefetch(p: *const f32) {
        // SAFETY: prefetch never faults, whatever the address.
        unsafe { _mm_prefetch(p as *const i8, _MM_HINT_T0) }
    }
}

/// Prefetches the first cache lines of a vector (no-op off x86-64).
#[inline(always)]
pub(crate) fn prefetch_vector(v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = v.as_ptr();
        x86::prefetch(p);
        if v.len() > 16 {
            // SAFETY-free: wrapping_add never dereferences.
            x86::prefetch(p.wrapping_add(16));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = v;
    }
}

/// Prefetches the first two cache lines at `p` (no-op off x86-64).
#[inline(always)]
pub(crate) fn prefetch_bytes(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        x86::prefetch(p as *const f32);
        x86::prefetch(p.wrapping_add(64) as *const f32);
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = p;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    #[test]
    fn kernels_agree_with_scalar_on_every_length() {
        let mut s = 7u64;
        for n in 0..200 {
            let a: Vec<f32> = (0..n).map(|_| lcg(&mut s)).collect();
            let b: Vec<f32> = (0..n).map(|_| lcg(&mut s)).collect();
            let l2: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            let d: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((l2_sq(&a, &b) - l2).abs() <= 1e-4 * (1.0 + l2), "n={n}");
            assert!((dot(&a, &b) - d).abs() <= 1e-4 * (1.0 + d.abs()), "n={n}");
            assert!((l2_sq_portable(&a, &b) - l2).abs() <= 1e-4 * (1.0 + l2));
            assert!((dot_portable(&a, &b) - d).abs() <= 1e-4 * (1.0 + d.abs()));
        }
    }

    #[test]
    fn check_accepts_what_prepare_accepts_and_leaves_the_vector() {
        let v = vec![3.0, 4.0];
        Metric::Cosine.check(&v, 0).unwrap();
        assert_eq!(v, [3.0, 4.0]);
        assert!(matches!(
            Metric::Cosine.check(&[0.0; 3], 2),
            Err(IndexError::ZeroVector { index: 2 })
        ));
        Metric::L2.check(&[0.0; 3], 2).unwrap();
        assert!(matches!(
            Metric::L2.check(&[1.0, f32::INFINITY], 5),
            Err(IndexError::NonFinite {
                index: 5,
                component: 1,
                ..
            })
        ));
    }

    #[test]
    fn cosine_prepare_normalises_and_rejects_zero_and_nan() {
        let mut v = vec![3.0, 4.0];
        Metric::Cosine.prepare(&mut v, 0).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut z = vec![0.0; 4];
        assert!(matches!(
            Metric::Cosine.prepare(&mut z, 3),
            Err(IndexError::ZeroVector { index: 3 })
        ));
        let mut n = vec![1.0, f32::NAN];
        assert!(matches!(
            Metric::L2.prepare(&mut n, 1),
            Err(IndexError::NonFinite {
                index: 1,
                component: 1,
                ..
            })
        ));
        let mut inf = vec![f32::INFINITY];
        assert!(Metric::L2.prepare(&mut inf, 0).is_err());
    }

    #[test]
    fn metric_parse_round_trips() {
        for m in [Metric::L2, Metric::Cosine] {
            assert_eq!(Metric::parse(m.as_str()).unwrap(), m);
        }
        assert!(Metric::parse("manhattan").is_err());
    }
}
