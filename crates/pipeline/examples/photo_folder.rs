//! Makes a folder of camera-sized JPEG photos from a few large real photos
//! (e.g. Debian's desktop backgrounds), for throughput measurements: each
//! output is a different crop (position and scale), resized so that its
//! long side is 1,200 to 2,000 pixels, saved at quality 90.
//!
//! ```text
//! cargo run --release -p imgsim-pipeline --example photo_folder -- /usr/share/backgrounds /tmp/photos 400
//! ```

use std::path::PathBuf;

use image::imageops::FilterType;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        return Err("usage: photo_folder SOURCE_DIR OUT_DIR COUNT".into());
    }
    let (src, out) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let count: usize = args[3].parse()?;
    let walk = imgsim_pipeline::walk(&[src])?;
    let limits = imgsim_embed::ImageLimits::default();
    // Real photos only: JPEGs of at least 2 megapixels.
    let mut sources = Vec::new();
    for f in &walk.files {
        let is_jpeg = f
            .path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"));
        if !is_jpeg {
            continue;
        }
        if let Ok(img) = imgsim_embed::load_rgb(&f.path, &limits) {
            if img.width() * img.height() >= 2_000_000 {
                eprintln!(
                    "source {} ({}x{})",
                    f.path.display(),
                    img.width(),
                    img.height()
                );
                sources.push(img);
            }
        }
    }
    if sources.is_empty() {
        return Err("no JPEG of at least 2 MP in the source folder".into());
    }
    std::fs::create_dir_all(&out)?;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..count {
        let img = &sources[i % sources.len()];
        let (w, h) = (img.width(), img.height());
        // A crop of 45-95% of each side, somewhere in the picture.
        let frac = 0.45 + (rnd() % 50) as f64 / 100.0;
        let (cw, ch) = ((w as f64 * frac) as u32, (h as f64 * frac) as u32);
        let (x, y) = (rnd() as u32 % (w - cw + 1), rnd() as u32 % (h - ch + 1));
        let crop = image::imageops::crop_imm(img, x, y, cw, ch).to_image();
        let long = 1200 + (rnd() % 801) as u32;
        let scale = long as f64 / cw.max(ch) as f64;
        let (ow, oh) = (
            ((cw as f64 * scale) as u32).max(1),
            ((ch as f64 * scale) as u32).max(1),
        );
        let photo = image::imageops::resize(&crop, ow, oh, FilterType::Triangle);
        let path = out.join(format!("photo-{i:04}.jpg"));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 90).encode_image(&photo)?;
    }
    eprintln!("wrote {count} photos to {}", out.display());
    Ok(())
}
