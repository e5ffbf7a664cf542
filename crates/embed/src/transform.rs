//! The torchvision-style evaluation transform:
//! `Resize(shorter side) → CenterCrop → ToTensor → Normalize`.
//!
//! The resize is Pillow's antialiased convolution resampling, bit-exact
//! ([`crate::resample`]): what torchvision's `Resize` does on a PIL image.
//! The parity tests check it against torchvision on a fixed image.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::{EmbedError, Result};

/// Resampling filter for the resize step (Pillow's, antialiased).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// Triangle filter (`InterpolationMode.BILINEAR`), torchvision's default.
    #[default]
    Bilinear,
    /// Keys cubic, a = −0.5 (`InterpolationMode.BICUBIC`), timm's usual choice.
    Bicubic,
    /// Box filter (Pillow's `BOX`): when reducing, each output pixel is the
    /// mean of the input area it covers (area averaging).
    Box,
}

/// How the image is brought to the square `crop × crop` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Resize the shorter side to `resize_shorter` (aspect ratio kept), then
    /// take the centre `crop × crop` square: torchvision's evaluation
    /// transform, what every pretrained model expects.
    #[default]
    CentreCrop,
    /// Resize the whole image to `crop × crop` (aspect ratio not kept,
    /// nothing cut off): the baselines' view of an image. `resize_shorter`
    /// then only bounds the reduced JPEG decode.
    Whole,
}

impl Fit {
    /// Whether this is the default, [`Fit::CentreCrop`] (left out of the
    /// serialised form, so that records written before `fit` existed read
    /// and compare the same).
    pub fn is_centre_crop(&self) -> bool {
        *self == Fit::CentreCrop
    }
}

/// ImageNet channel means (torchvision's constants).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Resize, crop and normalise an RGB image into a CHW `f32` tensor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Transform {
    /// The shorter side is resized to this (aspect ratio kept).
    pub resize_shorter: u32,
    /// Side of the square centre crop taken afterwards.
    pub crop: u32,
    /// Per-channel mean subtracted after scaling to `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f32; 3],
    /// Resampling filter.
    #[serde(default)]
    pub interpolation: Interpolation,
    /// Output channels: 3 (RGB) or 1 (grey, ITU-R 601 luma as PIL's `L`).
    #[serde(default = "three")]
    pub channels: usize,
    /// Centre crop after resizing the shorter side, or the whole image.
    #[serde(default, skip_serializing_if = "Fit::is_centre_crop")]
    pub fit: Fit,
}

fn three() -> usize {
    3
}

impl Transform {
    /// The usual ImageNet evaluation transform: resize to `resize`, crop `crop`.
    pub fn imagenet(resize: u32, crop: u32) -> Self {
        Transform {
            resize_shorter: resize,
            crop,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            interpolation: Interpolation::Bilinear,
            channels: 3,
            fit: Fit::CentreCrop,
        }
    }

    /// The same with another resampling filter.
    pub fn with_interpolation(self, interpolation: Interpolation) -> Self {
        Transform {
            interpolation,
            ..self
        }
    }

    /// Scale to `[0, 1]` only (no normalisation), `side × side`, `channels` 1 or 3:
    /// the autoencoder's input.
    pub fn unit(side: u32, channels: usize) -> Self {
        Transform {
            resize_shorter: side,
            crop: side,
            mean: [0.0; 3],
            std: [1.0; 3],
            interpolation: Interpolation::Bilinear,
            channels,
            fit: Fit::CentreCrop,
        }
    }

    /// The whole image resized to `side × side` with `interpolation`,
    /// scaled to `[0, 1]`, RGB (see [`Fit::Whole`]).
    pub fn whole(side: u32, interpolation: Interpolation) -> Self {
        Transform {
            fit: Fit::Whole,
            interpolation,
            ..Transform::unit(side, 3)
        }
    }

    /// Number of values [`Transform::apply`] produces.
    pub fn len(&self) -> usize {
        self.channels * (self.crop as usize).pow(2)
    }

    /// Whether the output is empty (never, for a valid transform).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        if self.crop == 0 || self.resize_shorter < self.crop {
            return Err(EmbedError::InvalidTransform(format!(
                "crop {} must be between 1 and the resize size {}",
                self.crop, self.resize_shorter
            )));
        }
        if self.channels != 1 && self.channels != 3 {
            return Err(EmbedError::InvalidTransform(format!(
                "channels must be 1 or 3, not {}",
                self.channels
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

    /// Size of the image after the resize step: `crop × crop` for
    /// [`Fit::Whole`]; otherwise as torchvision computes it (the longer
    /// side is truncated, not rounded).
    pub fn resized_dims(&self, w: u32, h: u32) -> (u32, u32) {
        if self.fit == Fit::Whole {
            return (self.crop, self.crop);
        }
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

    /// Applies the transform; the result is `channels × crop × crop` values,
    /// channel-major.
    pub fn apply(&self, img: &RgbImage) -> Result<Vec<f32>> {
        self.validate()?;
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(EmbedError::InvalidTransform("empty image".into()));
        }
        let (rw, rh) = self.resized_dims(w, h);
        let resized;
        let (src, sw): (&[u8], u32) = if (rw, rh) == (w, h) {
            (img.as_raw(), w)
        } else {
            resized = resize_rgb(img, rw, rh, self.interpolation)?;
            (&resized, rw)
        };
        let c = self.crop;
        // torchvision: top = int(round((h - crop) / 2)), left likewise, with
        // Python's round (half to even: 58.5 → 58).
        let top = ((rh - c) as f64 / 2.0).round_ties_even() as u32;
        let left = ((rw - c) as f64 / 2.0).round_ties_even() as u32;
        let plane = (c * c) as usize;
        let mut out = vec![0f32; self.channels * plane];
        let lut: [[f32; 256]; 3] = std::array::from_fn(|ch| {
            std::array::from_fn(|v| (v as f32 / 255.0 - self.mean[ch]) / self.std[ch])
        });
        for y in 0..c {
            let row = ((top + y) * sw + left) as usize * 3;
            for x in 0..c as usize {
                let p = &src[row + 3 * x..row + 3 * x + 3];
                let i = y as usize * c as usize + x;
                if self.channels == 3 {
                    for ch in 0..3 {
                        out[ch * plane + i] = lut[ch][p[ch] as usize];
                    }
                } else {
                    // PIL's L conversion: (R*299 + G*587 + B*114) / 1000, rounded.
                    let l = (u32::from(p[0]) * 19595
                        + u32::from(p[1]) * 38470
                        + u32::from(p[2]) * 7471
                        + 0x8000)
                        >> 16;
                    out[i] = lut[0][l as usize];
                }
            }
        }
        Ok(out)
    }
}

/// Resizes RGB8 pixels with Pillow's antialiased convolution.
pub fn resize_rgb(img: &RgbImage, w: u32, h: u32, interp: Interpolation) -> Result<Vec<u8>> {
    let (sw, sh) = img.dimensions();
    Ok(crate::resample::resize_rgb8(
        img.as_raw(),
        sw as usize,
        sh as usize,
        w as usize,
        h as usize,
        interp,
    ))
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
            ..Transform::unit(4, 3)
        };
        let v = t.apply(&img).unwrap();
        // Columns 3 and 4 of the 8: one black, one white.
        assert_eq!(&v[0..2], &[0.0, 1.0]);
        assert!(Transform { crop: 0, ..t }.apply(&img).is_err());
        assert!(Transform { std: [0.0; 3], ..t }.apply(&img).is_err());
    }

    #[test]
    fn whole_fit_keeps_the_edges_a_centre_crop_cuts_off() {
        // 8 × 4: only the first column red, the rest black.
        let img = RgbImage::from_fn(8, 4, |x, _| {
            image::Rgb(if x == 0 { [255, 0, 0] } else { [0; 3] })
        });
        let whole = Transform::whole(4, Interpolation::Box).apply(&img).unwrap();
        // Column 0 of 4 averages input columns 0 and 1: half red.
        assert!((whole[0] - 128.0 / 255.0).abs() < 1e-6, "{whole:?}");
        let crop = Transform::unit(4, 3).apply(&img).unwrap();
        assert!(crop[..16].iter().all(|&v| v == 0.0), "{crop:?}");
        // The default fit is left out of the serialised form.
        let json = serde_json::to_value(Transform::unit(4, 3)).unwrap();
        assert!(json.get("fit").is_none(), "{json}");
        let back: Transform = serde_json::from_value(
            serde_json::to_value(Transform::whole(4, Interpolation::Box)).unwrap(),
        )
        .unwrap();
        assert_eq!(back.fit, Fit::Whole);
    }
}
