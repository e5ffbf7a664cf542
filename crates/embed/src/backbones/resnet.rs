//! ResNet-18 and ResNet-50 without their classifier: the globally pooled
//! features of the last stage (512-d and 2048-d).
//!
//! He et al., "Deep Residual Learning for Image Recognition" (2015). Weight
//! names follow torchvision and timm (`conv1`, `bn1`, `layer1.0.conv1`,
//! `layer1.0.downsample.0`, ...), which agree; `fc.*` is ignored. Batch norms
//! are folded into the convolutions at load time.

use candle_core::Tensor;

use crate::error::{EmbedError, Result};
use crate::nn::{global_avg_pool, max_pool_3x3_s2, Act, ConvBn, ConvSpec};
use crate::weights::Weights;

use super::Network;

const EPS: f64 = 1e-5;

enum Block {
    Basic {
        conv1: ConvBn,
        conv2: ConvBn,
        down: Option<ConvBn>,
    },
    Bottleneck {
        conv1: ConvBn,
        conv2: ConvBn,
        conv3: ConvBn,
        down: Option<ConvBn>,
    },
}

impl Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Block::Basic { conv1, conv2, down } => {
                let short = match down {
                    Some(d) => d.forward(x)?,
                    None => x.clone(),
                };
                let y = conv1.forward(x)?;
                conv2.forward_res(&y, Some(&short))
            }
            Block::Bottleneck {
                conv1,
                conv2,
                conv3,
                down,
            } => {
                let short = match down {
                    Some(d) => d.forward(x)?,
                    None => x.clone(),
                };
                let y = conv2.forward(&conv1.forward(x)?)?;
                conv3.forward_res(&y, Some(&short))
            }
        }
    }
}

/// A ResNet trunk.
pub struct ResNet {
    stem: ConvBn,
    blocks: Vec<Block>,
    dim: usize,
}

impl ResNet {
    /// ResNet-18 (basic blocks 2-2-2-2), 512-d features.
    pub fn resnet18(w: &Weights) -> Result<Self> {
        Self::build(w, "resnet18", false, [2, 2, 2, 2])
    }

    /// ResNet-50 (bottlenecks 3-4-6-3), 2048-d features.
    pub fn resnet50(w: &Weights) -> Result<Self> {
        Self::build(w, "resnet50", true, [3, 4, 6, 3])
    }

    fn build(
        w: &Weights,
        model: &'static str,
        bottleneck: bool,
        layers: [usize; 4],
    ) -> Result<Self> {
        let stem = ConvBn::load(
            w,
            model,
            "conv1",
            "bn1",
            ConvSpec::new(3, 64, 7, 2),
            Act::Relu,
            EPS,
        )?;
        let expansion = if bottleneck { 4 } else { 1 };
        let mut c_in = 64;
        let mut blocks = Vec::new();
        for (li, &n) in layers.iter().enumerate() {
            let width = 64 << li;
            let c_out = width * expansion;
            for bi in 0..n {
                let stride = if bi == 0 && li > 0 { 2 } else { 1 };
                let p = format!("layer{}.{bi}", li + 1);
                let down = if bi == 0 && (stride != 1 || c_in != c_out) {
                    Some(ConvBn::load(
                        w,
                        model,
                        &format!("{p}.downsample.0"),
                        &format!("{p}.downsample.1"),
                        ConvSpec::new(c_in, c_out, 1, stride),
                        Act::None,
                        EPS,
                    )?)
                } else {
                    None
                };
                let cb = |i: usize, spec: ConvSpec, act: Act| {
                    ConvBn::load(
                        w,
                        model,
                        &format!("{p}.conv{i}"),
                        &format!("{p}.bn{i}"),
                        spec,
                        act,
                        EPS,
                    )
                };
                let block = if bottleneck {
                    Block::Bottleneck {
                        conv1: cb(1, ConvSpec::new(c_in, width, 1, 1), Act::Relu)?,
                        conv2: cb(2, ConvSpec::new(width, width, 3, stride), Act::Relu)?,
                        conv3: cb(3, ConvSpec::new(width, c_out, 1, 1), Act::Relu)?,
                        down,
                    }
                } else {
                    Block::Basic {
                        conv1: cb(1, ConvSpec::new(c_in, width, 3, stride), Act::Relu)?,
                        conv2: cb(2, ConvSpec::new(width, c_out, 3, 1), Act::Relu)?,
                        down,
                    }
                };
                blocks.push(block);
                c_in = c_out;
            }
        }
        Ok(ResNet {
            stem,
            blocks,
            dim: c_in,
        })
    }
}

impl Network for ResNet {
    fn dim(&self) -> usize {
        self.dim
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 4 || x.dim(1)? != 3 {
            return Err(EmbedError::Input(format!(
                "ResNet expects (B, 3, H, W), got {:?}",
                x.dims()
            )));
        }
        let mut y = max_pool_3x3_s2(&self.stem.forward(x)?)?;
        for b in &self.blocks {
            y = b.forward(&y)?;
        }
        global_avg_pool(&y)
    }
}
