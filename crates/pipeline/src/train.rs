//! Training an embedder on a collection's own images, without labels: the
//! embedder that needs no download (a contrastive encoder or a
//! reconstruction autoencoder, as configured).

use std::path::{Path, PathBuf};

use crate::files::Failure;
use imgsim_common::Storage;
use imgsim_embed::autoencoder::checkpoint;
use imgsim_embed::autoencoder::contrastive::{ContrastiveOptions, ContrastiveTrainer};
use imgsim_embed::autoencoder::train::{EpochTrainer, TrainData, TrainOptions, Trainer};
use imgsim_embed::Transform;
use imgsim_embed::{load_rgb_reduced, AutoencoderConfig, ImageLimits, Objective};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{PipelineError, Result};
use crate::files::{sniff, Sniffed};

/// How to train.
#[derive(Debug, Clone)]
pub struct AutoTrainOptions {
    /// What to train: a contrastive encoder or a reconstruction autoencoder.
    pub objective: Objective,
    /// Bottleneck (embedding) size of a reconstruction autoencoder (a
    /// contrastive encoder's follows from its blocks and colour bins).
    pub dim: usize,
    /// Denoising: standard deviation of the noise a reconstruction
    /// autoencoder's inputs get (0: plain).
    pub noise_std: f32,
    /// Epochs; 0 chooses from the number of images (see [`auto_epochs`]).
    pub epochs: usize,
    /// Images used at most (evenly spaced over the sorted file list).
    pub max_images: usize,
    /// Seed.
    pub seed: u64,
    /// Limits when decoding.
    pub limits: ImageLimits,
}

impl Default for AutoTrainOptions {
    fn default() -> Self {
        AutoTrainOptions {
            objective: Objective::Contrastive,
            dim: 64,
            noise_std: 0.0,
            epochs: 0,
            max_images: 10_000,
            seed: 42,
            limits: ImageLimits::default(),
        }
    }
}

/// Training progress.
#[derive(Debug, Clone, Copy)]
pub enum TrainEvent {
    /// Images decoded so far.
    Loading {
        /// Done.
        done: usize,
        /// Of.
        total: usize,
    },
    /// A mini-batch finished.
    Batch {
        /// Epoch (from 1).
        epoch: usize,
        /// Of.
        epochs: usize,
        /// Batch in the epoch.
        batch: usize,
        /// Of.
        batches: usize,
        /// Mean loss so far in the epoch.
        loss: f64,
    },
    /// An epoch finished and was saved.
    Epoch {
        /// Epoch (from 1).
        epoch: usize,
        /// Of.
        epochs: usize,
        /// Its mean loss.
        loss: f64,
    },
}

/// What training did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// The objective trained.
    pub objective: Objective,
    /// The embedding's size.
    pub dim: usize,
    /// Images trained on.
    pub images: usize,
    /// Epochs in the final checkpoint.
    pub epochs: usize,
    /// Final mean loss.
    pub loss: f64,
    /// Seconds (decoding included).
    pub seconds: f64,
}

/// Epochs chosen for `n` images when none are given: about 5,000 image
/// presentations, 3 to 100 epochs (about a minute for a small folder).
pub fn auto_epochs(n: usize) -> usize {
    (5_000 / n.max(1)).clamp(3, 100)
}

/// Mini-batch size for `n` images: a quarter of them, 8 to 128.
pub fn auto_batch(n: usize) -> usize {
    (n / 4).clamp(8, 128)
}

/// Trains an embedder with `opts.objective` on the images among `files`
/// (64×64 RGB inputs) and saves it in folder `out`. Training checkpoints
/// into `out` + `.partial` after each epoch and resumes from there if
/// interrupted; `out` appears (renamed) only when training is complete.
pub fn train_on_files(
    files: &[PathBuf],
    out: &Path,
    opts: &AutoTrainOptions,
    progress: &(dyn Fn(TrainEvent) + Sync),
) -> Result<TrainReport> {
    let start = std::time::Instant::now();
    let cfg = match opts.objective {
        Objective::Reconstruction => AutoencoderConfig::rgb64(opts.dim),
        Objective::Contrastive => AutoencoderConfig::contrastive64(),
    };
    cfg.validate()?;
    let t = cfg.training_transform();
    let decoded = decode_images(files, &t, opts.max_images, &opts.limits, progress)?;
    if decoded.images < 2 {
        return Err(PipelineError::Invalid(format!(
            "cannot train an embedder on {} readable image(s); index at least 2 images, or use a pretrained backbone (--backbone NAME --weights FILE)",
            decoded.images
        )));
    }
    let n = decoded.images;
    let pixels = decoded.pixels;
    let data = TrainData {
        pixels: &pixels,
        len: t.len(),
    };
    let epochs = if opts.epochs == 0 {
        auto_epochs(n)
    } else {
        opts.epochs
    };
    let partial = out.with_extension("partial");
    let saved = partial.join(checkpoint::WEIGHTS_FILE).exists();
    let loss = match opts.objective {
        Objective::Reconstruction => {
            let train_opts = TrainOptions {
                batch_size: auto_batch(n),
                seed: opts.seed,
                noise_std: opts.noise_std,
                ..TrainOptions::default()
            };
            let resumed = saved
                .then(|| Trainer::resume(&partial, &train_opts).ok())
                .flatten()
                .filter(|t| t.epochs_done() <= epochs && t.config() == &cfg);
            let mut trainer = match resumed {
                Some(t) => t,
                None => Trainer::new(&cfg, &train_opts, "collection")?,
            };
            let loss = run_epochs(&mut trainer, data, epochs, &partial, progress)?;
            save_reconstructions(&trainer, &pixels, t.len(), n, &partial);
            loss
        }
        Objective::Contrastive => {
            let train_opts = ContrastiveOptions {
                batch_size: auto_batch(n),
                seed: opts.seed,
                ..ContrastiveOptions::default()
            };
            let resumed = saved
                .then(|| ContrastiveTrainer::resume(&partial, &train_opts).ok())
                .flatten()
                .filter(|t| t.epochs_done() <= epochs && t.net().config() == &cfg);
            let mut trainer = match resumed {
                Some(t) => t,
                None => ContrastiveTrainer::new(&cfg, &train_opts, "collection")?,
            };
            run_epochs(&mut trainer, data, epochs, &partial, progress)?
        }
    };
    let storage = imgsim_common::LocalFs;
    if out.exists() {
        storage.remove_dir_all(out).map_err(crate::error::io(out))?;
    }
    storage
        .rename(&partial, out)
        .map_err(crate::error::io(out))?;
    Ok(TrainReport {
        objective: opts.objective,
        dim: cfg.dim,
        images: n,
        epochs,
        loss,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Saves a picture of a reconstruction autoencoder's rebuilds of the first
/// images beside its checkpoint (a failure is only logged: it is a courtesy).
fn save_reconstructions(trainer: &Trainer, pixels: &[f32], len: usize, n: usize, dir: &Path) {
    let samples: Vec<Vec<f32>> = (0..16.min(n))
        .map(|i| pixels[i * len..(i + 1) * len].to_vec())
        .collect();
    let storage = imgsim_common::LocalFs;
    if let Ok(grid) = imgsim_embed::autoencoder::reconstruction_grid(trainer.model(), &samples, 3) {
        let png = dir.join("reconstructions.png");
        let mut bytes = Vec::new();
        let saved = grid
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .map_err(std::io::Error::other)
            .and_then(|()| storage.write(&png, &bytes));
        if let Err(e) = saved {
            tracing::warn!(file = %png.display(), error = %e, "could not save reconstructions");
        }
    }
}

/// Images decoded for training.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Their pixels, one transformed image after another.
    pub pixels: Vec<f32>,
    /// How many images `pixels` holds.
    pub images: usize,
    /// Image files that could not be used, and why.
    pub failed: Vec<Failure>,
}

/// Decodes the images among `files` (recognised by content; other files
/// are left out silently) through `t`, at most `max_images` of them evenly
/// spaced over the list, within `limits`. This is the one loader of
/// training images, for the collection's own autoencoder and for `imgsim
/// train autoencoder --images`.
pub fn decode_images(
    files: &[PathBuf],
    t: &Transform,
    max_images: usize,
    limits: &ImageLimits,
    progress: &(dyn Fn(TrainEvent) + Sync),
) -> Result<Decoded> {
    let images: Vec<&PathBuf> = files
        .par_iter()
        .filter(|p| {
            crate::files::read_header(p, 64).is_ok_and(|h| matches!(sniff(&h), Sniffed::Image(_)))
        })
        .collect();
    let step = (images.len() as f64 / max_images.max(1) as f64).max(1.0);
    let picked: Vec<&PathBuf> = (0..)
        .map(|i| (i as f64 * step) as usize)
        .take_while(|&i| i < images.len())
        .map(|i| images[i])
        .collect();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = picked.len();
    let results: Vec<std::result::Result<Vec<f32>, Failure>> = picked
        .par_iter()
        .map(|p| {
            let r = load_rgb_reduced(p, limits, t.resize_shorter)
                .and_then(|img| t.apply(&img))
                .map_err(|e| Failure {
                    path: (*p).clone(),
                    error: e.to_string(),
                });
            let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(TrainEvent::Loading { done: d, total });
            r
        })
        .collect();
    let mut out = Decoded::default();
    for r in results {
        match r {
            Ok(px) => {
                out.pixels.extend(px);
                out.images += 1;
            }
            Err(f) => out.failed.push(f),
        }
    }
    Ok(out)
}

/// Trains (either objective) until `trainer` has done `epochs` epochs, saving the checkpoint
/// to `save_to` after each one (so an interrupted run resumes from the last
/// epoch); returns the last epoch's mean loss (NaN if none ran).
pub fn run_epochs(
    trainer: &mut dyn EpochTrainer,
    data: TrainData<'_>,
    epochs: usize,
    save_to: &Path,
    progress: &(dyn Fn(TrainEvent) + Sync),
) -> Result<f64> {
    let mut loss = trainer.state().history.last().map_or(f64::NAN, |h| h.loss);
    while trainer.epochs_done() < epochs {
        let epoch = trainer.epochs_done() + 1;
        let stats = trainer.run_epoch(data, &mut |p| {
            progress(TrainEvent::Batch {
                epoch,
                epochs,
                batch: p.batch,
                batches: p.batches,
                loss: p.loss,
            })
        })?;
        trainer.save(save_to)?;
        loss = stats.loss;
        progress(TrainEvent::Epoch {
            epoch,
            epochs,
            loss,
        });
    }
    Ok(loss)
}
