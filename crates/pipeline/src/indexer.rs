//! Incremental, resumable indexing of image files into a collection.
//!
//! Three stages run at once: a decode stage (its own rayon pool) reads,
//! hashes, decodes and preprocesses the next batch while the embed stage
//! (the calling thread; the model uses the global rayon pool) runs the model
//! on the current one, and a writer thread commits finished batches to the
//! collection. Every committed batch is durable, so an interrupted run (Ctrl-C,
//! kill -9, power loss) resumes where it stopped: the next run finds those
//! files unchanged (same path, size and modification time) and skips them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::Instant;

use imgsim_common::Storage;
use imgsim_embed::{decode_rgb, decode_rgb_reduced, Embedder, ImageLimits, Transform};
use imgsim_index::{Collection, ItemMeta, NewItem};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};
use crate::files::{has_image_extension, size_and_mtime, sniff, Failure, FoundFile, Sniffed, Walk};
use crate::thumbnails::Thumbnails;

/// Item attribute: file size in bytes.
pub const ATTR_SIZE: &str = "size";
/// Item attribute: modification time, ns since the epoch.
pub const ATTR_MTIME: &str = "mtime_ns";
/// Item attribute: blake3 of the file's bytes, hex.
pub const ATTR_HASH: &str = "blake3";
/// Item attribute: image format.
pub const ATTR_FORMAT: &str = "format";
/// Item attribute: the path of the file this one is an exact copy of.
pub const ATTR_DUPLICATE_OF: &str = "duplicate_of";
/// `ItemMeta::source` of items made from files.
pub const SOURCE_FILE: &str = "file";
/// Item `source` of images added through the service's API.
pub const SOURCE_UPLOAD: &str = "upload";

/// How to index.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Images per model call (and per commit).
    pub batch_size: usize,
    /// Threads decoding and preprocessing (0: one per core).
    pub decode_threads: usize,
    /// Limits on files and decoded images.
    pub limits: ImageLimits,
    /// Decode JPEGs at full size instead of DCT-scaled.
    pub exact_decode: bool,
    /// Delete entries whose files, under the given folders, are gone.
    pub prune: bool,
    /// Write each image's thumbnail (`<collection>/thumbs/<id>.jpg`) from
    /// the decoded image, once its item is committed, through this storage
    /// (None: none written), so that browsing needs no decoding (the
    /// thumbnails of older items are still made on first request).
    pub thumbnails: Option<Arc<dyn Storage>>,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            batch_size: 16,
            decode_threads: 0,
            limits: ImageLimits::default(),
            exact_decode: false,
            prune: false,
            thumbnails: Some(imgsim_common::local()),
        }
    }
}

/// What an indexing run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Images embedded and added (new files and changed ones).
    pub indexed: usize,
    /// Of `indexed`, files already in the collection whose content changed
    /// (their old entry was replaced).
    pub replaced: usize,
    /// Files already indexed and not modified (or modified without a content change).
    pub unchanged: usize,
    /// Exact copies (same bytes) of an image already indexed: added with the
    /// original's vector, without decoding or embedding.
    pub duplicates: usize,
    /// Files that could not be indexed (see `errors`).
    pub failed: usize,
    /// Files that are not images (by content and name), ignored.
    pub skipped: usize,
    /// Entries removed because their files are gone (`--prune`).
    pub pruned: usize,
    /// Whether the run was interrupted before the end (what is counted was committed).
    pub interrupted: bool,
    /// Live items in the collection afterwards.
    pub total: usize,
    /// Wall time of this call, seconds: planning, pruning and the pipeline
    /// (the folder walk and any model training happen before).
    pub seconds: f64,
    /// Wall time of the decode/embed/write stage, seconds.
    pub pipeline_seconds: f64,
    /// Time spent inside the model, seconds.
    pub embed_seconds: f64,
    /// Images embedded per second of pipeline time.
    pub images_per_s: f64,
    /// Images embedded per second of model time: the embedder's own
    /// throughput on these batches.
    pub embed_images_per_s: f64,
    /// Each failure and its reason.
    pub errors: Vec<Failure>,
    /// Files left out because they are not images (by content and name).
    pub not_images: Vec<PathBuf>,
}

/// Progress reported after each committed batch.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct IndexProgress {
    /// Files examined so far (of those that needed work).
    pub done: usize,
    /// Files that need work (new or changed).
    pub total: usize,
    /// Images embedded so far.
    pub indexed: usize,
    /// Failures so far.
    pub failed: usize,
}

/// What the collection knows about one indexed file.
#[derive(Debug, Clone)]
struct Known {
    id: u64,
    size: u64,
    mtime_ns: u64,
    hash: String,
}

/// Lookup tables built from the collection's items.
#[derive(Debug, Default)]
pub struct Catalog {
    by_path: HashMap<String, Known>,
    by_hash: HashMap<String, u64>,
    /// Ids of stale entries: a path indexed twice (a crash between adding
    /// a changed file and removing its old entry); the newest is kept.
    stale: Vec<u64>,
}

fn attr_u64(meta: &ItemMeta, key: &str) -> u64 {
    meta.attrs.get(key).and_then(|v| v.as_u64()).unwrap_or(0)
}

fn attr_str<'a>(meta: &'a ItemMeta, key: &str) -> &'a str {
    meta.attrs.get(key).and_then(|v| v.as_str()).unwrap_or("")
}

impl Catalog {
    /// Reads the file items of `collection`.
    pub fn load(collection: &Collection) -> Result<Catalog> {
        let mut c = Catalog::default();
        for (id, meta) in collection.items()? {
            if meta.source != SOURCE_FILE {
                continue;
            }
            let hash = attr_str(&meta, ATTR_HASH).to_string();
            let known = Known {
                id,
                size: attr_u64(&meta, ATTR_SIZE),
                mtime_ns: attr_u64(&meta, ATTR_MTIME),
                hash: hash.clone(),
            };
            // Items come by ascending id: a later one for the same path wins.
            if let Some(old) = c.by_path.insert(meta.external_id, known) {
                c.stale.push(old.id);
            }
            if !hash.is_empty() {
                c.by_hash.entry(hash).or_insert(id);
            }
        }
        let stale: HashSet<u64> = c.stale.iter().copied().collect();
        c.by_hash.retain(|_, id| !stale.contains(id));
        Ok(c)
    }

    /// The id of the indexed file at `path` (as stored: absolute).
    pub fn id_of_path(&self, path: &str) -> Option<u64> {
        self.by_path.get(path).map(|k| k.id)
    }

    /// True when the file at `path` is indexed with this size and
    /// modification time (an incremental run would skip it).
    pub fn is_current(&self, path: &str, size: u64, mtime_ns: u64) -> bool {
        self.by_path
            .get(path)
            .is_some_and(|k| k.size == size && k.mtime_ns == mtime_ns)
    }

    /// Indexed file paths.
    pub fn paths(&self) -> impl Iterator<Item = (&str, u64)> {
        self.by_path.iter().map(|(p, k)| (p.as_str(), k.id))
    }
}

/// One file's fate after the decode stage.
enum Prepared {
    /// Decoded and preprocessed; to be embedded (with its thumbnail, a
    /// JPEG, when asked for).
    Image {
        input: Vec<f32>,
        thumbnail: Option<Vec<u8>>,
    },
    /// Same bytes as an indexed item: reuse its vector.
    Duplicate { of: u64 },
    /// The file changed on disk but not its content: only its record is updated.
    SameContent,
    /// Not an image and not named like one.
    Skipped,
    /// Unusable.
    Failed(String),
}

struct Work {
    file: FoundFile,
    path: String,
    old: Option<Known>,
}

struct Outcome {
    work: Work,
    size: u64,
    mtime_ns: u64,
    hash: String,
    format: String,
    prepared: Prepared,
}

/// A batch ready for the writer.
#[derive(Default)]
struct Commit {
    items: Vec<NewItem>,
    /// The thumbnail of each of `items` (None: none made, e.g. a copy).
    thumbnails: Vec<Option<Vec<u8>>>,
    /// Old entries to remove once `items` are in.
    replaced: Vec<u64>,
    /// Records to rewrite (unchanged content).
    updates: Vec<(u64, ItemMeta)>,
    /// What the batch amounts to, counted once it is committed.
    tally: Tally,
}

pub(crate) fn reason_without_path(e: &imgsim_embed::EmbedError, path: &Path) -> String {
    let msg = e.to_string();
    let prefix = format!("{}: ", path.display());
    msg.strip_prefix(&prefix).unwrap_or(&msg).to_string()
}

fn open_failure(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "vanished before it could be read".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => format!("cannot read: {e}"),
    }
}

/// Reads, hashes, sniffs, decodes and preprocesses one file.
fn prepare(
    work: Work,
    known_hashes: &HashMap<String, u64>,
    t: &Transform,
    opts: &IndexOptions,
) -> Outcome {
    use std::io::Read;
    let mut out = Outcome {
        size: work.file.size,
        mtime_ns: work.file.mtime_ns,
        hash: String::new(),
        format: String::new(),
        prepared: Prepared::Skipped,
        work,
    };
    let path = out.work.file.path.clone();
    let named_image = has_image_extension(&path);
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            out.prepared = Prepared::Failed(open_failure(&e));
            return out;
        }
    };
    if let Ok(m) = f.metadata() {
        (out.size, out.mtime_ns) = size_and_mtime(&m);
    }
    let mut bytes = Vec::new();
    let limit = opts.limits.max_file_bytes;
    // The header first: most non-images stop here.
    if let Err(e) = (&mut f).take(64).read_to_end(&mut bytes) {
        out.prepared = Prepared::Failed(format!("cannot read: {e}"));
        return out;
    }
    match sniff(&bytes) {
        Sniffed::Image(fmt) => out.format = fmt.name().to_string(),
        Sniffed::Empty if named_image => {
            out.prepared = Prepared::Failed("empty file (0 bytes)".into());
            return out;
        }
        Sniffed::NotImage if named_image => {
            out.prepared = Prepared::Failed(
                "not an image: the content matches no image format (magic bytes), whatever the name says".into(),
            );
            return out;
        }
        Sniffed::Unsupported(fmt) => {
            out.prepared = Prepared::Failed(format!(
                "{fmt} images are not supported ({} are)",
                supported_list()
            ));
            return out;
        }
        Sniffed::Empty | Sniffed::NotImage => return out,
    }
    // The rest, up to one byte past the limit (the header may already be
    // past a tiny limit: saturate rather than underflow).
    let rest = (limit + 1).saturating_sub(bytes.len() as u64);
    if let Err(e) = (&mut f).take(rest).read_to_end(&mut bytes) {
        out.prepared = Prepared::Failed(format!("cannot read: {e}"));
        return out;
    }
    if bytes.len() as u64 > limit {
        out.prepared = Prepared::Failed(format!(
            "file larger than the limit of {limit} bytes (limits.max_file_bytes)"
        ));
        return out;
    }
    out.size = bytes.len() as u64;
    // The whole file tells a DNG from a TIFF (its first IFD may lie past
    // the header read above).
    if let Sniffed::Image(fmt) = sniff(&bytes) {
        out.format = fmt.name().to_string();
    }
    out.hash = blake3::hash(&bytes).to_hex().to_string();
    if out.work.old.as_ref().is_some_and(|o| o.hash == out.hash) {
        out.prepared = Prepared::SameContent;
        return out;
    }
    if let Some(&of) = known_hashes.get(&out.hash) {
        if out.work.old.as_ref().is_none_or(|o| o.id != of) {
            out.prepared = Prepared::Duplicate { of };
            return out;
        }
    }
    let decoded = if opts.exact_decode {
        decode_rgb(&bytes, &path, &opts.limits)
    } else {
        decode_rgb_reduced(&bytes, &path, &opts.limits, t.resize_shorter)
    };
    out.prepared = match decoded.and_then(|img| {
        let input = t.apply(&img)?;
        let thumbnail = opts
            .thumbnails
            .is_some()
            .then(|| crate::thumbnails::jpeg_of(&img))
            .flatten();
        Ok((input, thumbnail))
    }) {
        Ok((input, thumbnail)) => Prepared::Image { input, thumbnail },
        Err(e) => Prepared::Failed(reason_without_path(&e, &path)),
    };
    out
}

/// "JPEG, PNG, ... and DNG": the formats decoded, for messages.
fn supported_list() -> String {
    let names: Vec<&str> = imgsim_embed::Format::ALL
        .iter()
        .map(|f| f.label())
        .collect();
    match names.split_last() {
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn item_meta(o: &Outcome, duplicate_of: Option<&str>) -> ItemMeta {
    let mut m = ItemMeta::new(o.work.path.clone(), SOURCE_FILE);
    let mut attrs = BTreeMap::new();
    attrs.insert(ATTR_SIZE.to_string(), o.size.into());
    attrs.insert(ATTR_MTIME.to_string(), o.mtime_ns.into());
    attrs.insert(ATTR_HASH.to_string(), o.hash.clone().into());
    attrs.insert(ATTR_FORMAT.to_string(), o.format.clone().into());
    if let Some(d) = duplicate_of {
        attrs.insert(ATTR_DUPLICATE_OF.to_string(), d.into());
    }
    m.attrs = attrs;
    m
}

/// Indexes the files of `walk` into `collection` with `embedder`.
///
/// `cancel` stops the run between batches (what was committed stays);
/// `progress` hears about every committed batch. Per-file problems are
/// collected in the summary; an error is returned only when the collection
/// itself fails (e.g. a full disk), after everything committed before it
/// was made durable.
pub fn index_files(
    collection: &Collection,
    embedder: &dyn Embedder,
    walk: Walk,
    roots: &[PathBuf],
    opts: &IndexOptions,
    cancel: &AtomicBool,
    progress: &(dyn Fn(&IndexProgress) + Sync),
) -> Result<Summary> {
    let start = Instant::now();
    if opts.batch_size == 0 {
        return Err(PipelineError::Invalid(
            "batch size must be at least 1".into(),
        ));
    }
    let mut summary = Summary {
        errors: walk.failures,
        ..Summary::default()
    };
    let mut catalog = Catalog::load(collection)?;
    if !catalog.stale.is_empty() {
        tracing::info!(
            count = catalog.stale.len(),
            "removing entries left behind by an interrupted update"
        );
        collection.delete(&catalog.stale)?;
        catalog.stale.clear();
    }

    // Plan: unchanged files are skipped without being opened.
    let mut todo = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for file in walk.files {
        let Some(path) = file.path.to_str().map(str::to_string) else {
            summary.errors.push(Failure {
                path: file.path.clone(),
                error: "the file name is not valid UTF-8".into(),
            });
            continue;
        };
        seen.insert(path.clone());
        let old = catalog.by_path.get(&path).cloned();
        if old
            .as_ref()
            .is_some_and(|k| k.size == file.size && k.mtime_ns == file.mtime_ns)
        {
            summary.unchanged += 1;
            continue;
        }
        todo.push(Work { file, path, old });
    }

    if opts.prune {
        summary.pruned = prune(
            collection,
            &catalog,
            roots,
            &seen,
            &thumbnails_of(collection, opts),
        )?;
    }

    let t = *embedder.preprocessing();
    let total = todo.len();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.decode_threads)
        .thread_name(|i| format!("imgsim-decode-{i}"))
        .build()
        .map_err(|e| PipelineError::Invalid(format!("cannot start decode threads: {e}")))?;
    let known_hashes = &catalog.by_hash;
    let pipe_start = Instant::now();
    let embed_time = AtomicUsize::new(0);
    let counters = std::sync::Mutex::new(Tally::default());

    let result: Result<()> = std::thread::scope(|s| {
        let (prep_tx, prep_rx) = sync_channel::<Vec<Outcome>>(1);
        let (commit_tx, commit_rx) = sync_channel::<Commit>(2);
        // Decode stage.
        s.spawn(move || {
            let mut todo = todo;
            while !todo.is_empty() {
                if cancel.load(Ordering::SeqCst) {
                    break;
                }
                let rest = todo.split_off(todo.len().min(opts.batch_size));
                let chunk = std::mem::replace(&mut todo, rest);
                let outcomes: Vec<Outcome> = pool.install(|| {
                    chunk
                        .into_par_iter()
                        .map(|w| prepare(w, known_hashes, &t, opts))
                        .collect()
                });
                if prep_tx.send(outcomes).is_err() {
                    break;
                }
            }
        });
        // Writer stage.
        let thumbs = thumbnails_of(collection, opts);
        let counters = &counters;
        let writer =
            s.spawn(move || write_stage(collection, &thumbs, commit_rx, total, counters, progress));
        // Embed stage, here.
        let embedded = embed_stage(collection, embedder, prep_rx, &commit_tx, &embed_time);
        drop(commit_tx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(PipelineError::Invalid("the writer thread panicked".into())));
        let (errors, not_images) = embedded?;
        summary.errors.extend(errors);
        summary.not_images = not_images;
        written
    });
    let pipeline_seconds = pipe_start.elapsed().as_secs_f64();
    let c = counters.into_inner().unwrap_or_else(|p| p.into_inner());
    summary.indexed = c.indexed;
    summary.replaced = c.replaced;
    summary.duplicates = c.duplicates;
    summary.unchanged += c.same_content;
    summary.skipped = c.skipped;
    summary.failed = summary.errors.len();
    summary.interrupted = cancel.load(Ordering::SeqCst) && c.examined < total;
    summary.total = collection.len();
    summary.seconds = start.elapsed().as_secs_f64();
    summary.pipeline_seconds = pipeline_seconds;
    summary.embed_seconds = embed_time.load(Ordering::SeqCst) as f64 / 1e6;
    let embedded_images = c.indexed as f64;
    summary.images_per_s = if pipeline_seconds > 0.0 {
        embedded_images / pipeline_seconds
    } else {
        0.0
    };
    summary.embed_images_per_s = if summary.embed_seconds > 0.0 {
        embedded_images / summary.embed_seconds
    } else {
        0.0
    };
    result.map(|()| summary)
}

/// The thumbnails of `collection`, written through the storage `opts`
/// gives (the local file system when it writes none: deleted items'
/// thumbnails are still removed).
fn thumbnails_of(collection: &Collection, opts: &IndexOptions) -> Thumbnails {
    let storage = opts.thumbnails.clone().unwrap_or_else(imgsim_common::local);
    Thumbnails::new(collection.path(), storage)
}

/// Deletes entries under `roots` whose files no longer exist (and their
/// thumbnails).
fn prune(
    collection: &Collection,
    catalog: &Catalog,
    roots: &[PathBuf],
    seen: &HashSet<String>,
    thumbs: &Thumbnails,
) -> Result<usize> {
    let abs_roots: Vec<PathBuf> = roots
        .iter()
        .filter_map(|r| std::path::absolute(r).ok())
        .collect();
    let mut gone = Vec::new();
    for (path, id) in catalog.paths() {
        if seen.contains(path) {
            continue;
        }
        let p = Path::new(path);
        if !abs_roots.iter().any(|r| p.starts_with(r)) {
            continue;
        }
        // Only a definite "not found" counts: an unreadable folder is not a deletion.
        if matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        {
            gone.push(id);
        }
    }
    let removed = collection.delete(&gone)?;
    thumbs.remove_all(&gone);
    Ok(removed)
}

/// Per-batch counts, carried to the writer with the batch, and their sum
/// over the committed batches: counts only include what was committed.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    examined: usize,
    indexed: usize,
    replaced: usize,
    duplicates: usize,
    same_content: usize,
    skipped: usize,
    failed: usize,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.examined += o.examined;
        self.indexed += o.indexed;
        self.replaced += o.replaced;
        self.duplicates += o.duplicates;
        self.same_content += o.same_content;
        self.skipped += o.skipped;
        self.failed += o.failed;
    }
}

/// Embeds prepared batches and hands them to the writer; returns the
/// per-file failures.
fn embed_stage(
    collection: &Collection,
    embedder: &dyn Embedder,
    rx: Receiver<Vec<Outcome>>,
    tx: &std::sync::mpsc::SyncSender<Commit>,
    embed_time: &AtomicUsize,
) -> Result<(Vec<Failure>, Vec<PathBuf>)> {
    let mut failures = Vec::new();
    let mut not_images = Vec::new();
    // Content hash -> (vector, path) of images embedded in this run, so
    // that copies within the run are not embedded twice.
    let mut fresh: HashMap<String, (Vec<f32>, String)> = HashMap::new();
    for batch in rx {
        let mut commit = Commit::default();
        let mut tally = Tally {
            examined: batch.len(),
            ..Tally::default()
        };
        let mut to_embed: Vec<(Outcome, Vec<f32>, Option<Vec<u8>>)> = Vec::new();
        let mut later: Vec<Outcome> = Vec::new();
        for mut o in batch {
            match std::mem::replace(&mut o.prepared, Prepared::Skipped) {
                Prepared::Image { input, thumbnail } => {
                    if fresh.contains_key(&o.hash)
                        || to_embed.iter().any(|(e, _, _)| e.hash == o.hash)
                    {
                        later.push(o);
                    } else {
                        to_embed.push((o, input, thumbnail));
                    }
                }
                Prepared::Duplicate { of } => match collection.vector(of) {
                    Ok(v) => {
                        let of_path = collection
                            .item(of)
                            .map(|m| m.external_id)
                            .unwrap_or_default();
                        if let Some(old) = &o.work.old {
                            commit.replaced.push(old.id);
                        }
                        commit.items.push(NewItem {
                            vector: v,
                            meta: item_meta(&o, Some(&of_path)),
                        });
                        commit.thumbnails.push(None);
                        tally.duplicates += 1;
                    }
                    // The original went away meanwhile: embed this one after all.
                    Err(_) => {
                        failures.push(Failure {
                            path: o.work.file.path.clone(),
                            error: "its identical original was removed during the run; re-run to index it".into(),
                        });
                        tally.failed += 1;
                    }
                },
                Prepared::SameContent => {
                    if let Some(old) = &o.work.old {
                        commit.updates.push((old.id, item_meta(&o, None)));
                    }
                    tally.same_content += 1;
                }
                Prepared::Skipped => {
                    not_images.push(o.work.file.path.clone());
                    tally.skipped += 1;
                }
                Prepared::Failed(error) => {
                    failures.push(Failure {
                        path: o.work.file.path.clone(),
                        error,
                    });
                    tally.failed += 1;
                }
            }
        }
        // The model call.
        let inputs: Vec<Vec<f32>> = to_embed
            .iter_mut()
            .map(|(_, i, _)| std::mem::take(i))
            .collect();
        let t0 = Instant::now();
        let vectors = embed_isolating(embedder, inputs);
        embed_time.fetch_add(t0.elapsed().as_micros() as usize, Ordering::SeqCst);
        let spec = collection.spec();
        for ((o, _, thumbnail), v) in to_embed.into_iter().zip(vectors) {
            // A vector the collection would refuse fails this file, not the batch.
            let v = v
                .map_err(|e| reason_without_path(&e, &o.work.file.path))
                .and_then(|v| {
                    if v.len() != spec.dim {
                        return Err(format!(
                            "the model gave a {}-d vector; the collection holds {}-d",
                            v.len(),
                            spec.dim
                        ));
                    }
                    // Checked, not normalised: the insert normalises, and
                    // normalising twice would store other last bits than
                    // `Collection::add` of the same vector (Python, Ray) does.
                    spec.metric
                        .check(&v, 0)
                        .map_err(|e| format!("unusable embedding: {e}"))?;
                    Ok(v)
                });
            match v {
                Ok(v) => {
                    if let Some(old) = &o.work.old {
                        commit.replaced.push(old.id);
                        tally.replaced += 1;
                    }
                    fresh.insert(o.hash.clone(), (v.clone(), o.work.path.clone()));
                    commit.items.push(NewItem {
                        vector: v,
                        meta: item_meta(&o, None),
                    });
                    commit.thumbnails.push(thumbnail);
                    tally.indexed += 1;
                }
                Err(error) => {
                    failures.push(Failure {
                        path: o.work.file.path.clone(),
                        error,
                    });
                    tally.failed += 1;
                }
            }
        }
        // Copies of images embedded in this run.
        for o in later {
            if let Some((v, of_path)) = fresh.get(&o.hash) {
                if let Some(old) = &o.work.old {
                    commit.replaced.push(old.id);
                }
                commit.items.push(NewItem {
                    vector: v.clone(),
                    meta: item_meta(&o, Some(of_path)),
                });
                commit.thumbnails.push(None);
                tally.duplicates += 1;
            } else {
                failures.push(Failure {
                    path: o.work.file.path.clone(),
                    error: "its identical copy in this run could not be embedded".into(),
                });
                tally.failed += 1;
            }
        }
        commit.tally = tally;
        if tx.send(commit).is_err() {
            // The writer stopped (its error is reported by the caller).
            break;
        }
    }
    Ok((failures, not_images))
}

/// Embeds a batch; when the batch fails, each input alone, so that one bad
/// input fails alone.
fn embed_isolating(
    embedder: &dyn Embedder,
    inputs: Vec<Vec<f32>>,
) -> Vec<std::result::Result<Vec<f32>, imgsim_embed::EmbedError>> {
    if inputs.is_empty() {
        return Vec::new();
    }
    match embedder.embed_batch(&inputs) {
        Ok(vs) => vs.into_iter().map(Ok).collect(),
        Err(e) if inputs.len() == 1 => vec![Err(e)],
        Err(_) => inputs
            .into_iter()
            .map(|i| {
                embedder
                    .embed_batch(std::slice::from_ref(&i))
                    .map(|mut v| v.pop().unwrap_or_default())
            })
            .collect(),
    }
}

/// Commits batches in order; stops at the first storage error.
fn write_stage(
    collection: &Collection,
    thumbs: &Thumbnails,
    rx: Receiver<Commit>,
    total: usize,
    counters: &std::sync::Mutex<Tally>,
    progress: &(dyn Fn(&IndexProgress) + Sync),
) -> Result<()> {
    for commit in rx {
        let added = commit.items.len();
        let ids = if added > 0 {
            collection.insert(commit.items)?
        } else {
            Vec::new()
        };
        // Committed: now the thumbnails (a crash before leaves none, to be
        // made on first request; a torn write leaves a temporary the next
        // sweep removes).
        thumbs.store_batch(ids.iter().copied().zip(commit.thumbnails));
        if !commit.replaced.is_empty() {
            collection.delete(&commit.replaced)?;
            thumbs.remove_all(&commit.replaced);
        }
        for (id, meta) in &commit.updates {
            collection.update_item(*id, meta)?;
        }
        tracing::debug!(added, removed = commit.replaced.len(), "batch committed");
        let c = {
            let mut c = counters.lock().unwrap_or_else(|p| p.into_inner());
            c.add(&commit.tally);
            *c
        };
        progress(&IndexProgress {
            done: c.examined,
            total,
            indexed: c.indexed,
            failed: c.failed,
        });
    }
    Ok(())
}
