//! A convolutional autoencoder trained here, without labels: the encoder
//! squeezes an image into a small bottleneck vector, the decoder rebuilds
//! the image from it, and training minimises the mean-squared error of the
//! rebuild. The bottleneck is the embedding.
//!
//! Written the candle way: private [`Encoder`] and [`Decoder`] built from a
//! `VarBuilder` and implementing `Module`, weights in a `VarMap`, saved as
//! safetensors with a JSON config beside them ([`checkpoint`]).
//!
//! Architecture (`widths = [w1, w2, ...]`, one block per width):
//! encoder `[conv3×3 → ReLU → maxpool 2×2]` per block, flatten, linear to
//! `dim`; decoder linear back, ReLU, then per block in reverse
//! `[nearest-neighbour upsample ×2 → conv3×3 → ReLU]`, the last conv giving
//! the image channels through a sigmoid (inputs are in `[0, 1]`).

pub mod augment;
pub mod checkpoint;
pub mod contrastive;
pub mod train;

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::embedder::{embed_with, stack, Embedder, EmbedderIdentity, Metric};
use crate::error::{EmbedError, Result};
use crate::transform::Transform;

/// Architecture tag stored in checkpoints (the conv family: the same
/// encoder blocks, whichever [`Objective`] trained them).
pub const ARCHITECTURE: &str = "conv-autoencoder-v1";

/// What the encoder was trained to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Rebuild the input through a bottleneck (mean-squared error); the
    /// bottleneck is the embedding. Checkpoints that do not record an
    /// objective were trained this way.
    #[default]
    Reconstruction,
    /// Tell two augmented views of the same image apart from the other
    /// images' views (SimCLR's NT-Xent); the pooled encoder features are
    /// the embedding ([`contrastive`]).
    Contrastive,
}

impl Objective {
    /// Its name in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Objective::Reconstruction => "reconstruction",
            Objective::Contrastive => "contrastive",
        }
    }
}

/// The autoencoder's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoencoderConfig {
    /// Architecture tag; must be [`ARCHITECTURE`].
    pub architecture: String,
    /// Input side in pixels (square), divisible by `2^widths.len()`.
    pub input_size: usize,
    /// Input channels: 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Channels of each conv block.
    pub widths: Vec<usize>,
    /// Bottleneck size: the embedding dimension (for the contrastive
    /// objective, the size [`contrastive::ContrastiveParams::embedding_dim`] gives).
    pub dim: usize,
    /// The training objective (absent in older checkpoints: reconstruction).
    #[serde(default)]
    pub objective: Objective,
    /// The contrastive model's head and embedding; present exactly when
    /// `objective` is contrastive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contrastive: Option<contrastive::ContrastiveParams>,
}

impl AutoencoderConfig {
    /// The configuration for Fashion-MNIST-like inputs (28×28 grey).
    pub fn grey28(dim: usize) -> Self {
        AutoencoderConfig {
            architecture: ARCHITECTURE.into(),
            input_size: 28,
            channels: 1,
            widths: vec![16, 32],
            dim,
            objective: Objective::Reconstruction,
            contrastive: None,
        }
    }

    /// The configuration for photos (64×64 RGB).
    pub fn rgb64(dim: usize) -> Self {
        AutoencoderConfig {
            architecture: ARCHITECTURE.into(),
            input_size: 64,
            channels: 3,
            widths: vec![16, 32, 64],
            dim,
            objective: Objective::Reconstruction,
            contrastive: None,
        }
    }

    /// Checks the numbers.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EmbedError::Input(format!("autoencoder config: {m}")));
        if self.architecture != ARCHITECTURE {
            return bad(format!(
                "architecture `{}` is not `{ARCHITECTURE}`",
                self.architecture
            ));
        }
        if self.channels != 1 && self.channels != 3 {
            return bad(format!("channels must be 1 or 3, not {}", self.channels));
        }
        if self.widths.is_empty() || self.widths.len() > 5 || self.widths.contains(&0) {
            return bad(format!("widths {:?}: 1 to 5 non-zero blocks", self.widths));
        }
        let f = 1usize << self.widths.len();
        if self.input_size == 0 || !self.input_size.is_multiple_of(f) || self.input_size > 512 {
            return bad(format!(
                "input size {} must be a multiple of {f} and at most 512",
                self.input_size
            ));
        }
        if self.dim == 0 || self.dim > 4096 {
            return bad(format!("dim {} must be between 1 and 4096", self.dim));
        }
        match (self.objective, &self.contrastive) {
            (Objective::Reconstruction, None) => Ok(()),
            (Objective::Reconstruction, Some(_)) => {
                bad("contrastive settings in a reconstruction model".into())
            }
            (Objective::Contrastive, None) => {
                bad("the contrastive objective needs its `contrastive` settings".into())
            }
            (Objective::Contrastive, Some(p)) => p
                .validate(self)
                .or_else(|m| bad(format!("contrastive: {m}"))),
        }
    }

    /// The spatial side at the bottleneck.
    fn inner_side(&self) -> usize {
        self.input_size >> self.widths.len()
    }

    /// Values in the flattened innermost feature map.
    fn inner_len(&self) -> usize {
        self.widths.last().copied().unwrap_or(1) * self.inner_side().pow(2)
    }

    /// Preprocessing of an input image: resize, centre crop, scale to `[0, 1]`.
    pub fn transform(&self) -> Transform {
        Transform::unit(self.input_size as u32, self.channels)
    }
}

/// A 3×3 convolution, padding 1, computed as im2col + matrix product
/// (fast forward and backward on CPU; see [`crate::nn`]). Its weights are
/// named like candle-nn's `Conv2d` (`weight` `(O, C, 3, 3)`, `bias` `(O)`).
pub(crate) struct Conv3 {
    weight: Tensor,
    bias: Tensor,
}

impl Module for Conv3 {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        crate::nn::conv2d_im2col(x, &self.weight, Some(&self.bias), 1, 1)
    }
}

pub(crate) fn conv3(c_in: usize, c_out: usize, vb: VarBuilder) -> candle_core::Result<Conv3> {
    let bound = 1.0 / ((c_in * 9) as f64).sqrt();
    let weight = vb.get_with_hints(
        (c_out, c_in, 3, 3),
        "weight",
        candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        },
    )?;
    let bias = vb.get_with_hints(c_out, "bias", candle_nn::Init::Const(0.0))?;
    Ok(Conv3 { weight, bias })
}

/// Nearest-neighbour upsampling ×2 as a broadcast (its gradient is a sum,
/// which candle computes faster than the backward of `upsample_nearest2d`).
fn upsample2(x: &Tensor) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    x.reshape((b, c, h, 1, w, 1))?
        .broadcast_as((b, c, h, 2, w, 2))?
        .reshape((b, c, 2 * h, 2 * w))
}

/// Image → bottleneck.
struct Encoder {
    convs: Vec<Conv3>,
    fc: Linear,
}

impl Encoder {
    fn new(cfg: &AutoencoderConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let mut c_in = cfg.channels;
        let mut convs = Vec::new();
        for (i, &w) in cfg.widths.iter().enumerate() {
            convs.push(conv3(c_in, w, vb.pp(format!("conv{i}")))?);
            c_in = w;
        }
        let fc = candle_nn::linear(cfg.inner_len(), cfg.dim, vb.pp("fc"))?;
        Ok(Encoder { convs, fc })
    }
}

impl Module for Encoder {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut y = x.clone();
        for c in &self.convs {
            y = y.apply(c)?.relu()?.max_pool2d(2)?;
        }
        y.flatten_from(1)?.apply(&self.fc)
    }
}

/// Bottleneck → image.
struct Decoder {
    fc: Linear,
    convs: Vec<Conv3>,
    inner: (usize, usize),
}

impl Decoder {
    fn new(cfg: &AutoencoderConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let fc = candle_nn::linear(cfg.dim, cfg.inner_len(), vb.pp("fc"))?;
        let n = cfg.widths.len();
        let mut convs = Vec::new();
        for i in (0..n).rev() {
            let c_in = cfg.widths[i];
            let c_out = if i == 0 {
                cfg.channels
            } else {
                cfg.widths[i - 1]
            };
            convs.push(conv3(c_in, c_out, vb.pp(format!("conv{i}")))?);
        }
        Ok(Decoder {
            fc,
            convs,
            inner: (cfg.widths[n - 1], cfg.inner_side()),
        })
    }
}

impl Module for Decoder {
    fn forward(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        let b = z.dim(0)?;
        let (c, s) = self.inner;
        let mut y = z.apply(&self.fc)?.relu()?.reshape((b, c, s, s))?;
        let last = self.convs.len() - 1;
        for (i, conv) in self.convs.iter().enumerate() {
            y = upsample2(&y)?.apply(conv)?;
            y = if i == last {
                candle_nn::ops::sigmoid(&y)?
            } else {
                y.relu()?
            };
        }
        Ok(y)
    }
}

/// The autoencoder: encoder and decoder.
pub struct Autoencoder {
    cfg: AutoencoderConfig,
    encoder: Encoder,
    decoder: Decoder,
}

impl Autoencoder {
    /// Builds the model, taking (or creating, with a `VarMap`) its weights
    /// from `vb`: `encoder.conv{i}`, `encoder.fc`, `decoder.fc`, `decoder.conv{i}`.
    pub fn new(cfg: &AutoencoderConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        if cfg.objective != Objective::Reconstruction {
            return Err(EmbedError::Input(format!(
                "a {} checkpoint has no decoder: it is not a reconstruction autoencoder",
                cfg.objective.name()
            )));
        }
        Ok(Autoencoder {
            cfg: cfg.clone(),
            encoder: Encoder::new(cfg, vb.pp("encoder"))?,
            decoder: Decoder::new(cfg, vb.pp("decoder"))?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AutoencoderConfig {
        &self.cfg
    }

    /// Bottleneck codes of a `(B, C, S, S)` batch.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let s = self.cfg.input_size;
        match x.dims() {
            [_, c, h, w] if *c == self.cfg.channels && *h == s && *w == s => {}
            d => {
                return Err(EmbedError::Input(format!(
                    "autoencoder expects (B, {}, {s}, {s}), got {d:?}",
                    self.cfg.channels
                )))
            }
        }
        Ok(self.encoder.forward(x)?)
    }

    /// Rebuilds images from codes.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        Ok(self.decoder.forward(z)?)
    }

    /// Encode then decode.
    pub fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        self.decode(&self.encode(x)?)
    }
}

/// A picture of `inputs` (each `channels × side × side` in `[0, 1]`) in a
/// row above their reconstructions, each cell `scale` times enlarged.
pub fn reconstruction_grid(
    model: &Autoencoder,
    inputs: &[Vec<f32>],
    scale: u32,
) -> Result<image::RgbImage> {
    let cfg = model.config();
    let t = cfg.transform();
    let x = stack(inputs, &t)?;
    let r = model.reconstruct(&x)?.flatten_all()?.to_vec1::<f32>()?;
    let s = cfg.input_size as u32;
    let c = cfg.channels;
    let n = inputs.len() as u32;
    let cell = s * scale.max(1);
    let gap = 2;
    let mut img = image::RgbImage::from_pixel(
        n * (cell + gap) + gap,
        2 * (cell + gap) + gap,
        image::Rgb([255, 255, 255]),
    );
    let len = t.len();
    for (i, row) in [inputs.concat(), r].iter().enumerate() {
        for k in 0..n {
            let px = &row[k as usize * len..(k as usize + 1) * len];
            for y in 0..cell {
                for xx in 0..cell {
                    let (sy, sx) = ((y / scale.max(1)) as usize, (xx / scale.max(1)) as usize);
                    let at = |ch: usize| {
                        let v = px[ch * (s * s) as usize + sy * s as usize + sx];
                        (v.clamp(0.0, 1.0) * 255.0).round() as u8
                    };
                    let rgb = if c == 1 {
                        [at(0); 3]
                    } else {
                        [at(0), at(1), at(2)]
                    };
                    img.put_pixel(
                        gap + k * (cell + gap) + xx,
                        gap + i as u32 * (cell + gap) + y,
                        image::Rgb(rgb),
                    );
                }
            }
        }
    }
    Ok(img)
}

/// Loads a checkpoint of either objective as an [`Embedder`]: a
/// reconstruction autoencoder ([`AutoencoderEmbedder`], architecture
/// `autoencoder`) or a contrastive encoder
/// ([`contrastive::ContrastiveEmbedder`], architecture `contrastive-cnn`),
/// as its config says.
pub fn load_embedder(path: &std::path::Path) -> Result<Box<dyn Embedder>> {
    Ok(match checkpoint::read_config(path)?.model.objective {
        Objective::Reconstruction => Box::new(AutoencoderEmbedder::load(path)?),
        Objective::Contrastive => Box::new(contrastive::ContrastiveEmbedder::load(path)?),
    })
}

/// A trained autoencoder as an [`Embedder`]: the bottleneck, compared by
/// Euclidean distance.
pub struct AutoencoderEmbedder {
    model: Autoencoder,
    identity: EmbedderIdentity,
}

impl AutoencoderEmbedder {
    /// Loads a checkpoint (the `.safetensors` file or its folder).
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let ck = checkpoint::load(path)?;
        let identity = EmbedderIdentity {
            architecture: "autoencoder".into(),
            weights_digest: ck.digest.clone(),
            weights_origin: ck.weights_path.display().to_string(),
            dim: ck.config.dim,
            metric: Metric::L2,
            preprocessing: ck.config.transform(),
        };
        Ok(AutoencoderEmbedder {
            model: ck.model,
            identity,
        })
    }

    /// The model.
    pub fn model(&self) -> &Autoencoder {
        &self.model
    }
}

impl Embedder for AutoencoderEmbedder {
    fn identity(&self) -> &EmbedderIdentity {
        &self.identity
    }

    fn embed_batch(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        let t = &self.identity.preprocessing;
        embed_with(inputs, t, "autoencoder", false, |x| self.model.encode(x))
    }
}
