//! Settings: built-in defaults < config file < environment < flags. Each
//! section deserializes straight into the library's own option type
//! (`HnswParams`, `OpenOptions`, `ImageLimits`, `ServerOptions`), whose
//! `Default` is the only place its defaults are written, and is validated
//! at load, naming the file or variable that set a bad value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use imgsim_embed::ImageLimits;
use imgsim_index::{HnswParams, Metric, OpenOptions};
use imgsim_server::ServerOptions;
use serde::{Deserialize, Serialize};

/// The commented default configuration, shipped in the binary.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Prefix of the environment variables that override settings.
const ENV_PREFIX: &str = "IMGSIM";

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
    /// The file is not valid TOML, or a key or value is not one imgsim knows.
    #[error("invalid {path}: {message}")]
    Parse {
        /// "config FILE" (or what else the settings came from).
        path: String,
        /// Parser message.
        message: String,
    },
    /// An environment variable's value is not of the setting's type.
    #[error("{var}={value:?}: {expected} (the setting {key})")]
    Env {
        /// The variable.
        var: String,
        /// Its value.
        value: String,
        /// What it should look like.
        expected: String,
        /// The setting it overrides.
        key: String,
    },
    /// A value out of range.
    #[error("invalid setting {key} (set by {origin}): {message}")]
    Invalid {
        /// The setting (`index.m`), or the section when the library does
        /// not say which key.
        key: String,
        /// Where the value came from: the file, the variable, or the defaults.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

/// `[index]`: the metric, and the HNSW parameters of new collections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexSettings {
    /// Distance metric.
    #[serde(default = "default_metric")]
    pub metric: Metric,
    /// HNSW parameters (m, ef_construction, ef_search).
    #[serde(flatten)]
    pub params: HnswParams,
}

fn default_metric() -> Metric {
    Metric::Cosine
}

impl Default for IndexSettings {
    fn default() -> Self {
        IndexSettings {
            metric: default_metric(),
            params: HnswParams::default(),
        }
    }
}

impl IndexSettings {
    /// As HNSW parameters.
    pub fn params(&self) -> HnswParams {
        self.params
    }
}

/// `[bench]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
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

impl Default for BenchSettings {
    fn default() -> Self {
        BenchSettings {
            out_dir: PathBuf::from("bench-results"),
            ef: vec![10, 16, 24, 32, 48, 64, 96, 128, 192, 256],
            runs: 3,
            fashion_mnist_dir: PathBuf::from(imgsim_datasets::fashion_mnist::DEFAULT_DIR),
        }
    }
}

/// `[embed]`: how images become vectors, and how indexing runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedSettings {
    /// `auto`, `backbone` or `autoencoder`.
    pub model: EmbedModel,
    /// What an embedder trained on the collection learns (`model =
    /// "autoencoder"`, or `auto` without weights): `contrastive` or
    /// `reconstruction`.
    pub offline: imgsim_embed::Objective,
    /// The pretrained backbone.
    pub backbone: String,
    /// Its weights ("" = the backbone's Hugging Face Hub default).
    pub weights: String,
    /// Reconstruction autoencoder bottleneck size.
    pub autoencoder_dim: usize,
    /// Training epochs of either objective (0 = chosen from the number of images).
    pub autoencoder_epochs: usize,
    /// Images an embedder is trained on, at most.
    pub autoencoder_max_images: usize,
    /// Images per model call and per commit.
    pub batch_size: usize,
    /// Threads decoding images while the model runs (0 = one per core).
    pub decode_threads: usize,
    /// Decode JPEGs at full size instead of DCT-scaled.
    pub exact_decode: bool,
}

impl Default for EmbedSettings {
    /// The pipeline's defaults for training and indexing; the model choice
    /// is the command line's own.
    fn default() -> Self {
        let train = imgsim_pipeline::train::AutoTrainOptions::default();
        let index = imgsim_pipeline::IndexOptions::default();
        EmbedSettings {
            model: EmbedModel::Auto,
            offline: train.objective,
            backbone: imgsim_embed::Backbone::Dinov2Small.name().into(),
            weights: String::new(),
            autoencoder_dim: train.dim,
            autoencoder_epochs: train.epochs,
            autoencoder_max_images: train.max_images,
            batch_size: index.batch_size,
            decode_threads: index.decode_threads,
            exact_decode: index.exact_decode,
        }
    }
}

impl EmbedSettings {
    /// Checks ranges and names.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        imgsim_embed::Backbone::parse(&self.backbone).map_err(|e| ("backbone", e.to_string()))?;
        if !self.weights.is_empty() {
            imgsim_embed::WeightsSource::parse(&self.weights)
                .map_err(|e| ("weights", e.to_string()))?;
        }
        for (key, v) in [
            ("autoencoder_dim", self.autoencoder_dim),
            ("autoencoder_max_images", self.autoencoder_max_images),
            ("batch_size", self.batch_size),
        ] {
            if v == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        Ok(())
    }
}

/// `[embed] model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbedModel {
    /// The backbone if its weights can be had, else an embedder trained on
    /// the collection (`offline` says which).
    Auto,
    /// Always the backbone.
    Backbone,
    /// Always an embedder trained on the collection (`offline` says which).
    Autoencoder,
}

/// All settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Collections folder ("" = platform default).
    pub data_dir: PathBuf,
    /// Threads (0 = all cores).
    pub threads: usize,
    /// Collection used when none is named.
    pub collection: String,
    /// Embedding and indexing.
    pub embed: EmbedSettings,
    /// Input limits, for every command that reads images.
    pub limits: ImageLimits,
    /// The HTTP service.
    pub server: ServerOptions,
    /// Index parameters.
    pub index: IndexSettings,
    /// Collection storage options.
    pub storage: OpenOptions,
    /// Benchmark options.
    pub bench: BenchSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::new(),
            threads: 0,
            collection: "default".into(),
            embed: EmbedSettings::default(),
            limits: ImageLimits::default(),
            server: ServerOptions::default(),
            index: IndexSettings::default(),
            storage: OpenOptions::default(),
            bench: BenchSettings::default(),
        }
    }
}

/// Where each setting (by dotted key) got its value, when not from the
/// built-in defaults.
type Origins = BTreeMap<String, String>;

/// The key (and where it was set) whose text value a deserialisation error
/// quotes, e.g. an unknown variant such as `quantization = "pq"`: serde's
/// message names the value but not the key.
fn culprit(value: &toml::Value, origins: &Origins, message: &str) -> Option<(String, String)> {
    origins.iter().find_map(|(key, origin)| {
        let leaf = key.split('.').try_fold(value, |v, part| v.get(part))?;
        let text = leaf.as_str()?;
        message
            .contains(&format!("`{text}`"))
            .then(|| (key.clone(), origin.clone()))
    })
}

/// Overlays `over` onto `base`, key by key, recording `origin` for each
/// leaf. `base` holds every known key (the defaults), so a key it lacks is
/// not a setting: refused, naming it.
fn merge(
    base: &mut toml::Value,
    over: toml::Value,
    key: &str,
    origin: &str,
    out: &mut Origins,
) -> Result<(), ConfigError> {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                let sub = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v, &sub, origin, out)?,
                    None => {
                        return Err(ConfigError::Parse {
                            path: origin.to_string(),
                            message: format!(
                                "unknown setting `{sub}` (config/default.toml lists every setting)"
                            ),
                        })
                    }
                }
            }
        }
        (slot, v) => {
            out.insert(key.to_string(), origin.to_string());
            *slot = v;
        }
    }
    Ok(())
}

/// `raw` (an environment variable's text) as a value of the same type as
/// the setting's `current` value; `Err` says what was expected.
fn env_value(raw: &str, current: &toml::Value) -> Result<toml::Value, String> {
    let t = raw.trim();
    match current {
        toml::Value::String(_) => Ok(toml::Value::String(raw.to_string())),
        toml::Value::Integer(_) => t
            .replace('_', "")
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| "expected a whole number, e.g. 16".into()),
        toml::Value::Float(_) => t
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(toml::Value::Float)
            .ok_or_else(|| "expected a number, e.g. 0.5".into()),
        toml::Value::Boolean(_) => match t.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err("expected true or false".into()),
        },
        toml::Value::Array(items) => {
            // A comma-separated list, each element of the default's element type.
            let like = items
                .first()
                .cloned()
                .unwrap_or(toml::Value::String(String::new()));
            let inner = t.trim_start_matches('[').trim_end_matches(']');
            inner
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| env_value(s.trim_matches('"'), &like))
                .collect::<Result<Vec<_>, _>>()
                .map(toml::Value::Array)
                .map_err(|e| format!("expected a comma-separated list ({e})"))
        }
        toml::Value::Datetime(_) | toml::Value::Table(_) => Err("not settable here".into()),
    }
}

/// Applies `IMGSIM_*` variables to every leaf key of `value`.
fn apply_env(
    value: &mut toml::Value,
    prefix: &str,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut Origins,
) -> Result<(), ConfigError> {
    let toml::Value::Table(t) = value else {
        return Ok(());
    };
    for (k, v) in t.iter_mut() {
        let name = format!("{prefix}_{}", k.to_ascii_uppercase());
        let sub = if key.is_empty() {
            k.clone()
        } else {
            format!("{key}.{k}")
        };
        if v.is_table() {
            apply_env(v, &name, &sub, env, out)?;
            continue;
        }
        let Some(raw) = env(&name) else { continue };
        *v = env_value(&raw, v).map_err(|expected| ConfigError::Env {
            var: name.clone(),
            value: raw.clone(),
            expected,
            key: sub.clone(),
        })?;
        out.insert(sub, name);
    }
    Ok(())
}

impl Settings {
    /// Loads settings: defaults, then `file` (or the platform config file if
    /// it exists), then the environment through `env`; then validates them.
    pub fn load_with(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let mut value = toml::Value::try_from(Settings::default()).expect("defaults serialise");
        let mut origins = Origins::new();
        let file = file.map(Path::to_path_buf).or_else(|| {
            directories::ProjectDirs::from("", "", "imgsim")
                .map(|d| d.config_dir().join("config.toml"))
                .filter(|p| p.exists())
        });
        let file_name = file.as_ref().map(|p| format!("config {}", p.display()));
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let over: toml::Value = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: format!("config {}", path.display()),
                message: e.to_string(),
            })?;
            merge(
                &mut value,
                over,
                "",
                &format!("config {}", path.display()),
                &mut origins,
            )?;
        }
        apply_env(&mut value, ENV_PREFIX, "", env, &mut origins)?;
        let settings: Settings = value.clone().try_into().map_err(|e: toml::de::Error| {
            let message = e.message().to_string();
            match culprit(&value, &origins, &message) {
                Some((key, origin)) => ConfigError::Invalid {
                    key,
                    origin,
                    message,
                },
                None => ConfigError::Parse {
                    path: file_name.unwrap_or_else(|| "settings (from the environment)".into()),
                    message,
                },
            }
        })?;
        settings.validate(&origins)?;
        Ok(settings)
    }

    /// Loads with the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with(file, &|k| std::env::var(k).ok())
    }

    /// Checks every section's ranges; an error names the setting and where
    /// its value came from.
    fn validate(&self, origins: &Origins) -> Result<(), ConfigError> {
        let invalid = |section: &str, key: Option<&str>, message: String| {
            let full = match key {
                Some(k) => format!("{section}.{k}"),
                None => format!("[{section}]"),
            };
            let origin = match key {
                Some(_) => origins.get(&full).cloned(),
                None => {
                    let from: Vec<&String> = origins
                        .iter()
                        .filter(|(k, _)| k.starts_with(&format!("{section}.")))
                        .map(|(_, o)| o)
                        .collect();
                    (!from.is_empty()).then(|| {
                        let mut v: Vec<String> = from.into_iter().cloned().collect();
                        v.dedup();
                        v.join(", ")
                    })
                }
            };
            ConfigError::Invalid {
                key: full,
                origin: origin.unwrap_or_else(|| "the built-in defaults".into()),
                message,
            }
        };
        let index_key = |e: &imgsim_index::IndexError| {
            if let imgsim_index::IndexError::InvalidParameter { name, .. } = e {
                Some(*name)
            } else {
                None
            }
        };
        self.index
            .params
            .validate()
            .map_err(|e| invalid("index", index_key(&e), e.to_string()))?;
        self.storage
            .validate()
            .map_err(|e| invalid("storage", index_key(&e), e.to_string()))?;
        self.limits
            .validate()
            .map_err(|e| invalid("limits", None, e.to_string()))?;
        self.server
            .validate()
            .map_err(|e| invalid("server", None, e.to_string()))?;
        self.embed
            .validate()
            .map_err(|(k, m)| invalid("embed", Some(k), m))?;
        if self.bench.ef.is_empty() || self.bench.ef.contains(&0) || self.bench.runs == 0 {
            return Err(invalid(
                "bench",
                None,
                "ef needs at least one value, each at least 1, and runs at least 1".into(),
            ));
        }
        if imgsim_pipeline::collection_dir(Path::new(""), &self.collection).is_err() {
            return Err(invalid(
                "collection",
                None,
                format!("`{}` is not a valid collection name", self.collection),
            ));
        }
        Ok(())
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

    /// The service's options: `[server]` plus what the service needs from
    /// the other sections (limits, storage, the benchmark report).
    pub fn server_options(&self) -> ServerOptions {
        let mut o = self.server.clone();
        o.limits = self.limits;
        o.storage = self.storage.clone();
        o.index_batch_size = self.embed.batch_size;
        o.index_decode_threads = self.embed.decode_threads;
        o.bench_report = Some(self.bench.out_dir.join("fashion-mnist-784-euclidean.json"));
        o
    }

    /// The settings as TOML, for `imgsim config`: the api key is never
    /// printed, only whether one is set.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let mut shown = self.clone();
        let key_set = shown.server.api_key.is_some();
        shown.server.api_key = None;
        let mut text = toml::to_string_pretty(&shown)?;
        if key_set {
            text = text.replacen("api_key = \"\"\n", "# api_key is set (not shown)\n", 1);
        }
        Ok(text)
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
            "IMGSIM_BENCH_EF" => Some("8,16".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.threads, 3);
        assert_eq!(s.index.params.m, 32);
        assert_eq!(s.index.metric, Metric::L2);
        assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(s.index.params.ef_construction, 200);
        assert_eq!(s.bench.ef, vec![8, 16]);

        std::fs::write(&f, "[index]\nmm = 1\n").unwrap();
        assert!(Settings::load_with(Some(&f), &|_| None).is_err());
    }

    /// Regression: a bad IMGSIM_* value showed an internal TOML snippet.
    #[test]
    fn a_bad_environment_value_names_the_variable_plainly() {
        let e = Settings::load_with(None, &|k| {
            (k == "IMGSIM_THREADS").then(|| "many".to_string())
        })
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "IMGSIM_THREADS=\"many\": expected a whole number, e.g. 16 (the setting threads)"
        );
        let e = Settings::load_with(None, &|k| {
            (k == "IMGSIM_SERVER_RECALL_SAMPLE").then(|| "lots".to_string())
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("IMGSIM_SERVER_RECALL_SAMPLE=\"lots\": expected a number"),
            "{e}"
        );
        assert!(!e.contains('|'), "no parser snippet: {e}");
    }

    /// `m = 1` is refused at load, naming the file and the key.
    #[test]
    fn out_of_range_values_are_refused_naming_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[index]\nm = 1\n").unwrap();
        let e = Settings::load_with(Some(&f), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("index.m") && e.contains(&f.display().to_string()),
            "{e}"
        );
        let e = Settings::load_with(None, &|k| (k == "IMGSIM_INDEX_M").then(|| "500".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("index.m") && e.contains("IMGSIM_INDEX_M"), "{e}");
        std::fs::write(&f, "[server]\nrecall_sample = 2.0\n").unwrap();
        let e = Settings::load_with(Some(&f), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[server]") && e.contains("c.toml"), "{e}");
        std::fs::write(&f, "[limits]\nmax_file_bytes = 10\n").unwrap();
        let e = Settings::load_with(Some(&f), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[limits]") && e.contains("max_file_bytes"),
            "{e}"
        );
        std::fs::write(&f, "[embed]\nbatch_size = 0\n").unwrap();
        let e = Settings::load_with(Some(&f), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("embed.batch_size"), "{e}");
    }

    #[test]
    fn the_api_key_is_never_printed() {
        let s = Settings::load_with(None, &|k| {
            (k == "IMGSIM_SERVER_API_KEY").then(|| "s3cret-key".to_string())
        })
        .unwrap();
        assert_eq!(s.server.api_key.as_deref(), Some("s3cret-key"));
        let text = s.to_toml().unwrap();
        assert!(!text.contains("s3cret-key"), "{text}");
        assert!(text.contains("api_key is set"), "{text}");
        // What it prints reads back (without the key).
        let back: Settings = toml::from_str(&text).unwrap();
        assert_eq!(back.server.api_key, None);
    }
}
