//! Named collections in a data directory, and getting one ready for
//! indexing: choosing (or training) its embedder, refusing a different one,
//! and re-indexing with a new one without losing the old collection until
//! the new one is complete.

use std::path::{Path, PathBuf};

use imgsim_common::{LocalFs, Storage};
use imgsim_embed::{Embedder, EmbedderIdentity};
use imgsim_index::{Collection, CollectionSpec, HnswParams, Metric, OpenOptions};

use crate::error::{PipelineError, Result};
use crate::model::{resolve, EmbedderChoice, EmbedderRecord, EmbedderSpec, Resolved};
use crate::train::{train_on_files, AutoTrainOptions, TrainEvent};

/// Suffix of the collection being built by `--reindex`.
const REINDEX_SUFFIX: &str = "reindex";
/// Suffix of the old collection while the rebuilt one is swapped in.
const OLD_SUFFIX: &str = "old";

/// The folder of collection `name` in `data_dir`. Names are 1 to 64
/// characters of letters, digits, `-`, `_` and `.`, not starting with `.`.
pub fn collection_dir(data_dir: &Path, name: &str) -> Result<PathBuf> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(PipelineError::Invalid(format!(
            "`{name}` is not a valid collection name (1-64 letters, digits, '-', '_' or '.', not starting with '.')"
        )));
    }
    Ok(data_dir.join(name))
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push(format!(".{suffix}"));
    PathBuf::from(s)
}

/// Finishes or undoes a re-index swap that a crash interrupted: if the
/// collection folder is missing but the old one is there, it goes back.
pub fn recover(dir: &Path) -> Result<()> {
    let old = sibling(dir, OLD_SUFFIX);
    let storage = LocalFs;
    if !dir.exists() && Collection::exists(&old) {
        tracing::warn!(dir = %dir.display(), "restoring the collection from an interrupted re-index swap");
        storage.rename(&old, dir).map_err(crate::error::io(dir))?;
    } else if dir.exists() && old.exists() {
        storage
            .remove_dir_all(&old)
            .map_err(crate::error::io(&old))?;
    }
    Ok(())
}

/// Opens collection folder `dir` (after [`recover`]).
pub fn open(dir: &Path, options: &OpenOptions) -> Result<Collection> {
    recover(dir)?;
    Ok(Collection::open(dir, options.clone(), &|_, _, _| {})?)
}

/// Opens a collection for querying: the collection, its embedder record and
/// the embedder (verified against the record).
pub fn open_for_query(
    dir: &Path,
    options: &OpenOptions,
) -> Result<(Collection, EmbedderRecord, Box<dyn Embedder>)> {
    let c = open(dir, options)?;
    let record = EmbedderRecord::read(&c)?.ok_or_else(|| PipelineError::NoEmbedder(dir.into()))?;
    let e = record.load(dir)?;
    Ok((c, record, e))
}

/// Settings for a collection that may have to be created.
#[derive(Debug, Clone)]
pub struct CreateSettings {
    /// HNSW parameters.
    pub params: HnswParams,
    /// Handle options.
    pub options: OpenOptions,
    /// Decode JPEGs at full size.
    pub exact_decode: bool,
    /// Autoencoder training, when one must be trained.
    pub train: AutoTrainOptions,
}

/// Messages while getting ready.
pub enum ReadyEvent<'a> {
    /// Something the user should read (a choice made for them).
    Notice(&'a str),
    /// Autoencoder training.
    Train(TrainEvent),
}

/// A collection ready to be indexed into.
pub struct Ready {
    /// The collection (for `--reindex`: the new one, being built).
    pub collection: Collection,
    /// Its embedder.
    pub embedder: Box<dyn Embedder>,
    /// Its record.
    pub record: EmbedderRecord,
    /// With `--reindex`: where the new collection is, to swap in with
    /// [`finish_reindex`] once complete.
    pub reindexing: Option<PathBuf>,
    /// Paths of files the old collection held (with `--reindex`), to index too.
    pub carried_paths: Vec<PathBuf>,
}

impl Ready {
    /// An existing collection with its recorded embedder: `loaded` when the
    /// caller already has an instance of the same model (verified
    /// compatible), otherwise loaded from the record and verified.
    fn reopened(
        collection: Collection,
        record: EmbedderRecord,
        dir: &Path,
        loaded: Option<Box<dyn Embedder>>,
    ) -> Result<Ready> {
        let embedder = match loaded {
            Some(e) if e.identity().compatible(&record.identity) => e,
            _ => record.load(dir)?,
        };
        Ok(Ready {
            collection,
            embedder,
            record,
            reindexing: None,
            carried_paths: Vec::new(),
        })
    }
}

/// The collection metric that compares `e`'s vectors.
pub fn metric_of(e: &dyn Embedder) -> Metric {
    match e.metric() {
        imgsim_embed::Metric::Cosine => Metric::Cosine,
        imgsim_embed::Metric::L2 => Metric::L2,
    }
}

/// The embedder `choice` names, loaded, when it names a specific model
/// (`None` for "auto" and "train one").
fn requested_embedder(choice: &EmbedderChoice) -> Result<Option<Box<dyn Embedder>>> {
    Ok(match choice {
        EmbedderChoice::Auto { .. } | EmbedderChoice::TrainAutoencoder => None,
        EmbedderChoice::Backbone { backbone, weights } => {
            let w = weights.clone().unwrap_or_else(|| backbone.hub_weights());
            Some(Box::new(imgsim_embed::PretrainedEmbedder::load(
                *backbone,
                Some(&w),
            )?))
        }
        EmbedderChoice::Autoencoder(p) => Some(imgsim_embed::load_embedder(p)?),
        EmbedderChoice::WithHead { base, head } => match requested_embedder(base)? {
            Some(b) => Some(Box::new(imgsim_embed::HeadEmbedder::load(b, head)?)),
            None => None,
        },
    })
}

fn describe_choice(choice: &EmbedderChoice, id: Option<&EmbedderIdentity>) -> String {
    match (choice, id) {
        (_, Some(id)) => crate::model::describe_identity(id),
        (EmbedderChoice::TrainAutoencoder, None) => "a newly trained embedder".into(),
        _ => "the default embedder".into(),
    }
}

/// Gets collection `dir` ready for indexing `files` with `choice`: reopens it
/// with its recorded embedder (refusing a different one unless `reindex`),
/// or creates it, training an embedder on `files` when needed.
pub fn ready_for_indexing(
    dir: &Path,
    choice: &EmbedderChoice,
    reindex: bool,
    files: &[PathBuf],
    settings: &CreateSettings,
    events: &(dyn Fn(ReadyEvent) + Sync),
) -> Result<Ready> {
    recover(dir)?;
    if Collection::exists(dir) {
        let c = Collection::open(dir, settings.options.clone(), &|_, _, _| {})?;
        match EmbedderRecord::read(&c)? {
            Some(record) => {
                let requested = requested_embedder(choice)?;
                let same = match (&requested, choice) {
                    (Some(e), _) => record.identity.compatible(e.identity()),
                    (None, EmbedderChoice::TrainAutoencoder) => {
                        matches!(record.spec, EmbedderSpec::Autoencoder { .. })
                    }
                    (None, _) => true,
                };
                if same && !reindex {
                    return Ready::reopened(c, record, dir, requested);
                }
                if !reindex {
                    return Err(PipelineError::EmbedderMismatch {
                        collection: dir.to_path_buf(),
                        stored: record.describe(),
                        requested: describe_choice(
                            choice,
                            requested.as_ref().map(|e| e.identity()),
                        ),
                    });
                }
                // Re-index: build a new collection beside this one.
                let carried: Vec<PathBuf> = c
                    .items()?
                    .into_iter()
                    .filter(|(_, m)| m.source == crate::indexer::SOURCE_FILE)
                    .map(|(_, m)| PathBuf::from(m.external_id))
                    .filter(|p| p.exists())
                    .collect();
                drop(c);
                let new_dir = sibling(dir, REINDEX_SUFFIX);
                let mut all: Vec<PathBuf> = files.to_vec();
                all.extend(carried.iter().cloned());
                let mut r = create_or_continue(&new_dir, choice, &all, settings, events)?;
                r.reindexing = Some(new_dir);
                r.carried_paths = carried;
                return Ok(r);
            }
            None if c.is_empty() => {
                // Created, but killed before its embedder was recorded
                // (e.g. while its embedder was trained): carry on setting it up.
                drop(c);
            }
            None => return Err(PipelineError::NoEmbedder(dir.to_path_buf())),
        }
    }
    create_or_continue(dir, choice, files, settings, events)
}

/// Creates the collection at `dir` (or continues one left without an
/// embedder record, or a partial re-index with the same embedder).
fn create_or_continue(
    dir: &Path,
    choice: &EmbedderChoice,
    files: &[PathBuf],
    settings: &CreateSettings,
    events: &(dyn Fn(ReadyEvent) + Sync),
) -> Result<Ready> {
    if Collection::exists(dir) {
        let c = Collection::open(dir, settings.options.clone(), &|_, _, _| {})?;
        if let Some(record) = EmbedderRecord::read(&c)? {
            // A re-index interrupted earlier: continue it if the embedder
            // is the one asked for; otherwise start it again.
            let requested = requested_embedder(choice)?;
            if requested
                .as_ref()
                .is_none_or(|e| record.identity.compatible(e.identity()))
            {
                return Ready::reopened(c, record, dir, requested);
            }
        }
        if !c.is_empty() {
            drop(c);
            LocalFs.remove_dir_all(dir).map_err(crate::error::io(dir))?;
        }
    }
    LocalFs.create_dir_all(dir).map_err(crate::error::io(dir))?;
    let (embedder, spec) = match resolve(choice, dir)? {
        Resolved::Ready(e, spec) => (e, spec),
        Resolved::Train { reason } => {
            if matches!(choice, EmbedderChoice::Auto { .. }) {
                events(ReadyEvent::Notice(&format!(
                    "No pretrained weights available ({reason}).\nTraining {} on these images instead (no download needed). \
                     For a pretrained backbone, pass --backbone NAME --weights FILE.safetensors.",
                    objective_words(settings.train.objective)
                )));
            }
            let out = dir.join(crate::model::AUTOENCODER_DIR);
            // Trained by a run that was killed before the collection was created.
            if let Ok(e) = imgsim_embed::load_embedder(&out) {
                return finish_create(dir, e, autoencoder_spec(), settings);
            }
            let report = train_on_files(files, &out, &settings.train, &|e| {
                events(ReadyEvent::Train(e))
            })?;
            events(ReadyEvent::Notice(&format!(
                "trained {} ({}-d) on {} images, {} epochs, final loss {:.5}, {:.0} s",
                objective_words(report.objective),
                report.dim,
                report.images,
                report.epochs,
                report.loss,
                report.seconds
            )));
            (imgsim_embed::load_embedder(&out)?, autoencoder_spec())
        }
    };
    finish_create(dir, embedder, spec, settings)
}

/// Creates a new, empty collection at `dir` for the model `choice` names
/// and records it as `imgsim index` records a new collection's embedder
/// (a checkpoint or head is copied in), so that `imgsim query --image`,
/// `imgsim serve` and later `imgsim index` runs embed for it. Refuses a
/// folder that holds a collection, and a choice that names no model yet
/// ("auto", "train one").
pub fn create_for_embedder(
    dir: &Path,
    choice: &EmbedderChoice,
    settings: &CreateSettings,
) -> Result<Ready> {
    if let EmbedderChoice::Auto { .. } | EmbedderChoice::TrainAutoencoder = choice {
        return Err(PipelineError::Invalid(
            "a collection created for an embedder needs a model: a backbone with its weights, or a checkpoint".into(),
        ));
    }
    if Collection::exists(dir) {
        return Err(imgsim_index::IndexError::AlreadyExists { path: dir.into() }.into());
    }
    LocalFs.create_dir_all(dir).map_err(crate::error::io(dir))?;
    match resolve(choice, dir)? {
        Resolved::Ready(e, spec) => finish_create(dir, e, spec, settings),
        Resolved::Train { reason } => Err(PipelineError::Invalid(reason)),
    }
}

/// What training with `objective` makes, in words.
fn objective_words(objective: imgsim_embed::Objective) -> &'static str {
    match objective {
        imgsim_embed::Objective::Contrastive => "a contrastive self-supervised encoder",
        imgsim_embed::Objective::Reconstruction => "a reconstruction autoencoder",
    }
}

fn autoencoder_spec() -> EmbedderSpec {
    EmbedderSpec::Autoencoder {
        checkpoint: PathBuf::from(crate::model::AUTOENCODER_DIR),
    }
}

/// Creates (or reuses an empty) collection for `embedder` and records it.
fn finish_create(
    dir: &Path,
    embedder: Box<dyn Embedder>,
    spec: EmbedderSpec,
    settings: &CreateSettings,
) -> Result<Ready> {
    let spec_c = CollectionSpec {
        dim: embedder.dim(),
        metric: metric_of(embedder.as_ref()),
        params: settings.params,
    };
    let c = if Collection::exists(dir) {
        let c = Collection::open(dir, settings.options.clone(), &|_, _, _| {})?;
        if c.spec().dim != spec_c.dim || c.spec().metric != spec_c.metric {
            // Empty and unrecorded: safe to start again.
            drop(c);
            let keep = dir.join(crate::model::AUTOENCODER_DIR);
            remove_collection_data(dir, &keep)?;
            Collection::create(dir, spec_c, settings.options.clone())?
        } else {
            c
        }
    } else {
        Collection::create(dir, spec_c, settings.options.clone())?
    };
    let record = EmbedderRecord {
        spec,
        identity: embedder.identity().clone(),
        exact_decode: settings.exact_decode,
    };
    record.write(&c)?;
    Ok(Ready {
        collection: c,
        embedder,
        record,
        reindexing: None,
        carried_paths: Vec::new(),
    })
}

/// Removes everything in `dir` except `keep`.
fn remove_collection_data(dir: &Path, keep: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(crate::error::io(dir))? {
        let e = e.map_err(crate::error::io(dir))?;
        let p = e.path();
        if p == keep {
            continue;
        }
        if p.is_dir() {
            LocalFs.remove_dir_all(&p).map_err(crate::error::io(&p))?;
        } else {
            LocalFs.remove_file(&p).map_err(crate::error::io(&p))?;
        }
    }
    Ok(())
}

/// Swaps a completed re-index in: the old collection is renamed aside, the
/// new one takes its name, the old one is deleted. Each rename is made
/// durable (the data folder fsynced) before the next step, so a crash or
/// power cut at any point leaves one complete collection under the name
/// (see [`recover`]).
pub fn finish_reindex(dir: &Path, new_dir: &Path) -> Result<()> {
    finish_reindex_with(dir, new_dir, &LocalFs)
}

/// [`finish_reindex`] through `storage`.
pub fn finish_reindex_with(dir: &Path, new_dir: &Path, storage: &dyn Storage) -> Result<()> {
    let old = sibling(dir, OLD_SUFFIX);
    if old.exists() {
        storage
            .remove_dir_all(&old)
            .map_err(crate::error::io(&old))?;
    }
    storage.rename(dir, &old).map_err(crate::error::io(dir))?;
    storage
        .rename(new_dir, dir)
        .map_err(crate::error::io(dir))?;
    storage
        .remove_dir_all(&old)
        .map_err(crate::error::io(&old))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use imgsim_common::{FaultyFs, Op};
    use imgsim_index::{ItemMeta, NewItem};

    use super::*;

    fn make(dir: &Path, n: usize) {
        let c = crate::testing::collection_2d(dir);
        c.insert(
            (0..n)
                .map(|i| NewItem {
                    vector: vec![i as f32, 0.0],
                    meta: ItemMeta::new(format!("p{i}"), "test"),
                })
                .collect(),
        )
        .unwrap();
    }

    /// The re-index swap, failed at each of its storage operations: the
    /// name always opens as one complete collection, the old or the new.
    #[test]
    fn a_reindex_swap_failing_at_any_step_leaves_one_complete_collection() {
        let fs = FaultyFs::new();
        let probe = tempfile::tempdir().unwrap();
        make(&probe.path().join("c"), 1);
        make(&probe.path().join("c.reindex"), 2);
        finish_reindex_with(
            &probe.path().join("c"),
            &probe.path().join("c.reindex"),
            &fs,
        )
        .unwrap();
        let steps = fs.ops().len() as u64;
        assert!(fs.ops().iter().any(|(o, _)| *o == Op::SyncDir));
        for n in 0..steps {
            let d = tempfile::tempdir().unwrap();
            let (dir, new_dir) = (d.path().join("c"), d.path().join("c.reindex"));
            make(&dir, 1);
            make(&new_dir, 2);
            let fs = FaultyFs::new();
            fs.fail(None, n, 5, true);
            assert!(
                finish_reindex_with(&dir, &new_dir, &fs).is_err(),
                "step {n}"
            );
            let c = open(&dir, &OpenOptions::default()).unwrap();
            assert!(c.len() == 1 || c.len() == 2, "step {n}: {} items", c.len());
        }
    }
}
