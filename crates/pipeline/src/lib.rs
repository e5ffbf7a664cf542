//! The photo-collection pipeline of imgsim: find image files, decode and
//! embed them in parallel, index them incrementally in a collection, and
//! answer queries by example.
//!
//! This crate composes [`imgsim_embed`] (images → vectors) and
//! [`imgsim_index`] (vectors → search); neither knows the other.
#![deny(missing_docs)]

pub mod dups;
pub mod error;
pub mod files;
pub mod head;
pub mod indexer;
pub mod labelled;
pub mod model;
pub mod owner;
pub mod report;
pub mod roots;
pub mod search;
pub mod store;
pub mod tag;
pub mod thumbnails;
pub mod train;

#[cfg(test)]
mod testing;
pub mod uploads;
pub mod watch;

pub use error::{PipelineError, Result};
pub use files::{walk, walk_with, Failure, FoundFile, Walk, WalkOptions};
pub use indexer::{index_files, Catalog, IndexOptions, IndexProgress, Summary};
pub use labelled::{embed_labelled, LabelledImage, LabelledSet, LabelledVectors};
pub use model::{EmbedderChoice, EmbedderRecord, EmbedderSpec};
pub use search::{Answer, DupGroup, Hit};
pub use store::{
    collection_dir, create_for_embedder, open, open_for_query, ready_for_indexing, CreateSettings,
    Ready,
};

/// Largest k a search may ask for (the CLI and the API both refuse more).
pub const MAX_K: usize = 1000;

/// Largest ef a search may ask for.
pub const MAX_EF: usize = 100_000;
