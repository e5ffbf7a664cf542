//! `imgsim compact`: rebuild a collection's graph without deleted images.

use anyhow::Result;
use clap::Args;

use crate::collections::CollectionArg;
use crate::config::Settings;
use crate::output::bar;

/// Arguments of `imgsim compact`.
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The collection.
    #[command(flatten)]
    pub collection: CollectionArg,
}

/// `imgsim compact`.
pub fn run(args: &CompactArgs, settings: &Settings, quiet: bool) -> Result<()> {
    let (collection, _) = args.collection.open(settings)?;
    let before = collection.stats();
    let b = bar(
        !quiet,
        before.count as u64,
        "compacting [{bar:30}] {pos}/{len}",
    );
    collection.compact(&|_, done, total| {
        b.set_length(total as u64);
        b.set_position(done as u64);
    })?;
    b.finish_and_clear();
    let after = collection.stats();
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
