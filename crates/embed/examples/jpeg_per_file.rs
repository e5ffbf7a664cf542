//! Per-file decode + preprocess time of JPEGs, full vs reduced decoding.
//! `cargo run --release -p imgsim-embed --example jpeg_per_file -- FILE...`
use std::time::Instant;

use imgsim_embed::{load_rgb, load_rgb_reduced, ImageLimits, Transform};

fn main() {
    let t = Transform::imagenet(256, 224);
    let l = ImageLimits::default();
    for f in std::env::args().skip(1) {
        let p = std::path::Path::new(&f);
        let time = |reduced: bool| {
            let mut best = f64::INFINITY;
            for _ in 0..3 {
                let s = Instant::now();
                let img = if reduced {
                    load_rgb_reduced(p, &l, 256)
                } else {
                    load_rgb(p, &l)
                }
                .unwrap();
                std::hint::black_box(t.apply(&img).unwrap());
                best = best.min(s.elapsed().as_secs_f64());
            }
            best * 1e3
        };
        println!(
            "{f}: full {:.1} ms, reduced {:.1} ms",
            time(false),
            time(true)
        );
    }
}
