//! `imgsim remove`: remove images from a collection, by id or path.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use imgsim_pipeline::{Catalog, PipelineError};

use crate::collections::CollectionArg;
use crate::config::Settings;

/// Arguments of `imgsim remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Item ids or file paths.
    #[arg(required = true)]
    pub items: Vec<String>,
    /// The collection.
    #[command(flatten)]
    pub collection: CollectionArg,
}

/// `imgsim remove`.
pub fn run(args: &RemoveArgs, settings: &Settings) -> Result<()> {
    let (collection, _) = args.collection.open(settings)?;
    let catalog = Catalog::load(&collection)?;
    let mut ids = Vec::new();
    for item in &args.items {
        let by_id = item
            .parse::<u64>()
            .ok()
            .filter(|id| collection.contains(*id));
        let id = match by_id {
            Some(id) => id,
            None => {
                let abs = std::path::absolute(item).unwrap_or_else(|_| PathBuf::from(item));
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
    let n = collection.delete(&ids)?;
    let stats = collection.stats();
    println!(
        "removed {n}; {} images left, {} tombstones",
        stats.count, stats.tombstones
    );
    Ok(())
}
