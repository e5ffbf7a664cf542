//! Embedders named on the command line (`imgsim eval --embedder`, `imgsim
//! train head --base`): the baselines, `backbone:NAME`, `autoencoder:PATH`,
//! `head:PATH` and `collection:NAME`.

use std::path::Path;

use anyhow::{Context, Result};
use imgsim_embed::{
    baseline, load_embedder, Backbone, Embedder, HeadEmbedder, PretrainedEmbedder, WeightsSource,
    BASELINES,
};

use crate::collections::CollectionArg;
use crate::config::Settings;
use crate::exit::usage;

/// Loads the embedder `spec` names: `tiny`, `colour-histogram`,
/// `backbone:NAME` (with `weights`), `autoencoder:PATH` (a checkpoint of
/// either objective), `head:PATH` (the
/// head on the base it records) or `collection:NAME`.
pub fn load(spec: &str, weights: Option<&str>, settings: &Settings) -> Result<Box<dyn Embedder>> {
    if weights.is_some() && !spec.starts_with("backbone:") {
        return Err(usage(format!(
            "--weights applies to --embedder backbone:NAME, not `{spec}`"
        )));
    }
    if let Some(e) = baseline(spec) {
        return Ok(e);
    }
    if let Some(name) = spec.strip_prefix("backbone:") {
        let b = Backbone::parse(name)?;
        let source = weights.map(WeightsSource::parse).transpose()?;
        return Ok(Box::new(PretrainedEmbedder::load(b, source.as_ref())?));
    }
    if let Some(p) = spec.strip_prefix("autoencoder:") {
        return Ok(load_embedder(Path::new(p))?);
    }
    if let Some(p) = spec.strip_prefix("head:") {
        let record = imgsim_embed::head::checkpoint::load(Path::new(p))?.record;
        let base = load(&record.base.spec, record.base.weights.as_deref(), settings)
            .with_context(|| format!("loading the base of the head in {p}"))?;
        return Ok(Box::new(HeadEmbedder::load(base, Path::new(p))?));
    }
    if let Some(name) = spec.strip_prefix("collection:") {
        let arg = CollectionArg {
            collection: Some(name.to_string()),
        };
        let (collection, dir) = arg.open(settings)?;
        let record = imgsim_pipeline::EmbedderRecord::read(&collection)?
            .ok_or_else(|| imgsim_pipeline::PipelineError::NoEmbedder(dir.clone()))?;
        drop(collection);
        return Ok(record.load(&dir)?);
    }
    Err(usage(format!(
        "--embedder must be {}, backbone:NAME, autoencoder:PATH, head:PATH or collection:NAME with --images or --labels, not `{spec}`",
        BASELINES.join(", ")
    )))
}
