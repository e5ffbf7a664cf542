//! Exact search: one query over 50,000 seeded 128-d vectors (parallel scan).
use criterion::{criterion_group, criterion_main, Criterion};
use imgsim_datasets::synthetic::Clustered;
use imgsim_index::{ExactIndex, Metric, VectorSet};

fn bench(c: &mut Criterion) {
    let (n, dim) = (50_000, 128);
    let g = Clustered::new(dim, 1);
    let set =
        VectorSet::from_parts(dim, (0..n as u64).collect(), g.rows(0, n), Metric::L2).unwrap();
    let idx = ExactIndex::new(Metric::L2, set);
    let q = Clustered::new(dim, 2).rows(0, 1);
    c.bench_function("exact_search_50k_x128_k10", |b| {
        b.iter(|| idx.search(std::hint::black_box(&q), 10, None).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
