//! `imgsim compact`: rebuild a collection's graph without deleted images.

use anyhow::Result;
use clap::Args;

use crate::collections::CollectionArg;
use crate::config::Settings;
use crate::output::bar;
use crate::remote::Remote;
use imgsim_pipeline::report::Compacted;

/// Arguments of `imgsim compact`.
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The collection.
    #[command(flatten)]
    pub collection: CollectionArg,
}

/// `imgsim compact` (through `remote` when a server owns the collection).
pub fn run(
    args: &CompactArgs,
    settings: &Settings,
    quiet: bool,
    remote: Option<&Remote>,
) -> Result<()> {
    let done: Compacted = match remote {
        Some(r) => {
            args.collection.dir(settings)?;
            let name = args.collection.name(settings);
            r.post(
                &format!("/collections/{name}/compact"),
                &serde_json::json!({}),
            )?
        }
        None => {
            let (collection, _) = args.collection.open(settings)?;
            let b = bar(
                !quiet,
                collection.len() as u64,
                "compacting [{bar:30}] {pos}/{len}",
            );
            let done = imgsim_pipeline::report::compact(&collection, &|done, total| {
                b.set_length(total as u64);
                b.set_position(done as u64);
            })?;
            b.finish_and_clear();
            done
        }
    };
    let (before, after) = (done.before, done.after);
    println!(
        "compacted: {} images, tombstones {} -> {}, segments {} -> {}, disk {:.1} -> {:.1} MiB",
        after.count,
        before.tombstones,
        after.tombstones,
        before.segments,
        after.segments,
        before.disk_bytes as f64 / (1 << 20) as f64,
        after.disk_bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}
