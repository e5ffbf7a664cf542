//! The torchvision-style evaluation transform:
//! `Resize(shorter side) → CenterCrop → ToTensor → Normalize`.

use image::imageops::FilterType;
use image::RgbImage;

use crate::error::{EmbedError, Result};

/// ImageNet channel means (torchvision's constants).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Resize, crop and normalise an RGB image into a CHW `f32` tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    /// The shorter side is resized to this (aspect ratio kept).
    pub resize_shorter: u32,
    /// Side of the square centre crop taken afterwards.
    pub crop: u32,
    /// Per-channel mean subtracted after scaling to `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f32; 3],
}

impl Transform {
    /// The usual ImageNet evaluation transform: resize to `resize`, crop `crop`.
    pub fn imagenet(resize: u32, crop: u32) -> Self {
        Transform {
            resize_shorter: resize,
            crop,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        if self.crop == 0 || self.resize_shorter < self.crop {
            return Err(EmbedError::InvalidTransform(format!(
                "crop {} must be between 1 and the resize size {}",
                self.crop, self.resize_shorter
            )));
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return Err(EmbedError::InvalidTransform(
                "mean must be finite and std positive".into(),
            ));
        }
        Ok(())
    }

    /// Size of the image after the resize step, as torchvision computes it
    /// (the longer side is truncated, not rounded).
    pub fn resized_dims(&self, w: u32, h: u32) -> (u32, u32) {
        let s = self.resize_shorter as u64;
        if w <= h {
            (
                self.resize_shorter,
                ((s * h as u64) / w.max(1) as u64).max(1) as u32,
            )
        } else {
            (
                ((s * w as u64) / h.max(1) as u64).max(1) as u32,
                self.resize_shorter,
            )
        }
    }

    /// Applies the transform; the result is `3 × crop × crop` values, channel-major.
    pub fn apply(&self, img: &RgbImage) -> Result<Vec<f32>> {
        self.validate()?;
        let (w, h) = img.dimensions();
        let (rw, rh) = self.resized_dims(w, h);
        let resized;
        let src = if (rw, rh) == (w, h) {
            img
        } else {
            resized = image::imageops::resize(img, rw, rh, FilterType::Triangle);
            &resized
        };
        let c = self.crop;
        // torchvision: top = round((h - crop) / 2), left likewise.
        let top = ((rh - c) as f32 / 2.0).round() as u32;
        let left = ((rw - c) as f32 / 2.0).round() as u32;
        let plane = (c * c) as usize;
        let mut out = vec![0f32; 3 * plane];
        for y in 0..c {
            for x in 0..c {
                let p = src.get_pixel(left + x, top + y).0;
                let i = (y * c + x) as usize;
                for ch in 0..3 {
                    out[ch * plane + i] = (p[ch] as f32 / 255.0 - self.mean[ch]) / self.std[ch];
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resized_dims_follow_torchvision() {
        let t = Transform::imagenet(256, 224);
        assert_eq!(t.resized_dims(640, 480), (341, 256));
        assert_eq!(t.resized_dims(480, 640), (256, 341));
        assert_eq!(t.resized_dims(256, 256), (256, 256));
    }

    #[test]
    fn uniform_image_normalises_to_known_values() {
        let img = RgbImage::from_pixel(300, 200, image::Rgb([255, 0, 128]));
        let t = Transform::imagenet(64, 56);
        let v = t.apply(&img).unwrap();
        assert_eq!(v.len(), 3 * 56 * 56);
        let plane = 56 * 56;
        let expect = [
            (1.0 - 0.485) / 0.229,
            (0.0 - 0.456) / 0.224,
            (128.0 / 255.0 - 0.406) / 0.225,
        ];
        for ch in 0..3 {
            for &x in &v[ch * plane..(ch + 1) * plane] {
                assert!((x - expect[ch]).abs() < 1e-5, "{x} vs {}", expect[ch]);
            }
        }
    }

    #[test]
    fn centre_crop_takes_the_middle() {
        // Left half black, right half white, already at the resize size.
        let img = RgbImage::from_fn(8, 4, |x, _| {
            if x < 4 {
                image::Rgb([0; 3])
            } else {
                image::Rgb([255; 3])
            }
        });
        let t = Transform {
            resize_shorter: 4,
            crop: 2,
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        let v = t.apply(&img).unwrap();
        // Columns 3 and 4 of the 8: one black, one white.
        assert_eq!(&v[0..2], &[0.0, 1.0]);
        assert!(Transform { crop: 0, ..t }.apply(&img).is_err());
        assert!(Transform { std: [0.0; 3], ..t }.apply(&img).is_err());
    }
}
