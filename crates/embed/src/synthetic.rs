//! Deterministic synthetic weights: every tensor's values are a pure function
//! of `(seed, tensor name, shape)`, so that Rust and the PyTorch reference
//! script (`tools/reference/parity_refs.py`, which implements the same
//! generator with numpy) build bit-identical networks without shipping a
//! weights file.
//!
//! The generator, for element `i` of tensor `name`:
//! `base = fnv1a64("{seed}:{name}")`, `u = splitmix64(base + i) >> 40` scaled
//! to `[0, 1)` (24 bits, exact in f32), mapped to a range chosen by the
//! tensor's role (see [`range_for`]), computed in f64 and rounded to f32.
//!
//! Used by the parity tests and by `imgsim bench embed`, which measures
//! throughput without needing downloaded weights.

/// FNV-1a, 64 bits.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64's output function of `x` (one step from state `x`).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The value range `[lo, hi)` for a tensor, by its role: batch-norm running
/// variances in `[0.5, 1.5)`, running means and biases in `[-0.2, 0.2)`,
/// other 1-d tensors (norm scales, layer scales) in `[0.5, 1.5)`, weight
/// matrices and kernels uniform with variance `1 / fan_in`, anything else
/// (class tokens, position embeddings) in `[-0.5, 0.5)`.
pub fn range_for(name: &str, shape: &[usize]) -> (f64, f64) {
    if name.ends_with("running_var") {
        (0.5, 1.5)
    } else if name.ends_with("running_mean") || name.ends_with("bias") {
        (-0.2, 0.2)
    } else if shape.len() == 1 {
        (0.5, 1.5)
    } else if name.ends_with("weight") {
        let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
        let a = (3.0 / fan_in as f64).sqrt();
        (-a, a)
    } else {
        (-0.5, 0.5)
    }
}

/// `n` uniform values in `[lo, hi)` for `name` under `seed`.
pub fn values(seed: u64, name: &str, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    let base = fnv1a64(format!("{seed}:{name}").as_bytes());
    (0..n as u64)
        .map(|i| {
            let u = (splitmix64(base.wrapping_add(i)) >> 40) as f64 / (1u64 << 24) as f64;
            (lo + (hi - lo) * u) as f32
        })
        .collect()
}

/// The synthetic tensor `name` of `shape` under `seed` (row-major).
pub fn tensor_values(seed: u64, name: &str, shape: &[usize]) -> Vec<f32> {
    let (lo, hi) = range_for(name, shape);
    values(seed, name, shape.iter().product(), lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_pinned() {
        // Pinned so that a change to the generator (which would silently
        // invalidate the committed PyTorch references) fails here first.
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        let v = values(0, "x", 3, 0.0, 1.0);
        assert!(v.iter().all(|x| (0.0..1.0).contains(x)));
        assert_eq!(v, values(0, "x", 3, 0.0, 1.0));
        assert_ne!(v, values(1, "x", 3, 0.0, 1.0));
    }

    #[test]
    fn ranges_by_role() {
        assert_eq!(range_for("bn1.running_var", &[4]), (0.5, 1.5));
        assert_eq!(range_for("fc.bias", &[4]), (-0.2, 0.2));
        let (lo, hi) = range_for("conv.weight", &[8, 3, 1, 1]);
        assert!((hi - 1.0).abs() < 1e-12 && (lo + 1.0).abs() < 1e-12);
    }
}
