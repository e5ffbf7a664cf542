//! Recognising an image format by its content (magic bytes, the ISO-BMFF
//! brand, DNG's TIFF tag), never by the file's name.

use image::ImageFormat;

/// An image format imgsim decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// JPEG (JFIF, EXIF).
    Jpeg,
    /// PNG.
    Png,
    /// WebP, lossy or lossless.
    WebP,
    /// GIF (the first frame).
    Gif,
    /// BMP.
    Bmp,
    /// TIFF (not a DNG: see [`Format::Dng`]).
    Tiff,
    /// HEIF with HEVC images (HEIC, as iPhones save), the primary image.
    Heif,
    /// AVIF (HEIF with AV1 images), 8, 10 or 12 bits, with alpha.
    Avif,
    /// JPEG XL, bare codestream or container.
    JpegXl,
    /// DNG, the open raw format (a TIFF with a `DNGVersion` tag).
    Dng,
}

impl Format {
    /// Every format, in the order the documentation lists them.
    pub const ALL: [Format; 10] = [
        Format::Jpeg,
        Format::Png,
        Format::WebP,
        Format::Gif,
        Format::Bmp,
        Format::Tiff,
        Format::Heif,
        Format::Avif,
        Format::JpegXl,
        Format::Dng,
    ];

    /// A short lower-case name, as stored in an item's `format` attribute:
    /// `jpeg`, `png`, `webp`, `gif`, `bmp`, `tiff`, `heif`, `avif`, `jxl`, `dng`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::WebP => "webp",
            Format::Gif => "gif",
            Format::Bmp => "bmp",
            Format::Tiff => "tiff",
            Format::Heif => "heif",
            Format::Avif => "avif",
            Format::JpegXl => "jxl",
            Format::Dng => "dng",
        }
    }

    /// The usual file extension (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Heif => "heic",
            Format::JpegXl => "jxl",
            other => other.name(),
        }
    }

    /// The name people know it by: `JPEG`, `WebP`, `JPEG XL`...
    pub fn label(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::WebP => "WebP",
            Format::Gif => "GIF",
            Format::Bmp => "BMP",
            Format::Tiff => "TIFF",
            Format::Heif => "HEIC/HEIF",
            Format::Avif => "AVIF",
            Format::JpegXl => "JPEG XL",
            Format::Dng => "DNG",
        }
    }

    /// Whether this format is decoded in a child process under a time and
    /// memory bound (see [`crate::isolate`]): those decoded by C libraries
    /// new to imgsim (libheif, LibRaw) and JPEG XL.
    pub fn is_isolated(self) -> bool {
        matches!(
            self,
            Format::Heif | Format::Avif | Format::JpegXl | Format::Dng
        )
    }

    /// The `image` crate's format, for those it decodes.
    pub(crate) fn image_format(self) -> Option<ImageFormat> {
        match self {
            Format::Jpeg => Some(ImageFormat::Jpeg),
            Format::Png => Some(ImageFormat::Png),
            Format::WebP => Some(ImageFormat::WebP),
            Format::Gif => Some(ImageFormat::Gif),
            Format::Bmp => Some(ImageFormat::Bmp),
            Format::Tiff => Some(ImageFormat::Tiff),
            Format::Heif | Format::Avif | Format::JpegXl | Format::Dng => None,
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// What the leading bytes of some content are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    /// A format imgsim decodes.
    Image(Format),
    /// A recognised image format imgsim does not decode (ICO, PNM...), by name.
    Unsupported(String),
    /// No image signature.
    Unknown,
}

/// How many leading bytes [`detect`] needs to tell every format apart,
/// except a DNG from a TIFF, which takes the whole first IFD (a few hundred
/// bytes): with less, a DNG is taken for a TIFF.
pub const SNIFF_BYTES: usize = 64;

/// Classifies `bytes` by content: ISO-BMFF `ftyp` brands for HEIF and
/// AVIF, the JPEG XL signatures, a `DNGVersion` tag in a TIFF's first IFD
/// for DNG, and the `image` crate's magic bytes for the rest.
pub fn detect(bytes: &[u8]) -> Detected {
    if let Some(f) = bmff_format(bytes) {
        return f;
    }
    if bytes.starts_with(&[0xFF, 0x0A])
        || bytes.starts_with(&[
            0, 0, 0, 0x0C, b'J', b'X', b'L', b' ', 0x0D, 0x0A, 0x87, 0x0A,
        ])
    {
        return Detected::Image(Format::JpegXl);
    }
    match image::guess_format(bytes) {
        Ok(ImageFormat::Tiff) if is_dng(bytes) => Detected::Image(Format::Dng),
        Ok(f) => match Format::ALL.iter().find(|k| k.image_format() == Some(f)) {
            Some(&k) => Detected::Image(k),
            None => Detected::Unsupported(format!("{f:?}")),
        },
        Err(_) => Detected::Unknown,
    }
}

/// Brands of HEIF files whose images are HEVC (or unspecified: `mif1`).
const HEIF_BRANDS: [&[u8; 4]; 10] = [
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1",
];
/// Brands of AVIF files (still image, image sequence).
const AVIF_BRANDS: [&[u8; 4]; 2] = [b"avif", b"avis"];

/// HEIF or AVIF from an ISO-BMFF `ftyp` box: the major brand decides, then
/// the compatible brands (AVIF before HEIF, as `mif1` is in both). `None`
/// when this is no `ftyp` box; `Unknown` for other ISO-BMFF files (MP4
/// video, Canon CR3).
fn bmff_format(bytes: &[u8]) -> Option<Detected> {
    if bytes.len() < 12 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let major: &[u8] = &bytes[8..12];
    let end = size.clamp(16, bytes.len().max(16)).min(bytes.len());
    let compatible: Vec<&[u8]> = bytes.get(16..end).unwrap_or(&[]).chunks_exact(4).collect();
    let is = |set: &[&[u8; 4]], b: &[u8]| set.iter().any(|s| s.as_slice() == b);
    let found = if is(&AVIF_BRANDS, major) {
        Some(Format::Avif)
    } else if is(&HEIF_BRANDS, major) && major != b"mif1" && major != b"msf1" {
        Some(Format::Heif)
    } else if compatible.iter().any(|b| is(&AVIF_BRANDS, b)) {
        Some(Format::Avif)
    } else if is(&HEIF_BRANDS, major) || compatible.iter().any(|b| is(&HEIF_BRANDS, b)) {
        Some(Format::Heif)
    } else {
        None
    };
    Some(found.map_or(Detected::Unknown, Detected::Image))
}

/// The TIFF tag every DNG carries in its first IFD.
const DNG_VERSION_TAG: u16 = 50706;

/// A TIFF IFD entry: tag, type, count, offset of its value field.
type Entry = (u16, u16, u32, usize);

/// A little reader of TIFF structure, for what must be known before a
/// decoder runs: reads only what is there.
struct Tiff<'a> {
    bytes: &'a [u8],
    le: bool,
}

impl<'a> Tiff<'a> {
    fn new(bytes: &'a [u8]) -> Option<Self> {
        let le = match bytes.get(..4) {
            Some(b"II*\0") => true,
            Some(b"MM\0*") => false,
            _ => return None,
        };
        Some(Tiff { bytes, le })
    }

    fn u16_at(&self, i: usize) -> Option<u16> {
        let b: [u8; 2] = self.bytes.get(i..i.checked_add(2)?)?.try_into().ok()?;
        Some(if self.le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }

    fn u32_at(&self, i: usize) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(i..i.checked_add(4)?)?.try_into().ok()?;
        Some(if self.le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    /// The entries of the IFD at `at`: (tag, type, count, offset of the
    /// value field), and the offset of the next IFD (0 for none).
    fn ifd(&self, at: usize) -> Option<(Vec<Entry>, usize)> {
        let n = usize::from(self.u16_at(at)?);
        let mut entries = Vec::with_capacity(n.min(512));
        for i in 0..n {
            let e = at + 2 + 12 * i;
            entries.push((
                self.u16_at(e)?,
                self.u16_at(e + 2)?,
                self.u32_at(e + 4)?,
                e + 8,
            ));
        }
        let next = self.u32_at(at + 2 + 12 * n).unwrap_or(0) as usize;
        Some((entries, next))
    }

    /// A SHORT or LONG value (the first of its array).
    fn value(&self, ty: u16, field: usize) -> Option<u64> {
        match ty {
            3 => self.u16_at(field).map(u64::from),
            4 => self.u32_at(field).map(u64::from),
            _ => None,
        }
    }
}

/// Whether a TIFF's first IFD holds a `DNGVersion` tag. Reads only what is
/// there: a truncated IFD is no DNG.
fn is_dng(bytes: &[u8]) -> bool {
    let Some(t) = Tiff::new(bytes) else {
        return false;
    };
    // The entries present, even if the IFD is cut short.
    let Some(ifd) = t.u32_at(4).map(|o| o as usize) else {
        return false;
    };
    let Some(n) = t.u16_at(ifd) else {
        return false;
    };
    (0..usize::from(n)).any(|i| t.u16_at(ifd + 2 + 12 * i) == Some(DNG_VERSION_TAG))
}

/// The largest width and height a TIFF (a DNG) declares in its IFDs and
/// their SubIFDs (where a DNG keeps its raw image), read before any decoder
/// runs; `None` when the structure cannot be read.
pub(crate) fn tiff_declared_size(bytes: &[u8]) -> Option<(u64, u64)> {
    const WIDTH: u16 = 256;
    const HEIGHT: u16 = 257;
    const SUB_IFDS: u16 = 330;
    let t = Tiff::new(bytes)?;
    let mut todo = vec![t.u32_at(4)? as usize];
    let (mut w, mut h, mut seen) = (0u64, 0u64, 0usize);
    while let Some(at) = todo.pop() {
        seen += 1;
        if at == 0 || seen > 64 {
            continue;
        }
        let (entries, next) = t.ifd(at)?;
        for (tag, ty, count, field) in entries {
            match tag {
                WIDTH => w = w.max(t.value(ty, field)?),
                HEIGHT => h = h.max(t.value(ty, field)?),
                SUB_IFDS => {
                    let list = if count == 1 {
                        field
                    } else {
                        t.u32_at(field)? as usize
                    };
                    for i in 0..(count as usize).min(16) {
                        todo.push(t.u32_at(list + 4 * i)? as usize);
                    }
                }
                _ => {}
            }
        }
        todo.push(next);
    }
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let mut b = ((16 + 4 * compatible.len()) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(b"ftyp");
        b.extend_from_slice(major);
        b.extend_from_slice(&[0; 4]);
        for c in compatible {
            b.extend_from_slice(*c);
        }
        b.extend_from_slice(&[0, 0, 0, 8, b'm', b'e', b't', b'a']);
        b
    }

    #[test]
    fn iso_bmff_brands_decide_heif_and_avif() {
        let img = |f| Detected::Image(f);
        assert_eq!(
            detect(&ftyp(b"heic", &[b"mif1", b"heic"])),
            img(Format::Heif)
        );
        assert_eq!(detect(&ftyp(b"mif1", &[b"heic"])), img(Format::Heif));
        assert_eq!(
            detect(&ftyp(b"avif", &[b"mif1", b"miaf"])),
            img(Format::Avif)
        );
        assert_eq!(
            detect(&ftyp(b"mif1", &[b"mif1", b"avif"])),
            img(Format::Avif)
        );
        assert_eq!(detect(&ftyp(b"avis", &[])), img(Format::Avif));
        // MP4 video and Canon CR3 are ISO-BMFF too, but no image we decode.
        assert_eq!(detect(&ftyp(b"isom", &[b"mp41"])), Detected::Unknown);
        assert_eq!(detect(&ftyp(b"crx ", &[b"crx "])), Detected::Unknown);
    }

    #[test]
    fn jpeg_xl_dng_and_the_rest_by_magic_bytes() {
        assert_eq!(detect(&[0xFF, 0x0A, 0xFA]), Detected::Image(Format::JpegXl));
        let container = [
            0, 0, 0, 0x0C, b'J', b'X', b'L', b' ', 0x0D, 0x0A, 0x87, 0x0A, 0,
        ];
        assert_eq!(detect(&container), Detected::Image(Format::JpegXl));
        // A TIFF with one IFD entry: tag 256 (a plain TIFF) or 50706 (DNG).
        let tiff = |tag: u16| {
            let mut b = b"II*\0".to_vec();
            b.extend_from_slice(&8u32.to_le_bytes());
            b.extend_from_slice(&1u16.to_le_bytes());
            b.extend_from_slice(&tag.to_le_bytes());
            b.extend_from_slice(&[1, 0, 4, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0]);
            b
        };
        assert_eq!(detect(&tiff(256)), Detected::Image(Format::Tiff));
        assert_eq!(detect(&tiff(DNG_VERSION_TAG)), Detected::Image(Format::Dng));
        assert_eq!(
            detect(&tiff(DNG_VERSION_TAG)[..11]),
            Detected::Image(Format::Tiff)
        );
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n"), Detected::Image(Format::Png));
        assert_eq!(
            detect(&[0, 0, 1, 0, 1, 0, 16, 16]),
            Detected::Unsupported("Ico".into())
        );
        assert_eq!(detect(b"hello"), Detected::Unknown);
        for f in Format::ALL {
            assert_eq!(f.is_isolated(), f.image_format().is_none(), "{f}");
        }
    }
}
