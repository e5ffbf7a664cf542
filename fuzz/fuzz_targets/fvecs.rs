//! The .fvecs/.ivecs reader on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = imgsim_datasets::fvecs::parse_fvecs(data, Path::new("fuzz.fvecs")) {
        assert!(d.dim > 0);
        assert_eq!(d.data.len() % d.dim, 0);
        assert_eq!(d.data.len() * 4 + d.rows() * 4, data.len());
    }
});
