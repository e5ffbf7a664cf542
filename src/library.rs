//! Commands about photo collections: `index`, `query`, `dups`, `info`,
//! `check`, `remove`, `compact`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use imgsim_embed::{Backbone, WeightsSource};
use imgsim_index::Collection;
use imgsim_pipeline::files::Failure;
use imgsim_pipeline::indexer::IndexOptions;
use imgsim_pipeline::model::EmbedderChoice;
use imgsim_pipeline::search::{duplicate_groups, embed_file, query_vector};
use imgsim_pipeline::store::{CreateSettings, ReadyEvent};
use imgsim_pipeline::train::{AutoTrainOptions, TrainEvent};
use imgsim_pipeline::{Catalog, EmbedderRecord, IndexProgress, PipelineError};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{EmbedModel, Settings};

/// Exit code of an index run that finished but could not index some files.
pub const EXIT_SOME_FAILED: u8 = 3;
/// Exit code of an interrupted run (as shells report SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// The collection a command works on.
#[derive(Debug, Args, Clone)]
pub struct CollectionArg {
    /// Collection name (a folder in the data directory); default: the
    /// config's `collection` ("default").
    #[arg(long, short = 'c', env = "IMGSIM_COLLECTION")]
    pub collection: Option<String>,
}

impl CollectionArg {
    fn name<'a>(&'a self, settings: &'a Settings) -> &'a str {
        self.collection.as_deref().unwrap_or(&settings.collection)
    }

    fn dir(&self, settings: &Settings) -> Result<PathBuf> {
        Ok(imgsim_pipeline::collection_dir(
            &settings.data_dir(),
            self.name(settings),
        )?)
    }
}

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
    /// Use this trained autoencoder checkpoint (copied into the collection).
    #[arg(long, conflicts_with = "train_autoencoder")]
    pub autoencoder: Option<PathBuf>,
    /// Train an autoencoder on these images and use it (no download needed).
    #[arg(long)]
    pub train_autoencoder: bool,
    /// Re-embed everything with the embedder asked for, replacing the
    /// collection's (the old one stays usable until the new one is complete).
    #[arg(long)]
    pub reindex: bool,
    /// Remove entries whose files under PATHS no longer exist.
    #[arg(long)]
    pub prune: bool,
    /// Images per model call and per commit (default: config embed.batch_size).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Decode JPEGs at full size (only when the collection is created).
    #[arg(long)]
    pub exact_decode: bool,
    /// Write every failure (path and reason) to this file, as JSON.
    #[arg(long)]
    pub errors: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `imgsim query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The example image.
    #[arg(required_unless_present = "id", conflicts_with = "id")]
    pub image: Option<PathBuf>,
    /// Query with an indexed image (its id) instead; it is left out of the results.
    #[arg(long)]
    pub id: Option<u64>,
    /// The collection.
    #[command(flatten)]
    pub collection: CollectionArg,
    /// Number of results.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// HNSW candidate list size (default: the collection's ef_search).
    #[arg(long)]
    pub ef: Option<usize>,
    /// Also run exact search and report recall@k of the approximate answer.
    #[arg(long)]
    pub exact: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `imgsim dups`.
#[derive(Debug, Args)]
pub struct DupsArgs {
    /// The collection.
    #[command(flatten)]
    pub collection: CollectionArg,
    /// Cosine collections: minimum similarity (default 0.95). L2 collections:
    /// maximum distance (default: a tenth of the median nearest-neighbour distance).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Neighbours examined per image.
    #[arg(long, default_value_t = 10)]
    pub neighbours: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `imgsim info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The collection.
    #[command(flatten)]
    pub collection: CollectionArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `imgsim check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The collection.
    #[command(flatten)]
    pub collection: CollectionArg,
    /// Also search this many images (evenly spread) with their own vector;
    /// each must be found. 0: structure only.
    #[arg(long, default_value_t = 1000)]
    pub self_search: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Exit code of `imgsim check` when the collection is inconsistent.
pub const EXIT_INCONSISTENT: u8 = 4;

/// Arguments of `imgsim remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Item ids or file paths.
    #[arg(required = true)]
    pub items: Vec<String>,
    /// The collection.
    #[command(flatten)]
    pub collection: CollectionArg,
}

/// Arguments of `imgsim compact`.
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The collection.
    #[command(flatten)]
    pub collection: CollectionArg,
}

fn is_tty() -> bool {
    std::io::stderr().is_terminal()
}

fn embedder_choice(args: &IndexArgs, settings: &Settings) -> Result<EmbedderChoice> {
    if let Some(p) = &args.autoencoder {
        return Ok(EmbedderChoice::Autoencoder(p.clone()));
    }
    if args.train_autoencoder {
        return Ok(EmbedderChoice::TrainAutoencoder);
    }
    let e = &settings.embed;
    let backbone = Backbone::parse(args.backbone.as_deref().unwrap_or(&e.backbone))?;
    let weights = match args.weights.as_deref() {
        Some(w) => Some(WeightsSource::parse(w)?),
        None if !e.weights.is_empty() => Some(WeightsSource::parse(&e.weights)?),
        None => None,
    };
    if args.backbone.is_some() || args.weights.is_some() {
        return Ok(EmbedderChoice::Backbone { backbone, weights });
    }
    Ok(match e.model {
        EmbedModel::Auto if weights.is_none() => EmbedderChoice::Auto { backbone },
        EmbedModel::Auto | EmbedModel::Backbone => EmbedderChoice::Backbone { backbone, weights },
        EmbedModel::Autoencoder => EmbedderChoice::TrainAutoencoder,
    })
}

fn bar(show: bool, len: u64, template: &str) -> ProgressBar {
    if !show || !is_tty() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    b
}

/// Installs the Ctrl-C handler: the first press stops after the batch in
/// flight (everything committed stays), the second exits at once.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting now (committed batches are safe)");
            std::process::exit(EXIT_INTERRUPTED as i32);
        }
        eprintln!("\ninterrupted: finishing the batch in flight (Ctrl-C again to quit now)");
    });
    flag
}

/// `imgsim index`. Returns the exit code: 0, [`EXIT_SOME_FAILED`] or [`EXIT_INTERRUPTED`].
pub fn index(args: &IndexArgs, settings: &Settings, quiet: bool) -> Result<u8> {
    let dir = args.collection.dir(settings)?;
    let name = args.collection.name(settings).to_string();
    let show = !quiet && !args.json;
    let choice = embedder_choice(args, settings)?;
    let limits = settings.limits.image_limits();
    let walk_started = Instant::now();
    if show {
        eprintln!("looking for images in {} path(s)…", args.paths.len());
    }
    let walk = imgsim_pipeline::walk(&args.paths)?;
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
    let create = CreateSettings {
        params: settings.index.params(),
        options: settings.storage.clone(),
        exact_decode: args.exact_decode || settings.embed.exact_decode,
        train: AutoTrainOptions {
            dim: settings.embed.autoencoder_dim,
            epochs: settings.embed.autoencoder_epochs,
            max_images: settings.embed.autoencoder_max_images,
            seed: 42,
            limits,
        },
    };
    let train_bar = bar(
        show,
        0,
        "{msg:>18} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}",
    );
    let last_line = std::sync::Mutex::new(Instant::now());
    let events = |e: ReadyEvent| match e {
        ReadyEvent::Notice(text) => {
            if !args.json || !quiet {
                train_bar.suspend(|| eprintln!("{text}"));
            }
        }
        ReadyEvent::Train(t) => {
            if !show {
                return;
            }
            match t {
                TrainEvent::Loading { done, total } => {
                    train_bar.set_length(total as u64);
                    train_bar.set_position(done as u64);
                    train_bar.set_message("loading images");
                }
                TrainEvent::Batch {
                    epoch,
                    epochs,
                    batch,
                    batches,
                    loss,
                } => {
                    train_bar.set_length(batches as u64);
                    train_bar.set_position(batch as u64);
                    train_bar.set_message(format!("epoch {epoch}/{epochs} loss {loss:.4}"));
                }
                TrainEvent::Epoch {
                    epoch,
                    epochs,
                    loss,
                } => {
                    let mut last = last_line.lock().unwrap_or_else(|p| p.into_inner());
                    if !is_tty() && (last.elapsed().as_secs() >= 10 || epoch == epochs) {
                        eprintln!("autoencoder: epoch {epoch}/{epochs}, loss {loss:.5}");
                        *last = Instant::now();
                    }
                }
            }
        }
    };
    let ready =
        imgsim_pipeline::ready_for_indexing(&dir, &choice, args.reindex, &files, &create, &events)
            .with_context(|| format!("getting collection `{name}` ({}) ready", dir.display()))?;
    train_bar.finish_and_clear();
    let mut walk = walk;
    let mut roots = args.paths.clone();
    if !ready.carried_paths.is_empty() {
        // Re-index: the old collection's files come along.
        let extra = imgsim_pipeline::walk(&ready.carried_paths)?;
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
    };
    let cancel = interrupt_flag();
    let pbar = bar(
        show,
        0,
        "indexing [{bar:30}] {pos}/{len} files, {per_sec}, ETA {eta} {msg}",
    );
    let started = Instant::now();
    let last = std::sync::Mutex::new(Instant::now());
    let progress = |p: &IndexProgress| {
        pbar.set_length(p.total as u64);
        pbar.set_position(p.done as u64);
        if p.failed > 0 {
            pbar.set_message(format!("({} failed)", p.failed));
        }
        if show && !is_tty() {
            let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
            if l.elapsed().as_secs() >= 10 || p.done == p.total {
                eprintln!(
                    "indexing: {}/{} files, {} embedded, {} failed, {:.1} images/s",
                    p.done,
                    p.total,
                    p.indexed,
                    p.failed,
                    p.indexed as f64 / started.elapsed().as_secs_f64().max(1e-9)
                );
                *l = Instant::now();
            }
        }
    };
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
    if let Some(path) = &args.errors {
        write_errors(path, &summary.errors)?;
    }
    if args.json {
        let mut v = serde_json::to_value(&summary)?;
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
            "collection `{name}`: {total} images; {:.1} s, {:.1} images/s (model alone {:.1} images/s)",
            summary.seconds, summary.images_per_s, summary.embed_images_per_s
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
        return Ok(EXIT_INTERRUPTED);
    }
    Ok(if summary.failed > 0 {
        EXIT_SOME_FAILED
    } else {
        0
    })
}

fn write_errors(path: &Path, errors: &[Failure]) -> Result<()> {
    let json = serde_json::to_string_pretty(errors)?;
    std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
}

fn open(settings: &Settings, c: &CollectionArg) -> Result<(Collection, PathBuf)> {
    let dir = c.dir(settings)?;
    let collection = imgsim_pipeline::open(&dir, &settings.storage).map_err(|e| match e {
        PipelineError::Index(imgsim_index::IndexError::NoCollection { .. }) => {
            anyhow::Error::new(e).context(format!(
                "collection `{}` does not exist yet: create it with `imgsim index FOLDER`{}",
                c.name(settings),
                if c.collection.is_none() {
                    ""
                } else {
                    " --collection NAME"
                }
            ))
        }
        other => other.into(),
    })?;
    Ok((collection, dir))
}

/// `imgsim query`.
pub fn query(args: &QueryArgs, settings: &Settings) -> Result<()> {
    if args.k == 0 {
        bail!("-k must be at least 1");
    }
    let (collection, dir) = open(settings, &args.collection)?;
    let started;
    let vector = if let Some(id) = args.id {
        started = Instant::now();
        collection
            .vector(id)
            .map_err(|_| PipelineError::NotFound(format!("with id {id}")))?
    } else {
        let image = args
            .image
            .as_deref()
            .context("an image or --id is needed")?;
        let record = EmbedderRecord::read(&collection)?
            .ok_or_else(|| PipelineError::NoEmbedder(dir.clone()))?;
        let embedder = record.load(&dir)?;
        started = Instant::now();
        embed_file(
            embedder.as_ref(),
            &record,
            image,
            &settings.limits.image_limits(),
        )?
    };
    let answer = query_vector(
        &collection,
        &vector,
        args.k,
        args.ef,
        args.exact,
        args.id,
        started,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let metric = collection.spec().metric;
    let label = match metric {
        imgsim_index::Metric::Cosine => "similarity",
        imgsim_index::Metric::L2 => "distance",
    };
    println!("{:>4}  {:>10}  {:>8}  path", "rank", label, "id");
    for h in &answer.results {
        println!("{:>4}  {:>10.4}  {:>8}  {}", h.rank, h.score, h.id, h.path);
    }
    if answer.results.is_empty() {
        println!("(the collection is empty)");
    }
    println!(
        "{} results in {:.1} ms ({} images, {}, ef {})",
        answer.results.len(),
        answer.took_ms,
        collection.len(),
        metric,
        args.ef
            .unwrap_or(collection.spec().params.ef_search)
            .max(args.k)
    );
    if let (Some(exact), Some(r)) = (&answer.exact, answer.recall_at_k) {
        println!("recall@{} against exact search: {r:.3}", args.k);
        if r < 1.0 {
            println!("exact answer:");
            for h in exact {
                println!("{:>4}  {:>10.4}  {:>8}  {}", h.rank, h.score, h.id, h.path);
            }
        }
    }
    Ok(())
}

/// `imgsim dups`.
pub fn dups(args: &DupsArgs, settings: &Settings) -> Result<()> {
    let (collection, _) = open(settings, &args.collection)?;
    let threshold = match args.threshold {
        Some(t) => t,
        None => imgsim_pipeline::search::default_dup_threshold(&collection, None)?,
    };
    let groups = duplicate_groups(&collection, threshold, args.neighbours.max(1), None)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "threshold": threshold,
                "metric": collection.spec().metric,
                "groups": groups,
            }))?
        );
        return Ok(());
    }
    let what = match collection.spec().metric {
        imgsim_index::Metric::Cosine => format!("similarity >= {threshold:.4}"),
        imgsim_index::Metric::L2 => format!("distance <= {threshold:.4}"),
    };
    println!(
        "{} groups of near-duplicates ({what}) among {} images",
        groups.len(),
        collection.len()
    );
    for (i, g) in groups.iter().enumerate() {
        println!("group {} ({} images):", i + 1, g.items.len());
        for m in &g.items {
            println!("  {:>10.4}  {:>8}  {}", m.score, m.id, m.path);
        }
    }
    Ok(())
}

/// `imgsim info`.
pub fn info(args: &InfoArgs, settings: &Settings) -> Result<()> {
    let (collection, dir) = open(settings, &args.collection)?;
    let stats = collection.stats();
    let record = EmbedderRecord::read(&collection)?;
    let manifest = collection.manifest();
    if args.json {
        let v = serde_json::json!({
            "name": args.collection.name(settings),
            "path": dir,
            "count": stats.count,
            "dim": stats.dim,
            "metric": stats.metric,
            "embedder": record,
            "index": stats.params,
            "segments": stats.segments,
            "sealed_rows": stats.sealed_rows,
            "appendable_rows": stats.appendable_rows,
            "tombstones": stats.tombstones,
            "disk_bytes": stats.disk_bytes,
            "memory_bytes": stats.memory_bytes,
            "format_version": stats.format_version,
            "created_unix_ms": manifest.created_unix_ms,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "collection  {} ({})",
        args.collection.name(settings),
        dir.display()
    );
    println!("images      {}", stats.count);
    println!("vectors     {}-d, {}", stats.dim, stats.metric);
    match &record {
        Some(r) => {
            println!("embedder    {}", r.describe());
            println!("            loaded from {}", r.spec.describe());
            let t = &r.identity.preprocessing;
            println!(
                "            input {}×{} (resize shorter side to {}, {:?}), {}",
                t.crop,
                t.crop,
                t.resize_shorter,
                t.interpolation,
                if r.exact_decode {
                    "exact JPEG decoding"
                } else {
                    "DCT-scaled JPEG decoding"
                }
            );
        }
        None => println!("embedder    none recorded (not an image collection)"),
    }
    println!(
        "index       HNSW m={} ef_construction={} ef_search={}; {} graph segments ({} vectors), {} recent vectors searched exactly",
        stats.params.m,
        stats.params.ef_construction,
        stats.params.ef_search,
        stats.segments,
        stats.sealed_rows,
        stats.appendable_rows
    );
    println!(
        "tombstones  {} ({:.1}% of stored vectors; compaction above {:.0}%)",
        stats.tombstones,
        100.0 * stats.tombstones as f64 / (stats.sealed_rows + stats.appendable_rows).max(1) as f64,
        100.0 * settings.storage.compact_tombstone_share
    );
    println!(
        "disk        {:.1} MiB; memory {:.1} MiB",
        stats.disk_bytes as f64 / (1 << 20) as f64,
        stats.memory_bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}

/// `imgsim check`: opening the collection already repairs what an
/// interrupted write left behind (see the index crate's commit protocol);
/// this then checks that graphs and sled agree, that no file or upload is
/// stored twice, and optionally that every image is found by its own vector.
pub fn check(args: &CheckArgs, settings: &Settings) -> Result<u8> {
    let (collection, dir) = open(settings, &args.collection)?;
    let started = Instant::now();
    let report = collection.verify(args.self_search)?;
    // The same file path, or the same upload, under two ids.
    let mut seen = std::collections::HashMap::new();
    let mut duplicated = Vec::new();
    for (id, meta) in collection.items()? {
        let key = if meta.source == imgsim_pipeline::indexer::SOURCE_UPLOAD {
            meta.attrs
                .get(imgsim_pipeline::indexer::ATTR_HASH)
                .and_then(|h| h.as_str())
                .map(|h| format!("upload:{h}"))
        } else {
            Some(meta.external_id.clone())
        };
        if let Some(key) = key {
            if let Some(first) = seen.insert(key.clone(), id) {
                duplicated.push((key, first, id));
            }
        }
    }
    let ok = report.is_consistent() && duplicated.is_empty();
    if args.json {
        let v = serde_json::json!({
            "name": args.collection.name(settings),
            "path": dir,
            "consistent": ok,
            "report": report,
            "duplicated": duplicated
                .iter()
                .map(|(k, a, b)| serde_json::json!({"key": k, "ids": [a, b]}))
                .collect::<Vec<_>>(),
            "seconds": started.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let list = |v: &[u64]| {
            let shown: Vec<String> = v.iter().take(20).map(u64::to_string).collect();
            format!("{} [{}]", v.len(), shown.join(", "))
        };
        println!(
            "collection  {} ({})",
            args.collection.name(settings),
            dir.display()
        );
        println!(
            "images      {} live in {} graph segments + the appendable segment; {} item records",
            report.live, report.segments, report.item_records
        );
        println!("missing metadata       {}", list(&report.missing_metadata));
        println!(
            "unreadable metadata    {}",
            list(&report.unreadable_metadata)
        );
        println!("metadata without vector {}", list(&report.orphan_metadata));
        println!("NaN/infinite vectors   {}", list(&report.non_finite));
        println!("unreachable graph rows {}", report.unreachable_rows);
        println!("stored twice           {}", duplicated.len());
        for (k, a, b) in duplicated.iter().take(20) {
            println!("    {k}: ids {a} and {b}");
        }
        println!(
            "self-search            {} searched, not found: {}",
            report.self_searched,
            list(&report.not_found_by_own_vector)
        );
        println!(
            "{} ({:.2} s)",
            if ok { "consistent" } else { "INCONSISTENT" },
            started.elapsed().as_secs_f64()
        );
    }
    Ok(if ok { 0 } else { EXIT_INCONSISTENT })
}

/// `imgsim remove`.
pub fn remove(args: &RemoveArgs, settings: &Settings) -> Result<()> {
    let (collection, _) = open(settings, &args.collection)?;
    let catalog = Catalog::load(&collection)?;
    let mut ids = Vec::new();
    for item in &args.items {
        let by_id = item
            .parse::<u64>()
            .ok()
            .filter(|id| collection.contains(*id));
        let id = match by_id {
            Some(id) => id,
            None => {
                let abs = std::path::absolute(item).unwrap_or_else(|_| PathBuf::from(item));
                let found = abs
                    .to_str()
                    .and_then(|p| catalog.id_of_path(p))
                    .or_else(|| catalog.id_of_path(item));
                found.ok_or_else(|| {
                    PipelineError::NotFound(format!("`{item}` (neither an id nor an indexed path)"))
                })?
            }
        };
        ids.push(id);
    }
    let n = collection.delete(&ids)?;
    let stats = collection.stats();
    println!(
        "removed {n}; {} images left, {} tombstones",
        stats.count, stats.tombstones
    );
    Ok(())
}

/// `imgsim compact`.
pub fn compact(args: &CompactArgs, settings: &Settings, quiet: bool) -> Result<()> {
    let (collection, _) = open(settings, &args.collection)?;
    let before = collection.stats();
    let b = bar(
        !quiet,
        before.count as u64,
        "compacting [{bar:30}] {pos}/{len}",
    );
    collection.compact(&|_, done, total| {
        b.set_length(total as u64);
        b.set_position(done as u64);
    })?;
    b.finish_and_clear();
    let after = collection.stats();
    println!(
        "compacted: {} images, tombstones {} -> {}, segments {} -> {}, disk {:.1} -> {:.1} MiB",
        after.count,
        before.tombstones,
        after.tombstones,
        before.segments,
        after.segments,
        before.disk_bytes as f64 / (1 << 20) as f64,
        after.disk_bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}
