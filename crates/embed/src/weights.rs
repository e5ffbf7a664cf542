//! Where a model's weights come from: a local safetensors file, the Hugging
//! Face Hub (through `hf-hub` and its cache, as candle's examples do), or the
//! deterministic synthetic generator (tests and benchmarks).
//!
//! [`Weights`] hands tensors to the model builders by name, checking each
//! shape and converting f16/bf16/f64 checkpoints to f32, with errors that
//! name the file, the tensor and the model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{EmbedError, Result};
use crate::synthetic;

/// Where to get weights from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum WeightsSource {
    /// A local `.safetensors` file.
    File {
        /// The file.
        path: PathBuf,
    },
    /// A file in a Hugging Face Hub model repository (downloaded once into
    /// the hub cache; offline, the cache alone is used).
    Hub {
        /// Repository id, e.g. `timm/resnet50.a1_in1k`.
        repo: String,
        /// File in the repository, e.g. `model.safetensors`.
        file: String,
    },
    /// Deterministic pseudo-random weights (see [`crate::synthetic`]): for
    /// tests and throughput benchmarks, useless for search quality.
    Synthetic {
        /// Generator seed.
        seed: u64,
    },
}

impl WeightsSource {
    /// Parses the command-line form: `synthetic:SEED`, `hf:REPO[:FILE]`, or
    /// a path.
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(seed) = s.strip_prefix("synthetic:") {
            let seed = seed
                .parse()
                .map_err(|_| EmbedError::Input(format!("bad synthetic seed in `{s}`")))?;
            return Ok(WeightsSource::Synthetic { seed });
        }
        if let Some(rest) = s.strip_prefix("hf:") {
            let (repo, file) = match rest.split_once(':') {
                Some((r, f)) => (r.to_string(), f.to_string()),
                None => (rest.to_string(), "model.safetensors".to_string()),
            };
            if repo.is_empty() || file.is_empty() {
                return Err(EmbedError::Input(format!(
                    "`{s}`: expected hf:OWNER/REPO[:FILE]"
                )));
            }
            return Ok(WeightsSource::Hub { repo, file });
        }
        Ok(WeightsSource::File { path: s.into() })
    }

    /// Human-readable origin, used in errors and reports.
    pub fn describe(&self) -> String {
        match self {
            WeightsSource::File { path } => path.display().to_string(),
            WeightsSource::Hub { repo, file } => format!("hf:{repo}:{file}"),
            WeightsSource::Synthetic { seed } => format!("synthetic:{seed}"),
        }
    }

    /// Resolves the source to loaded weights.
    pub fn load(&self) -> Result<Weights> {
        match self {
            WeightsSource::File { path } => Weights::from_file(path),
            WeightsSource::Hub { repo, file } => {
                let path = hub_file(repo, file)?;
                let mut w = Weights::from_file(&path)?;
                w.origin = self.describe();
                Ok(w)
            }
            WeightsSource::Synthetic { seed } => Ok(Weights::synthetic(*seed)),
        }
    }
}

/// Finds `file` of `repo` in the Hugging Face cache, downloading it when
/// online. `HF_HUB_OFFLINE=1` consults the cache only.
pub fn hub_file(repo: &str, file: &str) -> Result<PathBuf> {
    let err = |reason: String| EmbedError::Hub {
        repo: repo.to_string(),
        file: file.to_string(),
        reason,
    };
    let cache = hf_hub::Cache::from_env();
    if let Some(p) = cache.model(repo.to_string()).get(file) {
        return Ok(p);
    }
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v == "true");
    if offline {
        return Err(err("not in the cache and HF_HUB_OFFLINE is set".into()));
    }
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .map_err(|e| err(e.to_string()))?;
    api.model(repo.to_string())
        .get(file)
        .map_err(|e| err(e.to_string()))
}

/// Names and shapes requested from recording synthetic weights.
type Recording = std::sync::Mutex<Vec<(String, Vec<usize>)>>;

enum Store {
    Tensors(HashMap<String, Tensor>),
    Synthetic(u64, Option<Recording>),
}

/// Loaded weights: tensors by name, checked against the shapes a model asks for.
pub struct Weights {
    store: Store,
    origin: String,
    digest: String,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights")
            .field("origin", &self.origin)
            .field("digest", &self.digest)
            .finish()
    }
}

impl Weights {
    /// Reads a safetensors file (any float dtype; converted to f32 on use).
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| EmbedError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        if bytes.is_empty() {
            return Err(EmbedError::Weights {
                source_name: origin,
                reason: "empty file".into(),
            });
        }
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| {
            EmbedError::Weights {
                source_name: origin.clone(),
                reason: format!("not a valid safetensors file ({e})"),
            }
        })?;
        let digest = blake3::hash(&bytes).to_hex()[..16].to_string();
        Ok(Weights {
            store: Store::Tensors(tensors),
            origin,
            digest,
        })
    }

    /// Weights from tensors already in memory (`origin` names them in errors).
    pub fn from_tensors(tensors: HashMap<String, Tensor>, origin: &str) -> Self {
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        let mut h = blake3::Hasher::new();
        for n in names {
            h.update(n.as_bytes());
            if let Ok(v) = tensors[n]
                .to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
            {
                h.update(bytemuck::cast_slice(&v));
            }
        }
        Weights {
            store: Store::Tensors(tensors),
            origin: origin.to_string(),
            digest: h.finalize().to_hex()[..16].to_string(),
        }
    }

    /// The deterministic synthetic weights for `seed`.
    pub fn synthetic(seed: u64) -> Self {
        Weights {
            store: Store::Synthetic(seed, None),
            origin: format!("synthetic:{seed}"),
            digest: format!("synthetic-{seed}"),
        }
    }

    /// Synthetic weights that remember every tensor a model asks for, so
    /// that [`Weights::recorded_tensors`] can write them out as a
    /// checkpoint (for tests and for feeding the same weights to PyTorch).
    pub fn synthetic_recording(seed: u64) -> Self {
        Weights {
            store: Store::Synthetic(seed, Some(std::sync::Mutex::new(Vec::new()))),
            ..Weights::synthetic(seed)
        }
    }

    /// The tensors requested so far from [`Weights::synthetic_recording`]
    /// weights, by name (empty for other weights).
    pub fn recorded_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        if let Store::Synthetic(seed, Some(rec)) = &self.store {
            for (name, shape) in rec.lock().expect("recording lock").iter() {
                out.insert(
                    name.clone(),
                    Tensor::from_vec(
                        synthetic::tensor_values(*seed, name, shape),
                        shape.as_slice(),
                        &Device::Cpu,
                    )?,
                );
            }
        }
        Ok(out)
    }

    /// Whether these are generated weights rather than a checkpoint.
    pub fn is_synthetic(&self) -> bool {
        matches!(self.store, Store::Synthetic(..))
    }

    /// The generator seed of synthetic weights.
    pub(crate) fn synthetic_seed(&self) -> Option<u64> {
        match &self.store {
            Store::Synthetic(seed, _) => Some(*seed),
            Store::Tensors(_) => None,
        }
    }

    /// The stored tensor `name` as it is in the file (None for synthetic
    /// weights or a missing name).
    pub(crate) fn tensor(&self, name: &str) -> Option<Tensor> {
        match &self.store {
            Store::Tensors(t) => t.get(name).cloned(),
            Store::Synthetic(..) => None,
        }
    }

    /// Other tensors standing for these weights (a translation to other
    /// names): same origin and digest.
    pub(crate) fn derived(&self, tensors: HashMap<String, Tensor>) -> Weights {
        Weights {
            store: Store::Tensors(tensors),
            origin: self.origin.clone(),
            digest: self.digest.clone(),
        }
    }

    /// Where these weights came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// A short content digest (blake3 of the file), recorded in an
    /// embedder's identity so that a collection is never queried with other weights.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Whether the weights hold a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        match &self.store {
            Store::Tensors(t) => t.contains_key(name),
            Store::Synthetic(..) => true,
        }
    }

    /// The shape of tensor `name` as stored, if present (`None` for
    /// synthetic weights, whose shapes are whatever the model asks for).
    pub fn dims(&self, name: &str) -> Option<Vec<usize>> {
        match &self.store {
            Store::Tensors(t) => t.get(name).map(|t| t.dims().to_vec()),
            Store::Synthetic(..) => None,
        }
    }

    /// The tensor `name`, which must have `shape`, as f32 on the CPU.
    pub fn get(&self, model: &'static str, name: &str, shape: &[usize]) -> Result<Tensor> {
        match &self.store {
            Store::Synthetic(seed, rec) => {
                if let Some(rec) = rec {
                    rec.lock()
                        .expect("recording lock")
                        .push((name.to_string(), shape.to_vec()));
                }
                Ok(Tensor::from_vec(
                    synthetic::tensor_values(*seed, name, shape),
                    shape,
                    &Device::Cpu,
                )?)
            }
            Store::Tensors(map) => {
                let t = map.get(name).ok_or_else(|| EmbedError::MissingTensor {
                    source_name: self.origin.clone(),
                    name: name.to_string(),
                    model,
                })?;
                if t.dims() != shape {
                    return Err(EmbedError::TensorShape {
                        source_name: self.origin.clone(),
                        name: name.to_string(),
                        model,
                        expected: shape.to_vec(),
                        found: t.dims().to_vec(),
                    });
                }
                if !t.dtype().is_float() {
                    return Err(EmbedError::Weights {
                        source_name: self.origin.clone(),
                        reason: format!("tensor `{name}` has dtype {:?}, not float", t.dtype()),
                    });
                }
                Ok(t.to_dtype(DType::F32)?)
            }
        }
    }

    /// Like [`Weights::get`], as a host vector.
    pub fn get_vec(&self, model: &'static str, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        Ok(self
            .get(model, name, shape)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        assert_eq!(
            WeightsSource::parse("synthetic:7").unwrap(),
            WeightsSource::Synthetic { seed: 7 }
        );
        assert_eq!(
            WeightsSource::parse("hf:timm/resnet18.a1_in1k").unwrap(),
            WeightsSource::Hub {
                repo: "timm/resnet18.a1_in1k".into(),
                file: "model.safetensors".into()
            }
        );
        assert!(WeightsSource::parse("synthetic:x").is_err());
        assert!(matches!(
            WeightsSource::parse("w.safetensors").unwrap(),
            WeightsSource::File { .. }
        ));
    }
}
