//! Turning images into vectors: decoding under limits, the preprocessing
//! each model expects, pretrained backbones run with candle, and a
//! convolutional autoencoder trained here without labels.
//!
//! - [`load`]: decode any supported file (JPEG, PNG, WebP, GIF's first frame,
//!   BMP, TIFF, HEIC/HEIF, AVIF, JPEG XL, DNG) chosen by its content, not its
//!   name ([`format`]); apply the orientation; convert every colour type to
//!   8-bit sRGB, compositing transparency onto one fixed grey
//!   ([`load::ALPHA_BACKGROUND`]); refuse decompression bombs by their
//!   declared size before allocating. The formats decoded by libheif,
//!   LibRaw and jxl-oxide run in a child process under a time and memory
//!   bound ([`isolate`]).
//! - [`transform`]: the torchvision-style transform (resize the shorter side,
//!   centre crop, scale to `[0, 1]`, normalise by mean and std).
//! - [`Embedder`]: the one trait; [`PretrainedEmbedder`] runs a
//!   [`Backbone`] (ResNet-18/50, MobileNetV4-small, DINOv2 ViT-S/14, CLIP
//!   ViT-B/32 image tower) with
//!   weights from a local safetensors file or the Hugging Face Hub
//!   ([`WeightsSource`]).
//! - [`baselines`]: the tiny image and the colour histogram, embedders
//!   without weights that a model has to beat on a labelled set.
//! - [`autoencoder`]: a convolutional autoencoder trained here on unlabelled
//!   images; its bottleneck is the embedding ([`AutoencoderEmbedder`]).
//! - [`head`]: a projection head trained with labels on a frozen base
//!   embedder's vectors (supervised contrastive loss), and the embedder
//!   that runs base then head ([`HeadEmbedder`]).
//! - [`text`]: CLIP's tokenizer and text tower ([`TextEncoder`]): texts
//!   into the CLIP image space, for search by words and zero-shot labels.
//! - [`synthetic`]: deterministic weights shared with the PyTorch reference
//!   script, for the parity tests and throughput benchmarks.
//!
//! This crate knows images, not indexes: it never sees sled or hnsw_rs.
#![deny(missing_docs)]

pub mod autoencoder;
pub mod backbones;
pub mod baselines;
pub(crate) mod blas;
pub(crate) mod colour;
pub mod embedder;
pub mod error;
pub mod format;
pub mod head;
pub(crate) mod heif;
pub mod isolate;
pub(crate) mod jxl;
pub mod load;
pub(crate) mod nn;
pub(crate) mod raw;
pub mod resample;
pub mod synthetic;
pub mod text;
pub mod transform;
pub mod turbo;
pub mod weights;

pub use autoencoder::contrastive::ContrastiveEmbedder;
pub use autoencoder::{
    load_embedder, Autoencoder, AutoencoderConfig, AutoencoderEmbedder, Objective,
};
pub use backbones::{Backbone, Network};
pub use baselines::{baseline, ColourHistogramEmbedder, TinyImageEmbedder, BASELINES};
pub use embedder::{Embedder, EmbedderIdentity, Metric, PretrainedEmbedder};
pub use error::{EmbedError, Result};
pub use format::Format;
pub use head::{HeadEmbedder, HeadOptions};
pub use load::{decode_rgb, decode_rgb_reduced, load_rgb, load_rgb_reduced, ImageLimits};
pub use text::{ClipTokenizer, TextEncoder};
pub use transform::{Fit, Interpolation, Transform};
pub use weights::{Weights, WeightsSource};
