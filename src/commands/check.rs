//! `imgsim check`: is a collection consistent (graphs and sled agree,
//! nothing stored twice, every image found by its own vector)?

use anyhow::Result;
use clap::Args;

use crate::collections::CollectionArg;
use crate::config::Settings;
use crate::exit;
use crate::remote::Remote;
use imgsim_pipeline::report::CheckOutcome;

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
pub fn run(args: &CheckArgs, settings: &Settings, remote: Option<&Remote>) -> Result<u8> {
    let outcome: CheckOutcome = match remote {
        Some(r) => {
            args.collection.dir(settings)?;
            let name = args.collection.name(settings);
            r.get(
                &format!("/collections/{name}/check"),
                &[("self_search", args.self_search.to_string())],
            )?
        }
        None => {
            let (collection, dir) = args.collection.open(settings)?;
            imgsim_pipeline::report::check(
                &collection,
                args.collection.name(settings),
                &dir,
                args.self_search,
            )?
        }
    };
    let ok = outcome.consistent;
    let report = &outcome.report;
    let duplicated: Vec<(String, u64, u64)> = outcome
        .duplicated
        .iter()
        .map(|d| (d.key.clone(), d.ids[0], d.ids[1]))
        .collect();
    if args.json {
        // Through a Value: keys sorted, as this command always printed them.
        let v = serde_json::to_value(&outcome)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let list = |v: &[u64]| {
            let shown: Vec<String> = v.iter().take(20).map(u64::to_string).collect();
            format!("{} [{}]", v.len(), shown.join(", "))
        };
        println!("collection  {} ({})", outcome.name, outcome.path.display());
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
            outcome.seconds
        );
    }
    Ok(if ok { exit::OK } else { exit::INCONSISTENT })
}
