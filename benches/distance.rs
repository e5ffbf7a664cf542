//! Distance kernels: the dispatched SIMD kernel against the portable one.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use imgsim_index::distance::{dot, dot_portable, l2_sq, l2_sq_portable};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("distance");
    for dim in [128usize, 512, 784] {
        let a: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.11).cos()).collect();
        g.throughput(Throughput::Elements(dim as u64));
        g.bench_with_input(BenchmarkId::new("l2_sq_simd", dim), &dim, |bch, _| {
            bch.iter(|| l2_sq(std::hint::black_box(&a), std::hint::black_box(&b)))
        });
        g.bench_with_input(BenchmarkId::new("l2_sq_portable", dim), &dim, |bch, _| {
            bch.iter(|| l2_sq_portable(std::hint::black_box(&a), std::hint::black_box(&b)))
        });
        g.bench_with_input(BenchmarkId::new("dot_simd", dim), &dim, |bch, _| {
            bch.iter(|| dot(std::hint::black_box(&a), std::hint::black_box(&b)))
        });
        g.bench_with_input(BenchmarkId::new("dot_portable", dim), &dim, |bch, _| {
            bch.iter(|| dot_portable(std::hint::black_box(&a), std::hint::black_box(&b)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
