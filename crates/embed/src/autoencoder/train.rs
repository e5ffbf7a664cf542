//! Training the autoencoder on CPU with candle-nn: AdamW on the
//! reconstruction MSE, shuffled mini-batches, optional denoising (Gaussian
//! noise on the input only), all seeded; resumable from a checkpoint.
//!
//! The loop over epochs (progress bars, plots, saving) belongs to the
//! caller: [`Trainer::run_epoch`] reports every batch through a callback.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use imgsim_common::Storage;

use super::checkpoint::{self, CheckpointConfig, EpochStats, TrainingState};
use super::{Autoencoder, AutoencoderConfig};
use crate::error::{EmbedError, Result};
use crate::synthetic::{splitmix64, values};

/// Training hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Mini-batch size.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Seed of initialisation, shuffling and noise.
    pub seed: u64,
    /// Standard deviation of input noise (0: plain autoencoder).
    pub noise_std: f32,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            batch_size: 128,
            learning_rate: 2e-3,
            weight_decay: 1e-4,
            seed: 42,
            noise_std: 0.0,
        }
    }
}

/// What the callback hears after each mini-batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchProgress {
    /// Batches done in this epoch.
    pub batch: usize,
    /// Batches in the epoch.
    pub batches: usize,
    /// Mean loss over the epoch so far.
    pub loss: f64,
    /// Images per second so far in this epoch.
    pub images_per_s: f64,
}

/// Training images: `n` inputs of `len` floats each, in `[0, 1]`.
#[derive(Debug, Clone, Copy)]
pub struct TrainData<'a> {
    /// Row-major pixels.
    pub pixels: &'a [f32],
    /// Floats per image (`channels × side × side`).
    pub len: usize,
}

impl TrainData<'_> {
    /// Number of images.
    pub fn n(&self) -> usize {
        self.pixels.len() / self.len.max(1)
    }
}

/// A model being trained.
pub struct Trainer {
    varmap: VarMap,
    model: Autoencoder,
    opt: AdamW,
    cfg: AutoencoderConfig,
    state: TrainingState,
    opts: TrainOptions,
}

impl Trainer {
    /// A fresh model, initialised from `opts.seed` (uniform ±1/√fan_in
    /// weights as PyTorch's default, zero biases).
    pub fn new(cfg: &AutoencoderConfig, opts: &TrainOptions, dataset: &str) -> Result<Self> {
        cfg.validate()?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = Autoencoder::new(cfg, vb)?;
        init_vars(&varmap, opts.seed)?;
        let state = TrainingState {
            dataset: dataset.to_string(),
            seed: opts.seed,
            batch_size: opts.batch_size,
            learning_rate: opts.learning_rate,
            weight_decay: opts.weight_decay,
            noise_std: opts.noise_std,
            ..Default::default()
        };
        Self::assemble(varmap, model, cfg.clone(), state, opts.clone())
    }

    /// Continues training from a checkpoint. The optimiser's moment
    /// estimates are not saved, so they restart from zero; everything else
    /// (weights, epoch count, the shuffling sequence) continues.
    pub fn resume(path: &Path, opts: &TrainOptions) -> Result<Self> {
        let checkpoint::Parts {
            config: ck,
            bytes,
            weights_path,
        } = checkpoint::read_parts(path)?;
        let err = |reason: String| EmbedError::Checkpoint {
            path: weights_path.clone(),
            reason: format!("cannot resume: {reason}"),
        };
        if ck.model.objective != super::Objective::Reconstruction {
            return Err(err(format!(
                "it was trained with the {} objective, not reconstruction",
                ck.model.objective.name()
            )));
        }
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = Autoencoder::new(&ck.model, vb)?;
        load_vars(&varmap, &bytes, err)?;
        let mut state = ck.training;
        state.seed = opts.seed;
        state.batch_size = opts.batch_size;
        state.learning_rate = opts.learning_rate;
        state.weight_decay = opts.weight_decay;
        state.noise_std = opts.noise_std;
        Self::assemble(varmap, model, ck.model, state, opts.clone())
    }

    fn assemble(
        varmap: VarMap,
        model: Autoencoder,
        cfg: AutoencoderConfig,
        state: TrainingState,
        opts: TrainOptions,
    ) -> Result<Self> {
        check_optimiser(opts.batch_size, opts.learning_rate)?;
        if !(opts.noise_std >= 0.0 && opts.noise_std.is_finite()) {
            return Err(EmbedError::Input(
                "noise must be a non-negative number".into(),
            ));
        }
        let opt = adamw(&varmap, opts.learning_rate, opts.weight_decay)?;
        Ok(Trainer {
            varmap,
            model,
            opt,
            cfg,
            state,
            opts,
        })
    }

    /// The model.
    pub fn model(&self) -> &Autoencoder {
        &self.model
    }

    /// The model's configuration.
    pub fn config(&self) -> &AutoencoderConfig {
        &self.cfg
    }

    /// Epochs done so far (including those before a resume).
    pub fn epochs_done(&self) -> usize {
        self.state.history.len()
    }

    /// The training record.
    pub fn state(&self) -> &TrainingState {
        &self.state
    }

    /// One pass over `data` in a shuffled order.
    pub fn run_epoch(
        &mut self,
        data: TrainData<'_>,
        on_batch: &mut dyn FnMut(BatchProgress),
    ) -> Result<EpochStats> {
        let len = self.cfg.transform().len();
        if data.len != len || !data.pixels.len().is_multiple_of(len) || data.n() == 0 {
            return Err(EmbedError::Input(format!(
                "training data: {} floats is not a whole number of {len}-float images",
                data.pixels.len()
            )));
        }
        let n = data.n();
        self.state.images = n;
        let epoch = self.epochs_done() + 1;
        let (order, mut rng) = shuffled(n, self.opts.seed, epoch);
        let s = self.cfg.input_size;
        let c = self.cfg.channels;
        let bs = self.opts.batch_size;
        let batches = n.div_ceil(bs);
        let start = Instant::now();
        let mut total = 0.0;
        let mut seen = 0usize;
        let mut buf = Vec::with_capacity(bs * len);
        for (bi, chunk) in order.chunks(bs).enumerate() {
            buf.clear();
            for &i in chunk {
                buf.extend_from_slice(&data.pixels[i * len..(i + 1) * len]);
            }
            let b = chunk.len();
            let clean = Tensor::from_slice(&buf, (b, c, s, s), &Device::Cpu)?;
            let input = if self.opts.noise_std > 0.0 {
                let noise = gaussian(&mut rng, b * len, self.opts.noise_std);
                (&clean + Tensor::from_vec(noise, (b, c, s, s), &Device::Cpu)?)?
            } else {
                clean.clone()
            };
            let recon = self.model.reconstruct(&input)?;
            let loss = candle_nn::loss::mse(&recon, &clean)?;
            self.opt.backward_step(&loss)?;
            let l = f64::from(loss.to_scalar::<f32>()?);
            if !l.is_finite() {
                return Err(EmbedError::NonFinite {
                    model: "autoencoder training (loss diverged; lower the learning rate)".into(),
                });
            }
            total += l * b as f64;
            seen += b;
            on_batch(BatchProgress {
                batch: bi + 1,
                batches,
                loss: total / seen as f64,
                images_per_s: seen as f64 / start.elapsed().as_secs_f64().max(1e-9),
            });
        }
        let secs = start.elapsed().as_secs_f64();
        let stats = EpochStats {
            epoch,
            loss: total / n as f64,
            images_per_s: n as f64 / secs.max(1e-9),
            seconds: secs,
        };
        self.state.history.push(stats.clone());
        Ok(stats)
    }

    /// Saves a checkpoint into folder `dir` on the local file system
    /// (see [`Trainer::save_with`]).
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.save_with(&*imgsim_common::local(), dir)
    }

    /// Saves a checkpoint into folder `dir` through `storage` (durably; an
    /// interrupted save leaves the previous checkpoint or this one, whole:
    /// see [`checkpoint::save_with`]).
    pub fn save_with(&self, storage: &dyn Storage, dir: &Path) -> Result<()> {
        checkpoint::save_with(
            storage,
            dir,
            &self.varmap,
            &CheckpointConfig {
                model: self.cfg.clone(),
                training: self.state.clone(),
            },
        )
    }
}

/// Epoch `epoch`'s order of `n` images (a seeded Fisher–Yates shuffle),
/// and the generator state after it (for anything else the epoch draws).
pub(crate) fn shuffled(n: usize, seed: u64, epoch: usize) -> (Vec<usize>, u64) {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = splitmix64(seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9));
    for i in (1..n).rev() {
        rng = splitmix64(rng);
        order.swap(i, (rng % (i as u64 + 1)) as usize);
    }
    (order, rng)
}

/// Sets every variable of `varmap` from `seed`: weights uniform in
/// ±1/√fan_in (PyTorch's default), biases zero.
pub(crate) fn init_vars(varmap: &VarMap, seed: u64) -> Result<()> {
    let vars = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
    for (name, var) in vars.iter() {
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let data = if name.ends_with("weight") && dims.len() >= 2 {
            let fan_in: usize = dims[1..].iter().product();
            let b = 1.0 / (fan_in as f64).sqrt();
            values(seed, name, n, -b, b)
        } else {
            vec![0.0; n]
        };
        var.set(&Tensor::from_vec(data, dims.as_slice(), &Device::Cpu)?)?;
    }
    Ok(())
}

/// Sets every variable of `varmap` from the safetensors `bytes`; `err`
/// words what is missing or wrong.
pub(crate) fn load_vars(
    varmap: &VarMap,
    bytes: &[u8],
    err: impl Fn(String) -> EmbedError,
) -> Result<()> {
    let saved = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| err(format!("not a valid safetensors file ({e})")))?;
    for (name, var) in varmap
        .data()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        let value = saved
            .get(name)
            .ok_or_else(|| err(format!("no tensor `{name}` in the weights")))?;
        var.set(value)
            .map_err(|e| err(format!("tensor `{name}`: {e}")))?;
    }
    Ok(())
}

/// Refuses a zero batch size or a learning rate that is not positive.
pub(crate) fn check_optimiser(batch_size: usize, learning_rate: f64) -> Result<()> {
    if batch_size == 0 {
        return Err(EmbedError::Input("batch size must be at least 1".into()));
    }
    if !(learning_rate > 0.0 && learning_rate.is_finite()) {
        return Err(EmbedError::Input("learning rate must be positive".into()));
    }
    Ok(())
}

/// AdamW over all of `varmap`'s variables.
pub(crate) fn adamw(varmap: &VarMap, lr: f64, weight_decay: f64) -> Result<AdamW> {
    Ok(AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr,
            weight_decay,
            ..Default::default()
        },
    )?)
}

/// What the epoch loop needs of a trainer, whichever its objective: the
/// pipeline's and the command line's loops drive either through this.
pub trait EpochTrainer {
    /// Epochs done so far (including those before a resume).
    fn epochs_done(&self) -> usize;
    /// The training record.
    fn state(&self) -> &TrainingState;
    /// One pass over `data`, reporting every mini-batch.
    fn run_epoch(
        &mut self,
        data: TrainData<'_>,
        on_batch: &mut dyn FnMut(BatchProgress),
    ) -> Result<EpochStats>;
    /// Saves a checkpoint into folder `dir` through `storage`, atomically.
    fn save_with(&self, storage: &dyn Storage, dir: &Path) -> Result<()>;
    /// Saves a checkpoint into folder `dir` on the local file system.
    fn save(&self, dir: &Path) -> Result<()> {
        self.save_with(&*imgsim_common::local(), dir)
    }
}

impl EpochTrainer for Trainer {
    fn epochs_done(&self) -> usize {
        Trainer::epochs_done(self)
    }
    fn state(&self) -> &TrainingState {
        Trainer::state(self)
    }
    fn run_epoch(
        &mut self,
        data: TrainData<'_>,
        on_batch: &mut dyn FnMut(BatchProgress),
    ) -> Result<EpochStats> {
        Trainer::run_epoch(self, data, on_batch)
    }
    fn save_with(&self, storage: &dyn Storage, dir: &Path) -> Result<()> {
        Trainer::save_with(self, storage, dir)
    }
}

/// `n` Gaussian values with standard deviation `std` (Box–Muller on splitmix64).
fn gaussian(state: &mut u64, n: usize, std: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        *state = splitmix64(*state);
        let u1 = ((*state >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        *state = splitmix64(*state);
        let u2 = (*state >> 11) as f64 / (1u64 << 53) as f64;
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        out.push((r * t.cos()) as f32 * std);
        out.push((r * t.sin()) as f32 * std);
    }
    out.truncate(n);
    out
}
