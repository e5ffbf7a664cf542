//! The image-preprocessing entry point: bytes → decode under limits (the
//! scaled JPEG path included) → EXIF orientation → resize/crop/normalise.
//! Any input must give an image tensor or a typed error, never a panic,
//! and stay within the limits' memory.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

use imgsim_embed::{ImageLimits, Transform};

fuzz_target!(|data: &[u8]| {
    // Smaller limits than the defaults so that libFuzzer's 2 GiB RSS cap
    // measures leaks and bombs, not legitimately large images.
    let limits = ImageLimits {
        max_width: 4096,
        max_height: 4096,
        max_decoded_bytes: 64 << 20,
        max_file_bytes: 16 << 20,
        max_decode_seconds: 10,
    };
    let name = Path::new("fuzz-input");
    let transform = Transform::imagenet(256, 224);
    for decoded in [
        imgsim_embed::decode_rgb_reduced(data, name, &limits, 224),
        imgsim_embed::decode_rgb(data, name, &limits),
    ] {
        if let Ok(img) = decoded {
            assert!(img.width() > 0 && img.height() > 0);
            let t = transform
                .apply(&img)
                .expect("a decoded image always transforms");
            assert_eq!(t.len(), transform.len());
            assert!(t.iter().all(|x| x.is_finite()));
        }
    }
});
