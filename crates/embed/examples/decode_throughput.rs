//! Images per second for decode + preprocess (resize 256, crop 224) of the
//! JPEG/PNG/WebP photos under a folder, one thread: full decoding, and for
//! JPEG the reduced (DCT-scaled) decoding.
//!
//! `cargo run --release -p imgsim-embed --example decode_throughput [DIR] [PASSES]`
//! (default /usr/share/backgrounds; Debian: gnome-backgrounds, mate-backgrounds)

use std::path::PathBuf;
use std::time::Instant;

use imgsim_embed::{load_rgb, load_rgb_reduced, ImageLimits, Transform};

fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if matches!(
            p.extension()
                .and_then(|e| e.to_str())
                .map(|e| e.to_ascii_lowercase())
                .as_deref(),
            Some("jpg" | "jpeg" | "png" | "webp")
        ) {
            out.push(p);
        }
    }
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/usr/share/backgrounds".into());
    let passes: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let mut files = Vec::new();
    walk(std::path::Path::new(&dir), &mut files);
    files.sort();
    let t = Transform::imagenet(256, 224);
    let limits = ImageLimits::default();
    for ext in ["jpg", "png", "webp"] {
        let set: Vec<&PathBuf> = files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        if set.is_empty() {
            continue;
        }
        let mut pixels = 0u64;
        for p in &set {
            let img = load_rgb(p, &limits).expect("readable");
            pixels += u64::from(img.width()) * u64::from(img.height());
        }
        let mut rates = Vec::new();
        for (label, reduced) in [("full decode", false), ("reduced decode", true)] {
            if reduced && ext != "jpg" {
                continue;
            }
            let mut best = f64::INFINITY;
            for _ in 0..passes {
                let start = Instant::now();
                for p in &set {
                    let img = if reduced {
                        load_rgb_reduced(p, &limits, t.resize_shorter)
                    } else {
                        load_rgb(p, &limits)
                    }
                    .expect("readable");
                    std::hint::black_box(t.apply(&img).expect("valid transform"));
                }
                best = best.min(start.elapsed().as_secs_f64());
            }
            rates.push((label, set.len() as f64 / best));
        }
        // How far the reduced decode moves the model input (mean |difference|,
        // in units of the normalised tensor).
        let mut diff = 0.0;
        if ext == "jpg" {
            for p in &set {
                let a = t.apply(&load_rgb(p, &limits).unwrap()).unwrap();
                let b = t
                    .apply(&load_rgb_reduced(p, &limits, t.resize_shorter).unwrap())
                    .unwrap();
                diff += a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| f64::from((x - y).abs()))
                    .sum::<f64>()
                    / a.len() as f64;
            }
            diff /= set.len() as f64;
        }
        let rates: Vec<String> = rates
            .iter()
            .map(|(l, r)| format!("{l} {r:.1} images/s"))
            .collect();
        println!(
            "{ext}: {} files, {:.1} MP mean, 1 thread, best of {passes}: {}{}",
            set.len(),
            pixels as f64 / set.len() as f64 / 1e6,
            rates.join(", "),
            if ext == "jpg" {
                format!(" (reduced vs full: mean |Δ| {diff:.4} of the normalised input)")
            } else {
                String::new()
            }
        );
    }
}
