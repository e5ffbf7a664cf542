//! Thumbnails of a collection's images: written by the indexer from the image
//! it decoded, or rendered on first request for older items (at most
//! [`THUMB_SIDE`] pixels a side, aspect ratio kept) and cached as
//! `<collection>/thumbs/<id>.jpg`, written through the storage seam.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;
use imgsim_common::Storage;
use imgsim_embed::{EmbedError, ImageLimits};
use imgsim_index::{Collection, IndexError, ItemMeta};

use crate::error::{PipelineError, Result};

/// Longest side of a thumbnail, pixels.
pub const THUMB_SIDE: u32 = 256;
/// Folder, inside a collection, of the cached thumbnails.
pub const THUMBS_DIR: &str = "thumbs";
/// JPEG quality of thumbnails.
const JPEG_QUALITY: u8 = 82;

/// The size of the thumbnail of a `width` × `height` image: both sides
/// scaled by min(1, `side` / max(width, height)), so the aspect ratio is
/// kept, nothing is enlarged, and no side is below 1 pixel.
pub fn thumbnail_size(width: u32, height: u32, side: u32) -> (u32, u32) {
    let (width, height, side) = (width.max(1), height.max(1), side.max(1));
    let longest = width.max(height);
    if longest <= side {
        return (width, height);
    }
    let scale = f64::from(side) / f64::from(longest);
    let scaled = |v: u32| ((f64::from(v) * scale).round() as u32).clamp(1, side);
    (scaled(width), scaled(height))
}

/// `img` reduced to fit in `side` × `side` (see [`thumbnail_size`]), with
/// the same antialiased resampler as the model input (box filter: each
/// pixel the mean of the area it covers).
pub fn render(img: &RgbImage, side: u32) -> RgbImage {
    let (w, h) = thumbnail_size(img.width(), img.height(), side);
    if (w, h) == img.dimensions() {
        return img.clone();
    }
    let px = imgsim_embed::resample::resize_rgb8(
        img.as_raw(),
        img.width() as usize,
        img.height() as usize,
        w as usize,
        h as usize,
        imgsim_embed::Interpolation::Box,
    );
    RgbImage::from_raw(w, h, px).expect("the resampler returns w·h·3 bytes")
}

/// `img` as a JPEG, by libjpeg-turbo's SIMD encoder (the pure-Rust one
/// in `image` took about 4% of indexing's CPU with MobileNetV4-small).
fn encode_jpeg(img: &RgbImage, id: u64) -> Result<Vec<u8>> {
    imgsim_embed::turbo::encode_rgb(img.as_raw(), img.width(), img.height(), JPEG_QUALITY)
        .ok_or_else(|| PipelineError::Io {
            path: PathBuf::from(THUMBS_DIR).join(format!("{id}.jpg")),
            source: io::Error::other("encoding the thumbnail failed"),
        })
}

/// The thumbnail of a decoded image, as a JPEG (None, logged, if it
/// cannot be encoded: the thumbnail is then made on first request).
pub fn jpeg_of(img: &RgbImage) -> Option<Vec<u8>> {
    encode_jpeg(&render(img, THUMB_SIDE), 0)
        .map_err(|e| tracing::warn!(error = %e, "could not encode a thumbnail"))
        .ok()
}

/// An embed error's message without the file path it starts with.
fn without_path(e: &EmbedError, path: &Path) -> String {
    let msg = e.to_string();
    let prefix = format!("{}: ", path.display());
    msg.strip_prefix(&prefix).unwrap_or(&msg).to_string()
}

/// The thumbnails of one collection.
#[derive(Debug, Clone)]
pub struct Thumbnails {
    collection_dir: PathBuf,
    dir: PathBuf,
    storage: Arc<dyn Storage>,
}

impl Thumbnails {
    /// The thumbnails of the collection in `collection_dir`, cached through
    /// `storage`.
    pub fn new(collection_dir: &Path, storage: Arc<dyn Storage>) -> Thumbnails {
        Thumbnails {
            collection_dir: collection_dir.to_path_buf(),
            dir: collection_dir.join(THUMBS_DIR),
            storage,
        }
    }

    /// Where the thumbnail of item `id` is cached.
    pub fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.jpg"))
    }

    /// The JPEG thumbnail of item `id`: the cached one, or one rendered from
    /// the item's image (an upload's stored bytes, a file item's file) and
    /// cached. Caching is best effort: a failed write is logged and the
    /// thumbnail still returned. An item that does not exist, or whose
    /// image cannot be read or decoded any more, is [`PipelineError::NotFound`]
    /// (the message names the item, never where the server keeps it).
    pub fn get(&self, collection: &Collection, id: u64, limits: &ImageLimits) -> Result<Vec<u8>> {
        if !collection.contains(id) {
            return Err(IndexError::NotFound(id).into());
        }
        if let Ok(b) = std::fs::read(self.path(id)) {
            return Ok(b);
        }
        let meta = collection.item(id)?;
        let img = self.load(&meta, id, limits)?;
        let out = encode_jpeg(&render(&img, THUMB_SIDE), id)?;
        if let Err(e) = self.store(id, &out) {
            tracing::warn!(id, error = %e, "could not cache a thumbnail");
        }
        // Deleted while it was rendered: its thumbnail must not outlive it.
        if !collection.contains(id) {
            let _ = self.remove(id);
        }
        Ok(out)
    }

    /// Reads and decodes (reduced) the image of item `id`.
    fn load(&self, meta: &ItemMeta, id: u64, limits: &ImageLimits) -> Result<RgbImage> {
        let source = crate::uploads::image_file(&self.collection_dir, meta);
        let gone = |why: String| {
            PipelineError::NotFound(format!(
                "{id} ({}): its image cannot be read any more: {why}",
                meta.external_id
            ))
        };
        let bytes = imgsim_embed::load::read_limited(&source, limits)
            .map_err(|e| gone(without_path(&e, &source)))?;
        imgsim_embed::decode_rgb_reduced(&bytes, &source, limits, THUMB_SIDE)
            .map_err(|e| gone(without_path(&e, &source)))
    }

    /// Caches `jpeg` as the thumbnail of `id`.
    fn store(&self, id: u64, jpeg: &[u8]) -> io::Result<()> {
        self.storage.create_dir_all(&self.dir)?;
        self.storage.write(&self.path(id), jpeg)
    }

    /// Stores the thumbnails of items just committed (`None`: none made).
    /// Best effort, like caching: a failed write is logged (the thumbnail
    /// is then made on first request) and the rest are still written.
    pub fn store_batch(&self, thumbs: impl IntoIterator<Item = (u64, Option<Vec<u8>>)>) {
        let mut made_dir = false;
        for (id, jpeg) in thumbs {
            let Some(jpeg) = jpeg else { continue };
            if !made_dir {
                if let Err(e) = self.storage.create_dir_all(&self.dir) {
                    tracing::warn!(error = %e, "could not create the thumbnails folder");
                    return;
                }
                made_dir = true;
            }
            if let Err(e) = self.storage.write(&self.path(id), &jpeg) {
                tracing::warn!(id, error = %e, "could not write a thumbnail");
            }
        }
    }

    /// Removes the thumbnails of `ids` (deleted items); a failure is
    /// logged, and the next sweep removes what is left.
    pub fn remove_all(&self, ids: &[u64]) {
        for &id in ids {
            if let Err(e) = self.remove(id) {
                tracing::warn!(id, error = %e, "could not remove a deleted item's thumbnail; the next sweep will");
            }
        }
    }

    /// Removes the cached thumbnail of `id`, if there is one.
    pub fn remove(&self, id: u64) -> io::Result<()> {
        match self.storage.remove_file(&self.path(id)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Removes what no live item needs: thumbnails of deleted items (a
    /// crash between a delete and its file removal leaves one) and
    /// temporaries of interrupted writes. Other files are left alone.
    /// Returns how many files were removed.
    pub fn sweep(&self, collection: &Collection) -> io::Result<usize> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let path = entry?.path();
            let stale = imgsim_common::storage::is_temp(&path)
                || path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".jpg"))
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|id| !collection.contains(id));
            if stale {
                self.storage.remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use imgsim_index::NewItem;

    use super::*;

    #[test]
    fn thumbnails_keep_the_aspect_ratio_and_never_enlarge() {
        assert_eq!(thumbnail_size(80, 64, 256), (80, 64));
        assert_eq!(thumbnail_size(256, 256, 256), (256, 256));
        assert_eq!(thumbnail_size(512, 512, 256), (256, 256));
        assert_eq!(thumbnail_size(1, 5000, 256), (1, 256));
        assert_eq!(thumbnail_size(0, 0, 256), (1, 1));
        for ((w, h), (tw, th)) in [((1000, 200), (256, 51)), ((200, 1000), (51, 256))] {
            let (gw, gh) = thumbnail_size(w, h, 256);
            assert!(
                gw.abs_diff(tw) <= 1 && gh.abs_diff(th) <= 1,
                "{w}x{h} -> {gw}x{gh}"
            );
        }
    }

    fn save_png(path: &Path, w: u32, h: u32) {
        image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        })
        .save(path)
        .unwrap();
    }

    /// Regression: the width was capped at 256 but the height scaled by
    /// 256 / width, so an 80 × 64 image got an 80 × 205 thumbnail.
    #[test]
    fn regression_rendered_thumbnails_have_the_image_s_proportions() {
        let dir = tempfile::tempdir().unwrap();
        let cdir = dir.path().join("c");
        let c = crate::testing::collection_2d(&cdir);
        let thumbs = Thumbnails::new(&cdir, imgsim_common::local());
        let limits = ImageLimits::default();
        for (i, (w, h), (tw, th)) in [
            (0u32, (80, 64), (80, 64)),
            (1, (1000, 200), (256, 51)),
            (2, (200, 1000), (51, 256)),
        ] {
            let file = dir.path().join(format!("{i}.png"));
            save_png(&file, w, h);
            let ids = c
                .insert(vec![NewItem {
                    vector: vec![i as f32, 1.0],
                    meta: ItemMeta::new(file.to_str().unwrap(), crate::indexer::SOURCE_FILE),
                }])
                .unwrap();
            let jpeg = thumbs.get(&c, ids[0], &limits).unwrap();
            let t = image::load_from_memory(&jpeg).unwrap();
            assert!(
                t.width().abs_diff(tw) <= 1 && t.height().abs_diff(th) <= 1,
                "{w}x{h} gave a {}x{} thumbnail",
                t.width(),
                t.height()
            );
            assert!(thumbs.path(ids[0]).exists(), "cached");
            // The cached one is served the second time.
            assert_eq!(thumbs.get(&c, ids[0], &limits).unwrap(), jpeg);
        }
    }

    #[test]
    fn missing_items_and_images_are_not_found_and_sweeps_remove_stale_thumbnails() {
        let dir = tempfile::tempdir().unwrap();
        let cdir = dir.path().join("c");
        let c = crate::testing::collection_2d(&cdir);
        let thumbs = Thumbnails::new(&cdir, imgsim_common::local());
        let limits = ImageLimits::default();
        let file = dir.path().join("a.png");
        save_png(&file, 30, 20);
        let ids = c
            .insert(
                (0..2)
                    .map(|i| NewItem {
                        vector: vec![i as f32, 1.0],
                        meta: ItemMeta::new(file.to_str().unwrap(), crate::indexer::SOURCE_FILE),
                    })
                    .collect(),
            )
            .unwrap();
        let e = thumbs.get(&c, 999, &limits).unwrap_err();
        assert_eq!(e.kind(), imgsim_common::ErrorKind::NotFound);
        thumbs.get(&c, ids[0], &limits).unwrap();
        std::fs::remove_file(&file).unwrap();
        let e = thumbs.get(&c, ids[1], &limits).unwrap_err();
        assert_eq!(e.kind(), imgsim_common::ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("cannot be read any more"), "{e}");
        // A deleted item's thumbnail (a crash before its removal) and a
        // temporary go; a live item's thumbnail and foreign files stay.
        c.delete(&[ids[0]]).unwrap();
        std::fs::write(thumbs.path(ids[1]), b"jpeg").unwrap();
        let tmp = imgsim_common::storage::temp_path(&thumbs.path(7));
        std::fs::write(&tmp, b"half").unwrap();
        std::fs::write(cdir.join(THUMBS_DIR).join("notes.txt"), b"mine").unwrap();
        assert_eq!(thumbs.sweep(&c).unwrap(), 2);
        assert!(!thumbs.path(ids[0]).exists() && !tmp.exists());
        assert!(thumbs.path(ids[1]).exists());
        assert!(cdir.join(THUMBS_DIR).join("notes.txt").exists());
    }
}
