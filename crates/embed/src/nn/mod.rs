//! Building blocks shared by the backbones and the autoencoder, one job a
//! file: convolutions with batch norm folded in at load time ([`conv`]),
//! im2col unfolding ([`im2col`]), linear layers ([`linear`]), layer norm
//! ([`norm`]), pooling ([`pool`]), the GELU activation ([`gelu`]) and an
//! antialiased bicubic resampler for position embeddings ([`pos_embed`]).
//! This file holds the helpers the CPU kernels share.

use candle_core::{CpuStorage, Layout};

mod conv;
mod gelu;
mod im2col;
mod linear;
mod norm;
mod pool;
mod pos_embed;

pub(crate) use conv::{Act, ConvBn, ConvSpec};
pub(crate) use gelu::gelu;
pub(crate) use im2col::conv2d_im2col;
pub(crate) use linear::Linear;
pub(crate) use norm::LayerNorm;
pub(crate) use pool::{global_avg_pool, max_pool_3x3_s2};
pub(crate) use pos_embed::resample_bicubic_aa;

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
