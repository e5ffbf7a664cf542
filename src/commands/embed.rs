//! `imgsim embed`: print the embedding of image files (a backbone or an
//! autoencoder checkpoint) or of texts (CLIP's text tower).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use imgsim_embed::{
    load_embedder, load_rgb, load_rgb_reduced, Backbone, Embedder, PretrainedEmbedder,
    WeightsSource,
};

use crate::config::Settings;

/// The backbone names, for `--backbone`'s possible values (so that `--help`
/// lists every one).
pub fn backbone_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(Backbone::ALL.map(|b| b.name()))
}

/// Which embedder to use, from the command line.
#[derive(Debug, Args, Clone)]
pub struct EmbedderArgs {
    /// Pretrained backbone (see `imgsim models`).
    #[arg(long, default_value = "dinov2-small", conflicts_with = "autoencoder",
          value_parser = backbone_names())]
    pub backbone: String,
    /// Backbone weights: a local .safetensors file, `hf:OWNER/REPO[:FILE]`
    /// (Hugging Face Hub, cached), or `synthetic:SEED` (random, for tests).
    /// Default: the backbone's timm weights on the Hub.
    #[arg(long)]
    pub weights: Option<String>,
    /// Use a checkpoint from `imgsim train autoencoder` (folder or
    /// .safetensors; contrastive or reconstruction) instead of a backbone.
    #[arg(long)]
    pub autoencoder: Option<PathBuf>,
    /// Put this projection head (`imgsim train head`) on the base it was
    /// trained on (recorded in the head).
    #[arg(long, conflicts_with_all = ["autoencoder", "weights"])]
    pub head: Option<PathBuf>,
}

impl EmbedderArgs {
    /// Loads the chosen embedder.
    pub fn load(&self, settings: &Settings) -> Result<Box<dyn Embedder>> {
        if let Some(p) = &self.head {
            return crate::embedders::load(&format!("head:{}", p.display()), None, settings);
        }
        if let Some(p) = &self.autoencoder {
            return Ok(load_embedder(p)?);
        }
        let backbone = Backbone::parse(&self.backbone)?;
        let source = self
            .weights
            .as_deref()
            .map(WeightsSource::parse)
            .transpose()?;
        Ok(Box::new(PretrainedEmbedder::load(
            backbone,
            source.as_ref(),
        )?))
    }
}

/// Arguments of `imgsim embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Image files.
    #[arg(required_unless_present = "text")]
    pub images: Vec<PathBuf>,
    /// Text to embed into the image space (repeatable; needs
    /// `--backbone clip-b32`).
    #[arg(long)]
    pub text: Vec<String>,
    /// The embedder.
    #[command(flatten)]
    pub embedder: EmbedderArgs,
    /// Print JSON (one object per image per line, after a header line with the embedder's identity).
    #[arg(long)]
    pub json: bool,
    /// Decode large JPEGs at full size (bit-exact torchvision preprocessing)
    /// instead of the faster DCT-scaled decoding.
    #[arg(long)]
    pub exact_decode: bool,
}

/// `imgsim embed`: prints the embedding of each image.
pub fn run(args: &EmbedArgs, settings: &Settings) -> Result<()> {
    let e = args.embedder.load(settings)?;
    let limits = settings.limits;
    if args.json {
        println!("{}", serde_json::json!({ "embedder": e.identity() }));
    } else {
        let id = e.identity();
        println!(
            "embedder {} ({}-d, {:?}, weights {} from {})",
            id.architecture, id.dim, id.metric, id.weights_digest, id.weights_origin
        );
    }
    let mut failed = 0;
    let print = |what: &serde_json::Value, name: &str, v: &[f32]| {
        if args.json {
            let mut o = what.clone();
            o["dim"] = v.len().into();
            o["embedding"] = serde_json::json!(v);
            println!("{o}");
        } else {
            let head: Vec<String> = v.iter().take(6).map(|x| format!("{x:+.4}")).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            println!(
                "{name}: [{} ...] dim {} norm {norm:.4}",
                head.join(", "),
                v.len()
            );
        }
    };
    for text in &args.text {
        match e.embed_texts(&[text.as_str()]) {
            Ok(mut v) => {
                let v = v.pop().unwrap_or_default();
                print(
                    &serde_json::json!({ "text": text }),
                    &format!("{text:?}"),
                    &v,
                );
            }
            // No text tower is the same for every text: say it once.
            Err(err @ imgsim_embed::EmbedError::NoTextTower { .. }) => return Err(err.into()),
            Err(err) => {
                failed += 1;
                eprintln!("error: {err}");
            }
        }
    }
    for path in &args.images {
        let shorter = e.preprocessing().resize_shorter;
        let decoded = if args.exact_decode {
            load_rgb(path, &limits)
        } else {
            load_rgb_reduced(path, &limits, shorter)
        };
        let result = decoded
            .and_then(|img| e.preprocess(&img))
            .and_then(|x| e.embed_batch(&[x]));
        match result {
            Ok(mut v) => {
                let v = v.pop().unwrap_or_default();
                print(
                    &serde_json::json!({ "path": path }),
                    &path.display().to_string(),
                    &v,
                );
            }
            Err(err) => {
                failed += 1;
                eprintln!("error: {err}");
            }
        }
    }
    if failed > 0 {
        let what = match (args.images.is_empty(), args.text.is_empty()) {
            (false, true) => "images",
            (true, false) => "texts",
            _ => "inputs",
        };
        bail!(
            "{failed} of {} {what} failed",
            args.images.len() + args.text.len()
        );
    }
    Ok(())
}
