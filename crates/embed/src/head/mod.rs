//! A projection head: a small network trained with labels on the vectors of
//! a frozen base embedder, and [`HeadEmbedder`], which runs the base and
//! then the head (transfer learning on a user's own labels).
//!
//! The head standardises its input (the training features' per-dimension
//! mean, one overall scale), applies linear layers with ReLU between them
//! (no hidden layer: a linear projection), and L2-normalises the output, so
//! that its vectors are compared by cosine. It is trained by [`train`] with
//! a supervised contrastive loss and saved by [`checkpoint`]: a safetensors
//! file plus a JSON config, like the autoencoder.

pub mod checkpoint;
pub mod train;

pub use train::HeadOptions;

use std::path::Path;

use candle_core::{Device, Tensor, D};
use candle_nn::{Module, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::embedder::{rows, Embedder, EmbedderIdentity, Metric};
use crate::error::{EmbedError, Result};

/// The head's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadConfig {
    /// Size of the base's vectors.
    pub input_dim: usize,
    /// Hidden layer sizes (empty: one linear layer).
    pub hidden: Vec<usize>,
    /// Size of the head's vectors (the embedding).
    pub output_dim: usize,
}

impl HeadConfig {
    /// Checks the sizes.
    pub fn validate(&self) -> Result<()> {
        if self.input_dim == 0 || self.output_dim == 0 || self.hidden.contains(&0) {
            return Err(EmbedError::Input(format!(
                "a head needs non-zero sizes (input {}, hidden {:?}, output {})",
                self.input_dim, self.hidden, self.output_dim
            )));
        }
        Ok(())
    }

    /// `(inputs, outputs)` of each linear layer, first to last.
    pub fn layers(&self) -> Vec<(usize, usize)> {
        let mut sizes = vec![self.input_dim];
        sizes.extend(&self.hidden);
        sizes.push(self.output_dim);
        sizes.windows(2).map(|w| (w[0], w[1])).collect()
    }

    /// Weights of the head (for messages and the training log).
    pub fn parameters(&self) -> usize {
        self.layers().iter().map(|(i, o)| (i + 1) * o).sum()
    }

    /// In words: `784 → 256 → 64`.
    pub fn describe(&self) -> String {
        let mut s = self.input_dim.to_string();
        for h in self.hidden.iter().chain([&self.output_dim]) {
            s.push_str(&format!(" → {h}"));
        }
        s
    }
}

/// What a head was trained on top of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadBase {
    /// How to get the base again, as `imgsim train head --base` took it
    /// (`autoencoder:/abs/path`, `backbone:resnet18`, `raw`...).
    pub spec: String,
    /// The weights of a `backbone:NAME` base, as given (`file.safetensors`,
    /// `hf:...`, `synthetic:SEED`); `None`: the backbone's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// The base embedder's identity; `None` when the features were not an
    /// image embedder's (raw Fashion-MNIST pixels): such a head can be
    /// evaluated but cannot embed images.
    pub identity: Option<EmbedderIdentity>,
}

/// Names of the tensors that standardise the input.
pub(crate) const INPUT_MEAN: &str = "input.mean";
pub(crate) const INPUT_SCALE: &str = "input.scale";

/// The name of linear layer `i`'s tensors (`layers.{i}.weight`, `.bias`).
pub(crate) fn layer_name(i: usize) -> String {
    format!("layers.{i}")
}

/// A head, ready to run.
pub struct Head {
    cfg: HeadConfig,
    mean: Tensor,
    scale: Tensor,
    layers: Vec<candle_nn::Linear>,
}

impl Head {
    /// Builds the layers from `vb` (a `VarMap` when training, saved
    /// weights when loading); `mean` and `scale` standardise the input.
    pub fn new(cfg: &HeadConfig, vb: VarBuilder, mean: &[f32], scale: &[f32]) -> Result<Self> {
        cfg.validate()?;
        for (what, v) in [("mean", mean), ("scale", scale)] {
            if v.len() != cfg.input_dim || v.iter().any(|x| !x.is_finite()) {
                return Err(EmbedError::Input(format!(
                    "the head's input {what} must be {} finite numbers",
                    cfg.input_dim
                )));
            }
        }
        let layers = cfg
            .layers()
            .into_iter()
            .enumerate()
            .map(|(i, (d_in, d_out))| candle_nn::linear(d_in, d_out, vb.pp(layer_name(i))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Head {
            cfg: cfg.clone(),
            mean: Tensor::from_slice(mean, cfg.input_dim, &Device::Cpu)?,
            scale: Tensor::from_slice(scale, cfg.input_dim, &Device::Cpu)?,
            layers,
        })
    }

    /// The head's shape.
    pub fn config(&self) -> &HeadConfig {
        &self.cfg
    }

    /// The input standardisation: per-dimension mean, then scale.
    pub fn standardisation(&self) -> (&Tensor, &Tensor) {
        (&self.mean, &self.scale)
    }

    /// `(B, input_dim)` base vectors → `(B, output_dim)` unit vectors.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.broadcast_sub(&self.mean)?.broadcast_mul(&self.scale)?;
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h)?;
            if i < last {
                h = h.relu()?;
            }
        }
        Ok(l2_normalise(&h)?)
    }

    /// Runs the head on row-major vectors (`n × input_dim`), in chunks.
    pub fn apply(&self, vectors: &[f32]) -> Result<Vec<f32>> {
        let d = self.cfg.input_dim;
        if !vectors.len().is_multiple_of(d) {
            return Err(EmbedError::Input(format!(
                "{} values are not whole {d}-d vectors",
                vectors.len()
            )));
        }
        let mut out = Vec::with_capacity(vectors.len() / d * self.cfg.output_dim);
        for chunk in vectors.chunks(d * 4096) {
            let x = Tensor::from_slice(chunk, (chunk.len() / d, d), &Device::Cpu)?;
            out.extend(self.forward(&x)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}

/// Rows divided by their L2 norm (a zero row stays zero).
pub(crate) fn l2_normalise(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = (x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
    x.broadcast_div(&norm)
}

/// A base embedder followed by a trained head: the head's vectors, by cosine.
pub struct HeadEmbedder {
    base: Box<dyn Embedder>,
    head: Head,
    identity: EmbedderIdentity,
}

impl HeadEmbedder {
    /// Puts the head saved at `path` (its folder or its `.safetensors`
    /// file) on `base`, refusing a base other than the one it was trained on.
    pub fn load(base: Box<dyn Embedder>, path: &Path) -> Result<Self> {
        let loaded = checkpoint::load(path)?;
        let refuse = |reason: String| EmbedError::Checkpoint {
            path: loaded.weights_path.clone(),
            reason,
        };
        let Some(trained) = &loaded.record.base.identity else {
            return Err(refuse(format!(
                "this head was trained on `{}`, features that are not an image embedder's; \
                 it can be evaluated (imgsim eval) but cannot embed images",
                loaded.record.base.spec
            )));
        };
        if !trained.compatible(base.identity()) {
            return Err(refuse(format!(
                "this head was trained on {} ({}-d, weights {}), not on {} ({}-d, weights {}); \
                 use the base it was trained on (`{}`)",
                trained.architecture,
                trained.dim,
                trained.weights_digest,
                base.identity().architecture,
                base.dim(),
                base.identity().weights_digest,
                loaded.record.base.spec
            )));
        }
        let b = base.identity();
        let identity = EmbedderIdentity {
            architecture: format!("{}+head", b.architecture),
            weights_digest: blake3::hash(
                format!("{}+{}", b.weights_digest, loaded.digest).as_bytes(),
            )
            .to_hex()[..16]
                .to_string(),
            weights_origin: format!(
                "{} + head {}",
                b.weights_origin,
                loaded.weights_path.display()
            ),
            dim: loaded.head.config().output_dim,
            metric: Metric::Cosine,
            preprocessing: b.preprocessing,
        };
        Ok(HeadEmbedder {
            base,
            head: loaded.head,
            identity,
        })
    }

    /// The base embedder.
    pub fn base(&self) -> &dyn Embedder {
        self.base.as_ref()
    }

    /// The head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The base, without the head.
    pub fn into_base(self) -> Box<dyn Embedder> {
        self.base
    }
}

impl Embedder for HeadEmbedder {
    fn identity(&self) -> &EmbedderIdentity {
        &self.identity
    }

    fn embed_batch(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let base = self.base.embed_batch(inputs)?;
        let d = self.base.dim();
        let flat: Vec<f32> = base.into_iter().flatten().collect();
        let x = Tensor::from_vec(flat, (inputs.len(), d), &Device::Cpu)?;
        rows(&self.identity.architecture, &self.head.forward(&x)?, false)
    }
}
