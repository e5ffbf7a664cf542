//! The [`Embedder`] trait every way of turning images into vectors
//! implements, and the pretrained-backbone embedder.

use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::backbones::{Backbone, Network};
use crate::error::{EmbedError, Result};
use crate::text::TextEncoder;
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

    /// Whether [`Embedder::embed_texts`] works: the model has a text tower
    /// sharing the image space (CLIP).
    fn has_text(&self) -> bool {
        false
    }

    /// Unit-length vectors of texts in the image space, comparable with the
    /// images' by cosine. Only models with a text tower (see
    /// [`Embedder::has_text`]) implement it; the others refuse with
    /// [`EmbedError::NoTextTower`].
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let _ = texts;
        Err(EmbedError::NoTextTower {
            embedder: self.name().to_string(),
        })
    }

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
    /// Where the weights came from: the text tower is read from the same
    /// checkpoint, on first use.
    source: WeightsSource,
    text: Mutex<Option<Arc<TextEncoder>>>,
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
            source: source.clone(),
            text: Mutex::new(None),
        })
    }

    /// The text tower, loaded from the image tower's checkpoint on first
    /// use (most runs never need it); `None` for backbones without one.
    pub fn text_encoder(&self) -> Result<Option<Arc<TextEncoder>>> {
        if !self.has_text() {
            return Ok(None);
        }
        let mut slot = self.text.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = slot.as_ref() {
            return Ok(Some(t.clone()));
        }
        let weights = self.source.load()?;
        if weights.digest() != self.identity.weights_digest {
            return Err(EmbedError::Weights {
                source_name: weights.origin().to_string(),
                reason: format!(
                    "the checkpoint changed since the image tower was read from it \
                     (digest {} then, {} now)",
                    self.identity.weights_digest,
                    weights.digest()
                ),
            });
        }
        let t = Arc::new(TextEncoder::load(&weights)?);
        *slot = Some(t.clone());
        Ok(Some(t))
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

    fn has_text(&self) -> bool {
        self.backbone.has_text()
    }

    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        match self.text_encoder()? {
            Some(t) => t.embed(texts),
            None => Err(EmbedError::NoTextTower {
                embedder: self.name().to_string(),
            }),
        }
    }
}
