//! Recall-versus-throughput benchmarks of imgsim's vector index, the way
//! ann-benchmarks (Aumüller, Bernhardsson & Faithfull 2018) measures them:
//! build once, then sweep `ef_search` and record recall@k against exact
//! search and queries per second, one query at a time on one thread.
//!
//! The benchmark exercises the real storage path: vectors go into a sled
//! [`Collection`], which is closed and reopened (timed) before any query, so
//! the figures are those of a collection loaded from disk.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use imgsim_index::{
    recall_at_k, recall_at_k_by_distance, Collection, CollectionSpec, HnswParams, ItemMeta, Metric,
    Neighbor, OpenOptions, Phase,
};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub mod data;
pub mod eval;
pub mod peers;
pub mod plot;
pub mod report;

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// From the index.
    #[error(transparent)]
    Index(#[from] imgsim_index::IndexError),
    /// From a data set reader.
    #[error(transparent)]
    Dataset(#[from] imgsim_datasets::DatasetError),
    /// Writing a report.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Drawing the plot.
    #[error("plot: {0}")]
    Plot(String),
    /// Bad arguments.
    #[error("{0}")]
    Invalid(String),
}

impl BenchError {
    /// The error's kind (see [`imgsim_common::ErrorKind`]).
    pub fn kind(&self) -> imgsim_common::ErrorKind {
        use imgsim_common::ErrorKind;
        match self {
            BenchError::Index(e) => e.kind(),
            BenchError::Dataset(e) => e.kind(),
            BenchError::Write { source, .. } => ErrorKind::of_io(source),
            BenchError::Plot(_) => ErrorKind::Internal,
            BenchError::Invalid(_) => ErrorKind::Invalid,
        }
    }
}

/// Result alias.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Base and query vectors to benchmark on.
#[derive(Debug, Clone)]
pub struct BenchData {
    /// Name for reports (e.g. `fashion-mnist-784-euclidean`).
    pub name: String,
    /// Dimension.
    pub dim: usize,
    /// Base vectors, row-major.
    pub base: Vec<f32>,
    /// Query vectors, row-major.
    pub queries: Vec<f32>,
    /// Metric.
    pub metric: Metric,
}

/// How to run the sweep.
#[derive(Debug, Clone)]
pub struct AnnBenchConfig {
    /// HNSW parameters (ef_search is replaced by each swept value).
    pub params: HnswParams,
    /// Values of ef_search to sweep.
    pub efs: Vec<usize>,
    /// Neighbours per query.
    pub k: usize,
    /// Where the benchmark collection is written (replaced if present).
    pub collection_dir: PathBuf,
    /// Collection options (cache size...).
    pub options: OpenOptions,
    /// Timed passes per ef; the fastest is kept (as ann-benchmarks does).
    pub runs: usize,
    /// Show progress bars.
    pub progress: bool,
}

/// One row of the sweep.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRow {
    /// ef_search.
    pub ef: usize,
    /// Mean recall@k by id (k = 10 from the CLI, as the name says).
    pub recall_at_10: f64,
    /// ann-benchmarks' distance-based recall@10 (ties forgiven, epsilon 1e-3).
    pub recall_at_10_ab: f64,
    /// Queries per second, one thread, one query per call.
    pub qps_single_thread: f64,
    /// Queries per second with every thread of the pool.
    pub qps_all_threads: f64,
    /// Median single-thread latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile single-thread latency, milliseconds.
    pub p99_ms: f64,
}

/// A whole benchmark report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnnReport {
    /// Data set name.
    pub dataset: String,
    /// Base vectors.
    pub n_base: usize,
    /// Queries.
    pub n_queries: usize,
    /// Dimension.
    pub dim: usize,
    /// Metric.
    pub metric: String,
    /// k.
    pub k: usize,
    /// HNSW M.
    pub m: usize,
    /// HNSW ef_construction.
    pub ef_construction: usize,
    /// The graph builder (`native` or `hnsw_rs`); empty in reports written
    /// before there was a choice (they were all `hnsw_rs`).
    #[serde(default)]
    pub builder: String,
    /// The quantization searched (`none`, `sq8`, `binary`); empty in
    /// reports written before quantization existed (they were all `none`).
    #[serde(default)]
    pub quantization: String,
    /// Threads in the pool.
    pub threads: usize,
    /// SIMD kernel in use.
    pub kernel: String,
    /// Seconds to insert and build (all threads), durable on disk.
    pub build_seconds: f64,
    /// Seconds to reopen the collection from disk.
    pub reopen_seconds: f64,
    /// Seconds for the exact ground truth.
    pub ground_truth_seconds: f64,
    /// Bytes of the collection directory.
    pub disk_bytes: u64,
    /// Disk bytes per stored vector.
    pub disk_bytes_per_vector: f64,
    /// Resident memory after reopening, bytes (whole process, queries included).
    pub rss_bytes: u64,
    /// Heap bytes the reopened collection holds for vectors, codes and graphs.
    pub index_memory_bytes: u64,
    /// Bytes of f32 vectors memory-mapped rather than held (quantized).
    #[serde(default)]
    pub mapped_bytes: u64,
    /// Resident memory after the sweep, in a collection reopened after the
    /// ground truth (so that exact search's pages do not count): what
    /// searching alone keeps resident, mapped pages read by rescoring
    /// included.
    #[serde(default)]
    pub search_rss_bytes: u64,
    /// The part of `search_rss_bytes` that is file pages (memory-mapped
    /// vectors and the program's own code), which the kernel can drop.
    #[serde(default)]
    pub search_rss_file_bytes: u64,
    /// Peak resident memory of the process, bytes.
    pub peak_rss_bytes: u64,
    /// The sweep.
    pub runs: Vec<RunRow>,
}

/// Resident and peak resident memory of this process (Linux; 0 elsewhere).
pub fn rss() -> (u64, u64) {
    (status_bytes("VmRSS:"), status_bytes("VmHWM:"))
}

/// A `kB` field of /proc/self/status, in bytes (0 when unavailable).
fn status_bytes(name: &str) -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    s.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Returns freed heap memory to the operating system, whichever of glibc's
/// allocator or mimalloc (the `imgsim` binary's) holds it.
fn release_free_memory() {
    // SAFETY: both calls only walk the allocators' own free lists; calling
    // mi_collect when mimalloc is not the global allocator is harmless.
    unsafe {
        libmimalloc_sys::mi_collect(true);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        libc::malloc_trim(0);
    }
}

fn bar(show: bool, len: u64, msg: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Builds the collection, reopens it, computes ground truth and sweeps ef.
pub fn run_ann(data: BenchData, cfg: &AnnBenchConfig) -> Result<AnnReport> {
    if cfg.k == 0 || cfg.efs.is_empty() {
        return Err(BenchError::Invalid(
            "k must be >= 1 and at least one ef given".into(),
        ));
    }
    let dim = data.dim;
    if dim == 0 || !data.base.len().is_multiple_of(dim) || !data.queries.len().is_multiple_of(dim) {
        return Err(BenchError::Invalid(
            "base and queries must be whole rows of the same dimension".into(),
        ));
    }
    let n_base = data.base.len() / dim;
    let n_queries = data.queries.len() / dim;
    if n_base == 0 || n_queries == 0 {
        return Err(BenchError::Invalid(
            "need at least one base vector and one query".into(),
        ));
    }
    if cfg.collection_dir.exists() {
        // Replace a previous benchmark collection, and nothing else.
        let empty = std::fs::read_dir(&cfg.collection_dir).is_ok_and(|mut d| d.next().is_none());
        if !empty && !Collection::exists(&cfg.collection_dir) {
            return Err(BenchError::Invalid(format!(
                "{} exists and is not an imgsim collection; refusing to replace it",
                cfg.collection_dir.display()
            )));
        }
        imgsim_common::Storage::remove_dir_all(&imgsim_common::LocalFs, &cfg.collection_dir)
            .map_err(|source| BenchError::Write {
                path: cfg.collection_dir.clone(),
                source,
            })?;
    }
    let spec = CollectionSpec {
        dim,
        metric: data.metric,
        params: cfg.params,
    };

    // Build: insert and build the graph, durable on disk.
    let write_bar = bar(cfg.progress, n_base as u64, "writing");
    let build_bar = bar(cfg.progress, n_base as u64, "building");
    let t = Instant::now();
    {
        let coll = Collection::create(&cfg.collection_dir, spec, cfg.options.clone())?;
        let name = data.name.clone();
        coll.bulk_insert(
            data.base,
            &|i| ItemMeta::new(i.to_string(), name.as_str()),
            &|phase, done, _| match phase {
                Phase::Writing => write_bar.set_position(done as u64),
                Phase::Building => build_bar.set_position(done as u64),
                Phase::Loading => {}
            },
        )?;
        coll.flush()?;
    }
    let build_seconds = t.elapsed().as_secs_f64();
    write_bar.finish_and_clear();
    build_bar.finish_and_clear();

    // Give the build's freed memory back to the OS so that the RSS below is
    // that of the reopened collection, not of the allocator's free lists.
    release_free_memory();
    // Reopen from disk: this is what every query below runs on.
    let t = Instant::now();
    let coll = Collection::open(&cfg.collection_dir, cfg.options.clone(), &|_, _, _| {})?;
    let reopen_seconds = t.elapsed().as_secs_f64();
    let stats = coll.stats();
    let (rss_bytes, _) = rss();

    let t = Instant::now();
    let gt_bar = bar(cfg.progress, 1, "exact k-NN");
    gt_bar.tick();
    let truth = coll.search_exact_batch(&data.queries, cfg.k)?;
    gt_bar.finish_and_clear();
    let ground_truth_seconds = t.elapsed().as_secs_f64();
    // Exact search read every vector: reopen, so that the memory measured
    // after the sweep is what searching alone keeps resident.
    drop(coll);
    release_free_memory();
    let coll = Collection::open(&cfg.collection_dir, cfg.options.clone(), &|_, _, _| {})?;

    let queries: Vec<&[f32]> = data.queries.chunks_exact(dim).collect();
    // Warm-up.
    for q in queries.iter().take(500) {
        coll.search(q, cfg.k, Some(cfg.efs[0]), None)?;
    }
    let sweep_bar = bar(cfg.progress, cfg.efs.len() as u64, "ef sweep");
    let mut runs = Vec::new();
    for &ef in &cfg.efs {
        // Single thread, one query per call: keep the fastest pass.
        let mut best: Option<(f64, Vec<f64>, Vec<Vec<Neighbor>>)> = None;
        for _ in 0..cfg.runs.max(1) {
            let mut lat = Vec::with_capacity(n_queries);
            let mut found = Vec::with_capacity(n_queries);
            let t = Instant::now();
            for q in &queries {
                let t1 = Instant::now();
                let hits = coll.search(q, cfg.k, Some(ef), None)?;
                lat.push(t1.elapsed().as_secs_f64() * 1e3);
                found.push(hits);
            }
            let total = t.elapsed().as_secs_f64();
            if best.as_ref().is_none_or(|b| total < b.0) {
                best = Some((total, lat, found));
            }
        }
        let (total, mut lat, found) = best.expect("at least one run");
        lat.sort_by(f64::total_cmp);
        let recall = found
            .iter()
            .zip(&truth)
            .map(|(a, e)| recall_at_k(a, e, cfg.k))
            .sum::<f64>()
            / n_queries as f64;
        let recall_ab = found
            .iter()
            .zip(&truth)
            .map(|(a, e)| recall_at_k_by_distance(a, e, cfg.k, 1e-3))
            .sum::<f64>()
            / n_queries as f64;
        // All threads.
        let mut best_par = f64::INFINITY;
        for _ in 0..cfg.runs.max(1) {
            let t = Instant::now();
            queries
                .par_iter()
                .map(|q| coll.search(q, cfg.k, Some(ef), None).map(|h| h.len()))
                .collect::<imgsim_index::Result<Vec<_>>>()?;
            best_par = best_par.min(t.elapsed().as_secs_f64());
        }
        runs.push(RunRow {
            ef,
            recall_at_10: recall,
            recall_at_10_ab: recall_ab,
            qps_single_thread: n_queries as f64 / total,
            qps_all_threads: n_queries as f64 / best_par,
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
        });
        sweep_bar.inc(1);
    }
    sweep_bar.finish_and_clear();
    let (search_rss_bytes, peak) = rss();
    let search_rss_file_bytes = status_bytes("RssFile:");
    Ok(AnnReport {
        dataset: data.name,
        n_base,
        n_queries,
        dim,
        metric: data.metric.to_string(),
        k: cfg.k,
        m: cfg.params.m,
        ef_construction: cfg.params.ef_construction,
        builder: cfg.params.builder.as_str().to_string(),
        quantization: cfg.params.quantization.as_str().to_string(),
        threads: rayon::current_num_threads(),
        kernel: imgsim_index::distance::kernel_name().to_string(),
        build_seconds,
        reopen_seconds,
        ground_truth_seconds,
        disk_bytes: stats.disk_bytes,
        disk_bytes_per_vector: stats.disk_bytes as f64 / n_base as f64,
        rss_bytes,
        index_memory_bytes: stats.memory_bytes as u64,
        mapped_bytes: stats.mapped_bytes,
        search_rss_bytes,
        search_rss_file_bytes,
        peak_rss_bytes: peak,
        runs,
    })
}

/// Creates the folder that will hold `path`, if it has one.
pub(crate) fn create_parent(path: &Path) -> Result<()> {
    use imgsim_common::Storage;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        imgsim_common::LocalFs
            .create_dir_all(parent)
            .map_err(|source| BenchError::Write {
                path: parent.to_path_buf(),
                source,
            })?;
    }
    Ok(())
}

/// Writes `bytes` to `path` through the storage seam (whole or not at
/// all), creating parent folders.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use imgsim_common::Storage;
    create_parent(path)?;
    imgsim_common::LocalFs
        .write(path, bytes)
        .map_err(|source| BenchError::Write {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgsim_datasets::synthetic::Clustered;

    #[test]
    fn refuses_to_replace_a_folder_that_is_not_a_collection() {
        let dir = tempfile::tempdir().unwrap();
        let precious = dir.path().join("photos");
        std::fs::create_dir(&precious).unwrap();
        std::fs::write(precious.join("a.jpg"), b"x").unwrap();
        let data = BenchData {
            name: "s".into(),
            dim: 2,
            base: vec![0.0, 1.0, 1.0, 0.0],
            queries: vec![0.5, 0.5],
            metric: Metric::L2,
        };
        let cfg = AnnBenchConfig {
            params: HnswParams::default(),
            efs: vec![10],
            k: 1,
            collection_dir: precious.clone(),
            options: OpenOptions::default(),
            runs: 1,
            progress: false,
        };
        assert!(matches!(run_ann(data, &cfg), Err(BenchError::Invalid(_))));
        assert!(precious.join("a.jpg").exists());
    }

    #[test]
    fn small_sweep_reports_sane_figures() {
        let dir = tempfile::tempdir().unwrap();
        let dim = 16;
        let data = BenchData {
            name: "synthetic".into(),
            dim,
            base: Clustered::new(dim, 1).rows(0, 3000),
            queries: Clustered::new(dim, 2).rows(0, 100),
            metric: Metric::L2,
        };
        let cfg = AnnBenchConfig {
            params: HnswParams::default(),
            efs: vec![10, 100],
            k: 10,
            collection_dir: dir.path().join("c"),
            options: OpenOptions::default(),
            runs: 1,
            progress: false,
        };
        let r = run_ann(data, &cfg).unwrap();
        assert_eq!(r.runs.len(), 2);
        assert!(r.runs[1].recall_at_10 >= r.runs[0].recall_at_10 - 0.02);
        assert!(r.runs[1].recall_at_10 > 0.9, "{:?}", r.runs);
        assert!(r
            .runs
            .iter()
            .all(|x| x.qps_single_thread > 0.0 && x.p99_ms >= x.p50_ms));
        assert!(r.disk_bytes > 3000 * 16 * 4);
        let json = serde_json::to_value(&r).unwrap();
        for key in ["build_seconds", "reopen_seconds", "disk_bytes", "rss_bytes"] {
            assert!(json.get(key).is_some(), "{key}");
        }
        let run = &json["runs"][0];
        for key in [
            "ef",
            "recall_at_10",
            "qps_single_thread",
            "qps_all_threads",
            "p50_ms",
            "p99_ms",
        ] {
            assert!(run.get(key).is_some(), "{key}");
        }
    }
}
