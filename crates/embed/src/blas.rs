//! Single-precision matrix product `C = A·B` (row-major), the kernel of
//! every convolution and linear layer on the CPU.
//!
//! It is the pure-Rust `gemm` crate, as candle uses, built with its `x86-v4`
//! feature so that CPUs with AVX-512 get its AVX-512 kernels (chosen at run
//! time; AVX2/FMA otherwise). Debian's OpenBLAS 0.3.21 (`cblas_sgemm`,
//! AVX-512) was tried in its place and gave the same throughput within
//! noise on every backbone (docs/BENCHMARKS.md, "what each step gave"), so
//! it is not linked.

/// `c (m×n) = a (m×k) · b (k×n)`, all row-major and contiguous.
pub(crate) fn sgemm(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "sgemm: buffers too small"
    );
    // SAFETY: the sizes are checked above; a mutable slice aliases nothing.
    unsafe { sgemm_raw(m, n, k, a, b, c.as_mut_ptr()) }
}

/// [`sgemm`] into `c`, which the product writes without reading (it may
/// be uninitialised).
///
/// # Safety
/// `c` must be valid for writes of `m·n` elements and alias neither input;
/// `a` must hold `m·k` and `b` `k·n` elements (checked).
pub(crate) unsafe fn sgemm_raw(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: *mut f32) {
    assert!(
        a.len() >= m * k && b.len() >= k * n,
        "sgemm: buffers too small"
    );
    let threads = rayon::current_num_threads();
    let par = if m * n * k > 1 << 16 && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: c is m×n, a m×k, b k×n, row-major, in bounds (checked above
    // and by the caller), and c aliases neither input; with `read_dst`
    // false the product only writes c.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn small_product() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2×3
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]; // 3×2
        let mut c = [0.0; 4];
        super::sgemm(2, 2, 3, &a, &b, &mut c);
        assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);
    }
}
