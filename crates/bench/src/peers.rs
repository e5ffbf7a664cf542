//! Peer libraries' results (the ann_peers harness' JSON: hnswlib, faiss,
//! usearch) and the side-by-side table of queries per second at equal
//! recall.

use std::path::Path;

use crate::{AnnReport, BenchError, Result};

/// A peer's curve: (recall@10, QPS) one query per call, and in batches on
/// one thread.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    /// Its name (the harness' `config`).
    pub name: String,
    /// One query per call, one thread.
    pub curve: Vec<(f64, f64)>,
    /// Batched queries, one thread.
    pub batch1: Vec<(f64, f64)>,
}

/// Reads a peers file (`{"results": [{"config", "sweep": [...]}]}`).
pub fn load(path: &Path) -> Result<Vec<Peer>> {
    let invalid =
        |why: String| BenchError::Invalid(format!("peers file {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let results = v["results"]
        .as_array()
        .ok_or_else(|| invalid("no \"results\" list".into()))?;
    Ok(results
        .iter()
        .filter_map(|r| {
            let name = r["config"].as_str()?.to_string();
            let sweep = r["sweep"].as_array()?;
            let pick = |q: &str, rk: &str| -> Vec<(f64, f64)> {
                sweep
                    .iter()
                    .filter_map(|row| Some((row[rk].as_f64()?, row[q].as_f64()?)))
                    .collect()
            };
            Some(Peer {
                name,
                curve: pick("qps_1thread_single", "recall10"),
                batch1: pick("batch1_qps", "batch1_recall10"),
            })
        })
        .collect())
}

/// QPS at exactly `target` recall, interpolated (log-linearly in QPS)
/// between the two sweep points around it, as the curves in the plot are;
/// when every point is above the target, the fastest one (a lower bound);
/// None when the target is never reached.
pub fn qps_at(points: &[(f64, f64)], target: f64) -> Option<f64> {
    let mut pts: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.1 > 0.0).collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let above = pts.iter().position(|p| p.0 >= target)?;
    let hi = pts[above];
    if above == 0 {
        return pts
            .iter()
            .filter(|p| p.0 >= target)
            .map(|p| p.1)
            .reduce(f64::max);
    }
    let lo = pts[above - 1];
    if hi.0 == lo.0 {
        return Some(hi.1);
    }
    let t = (target - lo.0) / (hi.0 - lo.0);
    Some((lo.1.ln() + t * (hi.1.ln() - lo.1.ln())).exp())
}

/// A Markdown table: imgsim's single-thread QPS against each peer's at
/// recall 0.90, 0.95 and 0.99, with ratios.
pub fn table(ours: &AnnReport, peers: &[Peer]) -> String {
    let pts: Vec<(f64, f64)> = ours
        .runs
        .iter()
        .map(|r| (r.recall_at_10, r.qps_single_thread))
        .collect();
    let mut s = String::from("\n| at recall@10 | imgsim QPS (1 thread) | peer | peer QPS, one query per call | ratio | peer QPS, batch 1 thread | ratio |\n|---:|---:|---|---:|---:|---:|---:|\n");
    for target in [0.90, 0.95, 0.99] {
        let Some(q) = qps_at(&pts, target) else {
            continue;
        };
        for p in peers {
            let single = qps_at(&p.curve, target);
            let batch = qps_at(&p.batch1, target);
            let fmt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.0}"));
            let ratio = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.2}x", q / v));
            s.push_str(&format!(
                "| {target:.2} | {q:.0} | {} | {} | {} | {} | {} |\n",
                p.name,
                fmt(single),
                ratio(single),
                fmt(batch),
                ratio(batch)
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qps_at_interpolates_between_sweep_points() {
        let pts = [(0.90, 10_000.0), (0.96, 8_000.0), (0.99, 4_000.0)];
        // Exactly on a point.
        assert!((qps_at(&pts, 0.96).unwrap() - 8_000.0).abs() < 1e-6);
        // Between points: log-linear.
        let q = qps_at(&pts, 0.93).unwrap();
        assert!((q - (10_000f64.ln() * 0.5 + 8_000f64.ln() * 0.5).exp()).abs() < 1e-6);
        // Never reached / all above.
        assert_eq!(qps_at(&pts, 0.999), None);
        assert_eq!(qps_at(&pts, 0.5), Some(10_000.0));
    }

    #[test]
    fn peers_file_is_read_and_a_bad_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("peers.json");
        std::fs::write(
            &p,
            r#"{"results": [{"config": "hnswlib", "sweep": [
                {"recall10": 0.95, "qps_1thread_single": 1000.0, "batch1_recall10": 0.95, "batch1_qps": 2000.0}]}]}"#,
        )
        .unwrap();
        let peers = load(&p).unwrap();
        assert_eq!(peers[0].name, "hnswlib");
        assert_eq!(peers[0].curve, vec![(0.95, 1000.0)]);
        std::fs::write(&p, "{}").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("peers.json") && e.contains("results"), "{e}");
    }
}
