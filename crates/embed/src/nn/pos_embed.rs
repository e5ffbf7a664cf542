//! Resampling ViT position embeddings to another grid, as timm does.

/// Resamples `src` (`c` channels of `ih × iw`, channel-major) to `oh × ow`
/// as PyTorch's `F.interpolate(mode="bicubic", antialias=True,
/// align_corners=False)` does (timm's `resample_abs_pos_embed`): separable
/// Keys cubic with a = −0.5, support widened by the scale when downsampling.
pub(crate) fn resample_bicubic_aa(
    src: &[f32],
    c: usize,
    (ih, iw): (usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<f32> {
    use crate::resample::bicubic as cubic;
    // Per output index: (first input index, weights).
    fn weights(n_in: usize, n_out: usize) -> Vec<(usize, Vec<f64>)> {
        let scale = n_in as f64 / n_out as f64;
        let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
        let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
        (0..n_out)
            .map(|i| {
                let center = scale * (i as f64 + 0.5);
                let xmin = ((center - support + 0.5).trunc() as isize).max(0) as usize;
                let xmax = ((center + support + 0.5).trunc() as usize).min(n_in);
                let mut ws: Vec<f64> = (xmin..xmax)
                    .map(|j| cubic((j as f64 - center + 0.5) * invscale))
                    .collect();
                let total: f64 = ws.iter().sum();
                if total != 0.0 {
                    for v in &mut ws {
                        *v /= total;
                    }
                }
                (xmin, ws)
            })
            .collect()
    }
    let wy = weights(ih, oh);
    let wx = weights(iw, ow);
    let mut out = vec![0f32; c * oh * ow];
    for ch in 0..c {
        let plane = &src[ch * ih * iw..(ch + 1) * ih * iw];
        // Horizontal pass then vertical, in f32 like PyTorch's CPU kernel.
        let mut tmp = vec![0f32; ih * ow];
        for y in 0..ih {
            for (x, (x0, ws)) in wx.iter().enumerate() {
                let mut acc = 0f32;
                for (j, wv) in ws.iter().enumerate() {
                    acc += plane[y * iw + x0 + j] * *wv as f32;
                }
                tmp[y * ow + x] = acc;
            }
        }
        for (y, (y0, ws)) in wy.iter().enumerate() {
            for x in 0..ow {
                let mut acc = 0f32;
                for (j, wv) in ws.iter().enumerate() {
                    acc += tmp[(y0 + j) * ow + x] * *wv as f32;
                }
                out[ch * oh * ow + y * ow + x] = acc;
            }
        }
    }
    out
}
