//! What the service's test files share: indexing a folder of pictures into
//! a new collection with a real backbone and synthetic weights.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use imgsim_embed::{Backbone, WeightsSource};
use imgsim_pipeline::model::EmbedderChoice;
use imgsim_pipeline::store::CreateSettings;

/// Creates the collection at `collection_dir` with `backbone` (synthetic
/// weights, seed 1) and indexes the images of `photos` into it.
pub fn index_folder(
    photos: &Path,
    collection_dir: &Path,
    backbone: Backbone,
) -> imgsim_pipeline::Summary {
    let walk = imgsim_pipeline::walk(&[photos.to_path_buf()]).unwrap();
    let files: Vec<_> = walk.files.iter().map(|f| f.path.clone()).collect();
    let ready = imgsim_pipeline::ready_for_indexing(
        collection_dir,
        &EmbedderChoice::Backbone {
            backbone,
            weights: Some(WeightsSource::Synthetic { seed: 1 }),
        },
        false,
        &files,
        &CreateSettings {
            params: imgsim_index::HnswParams::default(),
            options: imgsim_index::OpenOptions::default(),
            exact_decode: false,
            train: Default::default(),
        },
        &|_| {},
    )
    .unwrap();
    imgsim_pipeline::index_files(
        &ready.collection,
        ready.embedder.as_ref(),
        walk,
        &[photos.to_path_buf()],
        &imgsim_pipeline::IndexOptions::default(),
        &AtomicBool::new(false),
        &|_| {},
    )
    .unwrap()
}
