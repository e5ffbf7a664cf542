//! JPEG XL decoding with jxl-oxide (pure Rust): the declared size is read
//! from the codestream header and checked before any frame is decoded,
//! allocations are tracked against the limit, the orientation is applied,
//! and the colour space (enumerated or ICC, through moxcms) is converted to
//! sRGB; the first frame of an animation is taken. Runs in the decoder child
//! process ([`crate::isolate`]) like the C decoders, for the time bound.

use image::{DynamicImage, ImageBuffer, RgbImage};
use jxl_oxide::{
    AllocTracker, EnumColourEncoding, InitializeResult, JxlImage, JxlThreadPool, RenderingIntent,
};

use crate::isolate::{check_declared, Refusal};
use crate::load::{flatten_rgb8, ImageLimits};

fn decode_error(what: &str, e: impl std::fmt::Display) -> Refusal {
    let msg = e.to_string();
    if msg.to_ascii_lowercase().contains("allocation") || msg.contains("limit") {
        Refusal::TooLarge(format!("{what}: {msg}"))
    } else if msg.contains("unexpected end of file") {
        Refusal::Decode(format!("truncated: {what}: {msg}"))
    } else {
        Refusal::Decode(format!("{what}: {msg}"))
    }
}

/// The start of the codestream: the file itself, or the payload of the
/// first `jxlc` or `jxlp` box of a container.
fn codestream(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.starts_with(&[0xFF, 0x0A]) {
        return Some(bytes);
    }
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().ok()?) as u64;
        let kind = &bytes[at + 4..at + 8];
        let (head, size) = match size {
            1 => (
                16,
                u64::from_be_bytes(bytes.get(at + 8..at + 16)?.try_into().ok()?),
            ),
            0 => (8, (bytes.len() - at) as u64),
            n => (8, n),
        };
        match kind {
            b"jxlc" => return bytes.get(at + head..),
            b"jxlp" => return bytes.get(at + head + 4..),
            _ => {}
        }
        if size < head as u64 {
            return None;
        }
        at = at.checked_add(usize::try_from(size).ok()?)?;
    }
    None
}

/// The width and height a codestream's `SizeHeader` declares (before
/// orientation), read without the decoder: a bomb is refused by these
/// numbers before jxl-oxide parses anything further.
fn declared_size(codestream: &[u8]) -> Option<(u64, u64)> {
    let mut bit = 16usize; // after the FF 0A signature
    let mut u = |n: usize| -> Option<u64> {
        let mut v = 0u64;
        for i in 0..n {
            let b = codestream.get((bit + i) / 8)? >> ((bit + i) % 8) & 1;
            v |= u64::from(b) << i;
        }
        bit += n;
        Some(v)
    };
    let small = u(1)? == 1;
    let dim = |u: &mut dyn FnMut(usize) -> Option<u64>| -> Option<u64> {
        if small {
            return Some((u(5)? + 1) * 8);
        }
        let bits = [9, 13, 18, 30][u(2)? as usize];
        Some(u(bits)? + 1)
    };
    let h = dim(&mut u)?;
    let ratio = u(3)?;
    let w = match ratio {
        0 => dim(&mut u)?,
        r => {
            let (n, d) =
                [(1, 1), (12, 10), (4, 3), (3, 2), (16, 9), (5, 4), (2, 1)][r as usize - 1];
            h * n / d
        }
    };
    Some((w, h))
}

/// Decodes a JPEG XL image (codestream or container) into 8-bit sRGB.
pub(crate) fn decode(bytes: &[u8], limits: &ImageLimits) -> Result<RgbImage, Refusal> {
    // Its declared size first, by the header's numbers alone.
    let (w, h) = codestream(bytes)
        .and_then(declared_size)
        .ok_or_else(|| Refusal::Decode("truncated or damaged: no image header".into()))?;
    check_declared(w, h, 3 * 4 + 3 * 2, limits)?;
    let tracker =
        AllocTracker::with_limit(usize::try_from(limits.max_decoded_bytes).unwrap_or(usize::MAX));
    let mut uninit = JxlImage::builder()
        .pool(JxlThreadPool::none())
        .alloc_tracker(tracker)
        .build_uninit();
    uninit
        .feed_bytes(bytes)
        .map_err(|e| decode_error("reading the container", e))?;
    let mut image = match uninit
        .try_init()
        .map_err(|e| decode_error("reading the header", e))?
    {
        InitializeResult::Initialized(image) => image,
        InitializeResult::NeedMoreData(_) => {
            return Err(Refusal::Decode(
                "truncated: the data ends inside the header".into(),
            ))
        }
    };
    let header = image.image_header();
    let grey = header.metadata.grayscale();
    let alpha = header.metadata.ec_info.iter().any(|e| e.is_alpha());
    let extra = header.metadata.ec_info.len() as u64;
    // The renderer keeps every channel as f32, plus our 16-bit copy.
    let channels = if grey { 1 } else { 3 } + extra;
    check_declared(
        u64::from(image.width()),
        u64::from(image.height()),
        channels * 4 + (channels + 1) * 2,
        limits,
    )?;
    image
        .finalize()
        .map_err(|e| decode_error("reading the frames", e))?;
    if image.num_loaded_keyframes() == 0 {
        return Err(Refusal::Decode(
            "truncated: the data ends before the first frame is complete".into(),
        ));
    }
    image.request_color_encoding(if grey {
        EnumColourEncoding::gray_srgb(RenderingIntent::Relative)
    } else {
        EnumColourEncoding::srgb(RenderingIntent::Relative)
    });
    let render = image
        .render_frame(0)
        .map_err(|e| decode_error("decoding", e))?;
    let mut stream = render.stream();
    let (w, h, c) = (stream.width(), stream.height(), stream.channels());
    let mut buf = vec![0u16; w as usize * h as usize * c as usize];
    stream.write_to_buffer(&mut buf);
    let short = || Refusal::Decode("the decoder gave fewer pixels than it declared".into());
    let img = match (c, alpha) {
        (1, _) => DynamicImage::ImageLuma16(ImageBuffer::from_raw(w, h, buf).ok_or_else(short)?),
        (2, true) => {
            DynamicImage::ImageLumaA16(ImageBuffer::from_raw(w, h, buf).ok_or_else(short)?)
        }
        (3, _) => DynamicImage::ImageRgb16(ImageBuffer::from_raw(w, h, buf).ok_or_else(short)?),
        (4, true) => DynamicImage::ImageRgba16(ImageBuffer::from_raw(w, h, buf).ok_or_else(short)?),
        _ => {
            return Err(Refusal::Unsupported(format!(
                "{c} channels{} (CMYK or spot colours)",
                if alpha { " with alpha" } else { "" }
            )))
        }
    };
    Ok(flatten_rgb8(img))
}
