//! The [`Embedder`] trait every way of turning images into vectors
//! implements, and the pretrained-backbone embedder.

use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::backbones::{Backbone, Network};
use crate::error::{EmbedError, Result};
use crate::transform::Transform;
use crate::weights::WeightsSource;

/// How embeddings are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Cosine similarity (vectors are L2-normalised).
    Cosine,
    /// Euclidean distance.
    L2,
}

/// What identifies an embedder: two embedders with equal identities give
/// the same vector for the same image. Collections store it so that they are
/// never queried with another model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedderIdentity {
    /// Architecture (`resnet50`, `autoencoder`, ...).
    pub architecture: String,
    /// Content digest of the weights.
    pub weights_digest: String,
    /// Where the weights came from (informative only).
    pub weights_origin: String,
    /// Embedding size.
    pub dim: usize,
    /// Comparison metric.
    pub metric: Metric,
    /// The preprocessing applied to every image.
    pub preprocessing: Transform,
}

impl EmbedderIdentity {
    /// Whether `other` produces the same vectors (the origin may differ).
    pub fn compatible(&self, other: &EmbedderIdentity) -> bool {
        self.architecture == other.architecture
            && self.weights_digest == other.weights_digest
            && self.dim == other.dim
            && self.metric == other.metric
            && self.preprocessing == other.preprocessing
    }
}

/// Turns images into vectors.
pub trait Embedder: Send + Sync {
    /// Identity: architecture, weights, dimension, metric, preprocessing.
    fn identity(&self) -> &EmbedderIdentity;

    /// Short name.
    fn name(&self) -> &str {
        &self.identity().architecture
    }

    /// Embedding size.
    fn dim(&self) -> usize {
        self.identity().dim
    }

    /// Comparison metric.
    fn metric(&self) -> Metric {
        self.identity().metric
    }

    /// The preprocessing: image → model input, `channels × crop × crop` floats.
    fn preprocessing(&self) -> &Transform {
        &self.identity().preprocessing
    }

    /// Preprocesses one decoded image.
    fn preprocess(&self, img: &RgbImage) -> Result<Vec<f32>> {
        self.preprocessing().apply(img)
    }

    /// Embeds a batch of preprocessed inputs (each as [`Embedder::preprocess`] makes them).
    fn embed_batch(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>>;

    /// Preprocesses and embeds decoded images.
    fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        let inputs = images
            .iter()
            .map(|i| self.preprocess(i))
            .collect::<Result<Vec<_>>>()?;
        self.embed_batch(&inputs)
    }
}

/// Stacks preprocessed inputs into a `(B, C, S, S)` tensor, checking sizes.
pub(crate) fn stack(inputs: &[Vec<f32>], t: &Transform) -> Result<Tensor> {
    let n = t.len();
    let mut flat = Vec::with_capacity(inputs.len() * n);
    for (i, v) in inputs.iter().enumerate() {
        if v.len() != n {
            return Err(EmbedError::Input(format!(
                "input {i} has {} values, the model expects {n} ({} × {} × {})",
                v.len(),
                t.channels,
                t.crop,
                t.crop
            )));
        }
        flat.extend_from_slice(v);
    }
    let s = t.crop as usize;
    Ok(Tensor::from_vec(
        flat,
        (inputs.len(), t.channels, s, s),
        &Device::Cpu,
    )?)
}

/// The common body of `embed_batch`: stack the inputs, run `forward`, and
/// return the rows (L2-normalised when `normalise`).
pub(crate) fn embed_with(
    inputs: &[Vec<f32>],
    t: &Transform,
    model: &str,
    normalise: bool,
    forward: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Vec<Vec<f32>>> {
    if inputs.is_empty() {
        return Ok(Vec::new());
    }
    let x = stack(inputs, t)?;
    rows(model, &forward(&x)?, normalise)
}

/// Rows of a `(B, D)` tensor, L2-normalised when `normalise`; non-finite
/// outputs are an error, never stored.
pub(crate) fn rows(model: &str, y: &Tensor, normalise: bool) -> Result<Vec<Vec<f32>>> {
    let mut out = y.to_vec2::<f32>()?;
    for r in &mut out {
        if r.iter().any(|v| !v.is_finite()) {
            return Err(EmbedError::NonFinite {
                model: model.to_string(),
            });
        }
        if normalise {
            let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
            if n > 0.0 {
                r.iter_mut().for_each(|v| *v /= n);
            }
        }
    }
    Ok(out)
}

/// A pretrained backbone as an embedder: its pooled features, L2-normalised,
/// compared by cosine.
pub struct PretrainedEmbedder {
    backbone: Backbone,
    net: Box<dyn Network>,
    identity: EmbedderIdentity,
}

impl PretrainedEmbedder {
    /// Loads `backbone` with weights from `source` (default: its hub weights).
    pub fn load(backbone: Backbone, source: Option<&WeightsSource>) -> Result<Self> {
        let default = backbone.hub_weights();
        let source = source.unwrap_or(&default);
        let weights = source.load()?;
        let preprocessing = backbone.transform();
        let net = backbone.build(&weights, preprocessing.crop as usize)?;
        let identity = EmbedderIdentity {
            architecture: backbone.name().to_string(),
            weights_digest: weights.digest().to_string(),
            weights_origin: weights.origin().to_string(),
            dim: net.dim(),
            metric: Metric::Cosine,
            preprocessing,
        };
        Ok(PretrainedEmbedder {
            backbone,
            net,
            identity,
        })
    }

    /// The backbone.
    pub fn backbone(&self) -> Backbone {
        self.backbone
    }

    /// Raw (unnormalised) features of a `(B, 3, S, S)` batch.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        self.net.forward(x)
    }
}

impl Embedder for PretrainedEmbedder {
    fn identity(&self) -> &EmbedderIdentity {
        &self.identity
    }

    fn embed_batch(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        let t = &self.identity.preprocessing;
        embed_with(inputs, t, self.backbone.name(), true, |x| {
            self.net.forward(x)
        })
    }
}
