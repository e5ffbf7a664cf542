//! Running requests' blocking work (decoding, embedding, searching, sled
//! scans, file reads) on the worker pool, never on the async executor:
//! 503 when too many requests wait, 504 when the work outlives
//! `request_timeout_s`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use actix_web::web;

use crate::error::ApiError;
use crate::state::AppState;

/// A job of the worker pool.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// The threads that run requests' heavy work: plain threads taking jobs
/// from a queue, deliberately not a rayon pool. A request's work holds
/// locks (the collection's writer, the upload table) while it uses rayon
/// for its own parallel parts (matrix products, HNSW construction when an
/// insert seals a segment); on a rayon worker thread, waiting inside such a
/// part steals other queued jobs, so another request could run on the same
/// thread and block on the lock that thread already holds (a deadlock the
/// soak test hit). From a plain thread, rayon work runs in the global pool
/// while the caller simply waits.
pub struct WorkerPool {
    queue: Mutex<std::sync::mpsc::Sender<Job>>,
}

impl WorkerPool {
    /// Starts `threads` workers (0: one per core).
    pub fn new(threads: usize) -> std::io::Result<WorkerPool> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("imgsim-worker-{i}"))
                .spawn(move || loop {
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return, // the pool was dropped
                    }
                })?;
        }
        Ok(WorkerPool {
            queue: Mutex::new(tx),
        })
    }

    /// Queues `job` (run by the next free worker).
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        let _ = self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Box::new(job));
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
