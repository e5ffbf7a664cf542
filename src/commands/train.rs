//! `imgsim train`: the subcommands, and `imgsim train autoencoder`: train
//! the convolutional encoder on Fashion-MNIST or on a folder of images, to
//! rebuild its inputs (with a grid of reconstructions) or contrastively,
//! with a loss plot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use imgsim_datasets::fashion_mnist::FashionMnist;
use imgsim_embed::autoencoder::checkpoint;
use imgsim_embed::autoencoder::contrastive::{ContrastiveOptions, ContrastiveTrainer};
use imgsim_embed::autoencoder::train::{EpochTrainer, TrainData, TrainOptions, Trainer};
use imgsim_embed::{AutoencoderConfig, Objective, Transform};
use imgsim_pipeline::train::{decode_images, run_epochs, TrainEvent};

use crate::config::Settings;
use crate::output::{bar, show_training, LogLines};

/// `imgsim train ...`
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// A convolutional encoder, without labels: a reconstruction
    /// autoencoder (its bottleneck is the embedding) or, with --objective
    /// contrastive, a contrastive encoder (its pooled features are).
    #[command(
        after_help = "Examples:\n  imgsim train autoencoder --dataset fashion-mnist --out ae/\n  imgsim train autoencoder --images ~/Pictures --out ae/ --epochs 20\n  imgsim train autoencoder --images ~/Pictures --out cl/ --objective contrastive --epochs 16\n  imgsim train autoencoder --images ~/Pictures --out ae/ --epochs 5 --resume"
    )]
    Autoencoder(Box<TrainArgs>),
    /// A projection head on a frozen base embedder, with labels (transfer learning).
    #[command(
        after_help = "Examples:\n  imgsim train head --dataset fashion-mnist --base raw --out head-raw/\n  imgsim train head --dataset fashion-mnist --base autoencoder:ae/ --out head-ae/"
    )]
    Head(Box<crate::commands::train_head::HeadArgs>),
}

/// Training data sources.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TrainDataset {
    /// Fashion-MNIST's 60,000 training images (Debian: dataset-fashion-mnist).
    FashionMnist,
}

/// What to train the encoder to do.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ObjectiveArg {
    /// Rebuild the input through a bottleneck (mean-squared error).
    Reconstruction,
    /// Match two augmented views of each image (SimCLR's NT-Xent; --images only).
    Contrastive,
}

impl From<ObjectiveArg> for Objective {
    fn from(o: ObjectiveArg) -> Self {
        match o {
            ObjectiveArg::Reconstruction => Objective::Reconstruction,
            ObjectiveArg::Contrastive => Objective::Contrastive,
        }
    }
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
    /// Train on the images in a folder (recursively, as `imgsim index`
    /// walks it), resized to --image-size, RGB.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Folder of the Fashion-MNIST IDX files.
    #[arg(long)]
    pub data_path: Option<PathBuf>,
    /// Side of the square input for --images (a multiple of 8).
    #[arg(long, default_value_t = 64)]
    pub image_size: usize,
    /// What to learn (with --resume: the checkpoint's).
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Reconstruction)]
    pub objective: ObjectiveArg,
    /// Bottleneck size: the embedding dimension (reconstruction; a
    /// contrastive encoder's follows from its blocks and colour bins).
    #[arg(long, default_value_t = 64)]
    pub dim: usize,
    /// Epochs to train (in addition to those already done, with --resume).
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// At most this many images from --images (evenly spaced).
    #[arg(long, default_value_t = 100_000)]
    pub max_images: usize,
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
    /// Denoising: standard deviation of Gaussian noise added to inputs (0 = off; reconstruction only).
    #[arg(long, default_value_t = 0.0)]
    pub noise: f32,
    /// NT-Xent temperature (contrastive only).
    #[arg(long, default_value_t = 0.2)]
    pub temperature: f32,
    /// Seed of initialisation, shuffling and noise.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Fashion-MNIST pixels scaled to `[0, 1]`.
pub fn unit_pixels(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x / 255.0).collect()
}

/// The model to train: the checkpoint's when resuming, else a new one.
fn model_config(args: &TrainArgs, new: AutoencoderConfig) -> Result<AutoencoderConfig> {
    Ok(if args.resume {
        checkpoint::read_config(&args.out)?.model
    } else {
        new
    })
}

/// Pixels of a folder's images, through transform `t`.
fn folder_pixels(
    dir: &Path,
    t: &Transform,
    args: &TrainArgs,
    settings: &Settings,
    progress: bool,
) -> Result<Vec<f32>> {
    let walk = imgsim_pipeline::walk(&[dir.to_path_buf()])?;
    let files: Vec<PathBuf> = walk.files.into_iter().map(|f| f.path).collect();
    let b = bar(
        progress,
        files.len() as u64,
        "{msg:>14} [{bar:30}] {pos}/{len} {rate} ETA {eta}",
    );
    b.set_message("loading images");
    let decoded = decode_images(&files, t, args.max_images, &settings.limits, &|e| {
        show_training(&b, &e)
    })?;
    b.finish_and_clear();
    for f in decoded.failed.iter().take(10) {
        eprintln!("skipped: {}: {}", f.path.display(), f.error);
    }
    if decoded.images == 0 {
        bail!(
            "{}: none of the {} files is a readable image",
            dir.display(),
            files.len()
        );
    }
    eprintln!(
        "{} images from {} ({} skipped)",
        decoded.images,
        dir.display(),
        decoded.failed.len()
    );
    Ok(decoded.pixels)
}

/// `imgsim train autoencoder`.
pub fn autoencoder(args: &TrainArgs, settings: &Settings, progress: bool) -> Result<()> {
    let objective = if args.resume {
        checkpoint::read_config(&args.out)?.model.objective
    } else {
        args.objective.into()
    };
    if objective == Objective::Contrastive {
        return contrastive(args, settings, progress);
    }
    let opts = TrainOptions {
        batch_size: args.batch_size,
        learning_rate: args.lr,
        weight_decay: args.weight_decay,
        seed: args.seed,
        noise_std: args.noise,
    };
    let (cfg, pixels, name) = if let Some(dir) = &args.images {
        let mut new = AutoencoderConfig::rgb64(args.dim);
        new.input_size = args.image_size;
        let cfg = model_config(args, new)?;
        cfg.validate()?;
        let px = folder_pixels(dir, &cfg.transform(), args, settings, progress)?;
        (cfg, px, dir.display().to_string())
    } else {
        let dir = args
            .data_path
            .as_deref()
            .unwrap_or(&settings.bench.fashion_mnist_dir);
        let fm = FashionMnist::load(dir)?;
        let cfg = model_config(args, AutoencoderConfig::grey28(args.dim))?;
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
    epochs_with_bars(&mut trainer, data, last, args, progress)?;
    plot_loss(
        trainer.state(),
        &format!("autoencoder {}-d on {name}", cfg.dim),
        &args.out,
    )?;
    let samples: Vec<Vec<f32>> = (0..16.min(data.n()))
        .map(|i| pixels[i * len..(i + 1) * len].to_vec())
        .collect();
    let grid = imgsim_embed::autoencoder::reconstruction_grid(trainer.model(), &samples, 3)?;
    let png = args.out.join("reconstructions.png");
    let mut bytes = Vec::new();
    grid.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .context("encoding the reconstructions")?;
    imgsim_common::Storage::write(&imgsim_common::LocalFs, &png, &bytes)
        .with_context(|| format!("writing {}", png.display()))?;
    eprintln!(
        "wrote {}, {}",
        args.out.join("loss.svg").display(),
        png.display()
    );
    Ok(())
}

/// `imgsim train autoencoder --objective contrastive` (or `--resume` of a
/// contrastive checkpoint): the images of `--images`, two views each.
fn contrastive(args: &TrainArgs, settings: &Settings, progress: bool) -> Result<()> {
    let Some(dir) = &args.images else {
        bail!("contrastive training needs --images DIR (Fashion-MNIST trains with --objective reconstruction)");
    };
    let opts = ContrastiveOptions {
        batch_size: args.batch_size,
        learning_rate: args.lr,
        weight_decay: args.weight_decay,
        seed: args.seed,
        temperature: args.temperature,
        ..ContrastiveOptions::default()
    };
    let cfg = model_config(
        args,
        AutoencoderConfig::contrastive_default(args.image_size),
    )?;
    cfg.validate()?;
    let mut trainer = if args.resume {
        let t = ContrastiveTrainer::resume(&args.out, &opts)?;
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
        ContrastiveTrainer::new(&cfg, &opts, &dir.display().to_string())?
    };
    let t = cfg.training_transform();
    let pixels = folder_pixels(dir, &t, args, settings, progress)?;
    let data = TrainData {
        pixels: &pixels,
        len: t.len(),
    };
    if data.n() < 2 {
        bail!(
            "{}: contrastive training needs at least 2 readable images, found {}",
            dir.display(),
            data.n()
        );
    }
    let last = trainer.epochs_done() + args.epochs;
    eprintln!(
        "training a contrastive encoder ({}×{}×{}, blocks {:?}, {}-d embedding) on {} images, epochs {}..={last}",
        cfg.channels,
        cfg.input_size,
        cfg.input_size,
        cfg.widths,
        cfg.dim,
        data.n(),
        trainer.epochs_done() + 1
    );
    epochs_with_bars(&mut trainer, data, last, args, progress)?;
    plot_loss(
        trainer.state(),
        &format!("contrastive encoder on {}", dir.display()),
        &args.out,
    )?;
    eprintln!("wrote {}", args.out.join("loss.svg").display());
    Ok(())
}

/// The loss curve of `state` as `loss.svg` in `out`.
fn plot_loss(state: &checkpoint::TrainingState, title: &str, out: &Path) -> Result<()> {
    let curve: Vec<(f64, f64)> = state
        .history
        .iter()
        .map(|h| (h.epoch as f64, h.loss))
        .collect();
    imgsim_bench::plot::plot_loss_svg(title, &curve, &out.join("loss.svg"))?;
    Ok(())
}

/// Runs epochs until `last`, saving to `--out` after each, with a bar per
/// epoch (or log lines when stderr is not a terminal).
fn epochs_with_bars(
    trainer: &mut dyn EpochTrainer,
    data: TrainData<'_>,
    last: usize,
    args: &TrainArgs,
    progress: bool,
) -> Result<()> {
    let b = bar(progress, 0, "{msg:>20} [{bar:30}] {pos}/{len} ETA {eta}");
    let lines = LogLines::new(progress, Duration::from_secs(10));
    run_epochs(trainer, data, last, &args.out, &|e| match e {
        TrainEvent::Batch {
            epoch,
            batch,
            batches,
            loss,
            ..
        } => {
            show_training(&b, &e);
            lines.maybe(false, || {
                format!("epoch {epoch}: batch {batch}/{batches} loss {loss:.5}")
            });
        }
        TrainEvent::Epoch { epoch, loss, .. } => b.suspend(|| {
            eprintln!(
                "epoch {epoch}: loss {loss:.5}; saved {}",
                args.out.display()
            )
        }),
        TrainEvent::Loading { .. } => {}
    })?;
    b.finish_and_clear();
    Ok(())
}
