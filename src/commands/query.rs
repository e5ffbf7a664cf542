//! `imgsim query`: the images most like an example image (or an indexed
//! one), words (CLIP), or both; optionally only those with a label, and
//! with recall against exact search.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use imgsim_pipeline::search::{self, Query, QueryEmbedder, SearchOptions};
use imgsim_pipeline::{EmbedderRecord, PipelineError};

use crate::collections::CollectionArg;
use crate::config::Settings;
use crate::exit::usage;
use crate::output::Table;

/// Arguments of `imgsim query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The example image.
    #[arg(required_unless_present_any = ["id", "text"], conflicts_with = "id")]
    pub image: Option<PathBuf>,
    /// Words to search for (collections indexed with clip-b32); with an
    /// image or --id, both count (see --text-weight).
    #[arg(long)]
    pub text: Option<String>,
    /// With an image and --text: the weight of the words, 0 to 1 (the
    /// query is (1 − w)·image + w·text, both unit vectors).
    #[arg(long, default_value_t = search::DEFAULT_TEXT_WEIGHT, requires = "text")]
    pub text_weight: f32,
    /// Only images carrying this label (see `imgsim tag`), filtered inside
    /// the search.
    #[arg(long)]
    pub label: Option<String>,
    /// Query with an indexed image (its id) instead; it is left out of the results.
    #[arg(long)]
    pub id: Option<u64>,
    /// The collection.
    #[command(flatten)]
    pub collection: CollectionArg,
    /// Number of results (1 to 1000).
    #[arg(short, long, default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=imgsim_pipeline::MAX_K as u64))]
    pub k: u64,
    /// HNSW candidate list size (default: the collection's ef_search).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=imgsim_pipeline::MAX_EF as u64))]
    pub ef: Option<u64>,
    /// Also run exact search and report recall@k of the approximate answer.
    #[arg(long)]
    pub exact: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `imgsim query`.
pub fn run(args: &QueryArgs, settings: &Settings) -> Result<()> {
    let k = args.k as usize;
    let (collection, dir) = args.collection.open(settings)?;
    let options = SearchOptions {
        k,
        ef: args.ef.map(|e| e as usize),
        exact_only: false,
        with_recall: args.exact,
        label: args.label.clone(),
    };
    let picture = match (&args.image, args.id) {
        (_, Some(id)) => Some(Query::Id(id)),
        (Some(image), None) => Some(Query::File(image.clone())),
        (None, None) => None,
    };
    let query = match (picture, &args.text) {
        (Some(p), None) => p,
        (None, Some(text)) => Query::Text(text.clone()),
        (Some(p), Some(text)) => Query::ImageText {
            image: Box::new(p),
            text: text.clone(),
            text_weight: args.text_weight,
        },
        (None, None) => return Err(usage("give an image, --id N, or --text WORDS")),
    };
    let answer = if query.needs_embedder() {
        let record = EmbedderRecord::read(&collection)?
            .ok_or_else(|| PipelineError::NoEmbedder(dir.clone()))?;
        let embedder = record.load(&dir)?;
        let qe = QueryEmbedder {
            embedder: embedder.as_ref(),
            record: &record,
            limits: &settings.limits,
        };
        search::run(&collection, Some(&qe), query, &options)?
    } else {
        search::run(&collection, None, query, &options)?
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let metric = collection.spec().metric;
    let label = match metric {
        imgsim_index::Metric::Cosine => "similarity",
        imgsim_index::Metric::L2 => "distance",
    };
    let hits_table = |hits: &[imgsim_pipeline::Hit]| {
        let mut t = Table::new(&["rank", label, "id", "path"], &[true, true, true, false]);
        for h in hits {
            t.row(vec![
                h.rank.to_string(),
                format!("{:.4}", h.score),
                h.id.to_string(),
                h.path.clone(),
            ]);
        }
        t
    };
    hits_table(&answer.results).print();
    if answer.results.is_empty() {
        match &args.label {
            Some(l) => println!("(no image carries the label `{l}`; see imgsim tag)"),
            None => println!("(the collection is empty)"),
        }
    }
    println!(
        "{} results in {:.1} ms ({} images, {}, {} is closer, ef {})",
        answer.results.len(),
        answer.took_ms,
        collection.len(),
        metric,
        match metric {
            imgsim_index::Metric::Cosine => "higher",
            imgsim_index::Metric::L2 => "lower",
        },
        answer.ef
    );
    if let (Some(exact), Some(r)) = (&answer.exact, answer.recall_at_k) {
        println!("recall@{k} against exact search: {r:.3}");
        if r < 1.0 {
            println!("exact answer:");
            hits_table(exact).print();
        }
    }
    Ok(())
}
