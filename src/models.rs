//! Commands about models: `embed`, `models`, `train autoencoder`, `eval`,
//! `bench embed` and `bench preprocess`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use imgsim_bench::eval::{retrieval_quality, Pca, QualityReport};
use imgsim_datasets::fashion_mnist::FashionMnist;
use imgsim_embed::autoencoder::checkpoint;
use imgsim_embed::autoencoder::train::{TrainData, TrainOptions, Trainer};
use imgsim_embed::{
    load_rgb, load_rgb_reduced, AutoencoderConfig, AutoencoderEmbedder, Backbone, Embedder,
    ImageLimits, PretrainedEmbedder, Transform, WeightsSource,
};
use imgsim_index::Metric;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

/// Which embedder to use, from the command line.
#[derive(Debug, Args, Clone)]
pub struct EmbedderArgs {
    /// Pretrained backbone: resnet18, resnet50, mobilenetv4-small, dinov2-small.
    #[arg(long, default_value = "dinov2-small", conflicts_with = "autoencoder")]
    pub backbone: String,
    /// Backbone weights: a local .safetensors file, `hf:OWNER/REPO[:FILE]`
    /// (Hugging Face Hub, cached), or `synthetic:SEED` (random, for tests).
    /// Default: the backbone's timm weights on the Hub.
    #[arg(long)]
    pub weights: Option<String>,
    /// Use a trained autoencoder checkpoint (folder or .safetensors) instead of a backbone.
    #[arg(long)]
    pub autoencoder: Option<PathBuf>,
}

impl EmbedderArgs {
    /// Loads the chosen embedder.
    pub fn load(&self) -> Result<Box<dyn Embedder>> {
        if let Some(p) = &self.autoencoder {
            return Ok(Box::new(AutoencoderEmbedder::load(p)?));
        }
        let backbone = Backbone::parse(&self.backbone)?;
        let source = self
            .weights
            .as_deref()
            .map(WeightsSource::parse)
            .transpose()?;
        Ok(Box::new(PretrainedEmbedder::load(
            backbone,
            source.as_ref(),
        )?))
    }
}

/// Arguments of `imgsim embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// The embedder.
    #[command(flatten)]
    pub embedder: EmbedderArgs,
    /// Print JSON (one object per image per line, after a header line with the embedder's identity).
    #[arg(long)]
    pub json: bool,
    /// Decode large JPEGs at full size (bit-exact torchvision preprocessing)
    /// instead of the faster DCT-scaled decoding.
    #[arg(long)]
    pub exact_decode: bool,
}

/// `imgsim embed`: prints the embedding of each image.
pub fn embed(args: &EmbedArgs) -> Result<()> {
    let e = args.embedder.load()?;
    let limits = ImageLimits::default();
    if args.json {
        println!("{}", serde_json::json!({ "embedder": e.identity() }));
    } else {
        let id = e.identity();
        println!(
            "embedder {} ({}-d, {:?}, weights {} from {})",
            id.architecture, id.dim, id.metric, id.weights_digest, id.weights_origin
        );
    }
    let mut failed = 0;
    for path in &args.images {
        let shorter = e.preprocessing().resize_shorter;
        let decoded = if args.exact_decode {
            load_rgb(path, &limits)
        } else {
            load_rgb_reduced(path, &limits, shorter)
        };
        let result = decoded
            .and_then(|img| e.preprocess(&img))
            .and_then(|x| e.embed_batch(&[x]));
        match result {
            Ok(mut v) => {
                let v = v.pop().unwrap_or_default();
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({ "path": path, "dim": v.len(), "embedding": v })
                    );
                } else {
                    let head: Vec<String> = v.iter().take(6).map(|x| format!("{x:+.4}")).collect();
                    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                    println!(
                        "{}: [{} ...] dim {} norm {norm:.4}",
                        path.display(),
                        head.join(", "),
                        v.len()
                    );
                }
            }
            Err(err) => {
                failed += 1;
                eprintln!("error: {err}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} images failed", args.images.len());
    }
    Ok(())
}

/// `imgsim models`: the backbones, their sizes and default weights.
pub fn list_models() {
    println!(
        "{:<20} {:>5}  {:<10} default weights",
        "backbone", "dim", "input"
    );
    for b in Backbone::ALL {
        let t = b.transform();
        let w = match b.hub_weights() {
            WeightsSource::Hub { repo, file } => format!("hf:{repo}:{file}"),
            other => other.describe(),
        };
        println!(
            "{:<20} {:>5}  {:<10} {w}",
            b.name(),
            b.dim(),
            format!("{}/{}", t.resize_shorter, t.crop)
        );
    }
    println!(
        "{:<20} {:>5}  {:<10} trained here: imgsim train autoencoder",
        "autoencoder", "D", "28 or 64"
    );
}

/// Training data sources.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TrainDataset {
    /// Fashion-MNIST's 60,000 training images (Debian: dataset-fashion-mnist).
    FashionMnist,
}

/// Arguments of `imgsim train autoencoder`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Train on a built-in data set (28×28 grey).
    #[arg(
        long,
        value_enum,
        conflicts_with = "images",
        required_unless_present = "images"
    )]
    pub dataset: Option<TrainDataset>,
    /// Train on the images in a folder (recursively), resized to --image-size, RGB.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Folder of the Fashion-MNIST IDX files.
    #[arg(long)]
    pub data_path: Option<PathBuf>,
    /// Side of the square input for --images (a multiple of 8).
    #[arg(long, default_value_t = 64)]
    pub image_size: usize,
    /// Bottleneck size: the embedding dimension.
    #[arg(long, default_value_t = 64)]
    pub dim: usize,
    /// Epochs to train (in addition to those already done, with --resume).
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Checkpoint folder (model.safetensors, config.json, loss.svg, reconstructions.png).
    #[arg(long)]
    pub out: PathBuf,
    /// Continue training the checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Denoising: standard deviation of Gaussian noise added to inputs (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub noise: f32,
    /// Seed of initialisation, shuffling and noise.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Loads every image under `dir` through `t`; returns the pixels and the
/// number of files that could not be used (with a warning each).
fn load_folder(dir: &Path, t: &Transform, progress: bool) -> Result<(Vec<f32>, usize)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd =
            std::fs::read_dir(&d).with_context(|| format!("reading folder {}", d.display()))?;
        for entry in rd {
            let entry = entry.with_context(|| format!("reading folder {}", d.display()))?;
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("{}: no files", dir.display());
    }
    let bar = bar(progress, files.len() as u64, "loading images");
    let limits = ImageLimits::default();
    let results: Vec<std::result::Result<Vec<f32>, String>> = files
        .par_iter()
        .map(|p| {
            let r = load_rgb(p, &limits)
                .and_then(|img| t.apply(&img))
                .map_err(|e| e.to_string());
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    let mut pixels = Vec::new();
    let mut failed = 0;
    for r in results {
        match r {
            Ok(v) => pixels.extend(v),
            Err(e) => {
                failed += 1;
                if failed <= 10 {
                    eprintln!("skipped: {e}");
                }
            }
        }
    }
    if pixels.is_empty() {
        bail!(
            "{}: none of the {} files is a readable image",
            dir.display(),
            files.len()
        );
    }
    Ok((pixels, failed))
}

fn bar(show: bool, len: u64, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template(
            "{msg:>14} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {prefix}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    b.set_message(what.to_string());
    b
}

/// Fashion-MNIST pixels scaled to `[0, 1]`.
fn unit_pixels(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x / 255.0).collect()
}

/// `imgsim train autoencoder`.
pub fn train_autoencoder(args: &TrainArgs, fm_dir: &Path, progress: bool) -> Result<()> {
    let opts = TrainOptions {
        batch_size: args.batch_size,
        learning_rate: args.lr,
        weight_decay: args.weight_decay,
        seed: args.seed,
        noise_std: args.noise,
    };
    let (cfg, pixels, name) = if let Some(dir) = &args.images {
        let cfg = if args.resume {
            checkpoint::read_config(&args.out)?.model
        } else {
            let mut c = AutoencoderConfig::rgb64(args.dim);
            c.input_size = args.image_size;
            c
        };
        cfg.validate()?;
        let (px, failed) = load_folder(dir, &cfg.transform(), progress)?;
        eprintln!(
            "{} images from {} ({failed} skipped)",
            px.len() / cfg.transform().len(),
            dir.display()
        );
        (cfg, px, dir.display().to_string())
    } else {
        let fm = FashionMnist::load(args.data_path.as_deref().unwrap_or(fm_dir))?;
        let cfg = if args.resume {
            checkpoint::read_config(&args.out)?.model
        } else {
            AutoencoderConfig::grey28(args.dim)
        };
        if cfg.channels != 1 || cfg.input_size != 28 {
            bail!(
                "the checkpoint in {} is not a 28×28 grey model; it cannot train on Fashion-MNIST",
                args.out.display()
            );
        }
        (
            cfg,
            unit_pixels(&fm.train.data),
            "fashion-mnist".to_string(),
        )
    };
    let mut trainer = if args.resume {
        let t = Trainer::resume(&args.out, &opts)?;
        eprintln!(
            "resuming {} after {} epochs",
            args.out.display(),
            t.epochs_done()
        );
        t
    } else {
        if args.out.join(checkpoint::WEIGHTS_FILE).exists() {
            bail!(
                "{} already holds a checkpoint: pass --resume to continue it, or choose another --out",
                args.out.display()
            );
        }
        Trainer::new(&cfg, &opts, &name)?
    };
    let len = cfg.transform().len();
    let data = TrainData {
        pixels: &pixels,
        len,
    };
    let first = trainer.epochs_done() + 1;
    let last = trainer.epochs_done() + args.epochs;
    eprintln!(
        "training a {}-d autoencoder ({}×{}×{}, blocks {:?}) on {} images, epochs {first}..={last}",
        cfg.dim,
        cfg.channels,
        cfg.input_size,
        cfg.input_size,
        cfg.widths,
        data.n()
    );
    for _ in 0..args.epochs {
        let epoch = trainer.epochs_done() + 1;
        let b = bar(
            progress,
            data.n().div_ceil(opts.batch_size) as u64,
            &format!("epoch {epoch}/{last}"),
        );
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let stats = trainer.run_epoch(data, &mut |p| {
            b.set_position(p.batch as u64);
            b.set_prefix(format!("loss {:.5} {:.0} img/s", p.loss, p.images_per_s));
            // Without a terminal (logs, CI) the bar is hidden: a line per tenth.
            if progress && !tty && p.batch % p.batches.div_ceil(10).max(1) == 0 {
                eprintln!(
                    "epoch {epoch}: batch {}/{} loss {:.5} {:.0} images/s",
                    p.batch, p.batches, p.loss, p.images_per_s
                );
            }
        })?;
        b.finish_and_clear();
        trainer.save(&args.out)?;
        eprintln!(
            "epoch {epoch}: loss {:.5}, {:.0} images/s, {:.1} s; saved {}",
            stats.loss,
            stats.images_per_s,
            stats.seconds,
            args.out.display()
        );
        let curve: Vec<(f64, f64)> = trainer
            .state()
            .history
            .iter()
            .map(|h| (h.epoch as f64, h.loss))
            .collect();
        imgsim_bench::plot::plot_loss_svg(
            &format!("autoencoder {}-d on {name}", cfg.dim),
            &curve,
            &args.out.join("loss.svg"),
        )?;
    }
    let samples: Vec<Vec<f32>> = (0..16.min(data.n()))
        .map(|i| pixels[i * len..(i + 1) * len].to_vec())
        .collect();
    let grid = imgsim_embed::autoencoder::reconstruction_grid(trainer.model(), &samples, 3)?;
    let png = args.out.join("reconstructions.png");
    grid.save(&png)
        .with_context(|| format!("writing {}", png.display()))?;
    eprintln!(
        "wrote {}, {}",
        args.out.join("loss.svg").display(),
        png.display()
    );
    Ok(())
}

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
pub fn eval(args: &EvalArgs, fm_dir: &Path) -> Result<()> {
    let fm = FashionMnist::load(args.data_path.as_deref().unwrap_or(fm_dir))?;
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
    } else {
        bail!(
            "--embedder must be raw, pca:D or autoencoder:PATH, not `{}`",
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
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
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

/// Arguments of `imgsim bench embed`.
#[derive(Debug, Args)]
pub struct BenchEmbedArgs {
    /// Backbones to measure, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub backbones: Option<Vec<String>>,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub batch_sizes: Vec<usize>,
    /// Minimum measured seconds per case.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Weights (throughput does not depend on their values).
    #[arg(long, default_value = "synthetic:0")]
    pub weights: String,
    /// Write results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `imgsim bench embed`: images per second of each backbone's forward pass
/// on a fixed batch (preprocessed input, no decoding).
pub fn bench_embed(args: &BenchEmbedArgs) -> Result<()> {
    let names = args
        .backbones
        .clone()
        .unwrap_or_else(|| Backbone::ALL.iter().map(|b| b.name().to_string()).collect());
    let source = WeightsSource::parse(&args.weights)?;
    let threads = rayon::current_num_threads();
    println!("threads {threads}, weights {}", source.describe());
    println!(
        "{:<20} {:>5} {:>12} {:>12} {:>6}",
        "backbone", "batch", "images/s", "ms/batch", "iters"
    );
    let mut rows = Vec::new();
    for name in &names {
        let b = Backbone::parse(name)?;
        let e = PretrainedEmbedder::load(b, Some(&source))?;
        let t = e.preprocessing();
        for &bs in &args.batch_sizes {
            if bs == 0 {
                bail!("batch sizes must be at least 1");
            }
            let input: Vec<Vec<f32>> = (0..bs)
                .map(|i| {
                    imgsim_embed::synthetic::values(i as u64, "bench-input", t.len(), -2.0, 2.0)
                })
                .collect();
            e.embed_batch(&input)?; // warm-up
            let mut times = Vec::new();
            let start = Instant::now();
            while start.elapsed().as_secs_f64() < args.seconds || times.len() < 3 {
                let t0 = Instant::now();
                e.embed_batch(&input)?;
                times.push(t0.elapsed().as_secs_f64());
            }
            let total: f64 = times.iter().sum();
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2] * 1e3;
            let ips = (bs * times.len()) as f64 / total;
            println!(
                "{:<20} {:>5} {:>12.1} {:>12.2} {:>6}",
                name,
                bs,
                ips,
                median,
                times.len()
            );
            rows.push(serde_json::json!({
                "backbone": name, "batch": bs, "images_per_s": ips,
                "ms_per_batch_median": median, "iterations": times.len()
            }));
        }
    }
    if let Some(p) = &args.json {
        let doc = serde_json::json!({ "threads": threads, "weights": source.describe(), "results": rows });
        std::fs::write(p, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
