//! Two embedders that learn nothing — the floor a model has to clear on a
//! labelled set: the tiny image (Torralba, Fergus & Freeman 2008, "80
//! million tiny images") and the colour histogram (Swain & Ballard 1991,
//! "Color indexing"), compared with the Hellinger distance.
//!
//! Both see the whole image (no centre crop: [`Fit::Whole`]), reduced with
//! Pillow's box filter, so each output pixel is the mean of the area it
//! covers. Both are plain [`Embedder`]s, so evaluation, indexing and search
//! treat them as they treat a model.

use crate::embedder::{Embedder, EmbedderIdentity, Metric};
use crate::error::{EmbedError, Result};
use crate::transform::{Fit, Interpolation, Transform};

/// Side of the tiny image.
pub const TINY_SIDE: u32 = 16;
/// Levels per channel of the colour histogram (8 × 8 × 8 = 512 bins).
pub const HISTOGRAM_LEVELS: usize = 8;
/// Side of the whole-image reduction the histogram is counted on: enough
/// pixels (16,384) for a stable histogram, few enough to be cheap.
pub const HISTOGRAM_SIDE: u32 = 128;

/// Where a baseline's "weights" come from, for its identity.
const NO_WEIGHTS: &str = "none (a baseline without weights)";

/// Names of the baselines, as [`baseline`] takes them.
pub const BASELINES: [&str; 2] = ["tiny", "colour-histogram"];

/// The baseline named `name` (one of [`BASELINES`]), if it is one.
pub fn baseline(name: &str) -> Option<Box<dyn Embedder>> {
    match name {
        "tiny" => Some(Box::new(TinyImageEmbedder::new())),
        "colour-histogram" => Some(Box::new(ColourHistogramEmbedder::new())),
        _ => None,
    }
}

/// Checks that every input has `t.len()` values.
fn check_inputs(inputs: &[Vec<f32>], t: &Transform, name: &str) -> Result<()> {
    match inputs.iter().position(|x| x.len() != t.len()) {
        Some(i) => Err(EmbedError::Input(format!(
            "input {i} has {} values, {name} expects {} (3 × {} × {})",
            inputs[i].len(),
            t.len(),
            t.crop,
            t.crop
        ))),
        None => Ok(()),
    }
}

/// The whole image reduced to 16 × 16 RGB by area averaging: 768 values in
/// `[0, 1]` (channel-major), compared by L2.
#[derive(Debug, Clone)]
pub struct TinyImageEmbedder {
    identity: EmbedderIdentity,
}

impl TinyImageEmbedder {
    /// The embedder.
    pub fn new() -> Self {
        let preprocessing = Transform::whole(TINY_SIDE, Interpolation::Box);
        TinyImageEmbedder {
            identity: EmbedderIdentity {
                architecture: "tiny-16".into(),
                weights_digest: format!("{TINY_SIDE}x{TINY_SIDE}-rgb-box-whole-unit"),
                weights_origin: NO_WEIGHTS.into(),
                dim: preprocessing.len(),
                metric: Metric::L2,
                preprocessing,
            },
        }
    }
}

impl Default for TinyImageEmbedder {
    fn default() -> Self {
        TinyImageEmbedder::new()
    }
}

impl Embedder for TinyImageEmbedder {
    fn identity(&self) -> &EmbedderIdentity {
        &self.identity
    }

    /// The preprocessed pixels are the vector.
    fn embed_batch(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        check_inputs(inputs, &self.identity.preprocessing, "tiny")?;
        Ok(inputs.to_vec())
    }
}

/// The joint RGB histogram of the whole image, 8 levels per channel (512
/// bins, bin `r·64 + g·8 + b` with each level = value / 32), normalised to
/// sum 1, then square-rooted element-wise. The L2 distance between two such
/// vectors is √2 times the Hellinger distance between the histograms, so
/// the L2 metric ranks images by Hellinger distance (and each vector has
/// unit length). Counted on the image reduced to 128 × 128 by area
/// averaging, which blends colours only along edges.
#[derive(Debug, Clone)]
pub struct ColourHistogramEmbedder {
    identity: EmbedderIdentity,
}

impl ColourHistogramEmbedder {
    /// The embedder.
    pub fn new() -> Self {
        let preprocessing = Transform::whole(HISTOGRAM_SIDE, Interpolation::Box);
        debug_assert_eq!(preprocessing.fit, Fit::Whole);
        let levels = HISTOGRAM_LEVELS;
        ColourHistogramEmbedder {
            identity: EmbedderIdentity {
                architecture: "colour-histogram-512".into(),
                weights_digest: format!(
                    "rgb{levels}x{levels}x{levels}-sqrt-box{HISTOGRAM_SIDE}-whole"
                ),
                weights_origin: NO_WEIGHTS.into(),
                dim: levels.pow(3),
                metric: Metric::L2,
                preprocessing,
            },
        }
    }

    /// The square-rooted histogram of one preprocessed image (channel-major
    /// values in `[0, 1]`).
    fn histogram(x: &[f32]) -> Vec<f32> {
        let plane = x.len() / 3;
        let shift = (256 / HISTOGRAM_LEVELS).trailing_zeros();
        let level = |v: f32| ((v * 255.0).round().clamp(0.0, 255.0) as usize) >> shift;
        let mut counts = vec![0u32; HISTOGRAM_LEVELS.pow(3)];
        for i in 0..plane {
            let (r, g, b) = (level(x[i]), level(x[plane + i]), level(x[2 * plane + i]));
            counts[(r * HISTOGRAM_LEVELS + g) * HISTOGRAM_LEVELS + b] += 1;
        }
        let n = plane.max(1) as f32;
        counts.iter().map(|&c| (c as f32 / n).sqrt()).collect()
    }
}

impl Default for ColourHistogramEmbedder {
    fn default() -> Self {
        ColourHistogramEmbedder::new()
    }
}

impl Embedder for ColourHistogramEmbedder {
    fn identity(&self) -> &EmbedderIdentity {
        &self.identity
    }

    fn embed_batch(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        check_inputs(inputs, &self.identity.preprocessing, "colour-histogram")?;
        Ok(inputs.iter().map(|x| Self::histogram(x)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn embed(e: &dyn Embedder, img: &RgbImage) -> Vec<f32> {
        e.embed_images(std::slice::from_ref(img)).unwrap().remove(0)
    }

    #[test]
    fn pure_red_puts_all_mass_in_one_bin() {
        let e = ColourHistogramEmbedder::new();
        let v = embed(&e, &RgbImage::from_pixel(300, 200, Rgb([255, 0, 0])));
        assert_eq!(v.len(), 512);
        // r level 7, g 0, b 0: bin 7·64.
        assert_eq!(v[448], 1.0);
        assert_eq!(v.iter().filter(|&&x| x != 0.0).count(), 1);
        // Dark grey (31, 31, 31) is level 0 everywhere: bin 0.
        let v = embed(&e, &RgbImage::from_pixel(10, 10, Rgb([31, 31, 31])));
        assert_eq!(v[0], 1.0);
        let v = embed(&e, &RgbImage::from_pixel(10, 10, Rgb([32, 64, 255])));
        assert_eq!(v[(64 + 2 * 8) + 7], 1.0);
    }

    #[test]
    fn two_colours_half_and_half_are_two_bins_of_root_half() {
        let e = ColourHistogramEmbedder::new();
        // 256 × 128, left half red, right half blue: the box reduction to
        // 128 × 128 blends nothing (the edge falls between two outputs).
        let img = RgbImage::from_fn(256, 128, |x, _| {
            Rgb(if x < 128 { [255, 0, 0] } else { [0, 0, 255] })
        });
        let v = embed(&e, &img);
        let half = 0.5f32.sqrt();
        assert!(
            (v[448] - half).abs() < 1e-6 && (v[7] - half).abs() < 1e-6,
            "{:?}",
            &v[..8]
        );
        assert_eq!(v.iter().filter(|&&x| x != 0.0).count(), 2);
        // Unit length, and images of disjoint colours are √2 apart (the
        // Hellinger distance, 1, times √2).
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6);
        let green = embed(&e, &RgbImage::from_pixel(64, 64, Rgb([0, 255, 0])));
        let d: f32 = v
            .iter()
            .zip(&green)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
            .sqrt();
        assert!((d - 2f32.sqrt()).abs() < 1e-6, "{d}");
    }

    #[test]
    fn tiny_image_is_the_whole_image_averaged_to_16_by_16() {
        let e = TinyImageEmbedder::new();
        assert_eq!((e.dim(), e.metric()), (768, Metric::L2));
        // 64 × 32: the leftmost 16 columns red, the rest blue. A centre
        // crop would lose the red; the whole image keeps it in 4 columns.
        let img = RgbImage::from_fn(64, 32, |x, _| {
            Rgb(if x < 16 { [255, 0, 0] } else { [0, 0, 255] })
        });
        let v = embed(&e, &img);
        assert_eq!(v.len(), 768);
        let plane = 256;
        for y in 0..16 {
            for x in 0..16 {
                let (r, b) = (v[y * 16 + x], v[2 * plane + y * 16 + x]);
                let expect = if x < 4 { (1.0, 0.0) } else { (0.0, 1.0) };
                assert_eq!((r, b), expect, "pixel ({x}, {y})");
            }
        }
        // A mixed block is averaged: 2 × 2 pixels of 0 and 200 → 100.
        let img = RgbImage::from_fn(32, 32, |x, _| Rgb([if x % 2 == 0 { 0 } else { 200 }; 3]));
        let v = embed(&e, &img);
        assert!(
            v.iter().all(|&x| (x - 100.0 / 255.0).abs() < 1e-6),
            "{:?}",
            &v[..4]
        );
    }

    #[test]
    fn baselines_are_found_by_name_and_refuse_wrong_inputs() {
        for name in BASELINES {
            let e = baseline(name).unwrap();
            assert!(e.embed_batch(&[vec![0.0; 5]]).is_err(), "{name}");
            assert_eq!(e.identity().preprocessing.fit, Fit::Whole);
        }
        assert!(baseline("resnet18").is_none());
        assert_eq!(baseline("tiny").unwrap().name(), "tiny-16");
        assert_eq!(
            baseline("colour-histogram").unwrap().name(),
            "colour-histogram-512"
        );
    }
}
