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
use crate::remote::Remote;

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

/// What the text output needs of the collection besides the answer.
struct Searched {
    /// Live images.
    images: usize,
    /// Its metric.
    metric: imgsim_index::Metric,
}

/// A collection as `GET /collections` lists it (the fields used here).
#[derive(serde::Deserialize)]
struct Listed {
    name: String,
    count: usize,
    metric: imgsim_index::Metric,
}

/// The query through a server: an image's bytes with the parameters in
/// the query string, or JSON for an id or words; the answer read into the
/// pipeline's [`search::Answer`].
fn remote_query(r: &Remote, args: &QueryArgs, name: &str) -> Result<(search::Answer, Searched)> {
    let path = format!("/collections/{name}/search");
    let answer: search::Answer = match (&args.image, args.id) {
        (Some(image), None) => {
            let bytes = std::fs::read(image).map_err(|e| imgsim_pipeline::PipelineError::Io {
                path: image.clone(),
                source: e,
            })?;
            let mut q = vec![("k", args.k.to_string())];
            if let Some(ef) = args.ef {
                q.push(("ef", ef.to_string()));
            }
            if args.exact {
                q.push(("with_recall", "true".into()));
            }
            if let Some(l) = &args.label {
                q.push(("label", l.clone()));
            }
            if let Some(t) = &args.text {
                q.push(("text", t.clone()));
                q.push(("text_weight", args.text_weight.to_string()));
            }
            r.post_bytes(&path, &q, &bytes)?
        }
        _ => {
            let mut body = serde_json::json!({"k": args.k, "with_recall": args.exact});
            if let Some(id) = args.id {
                body["id"] = id.into();
            }
            if let Some(t) = &args.text {
                body["text"] = t.clone().into();
                if args.id.is_some() {
                    body["text_weight"] = args.text_weight.into();
                }
            }
            if let Some(ef) = args.ef {
                body["ef"] = ef.into();
            }
            if let Some(l) = &args.label {
                body["label"] = l.clone().into();
            }
            r.post(&path, &body)?
        }
    };
    #[derive(serde::Deserialize)]
    struct List {
        collections: Vec<Listed>,
    }
    let list: List = r.get("/collections", &[])?;
    let c = list
        .collections
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| imgsim_pipeline::PipelineError::NotFound(format!("collection `{name}`")))?;
    Ok((
        answer,
        Searched {
            images: c.count,
            metric: c.metric,
        },
    ))
}

/// `imgsim query` (through `remote` when a server owns the collection).
pub fn run(args: &QueryArgs, settings: &Settings, remote: Option<&Remote>) -> Result<()> {
    let k = args.k as usize;
    if args.image.is_none() && args.id.is_none() && args.text.is_none() {
        return Err(usage("give an image, --id N, or --text WORDS"));
    }
    let (answer, searched) = match remote {
        Some(r) => {
            args.collection.dir(settings)?;
            remote_query(r, args, args.collection.name(settings))?
        }
        None => local_query(args, settings)?,
    };
    print(args, k, &answer, &searched)
}

/// The query on the collection opened here.
fn local_query(args: &QueryArgs, settings: &Settings) -> Result<(search::Answer, Searched)> {
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
    let searched = Searched {
        images: collection.len(),
        metric: collection.spec().metric,
    };
    Ok((answer, searched))
}

/// Prints the answer: a table, or JSON.
fn print(args: &QueryArgs, k: usize, answer: &search::Answer, searched: &Searched) -> Result<()> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(answer)?);
        return Ok(());
    }
    let metric = searched.metric;
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
        searched.images,
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
