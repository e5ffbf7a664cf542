//! Training a projection head on cached base vectors with labels: a
//! stratified held-out split, a supervised contrastive loss (Khosla et al.,
//! 2020) on shuffled mini-batches, AdamW, early stopping on the held-out
//! precision@10, and a checkpoint after every epoch from which training
//! resumes exactly where it stopped (optimiser moments included).
//!
//! Everything is seeded: the initial weights, the split, and each epoch's
//! shuffle (derived from the seed and the epoch number), so the same seed
//! and data give the same head, resumed or not.

use std::path::Path;
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use imgsim_common::Storage;

use super::checkpoint::{self, HeadEpoch, HeadRecord, HeadTraining, LAST_FILE, WEIGHTS_FILE};
use super::{Head, HeadBase, HeadConfig, INPUT_MEAN, INPUT_SCALE};
use crate::error::{EmbedError, Result};
use crate::synthetic::{splitmix64, values};

/// Training hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadOptions {
    /// Hidden layer sizes (empty: linear).
    pub hidden: Vec<usize>,
    /// Output (embedding) size.
    pub output_dim: usize,
    /// Epochs at most.
    pub max_epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Temperature of the contrastive loss.
    pub temperature: f64,
    /// Share of each label held out for early stopping (0: none).
    pub val_fraction: f64,
    /// Epochs without a better held-out precision@10 before stopping.
    pub patience: usize,
    /// Seed.
    pub seed: u64,
}

impl Default for HeadOptions {
    fn default() -> Self {
        HeadOptions {
            hidden: vec![512],
            output_dim: 128,
            max_epochs: 30,
            batch_size: 256,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            temperature: 0.1,
            val_fraction: 0.2,
            patience: 10,
            seed: 42,
        }
    }
}

/// Base vectors with labels: what a head learns from.
#[derive(Debug, Clone, Copy)]
pub struct LabelledVectors<'a> {
    /// Row-major vectors.
    pub vectors: &'a [f32],
    /// Their size.
    pub dim: usize,
    /// The label number of each vector.
    pub labels: &'a [u32],
    /// Label names, by number.
    pub names: &'a [String],
}

impl LabelledVectors<'_> {
    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    /// Checks sizes, finiteness and that there is something to learn.
    fn validate(&self) -> Result<()> {
        if self.dim == 0 || self.vectors.len() != self.labels.len() * self.dim {
            return Err(EmbedError::Input(format!(
                "{} values are not {} vectors of {} numbers",
                self.vectors.len(),
                self.labels.len(),
                self.dim
            )));
        }
        if let Some(i) = (0..self.len()).find(|&i| self.row(i).iter().any(|v| !v.is_finite())) {
            return Err(EmbedError::Input(format!(
                "vector {i} contains NaN or infinity"
            )));
        }
        if let Some(&l) = self
            .labels
            .iter()
            .find(|&&l| l as usize >= self.names.len())
        {
            return Err(EmbedError::Input(format!(
                "label number {l} has no name ({} labels)",
                self.names.len()
            )));
        }
        let mut counts = vec![0usize; self.names.len()];
        self.labels.iter().for_each(|&l| counts[l as usize] += 1);
        let used: Vec<usize> = (0..counts.len()).filter(|&l| counts[l] > 0).collect();
        if used.len() < 2 {
            return Err(EmbedError::Input(match used.first() {
                Some(&l) => format!(
                    "only one label (`{}`): a head learns what tells labels apart, so it needs at least two",
                    self.names[l]
                ),
                None => "no labelled vectors to train on".into(),
            }));
        }
        if let Some(l) = used.iter().find(|&&l| counts[l] < 2) {
            return Err(EmbedError::Input(format!(
                "label `{}` has a single image: each label needs at least two",
                self.names[*l]
            )));
        }
        Ok(())
    }
}

/// What the callback hears.
#[derive(Debug, Clone)]
pub enum HeadEvent {
    /// A mini-batch finished.
    Batch {
        /// Epoch, from 1.
        epoch: usize,
        /// Batches done in the epoch.
        batch: usize,
        /// Batches in the epoch.
        batches: usize,
        /// Mean loss so far in the epoch.
        loss: f64,
    },
    /// An epoch finished and was saved.
    Epoch {
        /// Its figures.
        stats: HeadEpoch,
        /// Whether its weights are the best so far (and now the head's).
        best: bool,
    },
}

/// Splits each label's vectors into training and held-out ones, seeded:
/// `round(n · fraction)` of a label's `n` are held out, but at least one
/// stays for training. Returns `(train, val)` indices.
pub fn split(labels: &[u32], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let n_labels = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut by_label: Vec<Vec<usize>> = vec![Vec::new(); n_labels];
    for (i, &l) in labels.iter().enumerate() {
        by_label[l as usize].push(i);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (l, mut idx) in by_label.into_iter().enumerate() {
        shuffle(&mut idx, seed ^ splitmix64(l as u64 + 0x5eed));
        let n_val =
            ((idx.len() as f64 * fraction).round() as usize).min(idx.len().saturating_sub(1));
        val.extend_from_slice(&idx[..n_val]);
        train.extend_from_slice(&idx[n_val..]);
    }
    shuffle(&mut val, seed ^ 0x0a1);
    train.sort_unstable();
    (train, val)
}

/// Fisher–Yates with a splitmix64 stream.
fn shuffle(v: &mut [usize], seed: u64) {
    let mut s = seed;
    for i in (1..v.len()).rev() {
        s = splitmix64(s);
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
}

/// AdamW whose moment estimates can be saved and restored.
struct Adam {
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
}

impl Adam {
    const B1: f64 = 0.9;
    const B2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    fn zeros(vars: &[(String, Var)]) -> Result<Self> {
        let z = |v: &Var| v.as_tensor().zeros_like();
        Ok(Adam {
            m: vars
                .iter()
                .map(|(_, v)| z(v))
                .collect::<candle_core::Result<_>>()?,
            v: vars
                .iter()
                .map(|(_, v)| z(v))
                .collect::<candle_core::Result<_>>()?,
            step: 0,
        })
    }

    fn update(
        &mut self,
        vars: &[(String, Var)],
        grads: &GradStore,
        lr: f64,
        wd: f64,
    ) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let c1 = 1.0 - Self::B1.powi(t);
        let c2 = 1.0 - Self::B2.powi(t);
        for (i, (_, var)) in vars.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            let m = ((&self.m[i] * Self::B1)? + (g * (1.0 - Self::B1))?)?;
            let v = ((&self.v[i] * Self::B2)? + (g.sqr()? * (1.0 - Self::B2))?)?;
            let step = ((&m / c1)? / ((&v / c2)?.sqrt()? + Self::EPS)?)?;
            let next = ((var.as_tensor() * (1.0 - lr * wd))? - (step * lr)?)?;
            var.set(&next)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }
}

/// A head being trained.
pub struct HeadTrainer {
    record: HeadRecord,
    opts: HeadOptions,
    _varmap: VarMap,
    vars: Vec<(String, Var)>,
    head: Head,
    mean: Vec<f32>,
    scale: Vec<f32>,
    adam: Adam,
    train: Vec<usize>,
    val: Vec<usize>,
    best: Vec<(String, Tensor)>,
}

/// Held-out queries used for early stopping, at most.
const MAX_VAL_QUERIES: usize = 2000;

impl HeadTrainer {
    /// A fresh head for `data` on `base`, initialised from `opts.seed`
    /// (uniform ±1/√fan_in weights as PyTorch's default, zero biases).
    pub fn new(
        data: LabelledVectors<'_>,
        base: HeadBase,
        dataset: &str,
        opts: &HeadOptions,
    ) -> Result<Self> {
        data.validate()?;
        check_options(opts)?;
        let cfg = HeadConfig {
            input_dim: data.dim,
            hidden: opts.hidden.clone(),
            output_dim: opts.output_dim,
        };
        cfg.validate()?;
        let (train, val) = split(data.labels, opts.val_fraction, opts.seed);
        let (mean, scale) = standardisation(&data, &train);
        let record = HeadRecord {
            model: cfg.clone(),
            base,
            training: HeadTraining {
                dataset: dataset.to_string(),
                labels: data.names.to_vec(),
                train_samples: train.len(),
                val_samples: val.len(),
                val_fraction: opts.val_fraction,
                seed: opts.seed,
                batch_size: opts.batch_size,
                learning_rate: opts.learning_rate,
                weight_decay: opts.weight_decay,
                temperature: opts.temperature,
                max_epochs: opts.max_epochs,
                patience: opts.patience,
                ..Default::default()
            },
        };
        let init = |name: &str, dims: &[usize]| -> Vec<f32> {
            let n: usize = dims.iter().product();
            if name.ends_with("weight") {
                let b = 1.0 / (dims[1] as f64).sqrt();
                values(opts.seed, name, n, -b, b)
            } else {
                vec![0.0; n]
            }
        };
        let mut record = record;
        if !val.is_empty() {
            let queries: Vec<usize> = val.iter().copied().take(MAX_VAL_QUERIES).collect();
            let labels =
                |idx: &[usize]| -> Vec<u32> { idx.iter().map(|&i| data.labels[i]).collect() };
            let l2 = record
                .base
                .identity
                .as_ref()
                .is_none_or(|i| i.metric == crate::embedder::Metric::L2);
            record.training.base_val_precision_at_10 = Some(precision_at_10(
                &gather(data, &queries),
                &labels(&queries),
                &gather(data, &train),
                &labels(&train),
                data.dim,
                l2,
            )?);
        }
        let mut trainer = Self::assemble(
            record,
            opts.clone(),
            mean,
            scale,
            train,
            val,
            |name, dims| Ok(Tensor::from_vec(init(name, dims), dims, &Device::Cpu)?),
        )?;
        trainer.best = trainer.weights()?;
        Ok(trainer)
    }

    /// Continues the training saved in folder `dir` on the same `data` and
    /// `base` (refused otherwise). The options must be those it was started
    /// with, except `max_epochs` and `patience`, which may change.
    pub fn resume(
        dir: &Path,
        data: LabelledVectors<'_>,
        base: &HeadBase,
        opts: &HeadOptions,
    ) -> Result<Self> {
        data.validate()?;
        check_options(opts)?;
        let last = dir.join(LAST_FILE);
        let (mut record, tensors) = checkpoint::read(&last)?;
        let refuse = |reason: String| EmbedError::Checkpoint {
            path: last.clone(),
            reason: format!("cannot resume: {reason}"),
        };
        let t = &record.training;
        if &record.base != base {
            return Err(refuse(format!(
                "it was trained on `{}`, not `{}`",
                record.base.spec, base.spec
            )));
        }
        if t.train_samples + t.val_samples != data.len()
            || record.model.input_dim != data.dim
            || t.labels != data.names
        {
            return Err(refuse(format!(
                "it was trained on {} {}-d vectors with labels {:?}, these are {} {}-d vectors with labels {:?}",
                t.train_samples + t.val_samples,
                record.model.input_dim,
                t.labels,
                data.len(),
                data.dim,
                data.names
            )));
        }
        let same = record.model.hidden == opts.hidden
            && record.model.output_dim == opts.output_dim
            && t.seed == opts.seed
            && t.batch_size == opts.batch_size
            && t.learning_rate == opts.learning_rate
            && t.weight_decay == opts.weight_decay
            && t.temperature == opts.temperature
            && t.val_fraction == opts.val_fraction;
        if !same {
            return Err(refuse(
                "the options differ from the run being resumed (sizes, seed, batch size, learning rate, weight decay, temperature or held-out share)".into(),
            ));
        }
        record.training.max_epochs = opts.max_epochs;
        record.training.patience = opts.patience;
        record.training.finished = false;
        let (train, val) = split(data.labels, opts.val_fraction, opts.seed);
        let get = |name: &str| -> Result<Tensor> {
            tensors
                .get(name)
                .cloned()
                .ok_or_else(|| refuse(format!("no tensor `{name}`")))
        };
        let mean = get(INPUT_MEAN)?.to_vec1::<f32>()?;
        let scale = get(INPUT_SCALE)?.to_vec1::<f32>()?;
        let mut trainer =
            Self::assemble(record, opts.clone(), mean, scale, train, val, |name, _| {
                get(name)
            })?;
        for (i, (name, _)) in trainer.vars.iter().enumerate() {
            trainer.adam.m[i] = get(&format!("adam.m.{name}"))?;
            trainer.adam.v[i] = get(&format!("adam.v.{name}"))?;
        }
        trainer.adam.step = get("adam.step")?
            .to_vec1::<f32>()?
            .first()
            .copied()
            .unwrap_or(0.0) as u64;
        let (_, best) = checkpoint::read(&dir.join(WEIGHTS_FILE))?;
        trainer.best = checkpoint::tensor_names(&trainer.record.model)
            .into_iter()
            .map(|n| {
                let t = best
                    .get(&n)
                    .cloned()
                    .ok_or_else(|| refuse(format!("no tensor `{n}` in {WEIGHTS_FILE}")))?;
                Ok((n, t))
            })
            .collect::<Result<_>>()?;
        Ok(trainer)
    }

    fn assemble(
        record: HeadRecord,
        opts: HeadOptions,
        mean: Vec<f32>,
        scale: Vec<f32>,
        train: Vec<usize>,
        val: Vec<usize>,
        value: impl Fn(&str, &[usize]) -> Result<Tensor>,
    ) -> Result<Self> {
        let cfg = record.model.clone();
        let varmap = VarMap::new();
        let mut vars = Vec::new();
        for (i, (d_in, d_out)) in cfg.layers().into_iter().enumerate() {
            for (suffix, dims) in [("weight", vec![d_out, d_in]), ("bias", vec![d_out])] {
                let name = format!("{}.{suffix}", super::layer_name(i));
                let t = value(&name, &dims)?;
                if t.dims() != dims.as_slice() {
                    return Err(EmbedError::Input(format!(
                        "tensor `{name}` has shape {:?}, the head expects {dims:?}",
                        t.dims()
                    )));
                }
                let var = Var::from_tensor(&t)?;
                varmap
                    .data()
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.clone(), var.clone());
                vars.push((name, var));
            }
        }
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let head = Head::new(&cfg, vb, &mean, &scale)?;
        let adam = Adam::zeros(&vars)?;
        Ok(HeadTrainer {
            record,
            opts,
            _varmap: varmap,
            vars,
            head,
            mean,
            scale,
            adam,
            train,
            val,
            best: Vec::new(),
        })
    }

    /// The record so far.
    pub fn record(&self) -> &HeadRecord {
        &self.record
    }

    /// Epochs done.
    pub fn epochs_done(&self) -> usize {
        self.record.training.history.len()
    }

    /// Whether training is over: the last epoch was done, or the held-out
    /// precision has not improved for `patience` epochs.
    pub fn finished(&self) -> bool {
        let t = &self.record.training;
        let done = self.epochs_done();
        done >= t.max_epochs || (!self.val.is_empty() && done >= t.best_epoch + t.patience.max(1))
    }

    /// The current weights and standardisation, by name.
    fn weights(&self) -> Result<Vec<(String, Tensor)>> {
        let dim = self.mean.len();
        let mut out = vec![
            (
                INPUT_MEAN.to_string(),
                Tensor::from_slice(&self.mean, dim, &Device::Cpu)?,
            ),
            (
                INPUT_SCALE.to_string(),
                Tensor::from_slice(&self.scale, dim, &Device::Cpu)?,
            ),
        ];
        for (name, var) in &self.vars {
            out.push((name.clone(), var.as_tensor().copy()?));
        }
        Ok(out)
    }

    /// Runs one epoch: shuffled mini-batches of the training split, then
    /// the held-out precision@10. `on_event` hears each batch.
    pub fn run_epoch(
        &mut self,
        data: LabelledVectors<'_>,
        on_event: &mut dyn FnMut(HeadEvent),
    ) -> Result<HeadEpoch> {
        let start = Instant::now();
        let epoch = self.epochs_done() + 1;
        let mut order = self.train.clone();
        shuffle(
            &mut order,
            splitmix64(self.opts.seed ^ splitmix64(epoch as u64)),
        );
        let bs = self.opts.batch_size;
        let batches: Vec<&[usize]> = order.chunks(bs).filter(|b| b.len() >= 2).collect();
        let (mut sum, mut seen) = (0.0, 0usize);
        let lr = self.learning_rate(epoch);
        for (bi, batch) in batches.iter().enumerate() {
            let loss = self.step(data, batch, lr)?;
            sum += loss * batch.len() as f64;
            seen += batch.len();
            on_event(HeadEvent::Batch {
                epoch,
                batch: bi + 1,
                batches: batches.len(),
                loss: sum / seen.max(1) as f64,
            });
        }
        let train_seconds = start.elapsed().as_secs_f64();
        let val = if self.val.is_empty() {
            None
        } else {
            Some(self.val_precision(data)?)
        };
        let stats = HeadEpoch {
            epoch,
            loss: sum / seen.max(1) as f64,
            val_precision_at_10: val,
            samples_per_s: seen as f64 / train_seconds.max(1e-9),
            seconds: start.elapsed().as_secs_f64(),
        };
        if !stats.loss.is_finite() {
            return Err(EmbedError::NonFinite {
                model: "the head being trained (lower the learning rate)".into(),
            });
        }
        let t = &mut self.record.training;
        let better = match (val, t.best_val_precision_at_10) {
            (Some(v), Some(b)) => v > b,
            (Some(_), None) => true,
            (None, _) => true,
        };
        if better {
            t.best_epoch = epoch;
            t.best_val_precision_at_10 = val;
        }
        t.history.push(stats.clone());
        if better {
            self.best = self.weights()?;
        }
        self.record.training.finished = self.finished();
        on_event(HeadEvent::Epoch {
            stats: stats.clone(),
            best: better,
        });
        Ok(stats)
    }

    /// The learning rate of `epoch` (from 1): cosine decay from the
    /// configured rate to a hundredth of it over `max_epochs`.
    pub fn learning_rate(&self, epoch: usize) -> f64 {
        let lr = self.opts.learning_rate;
        let progress = (epoch - 1) as f64 / self.record.training.max_epochs.max(1) as f64;
        lr / 100.0 + 0.5 * (lr - lr / 100.0) * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    /// One mini-batch: forward, supervised contrastive loss, AdamW step.
    fn step(&mut self, data: LabelledVectors<'_>, batch: &[usize], lr: f64) -> Result<f64> {
        let b = batch.len();
        let mut x = Vec::with_capacity(b * data.dim);
        for &i in batch {
            x.extend_from_slice(data.row(i));
        }
        let x = Tensor::from_vec(x, (b, data.dim), &Device::Cpu)?;
        let labels: Vec<u32> = batch.iter().map(|&i| data.labels[i]).collect();
        let z = self.head.forward(&x)?;
        let loss = supcon_loss(&z, &labels, self.opts.temperature)?;
        let value = loss.to_scalar::<f32>()? as f64;
        let grads = loss.backward()?;
        self.adam
            .update(&self.vars, &grads, lr, self.opts.weight_decay)?;
        Ok(value)
    }

    /// precision@10 of (at most [`MAX_VAL_QUERIES`]) held-out vectors
    /// searched by cosine among the training vectors, through the head.
    fn val_precision(&self, data: LabelledVectors<'_>) -> Result<f64> {
        let queries: Vec<usize> = self.val.iter().copied().take(MAX_VAL_QUERIES).collect();
        let base = self.head.apply(&gather(data, &self.train))?;
        let q = self.head.apply(&gather(data, &queries))?;
        let labels = |idx: &[usize]| -> Vec<u32> { idx.iter().map(|&i| data.labels[i]).collect() };
        precision_at_10(
            &q,
            &labels(&queries),
            &base,
            &labels(&self.train),
            self.record.model.output_dim,
            false,
        )
    }

    /// Saves the epoch in folder `dir`: [`LAST_FILE`] (to resume), then the
    /// best weights ([`WEIGHTS_FILE`]) and `config.json`, each atomically.
    pub fn save(&self, storage: &dyn Storage, dir: &Path) -> Result<()> {
        storage
            .create_dir_all(dir)
            .map_err(|source| EmbedError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
        let mut last = self.weights()?;
        for (i, (name, _)) in self.vars.iter().enumerate() {
            last.push((format!("adam.m.{name}"), self.adam.m[i].clone()));
            last.push((format!("adam.v.{name}"), self.adam.v[i].clone()));
        }
        last.push((
            "adam.step".into(),
            Tensor::from_slice(&[self.adam.step as f32], 1, &Device::Cpu)?,
        ));
        checkpoint::write_tensors(storage, &dir.join(LAST_FILE), &last, &self.record)?;
        checkpoint::write_tensors(storage, &dir.join(WEIGHTS_FILE), &self.best, &self.record)?;
        let map = self.best.iter().cloned().collect();
        let digest = checkpoint::digest(&self.record.model, &map)?;
        checkpoint::write_config(storage, dir, &self.record, &digest)
    }
}

/// The rows `idx` of `data`, one after another.
fn gather(data: LabelledVectors<'_>, idx: &[usize]) -> Vec<f32> {
    idx.iter()
        .flat_map(|&i| data.row(i).iter().copied())
        .collect()
}

/// precision@10 (or @n for fewer than 10 base vectors) of `queries`
/// searched exactly among `base` (row-major, `d` columns): by Euclidean
/// distance when `l2`, else by dot product (cosine for unit vectors).
fn precision_at_10(
    queries: &[f32],
    query_labels: &[u32],
    base: &[f32],
    base_labels: &[u32],
    d: usize,
    l2: bool,
) -> Result<f64> {
    let n = base_labels.len();
    let k = 10.min(n);
    if k == 0 || query_labels.is_empty() {
        return Ok(0.0);
    }
    let base_t = Tensor::from_slice(base, (n, d), &Device::Cpu)?
        .t()?
        .contiguous()?;
    // ‖q − b‖² ranks as ‖b‖² − 2 q·b.
    let norms: Vec<f32> = base
        .chunks_exact(d)
        .map(|b| b.iter().map(|v| v * v).sum())
        .collect();
    let mut hits = 0usize;
    for (c, chunk) in queries.chunks(d * 256).enumerate() {
        let qt = Tensor::from_slice(chunk, (chunk.len() / d, d), &Device::Cpu)?;
        let dots = qt.matmul(&base_t)?.to_vec2::<f32>()?;
        for (r, row) in dots.iter().enumerate() {
            let score: Vec<f32> = if l2 {
                row.iter()
                    .zip(&norms)
                    .map(|(dot, nb)| 2.0 * dot - nb)
                    .collect()
            } else {
                row.clone()
            };
            let label = query_labels[c * 256 + r];
            let mut idx: Vec<usize> = (0..n).collect();
            idx.select_nth_unstable_by(k - 1, |&a, &b| score[b].total_cmp(&score[a]));
            hits += idx[..k]
                .iter()
                .filter(|&&j| base_labels[j] == label)
                .count();
        }
    }
    Ok(hits as f64 / (query_labels.len() * k) as f64)
}

fn check_options(opts: &HeadOptions) -> Result<()> {
    let bad = |what: &str| Err(EmbedError::Input(what.to_string()));
    if opts.batch_size < 2 {
        return bad("the batch size must be at least 2 (the loss compares images within a batch)");
    }
    if !(opts.learning_rate > 0.0 && opts.learning_rate.is_finite()) {
        return bad("the learning rate must be a positive number");
    }
    if !(opts.weight_decay >= 0.0 && opts.weight_decay.is_finite()) {
        return bad("the weight decay must be a non-negative number");
    }
    if !(opts.temperature > 0.0 && opts.temperature.is_finite()) {
        return bad("the temperature must be a positive number");
    }
    if !(0.0..0.9).contains(&opts.val_fraction) {
        return bad("the held-out share (--val) must be at least 0 and below 0.9");
    }
    if opts.max_epochs == 0 {
        return bad("train at least one epoch");
    }
    Ok(())
}

/// Per-dimension mean of the training vectors, and one overall scale
/// (1 / the root mean variance) for every dimension: the head's input is
/// centred and brought to unit variance on average without stretching
/// dimensions that barely vary (constant border pixels, say).
fn standardisation(data: &LabelledVectors<'_>, train: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let d = data.dim;
    let n = train.len().max(1) as f64;
    let mut mean = vec![0f64; d];
    for &i in train {
        mean.iter_mut()
            .zip(data.row(i))
            .for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = 0f64;
    for &i in train {
        var += data
            .row(i)
            .iter()
            .zip(&mean)
            .map(|(&v, m)| (v as f64 - m).powi(2))
            .sum::<f64>();
    }
    let rms = (var / n / d as f64).sqrt();
    let scale = if rms > 1e-12 { 1.0 / rms } else { 1.0 };
    (
        mean.iter().map(|&m| m as f32).collect(),
        vec![scale as f32; d],
    )
}

/// The supervised contrastive loss of unit vectors `z` (`B × D`) with
/// `labels`: for each anchor with at least one other same-label vector in
/// the batch, minus the mean over those positives of the log-softmax of its
/// similarities (divided by `temperature`) to every other vector; averaged
/// over such anchors.
pub fn supcon_loss(z: &Tensor, labels: &[u32], temperature: f64) -> Result<Tensor> {
    let b = labels.len();
    let mut mask = vec![0f32; b * b];
    let mut self_mask = vec![0f32; b * b];
    let mut weight = vec![0f32; b];
    for i in 0..b {
        self_mask[i * b + i] = -1e9;
        let mut count = 0;
        for j in 0..b {
            if i != j && labels[i] == labels[j] {
                mask[i * b + j] = 1.0;
                count += 1;
            }
        }
        if count > 0 {
            weight[i] = 1.0 / count as f32;
        }
    }
    let anchors = weight.iter().filter(|&&w| w > 0.0).count();
    if anchors == 0 {
        return Err(EmbedError::Input(
            "no two vectors in the batch share a label".into(),
        ));
    }
    weight.iter_mut().for_each(|w| *w /= anchors as f32);
    let dev = &Device::Cpu;
    let sims = (z.matmul(&z.t()?)? / temperature)?;
    let sims = (sims + Tensor::from_vec(self_mask, (b, b), dev)?)?;
    let log_p = candle_nn::ops::log_softmax(&sims, 1)?;
    let per_anchor = (log_p * Tensor::from_vec(mask, (b, b), dev)?)?.sum(1)?;
    Ok((per_anchor * Tensor::from_vec(weight, b, dev)?)?
        .sum_all()?
        .neg()?)
}

/// What [`fit`] trains.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// The labelled base vectors.
    pub data: LabelledVectors<'a>,
    /// The base they came from.
    pub base: &'a HeadBase,
    /// What they are (a folder, `fashion-mnist`), for the record.
    pub dataset: &'a str,
    /// Hyper-parameters.
    pub opts: &'a HeadOptions,
    /// The head's folder.
    pub out: &'a Path,
    /// Continue the training saved in `out` (if any) instead of starting anew.
    pub resume: bool,
}

/// Trains a head as `run` says, until [`HeadTrainer::finished`], saving
/// after every epoch through `storage`. Returns the final record.
pub fn fit(
    run: Run<'_>,
    storage: &dyn Storage,
    on_event: &mut dyn FnMut(HeadEvent),
) -> Result<HeadRecord> {
    let mut trainer = if run.resume && run.out.join(LAST_FILE).exists() {
        HeadTrainer::resume(run.out, run.data, run.base, run.opts)?
    } else {
        HeadTrainer::new(run.data, run.base.clone(), run.dataset, run.opts)?
    };
    while !trainer.finished() {
        trainer.run_epoch(run.data, on_event)?;
        trainer.save(storage, run.out)?;
    }
    if trainer.epochs_done() > 0 && !trainer.record.training.finished {
        trainer.record.training.finished = true;
        trainer.save(storage, run.out)?;
    }
    Ok(trainer.record)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labelled vectors: `per` vectors for each of `labels` labels in
    /// `dim` dimensions; the label shows only in the first two
    /// dimensions, under noise in all the others.
    fn clusters(labels: usize, per: usize, dim: usize) -> (Vec<f32>, Vec<u32>, Vec<String>) {
        let mut v = Vec::new();
        let mut l = Vec::new();
        for c in 0..labels {
            let angle = c as f64 * std::f64::consts::TAU / labels as f64;
            for i in 0..per {
                let noise = values(7, &format!("{c}/{i}"), dim, -3.0, 3.0);
                for (d, n) in noise.into_iter().enumerate() {
                    v.push(match d {
                        0 => angle.cos() as f32 + 0.1 * n,
                        1 => angle.sin() as f32 + 0.1 * n,
                        _ => n,
                    });
                }
                l.push(c as u32);
            }
        }
        (v, l, (0..labels).map(|c| format!("c{c}")).collect())
    }

    fn view<'a>(v: &'a [f32], l: &'a [u32], n: &'a [String], dim: usize) -> LabelledVectors<'a> {
        LabelledVectors {
            vectors: v,
            dim,
            labels: l,
            names: n,
        }
    }

    fn base() -> HeadBase {
        HeadBase {
            spec: "test".into(),
            weights: None,
            identity: None,
        }
    }

    fn opts(epochs: usize) -> HeadOptions {
        HeadOptions {
            hidden: vec![32],
            output_dim: 8,
            max_epochs: epochs,
            batch_size: 64,
            patience: 100,
            ..HeadOptions::default()
        }
    }

    fn fit_in(
        data: LabelledVectors<'_>,
        o: &HeadOptions,
        out: &Path,
        resume: bool,
    ) -> Result<HeadRecord> {
        let b = base();
        let run = Run {
            data,
            base: &b,
            dataset: "c",
            opts: o,
            out,
            resume,
        };
        fit(run, &imgsim_common::LocalFs, &mut |_| {})
    }

    fn digest_of(dir: &Path) -> String {
        checkpoint::load(dir).unwrap().digest
    }

    #[test]
    fn the_loss_is_lower_when_same_label_vectors_agree() {
        let dev = &Device::Cpu;
        // Two labels; same-label vectors equal, labels orthogonal.
        let agree = Tensor::new(&[[1f32, 0.], [1., 0.], [0., 1.], [0., 1.]], dev).unwrap();
        let labels = [0, 0, 1, 1];
        let good = supcon_loss(&agree, &labels, 0.5)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // By hand: an anchor's positive has similarity 1/0.5 = 2, its two
        // negatives 0: loss = -log(e² / (e² + 2)).
        let by_hand = -((2f32).exp() / ((2f32).exp() + 2.0)).ln();
        assert!((good - by_hand).abs() < 1e-5, "{good} vs {by_hand}");
        let bad = supcon_loss(&agree, &[0, 1, 0, 1], 0.5)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(bad > good + 1.0, "{bad} should exceed {good}");
    }

    #[test]
    fn the_loss_needs_two_vectors_of_one_label() {
        let z = Tensor::new(&[[1f32, 0.], [0., 1.]], &Device::Cpu).unwrap();
        assert!(supcon_loss(&z, &[0, 1], 0.1).is_err());
    }

    #[test]
    fn the_split_is_stratified_seeded_and_keeps_one_for_training() {
        let labels: Vec<u32> = [0u32; 10].into_iter().chain([1; 5]).chain([2; 1]).collect();
        let (train, val) = split(&labels, 0.2, 3);
        assert_eq!(train.len() + val.len(), labels.len());
        let count = |idx: &[usize], l: u32| idx.iter().filter(|&&i| labels[i] == l).count();
        assert_eq!((count(&val, 0), count(&val, 1), count(&val, 2)), (2, 1, 0));
        assert_eq!(count(&train, 2), 1);
        assert_eq!(split(&labels, 0.2, 3), (train.clone(), val.clone()));
        assert_ne!(split(&labels, 0.2, 4).1, val);
    }

    #[test]
    fn a_head_learns_what_the_labels_say_and_early_stopping_keeps_the_best() {
        let (v, l, n) = clusters(4, 40, 16);
        let data = view(&v, &l, &n, 16);
        let mut o = opts(40);
        o.learning_rate = 1e-2;
        let mut t = HeadTrainer::new(data, base(), "clusters", &o).unwrap();
        let mut first = None;
        while !t.finished() {
            let s = t.run_epoch(data, &mut |_| {}).unwrap();
            first.get_or_insert(s.val_precision_at_10.unwrap());
        }
        let best = t.record().training.best_val_precision_at_10.unwrap();
        // Noise dominates the raw vectors (14 of 16 dimensions); the head
        // must find the two that carry the label (0.86 when written).
        assert!(best > 0.75, "held-out precision@10 {best} (chance: 0.25)");
        assert!(best >= first.unwrap());
        let h = &t.record().training.history;
        assert_eq!(
            h[t.record().training.best_epoch - 1].val_precision_at_10,
            Some(best)
        );
    }

    #[test]
    fn training_is_deterministic_and_resuming_equals_not_stopping() {
        let (v, l, n) = clusters(3, 20, 6);
        let data = view(&v, &l, &n, 6);
        let storage = imgsim_common::LocalFs;
        let whole = tempfile::tempdir().unwrap();
        let again = tempfile::tempdir().unwrap();
        let parts = tempfile::tempdir().unwrap();
        for dir in [whole.path(), again.path()] {
            fit_in(data, &opts(4), dir, false).unwrap();
        }
        assert_eq!(digest_of(whole.path()), digest_of(again.path()));
        fit_in(data, &opts(2), parts.path(), false).unwrap();
        // The schedule follows max_epochs: resuming to 4 continues as a
        // 4-epoch run would only if it was one from the start.
        let mut t = HeadTrainer::new(data, base(), "c", &opts(4)).unwrap();
        for _ in 0..2 {
            t.run_epoch(data, &mut |_| {}).unwrap();
        }
        t.save(&storage, parts.path()).unwrap();
        let r = fit_in(data, &opts(4), parts.path(), true).unwrap();
        assert_eq!(r.training.history.len(), 4);
        assert!(r.training.finished);
        assert_eq!(digest_of(whole.path()), digest_of(parts.path()));
        let last_whole = checkpoint::read(&whole.path().join(LAST_FILE)).unwrap().0;
        assert_eq!(last_whole.training.history.len(), 4);
    }

    #[test]
    fn resuming_refuses_other_data_or_options() {
        let (v, l, n) = clusters(3, 10, 4);
        let data = view(&v, &l, &n, 4);
        let dir = tempfile::tempdir().unwrap();
        fit_in(data, &opts(1), dir.path(), false).unwrap();
        let fewer = view(&v[..4 * 29], &l[..29], &n, 4);
        let e = HeadTrainer::resume(dir.path(), fewer, &base(), &opts(2))
            .err()
            .unwrap();
        assert!(e.to_string().contains("29"), "{e}");
        let mut other = opts(2);
        other.seed = 9;
        assert!(HeadTrainer::resume(dir.path(), data, &base(), &other).is_err());
        let mut b = base();
        b.spec = "other".into();
        let e = HeadTrainer::resume(dir.path(), data, &b, &opts(2))
            .err()
            .unwrap();
        assert!(e.to_string().contains("other"), "{e}");
    }

    #[test]
    fn bad_labelled_vectors_are_refused_with_the_culprit_named() {
        let names = vec!["cats".to_string(), "dogs".to_string()];
        let one = view(&[0.0; 8], &[0, 0, 0, 0], &names, 2);
        let e = HeadTrainer::new(one, base(), "x", &opts(1)).err().unwrap();
        assert!(e.to_string().contains("only one label (`cats`)"), "{e}");
        let single = view(&[0.0; 6], &[0, 0, 1], &names, 2);
        let e = HeadTrainer::new(single, base(), "x", &opts(1))
            .err()
            .unwrap();
        assert!(e.to_string().contains("`dogs` has a single image"), "{e}");
        let nan = view(
            &[0.0, 1.0, f32::NAN, 0.0, 1.0, 1.0, 2.0, 2.0],
            &[0, 0, 1, 1],
            &names,
            2,
        );
        let e = HeadTrainer::new(nan, base(), "x", &opts(1)).err().unwrap();
        assert!(e.to_string().contains("vector 1"), "{e}");
        let ok = view(
            &[0.0, 1.0, 3.0, 0.0, 1.0, 1.0, 2.0, 2.0],
            &[0, 0, 1, 1],
            &names,
            2,
        );
        let mut o = opts(1);
        o.batch_size = 1;
        assert!(HeadTrainer::new(ok, base(), "x", &o).is_err());
    }

    #[test]
    fn a_head_on_another_base_is_refused() {
        let (v, l, n) = clusters(2, 6, 3);
        let dir = tempfile::tempdir().unwrap();
        fit_in(view(&v, &l, &n, 3), &opts(1), dir.path(), false).unwrap();
        let loaded = checkpoint::load(dir.path()).unwrap();
        assert_eq!(loaded.head.config().input_dim, 3);
        // Trained on features that are no image embedder's: it runs on
        // vectors but cannot embed images.
        let out = loaded.head.apply(&v).unwrap();
        assert_eq!(out.len(), 12 * 8);
        let norm: f32 = out[..8].iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}
