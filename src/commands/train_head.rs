//! `imgsim train head`: train a projection head with labels on a frozen
//! base embedder's vectors (a labelled folder or CSV file, or
//! Fashion-MNIST), the vectors computed once and cached in the head's folder.

use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use imgsim_datasets::fashion_mnist::FashionMnist;
use imgsim_embed::head::checkpoint::{HeadEpoch, LAST_FILE};
use imgsim_embed::head::train::{fit, HeadEvent, HeadOptions, Run};
use imgsim_embed::head::HeadBase;
use imgsim_embed::Embedder;
use imgsim_pipeline::head::{cached, fashion_key, fashion_vectors, files_key, Features};
use imgsim_pipeline::{embed_labelled, LabelledSet};

use crate::commands::train::TrainDataset;
use crate::config::Settings;
use crate::exit::usage;
use crate::output::{bar, LogLines};

/// Arguments of `imgsim train head`.
#[derive(Debug, Args)]
pub struct HeadArgs {
    /// A labelled folder: each sub-folder is a label (as `imgsim eval
    /// --images`). With --labels: the folder the CSV's relative paths start from.
    #[arg(long, conflicts_with = "dataset")]
    pub images: Option<PathBuf>,
    /// A CSV file of `path,label` lines (as `imgsim eval --labels`).
    #[arg(long, conflicts_with = "dataset")]
    pub labels: Option<PathBuf>,
    /// Train on a built-in labelled data set (its training split).
    #[arg(long, value_enum, required_unless_present_any = ["images", "labels"])]
    pub dataset: Option<TrainDataset>,
    /// Folder of the Fashion-MNIST IDX files.
    #[arg(long)]
    pub data_path: Option<PathBuf>,
    /// The frozen base. On --images/--labels: `backbone:NAME` (weights
    /// from --weights), `autoencoder:PATH`, `collection:NAME`, `tiny` or
    /// `colour-histogram`. On Fashion-MNIST: `raw` (pixels) or
    /// `autoencoder:PATH`.
    #[arg(long)]
    pub base: String,
    /// Weights of a `backbone:NAME` base: a .safetensors file,
    /// hf:OWNER/REPO[:FILE] or synthetic:SEED (default: the Hub's).
    #[arg(long)]
    pub weights: Option<String>,
    /// Train on the images that can be read when some cannot (they are
    /// listed); by default an unreadable image stops training.
    #[arg(long)]
    pub skip_unreadable: bool,
    /// Head folder to write (head.safetensors, config.json, last.safetensors, cache/).
    #[arg(long)]
    pub out: PathBuf,
    /// Output (embedding) size.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Hidden layer sizes, comma-separated; `none` for a linear head.
    #[arg(long, default_value = "512")]
    pub hidden: String,
    /// Epochs at most.
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Share of each label held out for early stopping (0: none, train all epochs).
    #[arg(long, default_value_t = 0.2)]
    pub val: f64,
    /// Epochs without a better held-out precision@10 before stopping.
    #[arg(long, default_value_t = 10)]
    pub patience: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Temperature of the supervised contrastive loss.
    #[arg(long, default_value_t = 0.1)]
    pub temperature: f64,
    /// Seed of initialisation, split and shuffling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Continue the training saved in --out.
    #[arg(long)]
    pub resume: bool,
}

impl HeadArgs {
    fn options(&self) -> Result<HeadOptions> {
        let hidden =
            if self.hidden.trim().eq_ignore_ascii_case("none") || self.hidden.trim().is_empty() {
                Vec::new()
            } else {
                self.hidden
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<usize>()
                            .map_err(|_| usage(format!("--hidden: `{s}` is not a layer size")))
                    })
                    .collect::<Result<_>>()?
            };
        Ok(HeadOptions {
            hidden,
            output_dim: self.dim,
            max_epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.lr,
            weight_decay: self.weight_decay,
            temperature: self.temperature,
            val_fraction: self.val,
            patience: self.patience,
            seed: self.seed,
        })
    }
}

/// The base vectors and labels of the training data, cached in `--out`.
fn features(
    args: &HeadArgs,
    settings: &Settings,
    progress: bool,
) -> Result<(Features, HeadBase, String)> {
    if args.images.is_some() || args.labels.is_some() {
        return folder_features(args, settings, progress);
    }
    if args.weights.is_some() {
        return Err(usage(
            "--weights applies to a backbone base on --images or --labels",
        ));
    }
    let dir = args
        .data_path
        .as_deref()
        .unwrap_or(&settings.bench.fashion_mnist_dir);
    let fm = FashionMnist::load(dir)?;
    let (embedder, base) = fashion_base(&args.base)?;
    let key = fashion_key(&base, "train", fm.train_labels.len());
    let names: Vec<String> = imgsim_datasets::fashion_mnist::CLASS_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let t = Instant::now();
    let (f, hit) = cached(&args.out, &key, || {
        let vectors = match &embedder {
            None => fm.train.data.clone(),
            Some(e) => fashion_vectors(e.as_ref(), &fm.train.data)?,
        };
        Ok(Features {
            dim: vectors.len() / fm.train_labels.len().max(1),
            vectors,
            labels: fm.train_labels.iter().map(|&l| l as u32).collect(),
            names: names.clone(),
        })
    })?;
    report_features(&f, &base, hit, t);
    Ok((f, base, "fashion-mnist".into()))
}

fn report_features(f: &Features, base: &HeadBase, hit: bool, t: Instant) {
    eprintln!(
        "{} base vectors ({}-d, {}) {} in {:.1} s",
        f.len(),
        f.dim,
        base.spec,
        if hit {
            "read from the cache"
        } else {
            "computed and cached"
        },
        t.elapsed().as_secs_f64()
    );
}

/// `--base` with its paths made absolute, so that the head records where
/// its base is wherever it is used from.
fn absolute_spec(spec: &str) -> Result<String> {
    for prefix in ["autoencoder:", "head:"] {
        if let Some(p) = spec.strip_prefix(prefix) {
            let abs = std::path::absolute(p).with_context(|| format!("{p}: bad path"))?;
            return Ok(format!("{prefix}{}", abs.display()));
        }
    }
    Ok(spec.to_string())
}

/// Base vectors of a labelled folder or CSV file's images.
fn folder_features(
    args: &HeadArgs,
    settings: &Settings,
    progress: bool,
) -> Result<(Features, HeadBase, String)> {
    let (set, name) = match (&args.labels, &args.images) {
        (Some(csv), root) => (
            LabelledSet::from_csv(csv, root.as_deref())?,
            csv.display().to_string(),
        ),
        (None, Some(dir)) => (LabelledSet::from_folder(dir)?, dir.display().to_string()),
        (None, None) => unreachable!("checked by the caller"),
    };
    let spec = absolute_spec(&args.base)?;
    let embedder = crate::embedders::load(&spec, args.weights.as_deref(), settings)?;
    let base = HeadBase {
        spec,
        weights: args.weights.clone(),
        identity: Some(embedder.identity().clone()),
    };
    let paths: Vec<PathBuf> = set.images.iter().map(|i| i.path.clone()).collect();
    let assignment: Vec<String> = set
        .images
        .iter()
        .map(|i| set.labels[i.label].clone())
        .collect();
    let key = format!(
        "folder/{}/{}/{}",
        serde_json::to_string(embedder.identity())?,
        files_key(&paths),
        assignment.join("\u{1f}")
    );
    let t = Instant::now();
    let (f, hit) = cached(&args.out, &key, || {
        let b = bar(
            progress,
            set.len() as u64,
            "{msg:>14} [{bar:30}] {pos}/{len} {rate} ETA {eta}",
        );
        b.set_message("embedding");
        let v = embed_labelled(
            &set,
            embedder.as_ref(),
            &settings.limits,
            settings.embed.batch_size.max(1),
            &|done, _| b.set_position(done as u64),
        );
        b.finish_and_clear();
        let v = v?;
        if !v.failures.is_empty() {
            for f in v.failures.iter().take(20) {
                eprintln!("unreadable: {}: {}", f.path.display(), f.error);
            }
            if !args.skip_unreadable {
                return Err(imgsim_pipeline::PipelineError::Invalid(format!(
                    "{} of the {} images cannot be read (listed above); fix or remove them, \
                     or pass --skip-unreadable to train on the others",
                    v.failures.len(),
                    set.len()
                )));
            }
        }
        Ok(Features {
            dim: v.dim,
            labels: v.labels.iter().map(|&l| l as u32).collect(),
            vectors: v.vectors,
            names: v.label_names,
        })
    })?;
    report_features(&f, &base, hit, t);
    Ok((f, base, name))
}

/// A Fashion-MNIST base: `raw` pixels, or an autoencoder.
pub fn fashion_base(spec: &str) -> Result<(Option<Box<dyn Embedder>>, HeadBase)> {
    if spec == "raw" {
        return Ok((
            None,
            HeadBase {
                spec: "raw".into(),
                weights: None,
                identity: None,
            },
        ));
    }
    if let Some(p) = spec.strip_prefix("autoencoder:") {
        let path = std::path::absolute(Path::new(p)).with_context(|| format!("{p}: bad path"))?;
        let e = imgsim_embed::autoencoder::load_embedder(&path)?;
        let base = HeadBase {
            spec: format!("autoencoder:{}", path.display()),
            weights: None,
            identity: Some(e.identity().clone()),
        };
        return Ok((Some(e), base));
    }
    Err(usage(format!(
        "--base for Fashion-MNIST must be raw or autoencoder:PATH, not `{spec}`"
    )))
}

/// `imgsim train head`.
pub fn run(args: &HeadArgs, settings: &Settings, progress: bool) -> Result<()> {
    let opts = args.options()?;
    if !args.resume && args.out.join(LAST_FILE).exists() {
        return Err(usage(format!(
            "{} already holds a head: pass --resume to continue it, or choose another --out",
            args.out.display()
        )));
    }
    let (features, base, dataset) = features(args, settings, progress)?;
    let layers = imgsim_embed::head::HeadConfig {
        input_dim: features.dim,
        hidden: opts.hidden.clone(),
        output_dim: opts.output_dim,
    };
    eprintln!(
        "training a head {} ({} weights) on {} vectors with {} labels; {:.0}% held out; at most {} epochs",
        layers.describe(),
        layers.parameters(),
        features.len(),
        features.names.len(),
        opts.val_fraction * 100.0,
        opts.max_epochs
    );
    let b = bar(progress, 0, "{msg:>14} [{bar:30}] {pos}/{len} ETA {eta}");
    let lines = LogLines::new(progress, Duration::from_secs(10));
    let start = Instant::now();
    let record = fit(
        Run {
            data: features.view(),
            base: &base,
            dataset: &dataset,
            opts: &opts,
            out: &args.out,
            resume: args.resume,
        },
        &imgsim_common::LocalFs,
        &mut |e| match e {
            HeadEvent::Batch {
                epoch,
                batch,
                batches,
                loss,
            } => {
                b.set_length(batches as u64);
                b.set_position(batch as u64);
                b.set_message(format!("epoch {epoch}"));
                lines.maybe(false, || {
                    format!("epoch {epoch}: batch {batch}/{batches} loss {loss:.4}")
                });
            }
            HeadEvent::Epoch { stats, best } => {
                b.suspend(|| eprintln!("{}", epoch_line(&stats, best)))
            }
        },
    )?;
    b.finish_and_clear();
    let t = &record.training;
    let rate: Vec<f64> = t.history.iter().map(|h| h.samples_per_s).collect();
    let mean_rate = rate.iter().sum::<f64>() / rate.len().max(1) as f64;
    eprintln!(
        "done: {} epochs in {:.1} s ({:.0} samples/s on average); best epoch {}{}; wrote {}",
        t.history.len(),
        start.elapsed().as_secs_f64(),
        mean_rate,
        t.best_epoch,
        t.best_val_precision_at_10
            .map(|p| format!(", held-out precision@10 {p:.4}"))
            .unwrap_or_default(),
        args.out.display()
    );
    if let Some(p) = t.base_val_precision_at_10 {
        eprintln!(
            "the base's own vectors: held-out precision@10 {p:.4} (same split, {})",
            t.best_val_precision_at_10
                .map(|h| format!("{:+.4} with the head", h - p))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn epoch_line(s: &HeadEpoch, best: bool) -> String {
    format!(
        "epoch {}: loss {:.4}{}, {:.0} samples/s, {:.1} s{}",
        s.epoch,
        s.loss,
        s.val_precision_at_10
            .map(|p| format!(", held-out precision@10 {p:.4}"))
            .unwrap_or_default(),
        s.samples_per_s,
        s.seconds,
        if best { " (best)" } else { "" }
    )
}
