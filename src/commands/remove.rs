//! `imgsim remove`: remove images from a collection, by id or path.

use anyhow::{Context, Result};
use clap::Args;
use imgsim_pipeline::report::Removed;

use crate::collections::CollectionArg;
use crate::config::Settings;
use crate::remote::Remote;

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

/// `imgsim remove` (through `remote` when a server owns the collection).
pub fn run(args: &RemoveArgs, settings: &Settings, remote: Option<&Remote>) -> Result<()> {
    let cwd = std::env::current_dir().context("finding the current folder")?;
    let removed: Removed = match remote {
        Some(r) => {
            args.collection.dir(settings)?;
            let name = args.collection.name(settings);
            r.post(
                &format!("/collections/{name}/remove"),
                &serde_json::json!({"items": args.items, "cwd": cwd}),
            )?
        }
        None => {
            let (collection, _) = args.collection.open(settings)?;
            imgsim_pipeline::report::remove_items(&collection, &args.items, &cwd)?
        }
    };
    println!(
        "removed {}; {} images left, {} tombstones",
        removed.removed, removed.count, removed.tombstones
    );
    Ok(())
}
