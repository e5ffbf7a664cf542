//! The vector half of imgsim: approximate and exact k-nearest-neighbour
//! search, recall, and a persistent collection.
//!
//! - [`AnnIndex`]: HNSW (Malkov & Yashunin 2016). Built by imgsim's own
//!   parallel insertion (or `hnsw_rs`'s, [`GraphBuilder`]) into flat arrays
//!   that a lock-free,
//!   allocation-free search walks (see the [`hnsw`] module for why).
//! - [`ExactIndex`]: brute force with SIMD kernels and rayon; the ground truth.
//! - [`recall_at_k`]: how much of the exact answer an approximate one found.
//! - [`Collection`]: vectors, item metadata and graphs in one sled database,
//!   with a documented commit protocol (see the [`collection`] module):
//!   acknowledged writes are durable, a crash leaves a reopenable collection,
//!   reopening never rebuilds a graph, deletions are tombstones until a
//!   compaction rebuilds the graph.
//!
//! This crate knows vectors, not images: it depends on no ML, async or web crate.
#![deny(missing_docs)]

pub mod collection;
pub mod distance;
pub mod error;
pub mod exact;
pub mod hnsw;
pub mod maintainer;
pub mod quant;
pub mod recall;
mod segfile;
pub mod vectors;

pub use collection::{
    check_label, Collection, CollectionSpec, Consistency, ItemMeta, Label, Manifest, NewItem,
    OpenOptions, Phase, Stats, FORMAT_VERSION, LABELS_ATTR,
};
pub use distance::Metric;
pub use error::{IndexError, Result};
pub use exact::ExactIndex;
pub use hnsw::{AnnIndex, GraphBuilder, HnswParams};
pub use maintainer::{Maintainer, MaintenanceReport};
pub use quant::Quantization;
pub use recall::{mean_recall, recall_at_k, recall_at_k_by_distance};
pub use vectors::{IdFilter, Neighbor, VectorSet};
