//! Seeded image augmentations for contrastive training: random resized
//! crop, horizontal flip, colour jitter, greyscale and Gaussian blur, on
//! channel-major `f32` images in `[0, 1]`. Every random choice comes from
//! a [`Rng`] seeded per (seed, epoch, image, view), so a view is the same
//! on every run and on any number of threads.

use serde::{Deserialize, Serialize};

use crate::error::{EmbedError, Result};
use crate::synthetic::splitmix64;

/// How strongly views are augmented (each probability in `[0, 1]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AugmentOptions {
    /// Smallest crop area, as a fraction of the image (torchvision's
    /// `RandomResizedCrop(scale=(min_scale, 1))`); the aspect ratio is
    /// drawn log-uniformly from 3/4 to 4/3.
    pub min_scale: f32,
    /// Probability of a horizontal flip.
    pub flip_p: f32,
    /// Probability of colour jitter.
    pub jitter_p: f32,
    /// Brightness factor drawn from `1 ± brightness`.
    pub brightness: f32,
    /// Contrast factor drawn from `1 ± contrast`.
    pub contrast: f32,
    /// Saturation factor drawn from `1 ± saturation`.
    pub saturation: f32,
    /// Probability of turning the view grey.
    pub grey_p: f32,
    /// Probability of a Gaussian blur.
    pub blur_p: f32,
    /// Largest blur standard deviation, in output pixels (drawn from
    /// `0.1..=blur_sigma`).
    pub blur_sigma: f32,
}

impl Default for AugmentOptions {
    /// SimCLR's recipe with milder colour changes: colour is much of what
    /// tells clip art apart, so the views keep most of it.
    fn default() -> Self {
        AugmentOptions {
            min_scale: 0.3,
            flip_p: 0.5,
            jitter_p: 0.8,
            brightness: 0.3,
            contrast: 0.3,
            saturation: 0.3,
            grey_p: 0.1,
            blur_p: 0.5,
            blur_sigma: 1.5,
        }
    }
}

impl AugmentOptions {
    /// Checks the numbers.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EmbedError::Input(format!("augmentation: {m}")));
        if !(self.min_scale > 0.0 && self.min_scale <= 1.0) {
            return bad(format!("min_scale {} must be in (0, 1]", self.min_scale));
        }
        for (name, p) in [
            ("flip_p", self.flip_p),
            ("jitter_p", self.jitter_p),
            ("grey_p", self.grey_p),
            ("blur_p", self.blur_p),
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("{name} {p} must be in [0, 1]"));
            }
        }
        if !(self.blur_sigma.is_finite() && self.blur_sigma >= 0.1 && self.blur_sigma <= 8.0) {
            return bad(format!(
                "blur_sigma {} must be between 0.1 and 8",
                self.blur_sigma
            ));
        }
        Ok(())
    }
}

/// A small deterministic random number generator (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for one view: `seed`, `epoch`, `image` and `view` each
    /// change the whole stream.
    pub fn for_view(seed: u64, epoch: usize, image: usize, view: usize) -> Self {
        let mut s = splitmix64(seed ^ 0x5eed_c0de_a11c_e5ed);
        for x in [epoch as u64, image as u64, view as u64] {
            s = splitmix64(s ^ x.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        Rng(s)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = splitmix64(self.0);
        self.0
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f32) -> bool {
        self.uniform() < p
    }
}

/// A crop rectangle in source pixels (`x`, `y` its top-left corner).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
}

/// A random crop of a `side × side` image as torchvision's
/// `RandomResizedCrop` draws it: area `min_scale..1` of the image, aspect
/// ratio log-uniform in `[3/4, 4/3]`, ten tries, then the whole image.
/// The box always lies inside the image.
pub fn random_crop_box(rng: &mut Rng, side: usize, min_scale: f32) -> CropBox {
    let s = side as f32;
    let (lo, hi) = ((3.0f32 / 4.0).ln(), (4.0f32 / 3.0).ln());
    for _ in 0..10 {
        let area = s * s * rng.range(min_scale, 1.0);
        let ratio = rng.range(lo, hi).exp();
        let w = (area * ratio).sqrt();
        let h = (area / ratio).sqrt();
        if w <= s && h <= s && w >= 1.0 && h >= 1.0 {
            let x = rng.range(0.0, s - w);
            let y = rng.range(0.0, s - h);
            return CropBox { x, y, w, h };
        }
    }
    CropBox {
        x: 0.0,
        y: 0.0,
        w: s,
        h: s,
    }
}

/// Resamples `crop` of a `channels × side × side` image to `out × out`
/// (bilinear, pixel centres mapped, edges clamped).
pub fn resample_crop(
    img: &[f32],
    channels: usize,
    side: usize,
    crop: CropBox,
    out: usize,
) -> Vec<f32> {
    let plane = side * side;
    let mut dst = vec![0f32; channels * out * out];
    let (sx, sy) = (crop.w / out as f32, crop.h / out as f32);
    let last = (side - 1) as f32;
    // Per output column: the two source columns and the weight of the second.
    let taps = |start: f32, scale: f32| -> Vec<(usize, usize, f32)> {
        (0..out)
            .map(|i| {
                let p = (start + (i as f32 + 0.5) * scale - 0.5).clamp(0.0, last);
                let a = p.floor();
                let b = (a + 1.0).min(last);
                (a as usize, b as usize, p - a)
            })
            .collect()
    };
    let xs = taps(crop.x, sx);
    let ys = taps(crop.y, sy);
    for c in 0..channels {
        let src = &img[c * plane..(c + 1) * plane];
        let d = &mut dst[c * out * out..(c + 1) * out * out];
        for (oy, &(y0, y1, fy)) in ys.iter().enumerate() {
            let (r0, r1) = (
                &src[y0 * side..(y0 + 1) * side],
                &src[y1 * side..(y1 + 1) * side],
            );
            for (ox, &(x0, x1, fx)) in xs.iter().enumerate() {
                let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
                let bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
                d[oy * out + ox] = top + (bottom - top) * fy;
            }
        }
    }
    dst
}

/// Mirrors each row of a `channels × side × side` image in place.
pub fn flip_horizontal(img: &mut [f32], side: usize) {
    for row in img.chunks_exact_mut(side) {
        row.reverse();
    }
}

/// ITU-R 601 luma of pixel `i` of an RGB plane set.
fn luma(img: &[f32], plane: usize, i: usize) -> f32 {
    0.299 * img[i] + 0.587 * img[plane + i] + 0.114 * img[2 * plane + i]
}

/// Colour jitter as torchvision's `ColorJitter` (fixed order: brightness,
/// contrast, saturation), factors drawn from `1 ± strength`, values kept
/// in `[0, 1]`. Saturation applies to RGB only.
pub fn colour_jitter(img: &mut [f32], channels: usize, opts: &AugmentOptions, rng: &mut Rng) {
    let plane = img.len() / channels.max(1);
    let mut factor = |s: f32| rng.range(1.0 - s, 1.0 + s);
    let b = factor(opts.brightness);
    let c = factor(opts.contrast);
    let s = factor(opts.saturation);
    img.iter_mut().for_each(|v| *v = (*v * b).clamp(0.0, 1.0));
    let mean = if channels == 3 {
        (0..plane).map(|i| luma(img, plane, i)).sum::<f32>() / plane as f32
    } else {
        img.iter().sum::<f32>() / img.len() as f32
    };
    img.iter_mut()
        .for_each(|v| *v = (mean + (*v - mean) * c).clamp(0.0, 1.0));
    if channels == 3 {
        for i in 0..plane {
            let g = luma(img, plane, i);
            for ch in 0..3 {
                let v = &mut img[ch * plane + i];
                *v = (g + (*v - g) * s).clamp(0.0, 1.0);
            }
        }
    }
}

/// Replaces each RGB pixel by its luma (a grey image keeps its values).
pub fn greyscale(img: &mut [f32], channels: usize) {
    if channels != 3 {
        return;
    }
    let plane = img.len() / 3;
    for i in 0..plane {
        let g = luma(img, plane, i);
        for ch in 0..3 {
            img[ch * plane + i] = g;
        }
    }
}

/// Separable Gaussian blur of standard deviation `sigma` (pixels), the
/// kernel cut at 3σ, edges clamped.
pub fn gaussian_blur(img: &mut [f32], channels: usize, side: usize, sigma: f32) {
    let r = ((3.0 * sigma).ceil() as usize).clamp(1, side.max(2) / 2);
    let k: Vec<f32> = (0..=2 * r)
        .map(|i| {
            let d = i as f32 - r as f32;
            (-d * d / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let total: f32 = k.iter().sum();
    let k: Vec<f32> = k.iter().map(|v| v / total).collect();
    let at = |i: usize, j: usize| (i + j).saturating_sub(r).min(side - 1);
    let plane = side * side;
    let mut tmp = vec![0f32; plane];
    for c in 0..channels {
        let p = &mut img[c * plane..(c + 1) * plane];
        for y in 0..side {
            for x in 0..side {
                tmp[y * side + x] = k
                    .iter()
                    .enumerate()
                    .map(|(j, w)| w * p[y * side + at(x, j)])
                    .sum();
            }
        }
        for y in 0..side {
            for x in 0..side {
                p[y * side + x] = k
                    .iter()
                    .enumerate()
                    .map(|(j, w)| w * tmp[at(y, j) * side + x])
                    .sum();
            }
        }
    }
}

/// One augmented view: a random resized crop of the `channels × side ×
/// side` image `img` resampled to `out × out`, then (each with its
/// probability) flipped, colour-jittered, made grey and blurred.
pub fn view(
    img: &[f32],
    channels: usize,
    side: usize,
    out: usize,
    opts: &AugmentOptions,
    rng: &mut Rng,
) -> Result<Vec<f32>> {
    if side == 0 || out == 0 || img.len() != channels * side * side {
        return Err(EmbedError::Input(format!(
            "augmentation: {} values is not a {channels} × {side} × {side} image",
            img.len()
        )));
    }
    let crop = random_crop_box(rng, side, opts.min_scale);
    let mut v = resample_crop(img, channels, side, crop, out);
    if rng.chance(opts.flip_p) {
        flip_horizontal(&mut v, out);
    }
    if rng.chance(opts.jitter_p) {
        colour_jitter(&mut v, channels, opts, rng);
    }
    if rng.chance(opts.grey_p) {
        greyscale(&mut v, channels);
    }
    if rng.chance(opts.blur_p) {
        let sigma = rng.range(0.1, opts.blur_sigma.max(0.1));
        gaussian_blur(&mut v, channels, out, sigma);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(channels: usize, side: usize) -> Vec<f32> {
        (0..channels * side * side)
            .map(|i| (i % 97) as f32 / 96.0)
            .collect()
    }

    #[test]
    fn crop_boxes_lie_inside_the_image_and_respect_the_scale() {
        for seed in 0..500 {
            let mut rng = Rng::for_view(seed, 1, 2, 0);
            let b = random_crop_box(&mut rng, 80, 0.3);
            assert!(b.x >= 0.0 && b.y >= 0.0, "{b:?}");
            assert!(
                b.x + b.w <= 80.0 + 1e-3 && b.y + b.h <= 80.0 + 1e-3,
                "{b:?}"
            );
            assert!(b.w * b.h >= 0.3 * 6400.0 - 1e-2, "{b:?}");
        }
    }

    #[test]
    fn views_have_the_output_shape_stay_in_range_and_repeat_for_a_seed() {
        let img = ramp(3, 20);
        let opts = AugmentOptions {
            jitter_p: 1.0,
            blur_p: 1.0,
            ..Default::default()
        };
        let a = view(&img, 3, 20, 16, &opts, &mut Rng::for_view(7, 1, 0, 0)).unwrap();
        let b = view(&img, 3, 20, 16, &opts, &mut Rng::for_view(7, 1, 0, 0)).unwrap();
        let c = view(&img, 3, 20, 16, &opts, &mut Rng::for_view(7, 1, 0, 1)).unwrap();
        assert_eq!(a.len(), 3 * 16 * 16);
        assert_eq!(a, b, "same seed, same view");
        assert_ne!(a, c, "another view differs");
        assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
        let grey = view(
            &ramp(1, 20),
            1,
            20,
            8,
            &opts,
            &mut Rng::for_view(1, 1, 1, 1),
        )
        .unwrap();
        assert_eq!(grey.len(), 64);
        assert!(view(&img, 3, 21, 16, &opts, &mut Rng::for_view(7, 1, 0, 0)).is_err());
    }

    #[test]
    fn the_whole_image_resampled_to_its_own_size_is_unchanged() {
        let img = ramp(3, 12);
        let whole = CropBox {
            x: 0.0,
            y: 0.0,
            w: 12.0,
            h: 12.0,
        };
        let out = resample_crop(&img, 3, 12, whole, 12);
        for (a, b) in out.iter().zip(&img) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn flip_grey_and_blur_do_what_they_say() {
        let mut img = vec![0.0, 1.0, 2.0, 3.0];
        flip_horizontal(&mut img, 2);
        assert_eq!(img, vec![1.0, 0.0, 3.0, 2.0]);
        let mut rgb = vec![1.0, 0.0, 0.0];
        greyscale(&mut rgb, 3);
        assert!(rgb.iter().all(|v| (v - 0.299).abs() < 1e-6));
        // A blur keeps a flat image flat and spreads a single bright dot.
        let mut flat = vec![0.5; 25];
        gaussian_blur(&mut flat, 1, 5, 1.0);
        assert!(flat.iter().all(|v| (v - 0.5).abs() < 1e-5));
        let mut dot = vec![0.0; 25];
        dot[12] = 1.0;
        gaussian_blur(&mut dot, 1, 5, 1.0);
        assert!(dot[12] < 1.0 && dot[11] > 0.0 && dot[7] > 0.0);
        assert!((dot.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(AugmentOptions::default().validate().is_ok());
        for bad in [
            AugmentOptions {
                min_scale: 0.0,
                ..Default::default()
            },
            AugmentOptions {
                flip_p: 1.5,
                ..Default::default()
            },
            AugmentOptions {
                blur_sigma: f32::NAN,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
