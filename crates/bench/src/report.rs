//! Report writers: JSON, CSV and a Markdown table.

use std::fmt::Write as _;
use std::path::Path;

use crate::{write_file, AnnReport, Result};

/// Writes the report as pretty JSON.
pub fn write_json(report: &AnnReport, path: &Path) -> Result<()> {
    let s = serde_json::to_string_pretty(report).expect("report serialises");
    write_file(path, s.as_bytes())
}

/// Writes the sweep as CSV, one row per ef, the build figures repeated on each row.
pub fn write_csv(report: &AnnReport, path: &Path) -> Result<()> {
    let mut s = String::from(
        "dataset,m,ef_construction,builder,quantization,ef,recall_at_10,recall_at_10_ab,qps_single_thread,qps_all_threads,p50_ms,p99_ms,build_seconds,reopen_seconds,disk_bytes,rss_bytes,search_rss_bytes\n",
    );
    for r in &report.runs {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{:.5},{:.5},{:.1},{:.1},{:.4},{:.4},{:.3},{:.3},{},{},{}",
            report.dataset,
            report.m,
            report.ef_construction,
            report.builder,
            report.quantization,
            r.ef,
            r.recall_at_10,
            r.recall_at_10_ab,
            r.qps_single_thread,
            r.qps_all_threads,
            r.p50_ms,
            r.p99_ms,
            report.build_seconds,
            report.reopen_seconds,
            report.disk_bytes,
            report.rss_bytes,
            report.search_rss_bytes
        );
    }
    write_file(path, s.as_bytes())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

/// A human-readable summary: build figures, then a Markdown table of the sweep.
pub fn render(report: &AnnReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {} base x {} queries, {}-d {}, k={}, M={}, ef_construction={}, builder {}, quantization {}, {} threads, kernel {}",
        report.dataset,
        report.n_base,
        report.n_queries,
        report.dim,
        report.metric,
        report.k,
        report.m,
        report.ef_construction,
        report.builder,
        if report.quantization.is_empty() {
            "none"
        } else {
            &report.quantization
        },
        report.threads,
        report.kernel
    );
    let _ = writeln!(
        s,
        "build {:.2} s (all threads) | reopen {:.3} s | ground truth {:.2} s | disk {:.1} MiB ({:.0} B/vector) | index in memory {:.1} MiB ({:.0} B/vector{}) | RSS {:.1} MiB after reopen, {:.1} MiB after the sweep ({:.1} MiB of it file pages) (peak {:.1} MiB)\n",
        report.build_seconds,
        report.reopen_seconds,
        report.ground_truth_seconds,
        mib(report.disk_bytes),
        report.disk_bytes_per_vector,
        mib(report.index_memory_bytes),
        report.index_memory_bytes as f64 / report.n_base.max(1) as f64,
        if report.mapped_bytes > 0 {
            format!(", {:.1} MiB f32 memory-mapped", mib(report.mapped_bytes))
        } else {
            String::new()
        },
        mib(report.rss_bytes),
        mib(report.search_rss_bytes),
        mib(report.search_rss_file_bytes),
        mib(report.peak_rss_bytes)
    );
    s.push_str("| ef | recall@10 | QPS 1 thread | QPS all threads | p50 ms | p99 ms |\n");
    s.push_str("|---:|---:|---:|---:|---:|---:|\n");
    for r in &report.runs {
        let _ = writeln!(
            s,
            "| {} | {:.4} | {:.0} | {:.0} | {:.3} | {:.3} |",
            r.ef, r.recall_at_10, r.qps_single_thread, r.qps_all_threads, r.p50_ms, r.p99_ms
        );
    }
    s
}
