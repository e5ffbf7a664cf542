//! The IDX (Fashion-MNIST) reader on arbitrary bytes: a data set or a typed
//! error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = imgsim_datasets::idx::parse_images(data, Path::new("fuzz.idx")) {
        assert!(d.dim > 0);
        assert_eq!(d.data.len() % d.dim, 0);
    }
    if let Ok(labels) = imgsim_datasets::idx::parse_labels(data, Path::new("fuzz.idx")) {
        assert!(labels.len() <= data.len());
    }
});
