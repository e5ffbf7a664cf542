//! Test files of the formats decoded apart (HEIC, AVIF, JPEG XL, DNG), made
//! from drawn images with Debian's encoders (heif-enc, avifenc, cjxl:
//! tools/ci/install-deps.sh installs them) and, for DNG, written here.

use std::path::Path;
use std::process::Command;

/// Runs an encoder; a missing tool fails with the command that installs it.
fn run(tool: &str, args: &[&str], dir: &Path) {
    let out = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("{tool}: {e}; run `bash tools/ci/install-deps.sh` (it installs the encoders)")
        });
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Encodes `img` to PNG in a temporary folder, runs `tool ARGS in.png
/// out.EXT` (`args` before the file names), and returns the output.
fn encode_with(img: &image::DynamicImage, tool: &str, args: &[&str], ext: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    img.save(dir.path().join("in.png")).unwrap();
    let out = format!("out.{ext}");
    let mut all: Vec<&str> = args.to_vec();
    match tool {
        "heif-enc" => all.extend(["-o", &out, "in.png"]),
        _ => all.extend(["in.png", &out]),
    }
    run(tool, &all, dir.path());
    std::fs::read(dir.path().join(&out)).unwrap()
}

/// HEIC (HEVC in HEIF) at quality 95, 4:4:4 chroma; a 16-bit input makes a
/// 10-bit file, RGBA an alpha plane.
pub fn heic(img: &image::DynamicImage) -> Vec<u8> {
    encode_with(img, "heif-enc", &["-q", "95", "-p", "chroma=444"], "heic")
}

/// A HEIC holding two images; the first is the primary.
pub fn heic_two(primary: &image::DynamicImage, other: &image::DynamicImage) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    primary.save(dir.path().join("a.png")).unwrap();
    other.save(dir.path().join("b.png")).unwrap();
    run(
        "heif-enc",
        &[
            "-q",
            "95",
            "-p",
            "chroma=444",
            "-o",
            "two.heic",
            "a.png",
            "b.png",
        ],
        dir.path(),
    );
    std::fs::read(dir.path().join("two.heic")).unwrap()
}

/// AVIF with `depth` bits (8, 10, 12), 4:4:4, near-lossless quantisers;
/// `extra` adds avifenc options (`--irot 1`...).
pub fn avif(img: &image::DynamicImage, depth: u8, extra: &[&str]) -> Vec<u8> {
    let d = depth.to_string();
    let mut args = vec!["-d", &d, "-y", "444", "--min", "0", "--max", "4", "-s", "8"];
    args.extend_from_slice(extra);
    encode_with(img, "avifenc", &args, "avif")
}

/// JPEG XL, lossless (`-d 0`), from a PNG.
pub fn jxl(img: &image::DynamicImage) -> Vec<u8> {
    encode_with(img, "cjxl", &["-d", "0"], "jxl")
}

/// JPEG XL recompressed losslessly from a JPEG (its EXIF orientation
/// becomes the codestream's).
pub fn jxl_from_jpeg(jpeg: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jpg"), jpeg).unwrap();
    run("cjxl", &["in.jpg", "out.jxl"], dir.path());
    std::fs::read(dir.path().join("out.jxl")).unwrap()
}

/// The sRGB curve, 8-bit code to linear light.
fn linear(v: u8) -> f64 {
    let c = f64::from(v) / 255.0;
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

/// A linear DNG (`LinearRaw`, three 16-bit samples a pixel, uncompressed)
/// whose camera space is linear sRGB (its `ColorMatrix1` is XYZ → linear
/// sRGB under D65), so that developing it gives `img` back; `orientation`
/// is the TIFF orientation tag (1 upright, 6 turned 90° clockwise...).
pub fn dng(img: &image::RgbImage, orientation: u16) -> Vec<u8> {
    dng_declaring(img, orientation, img.width(), img.height())
}

/// [`dng`], declaring `w × h` in its header whatever the pixels are.
pub fn dng_declaring(img: &image::RgbImage, orientation: u16, w: u32, h: u32) -> Vec<u8> {
    // XYZ (D65) to linear sRGB, as signed rationals over 10,000.
    const M: [f64; 9] = [
        3.240_454_2,
        -1.537_138_5,
        -0.498_531_4,
        -0.969_266_0,
        1.876_010_8,
        0.041_556_0,
        0.055_643_4,
        -0.204_025_9,
        1.057_225_2,
    ];
    let pixels: Vec<u8> = img
        .as_raw()
        .iter()
        .flat_map(|&v| (((linear(v) * 65535.0).round()) as u16).to_le_bytes())
        .collect();
    // (tag, type, count, value bytes); types: 1 BYTE, 2 ASCII, 3 SHORT,
    // 4 LONG, 5 RATIONAL, 10 SRATIONAL.
    let short = |v: u16| v.to_le_bytes().to_vec();
    let long = |v: u32| v.to_le_bytes().to_vec();
    let mut matrix = Vec::new();
    for m in M {
        matrix.extend_from_slice(&((m * 10_000.0).round() as i32).to_le_bytes());
        matrix.extend_from_slice(&10_000i32.to_le_bytes());
    }
    let mut neutral = Vec::new();
    for _ in 0..3 {
        neutral.extend_from_slice(&1u32.to_le_bytes());
        neutral.extend_from_slice(&1u32.to_le_bytes());
    }
    let bits: Vec<u8> = [16u16, 16, 16]
        .iter()
        .flat_map(|b| b.to_le_bytes())
        .collect();
    let mut entries: Vec<(u16, u16, u32, Vec<u8>)> = vec![
        (254, 4, 1, long(0)),
        (256, 4, 1, long(w)),
        (257, 4, 1, long(h)),
        (258, 3, 3, bits),
        (259, 3, 1, short(1)),
        (262, 3, 1, short(34892)),
        (271, 2, 7, b"imgsim\0".to_vec()),
        (272, 2, 5, b"test\0".to_vec()),
        (273, 4, 1, long(0)), // patched below
        (274, 3, 1, short(orientation)),
        (277, 3, 1, short(3)),
        (278, 4, 1, long(h)),
        (279, 4, 1, long(pixels.len() as u32)),
        (284, 3, 1, short(1)),
        (50706, 1, 4, vec![1, 4, 0, 0]),
        (50707, 1, 4, vec![1, 1, 0, 0]),
        (50708, 2, 12, b"imgsim test\0".to_vec()),
        (50717, 4, 1, long(65535)),
        (50721, 10, 9, matrix),
        (50728, 5, 3, neutral),
        (50778, 3, 1, short(21)),
    ];
    let ifd_len = 2 + 12 * entries.len() + 4;
    let data_start = 8 + ifd_len;
    let extra_len: usize = entries
        .iter()
        .map(|e| {
            if e.3.len() > 4 {
                e.3.len() + e.3.len() % 2
            } else {
                0
            }
        })
        .sum();
    let strip = (data_start + extra_len) as u32;
    for e in &mut entries {
        if e.0 == 273 {
            e.3 = long(strip);
        }
    }
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    let mut extra = Vec::new();
    for (tag, ty, count, value) in &entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        if value.len() <= 4 {
            let mut v = value.clone();
            v.resize(4, 0);
            out.extend_from_slice(&v);
        } else {
            out.extend_from_slice(&((data_start + extra.len()) as u32).to_le_bytes());
            extra.extend_from_slice(value);
            if value.len() % 2 == 1 {
                extra.push(0);
            }
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&extra);
    assert_eq!(out.len() as u32, strip);
    out.extend_from_slice(&pixels);
    out
}

/// Rewrites the first `ispe` box (image spatial extents) of a HEIF or
/// AVIF file to declare `w × h`.
pub fn with_ispe(mut bytes: Vec<u8>, w: u32, h: u32) -> Vec<u8> {
    let at = bytes
        .windows(4)
        .position(|b| b == b"ispe")
        .expect("an ispe box");
    // type, version and flags (4), then width and height.
    bytes[at + 8..at + 12].copy_from_slice(&w.to_be_bytes());
    bytes[at + 12..at + 16].copy_from_slice(&h.to_be_bytes());
    bytes
}

/// A bare JPEG XL codestream whose header declares `w × h` (each at most
/// 2³⁰), followed by `tail` bytes of nothing decodable.
pub fn jxl_declaring(w: u32, h: u32, tail: usize) -> Vec<u8> {
    let mut bits: Vec<bool> = Vec::new();
    let put = |v: u32, n: u32, bits: &mut Vec<bool>| {
        for i in 0..n {
            bits.push(v >> i & 1 == 1);
        }
    };
    // SizeHeader: small = 0; height as U32 selector 3 (1 + u(30)); ratio 0;
    // width likewise. Then ImageMetadata all_default = 1.
    put(0, 1, &mut bits);
    put(3, 2, &mut bits);
    put(h - 1, 30, &mut bits);
    put(0, 3, &mut bits);
    put(3, 2, &mut bits);
    put(w - 1, 30, &mut bits);
    put(1, 1, &mut bits);
    let mut out = vec![0xFF, 0x0A];
    for byte in bits.chunks(8) {
        out.push(
            byte.iter()
                .enumerate()
                .map(|(i, &b)| u8::from(b) << i)
                .sum(),
        );
    }
    out.extend(std::iter::repeat_n(0u8, tail));
    out
}
