//! Scaled JPEG decoding through libjpeg-turbo's TurboJPEG API (Debian:
//! `libturbojpeg0-dev`): the inverse DCT runs at 1/8 … 8/8 of the size, so
//! a 12-megapixel photo destined for a 256-pixel model input is decoded at
//! a fraction of the cost, as Pillow's `draft` mode does with the same
//! library; and JPEG encoding of small images (thumbnails). Only the
//! TurboJPEG 2.x calls are used (Debian 12 ships 2.1.5).

use std::ffi::{c_int, c_ulong, c_void};

#[repr(C)]
struct ScalingFactor {
    num: c_int,
    denom: c_int,
}

#[link(name = "turbojpeg")]
extern "C" {
    fn tjInitDecompress() -> *mut c_void;
    fn tjInitCompress() -> *mut c_void;
    fn tjBufSize(width: c_int, height: c_int, jpeg_subsamp: c_int) -> c_ulong;
    #[allow(clippy::too_many_arguments)]
    fn tjCompress2(
        handle: *mut c_void,
        src_buf: *const u8,
        width: c_int,
        pitch: c_int,
        height: c_int,
        pixel_format: c_int,
        jpeg_buf: *mut *mut u8,
        jpeg_size: *mut c_ulong,
        jpeg_subsamp: c_int,
        jpeg_qual: c_int,
        flags: c_int,
    ) -> c_int;
    fn tjDestroy(handle: *mut c_void) -> c_int;
    fn tjDecompressHeader3(
        handle: *mut c_void,
        jpeg_buf: *const u8,
        jpeg_size: c_ulong,
        width: *mut c_int,
        height: *mut c_int,
        jpeg_subsamp: *mut c_int,
        jpeg_colorspace: *mut c_int,
    ) -> c_int;
    fn tjGetScalingFactors(num: *mut c_int) -> *mut ScalingFactor;
    fn tjDecompress2(
        handle: *mut c_void,
        jpeg_buf: *const u8,
        jpeg_size: c_ulong,
        dst_buf: *mut u8,
        width: c_int,
        pitch: c_int,
        height: c_int,
        pixel_format: c_int,
        flags: c_int,
    ) -> c_int;
}

const TJPF_RGB: c_int = 0;
const TJSAMP_420: c_int = 2;
const TJFLAG_NOREALLOC: c_int = 1024;
const TJCS_CMYK: c_int = 3;
const TJCS_YCCK: c_int = 4;

/// A decompressor handle, destroyed on drop.
struct Handle(*mut c_void);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tjInitDecompress and is destroyed once.
        unsafe {
            tjDestroy(self.0);
        }
    }
}

/// Header of a JPEG: `(width, height)`, or `None` for CMYK/YCCK files (left
/// to the general decoder) and anything TurboJPEG cannot parse.
fn header(h: &Handle, bytes: &[u8]) -> Option<(u32, u32)> {
    let (mut w, mut ht, mut sub, mut cs) = (0, 0, 0, 0);
    // SAFETY: bytes is a valid buffer of the given length; the outputs are
    // valid pointers to locals.
    let rc = unsafe {
        tjDecompressHeader3(
            h.0,
            bytes.as_ptr(),
            bytes.len() as c_ulong,
            &mut w,
            &mut ht,
            &mut sub,
            &mut cs,
        )
    };
    if rc != 0 || w <= 0 || ht <= 0 || cs == TJCS_CMYK || cs == TJCS_YCCK {
        return None;
    }
    Some((w as u32, ht as u32))
}

/// The supported scale factors `num/denom` that reduce (≤ 1).
fn reducing_factors() -> Vec<(u32, u32)> {
    let mut n: c_int = 0;
    // SAFETY: returns a pointer to a static table of n entries (or null).
    let p = unsafe { tjGetScalingFactors(&mut n) };
    if p.is_null() || n <= 0 {
        return vec![(1, 1)];
    }
    // SAFETY: p points to n initialised ScalingFactor values owned by the library.
    let table = unsafe { std::slice::from_raw_parts(p, n as usize) };
    table
        .iter()
        .filter(|f| f.num > 0 && f.denom > 0 && f.num <= f.denom)
        .map(|f| (f.num as u32, f.denom as u32))
        .collect()
}

fn scaled(d: u32, (num, denom): (u32, u32)) -> u32 {
    (u64::from(d) * u64::from(num)).div_ceil(u64::from(denom)) as u32
}

/// Decodes `bytes` to RGB8 at the smallest supported scale whose shorter
/// side is still at least `min_shorter`; `max_pixels` bounds the output.
/// Returns `None` when the general decoder should handle the file instead
/// (not a baseline/progressive YCbCr or grey JPEG, damaged data, over the
/// limit), so that errors are reported in one place.
pub(crate) fn decode_scaled(
    bytes: &[u8],
    min_shorter: u32,
    max_dims: (u32, u32),
    max_pixels: u64,
) -> Option<(u32, u32, Vec<u8>)> {
    // SAFETY: plain constructor; null on failure.
    let h = Handle(unsafe { tjInitDecompress() });
    if h.0.is_null() {
        return None;
    }
    let (w, ht) = header(&h, bytes)?;
    if w > max_dims.0 || ht > max_dims.1 {
        return None;
    }
    let short = w.min(ht);
    let mut best = (1, 1);
    for f in reducing_factors() {
        let fits = scaled(short, f) >= min_shorter;
        let smaller = f.0 * best.1 < best.0 * f.1;
        if fits && smaller {
            best = f;
        }
    }
    let (sw, sh) = (scaled(w, best), scaled(ht, best));
    if u64::from(sw) * u64::from(sh) * 3 > max_pixels {
        return None;
    }
    let mut out = vec![0u8; sw as usize * sh as usize * 3];
    // SAFETY: out holds sw·sh·3 bytes, the size TurboJPEG writes for these
    // dimensions in TJPF_RGB with pitch sw·3.
    let rc = unsafe {
        tjDecompress2(
            h.0,
            bytes.as_ptr(),
            bytes.len() as c_ulong,
            out.as_mut_ptr(),
            sw as c_int,
            (sw * 3) as c_int,
            sh as c_int,
            TJPF_RGB,
            0,
        )
    };
    if rc != 0 {
        // Warnings (e.g. truncated data) also land here: the general
        // decoder then reports the problem properly.
        return None;
    }
    Some((sw, sh, out))
}

/// Encodes interleaved RGB8 `rgb` (`width × height`) as a baseline JPEG
/// (4:2:0, `quality` 1–100) with libjpeg-turbo's SIMD encoder; `None` if
/// the sizes do not match or the library fails.
pub fn encode_rgb(rgb: &[u8], width: u32, height: u32, quality: u8) -> Option<Vec<u8>> {
    let (w, h) = (c_int::try_from(width).ok()?, c_int::try_from(height).ok()?);
    if w == 0 || h == 0 || rgb.len() != width as usize * height as usize * 3 {
        return None;
    }
    // SAFETY: plain constructor; null on failure.
    let handle = Handle(unsafe { tjInitCompress() });
    if handle.0.is_null() {
        return None;
    }
    // SAFETY: pure function of its arguments.
    let cap = unsafe { tjBufSize(w, h, TJSAMP_420) };
    if cap == c_ulong::MAX {
        return None;
    }
    let mut out = vec![0u8; cap as usize];
    let mut ptr = out.as_mut_ptr();
    let mut size = cap;
    // SAFETY: rgb holds w·h·3 bytes (checked); out holds tjBufSize bytes,
    // the worst case, and NOREALLOC keeps the library from replacing it.
    let rc = unsafe {
        tjCompress2(
            handle.0,
            rgb.as_ptr(),
            w,
            w * 3,
            h,
            TJPF_RGB,
            &mut ptr,
            &mut size,
            TJSAMP_420,
            c_int::from(quality.clamp(1, 100)),
            TJFLAG_NOREALLOC,
        )
    };
    if rc != 0 || ptr != out.as_mut_ptr() || size > cap {
        return None;
    }
    out.truncate(size as usize);
    Some(out)
}

#[cfg(test)]
mod tests {
    /// A gradient survives the round trip through the encoder and the
    /// decoder (same size, small error), and bad sizes are refused.
    #[test]
    fn encodes_what_decodes() {
        let (w, h) = (37u32, 20u32);
        let rgb: Vec<u8> = (0..w * h * 3)
            .map(|i| ((i * 7) % 251) as u8 / 2 + 60)
            .collect();
        let jpeg = super::encode_rgb(&rgb, w, h, 90).unwrap();
        let back = image::load_from_memory(&jpeg).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (w, h));
        let err: f64 = back
            .as_raw()
            .iter()
            .zip(&rgb)
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
            .sum::<f64>()
            / rgb.len() as f64;
        assert!(err < 40.0, "mean error {err}");
        assert!(super::encode_rgb(&rgb, w + 1, h, 90).is_none());
        assert!(super::encode_rgb(&[], 0, 0, 90).is_none());
    }
}
