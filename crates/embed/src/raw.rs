//! DNG decoding through LibRaw (Debian: `libraw-dev` 0.20): the raw data
//! developed as dcraw does (demosaicing, the file's colour matrices and
//! white balance) into 8-bit sRGB, with the sRGB tone curve, without
//! automatic brightening, the orientation applied. Only the LibRaw 0.20 C
//! API is used. Runs in the decoder child process ([`crate::isolate`]).

use std::ffi::{c_char, c_float, c_int, c_uint, c_ushort, c_void, CStr};

use image::{DynamicImage, RgbImage};

use crate::isolate::{check_declared, Refusal};
use crate::load::ImageLimits;

enum Data {}

#[repr(C)]
struct Processed {
    kind: c_int,
    height: c_ushort,
    width: c_ushort,
    colors: c_ushort,
    bits: c_ushort,
    data_size: c_uint,
    data: [u8; 1],
}

#[link(name = "raw")]
extern "C" {
    fn libraw_init(flags: c_uint) -> *mut Data;
    fn libraw_open_buffer(lr: *mut Data, buffer: *mut c_void, size: usize) -> c_int;
    fn libraw_unpack(lr: *mut Data) -> c_int;
    fn libraw_dcraw_process(lr: *mut Data) -> c_int;
    fn libraw_dcraw_make_mem_image(lr: *mut Data, errc: *mut c_int) -> *mut Processed;
    fn libraw_dcraw_clear_mem(img: *mut Processed);
    fn libraw_close(lr: *mut Data);
    fn libraw_strerror(code: c_int) -> *const c_char;
    fn libraw_get_raw_width(lr: *mut Data) -> c_int;
    fn libraw_get_raw_height(lr: *mut Data) -> c_int;
    fn libraw_get_iwidth(lr: *mut Data) -> c_int;
    fn libraw_get_iheight(lr: *mut Data) -> c_int;
    fn libraw_set_output_color(lr: *mut Data, value: c_int);
    fn libraw_set_output_bps(lr: *mut Data, value: c_int);
    fn libraw_set_gamma(lr: *mut Data, index: c_int, value: c_float);
    fn libraw_set_no_auto_bright(lr: *mut Data, value: c_int);
}

const IMAGE_BITMAP: c_int = 2;

/// A LibRaw return code as a refusal; `what` says which step failed.
fn check(code: c_int, what: &str) -> Result<(), Refusal> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: libraw_strerror returns a static string for any code.
    let msg = unsafe { CStr::from_ptr(libraw_strerror(code)) }.to_string_lossy();
    let reason = format!("{what}: {msg} (LibRaw error {code})");
    Err(match code {
        // Unsupported file, not implemented.
        -2 | -8 => Refusal::Unsupported(reason),
        // Insufficient memory, too big, memory pool overflow.
        -100_007 | -100_012 | -100_013 => Refusal::TooLarge(reason),
        // An I/O error on a buffer: the data ends before the image does.
        -100_009 => Refusal::Decode(format!("truncated: {reason}")),
        _ => Refusal::Decode(reason),
    })
}

struct Lr(*mut Data);
impl Drop for Lr {
    fn drop(&mut self) {
        // SAFETY: from libraw_init, closed once.
        unsafe { libraw_close(self.0) }
    }
}
struct Mem(*mut Processed);
impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: from libraw_dcraw_make_mem_image, freed once.
        unsafe { libraw_dcraw_clear_mem(self.0) }
    }
}

/// Develops a DNG into 8-bit sRGB.
pub(crate) fn decode(bytes: &[u8], limits: &ImageLimits) -> Result<RgbImage, Refusal> {
    // The declared size first, from the TIFF structure alone.
    let (dw, dh) = crate::format::tiff_declared_size(bytes)
        .ok_or_else(|| Refusal::Decode("truncated or damaged TIFF structure".into()))?;
    check_declared(dw, dh, 2 * 4 + 2 + 3, limits)?;
    // SAFETY (whole function): LibRaw calls on a handle this function owns
    // (closed once on drop); the buffer outlives the handle, and LibRaw
    // only reads it (it takes a non-const pointer, and this is the child's
    // copy of it anyway); the result is read within its declared size.
    unsafe {
        let lr = Lr(libraw_init(0));
        if lr.0.is_null() {
            return Err(Refusal::Decode("LibRaw: cannot allocate".into()));
        }
        check(
            libraw_open_buffer(lr.0, bytes.as_ptr().cast_mut().cast(), bytes.len()),
            "reading the file",
        )?;
        let dims =
            |w: c_int, h: c_int| (u64::try_from(w).unwrap_or(0), u64::try_from(h).unwrap_or(0));
        // The sensor data (16 bits a sample), LibRaw's 4 × 16-bit working
        // image, and the 8-bit RGB output.
        let (rw, rh) = dims(libraw_get_raw_width(lr.0), libraw_get_raw_height(lr.0));
        check_declared(rw, rh, 2 * 4 + 2 + 3, limits)?;
        let (iw, ih) = dims(libraw_get_iwidth(lr.0), libraw_get_iheight(lr.0));
        check_declared(iw, ih, 2 * 4 + 2 + 3, limits)?;
        libraw_set_output_color(lr.0, 1); // sRGB primaries
        libraw_set_output_bps(lr.0, 8);
        libraw_set_gamma(lr.0, 0, 1.0 / 2.4); // the sRGB curve
        libraw_set_gamma(lr.0, 1, 12.92);
        libraw_set_no_auto_bright(lr.0, 1);
        check(libraw_unpack(lr.0), "unpacking the raw data")?;
        check(libraw_dcraw_process(lr.0), "developing")?;
        let mut errc: c_int = 0;
        let mem = Mem(libraw_dcraw_make_mem_image(lr.0, &mut errc));
        check(errc, "making the image")?;
        if mem.0.is_null() {
            return Err(Refusal::Decode("LibRaw returned no image".into()));
        }
        let p = &*mem.0;
        let (w, h, colors) = (u32::from(p.width), u32::from(p.height), u32::from(p.colors));
        if p.kind != IMAGE_BITMAP || p.bits != 8 || !(colors == 1 || colors == 3) {
            return Err(Refusal::Unsupported(format!(
                "LibRaw returned a {}-bit, {colors}-colour image of type {}",
                p.bits, p.kind
            )));
        }
        check_declared(u64::from(w), u64::from(h), 2 * 4 + 2, limits)?;
        let len = w as usize * h as usize * colors as usize;
        if (p.data_size as usize) < len {
            return Err(Refusal::Decode(
                "LibRaw returned fewer pixels than it declared".into(),
            ));
        }
        let data =
            std::slice::from_raw_parts(std::ptr::addr_of!(p.data).cast::<u8>(), len).to_vec();
        let img = if colors == 3 {
            RgbImage::from_raw(w, h, data)
        } else {
            image::GrayImage::from_raw(w, h, data).map(|g| DynamicImage::ImageLuma8(g).to_rgb8())
        };
        img.ok_or_else(|| Refusal::Decode("LibRaw returned fewer pixels than it declared".into()))
    }
}
