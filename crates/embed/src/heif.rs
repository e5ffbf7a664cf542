//! HEIC/HEIF and AVIF decoding through libheif (Debian: `libheif-dev`
//! 1.15, which decodes HEVC with libde265 and AV1 with dav1d): the primary
//! image, its `irot`/`imir`/`clap` transformations applied, 8 to 12 bits,
//! alpha, and its colour profile (ICC or nclx) converted to sRGB. Only the
//! libheif 1.15 C API is used. Runs in the decoder child process
//! ([`crate::isolate`]).

use std::ffi::{c_char, c_int, c_void, CStr};

use image::{DynamicImage, ImageBuffer, RgbImage};

use crate::colour;
use crate::isolate::{check_declared, Refusal};
use crate::load::{flatten_rgb8, ImageLimits};

#[repr(C)]
struct HeifError {
    code: c_int,
    subcode: c_int,
    message: *const c_char,
}

#[repr(C)]
struct Nclx {
    version: u8,
    color_primaries: c_int,
    transfer_characteristics: c_int,
    matrix_coefficients: c_int,
    full_range_flag: u8,
    // Decoded chromaticities follow; not read here.
}

enum Context {}
enum Handle {}
enum Image {}

#[link(name = "heif")]
extern "C" {
    fn heif_init(params: *mut c_void) -> HeifError;
    fn heif_context_alloc() -> *mut Context;
    fn heif_context_free(ctx: *mut Context);
    fn heif_context_set_maximum_image_size_limit(ctx: *mut Context, maximum_width: c_int);
    fn heif_context_set_max_decoding_threads(ctx: *mut Context, max_threads: c_int);
    fn heif_context_read_from_memory_without_copy(
        ctx: *mut Context,
        mem: *const c_void,
        size: usize,
        options: *const c_void,
    ) -> HeifError;
    fn heif_context_get_primary_image_handle(
        ctx: *mut Context,
        handle: *mut *mut Handle,
    ) -> HeifError;
    fn heif_image_handle_release(handle: *const Handle);
    fn heif_image_handle_get_width(handle: *const Handle) -> c_int;
    fn heif_image_handle_get_height(handle: *const Handle) -> c_int;
    fn heif_image_handle_has_alpha_channel(handle: *const Handle) -> c_int;
    fn heif_image_handle_get_luma_bits_per_pixel(handle: *const Handle) -> c_int;
    fn heif_image_handle_get_raw_color_profile_size(handle: *const Handle) -> usize;
    fn heif_image_handle_get_raw_color_profile(
        handle: *const Handle,
        out_data: *mut c_void,
    ) -> HeifError;
    fn heif_image_handle_get_nclx_color_profile(
        handle: *const Handle,
        out_data: *mut *mut Nclx,
    ) -> HeifError;
    fn heif_nclx_color_profile_free(nclx: *mut Nclx);
    fn heif_decode_image(
        handle: *const Handle,
        out_img: *mut *mut Image,
        colorspace: c_int,
        chroma: c_int,
        options: *const c_void,
    ) -> HeifError;
    fn heif_image_release(img: *const Image);
    fn heif_image_get_width(img: *const Image, channel: c_int) -> c_int;
    fn heif_image_get_height(img: *const Image, channel: c_int) -> c_int;
    fn heif_image_get_bits_per_pixel_range(img: *const Image, channel: c_int) -> c_int;
    fn heif_image_get_plane_readonly(
        img: *const Image,
        channel: c_int,
        out_stride: *mut c_int,
    ) -> *const u8;
}

const COLORSPACE_RGB: c_int = 1;
const CHROMA_RGB: c_int = 10;
const CHROMA_RGBA: c_int = 11;
const CHROMA_RRGGBB_LE: c_int = 14;
const CHROMA_RRGGBBAA_LE: c_int = 15;
const CHANNEL_INTERLEAVED: c_int = 10;

/// A libheif error as a refusal; `what` says which step failed.
fn check(e: HeifError, what: &str) -> Result<(), Refusal> {
    if e.code == 0 {
        return Ok(());
    }
    let msg = if e.message.is_null() {
        String::new()
    } else {
        // SAFETY: libheif's messages are static NUL-terminated strings.
        unsafe { CStr::from_ptr(e.message) }
            .to_string_lossy()
            .into_owned()
    };
    // heif_error_Unsupported_filetype 3, Unsupported_feature 4, Memory 6.
    let reason = format!("{what}: {msg} (libheif error {}.{})", e.code, e.subcode);
    Err(match e.code {
        3 | 4 => Refusal::Unsupported(reason),
        _ if e.subcode == 1000 || msg.contains("Security limit") => Refusal::TooLarge(reason),
        _ => Refusal::Decode(reason),
    })
}

struct Ctx(*mut Context);
impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: allocated by heif_context_alloc, freed once.
        unsafe { heif_context_free(self.0) }
    }
}
struct Hnd(*mut Handle);
impl Drop for Hnd {
    fn drop(&mut self) {
        // SAFETY: from heif_context_get_primary_image_handle, released once.
        unsafe { heif_image_handle_release(self.0) }
    }
}
struct Img(*mut Image);
impl Drop for Img {
    fn drop(&mut self) {
        // SAFETY: from heif_decode_image, released once.
        unsafe { heif_image_release(self.0) }
    }
}

/// Decodes the primary image of a HEIF or AVIF file into 8-bit sRGB.
pub(crate) fn decode(bytes: &[u8], limits: &ImageLimits) -> Result<RgbImage, Refusal> {
    // SAFETY (whole function): libheif calls on objects this function
    // owns (wrapped to be released once), with buffers valid for the
    // lengths given; `bytes` outlives the context that reads it.
    unsafe {
        check(heif_init(std::ptr::null_mut()), "initialising libheif")?;
        let ctx = Ctx(heif_context_alloc());
        if ctx.0.is_null() {
            return Err(Refusal::Decode("libheif: cannot allocate a context".into()));
        }
        let side = limits.max_width.max(limits.max_height);
        heif_context_set_maximum_image_size_limit(
            ctx.0,
            c_int::try_from(side).unwrap_or(c_int::MAX),
        );
        // One thread: the indexer already decodes one file per core.
        heif_context_set_max_decoding_threads(ctx.0, 1);
        check(
            heif_context_read_from_memory_without_copy(
                ctx.0,
                bytes.as_ptr().cast(),
                bytes.len(),
                std::ptr::null(),
            ),
            "reading the file",
        )?;
        let mut h = std::ptr::null_mut();
        check(
            heif_context_get_primary_image_handle(ctx.0, &mut h),
            "finding the primary image",
        )?;
        let handle = Hnd(h);
        let (w, hgt) = (
            heif_image_handle_get_width(handle.0),
            heif_image_handle_get_height(handle.0),
        );
        let alpha = heif_image_handle_has_alpha_channel(handle.0) != 0;
        let bits = heif_image_handle_get_luma_bits_per_pixel(handle.0);
        let high = bits > 8;
        let channels: u64 = if alpha { 4 } else { 3 };
        let sample: u64 = if high { 2 } else { 1 };
        // The coded planes (up to 4:4:4 plus alpha) and the interleaved RGB(A).
        check_declared(
            u64::try_from(w).unwrap_or(0),
            u64::try_from(hgt).unwrap_or(0),
            2 * channels * sample,
            limits,
        )?;
        let profile = colour_profile(handle.0);
        let chroma = match (alpha, high) {
            (false, false) => CHROMA_RGB,
            (true, false) => CHROMA_RGBA,
            (false, true) => CHROMA_RRGGBB_LE,
            (true, true) => CHROMA_RRGGBBAA_LE,
        };
        let mut im = std::ptr::null_mut();
        let decoded =
            heif_decode_image(handle.0, &mut im, COLORSPACE_RGB, chroma, std::ptr::null());
        // Owned even when decoding failed part-way, so that it is released.
        let img = (!im.is_null()).then_some(Img(im));
        check(decoded, "decoding")?;
        let img = img.ok_or_else(|| Refusal::Decode("libheif: decoding gave no image".into()))?;
        let iw = heif_image_get_width(img.0, CHANNEL_INTERLEAVED);
        let ih = heif_image_get_height(img.0, CHANNEL_INTERLEAVED);
        let range = heif_image_get_bits_per_pixel_range(img.0, CHANNEL_INTERLEAVED);
        let mut stride: c_int = 0;
        let plane = heif_image_get_plane_readonly(img.0, CHANNEL_INTERLEAVED, &mut stride);
        let (Ok(iw), Ok(ih), Ok(stride)) = (
            u32::try_from(iw),
            u32::try_from(ih),
            usize::try_from(stride),
        ) else {
            return Err(Refusal::Decode("libheif returned no image".into()));
        };
        if plane.is_null() || iw == 0 || ih == 0 {
            return Err(Refusal::Decode("libheif returned no image".into()));
        }
        check_declared(u64::from(iw), u64::from(ih), 2 * channels * sample, limits)?;
        let row = iw as usize * channels as usize * sample as usize;
        if stride < row {
            return Err(Refusal::Decode("libheif returned a short row".into()));
        }
        let data = std::slice::from_raw_parts(plane, stride * (ih as usize - 1) + row);
        let rows = data.chunks(stride).map(|r| &r[..row]);
        let decoded = if high {
            let max = (1u32 << range.clamp(9, 16)) - 1;
            let v: Vec<u16> = rows
                .flat_map(|r| r.chunks_exact(2))
                .map(|s| {
                    let v = u32::from(u16::from_le_bytes([s[0], s[1]])).min(max);
                    ((v * 65_535 + max / 2) / max) as u16
                })
                .collect();
            if alpha {
                DynamicImage::ImageRgba16(ImageBuffer::from_raw(iw, ih, v).ok_or_else(short)?)
            } else {
                DynamicImage::ImageRgb16(ImageBuffer::from_raw(iw, ih, v).ok_or_else(short)?)
            }
        } else {
            let v: Vec<u8> = rows.flatten().copied().collect();
            if alpha {
                DynamicImage::ImageRgba8(ImageBuffer::from_raw(iw, ih, v).ok_or_else(short)?)
            } else {
                DynamicImage::ImageRgb8(ImageBuffer::from_raw(iw, ih, v).ok_or_else(short)?)
            }
        };
        drop(img);
        Ok(flatten_rgb8(colour::to_srgb(decoded, &profile)))
    }
}

fn short() -> Refusal {
    Refusal::Decode("libheif returned fewer pixels than it declared".into())
}

/// The image's colour profile: its ICC profile if it has one, else its
/// nclx (CICP) values.
///
/// # Safety
/// `handle` must be a live image handle.
unsafe fn colour_profile(handle: *const Handle) -> colour::Profile {
    // SAFETY (whole block): reads from a live handle into buffers of the
    // sizes libheif gives.
    unsafe {
        let n = heif_image_handle_get_raw_color_profile_size(handle);
        if n > 0 && n < (16 << 20) {
            let mut icc = vec![0u8; n];
            let e = heif_image_handle_get_raw_color_profile(handle, icc.as_mut_ptr().cast());
            if e.code == 0 {
                return colour::Profile::Icc(icc);
            }
        }
        let mut nclx = std::ptr::null_mut();
        let e = heif_image_handle_get_nclx_color_profile(handle, &mut nclx);
        if e.code != 0 || nclx.is_null() {
            return colour::Profile::Srgb;
        }
        let p = &*nclx;
        let cicp = colour::Profile::Cicp {
            primaries: u8::try_from(p.color_primaries).unwrap_or(2),
            transfer: u8::try_from(p.transfer_characteristics).unwrap_or(2),
        };
        heif_nclx_color_profile_free(nclx);
        cicp
    }
}
