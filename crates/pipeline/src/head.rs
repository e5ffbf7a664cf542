//! Fine-tuning on a user's labels: the base vectors a projection head
//! learns from (a labelled folder's images, or Fashion-MNIST), computed
//! once and cached beside the head, then handed to
//! [`imgsim_embed::head::train::fit`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use imgsim_common::Storage;
use imgsim_embed::Embedder;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};

/// Folder, inside a head's folder, of cached base vectors.
pub const CACHE_DIR: &str = "cache";

/// Base vectors with their labels.
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// Row-major vectors.
    pub vectors: Vec<f32>,
    /// Their size.
    pub dim: usize,
    /// Label number of each vector.
    pub labels: Vec<u32>,
    /// Label names, by number.
    pub names: Vec<String>,
}

impl Features {
    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// As the trainer takes them.
    pub fn view(&self) -> imgsim_embed::head::train::LabelledVectors<'_> {
        imgsim_embed::head::train::LabelledVectors {
            vectors: &self.vectors,
            dim: self.dim,
            labels: &self.labels,
            names: &self.names,
        }
    }
}

/// What the cache file's metadata records.
#[derive(Serialize, Deserialize)]
struct CacheMeta {
    key: String,
    dim: usize,
    names: Vec<String>,
}

const CACHE_META_KEY: &str = "imgsim.features";

/// The cached vectors for `key` in `dir` (a head's folder), or `compute`d
/// and cached there (durably, atomically) for the next run. Returns the
/// vectors and whether they came from the cache.
pub fn cached(
    dir: &Path,
    key: &str,
    compute: impl FnOnce() -> Result<Features>,
) -> Result<(Features, bool)> {
    let file = dir.join(CACHE_DIR).join(format!(
        "features-{}.safetensors",
        &blake3::hash(key.as_bytes()).to_hex()[..16]
    ));
    if let Some(f) = read_cache(&file, key) {
        return Ok((f, true));
    }
    let f = compute()?;
    write_cache(&file, key, &f)?;
    Ok((f, false))
}

fn read_cache(file: &Path, key: &str) -> Option<Features> {
    let bytes = std::fs::read(file).ok()?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
    let meta: CacheMeta =
        serde_json::from_str(meta.metadata().as_ref()?.get(CACHE_META_KEY)?).ok()?;
    if meta.key != key {
        return None;
    }
    let t = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).ok()?;
    let vectors = t
        .get("vectors")?
        .flatten_all()
        .ok()?
        .to_vec1::<f32>()
        .ok()?;
    let labels = t.get("labels")?.to_vec1::<u32>().ok()?;
    (vectors.len() == labels.len() * meta.dim).then_some(Features {
        vectors,
        dim: meta.dim,
        labels,
        names: meta.names,
    })
}

fn write_cache(file: &Path, key: &str, f: &Features) -> Result<()> {
    let dir = file.parent().expect("a cache file is in a folder");
    let storage = imgsim_common::LocalFs;
    storage.create_dir_all(dir).map_err(crate::error::io(dir))?;
    let meta = serde_json::to_string(&CacheMeta {
        key: key.to_string(),
        dim: f.dim,
        names: f.names.clone(),
    })
    .expect("cache metadata serialises");
    let tensors = [
        (
            "vectors",
            Tensor::from_slice(&f.vectors, (f.len(), f.dim), &Device::Cpu)
                .map_err(imgsim_embed::EmbedError::from)?,
        ),
        (
            "labels",
            Tensor::from_slice(&f.labels, f.len(), &Device::Cpu)
                .map_err(imgsim_embed::EmbedError::from)?,
        ),
    ];
    let bytes = safetensors::serialize(
        tensors.iter().map(|(n, t)| (*n, t)),
        Some(HashMap::from([(CACHE_META_KEY.to_string(), meta)])),
    )
    .map_err(|e| PipelineError::Invalid(format!("cannot serialise the feature cache: {e}")))?;
    storage.write(file, &bytes).map_err(crate::error::io(file))
}

/// Fashion-MNIST rows (`0..=255` grey, 28×28, row-major) embedded by
/// `embedder`: fed directly when it takes 28×28 grey scaled to `[0, 1]`
/// (the autoencoders trained on Fashion-MNIST), otherwise drawn as RGB
/// images and put through its preprocessing.
pub fn fashion_vectors(embedder: &dyn Embedder, rows: &[f32]) -> Result<Vec<f32>> {
    let t = embedder.preprocessing();
    let direct = t.channels == 1
        && t.crop == 28
        && t.resize_shorter == 28
        && t.mean[0] == 0.0
        && t.std[0] == 1.0;
    let mut out = Vec::with_capacity(rows.len() / 784 * embedder.dim());
    for chunk in rows.chunks(784 * 512) {
        let inputs: Vec<Vec<f32>> = chunk
            .par_chunks_exact(784)
            .map(|r| {
                if direct {
                    Ok(r.iter().map(|v| v / 255.0).collect())
                } else {
                    let img = image::RgbImage::from_fn(28, 28, |x, y| {
                        let v = r[(y * 28 + x) as usize] as u8;
                        image::Rgb([v, v, v])
                    });
                    t.apply(&img)
                }
            })
            .collect::<std::result::Result<_, _>>()?;
        for v in embedder.embed_batch(&inputs)? {
            out.extend(v);
        }
    }
    Ok(out)
}

/// The cache key of Fashion-MNIST vectors by a base (its spec and identity).
pub fn fashion_key(base: &imgsim_embed::head::HeadBase, split: &str, n: usize) -> String {
    format!(
        "fashion-mnist/{split}/{n}/{}/{}",
        base.spec,
        base.identity
            .as_ref()
            .map(|i| serde_json::to_string(i).expect("an identity serialises"))
            .unwrap_or_default()
    )
}

/// Paths of the files of a cached set, for keys.
pub fn files_key(paths: &[PathBuf]) -> String {
    let mut h = blake3::Hasher::new();
    for p in paths {
        h.update(p.as_os_str().as_encoded_bytes());
        if let Ok(m) = std::fs::metadata(p) {
            h.update(&m.len().to_le_bytes());
            if let Ok(t) = m.modified() {
                if let Ok(d) = t.duration_since(std::time::UNIX_EPOCH) {
                    h.update(&d.as_nanos().to_le_bytes());
                }
            }
        }
    }
    h.finalize().to_hex().to_string()
}
