//! The .npy reader on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = imgsim_datasets::npy::parse_npy(data, Path::new("fuzz.npy")) {
        assert!(d.dim > 0);
        assert_eq!(d.data.len() % d.dim, 0);
        assert!(d.data.len() <= data.len());
    }
});
