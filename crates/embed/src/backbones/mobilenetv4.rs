//! MobileNetV4-Conv-Small without its classifier: global average pool, then
//! timm's `conv_head` (960 → 1280) with its batch norm and ReLU, giving the
//! 1280-d pre-logits features (what timm's `forward_head(pre_logits=True)`
//! returns).
//!
//! Qin et al., "MobileNetV4: Universal Models for the Mobile Ecosystem"
//! (2024). Weight names follow timm's `mobilenetv4_conv_small`. Depthwise
//! convolutions run on our own direct kernel ([`crate::nn`]); batch norms are
//! folded at load time.

use candle_core::Tensor;

use crate::error::{EmbedError, Result};
use crate::nn::{global_avg_pool, Act, ConvBn, ConvSpec};
use crate::weights::Weights;

use super::Network;

const EPS: f64 = 1e-5;
const MODEL: &str = "mobilenetv4_conv_small";

/// A Universal Inverted Bottleneck: optional depthwise conv, 1×1 expansion,
/// optional depthwise conv (carrying the stride), 1×1 projection.
struct Uib {
    dw_start: Option<ConvBn>,
    pw_exp: ConvBn,
    dw_mid: Option<ConvBn>,
    pw_proj: ConvBn,
    skip: bool,
}

impl Uib {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = match &self.dw_start {
            Some(c) => c.forward(x)?,
            None => x.clone(),
        };
        y = self.pw_exp.forward(&y)?;
        if let Some(c) = &self.dw_mid {
            y = c.forward(&y)?;
        }
        if self.skip {
            self.pw_proj.forward_res(&y, Some(x))
        } else {
            self.pw_proj.forward(&y)
        }
    }
}

enum Layer {
    Conv(ConvBn),
    Uib(Box<Uib>),
}

/// One UIB block: (stage, index, in, out, start kernel, expanded, mid kernel, stride).
type UibSpec = (usize, usize, usize, usize, usize, usize, usize, usize);

/// UIB blocks of stages 2 and 3.
const UIBS: [UibSpec; 12] = [
    (2, 0, 64, 96, 5, 192, 5, 2),
    (2, 1, 96, 96, 0, 192, 3, 1),
    (2, 2, 96, 96, 0, 192, 3, 1),
    (2, 3, 96, 96, 0, 192, 3, 1),
    (2, 4, 96, 96, 0, 192, 3, 1),
    (2, 5, 96, 96, 3, 384, 0, 1),
    (3, 0, 96, 128, 3, 576, 3, 2),
    (3, 1, 128, 128, 5, 512, 5, 1),
    (3, 2, 128, 128, 0, 512, 5, 1),
    (3, 3, 128, 128, 0, 384, 5, 1),
    (3, 4, 128, 128, 0, 512, 3, 1),
    (3, 5, 128, 128, 0, 512, 3, 1),
];

/// MobileNetV4-Conv-Small.
pub struct MobileNetV4 {
    layers: Vec<Layer>,
    head: ConvBn,
}

impl MobileNetV4 {
    /// Builds `mobilenetv4_conv_small` from timm-named weights.
    pub fn conv_small(w: &Weights) -> Result<Self> {
        let cba = |name: &str, bn: &str, spec: ConvSpec| {
            ConvBn::load(w, MODEL, name, bn, spec, Act::Relu, EPS)
        };
        let mut layers = vec![Layer::Conv(cba(
            "conv_stem",
            "bn1",
            ConvSpec::new(3, 32, 3, 2),
        )?)];
        for (p, spec) in [
            ("blocks.0.0", ConvSpec::new(32, 32, 3, 2)),
            ("blocks.0.1", ConvSpec::new(32, 32, 1, 1)),
            ("blocks.1.0", ConvSpec::new(32, 96, 3, 2)),
            ("blocks.1.1", ConvSpec::new(96, 64, 1, 1)),
        ] {
            layers.push(Layer::Conv(cba(
                &format!("{p}.conv"),
                &format!("{p}.bn1"),
                spec,
            )?));
        }
        for (s, i, c_in, c_out, k_start, mid, k_mid, stride) in UIBS {
            let p = format!("blocks.{s}.{i}");
            let part = |part: &str, spec: ConvSpec, act: Act| {
                ConvBn::load(
                    w,
                    MODEL,
                    &format!("{p}.{part}.conv"),
                    &format!("{p}.{part}.bn"),
                    spec,
                    act,
                    EPS,
                )
            };
            let dw_start = if k_start > 0 {
                // Stride sits on the start conv only when there is no mid conv.
                let st = if k_mid == 0 { stride } else { 1 };
                Some(part(
                    "dw_start",
                    ConvSpec::depthwise(c_in, k_start, st),
                    Act::None,
                )?)
            } else {
                None
            };
            let pw_exp = part("pw_exp", ConvSpec::new(c_in, mid, 1, 1), Act::Relu)?;
            let dw_mid = if k_mid > 0 {
                Some(part(
                    "dw_mid",
                    ConvSpec::depthwise(mid, k_mid, stride),
                    Act::Relu,
                )?)
            } else {
                None
            };
            let pw_proj = part("pw_proj", ConvSpec::new(mid, c_out, 1, 1), Act::None)?;
            layers.push(Layer::Uib(Box::new(Uib {
                dw_start,
                pw_exp,
                dw_mid,
                pw_proj,
                skip: c_in == c_out && stride == 1,
            })));
        }
        layers.push(Layer::Conv(cba(
            "blocks.4.0.conv",
            "blocks.4.0.bn1",
            ConvSpec::new(128, 960, 1, 1),
        )?));
        let head = cba("conv_head", "norm_head", ConvSpec::new(960, 1280, 1, 1))?;
        Ok(MobileNetV4 { layers, head })
    }
}

impl Network for MobileNetV4 {
    fn dim(&self) -> usize {
        1280
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 4 || x.dim(1)? != 3 {
            return Err(EmbedError::Input(format!(
                "MobileNetV4 expects (B, 3, H, W), got {:?}",
                x.dims()
            )));
        }
        let mut y = x.clone();
        for l in &self.layers {
            y = match l {
                Layer::Conv(c) => c.forward(&y)?,
                Layer::Uib(u) => u.forward(&y)?,
            };
        }
        let pooled = global_avg_pool(&y)?;
        let (b, c) = pooled.dims2()?;
        let h = self.head.forward(&pooled.reshape((b, c, 1, 1))?)?;
        Ok(h.reshape((b, 1280))?)
    }
}
