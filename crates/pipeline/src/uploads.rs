//! Images added through the service (uploads): their bytes kept
//! content-addressed as `<collection>/uploads/<blake3>.<ext>`, the
//! idempotency table (blake3 → item), adding (embed, store, insert: the
//! same bytes twice give one item) and deleting items with their stored
//! bytes and thumbnails, crash-safely.
//!
//! The protocol, so that a crash at any point leaves neither an item
//! without its image nor a file nobody needs:
//!
//! - add: the bytes are stored (durably, through the storage seam) before
//!   the item that points at them is committed;
//! - delete: the item's removal is committed before its files are removed;
//! - open: a sweep removes upload files that no live item references (and
//!   temporaries of interrupted writes, and thumbnails of deleted items),
//!   which is all a crash between the two steps can leave.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use imgsim_common::Storage;
use imgsim_index::{Collection, IndexError, ItemMeta, NewItem};
use serde::Serialize;

use crate::error::{PipelineError, Result};
use crate::indexer::{ATTR_HASH, ATTR_SIZE, SOURCE_UPLOAD};
use crate::search::{embed_bytes_with_thumbnail, QueryEmbedder};
use crate::thumbnails::Thumbnails;

/// Folder, inside a collection, of the uploads' bytes.
pub const UPLOADS_DIR: &str = "uploads";
/// Item attribute of uploads: the stored file (`uploads/<blake3>.<ext>`;
/// older items hold an absolute path; only the file name is used).
pub const ATTR_FILE: &str = "file";

/// The image file of an item: an upload's stored bytes, or a file item's
/// file (its external id).
pub fn image_file(collection_dir: &Path, meta: &ItemMeta) -> PathBuf {
    stored_file(collection_dir, meta).unwrap_or_else(|| PathBuf::from(&meta.external_id))
}

/// Where an upload's bytes are kept (None for other items). Always inside
/// the collection's uploads folder, whatever the attribute says.
fn stored_file(collection_dir: &Path, meta: &ItemMeta) -> Option<PathBuf> {
    if meta.source != SOURCE_UPLOAD {
        return None;
    }
    let name = Path::new(meta.attrs.get(ATTR_FILE)?.as_str()?).file_name()?;
    Some(collection_dir.join(UPLOADS_DIR).join(name))
}

/// The blake3 of an upload item's bytes (None for other items).
fn upload_hash(meta: &ItemMeta) -> Option<&str> {
    if meta.source != SOURCE_UPLOAD {
        return None;
    }
    meta.attrs.get(ATTR_HASH)?.as_str()
}

/// True for a name an upload's bytes are stored under: 64 hex digits, a
/// dot, an extension.
fn hash_of_stored_name(name: &str) -> Option<&str> {
    let (hash, ext) = name.split_once('.')?;
    let ok = hash.len() == 64
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && !ext.is_empty()
        && ext.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then_some(hash)
}

/// `e` with a message that does not say where the collection is (an
/// upload's error is shown to clients), keeping its kind and OS code.
fn pathless(e: io::Error, collection_dir: &Path) -> io::Error {
    if let Some(code) = e.raw_os_error() {
        return io::Error::from_raw_os_error(code);
    }
    let dir = collection_dir.display().to_string();
    let msg = e.to_string();
    if dir.is_empty() || !msg.contains(&dir) {
        return e;
    }
    io::Error::new(e.kind(), msg.replace(&dir, "<collection>"))
}

/// An added upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Added {
    /// The item's id.
    pub id: u64,
    /// The name it is listed under (`upload:<file name>`).
    pub path: String,
    /// True when these bytes were already stored: `id` is the existing
    /// item's and nothing was added.
    pub existing: bool,
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    /// Upload files no live item referenced.
    pub uploads: usize,
    /// Temporaries of interrupted upload writes.
    pub temporaries: usize,
    /// Thumbnails of deleted items (and their temporaries).
    pub thumbnails: usize,
}

/// blake3 → the live upload items holding those bytes (one, unless the
/// collection was written by something that did not use this table).
type Table = HashMap<String, BTreeSet<u64>>;

/// The uploads of one collection: their stored bytes, the idempotency
/// table and the thumbnails. Its methods take the collection they belong
/// to; adds and deletes are serialised by the table's lock, so two
/// concurrent uploads of the same bytes give one item.
#[derive(Debug)]
pub struct Uploads {
    collection_dir: PathBuf,
    storage: Arc<dyn Storage>,
    table: Mutex<Table>,
    thumbnails: Thumbnails,
}

impl Uploads {
    /// Opens the uploads of `collection`: builds the table from its items'
    /// metadata, then sweeps (see [`Uploads::sweep`]; a failed sweep is
    /// logged, not fatal: it is retried on the next open).
    pub fn open(collection: &Collection, storage: Arc<dyn Storage>) -> Result<Uploads> {
        let mut table = Table::new();
        for (id, meta) in collection.items()? {
            if let Some(h) = upload_hash(&meta) {
                table.entry(h.to_string()).or_default().insert(id);
            }
        }
        let dir = collection.path().to_path_buf();
        let uploads = Uploads {
            thumbnails: Thumbnails::new(&dir, storage.clone()),
            collection_dir: dir,
            storage,
            table: Mutex::new(table),
        };
        match uploads.sweep(collection) {
            Ok(s) if s != Swept::default() => {
                tracing::info!(
                    uploads = s.uploads,
                    temporaries = s.temporaries,
                    thumbnails = s.thumbnails,
                    "removed files left by an interrupted add or delete"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweeping unreferenced upload files failed"),
        }
        Ok(uploads)
    }

    /// The collection's thumbnails.
    pub fn thumbnails(&self) -> &Thumbnails {
        &self.thumbnails
    }

    /// The folder of the uploads' bytes.
    pub fn dir(&self) -> PathBuf {
        self.collection_dir.join(UPLOADS_DIR)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live upload item holding the bytes whose blake3 is `hash` (hex).
    pub fn id_of(&self, collection: &Collection, hash: &str) -> Option<u64> {
        live(&self.lock(), collection, hash)
    }

    /// Adds an uploaded image: embeds it with the collection's embedder and
    /// inserts it, or answers with the existing item when these bytes are
    /// already stored (a client retrying an add whose answer it never got
    /// stores nothing twice). `name` is the client's file name; only its
    /// last component is kept.
    pub fn add(
        &self,
        collection: &Collection,
        embedder: &QueryEmbedder<'_>,
        bytes: &[u8],
        name: &str,
    ) -> Result<Added> {
        self.add_thumbnailed(collection, bytes, name, || {
            embed_bytes_with_thumbnail(
                embedder.embedder,
                embedder.record,
                bytes,
                Path::new(name),
                embedder.limits,
            )
        })
    }

    /// [`Uploads::add`] with the vector made by `vector` (called only when
    /// the bytes are new).
    pub fn add_with(
        &self,
        collection: &Collection,
        bytes: &[u8],
        name: &str,
        vector: impl FnOnce() -> Result<Vec<f32>>,
    ) -> Result<Added> {
        self.add_thumbnailed(collection, bytes, name, || vector().map(|v| (v, None)))
    }

    /// [`Uploads::add_with`], `vector` also giving the image's thumbnail
    /// (a JPEG), written once the item is committed (best effort, as the
    /// indexer writes its thumbnails).
    fn add_thumbnailed(
        &self,
        collection: &Collection,
        bytes: &[u8],
        name: &str,
        vector: impl FnOnce() -> Result<(Vec<f32>, Option<Vec<u8>>)>,
    ) -> Result<Added> {
        let hash = blake3::hash(bytes).to_hex().to_string();
        if let Some(added) = self.existing(collection, &self.lock(), &hash)? {
            return Ok(added);
        }
        // The model runs without the lock: adds of other images go on.
        let (v, thumbnail) = vector()?;
        let shown = Path::new(name)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("upload");
        let mut meta = ItemMeta::new(format!("upload:{shown}"), SOURCE_UPLOAD);
        meta.attrs.insert(ATTR_HASH.into(), hash.clone().into());
        meta.attrs
            .insert(ATTR_SIZE.into(), (bytes.len() as u64).into());
        // Held from the check to the insert: the same bytes uploaded twice
        // at once give one item.
        let mut table = self.lock();
        if let Some(added) = self.existing(collection, &table, &hash)? {
            return Ok(added);
        }
        let file = self.store(bytes, &hash)?;
        let file_name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        meta.attrs.insert(
            ATTR_FILE.into(),
            format!("{UPLOADS_DIR}/{file_name}").into(),
        );
        let ids = match collection.insert(vec![NewItem {
            vector: v,
            meta: meta.clone(),
        }]) {
            Ok(ids) => ids,
            Err(e) => {
                // No live item has these bytes (checked under the lock): the
                // file is nobody's. (Left behind, the next sweep removes it.)
                let _ = self.storage.remove_file(&file);
                return Err(e.into());
            }
        };
        let id = ids[0];
        table.entry(hash).or_default().insert(id);
        // Under the lock: a delete of this item waits, then removes it.
        self.thumbnails.store_batch([(id, thumbnail)]);
        Ok(Added {
            id,
            path: meta.external_id,
            existing: false,
        })
    }

    /// The answer for bytes already stored (None when they are not).
    fn existing(
        &self,
        collection: &Collection,
        table: &Table,
        hash: &str,
    ) -> Result<Option<Added>> {
        let Some(id) = live(table, collection, hash) else {
            return Ok(None);
        };
        match collection.item(id) {
            Ok(m) => Ok(Some(Added {
                id,
                path: m.external_id,
                existing: true,
            })),
            Err(IndexError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores `bytes` as `uploads/<hash>.<ext>` (durably: temporary file,
    /// fsync, rename, folder fsync); bytes already there are kept.
    fn store(&self, bytes: &[u8], hash: &str) -> Result<PathBuf> {
        let ext = match imgsim_embed::format::detect(bytes) {
            imgsim_embed::format::Detected::Image(f) => f.extension(),
            _ => "img",
        };
        let name = format!("{hash}.{ext}");
        let rel = Path::new(UPLOADS_DIR).join(&name);
        let err = |e: io::Error| PipelineError::Io {
            path: rel.clone(),
            source: pathless(e, &self.collection_dir),
        };
        let dir = self.dir();
        self.storage.create_dir_all(&dir).map_err(err)?;
        let file = dir.join(&name);
        if !file.exists() {
            self.storage.write(&file, bytes).map_err(err)?;
        }
        Ok(file)
    }

    /// Deletes item `id` (any item, not only uploads); returns false when
    /// there is no such item. The delete is committed first; then an
    /// upload's stored bytes (unless another live item holds the same
    /// bytes) and the item's cached thumbnail are removed. A failure
    /// removing them is logged, not returned (the item is gone): the file
    /// is left to the next sweep.
    pub fn delete(&self, collection: &Collection, id: u64) -> Result<bool> {
        let mut table = self.lock();
        let meta = match collection.item(id) {
            Ok(m) => Some(m),
            Err(IndexError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let deleted = collection.delete(&[id])? > 0;
        // Committed: now the files.
        if let Some(meta) = meta.filter(|_| deleted) {
            if let Some(hash) = upload_hash(&meta) {
                if let Some(ids) = table.get_mut(hash) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        table.remove(hash);
                    }
                }
                let still_held = live(&table, collection, hash).is_some();
                if let (false, Some(file)) = (still_held, stored_file(&self.collection_dir, &meta))
                {
                    match self.storage.remove_file(&file) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => {
                            tracing::warn!(id, error = %e, "could not remove a deleted upload's bytes; the next sweep will")
                        }
                        _ => {}
                    }
                }
            }
        }
        drop(table);
        if let Err(e) = self.thumbnails.remove(id) {
            tracing::warn!(id, error = %e, "could not remove a deleted item's thumbnail; the next sweep will");
        }
        Ok(deleted)
    }

    /// Removes the files a crash can leave: upload files no live item
    /// references (a crash between storing the bytes and committing the
    /// item, or between committing a delete and removing the bytes),
    /// temporaries of interrupted writes, and thumbnails of deleted items.
    /// Files not named like the store's own are left alone.
    pub fn sweep(&self, collection: &Collection) -> Result<Swept> {
        let table = self.lock();
        let mut swept = Swept::default();
        let dir = self.dir();
        let err = |e: io::Error| PipelineError::Io {
            path: PathBuf::from(UPLOADS_DIR),
            source: pathless(e, &self.collection_dir),
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(rd) => Some(rd),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(err(e)),
        };
        for entry in entries.into_iter().flatten() {
            let path = entry.map_err(err)?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if imgsim_common::storage::is_temp(&path) {
                self.storage.remove_file(&path).map_err(err)?;
                swept.temporaries += 1;
            } else if let Some(hash) = hash_of_stored_name(name) {
                if live(&table, collection, &hash.to_ascii_lowercase()).is_none() {
                    self.storage.remove_file(&path).map_err(err)?;
                    swept.uploads += 1;
                }
            }
        }
        drop(table);
        swept.thumbnails = self
            .thumbnails
            .sweep(collection)
            .map_err(|e| PipelineError::Io {
                path: PathBuf::from(crate::thumbnails::THUMBS_DIR),
                source: pathless(e, &self.collection_dir),
            })?;
        Ok(swept)
    }
}

/// The first live item of `table` holding the bytes `hash`.
fn live(table: &Table, collection: &Collection, hash: &str) -> Option<u64> {
    table
        .get(hash)?
        .iter()
        .copied()
        .find(|&id| collection.contains(id))
}

#[cfg(test)]
mod tests {
    use imgsim_common::{FaultyFs, Op};

    use super::*;

    fn collection(dir: &Path) -> Collection {
        crate::testing::collection_2d(&dir.join("c"))
    }

    fn png(seed: u8) -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::from_fn(8, 6, |x, y| image::Rgb([seed, x as u8, y as u8]))
            .write_to(&mut io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn vector(x: f32) -> impl FnOnce() -> Result<Vec<f32>> {
        move || Ok(vec![x, 1.0])
    }

    #[test]
    fn the_same_bytes_twice_give_one_item_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let c = collection(dir.path());
        let up = Uploads::open(&c, imgsim_common::local()).unwrap();
        let bytes = png(1);
        let a = up
            .add_with(&c, &bytes, "../../etc/a.png", vector(1.0))
            .unwrap();
        assert!(!a.existing);
        assert_eq!(a.path, "upload:a.png", "only the file name is kept");
        let b = up
            .add_with(&c, &bytes, "other.png", || panic!("not embedded again"))
            .unwrap();
        assert_eq!(
            (b.id, b.existing, b.path.as_str()),
            (a.id, true, "upload:a.png")
        );
        let hash = blake3::hash(&bytes).to_hex().to_string();
        assert_eq!(files(&up.dir()), vec![format!("{hash}.png")]);
        assert_eq!(up.id_of(&c, &hash), Some(a.id));
        let meta = c.item(a.id).unwrap();
        assert_eq!(meta.attrs[ATTR_FILE], format!("uploads/{hash}.png"));
        assert_eq!(
            image_file(c.path(), &meta),
            up.dir().join(format!("{hash}.png"))
        );
        // The table is rebuilt from the items on open.
        drop(up);
        let up = Uploads::open(&c, imgsim_common::local()).unwrap();
        assert_eq!(up.id_of(&c, &hash), Some(a.id));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn concurrent_uploads_of_the_same_bytes_give_one_item() {
        let dir = tempfile::tempdir().unwrap();
        let c = collection(dir.path());
        let up = Uploads::open(&c, imgsim_common::local()).unwrap();
        let bytes = png(2);
        let answers: Vec<Added> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let (c, up, bytes) = (&c, &up, &bytes);
                    s.spawn(move || up.add_with(c, bytes, "x.png", vector(i as f32)).unwrap())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(c.len(), 1);
        assert!(answers.iter().all(|a| a.id == answers[0].id));
        assert_eq!(answers.iter().filter(|a| !a.existing).count(), 1);
    }

    /// Regression: deleting an upload left its bytes under uploads/ forever.
    #[test]
    fn regression_deleting_an_upload_removes_its_bytes_and_thumbnail() {
        let dir = tempfile::tempdir().unwrap();
        let c = collection(dir.path());
        let up = Uploads::open(&c, imgsim_common::local()).unwrap();
        let keep = up.add_with(&c, &png(3), "keep.png", vector(3.0)).unwrap();
        let gone = up.add_with(&c, &png(4), "gone.png", vector(4.0)).unwrap();
        up.thumbnails()
            .get(&c, gone.id, &imgsim_embed::ImageLimits::default())
            .unwrap();
        assert!(up.thumbnails().path(gone.id).exists());
        assert_eq!(files(&up.dir()).len(), 2);
        assert!(up.delete(&c, gone.id).unwrap());
        let left = files(&up.dir());
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].starts_with(&*blake3::hash(&png(3)).to_hex()));
        assert!(!up.thumbnails().path(gone.id).exists());
        assert!(!c.contains(gone.id) && c.contains(keep.id));
        assert!(!up.delete(&c, gone.id).unwrap(), "twice: no such item");
        // Uploaded again: a new item, its bytes stored again.
        let again = up.add_with(&c, &png(4), "gone.png", vector(4.0)).unwrap();
        assert!(!again.existing && again.id != gone.id);
        assert_eq!(files(&up.dir()).len(), 2);
    }

    #[test]
    fn a_crash_between_commit_and_file_removal_leaks_nothing_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let c = collection(dir.path());
        let fs = Arc::new(FaultyFs::new());
        let up = Uploads::open(&c, fs.clone()).unwrap();
        let a = up.add_with(&c, &png(5), "a.png", vector(5.0)).unwrap();
        let b = up.add_with(&c, &png(6), "b.png", vector(6.0)).unwrap();
        // The process "dies" at the first removal: the delete is committed,
        // the bytes stay.
        fs.fail(Some(Op::Remove), 0, 5, true);
        assert!(
            up.delete(&c, a.id).unwrap(),
            "the delete itself is committed"
        );
        assert!(fs.tripped());
        assert!(!c.contains(a.id));
        assert_eq!(files(&up.dir()).len(), 2, "the bytes are left behind");
        // A crash between storing bytes and committing their item, and a
        // torn temporary of an interrupted write.
        let orphan = format!("{}.png", blake3::hash(b"never committed").to_hex());
        std::fs::write(up.dir().join(&orphan), b"x").unwrap();
        let torn = imgsim_common::storage::temp_path(&up.dir().join(&orphan));
        std::fs::write(&torn, b"x").unwrap();
        std::fs::write(up.dir().join("README"), b"not ours").unwrap();
        // Restart.
        drop(up);
        fs.heal();
        let up = Uploads::open(&c, fs.clone()).unwrap();
        let hash_b = blake3::hash(&png(6)).to_hex().to_string();
        assert_eq!(
            files(&up.dir()),
            vec![format!("{hash_b}.png"), "README".to_string()]
        );
        assert_eq!(up.id_of(&c, &hash_b), Some(b.id));
        assert_eq!(
            up.sweep(&c).unwrap(),
            Swept::default(),
            "nothing left to sweep"
        );
    }

    #[test]
    fn a_failed_insert_or_store_leaves_no_file_and_no_item() {
        let dir = tempfile::tempdir().unwrap();
        let c = collection(dir.path());
        let fs = Arc::new(FaultyFs::new());
        let up = Uploads::open(&c, fs.clone()).unwrap();
        // A vector the collection refuses (wrong dimension).
        let e = up
            .add_with(&c, &png(7), "a.png", || Ok(vec![1.0, 2.0, 3.0]))
            .unwrap_err();
        assert_eq!(e.kind(), imgsim_common::ErrorKind::Invalid);
        assert!(files(&up.dir()).is_empty());
        // A full disk while storing the bytes.
        fs.fail(Some(Op::Write), 0, 28, false);
        let e = up.add_with(&c, &png(8), "b.png", vector(8.0)).unwrap_err();
        assert_eq!(e.kind(), imgsim_common::ErrorKind::StorageFull, "{e}");
        assert!(
            !e.to_string().contains(&*dir.path().to_string_lossy()),
            "{e}"
        );
        assert_eq!(c.len(), 0);
        fs.heal();
        assert_eq!(up.sweep(&c).unwrap().temporaries, 1, "the torn temporary");
        let ok = up.add_with(&c, &png(8), "b.png", vector(8.0)).unwrap();
        assert!(!ok.existing);
        assert_eq!(files(&up.dir()).len(), 1);
    }
}
