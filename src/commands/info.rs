//! `imgsim info`: a collection's size, embedder, index parameters and disk use.

use anyhow::Result;
use clap::Args;
use imgsim_pipeline::report::CollectionInfo;

use crate::collections::CollectionArg;
use crate::config::Settings;
use crate::remote::Remote;

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

/// `imgsim info` (through `remote` when a server owns the collection).
pub fn run(args: &InfoArgs, settings: &Settings, remote: Option<&Remote>) -> Result<()> {
    let name = args.collection.name(settings);
    let info: CollectionInfo = match remote {
        Some(r) => {
            args.collection.dir(settings)?;
            r.get(&format!("/collections/{name}/info"), &[])?
        }
        None => {
            let (collection, dir) = args.collection.open(settings)?;
            CollectionInfo::gather(&collection, name, &dir)?
        }
    };
    if args.json {
        // Through a Value: keys sorted, as this command always printed them.
        let v = serde_json::to_value(&info)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let record = &info.embedder;
    let text = info.text_search;
    let labels = &info.labels;
    println!("collection  {} ({})", info.name, info.path.display());
    println!("images      {}", info.count);
    println!("vectors     {}-d, {}", info.dim, info.metric);
    match record {
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
        "index       HNSW m={} ef_construction={} ef_search={} builder={} quantization={}; {} graph segments ({} vectors), {} recent vectors searched exactly",
        info.index.m,
        info.index.ef_construction,
        info.index.ef_search,
        info.index.builder.as_str(),
        info.index.quantization,
        info.segments,
        info.sealed_rows,
        info.appendable_rows
    );
    println!(
        "tombstones  {} ({:.1}% of stored vectors; compaction above {:.0}%)",
        info.tombstones,
        100.0 * info.tombstones as f64 / (info.sealed_rows + info.appendable_rows).max(1) as f64,
        100.0 * settings.storage.compact_tombstone_share
    );
    println!(
        "disk        {:.1} MiB; memory {:.1} MiB ({:.0} bytes per vector){}",
        info.disk_bytes as f64 / (1 << 20) as f64,
        info.memory_bytes as f64 / (1 << 20) as f64,
        info.memory_bytes_per_vector,
        if info.mapped_bytes > 0 {
            format!(
                "; {:.1} MiB of f32 vectors memory-mapped for rescoring",
                info.mapped_bytes as f64 / (1 << 20) as f64
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
