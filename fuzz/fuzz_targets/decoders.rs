//! The decoders run apart in production (libheif for HEIC/HEIF and AVIF,
//! jxl-oxide for JPEG XL, LibRaw for DNG), called in this process so that
//! a crash, a hang or a leak reaches libFuzzer and its sanitizer instead of
//! being contained in a child process. Any input must give an image or a
//! typed error naming the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

use imgsim_embed::format::{detect, Detected};
use imgsim_embed::ImageLimits;

fuzz_target!(|data: &[u8]| {
    // Small limits, so that libFuzzer's RSS cap catches leaks, not images.
    let limits = ImageLimits {
        max_width: 4096,
        max_height: 4096,
        max_decoded_bytes: 64 << 20,
        max_file_bytes: 16 << 20,
        max_decode_seconds: 10,
    };
    // Only the formats decoded apart: the others have `preprocess`.
    let Detected::Image(format) = detect(data) else {
        return;
    };
    if !format.is_isolated() {
        return;
    }
    let name = Path::new("fuzz-input");
    match imgsim_embed::load::decode_rgb_in_process(data, name, &limits) {
        Ok(img) => assert!(img.width() > 0 && img.height() > 0),
        Err(e) => assert!(e.to_string().starts_with("fuzz-input: "), "{e}"),
    }
});
