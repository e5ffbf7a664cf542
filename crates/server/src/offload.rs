//! Running requests' blocking work (decoding, embedding, searching, sled
//! scans, file reads) on the worker pool, never on the async executor:
//! 503 when too many requests wait, 504 when the work outlives
//! `request_timeout_s`; a batch's many small jobs in bounded chunks that
//! take turns with other requests ([`offload_batch`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::web;

use crate::error::ApiError;
use crate::state::AppState;

/// A job of the worker pool.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// The threads that run requests' heavy work: plain threads taking jobs
/// from two queues, deliberately not a rayon pool. A request's work holds
/// locks (the collection's writer, the upload table) while it uses rayon
/// for its own parallel parts (matrix products, HNSW construction when an
/// insert seals a segment); on a rayon worker thread, waiting inside such a
/// part steals other queued jobs, so another request could run on the same
/// thread and block on the lock that thread already holds (a deadlock the
/// soak test hit). From a plain thread, rayon work runs in the global pool
/// while the caller simply waits.
///
/// Requests' jobs ([`WorkerPool::spawn`]) and batches' chunks
/// ([`WorkerPool::spawn_batch`]) wait in separate queues, and a worker
/// that finds both waiting alternates between them: a request arriving
/// while batches keep the pool busy waits for the chunks running now, not
/// for every chunk queued before it, and batches still get half the
/// workers' turns while requests keep coming.
pub struct WorkerPool {
    shared: Arc<(Mutex<Queues>, std::sync::Condvar)>,
    threads: usize,
}

/// The jobs waiting for a worker.
#[derive(Default)]
struct Queues {
    /// Requests' jobs.
    requests: std::collections::VecDeque<Job>,
    /// Batches' chunks.
    batches: std::collections::VecDeque<Job>,
    /// Set when the pool is dropped: the workers finish what is queued,
    /// then stop.
    closed: bool,
}

impl Queues {
    /// The next job for a worker whose last job was a request's
    /// (`batch_turn`: a batch's chunk goes first if one waits).
    fn next(&mut self, batch_turn: bool) -> Option<(Job, bool)> {
        if !self.batches.is_empty() && (batch_turn || self.requests.is_empty()) {
            return self.batches.pop_front().map(|j| (j, true));
        }
        self.requests.pop_front().map(|j| (j, false))
    }
}

impl WorkerPool {
    /// Starts `threads` workers (0: one per core).
    pub fn new(threads: usize) -> std::io::Result<WorkerPool> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        let shared = Arc::new((Mutex::new(Queues::default()), std::sync::Condvar::new()));
        for i in 0..threads {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("imgsim-worker-{i}"))
                .spawn(move || {
                    let (queues, ready) = &*shared;
                    // Whether a batch's chunk goes first next time.
                    let mut batch_turn = false;
                    loop {
                        let job = {
                            let mut q = lock(queues);
                            loop {
                                if let Some((job, was_batch)) = q.next(batch_turn) {
                                    batch_turn = !was_batch;
                                    break job;
                                }
                                if q.closed {
                                    return; // the pool was dropped
                                }
                                q = ready.wait(q).unwrap_or_else(|p| p.into_inner());
                            }
                        };
                        job();
                    }
                })?;
        }
        Ok(WorkerPool { shared, threads })
    }

    /// How many workers it runs.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Queues a request's `job` (run by the next free worker).
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        self.push(Box::new(job), false);
    }

    /// Queues a chunk of a batch (see [`offload_batch`]): it takes turns
    /// with requests' jobs.
    pub fn spawn_batch(&self, job: impl FnOnce() + Send + 'static) {
        self.push(Box::new(job), true);
    }

    fn push(&self, job: Job, batch: bool) {
        let (queues, ready) = &*self.shared;
        let mut q = lock(queues);
        if batch {
            q.batches.push_back(job);
        } else {
            q.requests.push_back(job);
        }
        drop(q);
        ready.notify_one();
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        let (queues, ready) = &*self.shared;
        lock(queues).closed = true;
        ready.notify_all();
    }
}

/// Runs `f` on the worker pool and waits for its answer: 503 (`Busy`) at
/// once when `queue` requests already wait for or use the pool, 504
/// (`GatewayTimeout`) when the answer has not come within
/// `request_timeout_s` (the work itself runs on; its answer is dropped).
pub async fn offload<T: Send + 'static>(
    state: &web::Data<AppState>,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let permit = state.slots.clone().try_acquire_owned().map_err(|_| {
        state.metrics.busy.fetch_add(1, Ordering::Relaxed);
        ApiError::Busy
    })?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    state.pool.spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|_| Err(ApiError::internal("the request's work panicked")));
        drop(permit);
        let _ = tx.send(r);
    });
    let secs = state.options.request_timeout_s.max(1);
    match tokio::time::timeout(std::time::Duration::from_secs(secs), rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(ApiError::internal("the worker went away")),
        Err(_) => {
            state.metrics.timeouts.fetch_add(1, Ordering::Relaxed);
            Err(ApiError::GatewayTimeout(secs))
        }
    }
}

/// Items of a batch one worker job runs before it goes back to the end of
/// the batches' queue: a request arriving meanwhile waits for at most the
/// chunks running now (one per worker), not for the whole batch.
pub const BATCH_CHUNK: usize = 8;

/// Where a batch's answer goes: its answers in order, or its error.
type Answer<T> = tokio::sync::oneshot::Sender<Result<Vec<T>, ApiError>>;

/// A batch in progress: the items not yet claimed, the answers so far,
/// and where the whole answer goes.
struct Batch<I, T, F> {
    /// The next item's index, and the items not yet claimed.
    todo: Mutex<(usize, std::vec::IntoIter<I>)>,
    /// Answers by index.
    done: Mutex<Vec<Option<T>>>,
    /// The first error, by index (the lowest index that failed).
    failed: Mutex<Option<(usize, ApiError)>>,
    /// Set by an error: the lanes stop claiming.
    stop: AtomicBool,
    /// Lanes still running; the last one to finish answers.
    lanes: AtomicUsize,
    /// Where the answer goes (taken by the last lane).
    tx: Mutex<Option<Answer<T>>>,
    /// The work, item by item.
    f: F,
    /// The batch's place among the requests using the pool (one, like a
    /// single request), given back when the batch ends.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl<I, T, F> Batch<I, T, F>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(usize, I) -> Result<T, ApiError> + Send + Sync + 'static,
{
    /// Up to [`BATCH_CHUNK`] items not yet claimed, with their indices.
    fn claim(&self) -> Vec<(usize, I)> {
        if self.stop.load(Ordering::Relaxed) {
            return Vec::new();
        }
        // Nobody waits for a batch whose client has gone (504, or hung up).
        if lock(&self.tx).as_ref().is_none_or(|tx| tx.is_closed()) {
            return Vec::new();
        }
        let mut todo = lock(&self.todo);
        let (next, items) = &mut *todo;
        let chunk: Vec<(usize, I)> = items
            .by_ref()
            .take(BATCH_CHUNK)
            .enumerate()
            .map(|(j, item)| (*next + j, item))
            .collect();
        *next += chunk.len();
        chunk
    }

    /// One lane's turn: runs a chunk, then queues the lane again at the end
    /// of the pool's queue; with nothing left, ends the lane (and the last
    /// lane sends the answer).
    fn turn(self: Arc<Self>, state: web::Data<AppState>) {
        let chunk = self.claim();
        if chunk.is_empty() {
            if self.lanes.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.answer();
            }
            return;
        }
        for (i, item) in chunk {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.f)(i, item)))
                .unwrap_or_else(|_| Err(ApiError::internal("the request's work panicked")));
            match r {
                Ok(t) => lock(&self.done)[i] = Some(t),
                Err(e) => {
                    let mut failed = lock(&self.failed);
                    if failed.as_ref().is_none_or(|(j, _)| i < *j) {
                        *failed = Some((i, e));
                    }
                    self.stop.store(true, Ordering::Relaxed);
                }
            }
        }
        let st = state.clone();
        state.pool.spawn_batch(move || self.turn(st));
    }

    /// Sends the answers in order, or the first error.
    fn answer(&self) {
        let Some(tx) = lock(&self.tx).take() else {
            return;
        };
        let r = match lock(&self.failed).take() {
            Some((_, e)) => Err(e),
            None => std::mem::take(&mut *lock(&self.done))
                .into_iter()
                .enumerate()
                .map(|(i, t)| {
                    t.ok_or_else(|| ApiError::internal(format!("item {i} of the batch was lost")))
                })
                .collect(),
        };
        let _ = tx.send(r);
    }
}

/// Locks `m`, through a poisoning panic (the data stays usable: every
/// writer leaves it whole).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f(i, item)` for every item of a batch on the worker pool and
/// waits for the answers, in the items' order, or the error of the first
/// item (by index) that failed, the rest then left undone. The batch counts
/// as one request in the queue (503 at once when it is full, like
/// [`offload`]) and runs on at most one worker per pool thread at a time,
/// [`BATCH_CHUNK`] items per job, each lane going back to the end of the
/// batches' queue after its chunk, which takes turns with the requests'
/// queue ([`WorkerPool`]): single requests arriving meanwhile wait for the
/// chunks running now, not for this batch or others. 504 when the whole
/// batch has not finished within `request_timeout_s` (the chunks not yet
/// started are then dropped).
pub async fn offload_batch<I, T, F>(
    state: &web::Data<AppState>,
    items: Vec<I>,
    f: F,
) -> Result<Vec<T>, ApiError>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(usize, I) -> Result<T, ApiError> + Send + Sync + 'static,
{
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let permit = state.slots.clone().try_acquire_owned().map_err(|_| {
        state.metrics.busy.fetch_add(1, Ordering::Relaxed);
        ApiError::Busy
    })?;
    let n = items.len();
    let lanes = n.div_ceil(BATCH_CHUNK).min(state.pool.threads()).max(1);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let batch = Arc::new(Batch {
        todo: Mutex::new((0, items.into_iter())),
        done: Mutex::new((0..n).map(|_| None).collect()),
        failed: Mutex::new(None),
        stop: AtomicBool::new(false),
        lanes: AtomicUsize::new(lanes),
        tx: Mutex::new(Some(tx)),
        f,
        _permit: permit,
    });
    for _ in 0..lanes {
        let (b, st) = (batch.clone(), state.clone());
        state.pool.spawn_batch(move || b.turn(st));
    }
    drop(batch);
    let secs = state.options.request_timeout_s.max(1);
    match tokio::time::timeout(std::time::Duration::from_secs(secs), rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(ApiError::internal("the workers went away")),
        Err(_) => {
            state.metrics.timeouts.fetch_add(1, Ordering::Relaxed);
            Err(ApiError::GatewayTimeout(secs))
        }
    }
}
