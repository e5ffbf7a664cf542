//! `imgsim dups`: groups of near-duplicate images, and optionally moving
//! or deleting all but one of each group (a dry run unless `--apply`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use imgsim_pipeline::dups::{find_and_act, DupAction, DupsReport, DupsRequest, Keep};

use crate::collections::CollectionArg;
use crate::config::Settings;
use crate::remote::Remote;

/// Which copy of a group is the original.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum KeepArg {
    /// The largest file.
    Largest,
    /// The oldest file (modification time).
    Oldest,
}

/// Arguments of `imgsim dups`.
#[derive(Debug, Args)]
pub struct DupsArgs {
    /// The collection.
    #[command(flatten)]
    pub collection: CollectionArg,
    /// Cosine collections: minimum similarity (default 0.95). L2 collections:
    /// maximum distance (default: a tenth of the median nearest-neighbour distance).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Neighbours examined per image.
    #[arg(long, default_value_t = 10)]
    pub neighbours: usize,
    /// Move every copy but the original of each group into this folder.
    #[arg(long, value_name = "DIR", conflicts_with = "delete")]
    pub move_to: Option<PathBuf>,
    /// Delete every copy but the original of each group.
    #[arg(long)]
    pub delete: bool,
    /// Which copy is the original, kept in place.
    #[arg(long, value_enum, default_value = "largest")]
    pub keep: KeepArg,
    /// Really move or delete (without it, --move-to and --delete only print
    /// what they would do).
    #[arg(long)]
    pub apply: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `imgsim dups` (through `remote` when a server owns the collection: the
/// server moves or deletes the files).
pub fn run(args: &DupsArgs, settings: &Settings, remote: Option<&Remote>) -> Result<()> {
    let action = match (&args.move_to, args.delete) {
        (Some(dir), _) => Some(DupAction::MoveTo(dir.clone())),
        (None, true) => Some(DupAction::Delete),
        (None, false) => None,
    };
    let keep = match args.keep {
        KeepArg::Largest => Keep::Largest,
        KeepArg::Oldest => Keep::Oldest,
    };
    let report: DupsReport = match remote {
        Some(r) => {
            args.collection.dir(settings)?;
            let name = args.collection.name(settings);
            let move_to = match &args.move_to {
                Some(d) => {
                    Some(std::path::absolute(d).with_context(|| format!("{}", d.display()))?)
                }
                None => None,
            };
            r.post(
                &format!("/collections/{name}/dups"),
                &serde_json::json!({
                    "threshold": args.threshold,
                    "neighbours": args.neighbours,
                    "move_to": move_to,
                    "delete": args.delete,
                    "keep": match args.keep {
                        KeepArg::Largest => "largest",
                        KeepArg::Oldest => "oldest",
                    },
                    "apply": args.apply,
                }),
            )?
        }
        None => {
            let (collection, _) = args.collection.open(settings)?;
            let request = DupsRequest {
                threshold: args.threshold,
                neighbours: args.neighbours,
                action: action.clone(),
                keep,
                apply: args.apply,
            };
            find_and_act(&collection, &request, &imgsim_common::LocalFs)?
        }
    };
    let DupsReport {
        threshold,
        metric,
        groups,
        plan: plans,
        done,
        images,
        ..
    } = &report;
    let threshold = *threshold;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "threshold": threshold,
                "metric": metric,
                "groups": groups,
                "plan": plans,
                "applied": args.apply,
                "done": done,
            }))?
        );
        return Ok(());
    }
    let what = match metric {
        imgsim_index::Metric::Cosine => format!("similarity >= {threshold}"),
        imgsim_index::Metric::L2 => format!("distance <= {threshold}"),
    };
    println!(
        "{} groups of near-duplicates ({what}) among {} images",
        groups.len(),
        images
    );
    for (i, g) in groups.iter().enumerate() {
        println!("group {} ({} images):", i + 1, g.items.len());
        for m in &g.items {
            println!("  {:>10.4}  {:>8}  {}", m.score, m.id, m.path);
        }
    }
    let Some(action) = action else {
        return Ok(());
    };
    let verb = match (&action, args.apply) {
        (DupAction::MoveTo(_), true) => "moved",
        (DupAction::MoveTo(_), false) => "would move",
        (DupAction::Delete, true) => "deleted",
        (DupAction::Delete, false) => "would delete",
    };
    let mut n = 0;
    for p in plans.iter() {
        println!("keep {}", p.keep.1);
        for (_, path) in &p.extras {
            n += 1;
            match (&action, args.apply) {
                (DupAction::MoveTo(dir), false) => {
                    println!("  {verb} {path} -> {}/", dir.display())
                }
                (DupAction::MoveTo(_), true) => {
                    let to = done
                        .iter()
                        .find(|d| &d.from == path)
                        .and_then(|d| d.to.clone());
                    println!(
                        "  {verb} {path} -> {}",
                        to.map(|t| t.display().to_string()).unwrap_or_default()
                    );
                }
                (DupAction::Delete, _) => println!("  {verb} {path}"),
            }
        }
        for (_, path, why) in &p.untouched {
            println!("  left alone {path}: {why}");
        }
    }
    if args.apply {
        println!("{verb} {n} files and removed them from the collection");
    } else {
        println!("dry run: {verb} {n} files; add --apply to do it");
    }
    Ok(())
}
