//! SIMD kernels for coded distances (sq8 asymmetric L2 and dot, Hamming),
//! chosen once per process by runtime CPU detection like the f32 kernels.

use std::sync::OnceLock;

/// `Σ (a - s·c)²` over `a`, `s` (f32) and codes `c`.
pub(super) type Sq8L2Fn = fn(&[f32], &[f32], &[u8]) -> f32;
/// `Σ w·c` over weights `w` and codes `c`.
pub(super) type Sq8DotFn = fn(&[f32], &[u8]) -> f32;
/// Differing bits of two equally long bit strings.
pub(super) type HammingFn = fn(&[u64], &[u64]) -> u32;

pub(super) struct Kernels {
    pub(super) sq8_l2: Sq8L2Fn,
    pub(super) sq8_dot: Sq8DotFn,
    pub(super) hamming: HammingFn,
    name: &'static str,
}

pub(super) fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let popcnt = std::arch::is_x86_feature_detected!("popcnt");
            let hamming: HammingFn = if popcnt {
                x86::hamming_popcnt
            } else {
                hamming_portable
            };
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Kernels {
                    sq8_l2: x86::sq8_l2_avx512,
                    sq8_dot: x86::sq8_dot_avx512,
                    hamming,
                    name: "avx512f",
                };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Kernels {
                    sq8_l2: x86::sq8_l2_avx2,
                    sq8_dot: x86::sq8_dot_avx2,
                    hamming,
                    name: "avx2+fma",
                };
            }
        }
        Kernels {
            sq8_l2: sq8_l2_portable,
            sq8_dot: sq8_dot_portable,
            hamming: hamming_portable,
            name: "portable",
        }
    })
}

/// Name of the coded-distance kernel family selected on this CPU.
pub fn kernel_name() -> &'static str {
    kernels().name
}

pub(super) fn sq8_l2_portable(a: &[f32], s: &[f32], c: &[u8]) -> f32 {
    let mut acc = [0.0f32; 8];
    let n = a.len().min(s.len()).min(c.len());
    let (a, s, c) = (&a[..n], &s[..n], &c[..n]);
    let mut ia = a.chunks_exact(8);
    let mut is = s.chunks_exact(8);
    let mut ic = c.chunks_exact(8);
    for ((x, y), z) in (&mut ia).zip(&mut is).zip(&mut ic) {
        for i in 0..8 {
            let t = x[i] - y[i] * z[i] as f32;
            acc[i] += t * t;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for ((x, y), z) in ia
        .remainder()
        .iter()
        .zip(is.remainder())
        .zip(ic.remainder())
    {
        let t = x - y * *z as f32;
        sum += t * t;
    }
    sum
}

pub(super) fn sq8_dot_portable(w: &[f32], c: &[u8]) -> f32 {
    let mut acc = [0.0f32; 8];
    let n = w.len().min(c.len());
    let (w, c) = (&w[..n], &c[..n]);
    let mut iw = w.chunks_exact(8);
    let mut ic = c.chunks_exact(8);
    for (x, z) in (&mut iw).zip(&mut ic) {
        for i in 0..8 {
            acc[i] += x[i] * z[i] as f32;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, z) in iw.remainder().iter().zip(ic.remainder()) {
        sum += x * *z as f32;
    }
    sum
}

pub(super) fn hamming_portable(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! x86-64 kernels. Each safe wrapper is only ever handed out by
    //! `kernels()` after the CPU features it needs were detected.
    use crate::distance::x86::hsum256;
    use std::arch::x86_64::*;

    pub(super) fn sq8_l2_avx512(a: &[f32], s: &[f32], c: &[u8]) -> f32 {
        // SAFETY: selected only when avx512f was detected at runtime.
        unsafe { sq8_l2_avx512_impl(a, s, c) }
    }
    pub(super) fn sq8_dot_avx512(w: &[f32], c: &[u8]) -> f32 {
        // SAFETY: selected only when avx512f was detected at runtime.
        unsafe { sq8_dot_avx512_impl(w, c) }
    }
    pub(super) fn sq8_l2_avx2(a: &[f32], s: &[f32], c: &[u8]) -> f32 {
        // SAFETY: selected only when avx2 and fma were detected at runtime.
        unsafe { sq8_l2_avx2_impl(a, s, c) }
    }
    pub(super) fn sq8_dot_avx2(w: &[f32], c: &[u8]) -> f32 {
        // SAFETY: selected only when avx2 and fma were detected at runtime.
        unsafe { sq8_dot_avx2_impl(w, c) }
    }
    pub(super) fn hamming_popcnt(a: &[u64], b: &[u64]) -> u32 {
        // SAFETY: selected only when popcnt was detected at runtime.
        unsafe { hamming_popcnt_impl(a, b) }
    }

    #[target_feature(enable = "popcnt")]
    unsafe fn hamming_popcnt_impl(a: &[u64], b: &[u64]) -> u32 {
        a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
    }

    /// Sixteen codes from `p`, widened to f32.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn codes16(p: *const u8) -> __m512 {
        // SAFETY: the caller guarantees 16 readable bytes at `p`.
        let b = unsafe { _mm_loadu_si128(p as *const __m128i) };
        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b))
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn sq8_l2_avx512_impl(a: &[f32], s: &[f32], c: &[u8]) -> f32 {
        let n = a.len().min(s.len()).min(c.len());
        let (pa, ps, pc) = (a.as_ptr(), s.as_ptr(), c.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY (all loads): i + 32 <= n or i + 16 <= n bounds every load.
        while i + 32 <= n {
            let t0 = _mm512_fnmadd_ps(
                unsafe { _mm512_loadu_ps(ps.add(i)) },
                unsafe { codes16(pc.add(i)) },
                unsafe { _mm512_loadu_ps(pa.add(i)) },
            );
            let t1 = _mm512_fnmadd_ps(
                unsafe { _mm512_loadu_ps(ps.add(i + 16)) },
                unsafe { codes16(pc.add(i + 16)) },
                unsafe { _mm512_loadu_ps(pa.add(i + 16)) },
            );
            acc0 = _mm512_fmadd_ps(t0, t0, acc0);
            acc1 = _mm512_fmadd_ps(t1, t1, acc1);
            i += 32;
        }
        if i + 16 <= n {
            let t0 = _mm512_fnmadd_ps(
                unsafe { _mm512_loadu_ps(ps.add(i)) },
                unsafe { codes16(pc.add(i)) },
                unsafe { _mm512_loadu_ps(pa.add(i)) },
            );
            acc0 = _mm512_fmadd_ps(t0, t0, acc0);
            i += 16;
        }
        let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        while i < n {
            let t = a[i] - s[i] * c[i] as f32;
            sum += t * t;
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn sq8_dot_avx512_impl(w: &[f32], c: &[u8]) -> f32 {
        let n = w.len().min(c.len());
        let (pw, pc) = (w.as_ptr(), c.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY (all loads): i + 32 <= n or i + 16 <= n bounds every load.
        while i + 32 <= n {
            acc0 = _mm512_fmadd_ps(
                unsafe { _mm512_loadu_ps(pw.add(i)) },
                unsafe { codes16(pc.add(i)) },
                acc0,
            );
            acc1 = _mm512_fmadd_ps(
                unsafe { _mm512_loadu_ps(pw.add(i + 16)) },
                unsafe { codes16(pc.add(i + 16)) },
                acc1,
            );
            i += 32;
        }
        if i + 16 <= n {
            acc0 = _mm512_fmadd_ps(
                unsafe { _mm512_loadu_ps(pw.add(i)) },
                unsafe { codes16(pc.add(i)) },
                acc0,
            );
            i += 16;
        }
        let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        while i < n {
            sum += w[i] * c[i] as f32;
            i += 1;
        }
        sum
    }

    /// Eight codes from `p`, widened to f32.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn codes8(p: *const u8) -> __m256 {
        // SAFETY: the caller guarantees 8 readable bytes at `p`.
        let b = unsafe { _mm_loadl_epi64(p as *const __m128i) };
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b))
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn sq8_l2_avx2_impl(a: &[f32], s: &[f32], c: &[u8]) -> f32 {
        let n = a.len().min(s.len()).min(c.len());
        let (pa, ps, pc) = (a.as_ptr(), s.as_ptr(), c.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY (all loads): i + 16 <= n or i + 8 <= n bounds every load.
        while i + 16 <= n {
            let t0 = _mm256_fnmadd_ps(
                unsafe { _mm256_loadu_ps(ps.add(i)) },
                unsafe { codes8(pc.add(i)) },
                unsafe { _mm256_loadu_ps(pa.add(i)) },
            );
            let t1 = _mm256_fnmadd_ps(
                unsafe { _mm256_loadu_ps(ps.add(i + 8)) },
                unsafe { codes8(pc.add(i + 8)) },
                unsafe { _mm256_loadu_ps(pa.add(i + 8)) },
            );
            acc0 = _mm256_fmadd_ps(t0, t0, acc0);
            acc1 = _mm256_fmadd_ps(t1, t1, acc1);
            i += 16;
        }
        if i + 8 <= n {
            let t0 = _mm256_fnmadd_ps(
                unsafe { _mm256_loadu_ps(ps.add(i)) },
                unsafe { codes8(pc.add(i)) },
                unsafe { _mm256_loadu_ps(pa.add(i)) },
            );
            acc0 = _mm256_fmadd_ps(t0, t0, acc0);
            i += 8;
        }
        let mut sum = unsafe { hsum256(_mm256_add_ps(acc0, acc1)) };
        while i < n {
            let t = a[i] - s[i] * c[i] as f32;
            sum += t * t;
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn sq8_dot_avx2_impl(w: &[f32], c: &[u8]) -> f32 {
        let n = w.len().min(c.len());
        let (pw, pc) = (w.as_ptr(), c.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY (all loads): i + 16 <= n or i + 8 <= n bounds every load.
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(
                unsafe { _mm256_loadu_ps(pw.add(i)) },
                unsafe { codes8(pc.add(i)) },
                acc0,
            );
            acc1 = _mm256_fmadd_ps(
                unsafe { _mm256_loadu_ps(pw.add(i + 8)) },
                unsafe { codes8(pc.add(i + 8)) },
                acc1,
            );
            i += 16;
        }
        if i + 8 <= n {
            acc0 = _mm256_fmadd_ps(
                unsafe { _mm256_loadu_ps(pw.add(i)) },
                unsafe { codes8(pc.add(i)) },
                acc0,
            );
            i += 8;
        }
        let mut sum = unsafe { hsum256(_mm256_add_ps(acc0, acc1)) };
        while i < n {
            sum += w[i] * c[i] as f32;
            i += 1;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_kernels_agree_with_portable_on_every_length() {
        let mut seed = 11u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        let k = kernels();
        for n in 0..100 {
            let a: Vec<f32> = (0..n).map(|_| (next() % 1000) as f32 / 100.0).collect();
            let s: Vec<f32> = (0..n).map(|_| (next() % 100) as f32 / 1000.0).collect();
            let c: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            let (x, y) = ((k.sq8_l2)(&a, &s, &c), sq8_l2_portable(&a, &s, &c));
            assert!(
                (x - y).abs() <= 1e-4 * y.abs().max(1.0),
                "n {n}: {x} vs {y}"
            );
            let (x, y) = ((k.sq8_dot)(&a, &c), sq8_dot_portable(&a, &c));
            assert!(
                (x - y).abs() <= 1e-4 * y.abs().max(1.0),
                "n {n}: {x} vs {y}"
            );
            let wa: Vec<u64> = (0..n / 8).map(|_| next() << 31 ^ next()).collect();
            let wb: Vec<u64> = (0..n / 8).map(|_| next() << 31 ^ next()).collect();
            assert_eq!((k.hamming)(&wa, &wb), hamming_portable(&wa, &wb));
        }
    }
}
