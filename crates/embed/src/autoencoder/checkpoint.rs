//! Autoencoder checkpoints: `model.safetensors` (the `VarMap`) and
//! `config.json` beside it (architecture, sizes, and the training state so
//! far, which makes training resumable).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::{Autoencoder, AutoencoderConfig};
use crate::error::{EmbedError, Result};

/// File name of the weights inside a checkpoint folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the configuration inside a checkpoint folder.
pub const CONFIG_FILE: &str = "config.json";

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss (MSE per pixel) over the epoch.
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

/// Reads just the JSON config of a checkpoint.
pub fn read_config(path: &Path) -> Result<CheckpointConfig> {
    let (_, cfg_path) = paths(path);
    let err = |reason: String| EmbedError::Checkpoint {
        path: cfg_path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| err(format!("cannot read: {e}")))?;
    let cfg: CheckpointConfig = serde_json::from_str(&text)
        .map_err(|e| err(format!("not an imgsim autoencoder config: {e}")))?;
    cfg.model.validate().map_err(|e| err(e.to_string()))?;
    Ok(cfg)
}

/// Loads a checkpoint (folder or `.safetensors` file with `config.json` beside it).
pub fn load(path: &Path) -> Result<Checkpoint> {
    let cfg = read_config(path)?;
    let (weights_path, _) = paths(path);
    let err = |reason: String| EmbedError::Checkpoint {
        path: weights_path.clone(),
        reason,
    };
    let bytes = std::fs::read(&weights_path).map_err(|e| err(format!("cannot read: {e}")))?;
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

/// Writes `config` and the variables of `varmap` into folder `dir`
/// atomically (temporary files renamed into place), so that a crash mid-save
/// leaves the previous checkpoint intact.
pub fn save(dir: &Path, varmap: &candle_nn::VarMap, config: &CheckpointConfig) -> Result<()> {
    let io = |path: &Path, source: std::io::Error| EmbedError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let w = dir.join(WEIGHTS_FILE);
    let c = dir.join(CONFIG_FILE);
    let w_tmp = dir.join(format!("{WEIGHTS_FILE}.tmp"));
    let c_tmp = dir.join(format!("{CONFIG_FILE}.tmp"));
    varmap.save(&w_tmp).map_err(|e| EmbedError::Checkpoint {
        path: w_tmp.clone(),
        reason: format!("cannot write: {e}"),
    })?;
    let json = serde_json::to_string_pretty(config).expect("config serialises");
    std::fs::write(&c_tmp, json).map_err(|e| io(&c_tmp, e))?;
    for (tmp, fin) in [(&w_tmp, &w), (&c_tmp, &c)] {
        std::fs::File::open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(tmp, e))?;
        std::fs::rename(tmp, fin).map_err(|e| io(fin, e))?;
    }
    Ok(())
}
