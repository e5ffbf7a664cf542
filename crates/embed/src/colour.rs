//! Converting decoded pixels from the colour space a file declares (an ICC
//! profile, or CICP values: Display P3, BT.2020...) to sRGB with moxcms, the
//! colour management the `image` crate itself uses, before they become 8-bit.

use image::{DynamicImage, ImageBuffer};
use moxcms::{
    CicpColorPrimaries, CicpProfile, ColorProfile, Layout, MatrixCoefficients,
    TransferCharacteristics, TransformOptions,
};

/// The colour space a decoder found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Profile {
    /// sRGB, or nothing said (taken as sRGB).
    Srgb,
    /// An embedded ICC profile.
    Icc(Vec<u8>),
    /// ITU-T H.273 colour primaries and transfer characteristics.
    Cicp {
        /// Colour primaries code (1 BT.709/sRGB, 9 BT.2020, 12 Display P3...).
        primaries: u8,
        /// Transfer characteristics code (13 sRGB, 1 BT.709, 8 linear...).
        transfer: u8,
    },
}

impl Profile {
    /// The moxcms profile to convert from, or `None` when the pixels are
    /// sRGB already (BT.709 primaries with an sRGB-like curve, or nothing
    /// said), or when the profile cannot be used (then they are kept as
    /// they are, as for the formats that ignore profiles).
    fn source(&self) -> Option<ColorProfile> {
        match self {
            Profile::Srgb => None,
            Profile::Icc(icc) => {
                let p = ColorProfile::new_from_slice(icc).ok()?;
                // A profile with sRGB's colorants and curve needs no work.
                (!is_srgb_like(&p)).then_some(p)
            }
            &Profile::Cicp {
                primaries,
                transfer,
            } => {
                let primaries = if primaries == 2 { 1 } else { primaries };
                let transfer = if transfer == 2 { 13 } else { transfer };
                if primaries == 1 && matches!(transfer, 1 | 6 | 13 | 14 | 15) {
                    return None;
                }
                // Primaries with chromaticities, and curves moxcms models
                // (not PQ or HLG, which would need tone mapping).
                if !matches!(primaries, 1 | 4..=12 | 22) || !matches!(transfer, 1 | 4..=8 | 13..=15)
                {
                    return None;
                }
                let cicp = CicpProfile {
                    color_primaries: CicpColorPrimaries::try_from(primaries).ok()?,
                    transfer_characteristics: TransferCharacteristics::try_from(transfer).ok()?,
                    matrix_coefficients: MatrixCoefficients::Identity,
                    full_range: true,
                };
                Some(ColorProfile::new_from_cicp(cicp))
            }
        }
    }
}

/// Whether an ICC profile is sRGB in all but name (same colorants and
/// curves, to within rounding), so that converting would only add noise.
fn is_srgb_like(p: &ColorProfile) -> bool {
    let srgb = ColorProfile::new_srgb();
    let close = |a: moxcms::Xyzd, b: moxcms::Xyzd| {
        (a.x - b.x).abs() < 2e-3 && (a.y - b.y).abs() < 2e-3 && (a.z - b.z).abs() < 2e-3
    };
    close(p.red_colorant, srgb.red_colorant)
        && close(p.green_colorant, srgb.green_colorant)
        && close(p.blue_colorant, srgb.blue_colorant)
        && p.red_trc == srgb.red_trc
        && p.green_trc == srgb.green_trc
        && p.blue_trc == srgb.blue_trc
}

/// `img` (8- or 16-bit RGB or RGBA) in sRGB: converted from `profile`
/// with relative colorimetric intent (out-of-gamut colours clipped, alpha
/// kept), or returned as it is when it already is sRGB or the profile is
/// unusable.
pub(crate) fn to_srgb(img: DynamicImage, profile: &Profile) -> DynamicImage {
    let Some(src) = profile.source() else {
        return img;
    };
    let dst = ColorProfile::new_srgb();
    let opts = TransformOptions::default();
    let (w, h) = (img.width(), img.height());
    macro_rules! convert {
        ($buf:expr, $layout:expr, $make:ident, $variant:ident) => {{
            let buf = $buf;
            let Ok(t) = src.$make($layout, &dst, $layout, opts) else {
                return DynamicImage::$variant(buf);
            };
            let mut out = vec![Default::default(); buf.as_raw().len()];
            if t.transform(buf.as_raw(), &mut out).is_err() {
                return DynamicImage::$variant(buf);
            }
            match ImageBuffer::from_raw(w, h, out) {
                Some(b) => DynamicImage::$variant(b),
                None => DynamicImage::$variant(buf),
            }
        }};
    }
    match img {
        DynamicImage::ImageRgb8(b) => convert!(b, Layout::Rgb, create_transform_8bit, ImageRgb8),
        DynamicImage::ImageRgba8(b) => {
            convert!(b, Layout::Rgba, create_transform_8bit, ImageRgba8)
        }
        DynamicImage::ImageRgb16(b) => {
            convert!(b, Layout::Rgb, create_transform_16bit, ImageRgb16)
        }
        DynamicImage::ImageRgba16(b) => {
            convert!(b, Layout::Rgba, create_transform_16bit, ImageRgba16)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_p3_red_becomes_the_srgb_red_it_is() {
        // P3's pure red is outside sRGB: clipped to sRGB red, with green
        // and blue pushed below 0 and clipped too.
        let red =
            DynamicImage::ImageRgb8(image::RgbImage::from_pixel(2, 1, image::Rgb([200, 0, 0])));
        let p3 = Profile::Cicp {
            primaries: 12,
            transfer: 13,
        };
        let out = to_srgb(red.clone(), &p3).to_rgb8();
        let [r, g, b] = out.get_pixel(0, 0).0;
        assert!(r > 200 && g == 0 && b == 0, "{r} {g} {b}");
        // A P3 grey is the same grey in sRGB (same white point).
        let grey =
            DynamicImage::ImageRgb16(ImageBuffer::from_pixel(1, 1, image::Rgb([30000u16; 3])));
        let out = to_srgb(grey, &p3).to_rgb16();
        for c in out.get_pixel(0, 0).0 {
            assert!((i32::from(c) - 30000).abs() < 200, "{c}");
        }
        // sRGB, BT.709 and unspecified are left alone.
        for p in [
            Profile::Srgb,
            Profile::Cicp {
                primaries: 1,
                transfer: 13,
            },
            Profile::Cicp {
                primaries: 2,
                transfer: 2,
            },
        ] {
            assert_eq!(to_srgb(red.clone(), &p), red);
        }
    }
}
