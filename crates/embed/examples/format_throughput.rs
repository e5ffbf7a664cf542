//! Images per second decoding the HEIC, AVIF, JPEG XL and DNG files under a
//! folder to 8-bit sRGB, one thread, through `load_rgb` as the indexer does
//! (each decode in its own child process, the fork included), and the
//! same decoders called in this process (what the isolation costs),
//! beside `tools/bench/pil_format_throughput.py` on the same files.
//!
//! `cargo run -p imgsim-embed --example format_throughput DIR [PASSES]`
//! (DIR made by `tools/bench/format_throughput.sh`)

use std::path::PathBuf;
use std::time::Instant;

use imgsim_embed::load::{decode_rgb_in_process, read_limited};
use imgsim_embed::{load_rgb, ImageLimits};

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: format_throughput DIR [PASSES]"),
    );
    let passes: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("a folder")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let limits = ImageLimits::default();
    for ext in ["heic", "avif", "jxl", "dng"] {
        let set: Vec<&PathBuf> = files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        if set.is_empty() {
            continue;
        }
        // One untimed pass: the files into the page cache.
        let mut pixels = 0u64;
        for p in &set {
            let img = load_rgb(p, &limits).unwrap_or_else(|e| panic!("{e}"));
            pixels += u64::from(img.width()) * u64::from(img.height());
        }
        let t = Instant::now();
        for _ in 0..passes {
            for p in &set {
                std::hint::black_box(load_rgb(p, &limits).unwrap());
            }
        }
        let s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for _ in 0..passes {
            for p in &set {
                let bytes = read_limited(p, &limits).unwrap();
                std::hint::black_box(decode_rgb_in_process(&bytes, p, &limits).unwrap());
            }
        }
        let s_in = t.elapsed().as_secs_f64();
        let n = (set.len() * passes) as f64;
        println!(
            "{ext}: {} files, {:.1} images/s, {:.1} MP/s ({:.1} images/s in process)",
            set.len(),
            n / s,
            (pixels * passes as u64) as f64 / s / 1e6,
            n / s_in
        );
    }
}
