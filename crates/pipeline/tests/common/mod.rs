//! What the pipeline's integration tests share: a small test embedder, a
//! test image and an empty collection.
#![allow(dead_code)]

use std::path::Path;

use imgsim_embed::{Embedder, EmbedderIdentity, Metric, Transform};
use imgsim_index::{Collection, CollectionSpec, HnswParams, OpenOptions};

/// Embeds an 8×8 image as its 3 channel means and their spread; gives NaN
/// for a pure red image (a model failing on one input).
pub struct Means {
    identity: EmbedderIdentity,
}

impl Means {
    /// The embedder.
    pub fn new() -> Self {
        Means {
            identity: EmbedderIdentity {
                architecture: "means".into(),
                weights_digest: "none".into(),
                weights_origin: "test".into(),
                dim: 4,
                metric: Metric::L2,
                preprocessing: Transform::unit(8, 3),
            },
        }
    }
}

impl Embedder for Means {
    fn identity(&self) -> &EmbedderIdentity {
        &self.identity
    }

    fn embed_batch(&self, inputs: &[Vec<f32>]) -> imgsim_embed::Result<Vec<Vec<f32>>> {
        Ok(inputs
            .iter()
            .map(|x| {
                let n = x.len() / 3;
                let m: Vec<f32> = (0..3)
                    .map(|c| x[c * n..(c + 1) * n].iter().sum::<f32>() / n as f32)
                    .collect();
                if m[0] > 0.99 && m[1] < 0.01 && m[2] < 0.01 {
                    return vec![f32::NAN; 4];
                }
                let spread = x.iter().map(|v| (v - m[0]).abs()).sum::<f32>() / x.len() as f32;
                vec![m[0], m[1], m[2], spread]
            })
            .collect())
    }
}

/// A 16×16 PNG of one colour at `path`.
pub fn solid(path: &Path, rgb: [u8; 3]) {
    image::RgbImage::from_pixel(16, 16, image::Rgb(rgb))
        .save(path)
        .unwrap();
}

/// A new 4-d L2 collection in `dir/c`.
pub fn collection(dir: &Path) -> Collection {
    Collection::create(
        &dir.join("c"),
        CollectionSpec {
            dim: 4,
            metric: imgsim_index::Metric::L2,
            params: HnswParams::default(),
        },
        OpenOptions::default(),
    )
    .unwrap()
}

impl Default for Means {
    fn default() -> Self {
        Means::new()
    }
}

/// A `w`×`h` PNG of seeded noise at `path` (its halves are not a PNG).
pub fn noise(path: &Path, seed: u32, w: u32, h: u32) {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    image::RgbImage::from_fn(w, h, |_, _| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        image::Rgb([x as u8, (x >> 8) as u8, (x >> 16) as u8])
    })
    .save(path)
    .unwrap();
}
