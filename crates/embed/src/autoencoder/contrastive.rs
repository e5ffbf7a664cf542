//! Contrastive self-supervised training of the autoencoder's encoder
//! blocks (SimCLR): two augmented views of each image ([`super::augment`])
//! go through the conv blocks and a projection head, and the NT-Xent loss
//! pulls each pair together and pushes it from the batch's other views.
//!
//! The head serves training only. The embedding is the encoder's pooled
//! representation: the global average of chosen blocks' outputs, each
//! L2-normalised, optionally beside a colour histogram of the input
//! (`colour_weight` sets its share of the cosine similarity), the whole
//! L2-normalised and compared by cosine.
//!
//! Checkpoints are the autoencoder's ([`super::checkpoint`]) with
//! `objective: contrastive` and the [`ContrastiveParams`] in the model
//! config; the weights are `encoder.conv{i}` and `head.fc{1,2}`.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{AdamW, Linear, Optimizer, VarBuilder, VarMap};
use imgsim_common::Storage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::augment::{self, AugmentOptions, Rng};
use super::checkpoint::{self, CheckpointConfig, EpochStats, TrainingState};
use super::train::{
    adamw, check_optimiser, init_vars, load_vars, shuffled, BatchProgress, EpochTrainer, TrainData,
};
use super::{conv3, AutoencoderConfig, Conv3, Objective, ARCHITECTURE};
use crate::embedder::{stack, Embedder, EmbedderIdentity, Metric};
use crate::error::{EmbedError, Result};
use crate::transform::Transform;

/// The embedder's architecture name in collection records.
pub const IDENTITY_ARCHITECTURE: &str = "contrastive-cnn";

/// Global pooling of a block's feature map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The mean over the image.
    #[default]
    Mean,
    /// The maximum over the image.
    Max,
}

/// The contrastive model's head and embedding (part of the model config:
/// they decide the vectors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContrastiveParams {
    /// Output size of the projection head (training only).
    pub projection_dim: usize,
    /// The conv blocks (from 0) whose globally pooled outputs make up
    /// the embedding.
    pub feature_blocks: Vec<usize>,
    /// How a block's output is pooled over the image for the embedding
    /// (training's head always sees the average).
    #[serde(default)]
    pub pooling: Pooling,
    /// Levels per channel of the colour histogram in the embedding
    /// (`levels³` bins for RGB); 0 for none.
    pub colour_bins: usize,
    /// Share of the cosine similarity that comes from the colour
    /// histogram, in `[0, 1]` (0 when `colour_bins` is 0).
    pub colour_weight: f32,
    /// Side images are decoded at for training; views are random crops of
    /// it resampled to the input size.
    pub train_side: usize,
}

impl ContrastiveParams {
    /// The defaults for an encoder of `blocks` conv blocks (chosen on the
    /// tuning set; see docs/EMBEDDING.md).
    pub fn defaults(blocks: usize) -> Self {
        ContrastiveParams {
            projection_dim: 64,
            feature_blocks: vec![blocks.saturating_sub(1)],
            pooling: Pooling::Mean,
            colour_bins: 8,
            colour_weight: 0.8,
            train_side: 80,
        }
    }

    /// Values in the colour histogram for `channels` channels.
    pub fn colour_len(&self, channels: usize) -> usize {
        if self.colour_bins == 0 {
            0
        } else {
            self.colour_bins.pow(channels as u32)
        }
    }

    /// The embedding's size for the model `cfg`.
    pub fn embedding_dim(&self, cfg: &AutoencoderConfig) -> usize {
        let conv: usize = self
            .feature_blocks
            .iter()
            .filter_map(|&b| cfg.widths.get(b))
            .sum();
        conv + self.colour_len(cfg.channels)
    }

    /// Checks the numbers against the model `cfg`.
    pub fn validate(&self, cfg: &AutoencoderConfig) -> std::result::Result<(), String> {
        if self.projection_dim == 0 || self.projection_dim > 4096 {
            return Err(format!(
                "projection_dim {} must be between 1 and 4096",
                self.projection_dim
            ));
        }
        if self.feature_blocks.is_empty()
            || self.feature_blocks.iter().any(|&b| b >= cfg.widths.len())
            || self.feature_blocks.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(format!(
                "feature_blocks {:?} must be increasing block numbers below {}",
                self.feature_blocks,
                cfg.widths.len()
            ));
        }
        if self.colour_bins > 16 {
            return Err(format!(
                "colour_bins {} must be at most 16",
                self.colour_bins
            ));
        }
        let w = self.colour_weight;
        if !(0.0..=1.0).contains(&w) || (self.colour_bins == 0 && w != 0.0) {
            return Err(format!(
                "colour_weight {w} must be in [0, 1], and 0 without colour bins"
            ));
        }
        if self.train_side < cfg.input_size || self.train_side > 2 * cfg.input_size {
            return Err(format!(
                "train_side {} must be between the input size {} and twice it",
                self.train_side, cfg.input_size
            ));
        }
        let dim = self.embedding_dim(cfg);
        if cfg.dim != dim {
            return Err(format!(
                "dim {} does not match the embedding's {dim} values",
                cfg.dim
            ));
        }
        Ok(())
    }
}

impl AutoencoderConfig {
    /// A contrastive model: `widths` conv blocks on `input_size`² RGB
    /// inputs, with `params` (its `dim` follows from them).
    pub fn contrastive(input_size: usize, widths: Vec<usize>, params: ContrastiveParams) -> Self {
        let mut cfg = AutoencoderConfig {
            architecture: ARCHITECTURE.into(),
            input_size,
            channels: 3,
            widths,
            dim: 0,
            objective: Objective::Contrastive,
            contrastive: None,
        };
        cfg.dim = params.embedding_dim(&cfg);
        cfg.contrastive = Some(params);
        cfg
    }

    /// The contrastive default for `input_size`² RGB inputs (a multiple of
    /// 8): blocks of 16, 32 and 64 channels, training images decoded a
    /// quarter larger.
    pub fn contrastive_default(input_size: usize) -> Self {
        let params = ContrastiveParams {
            train_side: input_size + input_size / 4,
            ..ContrastiveParams::defaults(3)
        };
        Self::contrastive(input_size, vec![16, 32, 64], params)
    }

    /// The contrastive default for 64×64 inputs (the collection's own).
    pub fn contrastive64() -> Self {
        Self::contrastive_default(64)
    }

    /// The transform training images are decoded with (contrastive: the
    /// larger `train_side`, so that crops keep detail; otherwise the
    /// input transform).
    pub fn training_transform(&self) -> Transform {
        match &self.contrastive {
            Some(p) => Transform::unit(p.train_side as u32, self.channels),
            None => self.transform(),
        }
    }
}

/// Contrastive training's settings, recorded in the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContrastiveTraining {
    /// NT-Xent temperature.
    pub temperature: f32,
    /// How views are made.
    pub augment: AugmentOptions,
}

/// Contrastive training hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ContrastiveOptions {
    /// Images per mini-batch (each gives two views).
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Seed of initialisation, shuffling and augmentation.
    pub seed: u64,
    /// NT-Xent temperature.
    pub temperature: f32,
    /// How views are made.
    pub augment: AugmentOptions,
}

impl Default for ContrastiveOptions {
    fn default() -> Self {
        ContrastiveOptions {
            batch_size: 64,
            learning_rate: 2e-3,
            weight_decay: 1e-4,
            seed: 42,
            temperature: 0.2,
            augment: AugmentOptions::default(),
        }
    }
}

impl ContrastiveOptions {
    fn validate(&self) -> Result<()> {
        check_optimiser(self.batch_size, self.learning_rate)?;
        if !(self.temperature >= 0.01 && self.temperature <= 10.0) {
            return Err(EmbedError::Input(format!(
                "temperature {} must be between 0.01 and 10",
                self.temperature
            )));
        }
        self.augment.validate()
    }
}

/// The conv blocks and the projection head.
pub struct ContrastiveNet {
    cfg: AutoencoderConfig,
    params: ContrastiveParams,
    convs: Vec<Conv3>,
    fc1: Linear,
    fc2: Linear,
}

impl ContrastiveNet {
    /// Builds the model, taking (or creating, with a `VarMap`) its weights
    /// from `vb`: `encoder.conv{i}`, `head.fc1`, `head.fc2`.
    pub fn new(cfg: &AutoencoderConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let params = match (cfg.objective, &cfg.contrastive) {
            (Objective::Contrastive, Some(p)) => p.clone(),
            _ => {
                return Err(EmbedError::Input(
                    "not a contrastive model config (objective reconstruction)".into(),
                ))
            }
        };
        let mut c_in = cfg.channels;
        let mut convs = Vec::new();
        for (i, &w) in cfg.widths.iter().enumerate() {
            convs.push(conv3(c_in, w, vb.pp(format!("encoder.conv{i}")))?);
            c_in = w;
        }
        let fc1 = candle_nn::linear(c_in, c_in, vb.pp("head.fc1"))?;
        let fc2 = candle_nn::linear(c_in, params.projection_dim, vb.pp("head.fc2"))?;
        Ok(ContrastiveNet {
            cfg: cfg.clone(),
            params,
            convs,
            fc1,
            fc2,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AutoencoderConfig {
        &self.cfg
    }

    /// The global `pooling` of each block's output (after its ReLU, before
    /// its 2×2 max-pool) for a `(B, C, S, S)` batch: one `(B, width)`
    /// tensor per block. Any side that survives the pooling works; training feeds the
    /// input size.
    pub fn pooled(&self, x: &Tensor, pooling: Pooling) -> Result<Vec<Tensor>> {
        let c = self.cfg.channels;
        match x.dims() {
            [_, ch, h, w] if *ch == c && *h == *w && *h >= 1 << self.convs.len() => {}
            d => {
                return Err(EmbedError::Input(format!(
                    "contrastive encoder expects (B, {c}, S, S), got {d:?}"
                )))
            }
        }
        let mut y = x.clone();
        let mut out = Vec::with_capacity(self.convs.len());
        let last = self.convs.len() - 1;
        for (i, conv) in self.convs.iter().enumerate() {
            y = y.apply(conv)?.relu()?;
            out.push(match pooling {
                Pooling::Mean => y.mean((2, 3))?,
                Pooling::Max => y.max(3)?.max(2)?,
            });
            if i < last {
                y = y.max_pool2d(2)?;
            }
        }
        Ok(out)
    }

    /// The projection head's output for a batch (training's view of it).
    pub fn project(&self, x: &Tensor) -> Result<Tensor> {
        let pooled = self.pooled(x, Pooling::Mean)?;
        let h = pooled
            .last()
            .ok_or_else(|| EmbedError::Input("no blocks".into()))?;
        Ok(self.fc2.forward(&self.fc1.forward(h)?.relu()?)?)
    }

    /// Embeddings of preprocessed inputs (see the module documentation).
    pub fn embed(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let t = self.cfg.transform();
        let pooled = self.pooled(&stack(inputs, &t)?, self.params.pooling)?;
        let blocks: Vec<Vec<Vec<f32>>> = self
            .params
            .feature_blocks
            .iter()
            .map(|&b| pooled[b].to_vec2::<f32>())
            .collect::<candle_core::Result<_>>()?;
        let w = self.params.colour_weight;
        let conv_scale = ((1.0 - w) / blocks.len() as f32).sqrt();
        let colour_scale = w.sqrt();
        let mut out = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let mut v = Vec::with_capacity(self.cfg.dim);
            for block in &blocks {
                let mut part = block[i].clone();
                unit(&mut part);
                v.extend(part.iter().map(|x| x * conv_scale));
            }
            if self.params.colour_bins > 0 {
                let hist = colour_histogram(input, self.cfg.channels, self.params.colour_bins);
                v.extend(hist.iter().map(|x| x * colour_scale));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(EmbedError::NonFinite {
                    model: IDENTITY_ARCHITECTURE.into(),
                });
            }
            unit(&mut v);
            out.push(v);
        }
        Ok(out)
    }
}

/// Scales `v` to unit length (a zero vector stays zero).
fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// The square roots of a colour histogram's bin frequencies (a unit
/// vector): `levels` per channel over `[0, 1]`, `levels^channels` bins of
/// the channel-major image `img`.
pub fn colour_histogram(img: &[f32], channels: usize, levels: usize) -> Vec<f32> {
    let channels = channels.max(1);
    let plane = img.len() / channels;
    let mut hist = vec![0f32; levels.pow(channels as u32)];
    if plane == 0 || levels == 0 {
        return hist;
    }
    let level = |v: f32| ((v.clamp(0.0, 1.0) * levels as f32) as usize).min(levels - 1);
    for i in 0..plane {
        let mut bin = 0;
        for c in 0..channels {
            bin = bin * levels + level(img[c * plane + i]);
        }
        hist[bin] += 1.0;
    }
    hist.iter_mut()
        .for_each(|h| *h = (*h / plane as f32).sqrt());
    hist
}

/// The NT-Xent loss (SimCLR) of two `(B, P)` batches of projections, row
/// `i` of `z1` and of `z2` being views of one image: each of the `2B`
/// views must pick its partner out of the other `2B − 1` by cosine
/// similarity over `temperature`; the mean cross-entropy over all views.
pub fn nt_xent(z1: &Tensor, z2: &Tensor, temperature: f64) -> Result<Tensor> {
    let b = z1.dim(0)?;
    if z2.dims() != z1.dims() || b == 0 {
        return Err(EmbedError::Input(format!(
            "NT-Xent needs two equal, non-empty batches, got {:?} and {:?}",
            z1.dims(),
            z2.dims()
        )));
    }
    let z = Tensor::cat(&[z1, z2], 0)?;
    let norm = (z.sqr()?.sum_keepdim(1)? + 1e-12)?.sqrt()?;
    let z = z.broadcast_div(&norm)?;
    let sim = (z.matmul(&z.t()?)? / temperature)?;
    let n = 2 * b;
    // A view is never its own candidate.
    let mask: Vec<f32> = (0..n * n)
        .map(|k| if k / n == k % n { -1e9 } else { 0.0 })
        .collect();
    let logits = (sim + Tensor::from_vec(mask, (n, n), z.device())?)?;
    let targets: Vec<u32> = (0..n).map(|i| ((i + b) % n) as u32).collect();
    let targets = Tensor::from_vec(targets, n, z.device())?;
    Ok(candle_nn::loss::cross_entropy(&logits, &targets)?)
}

/// A contrastive model being trained.
pub struct ContrastiveTrainer {
    varmap: VarMap,
    net: ContrastiveNet,
    opt: AdamW,
    cfg: AutoencoderConfig,
    state: TrainingState,
    opts: ContrastiveOptions,
}

impl ContrastiveTrainer {
    /// A fresh model, initialised from `opts.seed`.
    pub fn new(cfg: &AutoencoderConfig, opts: &ContrastiveOptions, dataset: &str) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let net = ContrastiveNet::new(cfg, vb)?;
        init_vars(&varmap, opts.seed)?;
        let state = TrainingState {
            dataset: dataset.to_string(),
            ..Default::default()
        };
        Self::assemble(varmap, net, state, opts.clone())
    }

    /// Continues training from a checkpoint: the weights, epoch count and
    /// the per-epoch shuffles and views continue; the optimiser's moment
    /// estimates (not saved) restart from zero.
    pub fn resume(path: &Path, opts: &ContrastiveOptions) -> Result<Self> {
        let checkpoint::Parts {
            config: ck,
            bytes,
            weights_path,
        } = checkpoint::read_parts(path)?;
        let err = |reason: String| EmbedError::Checkpoint {
            path: weights_path.clone(),
            reason: format!("cannot resume: {reason}"),
        };
        if ck.model.objective != Objective::Contrastive {
            return Err(err(format!(
                "it was trained with the {} objective, not contrastive",
                ck.model.objective.name()
            )));
        }
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let net = ContrastiveNet::new(&ck.model, vb)?;
        load_vars(&varmap, &bytes, err)?;
        Self::assemble(varmap, net, ck.training, opts.clone())
    }

    fn assemble(
        varmap: VarMap,
        net: ContrastiveNet,
        mut state: TrainingState,
        opts: ContrastiveOptions,
    ) -> Result<Self> {
        opts.validate()?;
        state.seed = opts.seed;
        state.batch_size = opts.batch_size;
        state.learning_rate = opts.learning_rate;
        state.weight_decay = opts.weight_decay;
        state.noise_std = 0.0;
        state.contrastive = Some(ContrastiveTraining {
            temperature: opts.temperature,
            augment: opts.augment.clone(),
        });
        let opt = adamw(&varmap, opts.learning_rate, opts.weight_decay)?;
        Ok(ContrastiveTrainer {
            cfg: net.config().clone(),
            varmap,
            net,
            opt,
            state,
            opts,
        })
    }

    /// The model.
    pub fn net(&self) -> &ContrastiveNet {
        &self.net
    }

    /// Floats per training image: `channels × train_side²`.
    pub fn image_len(&self) -> usize {
        self.cfg.training_transform().len()
    }

    /// The two views of image `i` (of `data`) for `epoch`.
    fn views(&self, data: TrainData<'_>, epoch: usize, i: usize) -> Result<[Vec<f32>; 2]> {
        let side = self.net.params.train_side;
        let img = &data.pixels[i * data.len..(i + 1) * data.len];
        let c = self.cfg.channels;
        let s = self.cfg.input_size;
        let a = &self.opts.augment;
        let seed = self.opts.seed;
        Ok([
            augment::view(img, c, side, s, a, &mut Rng::for_view(seed, epoch, i, 0))?,
            augment::view(img, c, side, s, a, &mut Rng::for_view(seed, epoch, i, 1))?,
        ])
    }
}

/// Splits `n` shuffled images into batches of `size`, a last batch of a
/// single image joining the one before (NT-Xent needs two).
fn batch_bounds(n: usize, size: usize) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = (0..n)
        .step_by(size.max(1))
        .map(|a| (a, (a + size).min(n)))
        .collect();
    if out.len() > 1 && out.last().is_some_and(|(a, b)| b - a < 2) {
        let (_, end) = out.pop().unwrap_or((n, n));
        if let Some(prev) = out.last_mut() {
            prev.1 = end;
        }
    }
    out
}

impl EpochTrainer for ContrastiveTrainer {
    fn epochs_done(&self) -> usize {
        self.state.history.len()
    }

    fn state(&self) -> &TrainingState {
        &self.state
    }

    fn run_epoch(
        &mut self,
        data: TrainData<'_>,
        on_batch: &mut dyn FnMut(BatchProgress),
    ) -> Result<EpochStats> {
        let len = self.image_len();
        if data.len != len || !data.pixels.len().is_multiple_of(len) || data.n() < 2 {
            return Err(EmbedError::Input(format!(
                "contrastive training data: {} floats is not at least two {len}-float images",
                data.pixels.len()
            )));
        }
        let n = data.n();
        self.state.images = n;
        let epoch = self.epochs_done() + 1;
        let (order, _) = shuffled(n, self.opts.seed, epoch);
        let bounds = batch_bounds(n, self.opts.batch_size);
        let (c, s) = (self.cfg.channels, self.cfg.input_size);
        let start = Instant::now();
        let (mut total, mut seen) = (0.0, 0usize);
        for (bi, &(a, z)) in bounds.iter().enumerate() {
            let chunk = &order[a..z];
            let b = chunk.len();
            let views: Vec<[Vec<f32>; 2]> = chunk
                .par_iter()
                .map(|&i| self.views(data, epoch, i))
                .collect::<Result<_>>()?;
            let mut buf = Vec::with_capacity(2 * b * c * s * s);
            for k in 0..2 {
                for v in &views {
                    buf.extend_from_slice(&v[k]);
                }
            }
            let x = Tensor::from_vec(buf, (2 * b, c, s, s), &Device::Cpu)?;
            let z = self.net.project(&x)?;
            let loss = nt_xent(
                &z.narrow(0, 0, b)?,
                &z.narrow(0, b, b)?,
                f64::from(self.opts.temperature),
            )?;
            self.opt.backward_step(&loss)?;
            let l = f64::from(loss.to_scalar::<f32>()?);
            if !l.is_finite() {
                return Err(EmbedError::NonFinite {
                    model: "contrastive training (loss diverged; lower the learning rate)".into(),
                });
            }
            total += l * b as f64;
            seen += b;
            on_batch(BatchProgress {
                batch: bi + 1,
                batches: bounds.len(),
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

    fn save_with(&self, storage: &dyn Storage, dir: &Path) -> Result<()> {
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

/// A contrastive checkpoint as an [`Embedder`]: pooled encoder features
/// (and colour, by its weight), L2-normalised, compared by cosine.
pub struct ContrastiveEmbedder {
    net: ContrastiveNet,
    identity: EmbedderIdentity,
    training: TrainingState,
}

impl ContrastiveEmbedder {
    /// Loads a checkpoint (the `.safetensors` file or its folder). Its
    /// weights digest covers the weights and the model config (which holds
    /// the pooling and colour settings), so that a collection is never
    /// queried with vectors made differently.
    pub fn load(path: &Path) -> Result<Self> {
        let checkpoint::Parts {
            config,
            bytes,
            weights_path,
        } = checkpoint::read_parts(path)?;
        let err = |reason: String| EmbedError::Checkpoint {
            path: weights_path.clone(),
            reason,
        };
        if config.model.objective != Objective::Contrastive {
            return Err(err(format!(
                "a {} checkpoint, not a contrastive one",
                config.model.objective.name()
            )));
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(&bytes);
        hasher.update(
            serde_json::to_string(&config.model)
                .map_err(|e| err(e.to_string()))?
                .as_bytes(),
        );
        let digest = hasher.finalize().to_hex()[..16].to_string();
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)
            .map_err(|e| err(format!("not a valid safetensors file ({e})")))?;
        let net = ContrastiveNet::new(&config.model, vb).map_err(|e| {
            err(format!(
                "does not fit the architecture in {} ({:?}): {e}",
                checkpoint::CONFIG_FILE,
                config.model.widths
            ))
        })?;
        let probe = vec![0.0; config.model.transform().len()];
        net.embed(&[probe])
            .map_err(|e| err(format!("weights do not run: {e}")))?;
        let identity = EmbedderIdentity {
            architecture: IDENTITY_ARCHITECTURE.into(),
            weights_digest: digest,
            weights_origin: weights_path.display().to_string(),
            dim: config.model.dim,
            metric: Metric::Cosine,
            preprocessing: config.model.transform(),
        };
        Ok(ContrastiveEmbedder {
            net,
            identity,
            training: config.training,
        })
    }

    /// The model.
    pub fn net(&self) -> &ContrastiveNet {
        &self.net
    }

    /// How it was trained.
    pub fn training(&self) -> &TrainingState {
        &self.training
    }
}

impl Embedder for ContrastiveEmbedder {
    fn identity(&self) -> &EmbedderIdentity {
        &self.identity
    }

    fn embed_batch(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        self.net.embed(inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rows: &[[f32; 2]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (rows.len(), 2), &Device::Cpu).unwrap()
    }

    fn loss(a: &[[f32; 2]], b: &[[f32; 2]], temp: f64) -> f32 {
        nt_xent(&t(a), &t(b), temp)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Two orthogonal images, τ = 1. Identical pairs: each view sees its
    /// partner at similarity 1 and two others at 0, so the loss is
    /// −ln(e / (e + 2)) = ln(1 + 2/e). Swapped pairs: the partner is at 0,
    /// one other at 1, one at 0: −ln(1 / (2 + e)) = ln(2 + e).
    #[test]
    fn nt_xent_matches_a_hand_computed_case() {
        let e = std::f32::consts::E;
        let same = loss(&[[1.0, 0.0], [0.0, 1.0]], &[[1.0, 0.0], [0.0, 1.0]], 1.0);
        assert!((same - (1.0 + 2.0 / e).ln()).abs() < 1e-5, "{same}");
        let swapped = loss(&[[1.0, 0.0], [0.0, 1.0]], &[[0.0, 1.0], [1.0, 0.0]], 1.0);
        assert!((swapped - (2.0 + e).ln()).abs() < 1e-5, "{swapped}");
        assert!(same < swapped);
        // Scale does not matter (cosine), temperature sharpens.
        let scaled = loss(&[[3.0, 0.0], [0.0, 0.5]], &[[2.0, 0.0], [0.0, 7.0]], 1.0);
        assert!((scaled - same).abs() < 1e-5);
        assert!(loss(&[[1.0, 0.0], [0.0, 1.0]], &[[1.0, 0.0], [0.0, 1.0]], 0.1) < same);
        assert!(nt_xent(&t(&[[1.0, 0.0]]), &t(&[[1.0, 0.0], [0.0, 1.0]]), 1.0).is_err());
    }

    #[test]
    fn identical_pairs_score_lower_than_shuffled_pairs() {
        let z: Vec<[f32; 2]> = (0..8)
            .map(|i| {
                let a = i as f32 * 0.7;
                [a.cos(), a.sin()]
            })
            .collect();
        let mut shuffled = z.clone();
        shuffled.rotate_left(3);
        assert!(loss(&z, &z, 0.5) < loss(&z, &shuffled, 0.5));
    }

    #[test]
    fn colour_histograms_are_unit_vectors_of_the_right_bins() {
        // 2×2 RGB: two pure red pixels, one black, one white.
        let img = [
            1.0, 1.0, 0.0, 1.0, // R
            0.0, 0.0, 0.0, 1.0, // G
            0.0, 0.0, 0.0, 1.0, // B
        ];
        let h = colour_histogram(&img, 3, 2);
        assert_eq!(h.len(), 8);
        assert!((h[0b100] - 0.5f32.sqrt()).abs() < 1e-6, "red: {h:?}");
        assert!((h[0] - 0.5).abs() < 1e-6 && (h[0b111] - 0.5).abs() < 1e-6);
        assert!((h.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn batches_never_end_with_a_single_image() {
        assert_eq!(batch_bounds(9, 4), vec![(0, 4), (4, 9)]);
        assert_eq!(batch_bounds(10, 4), vec![(0, 4), (4, 8), (8, 10)]);
        assert_eq!(batch_bounds(3, 8), vec![(0, 3)]);
    }

    #[test]
    fn params_are_checked_against_the_model() {
        let good = AutoencoderConfig::contrastive64();
        assert!(good.validate().is_ok(), "{:?}", good.validate());
        assert_eq!(good.dim, 64 + 512);
        let mut bad = good.clone();
        bad.dim += 1;
        assert!(bad.validate().is_err());
        let mut bad = good.clone();
        if let Some(p) = bad.contrastive.as_mut() {
            p.feature_blocks = vec![3];
        }
        assert!(bad.validate().is_err());
        let mut bad = good.clone();
        bad.contrastive = None;
        assert!(bad.validate().is_err());
        let mut bad = good;
        bad.objective = Objective::Reconstruction;
        assert!(bad.validate().is_err());
    }
}
