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
    } else {
        Refusal::Decode(format!("{what}: {msg}"))
    }
}

/// Decodes a JPEG XL image (codestream or container) into 8-bit sRGB.
pub(crate) fn decode(bytes: &[u8], limits: &ImageLimits) -> Result<RgbImage, Refusal> {
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
