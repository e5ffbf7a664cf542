//! Decoding image files into 8-bit RGB, safely.

use std::io::{Cursor, Read};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

use crate::error::{EmbedError, Result};
use crate::format::{detect, Detected, Format};

/// Limits applied before and during decoding; also the configuration
/// file's `[limits]` section as it is (missing keys take the defaults,
/// unknown keys are refused). Check a deserialised one with
/// [`ImageLimits::validate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageLimits {
    /// Largest accepted width, pixels.
    pub max_width: u32,
    /// Largest accepted height, pixels.
    pub max_height: u32,
    /// Largest decoder allocation, bytes (the decoded image, and its RGB8
    /// conversion, must fit).
    pub max_decoded_bytes: u64,
    /// Largest file read, bytes.
    pub max_file_bytes: u64,
    /// Longest a decoder run apart in a child process (HEIF, AVIF, JPEG XL,
    /// DNG: see [`crate::isolate`]) may take on one file, seconds; it is
    /// stopped after that and the file fails.
    pub max_decode_seconds: u32,
}

impl Default for ImageLimits {
    /// 16,384 px a side, 1 GiB of decoded pixels, 256 MiB files, 30 s a
    /// decode: every real photo passes (a 100-MP RGB image is 300 MB, a
    /// 100-MP raw develops in a few seconds); a 50,000 × 50,000 bomb does not.
    fn default() -> Self {
        ImageLimits {
            max_width: 16_384,
            max_height: 16_384,
            max_decoded_bytes: 1 << 30,
            max_file_bytes: 256 << 20,
            max_decode_seconds: 30,
        }
    }
}

/// The fewest bytes `max_file_bytes` may allow: enough to read the header
/// that content sniffing and the declared size come from.
pub const MIN_FILE_BYTES: u64 = 64;

impl ImageLimits {
    /// Checks that every limit lets something through: each at least 1,
    /// and `max_file_bytes` at least [`MIN_FILE_BYTES`] so that a file's
    /// header can be read. The message names the configuration key.
    pub fn validate(&self) -> Result<()> {
        let at_least = |key: &str, value: u64, min: u64| {
            if value >= min {
                Ok(())
            } else {
                Err(EmbedError::Input(format!(
                    "limits.{key} must be at least {min}, not {value}"
                )))
            }
        };
        at_least("max_width", u64::from(self.max_width), 1)?;
        at_least("max_height", u64::from(self.max_height), 1)?;
        at_least("max_decoded_bytes", self.max_decoded_bytes, 1)?;
        at_least("max_decode_seconds", u64::from(self.max_decode_seconds), 1)?;
        at_least("max_file_bytes", self.max_file_bytes, MIN_FILE_BYTES)
    }
}

/// Formats decoded, recognised by content sniffing ([`crate::format::detect`]).
pub const SUPPORTED_FORMATS: [Format; 10] = Format::ALL;

/// Reads and decodes the image file at `path` (see [`decode_rgb`]).
pub fn load_rgb(path: &Path, limits: &ImageLimits) -> Result<RgbImage> {
    let bytes = read_limited(path, limits)?;
    decode_rgb(&bytes, path, limits)
}

/// Reads and decodes the image at `path` for a model whose preprocessing
/// resizes the shorter side to `min_shorter` (see [`decode_rgb_reduced`]).
pub fn load_rgb_reduced(path: &Path, limits: &ImageLimits, min_shorter: u32) -> Result<RgbImage> {
    let bytes = read_limited(path, limits)?;
    decode_rgb_reduced(&bytes, path, limits, min_shorter)
}

/// Reads a whole file, refusing one larger than the limit.
pub fn read_limited(path: &Path, limits: &ImageLimits) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|source| EmbedError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut bytes = Vec::new();
    file.take(limits.max_file_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| EmbedError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(EmbedError::TooLarge {
            path: path.to_path_buf(),
            reason: format!("file larger than {} bytes", limits.max_file_bytes),
        });
    }
    Ok(bytes)
}

/// Like [`decode_rgb`], but a large JPEG is decoded at a reduced scale
/// (1/8 to 7/8, by libjpeg-turbo's scaled inverse DCT: what Pillow's
/// `draft` mode does with the same library) as long as its shorter side
/// stays at least `min_shorter`; the
/// preprocessing then resizes the rest of the way with antialiasing. This is
/// several times faster on photos and visually equivalent, but not
/// bit-identical to decoding at full size: [`decode_rgb`] is the exact path.
/// Other formats, CMYK JPEGs, and anything the scaled decoder rejects go
/// through [`decode_rgb`].
pub fn decode_rgb_reduced(
    bytes: &[u8],
    name: &Path,
    limits: &ImageLimits,
    min_shorter: u32,
) -> Result<RgbImage> {
    if detect(bytes) != Detected::Image(Format::Jpeg) || min_shorter == 0 {
        return decode_rgb(bytes, name, limits);
    }
    if !jpeg_is_complete(bytes) {
        // The general path gives the error.
        return decode_rgb(bytes, name, limits);
    }
    match scaled_jpeg(bytes, limits, min_shorter) {
        Some(img) => Ok(img),
        None => decode_rgb(bytes, name, limits),
    }
}

/// The scaled JPEG decode (libjpeg-turbo); `None` means "use the general
/// path" (which also produces the right error for damaged data).
fn scaled_jpeg(bytes: &[u8], limits: &ImageLimits, min_shorter: u32) -> Option<RgbImage> {
    let (w, h, px) = crate::turbo::decode_scaled(
        bytes,
        min_shorter,
        (limits.max_width, limits.max_height),
        limits.max_decoded_bytes,
    )?;
    let rgb = RgbImage::from_raw(w, h, px)?;
    // EXIF orientation, from the header alone.
    let orientation = image::codecs::jpeg::JpegDecoder::new(Cursor::new(bytes))
        .ok()
        .and_then(|mut d| d.orientation().ok())
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    if orientation == image::metadata::Orientation::NoTransforms {
        return Some(rgb);
    }
    let mut img = DynamicImage::ImageRgb8(rgb);
    img.apply_orientation(orientation);
    Some(flatten_rgb8(img))
}

/// Whether JPEG data is complete: an end-of-image marker (FF D9) follows the
/// last start-of-scan marker (FF DA). Decoders fill a truncated image with
/// grey rather than fail; this catches it. (Inside entropy-coded data every
/// FF byte is stuffed as FF 00, so neither marker occurs by accident; an
/// embedded EXIF thumbnail's own markers come before the main image's scan.)
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(i) => bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

/// Decodes `bytes` (named `name` in errors) into RGB8: the format is sniffed
/// from the content, the declared dimensions are checked against `limits`
/// before any pixel is decoded, the orientation (EXIF, or HEIF's
/// `irot`/`imir`) is applied, and every colour type (grey, alpha, 16-bit,
/// 10- and 12-bit, palette, CMYK JPEG) becomes 8-bit RGB, transparency
/// composited onto [`ALPHA_BACKGROUND`] (see [`flatten_rgb8`]). Animated
/// GIFs and JPEG XLs give their first frame, HEIF files their primary image.
///
/// HEIF, AVIF, JPEG XL and DNG are decoded in a child process under a time
/// and memory bound ([`crate::isolate`]), their colour profiles converted to
/// sRGB; a decoder that crashes or hangs fails this file with
/// [`EmbedError::DecoderFailed`], nothing else.
pub fn decode_rgb(bytes: &[u8], name: &Path, limits: &ImageLimits) -> Result<RgbImage> {
    let path = name.to_path_buf();
    if bytes.is_empty() {
        return Err(EmbedError::Empty { path });
    }
    let kind = match detect(bytes) {
        Detected::Image(k) => k,
        Detected::Unsupported(what) => {
            return Err(EmbedError::Unsupported {
                path,
                reason: format!("{what} is not decoded here"),
            })
        }
        Detected::Unknown => {
            return Err(EmbedError::Unsupported {
                path,
                reason: "unrecognised content (magic bytes)".into(),
            })
        }
    };
    if let Some(decoder) = apart_decoder(kind) {
        return crate::isolate::decode_apart(kind, bytes, name, limits, decoder);
    }
    let Some(format) = kind.image_format() else {
        return Err(EmbedError::Unsupported {
            path,
            reason: format!("{kind} has no decoder"),
        });
    };
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(EmbedError::Decode {
            path,
            reason: "truncated JPEG: the data ends inside the image (no end-of-image marker after the last scan)".into(),
        });
    }
    // The declared size first, from the header alone, so that a bomb is
    // refused by its numbers before any decoder allocates for it.
    let (w, h) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| classify(&path, e, None))?;
    if w == 0 || h == 0 {
        return Err(EmbedError::Decode {
            path,
            reason: format!("image has no pixels ({w} × {h})"),
        });
    }
    if w > limits.max_width || h > limits.max_height {
        return Err(EmbedError::TooLarge {
            path,
            reason: format!(
                "{w} × {h} exceeds the {} × {} limit",
                limits.max_width, limits.max_height
            ),
        });
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut lim = image::Limits::default();
    lim.max_image_width = Some(limits.max_width);
    lim.max_image_height = Some(limits.max_height);
    lim.max_alloc = Some(limits.max_decoded_bytes);
    reader.limits(lim);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| classify(&path, e, Some((w, h))))?;
    // Decoded pixels plus their RGB8 conversion must fit the allocation limit.
    let need = decoder
        .total_bytes()
        .saturating_add(u64::from(w) * u64::from(h) * 3);
    if need > limits.max_decoded_bytes {
        return Err(EmbedError::TooLarge {
            path,
            reason: format!(
                "{w} × {h} needs {need} bytes to decode, over the {} byte limit",
                limits.max_decoded_bytes
            ),
        });
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img =
        DynamicImage::from_decoder(decoder).map_err(|e| classify(&path, e, Some((w, h))))?;
    img.apply_orientation(orientation);
    Ok(flatten_rgb8(img))
}

/// A decoder run apart ([`crate::isolate`]).
type Decoder = fn(&[u8], &ImageLimits) -> std::result::Result<RgbImage, crate::isolate::Refusal>;

/// The decoder run apart for `kind`, if it is one of those formats.
fn apart_decoder(kind: Format) -> Option<Decoder> {
    match kind {
        Format::Heif | Format::Avif => Some(crate::heif::decode),
        Format::JpegXl => Some(crate::jxl::decode),
        Format::Dng => Some(crate::raw::decode),
        Format::Jpeg | Format::Png | Format::WebP | Format::Gif | Format::Bmp | Format::Tiff => {
            None
        }
    }
}

/// Like [`decode_rgb`], but HEIF, AVIF, JPEG XL and DNG are decoded in this
/// process, without the child process and its bounds: for the fuzz targets,
/// where a decoder's crash must reach the fuzzer (and its sanitizer)
/// rather than be contained. Not for untrusted input otherwise.
#[doc(hidden)]
pub fn decode_rgb_in_process(bytes: &[u8], name: &Path, limits: &ImageLimits) -> Result<RgbImage> {
    match detect(bytes) {
        Detected::Image(kind) => match apart_decoder(kind) {
            Some(decoder) => decoder(bytes, limits).map_err(|r| r.into_error(name)),
            None => decode_rgb(bytes, name, limits),
        },
        _ => decode_rgb(bytes, name, limits),
    }
}

/// The colour transparent pixels are composited onto before an image
/// becomes RGB: mid grey. Grey keeps grey+alpha images grey; it is close
/// to the normalisation means of every backbone (ImageNet's
/// `[0.485, 0.456, 0.406]` and CLIP's are 104 to 124 in 8 bits), so
/// transparent areas enter a model within half a standard deviation of
/// zero, the most neutral input; and dark and light content both stay
/// visible on it (white would hide a white logo, black a black one).
pub const ALPHA_BACKGROUND: [u8; 3] = [128, 128, 128];

/// 8-bit RGB of `img`: an image with an alpha channel is composited onto
/// [`ALPHA_BACKGROUND`] (straight alpha: `a·c + (1 − a)·bg`, rounded to
/// the nearest value), so that images differing only in their
/// transparency stay different; other colour types are converted as they are.
pub fn flatten_rgb8(img: DynamicImage) -> RgbImage {
    use image::Rgb;
    let bg = ALPHA_BACKGROUND;
    // Each pixel straight from the decoded buffer: no intermediate copy,
    // so the allocation limit's accounting (decoded + RGB8) still holds.
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageRgba8(im) => RgbImage::from_fn(im.width(), im.height(), |x, y| {
            let [r, g, b, a] = im.get_pixel(x, y).0;
            Rgb([over8(r, a, bg[0]), over8(g, a, bg[1]), over8(b, a, bg[2])])
        }),
        DynamicImage::ImageLumaA8(im) => RgbImage::from_fn(im.width(), im.height(), |x, y| {
            let [l, a] = im.get_pixel(x, y).0;
            Rgb([over8(l, a, bg[0]), over8(l, a, bg[1]), over8(l, a, bg[2])])
        }),
        DynamicImage::ImageRgba16(im) => RgbImage::from_fn(im.width(), im.height(), |x, y| {
            let [r, g, b, a] = im.get_pixel(x, y).0;
            Rgb([
                over16(r, a, bg[0]),
                over16(g, a, bg[1]),
                over16(b, a, bg[2]),
            ])
        }),
        DynamicImage::ImageLumaA16(im) => RgbImage::from_fn(im.width(), im.height(), |x, y| {
            let [l, a] = im.get_pixel(x, y).0;
            Rgb([
                over16(l, a, bg[0]),
                over16(l, a, bg[1]),
                over16(l, a, bg[2]),
            ])
        }),
        DynamicImage::ImageRgba32F(im) => RgbImage::from_fn(im.width(), im.height(), |x, y| {
            let [r, g, b, a] = im.get_pixel(x, y).0;
            Rgb([overf(r, a, bg[0]), overf(g, a, bg[1]), overf(b, a, bg[2])])
        }),
        // A colour type with alpha that a later `image` may add: through 16 bits.
        other if other.color().has_alpha() => {
            flatten_rgb8(DynamicImage::ImageRgba16(other.to_rgba16()))
        }
        other => other.to_rgb8(),
    }
}

/// `c` over `bg` with 8-bit straight alpha `a`, rounded to nearest:
/// `(a·c + (255 − a)·bg) / 255`. (255 is odd, so no value lies halfway.)
fn over8(c: u8, a: u8, bg: u8) -> u8 {
    let (c, a, bg) = (u32::from(c), u32::from(a), u32::from(bg));
    ((a * c + (255 - a) * bg + 127) / 255) as u8
}

/// `c` over `bg` with 16-bit straight alpha `a`, rounded to nearest in 8
/// bits: `(a·c + (65535 − a)·257·bg) / (65535·257)`. Opaque pixels give
/// `round(c / 257)`, what the plain 16-to-8-bit conversion gives.
fn over16(c: u16, a: u16, bg: u8) -> u8 {
    const DIV: u64 = 65_535 * 257;
    let (c, a, bg) = (u64::from(c), u64::from(a), u64::from(bg) * 257);
    ((a * c + (65_535 - a) * bg + DIV / 2) / DIV) as u8
}

/// `c` over `bg` with float straight alpha `a` (both clamped to `[0, 1]`),
/// rounded to nearest in 8 bits; opaque pixels give what the plain float
/// conversion gives, `round(255·c)`.
fn overf(c: f32, a: f32, bg: u8) -> u8 {
    let (c, a) = (c.clamp(0.0, 1.0), a.clamp(0.0, 1.0));
    let v = a * c + (1.0 - a) * (f32::from(bg) / 255.0);
    (v * 255.0).round().clamp(0.0, 255.0) as u8
}

fn classify(path: &Path, e: image::ImageError, dims: Option<(u32, u32)>) -> EmbedError {
    let path = path.to_path_buf();
    match e {
        image::ImageError::Limits(l) => EmbedError::TooLarge {
            path,
            reason: match dims {
                Some((w, h)) => {
                    format!("{w} × {h}: {l} (decoded pixels over the allocation limit)")
                }
                None => l.to_string(),
            },
        },
        image::ImageError::Unsupported(u) => EmbedError::Unsupported {
            path,
            reason: u.to_string(),
        },
        image::ImageError::IoError(io) => EmbedError::Decode {
            path,
            reason: format!("truncated or unreadable data ({io})"),
        },
        other => EmbedError::Decode {
            path,
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_the_config_section_with_defaults() {
        let l: ImageLimits = serde_json::from_str(r#"{"max_width": 100}"#).unwrap();
        assert_eq!(
            l,
            ImageLimits {
                max_width: 100,
                ..ImageLimits::default()
            }
        );
        let all: ImageLimits = serde_json::from_str(
            r#"{"max_width": 1, "max_height": 2, "max_decoded_bytes": 3, "max_file_bytes": 64, "max_decode_seconds": 5}"#,
        )
        .unwrap();
        assert_eq!(
            (
                all.max_width,
                all.max_height,
                all.max_decoded_bytes,
                all.max_file_bytes,
                all.max_decode_seconds
            ),
            (1, 2, 3, 64, 5)
        );
        let json = serde_json::to_value(ImageLimits::default()).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "max_decode_seconds",
                "max_decoded_bytes",
                "max_file_bytes",
                "max_height",
                "max_width"
            ]
        );
        // The old name, or a typo, is refused rather than ignored.
        let err = serde_json::from_str::<ImageLimits>(r#"{"max_alloc_bytes": 5}"#).unwrap_err();
        assert!(err.to_string().contains("max_alloc_bytes"), "{err}");
    }

    #[test]
    fn limits_that_let_nothing_through_are_refused_by_key() {
        assert!(ImageLimits::default().validate().is_ok());
        let ok = ImageLimits {
            max_width: 1,
            max_height: 1,
            max_decoded_bytes: 1,
            max_file_bytes: MIN_FILE_BYTES,
            max_decode_seconds: 1,
        };
        assert!(ok.validate().is_ok());
        let cases = [
            (
                ImageLimits { max_width: 0, ..ok },
                "limits.max_width must be at least 1, not 0",
            ),
            (
                ImageLimits {
                    max_height: 0,
                    ..ok
                },
                "limits.max_height must be at least 1, not 0",
            ),
            (
                ImageLimits {
                    max_decoded_bytes: 0,
                    ..ok
                },
                "limits.max_decoded_bytes must be at least 1, not 0",
            ),
            (
                ImageLimits {
                    max_decode_seconds: 0,
                    ..ok
                },
                "limits.max_decode_seconds must be at least 1, not 0",
            ),
            (
                ImageLimits {
                    max_file_bytes: 10,
                    ..ok
                },
                "limits.max_file_bytes must be at least 64, not 10",
            ),
        ];
        for (limits, message) in cases {
            let err = limits.validate().unwrap_err();
            assert!(matches!(err, EmbedError::Input(_)), "{err}");
            assert_eq!(err.kind(), imgsim_common::ErrorKind::Invalid);
            assert!(err.to_string().ends_with(message), "{err}");
        }
    }
}
