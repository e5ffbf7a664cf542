//! HEIC, AVIF, JPEG XL and DNG files made here from drawn images decode to
//! the drawn pixels (within a few levels), upright, alpha composited, at
//! any bit depth, whatever their names say; and a folder mixing every
//! format indexes without a failure, each image finding itself first.

mod common;
use common::formats;

use std::path::Path;

use image::{DynamicImage, Rgb, RgbImage, Rgba, RgbaImage};
use imgsim_embed::{decode_rgb, load::ALPHA_BACKGROUND, EmbedError, ImageLimits};

/// A smooth drawn image (gradients and a soft disc): what lossy coders
/// keep to within a few levels.
fn drawn(seed: u32, w: u32, h: u32) -> RgbImage {
    let s = seed as f32;
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let d = ((fx - 0.4).powi(2) + (fy - 0.6).powi(2)).sqrt();
        let disc = (1.0 - (d * 4.0).min(1.0)) * 90.0;
        Rgb([
            (30.0 + 150.0 * fx + disc + s * 7.0 % 40.0).min(255.0) as u8,
            (200.0 - 120.0 * fy + s * 13.0 % 30.0).min(255.0) as u8,
            (60.0 + 80.0 * (fx * fy) + disc * 0.5 + s * 3.0 % 50.0).min(255.0) as u8,
        ])
    })
}

/// Mean and largest absolute difference per sample.
fn diff(a: &RgbImage, b: &RgbImage) -> (f64, u8) {
    assert_eq!(a.dimensions(), b.dimensions(), "dimensions");
    let mut sum = 0u64;
    let mut max = 0u8;
    for (x, y) in a.as_raw().iter().zip(b.as_raw()) {
        let d = x.abs_diff(*y);
        sum += u64::from(d);
        max = max.max(d);
    }
    (sum as f64 / a.as_raw().len() as f64, max)
}

fn decode(bytes: &[u8], name: &str) -> Result<RgbImage, EmbedError> {
    decode_rgb(bytes, Path::new(name), &ImageLimits::default())
}

/// Decodes `bytes` and checks it against `want`: mean error under `mean`
/// levels, none over `max`.
fn assert_close(bytes: &[u8], name: &str, want: &RgbImage, mean: f64, max: u8) {
    let got = decode(bytes, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (m, x) = diff(&got, want);
    eprintln!("{name}: mean error {m:.2}, largest {x}");
    assert!(
        m < mean && x <= max,
        "{name}: mean error {m:.2}, largest {x}"
    );
}

/// `img` with an alpha ramp left to right (opaque at the right).
fn with_alpha(img: &RgbImage) -> RgbaImage {
    RgbaImage::from_fn(img.width(), img.height(), |x, y| {
        let [r, g, b] = img.get_pixel(x, y).0;
        Rgba([r, g, b, (x * 255 / (img.width() - 1)) as u8])
    })
}

/// `img` composited on imgsim's grey, as every format's alpha is.
fn on_grey(img: &RgbaImage) -> RgbImage {
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let [r, g, b, a] = img.get_pixel(x, y).0;
        let over = |c: u8, bg: u8| {
            ((u32::from(a) * u32::from(c) + (255 - u32::from(a)) * u32::from(bg) + 127) / 255) as u8
        };
        Rgb([
            over(r, ALPHA_BACKGROUND[0]),
            over(g, ALPHA_BACKGROUND[1]),
            over(b, ALPHA_BACKGROUND[2]),
        ])
    })
}

fn to16(img: &RgbImage) -> DynamicImage {
    DynamicImage::ImageRgb16(image::ImageBuffer::from_fn(
        img.width(),
        img.height(),
        |x, y| {
            let p = img.get_pixel(x, y).0;
            Rgb(p.map(|v| u16::from(v) * 257))
        },
    ))
}

#[test]
fn heic_8_and_10_bit_alpha_and_the_primary_of_two_images() {
    let src = drawn(1, 96, 64);
    assert_close(
        &formats::heic(&DynamicImage::ImageRgb8(src.clone())),
        "a.heic",
        &src,
        2.0,
        16,
    );
    let ten = formats::heic(&to16(&src));
    assert_close(&ten, "ten-bit.heic", &src, 2.0, 16);
    let rgba = with_alpha(&src);
    let alpha = formats::heic(&DynamicImage::ImageRgba8(rgba.clone()));
    assert_close(&alpha, "alpha.heic", &on_grey(&rgba), 2.0, 16);
    let other = drawn(2, 64, 96);
    let two = formats::heic_two(
        &DynamicImage::ImageRgb8(src.clone()),
        &DynamicImage::ImageRgb8(other),
    );
    assert_close(&two, "two.heic", &src, 2.0, 16);
}

#[test]
fn avif_8_10_12_bit_alpha_and_rotation() {
    let src = drawn(3, 96, 64);
    for depth in [8, 10, 12] {
        let input = if depth == 8 {
            DynamicImage::ImageRgb8(src.clone())
        } else {
            to16(&src)
        };
        let bytes = formats::avif(&input, depth, &[]);
        assert_close(&bytes, &format!("{depth}-bit.avif"), &src, 1.5, 8);
    }
    let rgba = with_alpha(&src);
    let alpha = formats::avif(&DynamicImage::ImageRgba8(rgba.clone()), 10, &[]);
    assert_close(&alpha, "alpha.avif", &on_grey(&rgba), 1.5, 8);
    // irot 1 turns it 90° anticlockwise; imir 1 mirrors left to right.
    let turned = formats::avif(&DynamicImage::ImageRgb8(src.clone()), 8, &["--irot", "1"]);
    let want = image::imageops::rotate270(&src);
    assert_close(&turned, "irot.avif", &want, 1.5, 8);
    let mirrored = formats::avif(&DynamicImage::ImageRgb8(src.clone()), 8, &["--imir", "1"]);
    assert_close(
        &mirrored,
        "imir.avif",
        &image::imageops::flip_horizontal(&src),
        1.5,
        8,
    );
}

#[test]
fn jpeg_xl_lossless_16_bit_alpha_and_exif_orientation() {
    let src = drawn(4, 96, 64);
    assert_close(
        &formats::jxl(&DynamicImage::ImageRgb8(src.clone())),
        "a.jxl",
        &src,
        0.01,
        1,
    );
    assert_close(&formats::jxl(&to16(&src)), "sixteen.jxl", &src, 0.01, 1);
    let rgba = with_alpha(&src);
    let alpha = formats::jxl(&DynamicImage::ImageRgba8(rgba.clone()));
    assert_close(&alpha, "alpha.jxl", &on_grey(&rgba), 0.01, 1);
    // A JPEG with EXIF orientation 6, recompressed: upright like the JPEG.
    let mut jpeg = Vec::new();
    DynamicImage::ImageRgb8(src.clone())
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let jpeg = with_exif_orientation(&jpeg, 6);
    let upright = decode(&jpeg, "turned.jpg").unwrap();
    assert_eq!(upright.dimensions(), (64, 96));
    assert_close(
        &formats::jxl_from_jpeg(&jpeg),
        "turned.jxl",
        &upright,
        1.0,
        8,
    );
}

/// `jpeg` with an EXIF block whose orientation tag is `o`.
fn with_exif_orientation(jpeg: &[u8], o: u16) -> Vec<u8> {
    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&274u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&u32::from(o).to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
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
fn dng_develops_to_the_drawn_image_and_turns_upright() {
    let src = drawn(5, 96, 64);
    assert_close(&formats::dng(&src, 1), "a.dng", &src, 1.5, 6);
    // Orientation 6: stored turned, shown 90° clockwise.
    let turned = formats::dng(&src, 6);
    assert_close(
        &turned,
        "turned.dng",
        &image::imageops::rotate90(&src),
        1.5,
        6,
    );
}

#[test]
fn the_content_decides_not_the_name() {
    let src = drawn(6, 64, 48);
    let img = DynamicImage::ImageRgb8(src.clone());
    let files = [
        ("really-heic.jpg", formats::heic(&img)),
        ("really-avif.png", formats::avif(&img, 8, &[])),
        ("really-jxl.heic", formats::jxl(&img)),
        ("really-dng.tif", formats::dng(&src, 1)),
        ("no-extension", formats::avif(&img, 10, &[])),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let got = imgsim_embed::load_rgb(&path, &ImageLimits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (m, _) = diff(&got, &src);
        assert!(m < 2.0, "{name}: mean error {m:.2}");
    }
}

/// A folder of every format: each file `seed.ext`, distinct pictures.
fn mixed_folder(dir: &Path) -> Vec<(String, u32)> {
    let mut files = Vec::new();
    let mut add = |name: String, bytes: Vec<u8>, seed: u32| {
        std::fs::write(dir.join(&name), bytes).unwrap();
        files.push((name, seed));
    };
    let pic = |seed| common::picture(seed, 96, 80);
    let dynamic = |seed| DynamicImage::ImageRgb8(common::picture(seed, 96, 80));
    for (seed, format) in [
        (40, image::ImageFormat::Jpeg),
        (41, image::ImageFormat::Png),
        (42, image::ImageFormat::WebP),
        (43, image::ImageFormat::Gif),
        (44, image::ImageFormat::Bmp),
        (45, image::ImageFormat::Tiff),
    ] {
        let mut out = Vec::new();
        dynamic(seed)
            .write_to(&mut std::io::Cursor::new(&mut out), format)
            .unwrap();
        add(format!("{seed}.{}", format.extensions_str()[0]), out, seed);
    }
    add("46.heic".into(), formats::heic(&dynamic(46)), 46);
    add("47.avif".into(), formats::avif(&dynamic(47), 10, &[]), 47);
    add("48.jxl".into(), formats::jxl(&dynamic(48)), 48);
    add("49.dng".into(), formats::dng(&pic(49), 1), 49);
    // Named as another format, and without a name that says anything.
    add("50.jpg".into(), formats::heic(&dynamic(50)), 50);
    add("51".into(), formats::avif(&dynamic(51), 12, &[]), 51);
    files
}

#[test]
fn a_folder_of_every_format_indexes_without_failure_and_each_finds_itself() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let photos = cwd.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let files = mixed_folder(&photos);
    let data = cwd.join("data");
    let o = common::index_photos(cwd, &data, &photos, &["--json"]);
    assert!(o.status.success(), "{}", common::text(&o));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["failed"], 0, "{s}");
    assert_eq!(s["indexed"], files.len(), "{s}");
    // The format recorded is the content's.
    let c = imgsim_pipeline::open(&data.join("default"), &Default::default()).unwrap();
    let formats_seen: std::collections::BTreeMap<String, String> = c
        .items()
        .unwrap()
        .into_iter()
        .map(|(_, m)| {
            let name = Path::new(&m.external_id)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, m.attrs["format"].as_str().unwrap().to_string())
        })
        .collect();
    for (name, want) in [
        ("46.heic", "heif"),
        ("47.avif", "avif"),
        ("48.jxl", "jxl"),
        ("49.dng", "dng"),
        ("50.jpg", "heif"),
        ("51", "avif"),
        ("45.tiff", "tiff"),
    ] {
        assert_eq!(formats_seen[name], want, "{name}: {formats_seen:?}");
    }
    // Each has its thumbnail (the service's grid and result pages),
    // decoded by the same path, upright and of the right shape.
    let thumbs =
        imgsim_pipeline::thumbnails::Thumbnails::new(&data.join("default"), imgsim_common::local());
    for (id, m) in c.items().unwrap() {
        let jpeg = thumbs
            .get(&c, id, &ImageLimits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", m.external_id));
        let t = image::load_from_memory(&jpeg).unwrap();
        assert_eq!(
            (t.width(), t.height()),
            imgsim_pipeline::thumbnails::thumbnail_size(
                96,
                80,
                imgsim_pipeline::thumbnails::THUMB_SIDE
            ),
            "{}",
            m.external_id
        );
    }
    drop(c);
    for (name, _) in &files {
        let q = photos.join(name);
        let o = common::imgsim(
            &[
                "--data-dir",
                data.to_str().unwrap(),
                "query",
                q.to_str().unwrap(),
                "-k",
                "3",
                "--exact",
                "--json",
            ],
            cwd,
        );
        assert!(o.status.success(), "{name}: {}", common::text(&o));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let top = r["results"][0]["path"].as_str().unwrap();
        assert!(top.ends_with(&format!("/{name}")), "{name}: first is {top}");
    }
}

#[test]
fn a_decoder_that_crashes_or_hangs_fails_its_file_and_the_index_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let photos = cwd.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let files = mixed_folder(&photos);
    let errors = cwd.join("errors.json");
    let data = cwd.join("data");
    for (fault, file, says) in [
        ("crash", "46.heic", "killed by signal 11 (SIGSEGV"),
        ("hang", "48.jxl", "took longer than 2 s"),
        ("hog", "49.dng", "over its memory bound"),
    ] {
        let started = std::time::Instant::now();
        let o = common::index_command(
            cwd,
            &data,
            &photos,
            &["--json", "--errors", errors.to_str().unwrap()],
        )
        .env(imgsim_embed::isolate::FAULT_ENV, format!("{fault}:/{file}"))
        .env("IMGSIM_LIMITS_MAX_DECODE_SECONDS", "2")
        // A 384 MiB memory bound for the decoder process.
        .env("IMGSIM_LIMITS_MAX_DECODED_BYTES", (64u64 << 20).to_string())
        .output()
        .unwrap();
        assert_eq!(o.status.code(), Some(3), "{fault}: {}", common::text(&o));
        assert!(
            started.elapsed().as_secs() < 60,
            "{fault}: {:?}",
            started.elapsed()
        );
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(s["failed"], 1, "{fault}: {s}");
        let failed: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&errors).unwrap()).unwrap();
        let e = &failed[0];
        assert!(
            e["path"].as_str().unwrap().ends_with(&format!("/{file}")),
            "{e}"
        );
        let msg = e["error"].as_str().unwrap();
        assert!(
            msg.contains("decoder failed") && msg.contains(says),
            "{fault}: {msg}"
        );
        // Every other file is in the collection.
        let c = imgsim_pipeline::open(&data.join("default"), &Default::default()).unwrap();
        assert_eq!(c.items().unwrap().len(), files.len() - 1, "{fault}");
        drop(c);
        std::fs::remove_dir_all(&data).unwrap();
    }
}
