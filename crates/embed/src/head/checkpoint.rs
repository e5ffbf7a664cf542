//! Head checkpoints: a folder with `head.safetensors` (the best weights so
//! far, with the whole [`HeadRecord`] in its safetensors metadata),
//! `config.json` (the same record, readable; written after the weights) and
//! `last.safetensors` (the latest epoch's weights and optimiser moments,
//! from which training resumes).
//!
//! Each file is written durably and atomically through the storage seam.
//! The weights files are self-describing, so `config.json` is a readable
//! copy and never the commit point: a save stopped at any step leaves the
//! previous head or the new one, whole.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use imgsim_common::Storage;
use serde::{Deserialize, Serialize};

use super::{Head, HeadBase, HeadConfig, INPUT_MEAN, INPUT_SCALE};
use crate::error::{EmbedError, Result};

/// The best weights.
pub const WEIGHTS_FILE: &str = "head.safetensors";
/// The readable record.
pub const CONFIG_FILE: &str = "config.json";
/// The latest epoch, to resume from.
pub const LAST_FILE: &str = "last.safetensors";
/// Safetensors metadata key of the [`HeadRecord`] (JSON).
pub const RECORD_KEY: &str = "imgsim.head";

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadEpoch {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f64,
    /// precision@10 of the held-out vectors searched among the training
    /// vectors (`None` without a held-out split).
    pub val_precision_at_10: Option<f64>,
    /// Training samples per second (validation excluded).
    pub samples_per_s: f64,
    /// Wall time of the epoch, validation included.
    pub seconds: f64,
}

/// How a head was trained so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HeadTraining {
    /// What it was trained on (a folder, `fashion-mnist`...).
    pub dataset: String,
    /// Label names, by label number.
    pub labels: Vec<String>,
    /// Training vectors.
    pub train_samples: usize,
    /// Held-out vectors.
    pub val_samples: usize,
    /// Share held out.
    pub val_fraction: f64,
    /// Seed of initialisation, split and shuffling.
    pub seed: u64,
    /// Mini-batch size.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Temperature of the supervised contrastive loss.
    pub temperature: f64,
    /// Epochs at most.
    pub max_epochs: usize,
    /// Epochs without a better held-out precision before stopping.
    pub patience: usize,
    /// precision@10 of the held-out base vectors among the training ones,
    /// before any training (by the base's own metric): what the head has to
    /// beat.
    #[serde(default)]
    pub base_val_precision_at_10: Option<f64>,
    /// The epoch whose weights are in [`WEIGHTS_FILE`].
    pub best_epoch: usize,
    /// Its held-out precision@10.
    pub best_val_precision_at_10: Option<f64>,
    /// Whether training has finished (early stop or last epoch).
    pub finished: bool,
    /// Per-epoch history; its length is the number of epochs done.
    pub history: Vec<HeadEpoch>,
}

/// Everything a head file says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadRecord {
    /// The head's shape.
    pub model: HeadConfig,
    /// Its base.
    pub base: HeadBase,
    /// Its training.
    pub training: HeadTraining,
}

/// A loaded head.
pub struct LoadedHead {
    /// The head, ready to run.
    pub head: Head,
    /// Its record.
    pub record: HeadRecord,
    /// blake3 (16 hex digits) of its tensors, by name: the identity of the
    /// weights, whatever the record says.
    pub digest: String,
    /// The weights file.
    pub weights_path: PathBuf,
}

/// The weights file of a head given as its folder or its `.safetensors` file.
pub fn weights_path(path: &Path) -> PathBuf {
    if path.extension().is_some_and(|e| e == "safetensors") && !path.is_dir() {
        path.to_path_buf()
    } else {
        path.join(WEIGHTS_FILE)
    }
}

/// The record and tensors of a head weights file (also [`LAST_FILE`]).
pub(crate) fn read(path: &Path) -> Result<(HeadRecord, HashMap<String, Tensor>)> {
    let err = |reason: String| EmbedError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| err(format!("not a valid safetensors file ({e})")))?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(RECORD_KEY))
        .ok_or_else(|| err("not an imgsim head (no record in its metadata)".into()))?;
    let record: HeadRecord =
        serde_json::from_str(json).map_err(|e| err(format!("damaged head record: {e}")))?;
    record.model.validate().map_err(|e| err(e.to_string()))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| err(format!("not a valid safetensors file ({e})")))?;
    Ok((record, tensors))
}

/// blake3 (16 hex digits) of the head's own tensors (layers and input
/// standardisation), in name order.
pub(crate) fn digest(cfg: &HeadConfig, tensors: &HashMap<String, Tensor>) -> Result<String> {
    let mut h = blake3::Hasher::new();
    for name in tensor_names(cfg) {
        let t = tensors
            .get(&name)
            .ok_or_else(|| EmbedError::MissingTensor {
                source_name: "head".into(),
                name: name.clone(),
                model: "a projection head",
            })?;
        h.update(name.as_bytes());
        for v in t.flatten_all()?.to_vec1::<f32>()? {
            h.update(&v.to_le_bytes());
        }
    }
    Ok(h.finalize().to_hex()[..16].to_string())
}

/// The names of a head's tensors.
pub(crate) fn tensor_names(cfg: &HeadConfig) -> Vec<String> {
    let mut names = vec![INPUT_MEAN.to_string(), INPUT_SCALE.to_string()];
    for i in 0..cfg.layers().len() {
        names.push(format!("{}.weight", super::layer_name(i)));
        names.push(format!("{}.bias", super::layer_name(i)));
    }
    names
}

/// Loads a head (its folder or its `.safetensors` file).
pub fn load(path: &Path) -> Result<LoadedHead> {
    let weights_path = weights_path(path);
    let (record, tensors) = read(&weights_path)?;
    let err = |reason: String| EmbedError::Checkpoint {
        path: weights_path.clone(),
        reason,
    };
    let digest = digest(&record.model, &tensors).map_err(|e| err(e.to_string()))?;
    let vec_of = |name: &str| -> Result<Vec<f32>> {
        let t = tensors
            .get(name)
            .ok_or_else(|| err(format!("no tensor `{name}`")))?;
        Ok(t.flatten_all()?.to_vec1::<f32>()?)
    };
    let mean = vec_of(INPUT_MEAN)?;
    let scale = vec_of(INPUT_SCALE)?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let head = Head::new(&record.model, vb, &mean, &scale).map_err(|e| err(e.to_string()))?;
    Ok(LoadedHead {
        head,
        record,
        digest,
        weights_path,
    })
}

/// Writes `tensors` with `record` in their metadata to `path`, durably and
/// atomically.
pub(crate) fn write_tensors(
    storage: &dyn Storage,
    path: &Path,
    tensors: &[(String, Tensor)],
    record: &HeadRecord,
) -> Result<()> {
    let unserialisable = |reason: String| EmbedError::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("cannot serialise: {reason}"),
    };
    let json = serde_json::to_string(record).map_err(|e| unserialisable(e.to_string()))?;
    let meta = HashMap::from([(RECORD_KEY.to_string(), json)]);
    let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))
        .map_err(|e| unserialisable(e.to_string()))?;
    storage
        .write(path, &bytes)
        .map_err(|source| EmbedError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes `config.json` in `dir`: the record and the weights' digest.
pub(crate) fn write_config(
    storage: &dyn Storage,
    dir: &Path,
    record: &HeadRecord,
    digest: &str,
) -> Result<()> {
    #[derive(Serialize)]
    struct ConfigFile<'a> {
        #[serde(flatten)]
        record: &'a HeadRecord,
        weights_digest: &'a str,
    }
    let path = dir.join(CONFIG_FILE);
    let json = serde_json::to_string_pretty(&ConfigFile {
        record,
        weights_digest: digest,
    })
    .map_err(|e| EmbedError::Checkpoint {
        path: path.clone(),
        reason: format!("cannot serialise: {e}"),
    })?;
    storage
        .write(&path, json.as_bytes())
        .map_err(|source| EmbedError::Write { path, source })
}
