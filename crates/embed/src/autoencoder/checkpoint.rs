//! Autoencoder checkpoints: `model.safetensors` (the `VarMap`) and
//! `config.json` beside it (architecture, sizes, and the training state so
//! far, which makes training resumable), saved through the storage seam so
//! that an interrupted save never leaves a mix of two checkpoints.
//!
//! Two files cannot be replaced in one step, so the weights file is the
//! commit point: it carries a copy of its config in its safetensors
//! metadata, and `config.json` records the blake3 of the weights it was
//! written with. A save writes the weights first, then `config.json`. When
//! the two disagree (a save stopped between them), the weights' own copy of
//! the config is used: a reader sees the previous checkpoint or the new
//! one, whole. Otherwise `config.json` is what counts (so that an edited
//! one is honoured, and checkpoints written before this scheme still load).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use imgsim_common::Storage;
use serde::{Deserialize, Serialize};

use super::{Autoencoder, AutoencoderConfig};
use crate::error::{EmbedError, Result};

/// File name of the weights inside a checkpoint folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the configuration inside a checkpoint folder.
pub const CONFIG_FILE: &str = "config.json";
/// Key of the weights file's safetensors metadata that holds a copy of the
/// checkpoint's config (JSON of [`CheckpointConfig`]).
pub const CONFIG_METADATA_KEY: &str = "imgsim.checkpoint_config";
/// Key in `config.json` holding the blake3 (hex) of the weights file it
/// was saved with.
pub const WEIGHTS_DIGEST_KEY: &str = "weights_blake3";

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch (reconstruction: MSE per pixel;
    /// contrastive: NT-Xent per view).
    pub loss: f64,
    /// Training throughput.
    pub images_per_s: f64,
    /// Wall time of the epoch.
    pub seconds: f64,
}

/// How the model was trained so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrainingState {
    /// What it was trained on (`fashion-mnist`, a folder...).
    pub dataset: String,
    /// Number of training images.
    pub images: usize,
    /// Seed of initialisation, shuffling and noise.
    pub seed: u64,
    /// Mini-batch size.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Standard deviation of the Gaussian noise added to inputs (0: off).
    pub noise_std: f32,
    /// Per-epoch history; its length is the number of epochs done.
    pub history: Vec<EpochStats>,
    /// Contrastive training's own settings (absent for reconstruction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contrastive: Option<super::contrastive::ContrastiveTraining>,
}

/// The JSON file beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointConfig {
    /// The model's shape.
    pub model: AutoencoderConfig,
    /// The training so far.
    pub training: TrainingState,
}

/// A loaded checkpoint.
pub struct Checkpoint {
    /// The model, ready to run.
    pub model: Autoencoder,
    /// Its shape.
    pub config: AutoencoderConfig,
    /// Its training record.
    pub training: TrainingState,
    /// blake3 of the weights file (first 16 hex digits).
    pub digest: String,
    /// The weights file.
    pub weights_path: PathBuf,
}

/// The weights and config paths for a checkpoint given as its folder or
/// its `.safetensors` file.
pub fn paths(path: &Path) -> (PathBuf, PathBuf) {
    if path.is_dir() || path.extension().is_none_or(|e| e != "safetensors") {
        (path.join(WEIGHTS_FILE), path.join(CONFIG_FILE))
    } else {
        let dir = path.parent().unwrap_or(Path::new("."));
        (path.to_path_buf(), dir.join(CONFIG_FILE))
    }
}

/// What `config.json` holds besides the [`CheckpointConfig`].
#[derive(Deserialize)]
struct Binding {
    /// blake3 of the weights written with this config ([`WEIGHTS_DIGEST_KEY`]; absent in
    /// checkpoints saved before it was recorded).
    #[serde(default, rename = "weights_blake3")]
    weights: Option<String>,
}

/// `config.json` as written: the config and the weights' digest.
#[derive(Serialize)]
struct ConfigFile<'a> {
    #[serde(flatten)]
    config: &'a CheckpointConfig,
    #[serde(rename = "weights_blake3")]
    weights: &'a str,
}

/// A checkpoint's files, read once: the config that goes with the weights,
/// and the weights' bytes.
pub(super) struct Parts {
    /// The config (from `config.json`, or from the weights after an
    /// interrupted save; see the module documentation).
    pub config: CheckpointConfig,
    /// The weights file's content.
    pub bytes: Vec<u8>,
    /// The weights file.
    pub weights_path: PathBuf,
}

/// The config a safetensors file carries in its metadata, if any; an error
/// (the reason) when the file is not valid safetensors or its copy is damaged.
fn embedded_config(bytes: &[u8]) -> std::result::Result<Option<CheckpointConfig>, String> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| format!("not a valid safetensors file ({e})"))?;
    match meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(CONFIG_METADATA_KEY))
    {
        None => Ok(None),
        Some(json) => serde_json::from_str(json)
            .map(Some)
            .map_err(|e| format!("damaged config in the weights' metadata: {e}")),
    }
}

/// Reads a checkpoint's config and weights, choosing the config that goes
/// with the weights (see the module documentation), validated.
pub(super) fn read_parts(path: &Path) -> Result<Parts> {
    let (weights_path, cfg_path) = paths(path);
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |reason: String| EmbedError::Checkpoint {
            path: path.clone(),
            reason,
        }
    };
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| at(&cfg_path)(format!("cannot read: {e}")))?;
    let file_cfg: CheckpointConfig = serde_json::from_str(&text)
        .map_err(|e| at(&cfg_path)(format!("not an imgsim autoencoder config: {e}")))?;
    let bound = serde_json::from_str::<Binding>(&text)
        .ok()
        .and_then(|b| b.weights);
    let bytes =
        std::fs::read(&weights_path).map_err(|e| at(&weights_path)(format!("cannot read: {e}")))?;
    let digest = blake3::hash(&bytes).to_hex();
    let (config, from) = if bound.as_deref() == Some(digest.as_str()) {
        (file_cfg, &cfg_path)
    } else {
        match embedded_config(&bytes).map_err(at(&weights_path))? {
            // The weights were saved after this config.json: a save
            // stopped between its two files. The weights' copy is theirs.
            Some(embedded) => (embedded, &weights_path),
            // Weights from elsewhere, or a checkpoint from before the
            // copy was kept: config.json is all there is.
            None => (file_cfg, &cfg_path),
        }
    };
    config
        .model
        .validate()
        .map_err(|e| at(from)(e.to_string()))?;
    Ok(Parts {
        config,
        bytes,
        weights_path,
    })
}

/// Reads the config of a checkpoint: `config.json`, or, if a save was
/// interrupted after writing the weights, the copy the weights carry. (The
/// weights file is read too, to tell which.)
pub fn read_config(path: &Path) -> Result<CheckpointConfig> {
    read_parts(path).map(|p| p.config)
}

/// Loads a checkpoint (folder or `.safetensors` file with `config.json` beside it).
pub fn load(path: &Path) -> Result<Checkpoint> {
    let Parts {
        config: cfg,
        bytes,
        weights_path,
    } = read_parts(path)?;
    let err = |reason: String| EmbedError::Checkpoint {
        path: weights_path.clone(),
        reason,
    };
    if cfg.model.objective != super::Objective::Reconstruction {
        return Err(err(format!(
            "a {} checkpoint, not a reconstruction autoencoder (load it with `autoencoder::load_embedder`)",
            cfg.model.objective.name()
        )));
    }
    let digest = blake3::hash(&bytes).to_hex()[..16].to_string();
    let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)
        .map_err(|e| err(format!("not a valid safetensors file ({e})")))?;
    let model = Autoencoder::new(&cfg.model, vb).map_err(|e| {
        err(format!(
            "does not fit the architecture in {CONFIG_FILE} ({:?}, dim {}): {e}",
            cfg.model.widths, cfg.model.dim
        ))
    })?;
    // Run one input to catch anything the builder did not (it is cheap).
    let s = cfg.model.input_size;
    let probe =
        candle_core::Tensor::zeros((1, cfg.model.channels, s, s), DType::F32, &Device::Cpu)?;
    model
        .reconstruct(&probe)
        .map_err(|e| err(format!("weights do not run: {e}")))?;
    Ok(Checkpoint {
        model,
        config: cfg.model,
        training: cfg.training,
        digest,
        weights_path,
    })
}

/// Writes `config` and the variables of `varmap` into folder `dir` on the
/// local file system (see [`save_with`]).
pub fn save(dir: &Path, varmap: &candle_nn::VarMap, config: &CheckpointConfig) -> Result<()> {
    save_with(&*imgsim_common::local(), dir, varmap, config)
}

/// Writes `config` and the variables of `varmap` into folder `dir` through
/// `storage`: the weights (with a copy of `config` in their metadata)
/// first, then `config.json` with the weights' digest, each durably and
/// atomically. A save that fails at any step leaves a loadable checkpoint:
/// the previous one, or (once the weights are in place) the new one.
pub fn save_with(
    storage: &dyn Storage,
    dir: &Path,
    varmap: &candle_nn::VarMap,
    config: &CheckpointConfig,
) -> Result<()> {
    let w = dir.join(WEIGHTS_FILE);
    let c = dir.join(CONFIG_FILE);
    let unserialisable = |path: &Path, reason: String| EmbedError::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("cannot serialise: {reason}"),
    };
    let compact = serde_json::to_string(config).map_err(|e| unserialisable(&c, e.to_string()))?;
    let bytes = {
        let vars = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
        let tensors: Vec<(&String, Tensor)> = vars
            .iter()
            .map(|(name, var)| (name, var.as_tensor().clone()))
            .collect();
        let meta = HashMap::from([(CONFIG_METADATA_KEY.to_string(), compact)]);
        safetensors::serialize(tensors, Some(meta))
            .map_err(|e| unserialisable(&w, e.to_string()))?
    };
    let digest = blake3::hash(&bytes).to_hex();
    let json = serde_json::to_string_pretty(&ConfigFile {
        config,
        weights: digest.as_str(),
    })
    .map_err(|e| unserialisable(&c, e.to_string()))?;
    let write = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EmbedError::Write { path, source }
    };
    storage.create_dir_all(dir).map_err(write(dir))?;
    storage.write(&w, &bytes).map_err(write(&w))?;
    storage.write(&c, json.as_bytes()).map_err(write(&c))?;
    Ok(())
}
