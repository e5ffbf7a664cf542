//! A corpus of hostile image files, made by the tests: truncated and empty
//! files of every format, wrong extensions, decompression bombs, a JPEG with
//! a huge EXIF block, CMYK and 16-bit images, an animated GIF, text named
//! `.jpg`. Each file comes with what imgsim must make of it.

use std::path::Path;

use super::formats;
use super::{picture, png_bytes};

/// What must happen to a corpus file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Decoded and indexed; a query with it finds it first.
    Indexed,
    /// Refused with an error whose text contains this.
    Error(&'static str),
    /// Damaged data past an intact header: decoded to some picture of its
    /// declared size (codecs conceal errors) or refused as undecodable, but
    /// never a decoder crash, hang or panic.
    Damaged,
}

/// One corpus file.
pub struct Case {
    /// File name.
    pub name: &'static str,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// What must happen.
    pub expect: Expect,
    /// For decodable files: the picture (seed, width, height) it must decode to.
    pub source: Option<(u32, u32, u32)>,
}

fn encode(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .unwrap();
    out
}

fn jpeg(seed: u32) -> Vec<u8> {
    encode(
        &image::DynamicImage::ImageRgb8(picture(seed, 96, 80)),
        image::ImageFormat::Jpeg,
    )
}

fn crc(data: &[u8]) -> [u8; 4] {
    crc32fast::hash(data).to_be_bytes()
}

/// A PNG chunk: length, type, data, CRC.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc(&body));
    out
}

/// A PNG declaring `w × h` pixels of 8-bit RGB, with one tiny IDAT.
fn png_header_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    out.extend(chunk(b"IHDR", &ihdr));
    out.extend(chunk(b"IDAT", b"\x78\x9c"));
    out
}

/// A real decompression bomb: a valid `side × side` greyscale PNG of zeros,
/// a few hundred times smaller than its pixels.
pub fn png_zero_bomb(side: u32) -> Vec<u8> {
    let img = image::GrayImage::new(side, side);
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::NoFilter,
    )
    .write_image(img.as_raw(), side, side, image::ExtendedColorType::L8)
    .unwrap();
    out
}

use image::ImageEncoder;

/// A JPEG with `extra` APP1 segments of 65,533 bytes after SOI, the first an
/// EXIF block whose IFD claims 65,535 entries pointing past its end.
fn huge_exif_jpeg(seed: u32, extra: usize) -> Vec<u8> {
    let base = jpeg(seed);
    let mut out = base[..2].to_vec(); // SOI
    for i in 0..extra {
        let mut seg = Vec::with_capacity(65_535);
        if i == 0 {
            seg.extend_from_slice(b"Exif\0\0");
            seg.extend_from_slice(b"II*\0\x08\0\0\0"); // TIFF, IFD at 8
            seg.extend_from_slice(&0xFFFFu16.to_le_bytes()); // entries
                                                             // Orientation tag with a huge count and an offset far away.
            seg.extend_from_slice(&[0x12, 0x01, 3, 0]);
            seg.extend_from_slice(&u32::MAX.to_le_bytes());
            seg.extend_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
        }
        seg.resize(65_533, 0xAB);
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((seg.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&seg);
    }
    out.extend_from_slice(&base[2..]);
    out
}

fn cmyk_jpeg(seed: u32) -> Vec<u8> {
    let rgb = picture(seed, 96, 80);
    let mut cmyk = Vec::with_capacity(96 * 80 * 4);
    for p in rgb.pixels() {
        let [r, g, b] = p.0;
        let k = 255 - r.max(g).max(b);
        cmyk.extend_from_slice(&[255 - r - k, 255 - g - k, 255 - b - k, k]);
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(&cmyk, 96, 80, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    out
}

fn rgb16(seed: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::DynamicImage::ImageRgb8(picture(seed, 96, 80)).to_rgb16();
    encode(&image::DynamicImage::ImageRgb16(img), format)
}

fn gray16_png(seed: u32) -> Vec<u8> {
    let img = image::DynamicImage::ImageRgb8(picture(seed, 96, 80)).to_luma16();
    encode(
        &image::DynamicImage::ImageLuma16(img),
        image::ImageFormat::Png,
    )
}

fn animated_gif(seed: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut out);
        enc.set_repeat(image::codecs::gif::Repeat::Infinite)
            .unwrap();
        for f in 0..3 {
            let rgba = image::DynamicImage::ImageRgb8(picture(seed + f, 64, 64)).to_rgba8();
            enc.encode_frame(image::Frame::new(rgba)).unwrap();
        }
    }
    out
}

fn gif(seed: u32) -> Vec<u8> {
    encode(
        &image::DynamicImage::ImageRgb8(picture(seed, 64, 64)),
        image::ImageFormat::Gif,
    )
}

fn webp(seed: u32) -> Vec<u8> {
    let img = picture(seed, 64, 64);
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out)
        .write_image(img.as_raw(), 64, 64, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// A GIF whose logical screen and only frame declare 65,535 × 65,535.
fn gif_header_bomb() -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0, 0]);
    out.extend_from_slice(&[0x2C, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x00]);
    out.extend_from_slice(&[0x02, 0x02, 0x44, 0x01, 0x00, 0x3B]);
    out
}

fn picture_img(seed: u32) -> image::DynamicImage {
    image::DynamicImage::ImageRgb8(picture(seed, 96, 80))
}

/// `b` with a run of bytes in its second half inverted (damaged data past
/// an intact header).
fn corrupt(mut b: Vec<u8>) -> Vec<u8> {
    let n = b.len();
    for v in &mut b[n / 2..(n / 2 + 64).min(n)] {
        *v ^= 0xFF;
    }
    b
}

/// `magic` then 4 KiB of pseudo-random bytes.
fn garbage_after(magic: &[u8]) -> Vec<u8> {
    let mut out = magic.to_vec();
    let mut state = 0x9E37_79B9u32;
    out.extend((0..4096).map(|_| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state as u8
    }));
    out
}

/// The corpus' files of the formats decoded apart (HEIC, AVIF, JPEG XL,
/// DNG): a good file of each, named wrongly too, and truncated, damaged,
/// header-bomb and allocation-bomb ones.
fn apart_cases() -> Vec<Case> {
    use Expect::{Error, Indexed};
    let case = |name, bytes, expect| Case {
        name,
        bytes,
        expect,
        source: None,
    };
    let ok = |name, bytes, seed| Case {
        name,
        bytes,
        expect: Indexed,
        source: Some((seed, 96, 80)),
    };
    let damaged = |name, bytes| Case {
        name,
        bytes,
        expect: Expect::Damaged,
        source: None,
    };
    let heic = formats::heic(&picture_img(20));
    let avif = formats::avif(&picture_img(21), 10, &[]);
    let jxl = formats::jxl(&picture_img(22));
    let dng = formats::dng(&picture(23, 96, 80), 1);
    vec![
        ok("control.heic", heic.clone(), 20),
        ok("control.avif", avif.clone(), 21),
        ok("control.jxl", jxl.clone(), 22),
        ok("control.dng", dng.clone(), 23),
        ok(
            "avif-inside.jpg",
            formats::avif(&picture_img(24), 8, &[]),
            24,
        ),
        ok("heic-inside.png", formats::heic(&picture_img(25)), 25),
        ok("jxl-inside.webp", formats::jxl(&picture_img(26)), 26),
        ok("dng-inside.tif", formats::dng(&picture(27, 96, 80), 1), 27),
        case("truncated.heic", truncate(heic.clone()), Error("")),
        case("truncated.avif", truncate(avif.clone()), Error("")),
        case("truncated.jxl", truncate(jxl.clone()), Error("truncated:")),
        case("truncated.dng", truncate(dng.clone()), Error("truncated:")),
        damaged("damaged.heic", corrupt(heic.clone())),
        damaged("damaged.avif", corrupt(avif.clone())),
        damaged("damaged.jxl", corrupt(jxl.clone())),
        case(
            "garbage-after-ftyp.heic",
            garbage_after(&heic[..heic[3] as usize]),
            Error(""),
        ),
        case(
            "garbage-after-ftyp.avif",
            garbage_after(&avif[..avif[3] as usize]),
            Error(""),
        ),
        case(
            "garbage-after-magic.jxl",
            garbage_after(&[0xFF, 0x0A]),
            Error(""),
        ),
        case(
            "bomb-50000x50000.heic",
            formats::with_ispe(heic, 50_000, 50_000),
            Error("too large"),
        ),
        case(
            "bomb-60000x60000.avif",
            formats::with_ispe(avif, 60_000, 60_000),
            Error("too large"),
        ),
        case(
            "bomb-1000000x1000000.jxl",
            formats::jxl_declaring(1_000_000, 1_000_000, 256),
            Error("too large"),
        ),
        case(
            "bomb-8000x8000.jxl",
            formats::jxl_declaring(8000, 8000, 256),
            Error("too large"),
        ),
        case(
            "bomb-100000x100000.dng",
            formats::dng_declaring(&picture(28, 96, 80), 1, 100_000, 100_000),
            Error("too large"),
        ),
        case(
            "bomb-8000x8000.dng",
            formats::dng_declaring(&picture(29, 96, 80), 1, 8000, 8000),
            Error("too large"),
        ),
    ]
}

fn truncate(mut b: Vec<u8>) -> Vec<u8> {
    b.truncate(b.len() / 2);
    b
}

/// The corpus. File names are unique; seeds keep every decodable image
/// distinct from the others.
pub fn cases() -> Vec<Case> {
    use Expect::{Error, Indexed};
    let case = |name, bytes, expect| Case {
        name,
        bytes,
        expect,
        source: None,
    };
    let mut garbage_png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut state = 0x1234_5678u32;
    garbage_png.extend((0..4096).map(|_| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state as u8
    }));
    let ok = |name, bytes, seed, w, h| Case {
        name,
        bytes,
        expect: Indexed,
        source: Some((seed, w, h)),
    };
    vec![
        ok("control.jpg", jpeg(1), 1, 96, 80),
        ok("control.png", png_bytes(2, 96, 80), 2, 96, 80),
        ok("control.webp", webp(3), 3, 64, 64),
        ok("control.gif", gif(4), 4, 64, 64),
        case("zero.jpg", Vec::new(), Error("empty file")),
        case("zero.png", Vec::new(), Error("empty file")),
        case("zero.webp", Vec::new(), Error("empty file")),
        case("zero.gif", Vec::new(), Error("empty file")),
        case("truncated.jpg", truncate(jpeg(5)), Error("truncated")),
        case("truncated.png", truncate(png_bytes(6, 96, 80)), Error("")),
        case("truncated.webp", truncate(webp(7)), Error("")),
        case("truncated.gif", truncate(gif(8)), Error("")),
        ok("png-inside.jpg", png_bytes(9, 96, 80), 9, 96, 80),
        ok("jpeg-inside.png", jpeg(10), 10, 96, 80),
        ok("gif-inside.webp", gif(11), 11, 64, 64),
        case(
            "text.jpg",
            b"just some text, not a JPEG\n".to_vec(),
            Error("magic bytes"),
        ),
        case("garbage-after-png-magic.png", garbage_png, Error("")),
        case(
            "bomb-50000x50000.png",
            png_header_bomb(50_000, 50_000),
            Error("too large"),
        ),
        case(
            "bomb-65535x65535.gif",
            gif_header_bomb(),
            Error("too large"),
        ),
        case(
            "zeros-8000x8000.png",
            png_zero_bomb(8000),
            Error("too large"),
        ),
        ok("huge-exif.jpg", huge_exif_jpeg(12, 64), 12, 96, 80),
        ok("cmyk.jpg", cmyk_jpeg(13), 13, 96, 80),
        ok("rgb16.png", rgb16(14, image::ImageFormat::Png), 14, 96, 80),
        Case {
            name: "gray16.png",
            bytes: gray16_png(15),
            expect: Indexed,
            source: None,
        },
        ok(
            "rgb16.tiff",
            rgb16(16, image::ImageFormat::Tiff),
            16,
            96,
            80,
        ),
        ok("animated.gif", animated_gif(17), 17, 64, 64),
    ]
    .into_iter()
    .chain(apart_cases())
    .collect()
}

/// Writes the corpus into `dir`.
pub fn write(dir: &Path) -> Vec<Case> {
    std::fs::create_dir_all(dir).unwrap();
    let cases = cases();
    for c in &cases {
        std::fs::write(dir.join(c.name), &c.bytes).unwrap();
    }
    cases
}
