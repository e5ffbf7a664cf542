//! Settings: built-in defaults < config file < environment < flags.

use std::path::{Path, PathBuf};

use imgsim_index::{HnswParams, Metric, OpenOptions};
use serde::{Deserialize, Serialize};

/// The commented default configuration, shipped in the binary.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Errors loading settings.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading the file.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Parsing it.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file (or the environment variable).
        path: String,
        /// Parser message.
        message: String,
    },
}

/// `[index]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexSettings {
    /// Distance metric.
    pub metric: Metric,
    /// HNSW M.
    pub m: usize,
    /// HNSW ef_construction.
    pub ef_construction: usize,
    /// Default ef_search.
    pub ef_search: usize,
}

impl IndexSettings {
    /// As HNSW parameters.
    pub fn params(&self) -> HnswParams {
        HnswParams {
            m: self.m,
            ef_construction: self.ef_construction,
            ef_search: self.ef_search,
        }
    }
}

/// `[bench]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchSettings {
    /// Output folder.
    pub out_dir: PathBuf,
    /// ef sweep.
    pub ef: Vec<usize>,
    /// Timed passes per ef.
    pub runs: usize,
    /// Fashion-MNIST folder.
    pub fashion_mnist_dir: PathBuf,
}

/// `[embed]`: how images become vectors, and how indexing runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedSettings {
    /// `auto`, `backbone` or `autoencoder`.
    pub model: EmbedModel,
    /// The pretrained backbone.
    pub backbone: String,
    /// Its weights ("" = the backbone's Hugging Face Hub default).
    pub weights: String,
    /// Autoencoder bottleneck size.
    pub autoencoder_dim: usize,
    /// Autoencoder epochs (0 = chosen from the number of images).
    pub autoencoder_epochs: usize,
    /// Images an autoencoder is trained on, at most.
    pub autoencoder_max_images: usize,
    /// Images per model call and per commit.
    pub batch_size: usize,
    /// Threads decoding images while the model runs (0 = one per core).
    pub decode_threads: usize,
    /// Decode JPEGs at full size instead of DCT-scaled.
    pub exact_decode: bool,
}

/// `[embed] model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbedModel {
    /// The backbone if its weights can be had, else an autoencoder trained on the collection.
    Auto,
    /// Always the backbone.
    Backbone,
    /// Always an autoencoder trained on the collection.
    Autoencoder,
}

/// `[limits]`: what an input image may be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSettings {
    /// Largest width, pixels.
    pub max_width: u32,
    /// Largest height, pixels.
    pub max_height: u32,
    /// Largest decoded image, bytes.
    pub max_decoded_bytes: u64,
    /// Largest file, bytes.
    pub max_file_bytes: u64,
}

impl LimitsSettings {
    /// As decoder limits.
    pub fn image_limits(&self) -> imgsim_embed::ImageLimits {
        imgsim_embed::ImageLimits {
            max_width: self.max_width,
            max_height: self.max_height,
            max_alloc_bytes: self.max_decoded_bytes,
            max_file_bytes: self.max_file_bytes,
        }
    }
}

/// `[server]`: `imgsim serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on.
    pub bind: String,
    /// Key for write endpoints ("" = writes refused).
    pub api_key: String,
    /// Worker threads (0 = one per core).
    pub workers: usize,
    /// Requests allowed to use or wait for the workers; more get 503.
    pub queue: usize,
    /// Largest request body, bytes.
    pub max_upload_bytes: usize,
    /// Request timeout, seconds.
    pub request_timeout_s: u64,
    /// Share of searches re-run exactly for the live recall estimate.
    pub recall_sample: f64,
    /// Sampled queries the estimate averages.
    pub recall_window: usize,
    /// Sampled queries re-run per second at most.
    pub recall_max_per_s: f64,
    /// Recall@k to hold by adjusting ef (0 = off).
    pub target_recall: f64,
    /// Browser origins allowed to call the API (CORS); empty = off.
    pub cors_origins: Vec<String>,
}

/// All settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Collections folder ("" = platform default).
    pub data_dir: PathBuf,
    /// Threads (0 = all cores).
    pub threads: usize,
    /// Collection used when none is named.
    pub collection: String,
    /// Embedding and indexing.
    pub embed: EmbedSettings,
    /// Input limits.
    pub limits: LimitsSettings,
    /// The HTTP service.
    pub server: ServerSettings,
    /// Index parameters.
    pub index: IndexSettings,
    /// Collection storage options.
    pub storage: OpenOptions,
    /// Benchmark options.
    pub bench: BenchSettings,
}

impl Default for Settings {
    fn default() -> Self {
        let p = HnswParams::default();
        let l = imgsim_embed::ImageLimits::default();
        Settings {
            data_dir: PathBuf::new(),
            threads: 0,
            collection: "default".into(),
            embed: EmbedSettings {
                model: EmbedModel::Auto,
                backbone: "dinov2-small".into(),
                weights: String::new(),
                autoencoder_dim: 64,
                autoencoder_epochs: 0,
                autoencoder_max_images: 10_000,
                batch_size: 16,
                decode_threads: 0,
                exact_decode: false,
            },
            limits: LimitsSettings {
                max_width: l.max_width,
                max_height: l.max_height,
                max_decoded_bytes: l.max_alloc_bytes,
                max_file_bytes: l.max_file_bytes,
            },
            server: ServerSettings {
                bind: "127.0.0.1:8080".into(),
                api_key: String::new(),
                workers: 0,
                queue: 64,
                max_upload_bytes: 32 << 20,
                request_timeout_s: 30,
                recall_sample: 0.1,
                recall_window: 200,
                recall_max_per_s: 10.0,
                target_recall: 0.0,
                cors_origins: Vec::new(),
            },
            index: IndexSettings {
                metric: Metric::Cosine,
                m: p.m,
                ef_construction: p.ef_construction,
                ef_search: p.ef_search,
            },
            storage: OpenOptions::default(),
            bench: BenchSettings {
                out_dir: PathBuf::from("bench-results"),
                ef: vec![10, 16, 24, 32, 48, 64, 96, 128, 192, 256],
                runs: 3,
                fashion_mnist_dir: PathBuf::from(imgsim_datasets::fashion_mnist::DEFAULT_DIR),
            },
        }
    }
}

/// Overlays `over` onto `base`, key by key.
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Applies IMGSIM_* variables to every leaf key of `value`.
fn apply_env(
    value: &mut toml::Value,
    prefix: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let toml::Value::Table(t) = value else {
        return Ok(());
    };
    for (k, v) in t.iter_mut() {
        let name = format!("{prefix}_{}", k.to_ascii_uppercase());
        if v.is_table() {
            apply_env(v, &name, env)?;
            continue;
        }
        let Some(raw) = env(&name) else { continue };
        let parsed = match v {
            toml::Value::String(_) => toml::Value::String(raw),
            _ => raw
                .parse::<toml::Value>()
                .or_else(|_| {
                    toml::from_str::<toml::Table>(&format!("x = {raw}"))
                        .map(|mut t| t.remove("x").expect("x is set"))
                })
                .map_err(|e| ConfigError::Parse {
                    path: name.clone(),
                    message: e.to_string(),
                })?,
        };
        *v = parsed;
    }
    Ok(())
}

impl Settings {
    /// Loads settings: defaults, then `file` (or the platform config file if
    /// it exists), then the environment through `env`.
    pub fn load_with(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let mut value = toml::Value::try_from(Settings::default()).expect("defaults serialise");
        let file = file.map(Path::to_path_buf).or_else(|| {
            directories::ProjectDirs::from("", "", "imgsim")
                .map(|d| d.config_dir().join("config.toml"))
                .filter(|p| p.exists())
        });
        if let Some(path) = file {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let over: toml::Value = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            merge(&mut value, over);
        }
        apply_env(&mut value, "IMGSIM", env)?;
        value
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: "settings".into(),
                message: e.to_string(),
            })
    }

    /// Loads with the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with(file, &|k| std::env::var(k).ok())
    }

    /// The collections folder: `data_dir`, or the platform data directory.
    pub fn data_dir(&self) -> PathBuf {
        if !self.data_dir.as_os_str().is_empty() {
            return self.data_dir.clone();
        }
        directories::ProjectDirs::from("", "", "imgsim")
            .map(|d| d.data_dir().to_path_buf())
            .unwrap_or_else(|| PathBuf::from(".imgsim"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_toml_parses_and_matches_builtin_defaults() {
        let parsed: Settings = toml::from_str(DEFAULT_TOML).unwrap();
        assert_eq!(parsed, Settings::default());
    }

    #[test]
    fn precedence_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "threads = 3\n[index]\nm = 24\nmetric = \"l2\"\n").unwrap();
        let s = Settings::load_with(Some(&f), &|k| match k {
            "IMGSIM_INDEX_M" => Some("32".into()),
            "IMGSIM_DATA_DIR" => Some("/tmp/x".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.threads, 3);
        assert_eq!(s.index.m, 32);
        assert_eq!(s.index.metric, Metric::L2);
        assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(s.index.ef_construction, 200);

        std::fs::write(&f, "[index]\nmm = 1\n").unwrap();
        assert!(Settings::load_with(Some(&f), &|_| None).is_err());
        let bad_env = Settings::load_with(None, &|k| {
            (k == "IMGSIM_THREADS").then(|| "many".to_string())
        });
        assert!(bad_env.is_err());
    }
}
