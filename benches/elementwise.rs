//! Elementwise kernels in bytes moved: ReLU forward and backward on the reference model's
//! activations, and `exp` and `sum` on the run-time-chosen SIMD path against the forced
//! portable path.
//!
//! `RAYON_NUM_THREADS=1 cargo bench --bench elementwise -- --warm-up-time 1 --measurement-time 3`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_kernels::elementwise as ew;

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

fn relu(c: &mut Criterion) {
    for (name, len) in [("32x32x28x28", 32 * 32 * 28 * 28), ("128x32x28x28", 128 * 32 * 28 * 28)] {
        let x = random(len, 1);
        let dy = random(len, 2);
        let mut y = vec![0.0f32; len];
        let mut grp = c.benchmark_group("relu");
        grp.throughput(Throughput::Bytes(8 * len as u64));
        grp.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| {
                ew::relu_forward(&x, &mut y);
                black_box(&y);
            })
        });
        grp.throughput(Throughput::Bytes(12 * len as u64));
        grp.bench_function(BenchmarkId::new("backward", name), |b| {
            b.iter(|| {
                ew::relu_backward(&x, &dy, &mut y);
                black_box(&y);
            })
        });
        grp.finish();
    }
}

fn simd_vs_portable(c: &mut Criterion) {
    // Small enough to stay in cache, so that the instruction set, not memory, sets the pace.
    let len = 16 * 1024;
    let x = random(len, 3);
    let mut y = vec![0.0f32; len];
    let mut grp = c.benchmark_group("isa");
    grp.throughput(Throughput::Elements(len as u64));
    for (label, force) in [(format!("{:?}", ew::detected_isa()), false), ("Scalar".into(), true)] {
        ew::set_force_scalar(force);
        grp.bench_function(BenchmarkId::new("exp", &label), |b| {
            b.iter(|| {
                ew::exp(&x, &mut y);
                black_box(&y);
            })
        });
        grp.bench_function(BenchmarkId::new("sum", &label), |b| b.iter(|| black_box(ew::sum(&x))));
        grp.bench_function(BenchmarkId::new("softmax_rows_16", &label), |b| {
            b.iter(|| {
                ew::softmax_rows(&x, 16, &mut y);
                black_box(&y);
            })
        });
    }
    ew::set_force_scalar(false);
    grp.finish();
}

criterion_group!(benches, relu, simd_vs_portable);
criterion_main!(benches);
