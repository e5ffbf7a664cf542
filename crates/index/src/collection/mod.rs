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
//! `segfile.rs` for the format and for why these large immutable blobs
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
//!    `manifest.segments`, written with [`Storage::write_with`] (to a
//!    temporary name, fsynced, renamed, its folder fsynced). A crash here
//!    leaves only garbage.
//! 2. **Switch the manifest**: one sled batch (atomic) writes the new manifest
//!    (new `next_id`, segment list with each file's length and CRC-32)
//!    together with the small changes it implies (appendable vectors moved
//!    into a sealed segment, tombstones dropped by a compaction), then sled's
//!    `flush()`, passed through [`Storage::barrier`], makes it durable. A call
//!    returns only after this flush: **what a call acknowledged is durable**.
//!    If the flush fails after the batch was applied, whether the switch
//!    reached the disk is unknown: the call fails with
//!    [`IndexError::NeedsReopen`] and the handle refuses further writes
//!    (reads go on) until the collection is reopened.
//! 3. **Collect garbage**: delete segment files no longer listed. A crash here
//!    is harmless: [`Collection::open`] repeats this step.
//!
//! On open, anything the manifest does not vouch for (ids `>= next_id`,
//! unlisted or temporary segment files, appendable vectors that a listed
//! segment already holds, tombstones of unknown ids) is removed, so a crash
//! between any two writes leaves a consistent, reopenable collection holding
//! exactly the acknowledged writes. Small inserts and deletes are step 2 alone.
//!
//! # Storage
//!
//! Every file the collection writes, renames or removes, every folder it
//! creates or fsyncs, and sled's flush go through one [`Storage`] (the real
//! file system unless a constructor ending in `_with` is given another), so
//! that tests can fail any one of them (`imgsim_common::FaultyFs`; see
//! `tests/faults.rs`). sled's own files are sled's business: its durability
//! point is the flush.

//! # Code
//!
//! | file        | job                                                     |
//! |-------------|---------------------------------------------------------|
//! | `types.rs`  | the public types: spec, options, manifest, stats...     |
//! | `keys.rs`   | sled key encoding                                       |
//! | `open.rs`   | create, open, and recovery from an interrupted write    |
//! | `write.rs`  | insert, delete, metadata updates; the commit steps      |
//! | `maintain.rs` | seal, compact, merge, built off the write path        |
//! | `search.rs` | approximate and exact search, live filters              |
//! | `verify.rs` | the consistency check                                   |

mod idmap;
mod keys;
mod labels;
mod maintain;
mod open;
mod search;
mod types;
mod verify;
mod write;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Duration;

use imgsim_common::Storage;

use crate::error::{IndexError, Result};
use crate::hnsw::AnnIndex;
use crate::vectors::VectorSet;

use idmap::IdMap;
use keys::{id_of, key, ITEM};
pub use labels::{check_label, Label, LABELS_ATTR};
pub use types::{
    CollectionSpec, Consistency, ItemMeta, Manifest, NewItem, OpenOptions, Phase, Progress,
    SegmentRef, Stats, FORMAT_VERSION,
};

/// Sub-folder holding the sled database.
const SLED_DIR: &str = "sled";
/// Where a new collection's database is made before it is renamed to `sled`.
const SLED_STAGING_DIR: &str = "sled.creating";
/// Sub-folder holding the sealed segment files.
const SEGMENTS_DIR: &str = "segments";

/// Where a live id's vector is: a row of a sealed segment or of the
/// appendable one.
#[derive(Debug, Clone, Copy)]
enum Loc {
    Sealed { seg: usize, row: u32 },
    Fresh { row: u32 },
}

/// The in-memory picture of what the manifest vouches for.
struct State {
    manifest: Manifest,
    segments: Vec<AnnIndex>,
    fresh: VectorSet,
    locations: IdMap,
    tombstones: HashSet<u64>,
}

impl State {
    fn live(&self) -> usize {
        self.locations.len() - self.tombstones.len()
    }

    /// Adds a sealed segment: its rows become where their ids live.
    fn push_segment(&mut self, idx: AnnIndex) {
        let seg = self.segments.len();
        for (row, &id) in idx.vectors().ids().iter().enumerate() {
            self.locations.insert(
                id,
                Loc::Sealed {
                    seg,
                    row: row as u32,
                },
            );
        }
        self.segments.push(idx);
    }
}

/// A persistent, searchable collection of vectors. Cheap to share between
/// threads: searches run concurrently; writes are serialised.
pub struct Collection {
    path: PathBuf,
    seg_dir: PathBuf,
    db: sled::Db,
    options: OpenOptions,
    /// Where every file write, rename, removal and fsync goes.
    storage: Arc<dyn Storage>,
    state: RwLock<State>,
    writer: Mutex<()>,
    /// Set when a commit was applied but its flush failed.
    poisoned: AtomicBool,
    /// Ids by label, built on first use (see `labels`).
    labels: Mutex<labels::LabelCache>,
    /// Held by the one maintenance (seal, compaction) or bulk insert that
    /// may run at a time; taken before `writer` (see `maintain`).
    maintenance: Mutex<()>,
    /// Set when a write made maintenance due, for a waiting maintainer.
    maintenance_wanted: (Mutex<bool>, Condvar),
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("path", &self.path)
            .field("storage", &self.storage)
            .finish()
    }
}

/// sled's flush, passed through the storage's barrier (so that a double
/// can fail it).
fn flush_through(storage: &dyn Storage, db: &sled::Db) -> std::io::Result<()> {
    storage.barrier("sled flush", &mut || {
        db.flush().map(drop).map_err(|e| match e {
            sled::Error::Io(e) => e,
            other => std::io::Error::other(other),
        })
    })
}

/// Bytes of the files under `path` (what could be read).
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
    /// True when `path` holds a collection (or at least its database).
    pub fn exists(path: &Path) -> bool {
        path.join(SLED_DIR).join("conf").exists()
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The directory holding the collection.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The storage the collection writes through.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
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
            .collect();
        v.sort_unstable();
        v
    }

    /// Figures about the collection.
    pub fn stats(&self) -> Stats {
        let st = self.read_state();
        let memory_bytes = st.segments.iter().map(|s| s.heap_bytes()).sum::<usize>()
            + st.fresh.heap_bytes()
            + st.locations.heap_bytes();
        let rows = st.segments.iter().map(|s| s.len()).sum::<usize>() + st.fresh.len();
        let mapped_bytes = st
            .segments
            .iter()
            .filter(|s| s.vectors().is_mapped())
            .map(|s| (s.len() * s.dim() * 4) as u64)
            .sum();
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
            memory_bytes,
            memory_bytes_per_vector: if rows == 0 {
                0.0
            } else {
                memory_bytes as f64 / rows as f64
            },
            mapped_bytes,
            format_version: st.manifest.format_version,
        }
    }

    /// Wakes a thread waiting in [`Collection::wait_for_maintenance`].
    pub fn wake_maintainer(&self) {
        let (flag, cv) = &self.maintenance_wanted;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
    }

    /// Waits until a write makes maintenance due, [`wake_maintainer`] is
    /// called, or `timeout` passes; returns whether maintenance is due
    /// (what a maintainer thread loops on, see [`crate::Maintainer`]).
    ///
    /// [`wake_maintainer`]: Collection::wake_maintainer
    pub fn wait_for_maintenance(&self, timeout: Duration) -> bool {
        let (flag, cv) = &self.maintenance_wanted;
        let guard = flag.lock().unwrap_or_else(|p| p.into_inner());
        let (mut guard, _) = cv
            .wait_timeout_while(guard, timeout, |woken| !*woken)
            .unwrap_or_else(|p| p.into_inner());
        *guard = false;
        drop(guard);
        self.maintenance_due()
    }

    /// Flushes sled's buffers (every acknowledged write is already durable;
    /// this is for a clean shutdown).
    pub fn flush(&self) -> Result<()> {
        flush_through(&*self.storage, &self.db)?;
        Ok(())
    }
}
