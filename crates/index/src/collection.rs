//! A persistent collection: vectors, item metadata and HNSW graphs in one sled
//! database.
//!
//! # Layout
//!
//! ```text
//! <collection>/sled/       the sled database: manifest, items, tombstones,
//!                          appendable vectors
//! <collection>/segments/   one immutable file per sealed segment
//! ```
//!
//! sled keys, by prefix (ids big-endian so that prefixes scan in order):
//!
//! | key        | value                                   |
//! |------------|-----------------------------------------|
//! | `m`        | the [`Manifest`] (JSON)                 |
//! | `i/<id>`   | an item's [`ItemMeta`] (JSON)           |
//! | `v/<id>`   | a vector of the appendable segment      |
//! | `t/<id>`   | tombstone of a deleted sealed item      |
//!
//! A collection is a list of *sealed segments* — each an immutable
//! [`AnnIndex`] (ids, vectors, frozen graph) in its own file, see
//! [`crate::segfile`] for the format and for why these large immutable blobs
//! are files named by the manifest rather than sled values — plus one
//! *appendable segment* of recent vectors, kept in sled and searched exactly.
//! When the appendable segment reaches `seal_threshold` vectors its graph is
//! built and it becomes a sealed segment. Reopening reads the stored graphs:
//! no graph is ever rebuilt on open. (This is the design of Qdrant's
//! appendable and immutable segments.)
//!
//! # Commit protocol
//!
//! Every mutating call follows the same three steps:
//!
//! 1. **Write new data where nothing refers to it yet**: items and vectors
//!    under ids `>= manifest.next_id`; a segment file under a number not in
//!    `manifest.segments`, written to a temporary name, fsynced, renamed, and
//!    its folder fsynced. A crash here leaves only garbage.
//! 2. **Switch the manifest**: one sled batch (atomic) writes the new manifest
//!    (new `next_id`, segment list with each file's length and CRC-32)
//!    together with the small changes it implies (appendable vectors moved
//!    into a sealed segment, tombstones dropped by a compaction), then
//!    `flush()` makes it durable. A call returns only after this flush:
//!    **what a call acknowledged is durable**.
//! 3. **Collect garbage**: delete segment files no longer listed. A crash here
//!    is harmless: [`Collection::open`] repeats the collection.
//!
//! On open, anything the manifest does not vouch for (ids `>= next_id`,
//! unlisted or temporary segment files, appendable vectors that a listed
//! segment already holds, tombstones of unknown ids) is removed, so a crash
//! between any two writes leaves a consistent, reopenable collection holding
//! exactly the acknowledged writes. Small inserts and deletes are step 2 alone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::distance::Metric;
use crate::error::{IndexError, Result};
use crate::exact::{search_batch_sets, search_sets, TopK};
use crate::hnsw::{AnnIndex, HnswParams};
use crate::segfile;
use crate::vectors::{prepare_queries, prepare_query, IdFilter, Neighbor, VectorSet};

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

const MANIFEST_KEY: &[u8] = b"m";
/// How long an open waits for a lock released by a handle just dropped.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Sub-folder holding the sled database.
const SLED_DIR: &str = "sled";
/// Where a new collection's database is made before it is renamed to `sled`.
const SLED_STAGING_DIR: &str = "sled.creating";
/// Sub-folder holding the sealed segment files.
const SEGMENTS_DIR: &str = "segments";
const ITEM: u8 = b'i';
const VECTOR: u8 = b'v';
const TOMBSTONE: u8 = b't';

/// Settings fixed when a collection is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionSpec {
    /// Vector dimension.
    pub dim: usize,
    /// Distance metric.
    pub metric: Metric,
    /// HNSW parameters (ef_search is only the default; queries may override).
    pub params: HnswParams,
}

/// Settings that apply to one open handle and may change between opens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenOptions {
    /// sled page cache size, in bytes.
    pub cache_bytes: u64,
    /// Appendable vectors that trigger building a graph segment.
    pub seal_threshold: usize,
    /// Share of deleted items (0..1) above which the graph is rebuilt without them.
    pub compact_tombstone_share: f64,
    /// More sealed segments than this triggers a merge into one.
    pub max_segments: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            cache_bytes: 64 << 20,
            seal_threshold: 4096,
            compact_tombstone_share: 0.2,
            max_segments: 8,
        }
    }
}

impl OpenOptions {
    fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.compact_tombstone_share) {
            return Err(IndexError::InvalidParameter {
                name: "compact_tombstone_share",
                reason: format!("{} is not within 0..=1", self.compact_tombstone_share),
            });
        }
        if self.seal_threshold == 0 || self.max_segments == 0 {
            return Err(IndexError::InvalidParameter {
                name: "seal_threshold/max_segments",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// Per-item metadata stored next to each vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ItemMeta {
    /// The caller's id for the item (a path, a data-set row number...).
    pub external_id: String,
    /// Where the item came from (a folder, a data set name...).
    pub source: String,
    /// When it was added, in milliseconds since the Unix epoch.
    pub added_unix_ms: u64,
    /// Free-form attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, serde_json::Value>,
}

impl ItemMeta {
    /// Metadata stamped with the current time.
    pub fn new(external_id: impl Into<String>, source: impl Into<String>) -> Self {
        ItemMeta {
            external_id: external_id.into(),
            source: source.into(),
            added_unix_ms: now_ms(),
            attrs: BTreeMap::new(),
        }
    }
}

/// A stored segment, as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRef {
    /// Segment number (unique, never reused).
    pub id: u64,
    /// Vectors it holds (including deleted ones until compaction).
    pub rows: usize,
    /// Length of its file, bytes.
    pub bytes: u64,
    /// CRC-32 of its file (without the trailing checksum).
    pub crc32: u32,
}

/// The root record: only what it lists is valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// On-disk format version.
    pub format_version: u32,
    /// Creation settings.
    pub spec: CollectionSpec,
    /// Next item id to hand out; ids at or above it are uncommitted.
    pub next_id: u64,
    /// Next segment number.
    pub next_segment: u64,
    /// Sealed segments.
    pub segments: Vec<SegmentRef>,
    /// Creation time, ms since the epoch.
    pub created_unix_ms: u64,
    /// Application properties (e.g. the embedder's identity).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// A vector to add and its metadata.
#[derive(Debug, Clone)]
pub struct NewItem {
    /// The vector (raw; it is checked and, for cosine, normalised).
    pub vector: Vec<f32>,
    /// Its metadata.
    pub meta: ItemMeta,
}

/// Phases reported by long operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Writing vectors and metadata.
    Writing,
    /// Building the HNSW graph.
    Building,
    /// Loading segments on open.
    Loading,
}

/// Progress callback: phase, done, total.
pub type Progress<'a> = &'a (dyn Fn(Phase, usize, usize) + Sync);

/// Figures about a collection.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Live (searchable) items.
    pub count: usize,
    /// Dimension.
    pub dim: usize,
    /// Metric.
    pub metric: Metric,
    /// HNSW parameters.
    pub params: HnswParams,
    /// Sealed segments.
    pub segments: usize,
    /// Vectors in sealed segments (including deleted).
    pub sealed_rows: usize,
    /// Vectors in the appendable segment.
    pub appendable_rows: usize,
    /// Deleted items still in a graph.
    pub tombstones: usize,
    /// Bytes of the collection directory on disk.
    pub disk_bytes: u64,
    /// Heap bytes held by vectors and graphs.
    pub memory_bytes: usize,
    /// Format version.
    pub format_version: u32,
}

/// What [`Collection::verify`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Consistency {
    /// Live ids (in a sealed graph or the appendable segment).
    pub live: usize,
    /// Item records in sled for committed ids.
    pub item_records: usize,
    /// Sealed segments.
    pub segments: usize,
    /// Live ids without an item record.
    pub missing_metadata: Vec<u64>,
    /// Item records that cannot be parsed.
    pub unreadable_metadata: Vec<u64>,
    /// Item records without a live vector.
    pub orphan_metadata: Vec<u64>,
    /// Ids whose stored vector holds NaN or an infinity.
    pub non_finite: Vec<u64>,
    /// Graph rows unreachable from their segment's entry point.
    pub unreachable_rows: usize,
    /// Ids searched with their own vector.
    pub self_searched: usize,
    /// Of those, the ids not found.
    pub not_found_by_own_vector: Vec<u64>,
}

impl Consistency {
    /// True when nothing is wrong.
    pub fn is_consistent(&self) -> bool {
        self.missing_metadata.is_empty()
            && self.unreadable_metadata.is_empty()
            && self.orphan_metadata.is_empty()
            && self.non_finite.is_empty()
            && self.unreachable_rows == 0
            && self.not_found_by_own_vector.is_empty()
            && self.live == self.item_records
    }
}

#[derive(Debug, Clone, Copy)]
enum Loc {
    Sealed { seg: usize, row: u32 },
    Fresh { row: u32 },
}

struct State {
    manifest: Manifest,
    segments: Vec<AnnIndex>,
    fresh: VectorSet,
    locations: HashMap<u64, Loc>,
    tombstones: HashSet<u64>,
}

impl State {
    fn live(&self) -> usize {
        self.locations.len() - self.tombstones.len()
    }

    /// The filter a search needs: tombstones out, then the caller's filter.
    /// None when neither applies (the fast path).
    fn live_filter<'a>(&'a self, user: Option<&'a dyn IdFilter>) -> Option<LiveFilter<'a>> {
        (!self.tombstones.is_empty() || user.is_some()).then_some(LiveFilter {
            tombstones: &self.tombstones,
            user,
        })
    }
}

/// Hides deleted items and applies the caller's filter.
struct LiveFilter<'a> {
    tombstones: &'a HashSet<u64>,
    user: Option<&'a dyn IdFilter>,
}

impl IdFilter for LiveFilter<'_> {
    fn allows(&self, id: u64) -> bool {
        !self.tombstones.contains(&id) && self.user.is_none_or(|f| f.allows(id))
    }
}

/// A persistent, searchable collection of vectors. Cheap to share between
/// threads: searches run concurrently; writes are serialised.
pub struct Collection {
    path: PathBuf,
    seg_dir: PathBuf,
    db: sled::Db,
    options: OpenOptions,
    state: RwLock<State>,
    writer: Mutex<()>,
    /// Set when a commit was applied but its flush failed.
    poisoned: AtomicBool,
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("path", &self.path)
            .finish()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn manifest_bytes(m: &Manifest) -> Vec<u8> {
    serde_json::to_vec(m).expect("a manifest always serialises")
}

fn key(prefix: u8, id: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = prefix;
    k[1] = b'/';
    k[2..].copy_from_slice(&id.to_be_bytes());
    k
}

fn id_of(k: &[u8]) -> Result<u64> {
    let raw: [u8; 8] = k
        .get(2..10)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| IndexError::Corrupt(format!("malformed key {k:?}")))?;
    Ok(u64::from_be_bytes(raw))
}

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

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

impl Collection {
    /// Creates a new, empty collection in directory `path`.
    pub fn create(path: &Path, spec: CollectionSpec, options: OpenOptions) -> Result<Collection> {
        spec.params.validate()?;
        options.validate()?;
        if spec.dim == 0 {
            return Err(IndexError::InvalidParameter {
                name: "dim",
                reason: "dimension must be at least 1".into(),
            });
        }
        if Self::exists(path) {
            return Err(IndexError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        std::fs::create_dir_all(path.join(SEGMENTS_DIR))?;
        segfile::sync_dir(path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            segfile::sync_dir(parent)?;
        }
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
            std::fs::remove_dir_all(&staging)?;
        }
        {
            let db = Self::sled_config(&staging, &options)
                .open()
                .map_err(|e| map_open_error(path, e))?;
            db.insert(MANIFEST_KEY, manifest_bytes(&manifest))?;
            db.flush()?;
        }
        std::fs::rename(&staging, path.join(SLED_DIR))?;
        segfile::sync_dir(path)?;
        let db = Self::open_db(path, &options)?;
        Ok(Collection {
            path: path.to_path_buf(),
            seg_dir: path.join(SEGMENTS_DIR),
            db,
            options,
            state: RwLock::new(State {
                manifest,
                segments: Vec::new(),
                fresh: VectorSet::new(spec.dim),
                locations: HashMap::new(),
                tombstones: HashSet::new(),
            }),
            writer: Mutex::new(()),
            poisoned: AtomicBool::new(false),
        })
    }

    /// True when `path` holds a collection (or at least its database).
    pub fn exists(path: &Path) -> bool {
        path.join(SLED_DIR).join("conf").exists()
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
    /// and cleaning up whatever an interrupted write left behind.
    pub fn open(path: &Path, options: OpenOptions, progress: Progress) -> Result<Collection> {
        options.validate()?;
        if !Self::exists(path) {
            return Err(IndexError::NoCollection {
                path: path.to_path_buf(),
            });
        }
        let db = Self::open_db(path, &options)?;
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
                found: version as u32,
                supported: FORMAT_VERSION,
            });
        }
        let manifest: Manifest = serde_json::from_slice(&raw)
            .map_err(|e| IndexError::Corrupt(format!("manifest: {e}")))?;
        let spec = manifest.spec.clone();
        let seg_dir = path.join(SEGMENTS_DIR);

        // Sealed segments.
        let total = manifest
            .segments
            .iter()
            .try_fold(0usize, |a, s| a.checked_add(s.rows))
            .ok_or_else(|| IndexError::Corrupt("manifest segment sizes overflow".into()))?;
        let mut loaded = 0;
        let mut segments = Vec::with_capacity(manifest.segments.len());
        // Sized from the manifest, but capped: it is checked against the files below.
        let mut locations = HashMap::with_capacity(total.min(1 << 24));
        for (si, seg) in manifest.segments.iter().enumerate() {
            let idx = Self::load_segment(&seg_dir, &spec, seg)?;
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

        // Garbage from interrupted writes, and the appendable segment.
        let mut garbage: Vec<sled::IVec> = Vec::new();
        let mut fresh = VectorSet::new(spec.dim);
        for kv in db.scan_prefix([VECTOR, b'/']) {
            let (k, v) = kv?;
            let id = id_of(&k)?;
            if id >= manifest.next_id || locations.contains_key(&id) {
                garbage.push(k);
                continue;
            }
            if v.len() != spec.dim * 4 {
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
        let listed: HashSet<u64> = manifest.segments.iter().map(|s| s.id).collect();
        for (file, id) in segfile::list(&seg_dir)? {
            if id.is_some_and(|id| listed.contains(&id)) {
                continue;
            }
            if segfile::is_ours(&file) {
                tracing::info!(file = %file.display(), "removing a segment file the manifest does not name");
                std::fs::remove_file(&file)?;
            }
        }
        if !garbage.is_empty() {
            tracing::info!(
                keys = garbage.len(),
                "removing leftovers of an interrupted write"
            );
            let mut batch = sled::Batch::default();
            for k in garbage {
                batch.remove(k);
            }
            db.apply_batch(batch)?;
            db.flush()?;
        }
        Ok(Collection {
            path: path.to_path_buf(),
            seg_dir,
            db,
            options,
            state: RwLock::new(State {
                manifest,
                segments,
                fresh,
                locations,
                tombstones,
            }),
            writer: Mutex::new(()),
            poisoned: AtomicBool::new(false),
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
        if !Self::exists(path) {
            return Self::create(path, spec, options);
        }
        let c = Self::open(path, options, progress)?;
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

    /// Commit protocol steps 1 and 2 for a new sealed segment: writes `idx`'s
    /// file, then switches to `manifest` plus the segment (replacing every
    /// listed segment when `replace_all`), applying `removals` in the same
    /// atomic batch. Updates the in-memory state to match and returns the
    /// numbers of the segments that were replaced (for step 3).
    fn commit_segment(
        &self,
        idx: AnnIndex,
        mut manifest: Manifest,
        replace_all: bool,
        removals: &[[u8; 10]],
    ) -> Result<Vec<u64>> {
        let seg_id = manifest.next_segment;
        let written = segfile::write(&self.seg_dir, seg_id, &idx)?;
        let seg = SegmentRef {
            id: seg_id,
            rows: idx.len(),
            bytes: written.bytes,
            crc32: written.crc32,
        };
        manifest.next_segment += 1;
        let replaced = if replace_all {
            std::mem::take(&mut manifest.segments)
                .into_iter()
                .map(|s| s.id)
                .collect()
        } else {
            Vec::new()
        };
        manifest.segments.push(seg);
        let mut batch = sled::Batch::default();
        for k in removals {
            batch.remove(k);
        }
        batch.insert(MANIFEST_KEY, manifest_bytes(&manifest));
        if let Err(e) = self.db.apply_batch(batch) {
            // Not applied: the file is garbage (open() would remove it too).
            let _ = std::fs::remove_file(self.seg_dir.join(segfile::file_name(seg_id)));
            return Err(e.into());
        }
        // Applied: from here on the new manifest may reach the disk (sled also
        // flushes on its own), so the file must stay.
        self.flush_or_poison()?;
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        if replace_all {
            st.segments.clear();
            st.locations.clear();
            st.tombstones.clear();
        }
        let si = st.segments.len();
        for (row, &id) in idx.vectors().ids().iter().enumerate() {
            st.locations.insert(
                id,
                Loc::Sealed {
                    seg: si,
                    row: row as u32,
                },
            );
        }
        let sealed: HashSet<u64> = idx.vectors().ids().iter().copied().collect();
        if st.fresh.ids().iter().any(|id| sealed.contains(id)) {
            st.fresh = VectorSet::new(manifest.spec.dim);
        }
        st.segments.push(idx);
        st.manifest = manifest;
        Ok(replaced)
    }

    /// Makes an applied batch durable. If that fails, what reached the disk
    /// is unknown: the handle refuses further writes (reads go on) until the
    /// collection is reopened, which settles the state from what is on disk.
    fn flush_or_poison(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(|e| {
            self.poisoned.store(true, Ordering::SeqCst);
            IndexError::NeedsReopen(format!("flushing a commit failed ({e})"))
        })
    }

    /// Applies a small commit (step 2 alone) and makes it durable.
    fn commit_batch(&self, batch: sled::Batch) -> Result<()> {
        self.db.apply_batch(batch)?;
        self.flush_or_poison()
    }

    /// Refuses writes on a handle whose last commit has an unknown outcome.
    fn check_writable(&self) -> Result<()> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(IndexError::NeedsReopen(
                "an earlier commit could not be confirmed on disk".into(),
            ));
        }
        Ok(())
    }

    /// Maintenance after a committed write (sealing, compaction) must not
    /// turn that write into an error: it is retried at the next write.
    fn maintain_after_commit(&self, result: Result<()>) {
        if let Err(e) = result {
            tracing::warn!(error = %e, "maintenance after a committed write failed; will retry on the next write");
        }
    }

    /// Commit protocol step 3: deletes the files of replaced segments.
    fn remove_segment_files(&self, ids: &[u64]) {
        for id in ids {
            let f = self.seg_dir.join(segfile::file_name(*id));
            if let Err(e) = std::fs::remove_file(&f) {
                tracing::warn!(file = %f.display(), error = %e, "could not remove an old segment file; it will be removed on next open");
            }
        }
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The directory holding the collection.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creation settings.
    pub fn spec(&self) -> CollectionSpec {
        self.read_state().manifest.spec.clone()
    }

    /// A copy of the manifest.
    pub fn manifest(&self) -> Manifest {
        self.read_state().manifest.clone()
    }

    /// Live items.
    pub fn len(&self) -> usize {
        self.read_state().live()
    }

    /// True when no live item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks and prepares incoming vectors; errors name the item's position.
    fn prepare_all(&self, dim: usize, metric: Metric, vectors: &mut [Vec<f32>]) -> Result<()> {
        for (i, v) in vectors.iter_mut().enumerate() {
            if v.len() != dim {
                return Err(IndexError::WrongDimension {
                    index: i,
                    expected: dim,
                    got: v.len(),
                });
            }
            metric.prepare(v, i)?;
        }
        Ok(())
    }

    /// Adds items; returns their new ids. All-or-nothing: a bad vector
    /// anywhere refuses the whole call and writes nothing. Durable on return.
    pub fn insert(&self, items: Vec<NewItem>) -> Result<Vec<u64>> {
        let _w = self.lock_writer();
        self.check_writable()?;
        let spec = self.spec();
        let (mut vectors, metas): (Vec<Vec<f32>>, Vec<ItemMeta>) =
            items.into_iter().map(|it| (it.vector, it.meta)).unzip();
        self.prepare_all(spec.dim, spec.metric, &mut vectors)?;
        if vectors.is_empty() {
            return Ok(Vec::new());
        }
        let mut manifest = self.read_state().manifest.clone();
        let first = manifest.next_id;
        manifest.next_id += vectors.len() as u64;
        let mut batch = sled::Batch::default();
        for (i, (v, meta)) in vectors.iter().zip(&metas).enumerate() {
            let id = first + i as u64;
            batch.insert(
                &key(ITEM, id),
                serde_json::to_vec(meta).expect("meta serialises"),
            );
            batch.insert(&key(VECTOR, id), bytemuck::cast_slice::<f32, u8>(v));
        }
        batch.insert(MANIFEST_KEY, manifest_bytes(&manifest));
        self.commit_batch(batch)?;
        {
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            st.manifest = manifest;
            for (i, v) in vectors.iter().enumerate() {
                let id = first + i as u64;
                let row = st.fresh.len() as u32;
                st.fresh.push_prepared(id, v);
                st.locations.insert(id, Loc::Fresh { row });
            }
        }
        let ids: Vec<u64> = (first..first + vectors.len() as u64).collect();
        if self.read_state().fresh.len() >= self.options.seal_threshold {
            self.maintain_after_commit(self.seal_locked(&|_, _, _| {}));
        }
        Ok(ids)
    }

    /// Adds many vectors at once (row-major `data`), building their graph
    /// directly as a new sealed segment. `meta(i)` gives row `i`'s metadata.
    /// Holds one copy of the vectors. Durable on return; a crash before the
    /// return leaves the collection as it was.
    pub fn bulk_insert(
        &self,
        data: Vec<f32>,
        meta: &(dyn Fn(usize) -> ItemMeta + Sync),
        progress: Progress,
    ) -> Result<Vec<u64>> {
        let _w = self.lock_writer();
        self.check_writable()?;
        let spec = self.spec();
        let mut manifest = self.read_state().manifest.clone();
        let first = manifest.next_id;
        let rows = data.len() / spec.dim.max(1);
        let ids: Vec<u64> = (first..first + rows as u64).collect();
        let set = VectorSet::from_parts(spec.dim, ids.clone(), data, spec.metric)?;
        if rows == 0 {
            return Ok(Vec::new());
        }
        // Step 1: metadata under uncommitted ids.
        let t0 = std::time::Instant::now();
        let mut batch = sled::Batch::default();
        for i in 0..rows {
            batch.insert(
                &key(ITEM, first + i as u64),
                serde_json::to_vec(&meta(i)).expect("meta serialises"),
            );
            if (i + 1) % 8192 == 0 || i + 1 == rows {
                self.db.apply_batch(std::mem::take(&mut batch))?;
                progress(Phase::Writing, i + 1, rows);
            }
        }
        let t1 = std::time::Instant::now();
        let idx = AnnIndex::build(spec.metric, spec.params, set, &|done| {
            progress(Phase::Building, done, rows)
        })?;
        let t2 = std::time::Instant::now();
        manifest.next_id += rows as u64;
        self.commit_segment(idx, manifest, false, &[])?;
        tracing::info!(
            rows,
            metadata_s = (t1 - t0).as_secs_f64(),
            graph_s = (t2 - t1).as_secs_f64(),
            segment_and_commit_s = t2.elapsed().as_secs_f64(),
            "bulk insert committed"
        );
        self.maintain_after_commit(self.maintain_locked(progress));
        Ok(ids)
    }

    /// Builds a graph over the appendable vectors and turns them into a
    /// sealed segment. A no-op when there are none.
    pub fn seal(&self, progress: Progress) -> Result<()> {
        let _w = self.lock_writer();
        self.check_writable()?;
        self.seal_locked(progress)
    }

    fn seal_locked(&self, progress: Progress) -> Result<()> {
        let (spec, fresh, manifest) = {
            let st = self.read_state();
            (
                st.manifest.spec.clone(),
                st.fresh.clone(),
                st.manifest.clone(),
            )
        };
        if fresh.is_empty() {
            return Ok(());
        }
        let rows = fresh.len();
        let idx = AnnIndex::build(spec.metric, spec.params, fresh, &|d| {
            progress(Phase::Building, d, rows)
        })?;
        let moved: Vec<[u8; 10]> = idx
            .vectors()
            .ids()
            .iter()
            .map(|&id| key(VECTOR, id))
            .collect();
        self.commit_segment(idx, manifest, false, &moved)?;
        self.maintain_locked(progress)
    }

    /// Compacts when tombstones or segments pile up past the configured limits.
    fn maintain_locked(&self, progress: Progress) -> Result<()> {
        let (share, segs) = {
            let st = self.read_state();
            let total = st.locations.len().max(1);
            (st.tombstones.len() as f64 / total as f64, st.segments.len())
        };
        if (share > self.options.compact_tombstone_share && share > 0.0)
            || segs > self.options.max_segments
        {
            self.compact_locked(progress)?;
        }
        Ok(())
    }

    /// Deletes items by id; returns how many existed. Deleted items disappear
    /// from searches at once (tombstones) and from the graph at the next
    /// compaction. Durable on return.
    pub fn delete(&self, ids: &[u64]) -> Result<usize> {
        let _w = self.lock_writer();
        self.check_writable()?;
        let mut batch = sled::Batch::default();
        let mut sealed = Vec::new();
        let mut fresh = Vec::new();
        {
            let st = self.read_state();
            for &id in ids {
                if st.tombstones.contains(&id) {
                    continue;
                }
                match st.locations.get(&id) {
                    Some(Loc::Sealed { .. }) => {
                        batch.insert(&key(TOMBSTONE, id), &[]);
                        batch.remove(&key(ITEM, id));
                        sealed.push(id);
                    }
                    Some(Loc::Fresh { .. }) => {
                        batch.remove(&key(VECTOR, id));
                        batch.remove(&key(ITEM, id));
                        fresh.push(id);
                    }
                    None => {}
                }
            }
        }
        sealed.sort_unstable();
        sealed.dedup();
        fresh.sort_unstable();
        fresh.dedup();
        if sealed.is_empty() && fresh.is_empty() {
            return Ok(0);
        }
        self.commit_batch(batch)?;
        {
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            st.tombstones.extend(sealed.iter().copied());
            for id in &fresh {
                if let Some(Loc::Fresh { row }) = st.locations.remove(id) {
                    if let Some(moved) = st.fresh.swap_remove(row as usize) {
                        st.locations.insert(moved, Loc::Fresh { row });
                    }
                }
            }
        }
        self.maintain_after_commit(self.maintain_locked(&|_, _, _| {}));
        Ok(sealed.len() + fresh.len())
    }

    /// Rebuilds everything live into one sealed segment, dropping deleted
    /// items from the graph and merging segments.
    pub fn compact(&self, progress: Progress) -> Result<()> {
        let _w = self.lock_writer();
        self.check_writable()?;
        self.compact_locked(progress)
    }

    fn compact_locked(&self, progress: Progress) -> Result<()> {
        let (spec, set, manifest, removals) = {
            let st = self.read_state();
            let mut set = VectorSet::with_capacity(st.manifest.spec.dim, st.live());
            for seg in &st.segments {
                let v = seg.vectors();
                for r in 0..v.len() {
                    if !st.tombstones.contains(&v.id(r)) {
                        set.push_prepared(v.id(r), v.row(r));
                    }
                }
            }
            for r in 0..st.fresh.len() {
                set.push_prepared(st.fresh.id(r), st.fresh.row(r));
            }
            let removals: Vec<[u8; 10]> = st
                .fresh
                .ids()
                .iter()
                .map(|&id| key(VECTOR, id))
                .chain(st.tombstones.iter().map(|&id| key(TOMBSTONE, id)))
                .collect();
            (st.manifest.spec.clone(), set, st.manifest.clone(), removals)
        };
        let rows = set.len();
        let idx = AnnIndex::build(spec.metric, spec.params, set, &|d| {
            progress(Phase::Building, d, rows)
        })?;
        let replaced = self.commit_segment(idx, manifest, true, &removals)?;
        // Step 3: garbage; open() repeats this if we crash here.
        self.remove_segment_files(&replaced);
        Ok(())
    }

    /// Sets an application property in the manifest (durable on return).
    pub fn set_property(&self, key_: &str, value: &str) -> Result<()> {
        let _w = self.lock_writer();
        self.check_writable()?;
        let mut manifest = self.manifest();
        manifest
            .properties
            .insert(key_.to_string(), value.to_string());
        self.db.insert(MANIFEST_KEY, manifest_bytes(&manifest))?;
        self.flush_or_poison()?;
        self.state
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .manifest = manifest;
        Ok(())
    }

    /// Metadata of a live item.
    pub fn item(&self, id: u64) -> Result<ItemMeta> {
        if !self.contains(id) {
            return Err(IndexError::NotFound(id));
        }
        let raw = self
            .db
            .get(key(ITEM, id))?
            .ok_or(IndexError::NotFound(id))?;
        serde_json::from_slice(&raw).map_err(|e| IndexError::Corrupt(format!("item {id}: {e}")))
    }

    /// Every live item and its metadata, by ascending id (one scan of the
    /// item records; for building an application's own lookup tables).
    pub fn items(&self) -> Result<Vec<(u64, ItemMeta)>> {
        let st = self.read_state();
        let mut out = Vec::with_capacity(st.live());
        for kv in self.db.scan_prefix([ITEM, b'/']) {
            let (k, v) = kv?;
            let id = id_of(&k)?;
            if id >= st.manifest.next_id || st.tombstones.contains(&id) {
                continue;
            }
            let meta: ItemMeta = serde_json::from_slice(&v)
                .map_err(|e| IndexError::Corrupt(format!("item {id}: {e}")))?;
            out.push((id, meta));
        }
        Ok(out)
    }

    /// Replaces the metadata of a live item (durable on return); the vector
    /// is unchanged.
    pub fn update_item(&self, id: u64, meta: &ItemMeta) -> Result<()> {
        let _w = self.lock_writer();
        self.check_writable()?;
        if !self.contains(id) {
            return Err(IndexError::NotFound(id));
        }
        let mut batch = sled::Batch::default();
        batch.insert(
            &key(ITEM, id),
            serde_json::to_vec(meta).expect("meta serialises"),
        );
        self.commit_batch(batch)
    }

    /// True when `id` is a live item.
    pub fn contains(&self, id: u64) -> bool {
        let st = self.read_state();
        st.locations.contains_key(&id) && !st.tombstones.contains(&id)
    }

    /// The stored (prepared) vector of a live item.
    pub fn vector(&self, id: u64) -> Result<Vec<f32>> {
        let st = self.read_state();
        if st.tombstones.contains(&id) {
            return Err(IndexError::NotFound(id));
        }
        match st.locations.get(&id) {
            Some(Loc::Sealed { seg, row }) => {
                Ok(st.segments[*seg].vectors().row(*row as usize).to_vec())
            }
            Some(Loc::Fresh { row }) => Ok(st.fresh.row(*row as usize).to_vec()),
            None => Err(IndexError::NotFound(id)),
        }
    }

    /// All live ids, ascending.
    pub fn ids(&self) -> Vec<u64> {
        let st = self.read_state();
        let mut v: Vec<u64> = st
            .locations
            .keys()
            .filter(|id| !st.tombstones.contains(id))
            .copied()
            .collect();
        v.sort_unstable();
        v
    }

    /// Approximate k-NN: HNSW in every sealed segment, exact scan of the
    /// appendable one, merged. `ef` defaults to the collection's `ef_search`.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&dyn IdFilter>,
    ) -> Result<Vec<Neighbor>> {
        if k == 0 {
            return Err(IndexError::ZeroK);
        }
        let st = self.read_state();
        let spec = &st.manifest.spec;
        let q = prepare_query(query, spec.dim, spec.metric)?;
        let ef = ef.unwrap_or(spec.params.ef_search);
        let live = st.live_filter(filter);
        let f = live.as_ref().map(|l| l as &dyn IdFilter);
        if st.segments.len() == 1 && st.fresh.is_empty() {
            return Ok(st.segments[0].search_prepared(&q, k, ef, f));
        }
        let mut top = TopK::new(k);
        let to_internal = |d: f32| match spec.metric {
            Metric::L2 => d * d,
            Metric::Cosine => d,
        };
        for seg in &st.segments {
            for h in seg.search_prepared(&q, k, ef, f) {
                top.push(to_internal(h.distance), h.id);
            }
        }
        if !st.fresh.is_empty() {
            for h in search_sets(&[&st.fresh], spec.metric, &q, k, f) {
                top.push(to_internal(h.distance), h.id);
            }
        }
        Ok(top.into_sorted(spec.metric))
    }

    /// Exact k-NN over every live item (ground truth for recall).
    pub fn search_exact(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&dyn IdFilter>,
    ) -> Result<Vec<Neighbor>> {
        if k == 0 {
            return Err(IndexError::ZeroK);
        }
        let st = self.read_state();
        let spec = &st.manifest.spec;
        let q = prepare_query(query, spec.dim, spec.metric)?;
        let live = st.live_filter(filter);
        let f = live.as_ref().map(|l| l as &dyn IdFilter);
        let mut sets: Vec<&VectorSet> = st.segments.iter().map(|s| s.vectors()).collect();
        sets.push(&st.fresh);
        Ok(search_sets(&sets, spec.metric, &q, k, f))
    }

    /// Exact k-NN for many queries (row-major), in parallel: benchmark
    /// ground truth computed from the stored vectors, without a second copy.
    pub fn search_exact_batch(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Neighbor>>> {
        if k == 0 {
            return Err(IndexError::ZeroK);
        }
        let st = self.read_state();
        let spec = &st.manifest.spec;
        let prepared = prepare_queries(queries, spec.dim, spec.metric)?;
        let live = st.live_filter(None);
        let f = live.as_ref().map(|l| l as &dyn IdFilter);
        let mut sets: Vec<&VectorSet> = st.segments.iter().map(|s| s.vectors()).collect();
        sets.push(&st.fresh);
        Ok(search_batch_sets(&sets, spec.metric, &prepared, k, f))
    }

    /// Figures about the collection.
    pub fn stats(&self) -> Stats {
        let st = self.read_state();
        Stats {
            count: st.live(),
            dim: st.manifest.spec.dim,
            metric: st.manifest.spec.metric,
            params: st.manifest.spec.params,
            segments: st.segments.len(),
            sealed_rows: st.segments.iter().map(|s| s.len()).sum(),
            appendable_rows: st.fresh.len(),
            tombstones: st.tombstones.len(),
            disk_bytes: dir_size(&self.path),
            memory_bytes: st.segments.iter().map(|s| s.heap_bytes()).sum::<usize>()
                + st.fresh.heap_bytes(),
            format_version: st.manifest.format_version,
        }
    }

    /// Checks that the index and sled agree: every live id (in a graph or
    /// the appendable segment) has its item record and every item record a
    /// live vector, every stored vector is finite, and every graph row is
    /// reachable from its entry point. With `self_search` > 0, up to that
    /// many live ids (evenly spread) are also searched with their own
    /// vector and must be found (or be tied, at the same distance, with k
    /// copies). Reads only; writes wait while the structure is checked.
    pub fn verify(&self, self_search: usize) -> Result<Consistency> {
        let mut report = Consistency::default();
        let writer = self.lock_writer();
        let (live, next_id, ef) = {
            let st = self.read_state();
            report.segments = st.segments.len();
            for seg in &st.segments {
                report.unreachable_rows += seg.unreachable_rows();
            }
            let mut live: Vec<u64> = st
                .locations
                .keys()
                .filter(|id| !st.tombstones.contains(id))
                .copied()
                .collect();
            live.sort_unstable();
            for &id in &live {
                let v = match st.locations[&id] {
                    Loc::Sealed { seg, row } => st.segments[seg].vectors().row(row as usize),
                    Loc::Fresh { row } => st.fresh.row(row as usize),
                };
                if v.iter().any(|x| !x.is_finite()) {
                    report.non_finite.push(id);
                }
            }
            (
                live,
                st.manifest.next_id,
                st.manifest.spec.params.ef_search.max(64),
            )
        };
        report.live = live.len();
        let live_set: HashSet<u64> = live.iter().copied().collect();
        let mut with_meta = HashSet::with_capacity(live.len());
        for kv in self.db.scan_prefix([ITEM, b'/']) {
            let (k, v) = kv?;
            let id = id_of(&k)?;
            if id >= next_id {
                continue; // an insert in progress, not yet committed
            }
            report.item_records += 1;
            if !live_set.contains(&id) {
                report.orphan_metadata.push(id);
            } else if serde_json::from_slice::<ItemMeta>(&v).is_err() {
                report.unreadable_metadata.push(id);
            } else {
                with_meta.insert(id);
            }
        }
        report.missing_metadata = live
            .iter()
            .filter(|id| !with_meta.contains(id) && !report.unreadable_metadata.contains(id))
            .copied()
            .collect();
        drop(writer);
        if self_search > 0 && !live.is_empty() {
            let step = live.len().div_ceil(self_search).max(1);
            for &id in live.iter().step_by(step) {
                let Ok(v) = self.vector(id) else {
                    continue; // deleted meanwhile
                };
                if v.iter().any(|x| !x.is_finite()) {
                    continue; // reported above
                }
                report.self_searched += 1;
                let k = 10.min(live.len());
                let found = self.search(&v, k, Some(ef), None)?;
                // k exact copies of the vector may all rank before it.
                let tied = found.len() == k
                    && found[0].distance.abs() <= 1e-4
                    && found
                        .last()
                        .is_some_and(|h| h.distance <= found[0].distance + 1e-6);
                if !found.iter().any(|h| h.id == id) && !tied && self.contains(id) {
                    report.not_found_by_own_vector.push(id);
                }
            }
        }
        Ok(report)
    }

    /// Flushes sled's buffers (every acknowledged write is already durable;
    /// this is for a clean shutdown).
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}
