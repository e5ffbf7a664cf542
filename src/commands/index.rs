//! `imgsim index`: walk folders, get the collection ready (choosing or
//! training its embedder), index new and changed files, print a summary.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use imgsim_common::Storage;
use imgsim_embed::{Backbone, WeightsSource};
use imgsim_pipeline::files::{Failure, WalkOptions};
use imgsim_pipeline::indexer::IndexOptions;
use imgsim_pipeline::model::EmbedderChoice;
use imgsim_pipeline::store::{CreateSettings, ReadyEvent};
use imgsim_pipeline::train::{AutoTrainOptions, TrainEvent};
use imgsim_pipeline::{IndexProgress, Summary};
use indicatif::ProgressBar;

use crate::collections::CollectionArg;
use crate::config::{EmbedModel, Settings};
use crate::exit;
use crate::output::{bar, rate, show_training, LogLines};
use crate::remote::index as remote_index;
use crate::remote::Remote;

/// Arguments of `imgsim index`.
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Folders (searched recursively) and files to index.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The collection.
    #[command(flatten)]
    pub collection: CollectionArg,
    /// Use this pretrained backbone (see `imgsim models`).
    #[arg(long, conflicts_with_all = ["autoencoder", "train_autoencoder"])]
    pub backbone: Option<String>,
    /// Weights of the backbone: a .safetensors file, hf:OWNER/REPO[:FILE], or synthetic:SEED.
    #[arg(long, conflicts_with_all = ["autoencoder", "train_autoencoder"])]
    pub weights: Option<String>,
    /// Use this checkpoint trained by `imgsim train autoencoder` (either
    /// objective; copied into the collection).
    #[arg(long, conflicts_with = "train_autoencoder")]
    pub autoencoder: Option<PathBuf>,
    /// Train an embedder on these images and use it (no download needed):
    /// the objective `[embed] offline` names (default contrastive).
    #[arg(long)]
    pub train_autoencoder: bool,
    /// Put this projection head (from `imgsim train head`) on the embedder:
    /// its base is the one the head records, or the one --backbone/--weights
    /// or --autoencoder name (it must be the base the head was trained on).
    /// The head is copied into the collection.
    #[arg(long, conflicts_with = "train_autoencoder")]
    pub head: Option<PathBuf>,
    /// Re-embed everything with the embedder asked for, replacing the
    /// collection's (the old one stays usable until the new one is complete).
    #[arg(long)]
    pub reindex: bool,
    /// Remove entries whose files under PATHS no longer exist.
    #[arg(long)]
    pub prune: bool,
    /// Leave out files and folders matching this glob (gitignore syntax,
    /// e.g. '*.png', 'screenshots/', '**/tmp/**'); repeatable.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Also index hidden files and folders (names starting with '.') and
    /// NAS metadata folders (@eaDir), which are skipped by default.
    #[arg(long)]
    pub hidden: bool,
    /// Images per model call and per commit (default: config embed.batch_size).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Decode JPEGs at full size (only when the collection is created).
    #[arg(long)]
    pub exact_decode: bool,
    /// Write every file that was not indexed (failed, or not an image), with
    /// the reason, to this file as JSON.
    #[arg(long, value_name = "FILE")]
    pub errors: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

fn embedder_choice(args: &IndexArgs, settings: &Settings) -> Result<EmbedderChoice> {
    if let Some(head) = &args.head {
        let base =
            if args.autoencoder.is_some() || args.backbone.is_some() || args.weights.is_some() {
                base_choice(args, settings)?
            } else {
                head_base_choice(head)?
            };
        return Ok(EmbedderChoice::WithHead {
            base: Box::new(base),
            head: head.clone(),
        });
    }
    base_choice(args, settings)
}

/// The base a head records, as a choice for `imgsim index`.
fn head_base_choice(head: &std::path::Path) -> Result<EmbedderChoice> {
    let base = imgsim_embed::head::checkpoint::load(head)?.record.base;
    if let Some(p) = base.spec.strip_prefix("autoencoder:") {
        return Ok(EmbedderChoice::Autoencoder(PathBuf::from(p)));
    }
    if let Some(name) = base.spec.strip_prefix("backbone:") {
        return Ok(EmbedderChoice::Backbone {
            backbone: Backbone::parse(name)?,
            weights: base
                .weights
                .as_deref()
                .map(WeightsSource::parse)
                .transpose()?,
        });
    }
    Err(exit::usage(format!(
        "the head in {} was trained on `{}`; a collection can be indexed with a head on a \
         backbone (--backbone NAME --weights FILE) or an autoencoder (--autoencoder PATH)",
        head.display(),
        base.spec
    )))
}

/// The embedder the flags and the config choose (without a head).
fn base_choice(args: &IndexArgs, settings: &Settings) -> Result<EmbedderChoice> {
    if let Some(p) = &args.autoencoder {
        return Ok(EmbedderChoice::Autoencoder(p.clone()));
    }
    if args.train_autoencoder {
        return Ok(EmbedderChoice::TrainAutoencoder);
    }
    configured_choice(settings, args.backbone.as_deref(), args.weights.as_deref())
}

/// The embedder the config's `[embed]` section chooses, with a backbone
/// or weights given on the command line taking precedence.
fn configured_choice(
    settings: &Settings,
    backbone: Option<&str>,
    weights: Option<&str>,
) -> Result<EmbedderChoice> {
    let e = &settings.embed;
    let explicit = backbone.is_some() || weights.is_some();
    let backbone = Backbone::parse(backbone.unwrap_or(&e.backbone))?;
    let weights = match weights {
        Some(w) => Some(WeightsSource::parse(w)?),
        None if !e.weights.is_empty() => Some(WeightsSource::parse(&e.weights)?),
        None => None,
    };
    if explicit {
        return Ok(EmbedderChoice::Backbone { backbone, weights });
    }
    Ok(match e.model {
        EmbedModel::Auto if weights.is_none() => EmbedderChoice::Auto { backbone },
        EmbedModel::Auto | EmbedModel::Backbone => EmbedderChoice::Backbone { backbone, weights },
        EmbedModel::Autoencoder => EmbedderChoice::TrainAutoencoder,
    })
}

/// How `imgsim index` creates a collection.
fn create_settings(settings: &Settings, exact_decode: bool) -> CreateSettings {
    CreateSettings {
        params: settings.index.params(),
        options: settings.storage.clone(),
        exact_decode: exact_decode || settings.embed.exact_decode,
        train: AutoTrainOptions {
            objective: settings.embed.offline,
            dim: settings.embed.autoencoder_dim,
            noise_std: 0.0,
            epochs: settings.embed.autoencoder_epochs,
            max_images: settings.embed.autoencoder_max_images,
            seed: 42,
            limits: settings.limits,
        },
    }
}

/// Creates collection `dir` (called `name`) as `imgsim FOLDERS index`
/// would with the config's settings, when it does not exist yet (what
/// `imgsim serve --watch` needs before it opens its collections): the
/// embedder `[embed]` chooses, an embedder trained on the folders'
/// images when that is the choice. Indexes nothing.
pub fn create_if_missing(
    settings: &Settings,
    name: &str,
    dir: &Path,
    folders: &[PathBuf],
) -> Result<()> {
    if imgsim_index::Collection::exists(dir) {
        return Ok(());
    }
    eprintln!("collection `{name}` does not exist: creating it for the watched folders");
    let walk = imgsim_pipeline::files::walk_with(folders, &WalkOptions::default())?;
    let files: Vec<PathBuf> = walk.files.into_iter().map(|f| f.path).collect();
    let choice = configured_choice(settings, None, None)?;
    let create = create_settings(settings, false);
    let lines = LogLines::new(true, Duration::from_secs(10));
    let events = |e: ReadyEvent| match e {
        ReadyEvent::Notice(text) => eprintln!("{text}"),
        ReadyEvent::Train(TrainEvent::Epoch {
            epoch,
            epochs,
            loss,
        }) => lines.maybe(epoch == epochs, || {
            format!("training: epoch {epoch}/{epochs}, loss {loss:.5}")
        }),
        ReadyEvent::Train(_) => {}
    };
    let ready = imgsim_pipeline::ready_for_indexing(dir, &choice, false, &files, &create, &events)
        .with_context(|| format!("creating collection `{name}` ({})", dir.display()))?;
    ready.collection.flush()?;
    eprintln!("collection `{name}`: embedder {}", ready.record.describe());
    Ok(())
}

/// Installs the Ctrl-C handler: the first press stops after the batch in
/// flight (everything committed stays), the second exits at once.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting now (committed batches are safe)");
            std::process::exit(exit::INTERRUPTED as i32);
        }
        eprintln!("\ninterrupted: finishing the batch in flight (Ctrl-C again to quit now)");
    });
    flag
}

/// `imgsim index` (through `remote` when a server owns the collection).
/// Returns the exit code: 0, [`exit::SOME_FAILED`] or [`exit::INTERRUPTED`].
pub fn run(
    args: &IndexArgs,
    settings: &Settings,
    quiet: bool,
    remote: Option<&Remote>,
) -> Result<u8> {
    match remote {
        Some(r) => run_remote(args, settings, quiet, r),
        None => run_here(args, settings, quiet),
    }
}

/// Indexes through the server that owns the collection: it walks and reads
/// the folders itself; the progress and the summary come back as NDJSON
/// and are shown as offline.
fn run_remote(args: &IndexArgs, settings: &Settings, quiet: bool, r: &Remote) -> Result<u8> {
    let dir = args.collection.dir(settings)?;
    let name = args.collection.name(settings).to_string();
    let offline_only = [
        ("--backbone", args.backbone.is_some()),
        ("--weights", args.weights.is_some()),
        ("--autoencoder", args.autoencoder.is_some()),
        ("--train-autoencoder", args.train_autoencoder),
        ("--head", args.head.is_some()),
        ("--reindex", args.reindex),
        ("--exact-decode", args.exact_decode),
    ];
    if let Some((flag, _)) = offline_only.iter().find(|(_, given)| *given) {
        return Err(exit::usage(format!(
            "{flag} chooses or changes the collection's embedder, which is done only without a \
             server: stop imgsim serve at {} and run this again (the server indexes with the \
             embedder the collection has)",
            r.url
        )));
    }
    let show = !quiet && !args.json;
    let mut paths = Vec::new();
    for p in &args.paths {
        paths.push(std::path::absolute(p).with_context(|| format!("{}", p.display()))?);
    }
    if show {
        eprintln!("looking for images in {} path(s)…", args.paths.len());
    }
    let request = remote_index::IndexRequest {
        paths,
        exclude: args.exclude.clone(),
        hidden: args.hidden,
        prune: args.prune,
        batch_size: args.batch_size.unwrap_or(settings.embed.batch_size),
        decode_threads: settings.embed.decode_threads,
    };
    // Ctrl-C ends the client; its hanging up stops the server's run after
    // the batch in flight.
    let url = r.url.clone();
    let _ = ctrlc::set_handler(move || {
        eprintln!(
            "\ninterrupted: imgsim serve at {url} stops after the batch in flight (committed batches stay); run the same command again to resume"
        );
        std::process::exit(exit::INTERRUPTED as i32);
    });
    let pbar = bar(
        show,
        0,
        "indexing [{bar:30}] {pos}/{len} files, {rate}, ETA {eta} {msg}",
    );
    let started = Instant::now();
    let lines = LogLines::new(show, Duration::from_secs(10));
    let mut on = |e: remote_index::Event<'_>| match e {
        remote_index::Event::Walked(w) => {
            if show {
                eprintln!(
                    "{} files found in {:.1} s{}",
                    w.files,
                    w.seconds,
                    if w.failures == 0 {
                        String::new()
                    } else {
                        format!(", {} unreadable entries", w.failures)
                    }
                );
            }
        }
        remote_index::Event::Ready(ready) => {
            if show {
                eprintln!(
                    "collection `{}` ({}): {} images, embedder {}",
                    ready.name,
                    ready.path.display(),
                    ready.count,
                    ready.embedder.as_deref().unwrap_or("none recorded")
                );
            }
        }
        remote_index::Event::Progress(p) => show_progress(&pbar, &lines, started, p),
    };
    let result = remote_index::run(r, &name, &request, &mut on);
    pbar.finish_and_clear();
    let summary = result.with_context(|| {
        format!(
            "indexing into collection `{name}` through imgsim serve at {} stopped",
            r.url
        )
    })?;
    let total = summary.total;
    report(args, &name, &dir, total, &summary)
}

/// Updates the progress bar (or prints a progress line) for `p`.
fn show_progress(pbar: &ProgressBar, lines: &LogLines, started: Instant, p: &IndexProgress) {
    pbar.set_length(p.total as u64);
    pbar.set_position(p.done as u64);
    if p.failed > 0 {
        pbar.set_message(format!("({} failed)", p.failed));
    }
    lines.maybe(p.done == p.total, || {
        format!(
            "indexing: {}/{} files, {} embedded, {} failed, {} images/s",
            p.done,
            p.total,
            p.indexed,
            p.failed,
            rate(p.indexed as f64 / started.elapsed().as_secs_f64().max(1e-9))
        )
    });
}

/// Indexes here, opening the collection.
fn run_here(args: &IndexArgs, settings: &Settings, quiet: bool) -> Result<u8> {
    let dir = args.collection.dir(settings)?;
    let name = args.collection.name(settings).to_string();
    let show = !quiet && !args.json;
    let choice = embedder_choice(args, settings)?;
    let limits = settings.limits;
    let walk_opts = WalkOptions {
        hidden: args.hidden,
        exclude: args.exclude.clone(),
    };
    let walk_started = Instant::now();
    if show {
        eprintln!("looking for images in {} path(s)…", args.paths.len());
    }
    let mut walk = imgsim_pipeline::files::walk_with(&args.paths, &walk_opts)?;
    let files: Vec<PathBuf> = walk.files.iter().map(|f| f.path.clone()).collect();
    if show {
        eprintln!(
            "{} files found in {:.1} s{}",
            files.len(),
            walk_started.elapsed().as_secs_f64(),
            if walk.failures.is_empty() {
                String::new()
            } else {
                format!(", {} unreadable entries", walk.failures.len())
            }
        );
    }
    let create = create_settings(settings, args.exact_decode);
    let train_bar = bar(show, 0, "{msg:>18} [{bar:30}] {pos}/{len} {rate} ETA {eta}");
    let epoch_lines = LogLines::new(show, Duration::from_secs(10));
    let events = |e: ReadyEvent| match e {
        ReadyEvent::Notice(text) => {
            // A choice made for the user is said even with --json (on
            // stderr); only --json with --quiet silences it.
            if !(args.json && quiet) {
                train_bar.suspend(|| eprintln!("{text}"));
            }
        }
        ReadyEvent::Train(t) => {
            if !show {
                return;
            }
            show_training(&train_bar, &t);
            match t {
                TrainEvent::Epoch {
                    epoch,
                    epochs,
                    loss,
                } => epoch_lines.maybe(epoch == epochs, || {
                    format!("training: epoch {epoch}/{epochs}, loss {loss:.5}")
                }),
                TrainEvent::Loading { .. } | TrainEvent::Batch { .. } => {}
            }
        }
    };
    let ready =
        imgsim_pipeline::ready_for_indexing(&dir, &choice, args.reindex, &files, &create, &events)
            .with_context(|| format!("getting collection `{name}` ({}) ready", dir.display()))?;
    train_bar.finish_and_clear();
    let mut roots = args.paths.clone();
    if !ready.carried_paths.is_empty() {
        // Re-index: the old collection's files come along.
        let extra = imgsim_pipeline::files::walk_with(&ready.carried_paths, &walk_opts)?;
        walk.files.extend(extra.files);
        walk.files.sort_by(|a, b| a.path.cmp(&b.path));
        walk.files.dedup_by(|a, b| a.path == b.path);
        roots.extend(ready.carried_paths.iter().cloned());
    }
    if show {
        eprintln!(
            "collection `{name}` ({}): {} images, embedder {}",
            dir.display(),
            ready.collection.len(),
            ready.record.describe()
        );
    }
    let opts = IndexOptions {
        batch_size: args.batch_size.unwrap_or(settings.embed.batch_size),
        decode_threads: settings.embed.decode_threads,
        limits,
        exact_decode: ready.record.exact_decode,
        prune: args.prune,
        thumbnails: Some(imgsim_common::local()),
    };
    let cancel = interrupt_flag();
    let pbar = bar(
        show,
        0,
        "indexing [{bar:30}] {pos}/{len} files, {rate}, ETA {eta} {msg}",
    );
    let started = Instant::now();
    let lines = LogLines::new(show, Duration::from_secs(10));
    let progress = |p: &IndexProgress| show_progress(&pbar, &lines, started, p);
    let result = imgsim_pipeline::index_files(
        &ready.collection,
        ready.embedder.as_ref(),
        walk,
        &roots,
        &opts,
        &cancel,
        &progress,
    );
    pbar.finish_and_clear();
    let summary = result.with_context(|| {
        format!(
            "indexing into collection `{name}` ({}) stopped; every batch committed before this error is intact: fix the cause and run the same command again to resume",
            dir.display()
        )
    })?;
    let collection = ready.collection;
    let total = collection.len();
    if let Some(new_dir) = &ready.reindexing {
        if summary.interrupted {
            eprintln!("re-index interrupted: the old collection is unchanged; run the same command again to continue");
        } else {
            collection.flush()?;
            drop(collection);
            imgsim_pipeline::store::finish_reindex(&dir, new_dir)?;
        }
    }
    report(args, &name, &dir, total, &summary)
}

/// Writes `--errors`, prints the summary (text or JSON) and returns the
/// exit code: the same offline and through a server.
fn report(args: &IndexArgs, name: &str, dir: &Path, total: usize, summary: &Summary) -> Result<u8> {
    if let Some(path) = &args.errors {
        let mut all = summary.errors.clone();
        all.extend(summary.not_images.iter().map(|p| Failure {
            path: p.clone(),
            error: "not an image".into(),
        }));
        write_errors(path, &all)?;
    }
    if args.json {
        let mut v = serde_json::to_value(summary)?;
        v["collection"] = serde_json::json!(name);
        v["path"] = serde_json::json!(dir);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "indexed {} ({} replaced), {} unchanged, {} duplicates, {} failed, {} not images, {} pruned",
            summary.indexed,
            summary.replaced,
            summary.unchanged,
            summary.duplicates,
            summary.failed,
            summary.skipped,
            summary.pruned
        );
        println!(
            "collection `{name}`: {total} images; {:.1} s, {} images/s (model alone {} images/s)",
            summary.seconds,
            rate(summary.images_per_s),
            rate(summary.embed_images_per_s)
        );
        for f in summary.errors.iter().take(20) {
            println!("  failed: {}: {}", f.path.display(), f.error);
        }
        if summary.errors.len() > 20 {
            println!(
                "  ... and {} more (--errors FILE writes them all)",
                summary.errors.len() - 20
            );
        }
    }
    if summary.interrupted {
        eprintln!("interrupted: everything counted above is committed; run the same command again to resume");
        return Ok(exit::INTERRUPTED);
    }
    Ok(if summary.failed > 0 {
        exit::SOME_FAILED
    } else {
        exit::OK
    })
}

/// Writes the files that were not indexed, as JSON, through the storage seam.
fn write_errors(path: &Path, errors: &[Failure]) -> Result<()> {
    let json = serde_json::to_string_pretty(errors)?;
    imgsim_common::LocalFs
        .write(path, json.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
