//! A collection's maintenance thread: seals and compacts in the background
//! for a long-lived owner (the server), at a lower CPU priority, so that
//! neither writers nor searches wait for a graph build.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::collection::Collection;

/// How long the thread sleeps between checks when nothing wakes it.
const POLL: Duration = Duration::from_secs(5);
/// Wait after a failed maintenance before trying again.
const RETRY: Duration = Duration::from_secs(10);

/// What the maintenance thread has done, for /stats and /metrics.
#[derive(Debug, Default)]
pub struct MaintenanceStatus {
    running: AtomicBool,
    runs: AtomicU64,
    failures: AtomicU64,
    last_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A copy of [`MaintenanceStatus`] at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct MaintenanceReport {
    /// A seal or compaction is being built now.
    pub running: bool,
    /// Maintenances committed.
    pub runs: u64,
    /// Maintenances that failed (each retried later).
    pub failures: u64,
    /// Duration of the last committed one, milliseconds.
    pub last_ms: u64,
    /// The last failure's message, if the last attempt failed.
    pub last_error: Option<String>,
}

impl MaintenanceStatus {
    /// The figures now.
    pub fn report(&self) -> MaintenanceReport {
        MaintenanceReport {
            running: self.running.load(Ordering::Relaxed),
            runs: self.runs.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_ms: self.last_ms.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// Runs `collection`'s due maintenance on a thread of its own until
/// dropped. Open the collection with
/// [`OpenOptions::deferred_maintenance`](crate::OpenOptions) so that writes
/// leave it to this thread.
pub struct Maintainer {
    collection: Arc<Collection>,
    stop: Arc<AtomicBool>,
    status: Arc<MaintenanceStatus>,
    thread: Option<JoinHandle<()>>,
}

impl Maintainer {
    /// Starts the thread; graph builds use a pool of `threads` threads (0:
    /// one per core) at [`imgsim_common::priority::BACKGROUND_NICENESS`].
    pub fn start(collection: Arc<Collection>, threads: usize) -> std::io::Result<Maintainer> {
        let pool = imgsim_common::priority::background_pool("imgsim-maintain", threads)?;
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(MaintenanceStatus::default());
        let thread = {
            let (c, stop, status) = (collection.clone(), stop.clone(), status.clone());
            std::thread::Builder::new()
                .name("imgsim-maintainer".into())
                .spawn(move || run(&c, &pool, &stop, &status))?
        };
        Ok(Maintainer {
            collection,
            stop,
            status,
            thread: Some(thread),
        })
    }

    /// What the thread has done so far.
    pub fn status(&self) -> MaintenanceReport {
        self.status.report()
    }
}

fn run(c: &Collection, pool: &rayon::ThreadPool, stop: &AtomicBool, status: &MaintenanceStatus) {
    imgsim_common::priority::lower_current_thread(imgsim_common::priority::BACKGROUND_NICENESS);
    // Maintenance left due by an earlier run (or by writes before start).
    let mut due = c.maintenance_due();
    while !stop.load(Ordering::SeqCst) {
        if !due {
            due = c.wait_for_maintenance(POLL);
            continue;
        }
        status.running.store(true, Ordering::Relaxed);
        let t = Instant::now();
        let outcome = pool.install(|| c.maintain(&|_, _, _| {}));
        status.running.store(false, Ordering::Relaxed);
        let mut last_error = status.last_error.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(_) => {
                status.runs.fetch_add(1, Ordering::Relaxed);
                status
                    .last_ms
                    .store(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                *last_error = None;
                due = c.maintenance_due();
            }
            Err(e) => {
                tracing::warn!(collection = %c.path().display(), error = %e, "background maintenance failed; retrying later");
                status.failures.fetch_add(1, Ordering::Relaxed);
                *last_error = Some(e.to_string());
                drop(last_error);
                // Wait (waking early only to stop), then try again.
                let until = Instant::now() + RETRY;
                while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                    c.wait_for_maintenance(Duration::from_millis(500));
                }
                due = true;
            }
        }
    }
}

impl Drop for Maintainer {
    /// Stops the thread, waiting for a maintenance in progress to finish
    /// (what it commits is durable; stopping mid-build would only waste it).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.collection.wake_maintainer();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
