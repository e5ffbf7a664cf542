//! `imgsim info`: a collection's size, embedder, index parameters and disk use.

use anyhow::Result;
use clap::Args;
use imgsim_pipeline::EmbedderRecord;

use crate::collections::CollectionArg;
use crate::config::Settings;

/// Arguments of `imgsim info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The collection.
    #[command(flatten)]
    pub collection: CollectionArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `imgsim info`.
pub fn run(args: &InfoArgs, settings: &Settings) -> Result<()> {
    let (collection, dir) = args.collection.open(settings)?;
    let stats = collection.stats();
    let record = EmbedderRecord::read(&collection)?;
    let manifest = collection.manifest();
    let text = record.as_ref().is_some_and(|r| r.has_text());
    let labels = collection.label_counts()?;
    if args.json {
        let v = serde_json::json!({
            "name": args.collection.name(settings),
            "path": dir,
            "count": stats.count,
            "dim": stats.dim,
            "metric": stats.metric,
            "embedder": record,
            "index": stats.params,
            "segments": stats.segments,
            "sealed_rows": stats.sealed_rows,
            "appendable_rows": stats.appendable_rows,
            "tombstones": stats.tombstones,
            "disk_bytes": stats.disk_bytes,
            "memory_bytes": stats.memory_bytes,
            "format_version": stats.format_version,
            "created_unix_ms": manifest.created_unix_ms,
            "text_search": text,
            "labels": labels,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "collection  {} ({})",
        args.collection.name(settings),
        dir.display()
    );
    println!("images      {}", stats.count);
    println!("vectors     {}-d, {}", stats.dim, stats.metric);
    match &record {
        Some(r) => {
            println!("embedder    {}", r.describe());
            println!("            loaded from {}", r.spec.describe());
            let t = &r.identity.preprocessing;
            println!(
                "            input {}×{} (resize shorter side to {}, {:?}), {}",
                t.crop,
                t.crop,
                t.resize_shorter,
                t.interpolation,
                if r.exact_decode {
                    "exact JPEG decoding"
                } else {
                    "DCT-scaled JPEG decoding"
                }
            );
        }
        None => println!("embedder    none recorded (not an image collection)"),
    }
    if record.is_some() {
        println!(
            "words       {}",
            if text {
                "searchable by text (query --text; CLIP's text tower)"
            } else {
                "not searchable by text (the embedder has no text tower; clip-b32 has one)"
            }
        );
    }
    if !labels.is_empty() {
        let shown: Vec<String> = labels
            .iter()
            .take(8)
            .map(|(l, n)| format!("{l} ({n})"))
            .collect();
        println!(
            "labels      {}{} (imgsim tag; query --label)",
            shown.join(", "),
            if labels.len() > 8 { ", ..." } else { "" }
        );
    }
    println!(
        "index       HNSW m={} ef_construction={} ef_search={}; {} graph segments ({} vectors), {} recent vectors searched exactly",
        stats.params.m,
        stats.params.ef_construction,
        stats.params.ef_search,
        stats.segments,
        stats.sealed_rows,
        stats.appendable_rows
    );
    println!(
        "tombstones  {} ({:.1}% of stored vectors; compaction above {:.0}%)",
        stats.tombstones,
        100.0 * stats.tombstones as f64 / (stats.sealed_rows + stats.appendable_rows).max(1) as f64,
        100.0 * settings.storage.compact_tombstone_share
    );
    println!(
        "disk        {:.1} MiB; memory {:.1} MiB",
        stats.disk_bytes as f64 / (1 << 20) as f64,
        stats.memory_bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}
