//! Watched folders in the service: the folder watcher of
//! [`imgsim_pipeline::watch`] feeding a served collection (indexing through
//! [`Served::index_files`], deletions under the same per-collection lock),
//! the watchers the service runs, and their figures for `/stats` and
//! `/metrics`.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imgsim_pipeline::watch::{FolderWatcher, WatchOptions, WatchStats, WatchTarget};
use imgsim_pipeline::{Catalog, IndexOptions, Summary, Walk};

use crate::error::ApiError;
use crate::state::{AppState, Served};

/// A served collection as the watcher's target.
pub struct ServedTarget(pub Arc<Served>);

impl WatchTarget for ServedTarget {
    type Error = ApiError;

    fn index(
        &self,
        walk: Walk,
        roots: &[PathBuf],
        options: &IndexOptions,
        cancel: &AtomicBool,
    ) -> Result<Summary, ApiError> {
        self.0.index_files(walk, roots, options, cancel, &|_| {})
    }

    fn forget(&self, paths: &[PathBuf]) -> Result<usize, ApiError> {
        let _one_at_a_time = self.0.indexing.lock().unwrap_or_else(|p| p.into_inner());
        Ok(imgsim_pipeline::watch::forget_missing(
            &self.0.collection,
            paths,
        )?)
    }

    fn catalog(&self) -> Result<Catalog, ApiError> {
        Ok(Catalog::load(&self.0.collection)?)
    }
}

/// The folder watchers the service runs, by collection; stopped when
/// dropped (with the service).
#[derive(Debug, Default)]
pub struct Watchers(Mutex<Vec<(String, FolderWatcher)>>);

impl Watchers {
    /// The figures of the watcher feeding `collection`, if one does.
    pub fn stats(&self, collection: &str) -> Option<WatchStats> {
        let w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        w.iter()
            .find(|(c, _)| c == collection)
            .map(|(_, w)| w.stats())
    }

    /// Every watcher's figures, by collection name.
    pub fn all(&self) -> Vec<(String, WatchStats)> {
        let w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        w.iter().map(|(c, w)| (c.clone(), w.stats())).collect()
    }

    /// The watchers' figures in Prometheus' text format.
    pub fn metrics(&self) -> String {
        let all = self.all();
        if all.is_empty() {
            return String::new();
        }
        let mut out = String::new();
        let mut family =
            |name: &str, kind: &str, help: &str, value: &dyn Fn(&WatchStats) -> Option<f64>| {
                out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
                for (c, s) in &all {
                    if let Some(v) = value(s) {
                        out.push_str(&format!("{name}{{collection=\"{c}\"}} {v}\n"));
                    }
                }
            };
        family("imgsim_watch_folders", "gauge", "Folders watched.", &|s| {
            Some(s.folders.len() as f64)
        });
        family(
            "imgsim_watch_notifications",
            "gauge",
            "1 when file-system notifications are in use, 0 for rescans only.",
            &|s| Some(f64::from(u8::from(s.notifications))),
        );
        family(
            "imgsim_watch_queued",
            "gauge",
            "Files waiting to be indexed or removed (settling, batched, or to be retried).",
            &|s| Some(s.queued as f64),
        );
        family(
            "imgsim_watch_indexed_total",
            "counter",
            "Images indexed by the folder watcher.",
            &|s| Some(s.indexed as f64),
        );
        family(
            "imgsim_watch_failed_total",
            "counter",
            "Watched files that could not be indexed (after their retries).",
            &|s| Some(s.failed as f64),
        );
        family(
            "imgsim_watch_removed_total",
            "counter",
            "Items removed because their files were deleted or moved away.",
            &|s| Some(s.removed as f64),
        );
        family(
            "imgsim_watch_scans_total",
            "counter",
            "Full scans of the watched folders.",
            &|s| Some(s.scans as f64),
        );
        family(
            "imgsim_watch_last_scan_timestamp_seconds",
            "gauge",
            "When the last full scan finished (Unix time).",
            &|s| s.last_scan_unix_s.map(|t| t as f64),
        );
        out.push_str("# HELP imgsim_watch_last_error_info The watcher's last error, as a label.\n# TYPE imgsim_watch_last_error_info gauge\n");
        for (c, s) in &all {
            if let Some(e) = &s.last_error {
                out.push_str(&format!(
                    "imgsim_watch_last_error_info{{collection=\"{c}\",error=\"{}\"}} 1\n",
                    label_value(e)
                ));
            }
        }
        out
    }
}

/// `text` escaped as a Prometheus label value (and kept short).
fn label_value(text: &str) -> String {
    let short: String = text.chars().take(300).collect();
    short
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Starts the watcher the options ask for (`[server] watch`, `serve
/// --watch`): their folders feed the default collection, which must be
/// served (the command line creates it first when it does not exist).
/// The first pass over the folders runs in the background: the service
/// answers meanwhile.
pub fn start(state: &AppState) -> Result<(), ApiError> {
    let o = &state.options;
    if o.watch.is_empty() {
        return Ok(());
    }
    let name = &state.default_collection;
    let served = state.get(name).map_err(|_| {
        ApiError::invalid(format!(
            "collection `{name}`, which the watched folders feed, does not exist"
        ))
    })?;
    // Fails early, rather than in the background, when it cannot embed.
    served.embedder()?;
    let exact_decode = served.record.as_ref().is_some_and(|r| r.exact_decode);
    let options = WatchOptions {
        index: IndexOptions {
            batch_size: o.index_batch_size,
            decode_threads: o.index_decode_threads,
            limits: o.limits,
            exact_decode,
            prune: false,
            thumbnails: Some(imgsim_common::local()),
        },
        rescan_interval: Duration::from_secs(o.watch_rescan_s),
        notifications: o.watch_notifications,
        ..WatchOptions::default()
    };
    let w = FolderWatcher::start(&o.watch, options, ServedTarget(served))?;
    tracing::info!(collection = %name, folders = ?o.watch, "watching folders");
    state
        .watchers
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((name.clone(), w));
    Ok(())
}
