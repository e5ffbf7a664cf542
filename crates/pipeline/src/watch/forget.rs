//! Removing the items of files that were deleted or moved away, by path,
//! with their thumbnails.

use std::path::{Path, PathBuf};

use imgsim_index::Collection;

use crate::error::Result;
use crate::indexer::Catalog;
use crate::thumbnails::Thumbnails;

/// Removes the file items at `paths`, or under them (a folder deleted or
/// moved away), whose files no longer exist (only a definite "not found"
/// counts: an unreadable file is not a deletion). The delete is committed
/// first, then the items' cached thumbnails are removed (a failure there is
/// logged; the next sweep removes what is left). Returns how many items
/// were removed. Callers serialise it with indexing runs on the same
/// collection.
pub fn forget_missing(collection: &Collection, paths: &[PathBuf]) -> Result<usize> {
    if paths.is_empty() {
        return Ok(0);
    }
    let catalog = Catalog::load(collection)?;
    let ids: Vec<u64> = catalog
        .paths()
        .filter(|(p, _)| {
            let p = Path::new(p);
            paths.iter().any(|g| p.starts_with(g))
                && matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        })
        .map(|(_, id)| id)
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let removed = collection.delete(&ids)?;
    Thumbnails::new(collection.path(), imgsim_common::local()).remove_all(&ids);
    Ok(removed)
}
