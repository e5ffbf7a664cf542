//! `imgsim tag`: zero-shot labels for every image of a CLIP collection.

use anyhow::Result;
use clap::Args;
use imgsim_pipeline::tag::{self, TagOptions, TagReport};
use imgsim_pipeline::{EmbedderRecord, PipelineError};

use crate::collections::CollectionArg;
use crate::config::Settings;
use crate::output::{bar, Table};
use crate::remote::Remote;

/// Arguments of `imgsim tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The labels to choose from, comma-separated (at least two).
    #[arg(long, required = true, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// The prompt each label is put in (`{}` stands for the label).
    #[arg(long, default_value = tag::DEFAULT_TEMPLATE)]
    pub template: String,
    /// Most labels kept per image.
    #[arg(long, default_value_t = 3)]
    pub top: usize,
    /// Least probability for a label after the best one (0 to 1).
    #[arg(long, default_value_t = 0.2)]
    pub min_score: f32,
    /// The collection.
    #[command(flatten)]
    pub collection: CollectionArg,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `imgsim tag` (through `remote` when a server owns the collection).
pub fn run(
    args: &TagArgs,
    settings: &Settings,
    quiet: bool,
    remote: Option<&Remote>,
) -> Result<()> {
    let options = TagOptions {
        labels: args.labels.iter().map(|l| l.trim().to_string()).collect(),
        template: args.template.clone(),
        top: args.top,
        min_score: args.min_score,
    };
    options.validate()?;
    let report: TagReport = match remote {
        Some(r) => {
            args.collection.dir(settings)?;
            let name = args.collection.name(settings);
            r.post(&format!("/collections/{name}/tag"), &options)?
        }
        None => tag_here(args, settings, quiet, &options)?,
    };
    print(args, &options, &report)
}

/// Tags the collection opened here.
fn tag_here(
    args: &TagArgs,
    settings: &Settings,
    quiet: bool,
    options: &TagOptions,
) -> Result<TagReport> {
    let (collection, dir) = args.collection.open(settings)?;
    let record =
        EmbedderRecord::read(&collection)?.ok_or_else(|| PipelineError::NoEmbedder(dir.clone()))?;
    let embedder = record.load(&dir)?;
    let b = bar(
        !quiet && !args.json,
        collection.len() as u64,
        "tagging [{bar:30}] {pos}/{len} images",
    );
    let report = tag::tag(&collection, embedder.as_ref(), options, &|done, total| {
        b.set_length(total as u64);
        b.set_position(done as u64);
    })?;
    b.finish_and_clear();
    Ok(report)
}

/// Prints the report: a table, or JSON.
fn print(args: &TagArgs, options: &TagOptions, report: &TagReport) -> Result<()> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let mut t = Table::new(&["label", "images"], &[false, true]);
    for (label, n) in &report.per_label {
        t.row(vec![label.clone(), n.to_string()]);
    }
    t.print();
    println!(
        "tagged {} images in {:.1} s (prompt \"{}\"; best label kept, others from probability {}; at most {})",
        report.images,
        report.seconds,
        options.template,
        options.min_score,
        options.top
    );
    Ok(())
}
