//! `imgsim check`: is a collection consistent (graphs and sled agree,
//! nothing stored twice, every image found by its own vector)?

use std::time::Instant;

use anyhow::Result;
use clap::Args;

use crate::collections::CollectionArg;
use crate::config::Settings;
use crate::exit;

/// Arguments of `imgsim check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The collection.
    #[command(flatten)]
    pub collection: CollectionArg,
    /// Also search this many images (evenly spread) with their own vector;
    /// each must be found. 0: structure only.
    #[arg(long, default_value_t = 1000)]
    pub self_search: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `imgsim check`: opening the collection already repairs what an
/// interrupted write left behind (see the index crate's commit protocol);
/// this then checks that graphs and sled agree, that no file or upload is
/// stored twice, and optionally that every image is found by its own vector.
pub fn run(args: &CheckArgs, settings: &Settings) -> Result<u8> {
    let (collection, dir) = args.collection.open(settings)?;
    let started = Instant::now();
    let report = collection.verify(args.self_search)?;
    // The same file path, or the same upload, under two ids.
    let mut seen = std::collections::HashMap::new();
    let mut duplicated = Vec::new();
    for (id, meta) in collection.items()? {
        let key = if meta.source == imgsim_pipeline::indexer::SOURCE_UPLOAD {
            meta.attrs
                .get(imgsim_pipeline::indexer::ATTR_HASH)
                .and_then(|h| h.as_str())
                .map(|h| format!("upload:{h}"))
        } else {
            Some(meta.external_id.clone())
        };
        if let Some(key) = key {
            if let Some(first) = seen.insert(key.clone(), id) {
                duplicated.push((key, first, id));
            }
        }
    }
    let ok = report.is_consistent() && duplicated.is_empty();
    if args.json {
        let v = serde_json::json!({
            "name": args.collection.name(settings),
            "path": dir,
            "consistent": ok,
            "report": report,
            "duplicated": duplicated
                .iter()
                .map(|(k, a, b)| serde_json::json!({"key": k, "ids": [a, b]}))
                .collect::<Vec<_>>(),
            "seconds": started.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let list = |v: &[u64]| {
            let shown: Vec<String> = v.iter().take(20).map(u64::to_string).collect();
            format!("{} [{}]", v.len(), shown.join(", "))
        };
        println!(
            "collection  {} ({})",
            args.collection.name(settings),
            dir.display()
        );
        println!(
            "images      {} live in {} graph segments + the appendable segment; {} item records",
            report.live, report.segments, report.item_records
        );
        println!("missing metadata       {}", list(&report.missing_metadata));
        println!(
            "unreadable metadata    {}",
            list(&report.unreadable_metadata)
        );
        println!("metadata without vector {}", list(&report.orphan_metadata));
        println!("NaN/infinite vectors   {}", list(&report.non_finite));
        println!("unreachable graph rows {}", report.unreachable_rows);
        println!("stored twice           {}", duplicated.len());
        for (k, a, b) in duplicated.iter().take(20) {
            println!("    {k}: ids {a} and {b}");
        }
        println!(
            "self-search            {} searched, not found: {}",
            report.self_searched,
            list(&report.not_found_by_own_vector)
        );
        println!(
            "{} ({:.2} s)",
            if ok { "consistent" } else { "INCONSISTENT" },
            started.elapsed().as_secs_f64()
        );
    }
    Ok(if ok { exit::OK } else { exit::INCONSISTENT })
}
