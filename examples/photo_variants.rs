//! Makes a folder of distinct photos for load tests (the soak's "new
//! folder" and watched-folder feed) from the real photos a machine has:
//! seeded crops, sizes and mirrorings of each, saved as JPEG.
//!
//! ```sh
//! cargo run --release --example photo_variants -- OUT COUNT SOURCE_DIR...
//! ```
//!
//! Deterministic: the same sources and count give the same files. Every
//! file differs from every other (and from its source), so an index takes
//! each as a new image.

use std::path::{Path, PathBuf};

fn sources(dirs: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                ["jpg", "jpeg", "png", "webp"].contains(&e.to_ascii_lowercase().as_str())
            }) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        walk(d, &mut out);
    }
    out.sort();
    out
}

/// xorshift64*: a seeded stream of numbers in [0, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err("usage: photo_variants OUT COUNT SOURCE_DIR...".into());
    }
    let out = PathBuf::from(&args[0]);
    let count: usize = args[1].parse()?;
    let dirs: Vec<PathBuf> = args[2..].iter().map(PathBuf::from).collect();
    // Decodable sources only, each decoded once, kept small enough in memory.
    let mut photos = Vec::new();
    for p in sources(&dirs) {
        match image::open(&p) {
            Ok(img) => photos.push(img.thumbnail(1600, 1600).to_rgb8()),
            Err(e) => eprintln!("skipping {}: {e}", p.display()),
        }
    }
    if photos.is_empty() {
        return Err(format!("no decodable photo under {dirs:?}").into());
    }
    std::fs::create_dir_all(&out)?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..count {
        let src = &photos[i % photos.len()];
        let (w, h) = src.dimensions();
        let frac = 0.55 + 0.4 * rng.next();
        let (cw, ch) = (((w as f64) * frac) as u32, ((h as f64) * frac) as u32);
        let x = ((w - cw) as f64 * rng.next()) as u32;
        let y = ((h - ch) as f64 * rng.next()) as u32;
        let crop = image::imageops::crop_imm(src, x, y, cw.max(1), ch.max(1)).to_image();
        let side = 640 + (rng.next() * 760.0) as u32;
        let mut img = image::DynamicImage::ImageRgb8(crop).thumbnail(side, side);
        if rng.next() < 0.5 {
            img = img.fliph();
        }
        let path = out.join(format!("photo-{i:04}.jpg"));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 85).encode_image(&img)?;
    }
    println!(
        "{count} photos in {} from {} sources",
        out.display(),
        photos.len()
    );
    Ok(())
}
