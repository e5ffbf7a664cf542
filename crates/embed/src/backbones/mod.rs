//! Pretrained ImageNet backbones with their classifiers removed, one file
//! each; [`Backbone`] names them and knows their preprocessing and where
//! their weights live on the Hugging Face Hub.

pub(crate) mod clip;
mod mobilenetv4;
mod resnet;
pub(crate) mod transformer;
mod vit;

pub use mobilenetv4::MobileNetV4;
pub use resnet::ResNet;
pub use vit::{DinoV2, Vit};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{EmbedError, Result};
use crate::transform::{Interpolation, Transform};
use crate::weights::{Weights, WeightsSource};

/// A network mapping a batch `(B, 3, H, W)` to features `(B, dim)`.
pub trait Network: Send + Sync {
    /// Feature size.
    fn dim(&self) -> usize;
    /// Runs the batch.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
}

/// The pretrained backbones imgsim can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backbone {
    /// ResNet-18, 512-d (torchvision weights, as republished by timm).
    Resnet18,
    /// ResNet-50, 2048-d.
    Resnet50,
    /// MobileNetV4-Conv-Small, 1280-d: the fastest.
    Mobilenetv4Small,
    /// DINOv2 ViT-S/14 CLS token, 384-d: the best for retrieval.
    Dinov2Small,
    /// CLIP ViT-B/32 image tower, 512-d (the joint image–text space).
    ClipB32,
}

impl Backbone {
    /// All backbones, for listings.
    pub const ALL: [Backbone; 5] = [
        Backbone::Resnet18,
        Backbone::Resnet50,
        Backbone::Mobilenetv4Small,
        Backbone::Dinov2Small,
        Backbone::ClipB32,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Backbone::Resnet18 => "resnet18",
            Backbone::Resnet50 => "resnet50",
            Backbone::Mobilenetv4Small => "mobilenetv4-small",
            Backbone::Dinov2Small => "dinov2-small",
            Backbone::ClipB32 => "clip-b32",
        }
    }

    /// Parses a command-line name.
    pub fn parse(s: &str) -> Result<Self> {
        Backbone::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                EmbedError::Input(format!(
                    "unknown backbone `{s}` (known: {})",
                    Backbone::ALL.map(|b| b.name()).join(", ")
                ))
            })
    }

    /// Embedding size.
    pub fn dim(self) -> usize {
        match self {
            Backbone::Resnet18 => 512,
            Backbone::Resnet50 => 2048,
            Backbone::Mobilenetv4Small => 1280,
            Backbone::Dinov2Small => 384,
            Backbone::ClipB32 => 512,
        }
    }

    /// Whether the model has a text tower sharing its image space (CLIP),
    /// read from the same checkpoint.
    pub fn has_text(self) -> bool {
        matches!(self, Backbone::ClipB32)
    }

    /// The preprocessing the weights were trained with.
    pub fn transform(self) -> Transform {
        match self {
            // torchvision's ImageNet eval transform.
            Backbone::Resnet18 | Backbone::Resnet50 => Transform::imagenet(256, 224),
            // timm's pretrained_cfg: crop_pct 0.875, bicubic.
            Backbone::Mobilenetv4Small => {
                Transform::imagenet(256, 224).with_interpolation(Interpolation::Bicubic)
            }
            // DINOv2's evaluation transform (256 bicubic, crop 224).
            Backbone::Dinov2Small => {
                Transform::imagenet(256, 224).with_interpolation(Interpolation::Bicubic)
            }
            // OpenAI CLIP's own preprocessing: resize 224 bicubic, crop 224,
            // CLIP's mean and std.
            Backbone::ClipB32 => Transform {
                mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
                std: [0.268_629_54, 0.261_302_6, 0.275_777_1],
                ..Transform::imagenet(224, 224).with_interpolation(Interpolation::Bicubic)
            },
        }
    }

    /// The default weights on the Hugging Face Hub (timm's safetensors; for
    /// CLIP, open_clip's with both towers).
    pub fn hub_weights(self) -> WeightsSource {
        let repo = match self {
            Backbone::Resnet18 => "timm/resnet18.tv_in1k",
            Backbone::Resnet50 => "timm/resnet50.tv_in1k",
            Backbone::Mobilenetv4Small => "timm/mobilenetv4_conv_small.e2400_r224_in1k",
            Backbone::Dinov2Small => "timm/vit_small_patch14_dinov2.lvd142m",
            Backbone::ClipB32 => "timm/vit_base_patch32_clip_224.openai",
        };
        // CLIP: open_clip's full checkpoint in the same repository, both
        // towers in one download (timm's model.safetensors is the image
        // tower alone).
        let file = match self {
            Backbone::ClipB32 => "open_clip_model.safetensors",
            _ => "model.safetensors",
        };
        WeightsSource::Hub {
            repo: repo.into(),
            file: file.into(),
        }
    }

    /// Builds the network from `weights` for `image_size` inputs.
    pub fn build(self, weights: &Weights, image_size: usize) -> Result<Box<dyn Network>> {
        Ok(match self {
            Backbone::Resnet18 => Box::new(ResNet::resnet18(weights)?),
            Backbone::Resnet50 => Box::new(ResNet::resnet50(weights)?),
            Backbone::Mobilenetv4Small => Box::new(MobileNetV4::conv_small(weights)?),
            Backbone::Dinov2Small => Box::new(Vit::vit_small(weights, image_size)?),
            Backbone::ClipB32 => Box::new(Vit::clip_b32(
                &*clip::image_weights(weights, "vit_base_patch32_clip_quickgelu_224")?,
                image_size,
            )?),
        })
    }
}
