//! HNSW search: one query at a time over 50,000 seeded 128-d vectors.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use imgsim_datasets::synthetic::Clustered;
use imgsim_index::{AnnIndex, HnswParams, Metric, VectorSet};

fn bench(c: &mut Criterion) {
    let (n, dim) = (50_000, 128);
    let set = VectorSet::from_parts(
        dim,
        (0..n as u64).collect(),
        Clustered::new(dim, 1).rows(0, n),
        Metric::L2,
    )
    .unwrap();
    let idx = AnnIndex::build(Metric::L2, HnswParams::default(), set, &|_| {}).unwrap();
    let queries = Clustered::new(dim, 2).rows(0, 256);
    let mut g = c.benchmark_group("ann_search_50k_x128_k10");
    for ef in [16usize, 64, 128] {
        g.bench_with_input(BenchmarkId::from_parameter(ef), &ef, |b, &ef| {
            let mut i = 0;
            b.iter(|| {
                let q = &queries[(i % 256) * dim..(i % 256 + 1) * dim];
                i += 1;
                idx.search(std::hint::black_box(q), 10, ef).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
