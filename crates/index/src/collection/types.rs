//! The collection's own types: creation settings, open options, item
//! metadata, the manifest and the figures and reports it hands out.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::distance::Metric;
use crate::error::{IndexError, Result};
use crate::hnsw::HnswParams;

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

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
/// Usable directly as a configuration section (`[storage]`): missing keys
/// take their defaults, unknown keys are refused, and
/// [`OpenOptions::validate`] checks the ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenOptions {
    /// sled page cache size, in bytes. At least 1; default 64 MiB.
    pub cache_bytes: u64,
    /// Appendable vectors that trigger building a graph segment. At least 1;
    /// default 4096.
    pub seal_threshold: usize,
    /// Share of deleted items above which the graph is rebuilt without them.
    /// Greater than 0 and at most 1 (1: never); default 0.2.
    pub compact_tombstone_share: f64,
    /// More sealed segments than this triggers a merge into one. At least 1;
    /// default 8.
    pub max_segments: usize,
    /// Leave sealing and compaction to a [`Maintainer`](crate::Maintainer)
    /// thread instead of running them in the writing call once due (what a
    /// long-lived owner such as the server wants: a write returns as soon
    /// as it is durable). Set by the program, not by configuration.
    #[serde(skip)]
    pub deferred_maintenance: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            cache_bytes: 64 << 20,
            seal_threshold: 4096,
            compact_tombstone_share: 0.2,
            max_segments: 8,
            deferred_maintenance: false,
        }
    }
}

impl OpenOptions {
    /// Checks the options are in range; the error names the key.
    pub fn validate(&self) -> Result<()> {
        let at_least_one = |name: &'static str, value: u64| {
            if value == 0 {
                Err(IndexError::InvalidParameter {
                    name,
                    reason: "must be at least 1, not 0".into(),
                })
            } else {
                Ok(())
            }
        };
        at_least_one("cache_bytes", self.cache_bytes)?;
        at_least_one("seal_threshold", self.seal_threshold as u64)?;
        let share = self.compact_tombstone_share;
        // Written so that NaN fails too.
        if !(share > 0.0 && share <= 1.0) {
            return Err(IndexError::InvalidParameter {
                name: "compact_tombstone_share",
                reason: format!("must be greater than 0 and at most 1, not {share}"),
            });
        }
        at_least_one("max_segments", self.max_segments as u64)?;
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
    /// Heap bytes held by vectors, codes, graphs and the table of where
    /// each id's vector is.
    pub memory_bytes: usize,
    /// `memory_bytes` per stored vector (sealed and appendable, deleted
    /// ones included until compaction); 0 when empty.
    pub memory_bytes_per_vector: f64,
    /// Bytes of full-precision vectors memory-mapped from segment files
    /// rather than held in memory (quantized collections): the kernel pages
    /// them in for rescoring and exact search, and may drop them again.
    pub mapped_bytes: u64,
    /// Format version.
    pub format_version: u32,
}

/// What [`Collection::verify`](crate::Collection::verify) found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_options_are_a_config_section_and_ranges_are_checked() {
        let o: OpenOptions = serde_json::from_str(r#"{"seal_threshold": 10}"#).unwrap();
        assert_eq!(
            o,
            OpenOptions {
                seal_threshold: 10,
                ..OpenOptions::default()
            }
        );
        let o: OpenOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(o, OpenOptions::default());
        o.validate().unwrap();
        let e = serde_json::from_str::<OpenOptions>(r#"{"cache": 1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `cache`"), "{e}");

        let bad = |f: fn(&mut OpenOptions)| {
            let mut o = OpenOptions::default();
            f(&mut o);
            o.validate().unwrap_err().to_string()
        };
        assert_eq!(
            bad(|o| o.cache_bytes = 0),
            "invalid parameter cache_bytes: must be at least 1, not 0"
        );
        assert_eq!(
            bad(|o| o.seal_threshold = 0),
            "invalid parameter seal_threshold: must be at least 1, not 0"
        );
        assert_eq!(
            bad(|o| o.max_segments = 0),
            "invalid parameter max_segments: must be at least 1, not 0"
        );
        for share in [0.0, -0.1, 1.5, f64::NAN] {
            let o = OpenOptions {
                compact_tombstone_share: share,
                ..OpenOptions::default()
            };
            let e = o.validate().unwrap_err();
            assert!(matches!(
                e,
                IndexError::InvalidParameter {
                    name: "compact_tombstone_share",
                    ..
                }
            ));
        }
        assert_eq!(
            bad(|o| o.compact_tombstone_share = 1.5),
            "invalid parameter compact_tombstone_share: must be greater than 0 and at most 1, not 1.5"
        );
        for share in [1e-9, 0.2, 1.0] {
            let o = OpenOptions {
                compact_tombstone_share: share,
                cache_bytes: 1,
                seal_threshold: 1,
                max_segments: 1,
                deferred_maintenance: false,
            };
            o.validate().unwrap();
        }
    }
}
