//! `imgsim eval`: retrieval quality with labels (precision@10, mAP@100 by
//! exact search, beside the chance level) — leave-one-out on a labelled
//! folder or CSV file with any embedder (a backbone, an autoencoder, a
//! collection's embedder, the tiny-image and colour-histogram baselines),
//! or Fashion-MNIST's test set against its training set for raw pixels,
//! PCA or an autoencoder. Never through a server: it opens no collection
//! except to read which embedder one uses.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use imgsim_bench::eval::{
    chance_precision, leave_one_out, retrieval_quality, LeaveOneOut, Pca, QualityReport,
};
use imgsim_datasets::fashion_mnist::FashionMnist;
use imgsim_embed::{baseline, Embedder, BASELINES};
use imgsim_index::Metric;
use imgsim_pipeline::{embed_labelled, Failure, LabelledSet, LabelledVectors};
use serde::Serialize;

use crate::commands::train::TrainDataset;
use crate::config::Settings;
use crate::exit::usage;
use crate::output::bar;

/// Arguments of `imgsim eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A labelled folder: each sub-folder is a label, the images anywhere
    /// below it are its images. Every image is a query against all the
    /// others (leave-one-out). With --labels: the folder relative paths in
    /// the CSV file are taken from.
    #[arg(long, conflicts_with = "dataset")]
    pub images: Option<PathBuf>,
    /// A CSV file of `path,label` lines (header optional, quoted fields
    /// allowed); relative paths are relative to --images when given,
    /// otherwise to the CSV file's folder.
    #[arg(long, conflicts_with = "dataset")]
    pub labels: Option<PathBuf>,
    /// A built-in labelled data set: queries = its test set, base = its
    /// training set (the mode when neither --images nor --labels is given).
    #[arg(long, value_enum)]
    pub dataset: Option<TrainDataset>,
    /// Folder of the Fashion-MNIST IDX files.
    #[arg(long)]
    pub data_path: Option<PathBuf>,
    /// The embedder. On --images/--labels: `tiny`, `colour-histogram`,
    /// `backbone:NAME` (see `imgsim models`; weights from --weights),
    /// `autoencoder:PATH` (a checkpoint), or `collection:NAME` (the
    /// embedder a collection was indexed with). On Fashion-MNIST: `raw`
    /// (pixels), `pca:D`, or `autoencoder:PATH`.
    #[arg(long)]
    pub embedder: String,
    /// Weights of a `backbone:NAME` embedder: a .safetensors file,
    /// hf:OWNER/REPO[:FILE], or synthetic:SEED (default: the backbone's
    /// weights on the Hub).
    #[arg(long)]
    pub weights: Option<String>,
    /// Distance: l2 or cosine. Default: the embedder's own metric (l2 on
    /// Fashion-MNIST).
    #[arg(long)]
    pub metric: Option<String>,
    /// Also evaluate the `tiny` and `colour-histogram` baselines on the
    /// same images and show them side by side (--images/--labels).
    #[arg(long)]
    pub baselines: bool,
    /// Images decoded and embedded per batch (--images/--labels).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the Markdown table here (--images/--labels).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
}

/// `imgsim eval`: leave-one-out quality on a labelled folder or CSV file,
/// or precision@10 and mAP@100 on Fashion-MNIST.
pub fn run(args: &EvalArgs, settings: &Settings, progress: bool) -> Result<()> {
    if args.images.is_some() || args.labels.is_some() {
        return run_labelled(args, settings, progress);
    }
    for (flag, given) in [
        ("--baselines", args.baselines),
        ("--weights", args.weights.is_some()),
        ("--markdown", args.markdown.is_some()),
    ] {
        if given {
            return Err(usage(format!(
                "{flag} applies to --images or --labels, not to --dataset"
            )));
        }
    }
    run_fashion(args, settings)
}

/// What `--json` receives for a labelled set: the embedder's leave-one-out
/// figures (`images`, `labels`, `precision_at_10`, `map_at_100`,
/// `chance_precision_at_10`, `per_label`), the failed files, the baselines.
#[derive(Debug, Serialize)]
struct LabelledReport {
    #[serde(flatten)]
    main: EmbedderQuality,
    failed: Vec<Failure>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    baselines: Vec<EmbedderQuality>,
}

/// One embedder's leave-one-out figures and timings.
#[derive(Debug, Clone, Serialize)]
struct EmbedderQuality {
    /// As given to --embedder (or the baseline's name).
    embedder: String,
    /// The architecture (`dinov2-small`, `colour-histogram-512`...).
    architecture: String,
    dim: usize,
    metric: String,
    #[serde(flatten)]
    quality: LeaveOneOut,
    embed_seconds: f64,
    search_seconds: f64,
}

/// The index metric of an embedder, unless --metric overrides it.
fn metric_for(e: &dyn Embedder, asked: Option<&str>) -> Result<Metric> {
    Ok(match asked {
        Some(m) => Metric::parse(m)?,
        None => match e.metric() {
            imgsim_embed::Metric::Cosine => Metric::Cosine,
            imgsim_embed::Metric::L2 => Metric::L2,
        },
    })
}

/// Embeds `set` with `e` (a progress bar while it runs) and scores it.
fn evaluate(
    name: &str,
    e: &dyn Embedder,
    set: &LabelledSet,
    args: &EvalArgs,
    settings: &Settings,
    progress: bool,
) -> Result<(EmbedderQuality, LabelledVectors)> {
    let metric = metric_for(e, args.metric.as_deref())?;
    let b = bar(
        progress,
        set.len() as u64,
        "{msg:>20} [{bar:30}] {pos}/{len} {rate} ETA {eta}",
    );
    b.set_message(name.to_string());
    let t = Instant::now();
    let v = embed_labelled(set, e, &settings.limits, args.batch_size, &|done, _| {
        b.set_position(done as u64)
    })
    .with_context(|| format!("embedding with {name}"))?;
    b.finish_and_clear();
    let embed_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let quality = leave_one_out(&v.vectors, v.dim, &v.labels, &v.label_names, metric)?;
    let q = EmbedderQuality {
        embedder: name.to_string(),
        architecture: e.name().to_string(),
        dim: v.dim,
        metric: metric.to_string(),
        quality,
        embed_seconds,
        search_seconds: t.elapsed().as_secs_f64(),
    };
    Ok((q, v))
}

/// `imgsim eval --images DIR | --labels FILE`: leave-one-out quality.
fn run_labelled(args: &EvalArgs, settings: &Settings, progress: bool) -> Result<()> {
    if args.dataset.is_some() || args.data_path.is_some() {
        return Err(usage(
            "--data-path applies to --dataset, not to --images or --labels",
        ));
    }
    if args.batch_size == 0 {
        return Err(usage("--batch-size must be at least 1"));
    }
    let set = match (&args.labels, &args.images) {
        (Some(csv), root) => LabelledSet::from_csv(csv, root.as_deref())?,
        (None, Some(dir)) => LabelledSet::from_folder(dir)?,
        (None, None) => return Err(usage("--images or --labels is needed")),
    };
    let e = crate::embedders::load(&args.embedder, args.weights.as_deref(), settings)?;
    let (main, vectors) = evaluate(&args.embedder, e.as_ref(), &set, args, settings, progress)?;
    drop(e);
    let mut baselines = Vec::new();
    if args.baselines {
        for name in BASELINES {
            if name == args.embedder {
                baselines.push(main.clone());
                continue;
            }
            let Some(b) = baseline(name) else { continue };
            baselines.push(evaluate(name, b.as_ref(), &set, args, settings, progress)?.0);
        }
    }
    let report = LabelledReport {
        main,
        failed: vectors.failures,
        baselines,
    };
    let table = markdown_table(&report);
    print!("{table}");
    println!("{}", summary(&report));
    for f in report.failed.iter().take(MAX_FAILURES_SHOWN) {
        eprintln!("failed: {}: {}", f.path.display(), f.error);
    }
    if report.failed.len() > MAX_FAILURES_SHOWN {
        eprintln!(
            "... and {} more failed files (all are listed by --json)",
            report.failed.len() - MAX_FAILURES_SHOWN
        );
    }
    if let Some(path) = &args.json {
        write(path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    if let Some(path) = &args.markdown {
        write(path, table.as_bytes())?;
    }
    Ok(())
}

/// Failed files listed on stderr at most (all of them go to --json).
const MAX_FAILURES_SHOWN: usize = 20;

/// Writes `bytes` to `path` through the storage seam.
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    imgsim_common::Storage::write(&imgsim_common::LocalFs, path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// The Markdown table: one row per label, then `all`; precision@10,
/// mAP@100 and chance, and each baseline's precision@10.
fn markdown_table(r: &LabelledReport) -> String {
    let q = &r.main.quality;
    let mut out = String::from("| label | images | precision@10 | mAP@100 | chance |");
    let mut rule = String::from("|---|---:|---:|---:|---:|");
    for b in &r.baselines {
        let _ = write!(out, " {} P@10 |", b.embedder);
        rule.push_str("---:|");
    }
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    let baseline_cells = |label: Option<&str>| -> String {
        r.baselines
            .iter()
            .map(|b| {
                let p = match label {
                    Some(l) => b
                        .quality
                        .per_label
                        .iter()
                        .find(|x| x.label == l)
                        .map(|x| x.precision_at_10),
                    None => Some(b.quality.precision_at_10),
                };
                p.map_or_else(|| " – |".to_string(), |p| format!(" {p:.4} |"))
            })
            .collect()
    };
    for l in &q.per_label {
        let _ = writeln!(
            out,
            "| {} | {} | {:.4} | {:.4} | {:.4} |{}",
            l.label.replace('|', "\\|"),
            l.images,
            l.precision_at_10,
            l.map_at_100,
            l.chance,
            baseline_cells(Some(&l.label))
        );
    }
    let _ = writeln!(
        out,
        "| all | {} | {:.4} | {:.4} | {:.4} |{}",
        q.images,
        q.precision_at_10,
        q.map_at_100,
        q.chance_precision_at_10,
        baseline_cells(None)
    );
    out
}

/// The one-line summary.
fn summary(r: &LabelledReport) -> String {
    let m = &r.main;
    let q = &m.quality;
    format!(
        "{} ({}, {}-d, {}): {} images, {} labels, leave-one-out: precision@10 {:.4}, mAP@100 {:.4}, chance {:.4}; {} failed (embed {:.1} s, search {:.2} s)",
        m.embedder,
        m.architecture,
        m.dim,
        m.metric,
        q.images,
        q.labels,
        q.precision_at_10,
        q.map_at_100,
        q.chance_precision_at_10,
        r.failed.len(),
        m.embed_seconds,
        m.search_seconds
    )
}

/// `imgsim eval --dataset fashion-mnist`: test queries against the training set.
fn run_fashion(args: &EvalArgs, settings: &Settings) -> Result<()> {
    let fm = FashionMnist::load(
        args.data_path
            .as_deref()
            .unwrap_or(&settings.bench.fashion_mnist_dir),
    )?;
    let metric = Metric::parse(args.metric.as_deref().unwrap_or("l2"))?;
    let start = Instant::now();
    let (base, queries, dim) = if args.embedder == "raw" {
        (fm.train.data.clone(), fm.test.data.clone(), fm.train.dim)
    } else if let Some(d) = args.embedder.strip_prefix("pca:") {
        let k: usize = d
            .parse()
            .with_context(|| format!("`{d}` is not a number of components"))?;
        let pca = Pca::fit(&fm.train.data, fm.train.dim, k)?;
        (
            pca.transform(&fm.train.data),
            pca.transform(&fm.test.data),
            k,
        )
    } else if let Some(p) = args.embedder.strip_prefix("autoencoder:") {
        let e = imgsim_embed::autoencoder::load_embedder(Path::new(p))?;
        let b = imgsim_pipeline::head::fashion_vectors(e.as_ref(), &fm.train.data)?;
        let q = imgsim_pipeline::head::fashion_vectors(e.as_ref(), &fm.test.data)?;
        (b, q, e.dim())
    } else if let Some(p) = args.embedder.strip_prefix("head:") {
        let loaded = imgsim_embed::head::checkpoint::load(Path::new(p))?;
        let spec = &loaded.record.base.spec;
        let (base, _) = crate::commands::train_head::fashion_base(spec)?;
        let (b, q) = match base {
            None => (fm.train.data.clone(), fm.test.data.clone()),
            Some(e) => {
                if !loaded
                    .record
                    .base
                    .identity
                    .as_ref()
                    .is_some_and(|i| i.compatible(e.identity()))
                {
                    bail!(
                        "{p}: the head was trained on another model than the one now at `{spec}`"
                    );
                }
                (
                    imgsim_pipeline::head::fashion_vectors(e.as_ref(), &fm.train.data)?,
                    imgsim_pipeline::head::fashion_vectors(e.as_ref(), &fm.test.data)?,
                )
            }
        };
        (
            loaded.head.apply(&b)?,
            loaded.head.apply(&q)?,
            loaded.head.config().output_dim,
        )
    } else {
        bail!(
            "--embedder must be raw, pca:D, autoencoder:PATH or head:PATH on --dataset fashion-mnist, not `{}` (the image embedders need --images or --labels)",
            args.embedder
        );
    };
    let embed_seconds = start.elapsed().as_secs_f64();
    let nb = base.len() / dim;
    let nq = queries.len() / dim;
    let chance = chance_precision(&fm.train_labels, &fm.test_labels);
    let t = Instant::now();
    let (p10, map) = retrieval_quality(
        base,
        &fm.train_labels,
        &queries,
        &fm.test_labels,
        dim,
        metric,
    )?;
    let report = QualityReport {
        embedder: args.embedder.clone(),
        dim,
        metric: metric.to_string(),
        base: nb,
        queries: nq,
        precision_at_10: p10,
        map_at_100: map,
        chance_precision_at_10: chance,
        embed_seconds,
        search_seconds: t.elapsed().as_secs_f64(),
    };
    println!(
        "{}: {}-d {}, {} queries vs {} base: precision@10 {:.4}, mAP@100 {:.4}, chance {:.4} (embed {:.1} s, search {:.1} s)",
        report.embedder,
        report.dim,
        report.metric,
        nq,
        nb,
        p10,
        map,
        chance,
        report.embed_seconds,
        report.search_seconds
    );
    if let Some(path) = &args.json {
        write(path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    Ok(())
}
