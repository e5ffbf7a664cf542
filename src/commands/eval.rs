//! `imgsim eval`: retrieval quality with labels (precision@10, mAP@100 by
//! exact search) of raw pixels, PCA or an autoencoder on Fashion-MNIST.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use imgsim_bench::eval::{retrieval_quality, Pca, QualityReport};
use imgsim_datasets::fashion_mnist::FashionMnist;
use imgsim_embed::{AutoencoderEmbedder, Embedder};
use imgsim_index::Metric;

use crate::commands::train::{unit_pixels, TrainDataset};
use crate::config::Settings;

/// Arguments of `imgsim eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Labelled data set: queries = its test set, base = its training set.
    #[arg(long, value_enum, default_value = "fashion-mnist")]
    pub dataset: TrainDataset,
    /// Folder of the Fashion-MNIST IDX files.
    #[arg(long)]
    pub data_path: Option<PathBuf>,
    /// `raw` (pixels), `pca:D`, or `autoencoder:PATH` (a checkpoint).
    #[arg(long)]
    pub embedder: String,
    /// Distance: l2 (default) or cosine.
    #[arg(long, default_value = "l2")]
    pub metric: String,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `imgsim eval`: precision@10 and mAP@100 on Fashion-MNIST with labels.
pub fn run(args: &EvalArgs, settings: &Settings) -> Result<()> {
    let fm = FashionMnist::load(
        args.data_path
            .as_deref()
            .unwrap_or(&settings.bench.fashion_mnist_dir),
    )?;
    let metric = Metric::parse(&args.metric)?;
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
        let e = AutoencoderEmbedder::load(Path::new(p))?;
        let b = encode_fashion(&e, &fm.train.data)?;
        let q = encode_fashion(&e, &fm.test.data)?;
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
            "--embedder must be raw, pca:D, autoencoder:PATH or head:PATH, not `{}`",
            args.embedder
        );
    };
    let embed_seconds = start.elapsed().as_secs_f64();
    let nb = base.len() / dim;
    let nq = queries.len() / dim;
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
        embed_seconds,
        search_seconds: t.elapsed().as_secs_f64(),
    };
    println!(
        "{}: {}-d {}, {} queries vs {} base: precision@10 {:.4}, mAP@100 {:.4} (embed {:.1} s, search {:.1} s)",
        report.embedder,
        report.dim,
        report.metric,
        nq,
        nb,
        p10,
        map,
        report.embed_seconds,
        report.search_seconds
    );
    if let Some(path) = &args.json {
        imgsim_common::Storage::write(
            &imgsim_common::LocalFs,
            path,
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Embeds Fashion-MNIST rows (0..=255 grey, 28×28) with an autoencoder:
/// directly when it takes 28×28 grey, otherwise through its transform.
fn encode_fashion(e: &AutoencoderEmbedder, rows: &[f32]) -> Result<Vec<f32>> {
    let cfg = e.model().config();
    let direct = cfg.channels == 1 && cfg.input_size == 28;
    let t = cfg.transform();
    let chunks: Vec<&[f32]> = rows.chunks(784 * 500).collect();
    let mut out = Vec::with_capacity(rows.len() / 784 * cfg.dim);
    for chunk in chunks {
        let inputs: Vec<Vec<f32>> = chunk
            .chunks_exact(784)
            .map(|r| {
                if direct {
                    Ok(unit_pixels(r))
                } else {
                    let img = image::RgbImage::from_fn(28, 28, |x, y| {
                        let v = r[(y * 28 + x) as usize] as u8;
                        image::Rgb([v, v, v])
                    });
                    Ok(t.apply(&img)?)
                }
            })
            .collect::<Result<_>>()?;
        for v in e.embed_batch(&inputs)? {
            out.extend(v);
        }
    }
    Ok(out)
}
