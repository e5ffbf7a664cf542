//! Baseline for the README: hnsw_rs used directly (its own `DistL2` with
//! `simdeez_f`, its own search) on Fashion-MNIST, single thread, one query per
//! call — what imgsim's frozen-graph search is compared with.
//!
//! `cargo run --release -p imgsim-bench --example hnsw_rs_baseline [QUERIES]`

use std::time::Instant;

use hnsw_rs::anndists::dist::DistL2;
use hnsw_rs::hnsw::Hnsw;
use imgsim_datasets::fashion_mnist::FashionMnist;
use imgsim_index::{recall_at_k, ExactIndex, Metric, Neighbor, VectorSet};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let nq: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2000);
    let fm = FashionMnist::load_default()?;
    let dim = fm.train.dim;
    let n = fm.train.rows();
    let queries: Vec<&[f32]> = fm.test.data.chunks_exact(dim).take(nq).collect();

    let t = Instant::now();
    let hnsw = Hnsw::<f32, DistL2>::new(16, n, 16, 200, DistL2 {});
    let rows: Vec<(&[f32], usize)> = fm
        .train
        .data
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, r)| (r, i))
        .collect();
    hnsw.parallel_insert_slice(&rows);
    println!(
        "hnsw_rs build (2 threads): {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let set = VectorSet::from_parts(
        dim,
        (0..n as u64).collect(),
        fm.train.data.clone(),
        Metric::L2,
    )?;
    let exact = ExactIndex::new(Metric::L2, set);
    let flat: Vec<f32> = queries.iter().flat_map(|q| q.iter().copied()).collect();
    let truth = exact.search_batch(&flat, 10)?;
    for ef in [10usize, 16, 24, 32, 64] {
        let t = Instant::now();
        let found: Vec<Vec<Neighbor>> = queries
            .iter()
            .map(|q| {
                hnsw.search(q, 10, ef)
                    .into_iter()
                    .map(|h| Neighbor {
                        id: h.d_id as u64,
                        distance: h.distance,
                    })
                    .collect()
            })
            .collect();
        let secs = t.elapsed().as_secs_f64();
        let recall = found
            .iter()
            .zip(&truth)
            .map(|(a, e)| recall_at_k(a, e, 10))
            .sum::<f64>()
            / nq as f64;
        println!(
            "hnsw_rs search ef={ef:3}: recall@10 {recall:.4}, {:.0} QPS (1 thread)",
            nq as f64 / secs
        );
    }
    Ok(())
}
