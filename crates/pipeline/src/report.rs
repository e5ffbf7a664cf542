//! What `info`, `check` and `remove` compute about a collection, once, for
//! both front ends: a collection's figures ([`CollectionInfo`]), its
//! consistency ([`CheckOutcome`]), and removing items named by id or path
//! ([`remove_items`]). The CLI prints these; the service answers them as
//! JSON, which the CLI, as a client, reads back into the same types.

use std::path::{Path, PathBuf};
use std::time::Instant;

use imgsim_index::{Collection, Consistency, HnswParams, Metric};
use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};
use crate::indexer::{Catalog, ATTR_HASH, SOURCE_UPLOAD};
use crate::model::EmbedderRecord;

/// A collection's size, embedder, index parameters and disk use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectionInfo {
    /// Its name.
    pub name: String,
    /// Its folder.
    pub path: PathBuf,
    /// Live items.
    pub count: usize,
    /// Vector dimension.
    pub dim: usize,
    /// Metric.
    pub metric: Metric,
    /// The embedder record, when it holds images.
    pub embedder: Option<EmbedderRecord>,
    /// HNSW parameters.
    pub index: HnswParams,
    /// Sealed graph segments.
    pub segments: usize,
    /// Vectors in sealed segments.
    pub sealed_rows: usize,
    /// Vectors in the appendable segment (searched exactly).
    pub appendable_rows: usize,
    /// Deleted items still in a graph.
    pub tombstones: usize,
    /// Bytes on disk.
    pub disk_bytes: u64,
    /// Heap bytes held by vectors, codes and graphs.
    pub memory_bytes: usize,
    /// `memory_bytes` per stored vector.
    #[serde(default)]
    pub memory_bytes_per_vector: f64,
    /// Bytes of f32 vectors memory-mapped rather than held (quantized).
    #[serde(default)]
    pub mapped_bytes: u64,
    /// Format version.
    pub format_version: u32,
    /// When it was created, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// Whether it can be searched by words.
    pub text_search: bool,
    /// Labels in use with their counts, most frequent first.
    pub labels: Vec<(String, usize)>,
}

impl CollectionInfo {
    /// Gathers the figures of `collection`, called `name`, in folder `dir`.
    pub fn gather(collection: &Collection, name: &str, dir: &Path) -> Result<CollectionInfo> {
        let stats = collection.stats();
        let record = EmbedderRecord::read(collection)?;
        let text_search = record.as_ref().is_some_and(|r| r.has_text());
        Ok(CollectionInfo {
            name: name.to_string(),
            path: dir.to_path_buf(),
            count: stats.count,
            dim: stats.dim,
            metric: stats.metric,
            embedder: record,
            index: stats.params,
            segments: stats.segments,
            sealed_rows: stats.sealed_rows,
            appendable_rows: stats.appendable_rows,
            tombstones: stats.tombstones,
            disk_bytes: stats.disk_bytes,
            memory_bytes: stats.memory_bytes,
            memory_bytes_per_vector: stats.memory_bytes_per_vector,
            mapped_bytes: stats.mapped_bytes,
            format_version: stats.format_version,
            created_unix_ms: collection.manifest().created_unix_ms,
            text_search,
            labels: collection.label_counts()?,
        })
    }
}

/// One thing stored under two ids: the same file path, or the same upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Duplicated {
    /// The path, or `upload:<blake3>`.
    pub key: String,
    /// The first id and the second.
    pub ids: [u64; 2],
}

/// What `check` found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// The collection's name.
    pub name: String,
    /// Its folder.
    pub path: PathBuf,
    /// Whether nothing is wrong.
    pub consistent: bool,
    /// Graphs and sled compared, and the self-search.
    pub report: Consistency,
    /// Things stored twice.
    pub duplicated: Vec<Duplicated>,
    /// Seconds the check took.
    pub seconds: f64,
}

/// Checks `collection` (called `name`, in `dir`): graphs and sled agree
/// (see [`Collection::verify`], which also searches `self_search` images
/// with their own vectors), and no file or upload is stored twice.
pub fn check(
    collection: &Collection,
    name: &str,
    dir: &Path,
    self_search: usize,
) -> Result<CheckOutcome> {
    let started = Instant::now();
    let report = collection.verify(self_search)?;
    let mut seen = std::collections::HashMap::new();
    let mut duplicated = Vec::new();
    for (id, meta) in collection.items()? {
        let key = if meta.source == SOURCE_UPLOAD {
            meta.attrs
                .get(ATTR_HASH)
                .and_then(|h| h.as_str())
                .map(|h| format!("upload:{h}"))
        } else {
            Some(meta.external_id.clone())
        };
        if let Some(key) = key {
            if let Some(first) = seen.insert(key.clone(), id) {
                duplicated.push(Duplicated {
                    key,
                    ids: [first, id],
                });
            }
        }
    }
    Ok(CheckOutcome {
        name: name.to_string(),
        path: dir.to_path_buf(),
        consistent: report.is_consistent() && duplicated.is_empty(),
        report,
        duplicated,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What a removal did.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Removed {
    /// Items removed.
    pub removed: usize,
    /// Live items left.
    pub count: usize,
    /// Deleted items still in a graph.
    pub tombstones: usize,
}

/// Removes the items named by `items`: each an id of the collection, or
/// the path of an indexed file (relative paths are taken from `cwd`, then
/// as given). One name that matches nothing refuses the whole removal.
pub fn remove_items(collection: &Collection, items: &[String], cwd: &Path) -> Result<Removed> {
    let catalog = Catalog::load(collection)?;
    let mut ids = Vec::new();
    for item in items {
        let by_id = item
            .parse::<u64>()
            .ok()
            .filter(|id| collection.contains(*id));
        let id = match by_id {
            Some(id) => id,
            None => {
                let abs = std::path::absolute(cwd.join(item)).unwrap_or_else(|_| cwd.join(item));
                let found = abs
                    .to_str()
                    .and_then(|p| catalog.id_of_path(p))
                    .or_else(|| catalog.id_of_path(item));
                found.ok_or_else(|| {
                    PipelineError::NotFound(format!("`{item}` (neither an id nor an indexed path)"))
                })?
            }
        };
        ids.push(id);
    }
    let removed = collection.delete(&ids)?;
    let stats = collection.stats();
    Ok(Removed {
        removed,
        count: stats.count,
        tombstones: stats.tombstones,
    })
}

/// A collection's figures before or after a compaction.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct CompactFigures {
    /// Live items.
    pub count: usize,
    /// Deleted items still in a graph.
    pub tombstones: usize,
    /// Sealed graph segments.
    pub segments: usize,
    /// Bytes on disk.
    pub disk_bytes: u64,
}

impl CompactFigures {
    fn of(collection: &Collection) -> CompactFigures {
        let s = collection.stats();
        CompactFigures {
            count: s.count,
            tombstones: s.tombstones,
            segments: s.segments,
            disk_bytes: s.disk_bytes,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Compacted {
    /// Before.
    pub before: CompactFigures,
    /// After.
    pub after: CompactFigures,
}

/// Rebuilds `collection`'s graphs without its deleted items, reporting
/// `progress(done, total)`.
pub fn compact(
    collection: &Collection,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Compacted> {
    let before = CompactFigures::of(collection);
    collection.compact(&|_, done, total| progress(done, total))?;
    Ok(Compacted {
        before,
        after: CompactFigures::of(collection),
    })
}
