//! What the crate's unit tests share: a small empty collection.

use std::path::Path;

use imgsim_index::{Collection, CollectionSpec, HnswParams, Metric, OpenOptions};

/// A new, empty 2-d L2 collection at `path`.
pub(crate) fn collection_2d(path: &Path) -> Collection {
    let spec = CollectionSpec {
        dim: 2,
        metric: Metric::L2,
        params: HnswParams::default(),
    };
    Collection::create(path, spec, OpenOptions::default()).unwrap()
}
