//! What the service holds: its collections (each with its embedder, live
//! recall estimate and ef controller), options, and counters.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use imgsim_embed::{Embedder, ImageLimits};
use imgsim_index::{recall_at_k_by_distance, Collection, Maintainer, Neighbor, OpenOptions};
use imgsim_pipeline::search::{Answer, QueryEmbedder, SearchOptions, RECALL_EPSILON};
use imgsim_pipeline::uploads::Uploads;
use imgsim_pipeline::EmbedderRecord;

use crate::error::ApiError;
use crate::offload::WorkerPool;
pub use crate::options::ServerOptions;

/// A rolling estimate of recall@k from sampled queries.
#[derive(Debug, Default)]
pub struct RecallWindow {
    recent: VecDeque<f64>,
    total: u64,
}

impl RecallWindow {
    fn push(&mut self, r: f64, cap: usize) {
        self.recent.push_back(r);
        while self.recent.len() > cap.max(1) {
            self.recent.pop_front();
        }
        self.total += 1;
    }

    /// Mean over the window, if any sample.
    pub fn mean(&self) -> Option<f64> {
        (!self.recent.is_empty())
            .then(|| self.recent.iter().sum::<f64>() / self.recent.len() as f64)
    }
}

/// One served collection.
pub struct Served {
    /// Its name (URL segment).
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
    /// The collection, opened with deferred maintenance: its seals and
    /// compactions run on `maintainer`'s thread, off the write path.
    pub collection: Arc<Collection>,
    /// The collection's maintenance thread.
    pub maintainer: Maintainer,
    /// Its embedder record, when it holds images.
    pub record: Option<EmbedderRecord>,
    embedder: OnceLock<Result<Arc<dyn Embedder>, String>>,
    /// The live recall estimate.
    pub recall: Mutex<RecallWindow>,
    /// The ef in use (the controller's, or the collection's ef_search).
    pub ef: AtomicUsize,
    /// Searches served.
    pub searches: AtomicU64,
    /// Its uploads (stored bytes, the idempotency table: an upload whose
    /// bytes are already stored answers with the existing id) and
    /// thumbnails.
    pub uploads: Uploads,
    /// Held by whoever indexes files into this collection (an `index`
    /// request, the folder watcher): runs are serialised so that two never
    /// plan against the same catalog and add one file twice.
    pub indexing: Mutex<()>,
}

impl Served {
    /// Opens collection folder `dir` as `name`.
    pub fn open(name: &str, dir: &Path, storage: &OpenOptions) -> Result<Served, ApiError> {
        let options = OpenOptions {
            deferred_maintenance: true,
            ..storage.clone()
        };
        let collection = Arc::new(imgsim_pipeline::open(dir, &options)?);
        let maintainer = Maintainer::start(collection.clone(), 0).map_err(|e| {
            ApiError::internal(format!(
                "cannot start the maintenance thread of `{name}`: {e}"
            ))
        })?;
        let record = EmbedderRecord::read(&collection)?;
        let ef = collection.spec().params.ef_search;
        let uploads = Uploads::open(&collection, imgsim_common::local())?;
        Ok(Served {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            collection,
            maintainer,
            record,
            embedder: OnceLock::new(),
            recall: Mutex::new(RecallWindow::default()),
            ef: AtomicUsize::new(ef),
            searches: AtomicU64::new(0),
            uploads,
            indexing: Mutex::new(()),
        })
    }

    /// Indexes `walk`'s files into this collection with its embedder, as
    /// `imgsim index` does offline (incremental; `roots` are the folders
    /// walked, for pruning). Runs one at a time per collection (see
    /// [`Served::indexing`]); blocks: call it from a background thread or
    /// the worker pool, never the async executor.
    pub fn index_files(
        &self,
        walk: imgsim_pipeline::Walk,
        roots: &[PathBuf],
        options: &imgsim_pipeline::IndexOptions,
        cancel: &std::sync::atomic::AtomicBool,
        progress: &(dyn Fn(&imgsim_pipeline::IndexProgress) + Sync),
    ) -> Result<imgsim_pipeline::Summary, ApiError> {
        let (embedder, _) = self.embedder()?;
        // Taken here, outside the pool: a pool thread waiting inside the
        // model may run another queued run, which must never wait for a
        // lock the frame beneath it holds.
        let _one_at_a_time = self.indexing.lock().unwrap_or_else(|p| p.into_inner());
        let pool = indexing_pool()?;
        Ok(pool.install(|| {
            imgsim_pipeline::index_files(
                &self.collection,
                embedder.as_ref(),
                walk,
                roots,
                options,
                cancel,
                progress,
            )
        })?)
    }

    /// The embedder, loaded on first use (and verified against the record).
    pub fn embedder(&self) -> Result<(Arc<dyn Embedder>, &EmbedderRecord), ApiError> {
        let record = self.record.as_ref().ok_or_else(|| {
            ApiError::invalid(format!(
                "collection `{}` records no image embedder: search it by vector or id",
                self.name
            ))
        })?;
        let e = self.embedder.get_or_init(|| {
            record
                .load(&self.dir)
                .map(Arc::from)
                .map_err(|e| e.to_string())
        });
        match e {
            Ok(e) => Ok((e.clone(), record)),
            Err(msg) => Err(ApiError::internal(format!(
                "the embedder of `{}` cannot be loaded: {msg}",
                self.name
            ))),
        }
    }

    /// Runs `f` with the collection's embedder (loaded on first use) and
    /// the decoding `limits`: what the pipeline embeds query images with.
    pub fn with_embedder<T>(
        &self,
        limits: &ImageLimits,
        f: impl FnOnce(&QueryEmbedder<'_>) -> T,
    ) -> Result<T, ApiError> {
        let (e, record) = self.embedder()?;
        Ok(f(&QueryEmbedder {
            embedder: e.as_ref(),
            record,
            limits,
        }))
    }

    /// The live recall estimate and how many samples it has seen.
    pub fn recall_estimate(&self) -> (Option<f64>, u64) {
        let w = self.recall.lock().unwrap_or_else(|p| p.into_inner());
        (w.mean(), w.total)
    }
}

/// The threads that index files inside the server (requests to index a
/// folder, the watcher), at a lower CPU priority than the request workers
/// so that searches preempt them: the model's parallel parts run here, and
/// the decoding and writing threads an indexing run starts inherit the
/// priority.
fn indexing_pool() -> Result<&'static rayon::ThreadPool, ApiError> {
    static POOL: OnceLock<Result<rayon::ThreadPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        imgsim_common::priority::background_pool("imgsim-index", 0).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| ApiError::internal(format!("cannot start the indexing threads: {e}")))
}

/// A sampled query, to be re-run exactly in the background.
pub struct Sample {
    /// Which collection.
    pub collection: Arc<Served>,
    /// The query vector.
    pub vector: Vec<f32>,
    /// What was answered.
    pub approx: Vec<Neighbor>,
    /// k.
    pub k: usize,
}

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (endpoint, status) → count.
    pub requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Searches and their summed seconds.
    pub search_count: AtomicU64,
    /// Summed search time, microseconds.
    pub search_micros: AtomicU64,
    /// Requests refused with 503 (the queue was full).
    pub busy: AtomicU64,
    /// Requests answered 504 (their work outlived `request_timeout_s`).
    pub timeouts: AtomicU64,
}

impl Metrics {
    /// Counts a request.
    pub fn count(&self, endpoint: &str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((endpoint.to_string(), status)).or_insert(0) += 1;
    }
}

/// The application state shared by all workers.
pub struct AppState {
    /// Served collections by name.
    pub collections: HashMap<String, Arc<Served>>,
    /// The collection used by `/embed` when none is named.
    pub default_collection: String,
    /// Settings.
    pub options: ServerOptions,
    /// Requests that may use or wait for the worker pool.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// The worker pool: decode, embed and search run here, off the async executor.
    pub pool: WorkerPool,
    /// Counters.
    pub metrics: Metrics,
    /// Sampled queries for the recall estimator.
    pub samples: std::sync::mpsc::SyncSender<Sample>,
    /// Queries seen, for sampling.
    pub query_counter: AtomicU64,
    /// The folder watchers (`[server] watch`).
    pub watchers: crate::watch::Watchers,
    /// When the next sample may be taken, µs since `started`.
    next_sample_us: AtomicU64,
    started: std::time::Instant,
}

impl AppState {
    /// Opens every collection in `data_dir` (folders holding one).
    pub fn open(
        data_dir: &Path,
        default_collection: &str,
        options: ServerOptions,
    ) -> Result<AppState, ApiError> {
        let mut collections = HashMap::new();
        let rd = std::fs::read_dir(data_dir).map_err(|e| {
            ApiError::internal(format!("cannot read data dir {}: {e}", data_dir.display()))
        })?;
        for entry in rd.flatten() {
            let p = entry.path();
            let Some(name) = p.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                continue;
            };
            if imgsim_pipeline::collection_dir(data_dir, &name).is_err() || !Collection::exists(&p)
            {
                continue;
            }
            let served = Served::open(&name, &p, &options.storage)?;
            tracing::info!(collection = %name, count = served.collection.len(), "serving");
            collections.insert(name, Arc::new(served));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Sample>(256);
        let window = options.recall_window;
        let target = options.target_recall;
        std::thread::Builder::new()
            .name("imgsim-recall".into())
            .spawn(move || recall_worker(rx, window, target))
            .map_err(|e| ApiError::internal(format!("cannot start the recall estimator: {e}")))?;
        let pool = WorkerPool::new(options.workers)
            .map_err(|e| ApiError::internal(format!("cannot start the worker pool: {e}")))?;
        Ok(AppState {
            pool,
            collections,
            default_collection: default_collection.to_string(),
            slots: Arc::new(tokio::sync::Semaphore::new(options.queue.max(1))),
            options,
            metrics: Metrics::default(),
            samples: tx,
            query_counter: AtomicU64::new(0),
            watchers: Default::default(),
            next_sample_us: AtomicU64::new(0),
            started: std::time::Instant::now(),
        })
    }

    /// The collection called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<Served>, ApiError> {
        self.collections
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no collection `{name}`")))
    }

    /// Counts a search of `served` and, if this one is sampled, queues it
    /// to be re-run exactly for the live recall estimate (approximate
    /// searches not by id only; never blocks: a full queue drops it).
    pub fn record_search(&self, served: &Arc<Served>, options: &SearchOptions, answer: &Answer) {
        served.searches.fetch_add(1, Ordering::Relaxed);
        self.metrics.search_count.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .search_micros
            .fetch_add((answer.timings.search_ms * 1e3) as u64, Ordering::Relaxed);
        // Filtered answers are not comparable with the unfiltered exact
        // re-run the estimate makes: they are left out of it.
        if !options.exact_only
            && answer.excluded.is_none()
            && options.label.is_none()
            && self.sample_this()
        {
            let _ = self.samples.try_send(Sample {
                collection: served.clone(),
                vector: answer.vector.clone(),
                approx: answer.neighbors.clone(),
                k: options.k,
            });
        }
    }

    /// Whether this query should be re-run exactly for the estimate.
    pub fn sample_this(&self) -> bool {
        let rate = self.options.recall_sample;
        if rate <= 0.0 {
            return false;
        }
        let n = self.query_counter.fetch_add(1, Ordering::Relaxed);
        let every = (1.0 / rate.min(1.0)).round().max(1.0) as u64;
        if !n.is_multiple_of(every) {
            return false;
        }
        // Rate limit: one sample per 1/max_per_s seconds at most.
        let max = self.options.recall_max_per_s;
        if max <= 0.0 {
            return false;
        }
        let now = self.started.elapsed().as_micros() as u64;
        let next = self.next_sample_us.load(Ordering::Relaxed);
        now >= next
            && self
                .next_sample_us
                .compare_exchange(
                    next,
                    now + (1e6 / max) as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

/// Re-runs sampled queries exactly; updates each collection's estimate and,
/// with a target, its ef.
fn recall_worker(rx: std::sync::mpsc::Receiver<Sample>, window: usize, target: Option<f64>) {
    for s in rx {
        let exact = match s.collection.collection.search_exact(&s.vector, s.k, None) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "exact re-run of a sampled query failed");
                continue;
            }
        };
        let r = recall_at_k_by_distance(&s.approx, &exact, s.k, RECALL_EPSILON);
        let mean = {
            let mut w = s
                .collection
                .recall
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            w.push(r, window);
            (w.recent.len() >= 20).then(|| w.mean()).flatten()
        };
        if let (Some(t), Some(m)) = (target, mean) {
            if adjust_ef(&s.collection.ef, s.k, m, t) {
                // Judge the new ef on its own queries.
                let mut w = s
                    .collection
                    .recall
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                w.recent.clear();
            }
        }
    }
}

/// The ef controller: up by a quarter when the estimate is under the
/// target, down by a tenth when it is comfortably above (by 0.01).
/// Returns whether ef changed.
pub fn adjust_ef(ef: &AtomicUsize, k: usize, estimate: f64, target: f64) -> bool {
    let cur = ef.load(Ordering::Relaxed);
    let next = if estimate < target {
        (cur + cur / 4 + 1).min(4096)
    } else if estimate > target + 0.01 {
        (cur - cur / 10).max(k.max(1))
    } else {
        cur
    };
    ef.store(next, Ordering::Relaxed);
    next != cur
}
