//! Decoding under limits, with broken and unusual files made here.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use imgsim_embed::load::ALPHA_BACKGROUND;
use imgsim_embed::{
    decode_rgb, load_rgb, Backbone, EmbedError, Embedder, ImageLimits, PretrainedEmbedder,
    WeightsSource,
};

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, format).unwrap();
    buf.into_inner()
}

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, 77])
    })
}

fn decode(bytes: &[u8]) -> imgsim_embed::Result<RgbImage> {
    decode_rgb(bytes, Path::new("test-input"), &ImageLimits::default())
}

#[test]
fn every_supported_format_and_colour_type_becomes_rgb8() {
    let rgb = DynamicImage::ImageRgb8(gradient(40, 30));
    for f in [
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
        ImageFormat::Gif,
        ImageFormat::WebP,
    ] {
        let img = decode(&encode(&rgb, f)).unwrap_or_else(|e| panic!("{f:?}: {e}"));
        assert_eq!(img.dimensions(), (40, 30), "{f:?}");
    }
    // Grey, grey+alpha, RGBA, 16-bit.
    let grey = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(5, 4, image::Luma([200])));
    assert_eq!(
        decode(&encode(&grey, ImageFormat::Png))
            .unwrap()
            .get_pixel(0, 0)
            .0,
        [200, 200, 200]
    );
    let la = DynamicImage::ImageLumaA8(image::GrayAlphaImage::from_pixel(
        5,
        4,
        image::LumaA([10, 128]),
    ));
    // Half transparent: composited onto the grey background,
    // (128·10 + 127·128) / 255 = 69.3.
    assert_eq!(
        decode(&encode(&la, ImageFormat::Png))
            .unwrap()
            .get_pixel(1, 1)
            .0,
        [69, 69, 69]
    );
    let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
        3,
        3,
        image::Rgba([1, 2, 3, 0]),
    ));
    // Fully transparent: the background alone.
    assert_eq!(
        decode(&encode(&rgba, ImageFormat::Png))
            .unwrap()
            .get_pixel(2, 2)
            .0,
        ALPHA_BACKGROUND
    );
    let wide = DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
        3,
        2,
        Rgb([65535u16, 0, 32896]),
    ));
    assert_eq!(
        decode(&encode(&wide, ImageFormat::Png))
            .unwrap()
            .get_pixel(0, 0)
            .0,
        [255, 0, 128]
    );
}

#[test]
fn content_decides_not_the_extension() {
    let dir = tempfile::tempdir().unwrap();
    // A PNG named .jpg decodes; a text file named .jpg is refused, by name.
    let png = encode(&DynamicImage::ImageRgb8(gradient(4, 4)), ImageFormat::Png);
    std::fs::write(dir.path().join("really-a-png.jpg"), &png).unwrap();
    assert_eq!(
        load_rgb(
            &dir.path().join("really-a-png.jpg"),
            &ImageLimits::default()
        )
        .unwrap()
        .width(),
        4
    );
    let txt = dir.path().join("notes.jpg");
    std::fs::write(&txt, "hello, not an image").unwrap();
    let err = load_rgb(&txt, &ImageLimits::default()).unwrap_err();
    assert!(matches!(err, EmbedError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("notes.jpg"));
}

#[test]
fn empty_truncated_and_missing_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        load_rgb(&empty, &ImageLimits::default()),
        Err(EmbedError::Empty { .. })
    ));
    for f in [
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::Gif,
        ImageFormat::WebP,
    ] {
        let bytes = encode(&DynamicImage::ImageRgb8(gradient(64, 64)), f);
        for cut in [bytes.len() / 3, bytes.len() / 2] {
            match decode(&bytes[..cut]) {
                Err(EmbedError::Decode { .. }) | Err(EmbedError::Unsupported { .. }) => {}
                // Some decoders fill a truncated tail with grey; what matters is no panic.
                Ok(img) => assert_eq!(img.dimensions(), (64, 64), "{f:?}"),
                Err(e) => panic!("{f:?} cut at {cut}: unexpected {e}"),
            }
        }
    }
    let err = load_rgb(&dir.path().join("absent.jpg"), &ImageLimits::default()).unwrap_err();
    assert!(matches!(err, EmbedError::Io { .. }) && err.to_string().contains("absent.jpg"));
}

/// A PNG whose header declares `w × h` followed by a tiny, wrong IDAT: a
/// decompression bomb's signature. It must be refused before allocating.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = crc32(kind);
        crc = crc32_update(crc, data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&(!crc).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    crc32_update(0xFFFF_FFFF, data)
}

fn crc32_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    crc
}

#[test]
fn a_decompression_bomb_is_refused_by_its_declared_size() {
    let err = decode(&png_claiming(50_000, 50_000)).unwrap_err();
    assert!(matches!(err, EmbedError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("50000"), "{err}");
    // Within width/height limits but over the allocation limit.
    let tight = ImageLimits {
        max_decoded_bytes: 1 << 20,
        ..ImageLimits::default()
    };
    let err = decode_rgb(&png_claiming(4000, 4000), Path::new("bomb.png"), &tight).unwrap_err();
    assert!(matches!(err, EmbedError::TooLarge { .. }), "{err}");
}

/// Inserts an EXIF APP1 segment with the given orientation after a JPEG's SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // count
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    let jpeg = encode(
        &DynamicImage::ImageRgb8(gradient(40, 20)),
        ImageFormat::Jpeg,
    );
    assert_eq!(decode(&jpeg).unwrap().dimensions(), (40, 20));
    // 6 = rotate 90° clockwise to display.
    assert_eq!(
        decode(&with_exif_orientation(&jpeg, 6))
            .unwrap()
            .dimensions(),
        (20, 40)
    );
    assert_eq!(
        decode(&with_exif_orientation(&jpeg, 3))
            .unwrap()
            .dimensions(),
        (40, 20)
    );
}

#[test]
fn reduced_jpeg_decoding_scales_orients_and_falls_back_on_damage() {
    use imgsim_embed::decode_rgb_reduced;
    let name = Path::new("big.jpg");
    let limits = ImageLimits::default();
    let jpeg = encode(
        &DynamicImage::ImageRgb8(gradient(1600, 1200)),
        ImageFormat::Jpeg,
    );
    // Shorter side 1200 for a 256 target: libjpeg-turbo's 1/4 gives 400 × 300.
    let small = decode_rgb_reduced(&jpeg, name, &limits, 256).unwrap();
    assert_eq!(small.dimensions(), (400, 300));
    // Close to the full decode resized (a gradient: small differences only).
    let full = decode_rgb(&jpeg, name, &limits).unwrap();
    let (fx, fy) = (800, 600);
    let (sx, sy) = (200, 150);
    for c in 0..3 {
        let a = i32::from(full.get_pixel(fx, fy)[c]);
        let b = i32::from(small.get_pixel(sx, sy)[c]);
        assert!((a - b).abs() <= 6, "channel {c}: {a} vs {b}");
    }
    // M/8 factors: 7/8 when that still covers the target, none when not.
    assert_eq!(
        decode_rgb_reduced(&jpeg, name, &limits, 1000)
            .unwrap()
            .dimensions(),
        (1400, 1050)
    );
    assert_eq!(
        decode_rgb_reduced(&jpeg, name, &limits, 1100)
            .unwrap()
            .dimensions(),
        (1600, 1200)
    );
    // EXIF orientation is applied on this path too.
    let rotated = decode_rgb_reduced(&with_exif_orientation(&jpeg, 6), name, &limits, 256).unwrap();
    assert_eq!(rotated.dimensions(), (300, 400));
    // Damage: the same typed error as the exact path, naming the file.
    let truncated = &jpeg[..jpeg.len() / 3];
    let e1 = decode_rgb_reduced(truncated, name, &limits, 256);
    let e2 = decode_rgb(truncated, name, &limits);
    match (e1, e2) {
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string());
            assert!(a.to_string().contains("big.jpg"));
        }
        (Ok(_), Ok(_)) => {} // a decoder that pads truncated scans does so on both paths
        (a, b) => panic!(
            "paths disagree: {:?} vs {:?}",
            a.map(|i| i.dimensions()),
            b.map(|i| i.dimensions())
        ),
    }
    // Over the dimension limit: refused, not decoded.
    let tight = ImageLimits {
        max_width: 1000,
        ..limits
    };
    assert!(matches!(
        decode_rgb_reduced(&jpeg, name, &tight, 256),
        Err(EmbedError::TooLarge { .. })
    ));
    // Not a JPEG: the general path.
    let png = encode(&DynamicImage::ImageRgb8(gradient(30, 20)), ImageFormat::Png);
    assert_eq!(
        decode_rgb_reduced(&png, name, &limits, 256)
            .unwrap()
            .dimensions(),
        (30, 20)
    );
}

/// The same colours under five alpha channels: opaque, uniform 200, 100
/// and 0, and a ramp.
fn alpha_variants() -> Vec<image::RgbaImage> {
    let rgb = gradient(32, 24);
    let alphas: [&dyn Fn(u32, u32) -> u8; 5] =
        [&|_, _| 255, &|_, _| 200, &|_, _| 100, &|_, _| 0, &|x, _| {
            (x * 8) as u8
        }];
    alphas
        .iter()
        .map(|alpha| {
            image::RgbaImage::from_fn(32, 24, |x, y| {
                let [r, g, b] = rgb.get_pixel(x, y).0;
                image::Rgba([r, g, b, alpha(x, y)])
            })
        })
        .collect()
}

fn assert_pairwise_different<T: PartialEq>(items: &[T], what: &str) {
    for i in 0..items.len() {
        for j in i + 1..items.len() {
            assert!(items[i] != items[j], "{what} {i} and {j} are identical");
        }
    }
}

#[test]
fn images_differing_only_in_alpha_decode_to_different_pixels() {
    let variants = alpha_variants();
    let decoded: Vec<RgbImage> = variants
        .iter()
        .map(|v| {
            decode(&encode(
                &DynamicImage::ImageRgba8(v.clone()),
                ImageFormat::Png,
            ))
            .unwrap()
        })
        .collect();
    assert_pairwise_different(&decoded, "decoded images");
    // Straight alpha over the background, rounded: a·c + (1 − a)·bg.
    let c = gradient(32, 24).get_pixel(20, 10).0;
    for (img, a) in decoded.iter().zip([255u32, 200, 100, 0, 160]) {
        let want: Vec<u8> = (0..3)
            .map(|i| {
                let exact = (a * u32::from(c[i]) + (255 - a) * u32::from(ALPHA_BACKGROUND[i]))
                    as f64
                    / 255.0;
                exact.round() as u8
            })
            .collect();
        assert_eq!(img.get_pixel(20, 10).0.to_vec(), want, "alpha {a}");
    }
    // Fully transparent is the background everywhere.
    assert!(decoded[3].pixels().all(|p| p.0 == ALPHA_BACKGROUND));
    // 16-bit RGBA as well.
    let wide: Vec<RgbImage> = variants
        .iter()
        .map(|v| {
            let v16 = DynamicImage::ImageRgba8(v.clone()).to_rgba16();
            decode(&encode(&DynamicImage::ImageRgba16(v16), ImageFormat::Png)).unwrap()
        })
        .collect();
    assert_pairwise_different(&wide, "16-bit decoded images");
    // 8 and 16 bits composite to within one step of each other.
    for (a, b) in decoded.iter().zip(&wide) {
        for (p, q) in a.pixels().zip(b.pixels()) {
            for i in 0..3 {
                assert!(p[i].abs_diff(q[i]) <= 1, "{:?} vs {:?}", p.0, q.0);
            }
        }
    }
}

#[test]
fn opaque_alpha_decodes_exactly_like_no_alpha() {
    let rgb = gradient(32, 24);
    let plain = DynamicImage::ImageRgb8(rgb.clone());
    let opaque = DynamicImage::ImageRgba8(plain.to_rgba8());
    for f in [ImageFormat::Png, ImageFormat::Tiff, ImageFormat::WebP] {
        assert_eq!(
            decode(&encode(&opaque, f)).unwrap(),
            decode(&encode(&plain, f)).unwrap(),
            "{f:?}"
        );
    }
    assert_eq!(decode(&encode(&opaque, ImageFormat::Png)).unwrap(), rgb);
    // 16 bits: opaque RGBA16 as RGB16, values that do not sit on 257 steps.
    let rgb16 = image::ImageBuffer::from_fn(32, 24, |x, y| {
        Rgb([(x * 2047 + y * 13) as u16, (y * 2731) as u16, 40_000u16])
    });
    let rgba16 = image::ImageBuffer::from_fn(32, 24, |x, y| {
        let [r, g, b] = rgb16.get_pixel(x, y).0;
        image::Rgba([r, g, b, 65_535u16])
    });
    assert_eq!(
        decode(&encode(
            &DynamicImage::ImageRgba16(rgba16),
            ImageFormat::Png
        ))
        .unwrap(),
        decode(&encode(&DynamicImage::ImageRgb16(rgb16), ImageFormat::Png)).unwrap()
    );
}

#[test]
fn grey_with_alpha_is_composited_and_opaque_grey_alpha_is_plain_grey() {
    let grey = image::GrayImage::from_fn(20, 10, |x, y| image::Luma([(x * 12 + y) as u8]));
    let with_alpha = |alpha: u8| {
        DynamicImage::ImageLumaA8(image::GrayAlphaImage::from_fn(20, 10, |x, y| {
            image::LumaA([grey.get_pixel(x, y)[0], alpha])
        }))
    };
    let plain = decode(&encode(
        &DynamicImage::ImageLuma8(grey.clone()),
        ImageFormat::Png,
    ))
    .unwrap();
    assert_eq!(
        decode(&encode(&with_alpha(255), ImageFormat::Png)).unwrap(),
        plain
    );
    let decoded: Vec<RgbImage> = [255, 180, 90, 0]
        .map(|a| decode(&encode(&with_alpha(a), ImageFormat::Png)).unwrap())
        .to_vec();
    assert_pairwise_different(&decoded, "grey+alpha images");
    // Still grey: the background is grey.
    assert!(decoded
        .iter()
        .all(|img| img.pixels().all(|p| p[0] == p[1] && p[1] == p[2])));
    // 16-bit grey+alpha too.
    let la16 = DynamicImage::ImageLumaA16(image::ImageBuffer::from_fn(20, 10, |x, _| {
        image::LumaA([(x * 3000) as u16, 32_768u16])
    }));
    let img = decode(&encode(&la16, ImageFormat::Png)).unwrap();
    // (32768·15000 + 32767·257·128) / (65535·257) = 93.2
    assert_eq!(img.get_pixel(5, 0).0, [93, 93, 93]);
}

#[test]
fn a_gif_with_transparency_shows_the_background_where_transparent() {
    // Two colours, left half transparent: exact in a GIF palette.
    let frame = image::RgbaImage::from_fn(16, 8, |x, _| {
        if x < 8 {
            image::Rgba([200, 10, 10, 0])
        } else {
            image::Rgba([10, 200, 10, 255])
        }
    });
    let img = decode(&encode(&DynamicImage::ImageRgba8(frame), ImageFormat::Gif)).unwrap();
    assert_eq!(img.get_pixel(2, 3).0, ALPHA_BACKGROUND);
    assert_eq!(img.get_pixel(12, 3).0, [10, 200, 10]);
}

#[test]
fn images_differing_only_in_alpha_embed_to_different_vectors() {
    let embedder = PretrainedEmbedder::load(
        Backbone::Resnet18,
        Some(&WeightsSource::Synthetic { seed: 7 }),
    )
    .unwrap();
    let decoded: Vec<RgbImage> = alpha_variants()
        .into_iter()
        .map(|v| decode(&encode(&DynamicImage::ImageRgba8(v), ImageFormat::Png)).unwrap())
        .collect();
    let vectors = embedder.embed_images(&decoded).unwrap();
    assert_eq!(vectors.len(), 5);
    for i in 0..5 {
        for j in i + 1..5 {
            let d: f32 = vectors[i]
                .iter()
                .zip(&vectors[j])
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>()
                .sqrt();
            assert!(d > 1e-3, "vectors {i} and {j} are {d} apart");
        }
    }
}
