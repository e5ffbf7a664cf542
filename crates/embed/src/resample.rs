//! Pillow's antialiased resampling (`Image.resize` with BILINEAR, BICUBIC
//! or BOX),
//! reproduced exactly: the same filter support scaled by the reduction
//! factor, the same coefficients normalised and rounded to 22-bit fixed
//! point, a horizontal pass then a vertical pass, each rounded to 8 bits.
//! torchvision's `Resize` on a PIL image is this function, so matching it bit
//! for bit is what makes our preprocessing agree with PyTorch's pipelines
//! (the parity tests check it). SIMD libraries such as fast_image_resize use
//! 16-bit coefficients and differ by one level on some pixels.

use crate::transform::Interpolation;

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn filter(interp: Interpolation, x: f64) -> f64 {
    if interp == Interpolation::Box {
        // Pillow's box_filter: the half-open interval (-0.5, 0.5].
        return if x > -0.5 && x <= 0.5 { 1.0 } else { 0.0 };
    }
    let x = x.abs();
    match interp {
        Interpolation::Bilinear => {
            if x < 1.0 {
                1.0 - x
            } else {
                0.0
            }
        }
        Interpolation::Bicubic => bicubic(x),
        Interpolation::Box => 0.0,
    }
}

/// Keys' cubic convolution kernel with a = −0.5 (Pillow's and PyTorch's
/// antialiased bicubic).
pub(crate) fn bicubic(x: f64) -> f64 {
    let a = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

fn support(interp: Interpolation) -> f64 {
    match interp {
        Interpolation::Box => 0.5,
        Interpolation::Bilinear => 1.0,
        Interpolation::Bicubic => 2.0,
    }
}

/// Per output index: first input index and fixed-point weights.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    kk: Vec<i32>,
}

fn precompute(in_size: usize, out_size: usize, interp: Interpolation) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = support(interp) * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let ss = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut kk = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let xmin = ((center - support + 0.5) as isize).max(0) as usize;
        let xmax = ((center + support + 0.5) as isize).min(in_size as isize) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut ww = 0.0;
        for (x, kv) in k.iter_mut().enumerate().take(n) {
            let w = filter(interp, (x as f64 + xmin as f64 - center + 0.5) * ss);
            *kv = w;
            ww += w;
        }
        for x in 0..n {
            let v = if ww != 0.0 { k[x] / ww } else { k[x] };
            kk[xx * ksize + x] = if v < 0.0 {
                (-0.5 + v * f64::from(1u32 << PRECISION_BITS)) as i32
            } else {
                (0.5 + v * f64::from(1u32 << PRECISION_BITS)) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coeffs { bounds, ksize, kk }
}

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes interleaved RGB8 `src` (`sw × sh`) to `dw × dh`.
pub fn resize_rgb8(
    src: &[u8],
    sw: usize,
    sh: usize,
    dw: usize,
    dh: usize,
    interp: Interpolation,
) -> Vec<u8> {
    debug_assert_eq!(src.len(), sw * sh * 3);
    let init = 1i32 << (PRECISION_BITS - 1);
    // Horizontal pass, only over the rows the vertical pass will read.
    let (tmp, tw, rows_from, th) = if dw != sw {
        let cx = precompute(sw, dw, interp);
        let (r0, r1) = if dh != sh {
            let cy = precompute(sh, dh, interp);
            let first = cy.bounds.first().map_or(0, |b| b.0);
            let last = cy.bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(sh);
            (first, last)
        } else {
            (0, sh)
        };
        let mut out = vec![0u8; (r1 - r0) * dw * 3];
        for (yy, orow) in out.chunks_exact_mut(dw * 3).enumerate() {
            let irow = &src[(r0 + yy) * sw * 3..(r0 + yy + 1) * sw * 3];
            for (xx, &(xmin, n)) in cx.bounds.iter().enumerate() {
                let k = &cx.kk[xx * cx.ksize..xx * cx.ksize + n];
                let px = &irow[xmin * 3..(xmin + n) * 3];
                let (mut s0, mut s1, mut s2) = (init, init, init);
                for (p, &kv) in px.chunks_exact(3).zip(k) {
                    s0 += i32::from(p[0]) * kv;
                    s1 += i32::from(p[1]) * kv;
                    s2 += i32::from(p[2]) * kv;
                }
                orow[xx * 3] = clip8(s0);
                orow[xx * 3 + 1] = clip8(s1);
                orow[xx * 3 + 2] = clip8(s2);
            }
        }
        (std::borrow::Cow::Owned(out), dw, r0, r1 - r0)
    } else {
        (std::borrow::Cow::Borrowed(src), sw, 0, sh)
    };
    if dh == sh {
        return tmp.into_owned();
    }
    let _ = th;
    // Vertical pass: accumulate whole rows at a time (vectorises).
    let cy = precompute(sh, dh, interp);
    let row_len = tw * 3;
    let mut out = vec![0u8; dh * row_len];
    let mut acc = vec![0i32; row_len];
    for (yy, &(ymin, n)) in cy.bounds.iter().enumerate() {
        let k = &cy.kk[yy * cy.ksize..yy * cy.ksize + n];
        acc.fill(init);
        for (j, &kv) in k.iter().enumerate() {
            let r = ymin + j - rows_from;
            let irow = &tmp[r * row_len..(r + 1) * row_len];
            for (a, &p) in acc.iter_mut().zip(irow) {
                *a += i32::from(p) * kv;
            }
        }
        for (o, &a) in out[yy * row_len..(yy + 1) * row_len].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_stays_uniform_and_identity_is_exact() {
        let src = vec![77u8; 40 * 30 * 3];
        for interp in [
            Interpolation::Bilinear,
            Interpolation::Bicubic,
            Interpolation::Box,
        ] {
            let out = resize_rgb8(&src, 40, 30, 13, 7, interp);
            assert_eq!(out.len(), 13 * 7 * 3);
            assert!(out.iter().all(|&v| v == 77));
            let up = resize_rgb8(&src, 40, 30, 81, 65, interp);
            assert!(up.iter().all(|&v| v == 77));
        }
        let ramp: Vec<u8> = (0..10 * 4 * 3).map(|i| (i * 2) as u8).collect();
        assert_eq!(
            resize_rgb8(&ramp, 10, 4, 10, 4, Interpolation::Bilinear),
            ramp
        );
    }

    #[test]
    fn box_reduction_by_a_whole_factor_is_the_block_mean() {
        // 4 × 1 pixels, grey levels 0, 40, 80, 200: halved, each output is
        // the mean of its two inputs (20 and 140), rounded.
        let src: Vec<u8> = [0u8, 40, 80, 200].iter().flat_map(|&v| [v; 3]).collect();
        let out = resize_rgb8(&src, 4, 1, 2, 1, Interpolation::Box);
        assert_eq!(out, [20, 20, 20, 140, 140, 140]);
        // A bilinear reduction weighs neighbours in too.
        assert_ne!(resize_rgb8(&src, 4, 1, 2, 1, Interpolation::Bilinear), out);
    }
}
