//! Which embedder a collection uses: chosen when it is created, recorded in
//! its manifest, and reloaded (and verified) for every later run.

use std::path::{Path, PathBuf};

use imgsim_embed::autoencoder::checkpoint;
use imgsim_embed::head::checkpoint as head_checkpoint;
use imgsim_embed::{
    load_embedder, Backbone, EmbedError, Embedder, EmbedderIdentity, HeadEmbedder,
    PretrainedEmbedder, WeightsSource,
};
use imgsim_index::Collection;
use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};

/// Manifest property holding the [`EmbedderRecord`] (JSON).
pub const EMBEDDER_PROPERTY: &str = "imgsim.embedder";
/// Folder, inside a collection, of an embedder checkpoint trained for it or
/// copied into it (a contrastive encoder or a reconstruction autoencoder).
pub const AUTOENCODER_DIR: &str = "autoencoder";
/// Folder, inside a collection, of the projection head copied into it.
pub const HEAD_DIR: &str = "head";

/// How to rebuild an embedder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EmbedderSpec {
    /// A pretrained backbone and its weights.
    Backbone {
        /// Backbone name (`dinov2-small`, ...).
        backbone: String,
        /// Where its weights come from.
        weights: WeightsSource,
    },
    /// A checkpoint trained here (contrastive encoder or reconstruction
    /// autoencoder, as its config says); a relative path is inside the collection.
    Autoencoder {
        /// The checkpoint folder.
        checkpoint: PathBuf,
    },
    /// A base embedder followed by a projection head trained on it.
    Head {
        /// The base.
        base: Box<EmbedderSpec>,
        /// The head's folder; a relative path is inside the collection.
        head: PathBuf,
    },
}

impl EmbedderSpec {
    /// Loads the embedder; `collection_dir` anchors relative checkpoint paths.
    pub fn load(&self, collection_dir: &Path) -> Result<Box<dyn Embedder>> {
        Ok(match self {
            EmbedderSpec::Backbone { backbone, weights } => {
                let b = Backbone::parse(backbone)?;
                Box::new(PretrainedEmbedder::load(b, Some(weights))?)
            }
            EmbedderSpec::Autoencoder { checkpoint } => {
                load_embedder(&collection_dir.join(checkpoint))?
            }
            EmbedderSpec::Head { base, head } => Box::new(HeadEmbedder::load(
                base.load(collection_dir)?,
                &collection_dir.join(head),
            )?),
        })
    }

    /// The choice that makes a new collection with this embedder: what
    /// the spec names, with paths inside the collection at `collection_dir`
    /// made absolute (they are copied into the new one).
    pub fn to_choice(&self, collection_dir: &Path) -> Result<EmbedderChoice> {
        Ok(match self {
            EmbedderSpec::Backbone { backbone, weights } => EmbedderChoice::Backbone {
                backbone: Backbone::parse(backbone)?,
                weights: Some(weights.clone()),
            },
            EmbedderSpec::Autoencoder { checkpoint } => {
                EmbedderChoice::Autoencoder(collection_dir.join(checkpoint))
            }
            EmbedderSpec::Head { base, head } => EmbedderChoice::WithHead {
                base: Box::new(base.to_choice(collection_dir)?),
                head: collection_dir.join(head),
            },
        })
    }

    /// In words, for messages.
    pub fn describe(&self) -> String {
        match self {
            EmbedderSpec::Backbone { backbone, weights } => {
                format!("{backbone} (weights {})", weights.describe())
            }
            EmbedderSpec::Autoencoder { checkpoint } if checkpoint.is_relative() => format!(
                "the embedder trained for the collection ({}/)",
                checkpoint.display()
            ),
            EmbedderSpec::Autoencoder { checkpoint } => {
                format!("the checkpoint in {}", checkpoint.display())
            }
            EmbedderSpec::Head { base, head } if head.is_relative() => format!(
                "{} with the head kept in the collection ({}/)",
                base.describe(),
                head.display()
            ),
            EmbedderSpec::Head { base, head } => {
                format!("{} with the head in {}", base.describe(), head.display())
            }
        }
    }
}

/// What a collection records about its embedder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedderRecord {
    /// How to load it.
    pub spec: EmbedderSpec,
    /// What it was when the collection was made (verified on every load).
    pub identity: EmbedderIdentity,
    /// Whether JPEGs were decoded at full size (queries must match).
    pub exact_decode: bool,
}

impl EmbedderRecord {
    /// The record of `collection`, if it has one.
    pub fn read(collection: &Collection) -> Result<Option<EmbedderRecord>> {
        let m = collection.manifest();
        let Some(raw) = m.properties.get(EMBEDDER_PROPERTY) else {
            return Ok(None);
        };
        serde_json::from_str(raw).map(Some).map_err(|e| {
            PipelineError::Index(imgsim_index::IndexError::Corrupt(format!(
                "embedder record: {e}"
            )))
        })
    }

    /// Stores the record in `collection` (durable on return).
    pub fn write(&self, collection: &Collection) -> Result<()> {
        let json = serde_json::to_string(self).expect("a record serialises");
        collection.set_property(EMBEDDER_PROPERTY, &json)?;
        Ok(())
    }

    /// Loads the recorded embedder and checks that it still is the same
    /// model (same weights digest, preprocessing, dimension).
    pub fn load(&self, collection_dir: &Path) -> Result<Box<dyn Embedder>> {
        let e = self.spec.load(collection_dir)?;
        if !e.identity().compatible(&self.identity) {
            return Err(PipelineError::WeightsChanged {
                what: self.spec.describe(),
                stored: self.identity.weights_digest.clone(),
                now: e.identity().weights_digest.clone(),
            });
        }
        Ok(e)
    }

    /// Whether the embedder has a text tower (search by words, zero-shot
    /// labels), known without loading it.
    pub fn has_text(&self) -> bool {
        match &self.spec {
            EmbedderSpec::Backbone { backbone, .. } => {
                Backbone::parse(backbone).is_ok_and(Backbone::has_text)
            }
            EmbedderSpec::Autoencoder { .. } | EmbedderSpec::Head { .. } => false,
        }
    }

    /// In words: architecture, dimension, weights.
    pub fn describe(&self) -> String {
        describe_identity(&self.identity)
    }
}

/// An identity in words.
pub fn describe_identity(id: &EmbedderIdentity) -> String {
    let digest: String = id.weights_digest.chars().take(12).collect();
    format!(
        "{} ({}-d, weights {digest}… from {})",
        id.architecture, id.dim, id.weights_origin
    )
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedderChoice {
    /// The collection's recorded embedder; for a new collection the default
    /// backbone if its weights can be had, otherwise an embedder trained
    /// on the collection.
    Auto {
        /// The backbone to try.
        backbone: Backbone,
    },
    /// A pretrained backbone (weights: the hub default when `None`).
    Backbone {
        /// The backbone.
        backbone: Backbone,
        /// Its weights.
        weights: Option<WeightsSource>,
    },
    /// An existing checkpoint of either objective (copied into the collection).
    Autoencoder(PathBuf),
    /// An embedder trained on the collection's own images, with the
    /// objective of [`crate::train::AutoTrainOptions::objective`].
    TrainAutoencoder,
    /// A projection head (its folder) on a base embedder; both are
    /// checked to belong together, and the head is copied into the collection.
    WithHead {
        /// The base it was trained on.
        base: Box<EmbedderChoice>,
        /// The head's folder.
        head: PathBuf,
    },
}

/// The outcome of resolving a choice for a new collection.
pub enum Resolved {
    /// An embedder, and how to record it.
    Ready(Box<dyn Embedder>, EmbedderSpec),
    /// An embedder must be trained first; `reason` says why (for `Auto`:
    /// why the backbone was not available).
    Train {
        /// Why.
        reason: String,
    },
}

/// Resolves `choice` into an embedder (or the need to train one). An
/// checkpoint is copied into `collection_dir` first, so that the
/// collection does not depend on a file elsewhere.
pub fn resolve(choice: &EmbedderChoice, collection_dir: &Path) -> Result<Resolved> {
    match choice {
        EmbedderChoice::Auto { backbone } => {
            let weights = backbone.hub_weights();
            match PretrainedEmbedder::load(*backbone, Some(&weights)) {
                Ok(e) => Ok(Resolved::Ready(
                    Box::new(e),
                    EmbedderSpec::Backbone {
                        backbone: backbone.name().to_string(),
                        weights,
                    },
                )),
                Err(e @ EmbedError::Hub { .. }) => Ok(Resolved::Train {
                    reason: e.to_string(),
                }),
                Err(e) => Err(e.into()),
            }
        }
        EmbedderChoice::Backbone { backbone, weights } => {
            let weights = weights.clone().unwrap_or_else(|| backbone.hub_weights());
            let weights = match weights {
                WeightsSource::File { path } => WeightsSource::File {
                    path: std::path::absolute(&path).map_err(crate::error::io(&path))?,
                },
                w => w,
            };
            let e = PretrainedEmbedder::load(*backbone, Some(&weights))?;
            Ok(Resolved::Ready(
                Box::new(e),
                EmbedderSpec::Backbone {
                    backbone: backbone.name().to_string(),
                    weights,
                },
            ))
        }
        EmbedderChoice::Autoencoder(src) => {
            // Load first: a broken checkpoint is refused before anything is copied.
            load_embedder(src)?;
            let dest = collection_dir.join(AUTOENCODER_DIR);
            copy_checkpoint(src, &dest)?;
            let e = load_embedder(&dest)?;
            Ok(Resolved::Ready(
                e,
                EmbedderSpec::Autoencoder {
                    checkpoint: PathBuf::from(AUTOENCODER_DIR),
                },
            ))
        }
        EmbedderChoice::TrainAutoencoder => Ok(Resolved::Train {
            reason: "an embedder trained on the collection was asked for".into(),
        }),
        EmbedderChoice::WithHead { base, head } => {
            let (base, spec) = match resolve(base, collection_dir)? {
                Resolved::Ready(e, spec) => (e, spec),
                Resolved::Train { reason } => {
                    return Err(PipelineError::Invalid(format!(
                        "the head in {} needs the base it was trained on, which is not available ({reason})",
                        head.display()
                    )))
                }
            };
            // Checked on the original first: a head for another base is
            // refused before anything is copied.
            let e = HeadEmbedder::load(base, head)?;
            let dest = collection_dir.join(HEAD_DIR);
            copy_head(head, &dest)?;
            let identity = e.identity().clone();
            let e = HeadEmbedder::load(e.into_base(), &dest)?;
            if !e.identity().compatible(&identity) {
                return Err(PipelineError::Invalid(format!(
                    "the head copied into {} differs from {}",
                    dest.display(),
                    head.display()
                )));
            }
            Ok(Resolved::Ready(
                Box::new(e),
                EmbedderSpec::Head {
                    base: Box::new(spec),
                    head: PathBuf::from(HEAD_DIR),
                },
            ))
        }
    }
}

/// Copies a head's weights and readable config into folder `dest`,
/// durably (see [`copy_checkpoint`]).
fn copy_head(src: &Path, dest: &Path) -> Result<()> {
    use imgsim_common::Storage;
    let storage = imgsim_common::LocalFs;
    let weights = head_checkpoint::weights_path(src);
    let config = weights.with_file_name(head_checkpoint::CONFIG_FILE);
    storage
        .create_dir_all(dest)
        .map_err(crate::error::io(dest))?;
    let to = dest.join(head_checkpoint::WEIGHTS_FILE);
    storage.copy(&weights, &to).map_err(crate::error::io(&to))?;
    if config.exists() {
        let to = dest.join(head_checkpoint::CONFIG_FILE);
        storage.copy(&config, &to).map_err(crate::error::io(&to))?;
    }
    Ok(())
}

/// Copies a checkpoint (weights and config) into folder `dest`, durably
/// (through the storage seam: each file fsynced and renamed into place, the
/// folder fsynced), so that a collection never records an embedder whose
/// checkpoint a power cut could lose.
fn copy_checkpoint(src: &Path, dest: &Path) -> Result<()> {
    use imgsim_common::Storage;
    let storage = imgsim_common::LocalFs;
    let (weights, config) = checkpoint::paths(src);
    storage
        .create_dir_all(dest)
        .map_err(crate::error::io(dest))?;
    for (from, name) in [
        (weights, checkpoint::WEIGHTS_FILE),
        (config, checkpoint::CONFIG_FILE),
    ] {
        let to = dest.join(name);
        storage.copy(&from, &to).map_err(crate::error::io(&to))?;
    }
    Ok(())
}
