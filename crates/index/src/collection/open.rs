//! Creating and opening a collection, and clearing away what an
//! interrupted write left behind (the recovery half of the commit protocol).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use imgsim_common::Storage;

use crate::error::{IndexError, Result};
use crate::hnsw::AnnIndex;
use crate::segfile;
use crate::vectors::VectorSet;

use super::idmap::IdMap;
use super::keys::{id_of, manifest_bytes, ITEM, MANIFEST_KEY, TOMBSTONE, VECTOR};
use super::types::now_ms;
use super::{
    flush_through, Collection, CollectionSpec, Loc, Manifest, OpenOptions, Phase, Progress,
    SegmentRef, State, FORMAT_VERSION, SEGMENTS_DIR, SLED_DIR, SLED_STAGING_DIR,
};

/// How long an open waits for a lock released by a handle just dropped.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// sled's open errors in the caller's terms: read-only, locked, or other.
fn map_open_error(path: &Path, e: sled::Error) -> IndexError {
    if let sled::Error::Io(io) = &e {
        if io.kind() == std::io::ErrorKind::ReadOnlyFilesystem
            || io.kind() == std::io::ErrorKind::PermissionDenied
        {
            return IndexError::ReadOnly {
                path: path.to_path_buf(),
                reason: io.to_string(),
            };
        }
        let msg = io.to_string().to_ascii_lowercase();
        if io.kind() == std::io::ErrorKind::WouldBlock || msg.contains("lock") {
            return IndexError::Locked {
                path: path.to_path_buf(),
            };
        }
    }
    IndexError::Storage(e)
}

/// What the sled records of an opened collection hold, beyond its sealed
/// segments.
struct Records {
    /// The appendable segment.
    fresh: VectorSet,
    /// Deleted sealed items.
    tombstones: HashSet<u64>,
    /// Keys the manifest does not vouch for (see [`Collection::open`]).
    garbage: Vec<sled::IVec>,
}

impl Collection {
    /// Creates a new, empty collection in directory `path`, writing through
    /// the local file system.
    pub fn create(path: &Path, spec: CollectionSpec, options: OpenOptions) -> Result<Collection> {
        Self::create_with(path, spec, options, imgsim_common::local())
    }

    /// Creates a new, empty collection in directory `path`; every file
    /// write, rename, removal and fsync, and sled's flush, go through
    /// `storage`, for the life of the returned handle.
    pub fn create_with(
        path: &Path,
        spec: CollectionSpec,
        options: OpenOptions,
        storage: Arc<dyn Storage>,
    ) -> Result<Collection> {
        spec.params.validate()?;
        options.validate()?;
        if spec.dim == 0 {
            return Err(IndexError::InvalidParameter {
                name: "dim",
                reason: "must be at least 1, not 0".into(),
            });
        }
        if Self::exists(path) {
            return Err(IndexError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        storage.create_dir_all(&path.join(SEGMENTS_DIR))?;
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            spec: spec.clone(),
            next_id: 0,
            next_segment: 0,
            segments: Vec::new(),
            created_unix_ms: now_ms(),
            properties: BTreeMap::new(),
        };
        // The database is made under a staging name and renamed into place
        // once its manifest is durable: a creation killed half-way leaves no
        // `sled/` folder without a manifest (which would look like a
        // collection that cannot be opened), only a staging folder that the
        // next creation replaces.
        let staging = path.join(SLED_STAGING_DIR);
        if staging.exists() {
            storage.remove_dir_all(&staging)?;
        }
        {
            let db = Self::sled_config(&staging, &options)
                .open()
                .map_err(|e| map_open_error(path, e))?;
            db.insert(MANIFEST_KEY, manifest_bytes(&manifest))?;
            flush_through(&*storage, &db)?;
        }
        storage.rename(&staging, &path.join(SLED_DIR))?;
        let db = Self::open_db(path, &options)?;
        Ok(Collection {
            path: path.to_path_buf(),
            seg_dir: path.join(SEGMENTS_DIR),
            db,
            options,
            storage,
            state: RwLock::new(State {
                manifest,
                segments: Vec::new(),
                fresh: VectorSet::new(spec.dim),
                locations: IdMap::default(),
                tombstones: HashSet::new(),
            }),
            writer: Mutex::new(()),
            poisoned: AtomicBool::new(false),
            labels: Mutex::default(),
            maintenance: Mutex::new(()),
            maintenance_wanted: Default::default(),
        })
    }

    fn sled_config(db_dir: &Path, options: &OpenOptions) -> sled::Config {
        sled::Config::new()
            .path(db_dir)
            .cache_capacity(options.cache_bytes)
            .mode(sled::Mode::LowSpace)
    }

    fn open_db(path: &Path, options: &OpenOptions) -> Result<sled::Db> {
        // sled releases its file lock from background threads a moment after
        // the last handle is dropped, so a reopen right after a close (in the
        // same process) can find it still held: retry briefly before calling
        // the collection locked by someone else.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            let res = Self::sled_config(&path.join(SLED_DIR), options)
                .open()
                .map_err(|e| map_open_error(path, e));
            match res {
                Err(IndexError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    /// Opens an existing collection, loading its stored graphs (no rebuild)
    /// and cleaning up whatever an interrupted write left behind; writes
    /// through the local file system.
    pub fn open(path: &Path, options: OpenOptions, progress: Progress) -> Result<Collection> {
        Self::open_with(path, options, imgsim_common::local(), progress)
    }

    /// Opens an existing collection as [`Collection::open`] does, with every
    /// file write, rename, removal and fsync, and sled's flush, going
    /// through `storage` (the cleanup on open included).
    ///
    /// What the manifest does not vouch for is removed: records under ids
    /// `>= next_id`, segment files it does not list and temporaries of
    /// interrupted segment writes, appendable vectors a listed segment
    /// already holds, and tombstones of ids no sealed segment holds.
    pub fn open_with(
        path: &Path,
        options: OpenOptions,
        storage: Arc<dyn Storage>,
        progress: Progress,
    ) -> Result<Collection> {
        options.validate()?;
        if !Self::exists(path) {
            return Err(IndexError::NoCollection {
                path: path.to_path_buf(),
            });
        }
        let db = Self::open_db(path, &options)?;
        let manifest = Self::read_manifest(&db, path)?;
        let seg_dir = path.join(SEGMENTS_DIR);
        let (segments, mut locations) = Self::load_segments(&seg_dir, &manifest, progress)?;
        let records = Self::scan_records(&db, &manifest, &mut locations)?;
        Self::remove_unlisted_files(&*storage, &seg_dir, &manifest)?;
        if !records.garbage.is_empty() {
            tracing::info!(
                keys = records.garbage.len(),
                "removing leftovers of an interrupted write"
            );
            let mut batch = sled::Batch::default();
            for k in records.garbage {
                batch.remove(k);
            }
            db.apply_batch(batch)?;
            flush_through(&*storage, &db)?;
        }
        Ok(Collection {
            path: path.to_path_buf(),
            seg_dir,
            db,
            options,
            storage,
            state: RwLock::new(State {
                manifest,
                segments,
                fresh: records.fresh,
                locations,
                tombstones: records.tombstones,
            }),
            writer: Mutex::new(()),
            poisoned: AtomicBool::new(false),
            labels: Mutex::default(),
            maintenance: Mutex::new(()),
            maintenance_wanted: Default::default(),
        })
    }

    /// Opens the collection at `path`, creating it with `spec` if absent.
    /// An existing collection must match `spec` in dimension and metric.
    pub fn open_or_create(
        path: &Path,
        spec: CollectionSpec,
        options: OpenOptions,
        progress: Progress,
    ) -> Result<Collection> {
        Self::open_or_create_with(path, spec, options, imgsim_common::local(), progress)
    }

    /// [`Collection::open_or_create`], writing through `storage`.
    pub fn open_or_create_with(
        path: &Path,
        spec: CollectionSpec,
        options: OpenOptions,
        storage: Arc<dyn Storage>,
        progress: Progress,
    ) -> Result<Collection> {
        if !Self::exists(path) {
            return Self::create_with(path, spec, options, storage);
        }
        let c = Self::open_with(path, options, storage, progress)?;
        let have = c.spec();
        if have.dim != spec.dim || have.metric != spec.metric {
            return Err(IndexError::SettingsMismatch(format!(
                "collection at {} holds {}-d {} vectors, asked for {}-d {}",
                path.display(),
                have.dim,
                have.metric,
                spec.dim,
                spec.metric
            )));
        }
        Ok(c)
    }

    /// The stored manifest, its format version checked first.
    fn read_manifest(db: &sled::Db, path: &Path) -> Result<Manifest> {
        let raw = db
            .get(MANIFEST_KEY)?
            .ok_or_else(|| IndexError::NoCollection {
                path: path.to_path_buf(),
            })?;
        // Read the version first, leniently, so that a future format gives a
        // version error rather than a parse error.
        let version = serde_json::from_slice::<serde_json::Value>(&raw)
            .ok()
            .and_then(|v| v.get("format_version").and_then(|x| x.as_u64()))
            .ok_or_else(|| IndexError::Corrupt("manifest is unreadable".into()))?;
        if version != u64::from(FORMAT_VERSION) {
            return Err(IndexError::IncompatibleVersion {
                path: path.to_path_buf(),
                found: u32::try_from(version).unwrap_or(u32::MAX),
                supported: FORMAT_VERSION,
            });
        }
        serde_json::from_slice(&raw).map_err(|e| IndexError::Corrupt(format!("manifest: {e}")))
    }

    /// Loads the sealed segments the manifest lists, and where each of
    /// their ids lives.
    fn load_segments(
        seg_dir: &Path,
        manifest: &Manifest,
        progress: Progress,
    ) -> Result<(Vec<AnnIndex>, IdMap)> {
        let total = manifest
            .segments
            .iter()
            .try_fold(0usize, |a, s| a.checked_add(s.rows))
            .ok_or_else(|| IndexError::Corrupt("manifest segment sizes overflow".into()))?;
        let mut loaded = 0;
        let mut segments = Vec::with_capacity(manifest.segments.len());
        // Sized from the manifest, but capped: it is checked against the files below.
        let mut locations = IdMap::with_capacity(total.min(1 << 24));
        for (si, seg) in manifest.segments.iter().enumerate() {
            let idx = Self::load_segment(seg_dir, &manifest.spec, seg)?;
            for (row, &id) in idx.vectors().ids().iter().enumerate() {
                if id >= manifest.next_id
                    || locations
                        .insert(
                            id,
                            Loc::Sealed {
                                seg: si,
                                row: row as u32,
                            },
                        )
                        .is_some()
                {
                    return Err(IndexError::Corrupt(format!(
                        "segment {} lists id {id} twice or uncommitted",
                        seg.id
                    )));
                }
            }
            loaded += seg.rows;
            progress(Phase::Loading, loaded, total);
            segments.push(idx);
        }
        Ok((segments, locations))
    }

    fn load_segment(seg_dir: &Path, spec: &CollectionSpec, seg: &SegmentRef) -> Result<AnnIndex> {
        segfile::read(
            &seg_dir.join(segfile::file_name(seg.id)),
            segfile::Written {
                bytes: seg.bytes,
                crc32: seg.crc32,
            },
            seg.rows,
            spec.dim,
            spec.metric,
            spec.params,
        )
    }

    /// Reads the appendable segment and the tombstones, adding the
    /// appendable ids to `locations`, and collects the keys the manifest
    /// does not vouch for.
    fn scan_records(db: &sled::Db, manifest: &Manifest, locations: &mut IdMap) -> Result<Records> {
        let dim = manifest.spec.dim;
        let mut garbage: Vec<sled::IVec> = Vec::new();
        let mut fresh = VectorSet::new(dim);
        for kv in db.scan_prefix([VECTOR, b'/']) {
            let (k, v) = kv?;
            let id = id_of(&k)?;
            if id >= manifest.next_id || locations.contains_key(&id) {
                garbage.push(k);
                continue;
            }
            if v.len() != dim * 4 {
                return Err(IndexError::Corrupt(format!(
                    "vector {id} has {} bytes",
                    v.len()
                )));
            }
            // sled values carry no alignment guarantee: copy, don't cast.
            let buf: Vec<f32> = bytemuck::pod_collect_to_vec(&v);
            locations.insert(
                id,
                Loc::Fresh {
                    row: fresh.len() as u32,
                },
            );
            fresh.push_prepared(id, &buf);
        }
        for kv in db.scan_prefix([ITEM, b'/']) {
            let (k, _) = kv?;
            let id = id_of(&k)?;
            if id >= manifest.next_id {
                garbage.push(k);
            }
        }
        let mut tombstones = HashSet::new();
        for kv in db.scan_prefix([TOMBSTONE, b'/']) {
            let (k, _) = kv?;
            let id = id_of(&k)?;
            if matches!(locations.get(&id), Some(Loc::Sealed { .. })) {
                tombstones.insert(id);
            } else {
                garbage.push(k);
            }
        }
        Ok(Records {
            fresh,
            tombstones,
            garbage,
        })
    }

    /// Removes segment files the manifest does not list, and temporaries of
    /// interrupted segment writes (of this build's storage seam or of older
    /// builds); leaves every other entry alone.
    fn remove_unlisted_files(
        storage: &dyn Storage,
        seg_dir: &Path,
        manifest: &Manifest,
    ) -> Result<()> {
        let listed: HashSet<u64> = manifest.segments.iter().map(|s| s.id).collect();
        for (file, id) in segfile::list(seg_dir)? {
            if id.is_some_and(|id| listed.contains(&id)) {
                continue;
            }
            if segfile::is_ours(&file) {
                tracing::info!(file = %file.display(), "removing a segment file the manifest does not name");
                storage.remove_file(&file)?;
            }
        }
        Ok(())
    }
}
