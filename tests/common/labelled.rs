//! Labelled test data: a tiny Fashion-MNIST look-alike in IDX files, and
//! a folder of images with one sub-folder per label.

use std::io::Write;
use std::path::Path;

/// Writes an IDX file (gzip) of u8 data with the given dimensions.
pub fn idx(path: &Path, dims: &[u32], data: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    gz.write_all(&[0, 0, 0x08, dims.len() as u8]).unwrap();
    for d in dims {
        gz.write_all(&d.to_be_bytes()).unwrap();
    }
    gz.write_all(data).unwrap();
    gz.finish().unwrap();
}

/// A tiny labelled set shaped like Fashion-MNIST: class `c` is a bright
/// square at a class-specific place, with per-image jitter.
pub fn tiny_fashion(dir: &Path, train: usize, test: usize) {
    let make = |n: usize, salt: usize| {
        let mut px = Vec::with_capacity(n * 784);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let c = (i * 7 + salt) % 10;
            labels.push(c as u8);
            let (cx, cy) = (4 + (c % 5) * 5, 6 + (c / 5) * 12);
            let j = (i * 31 + salt) % 3;
            for y in 0..28 {
                for x in 0..28 {
                    let on = x >= cx + j && x < cx + j + 6 && y >= cy && y < cy + 8;
                    px.push(if on {
                        200 + ((x * y + i) % 50) as u8
                    } else {
                        ((x + y + i) % 13) as u8
                    });
                }
            }
        }
        (px, labels)
    };
    let (p, l) = make(train, 0);
    idx(
        &dir.join("train-images-idx3-ubyte.gz"),
        &[train as u32, 28, 28],
        &p,
    );
    idx(&dir.join("train-labels-idx1-ubyte.gz"), &[train as u32], &l);
    let (p, l) = make(test, 3);
    idx(
        &dir.join("t10k-images-idx3-ubyte.gz"),
        &[test as u32, 28, 28],
        &p,
    );
    idx(&dir.join("t10k-labels-idx1-ubyte.gz"), &[test as u32], &l);
}

/// A labelled folder: `red`, `green` and `blue`, 4 noisy images each
/// (PNG and JPEG, several sizes).
pub fn colour_folder(root: &Path) {
    let mut state = 0x2545_f491u32;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 41) as i32 - 20
    };
    for (label, base) in [
        ("red", [200, 30, 30]),
        ("green", [30, 200, 30]),
        ("blue", [30, 30, 200]),
    ] {
        for i in 0..4 {
            let img = image::RgbImage::from_fn(48 + 8 * i, 40, |_, _| {
                image::Rgb(base.map(|c: i32| (c + noise()).clamp(0, 255) as u8))
            });
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            super::save(&img, &root.join(label).join(format!("{i}.{ext}")));
        }
    }
}
