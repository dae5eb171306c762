//! GEMM throughput in FLOP/s (`2·m·n·k` per call) for square sizes and the reference model's
//! shapes. Thread count comes from `RAYON_NUM_THREADS`.
//!
//! `RAYON_NUM_THREADS=1 cargo bench --bench gemm -- --warm-up-time 1 --measurement-time 3`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_kernels::gemm::sgemm;

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

/// Benchmarks row-major `C (m×n) = A (m×k) · B (k×n)`.
fn bench_shape(c: &mut Criterion, group: &str, label: &str, (m, k, n): (usize, usize, usize)) {
    let a = random(m * k, 1);
    let b = random(k * n, 2);
    let mut out = vec![0.0f32; m * n];
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements((2 * m * n * k) as u64));
    g.bench_function(BenchmarkId::from_parameter(label), |bench| {
        bench.iter(|| {
            sgemm(m, k, n, 1.0, &a, k as isize, 1, &b, n as isize, 1, 0.0, &mut out, n as isize, 1);
            black_box(&out);
        })
    });
    g.finish();
}

fn gemm(c: &mut Criterion) {
    for s in [64, 128, 256, 512, 1024] {
        bench_shape(c, "gemm_square", &s.to_string(), (s, s, s));
    }
    // The reference model's shapes, m x k x n.
    for (label, shape) in [
        ("fc_forward_128x3136x256", (128, 3136, 256)),
        ("fc_dw_3136x128x256", (3136, 128, 256)),
        ("fc_dx_128x256x3136", (128, 256, 3136)),
        ("head_128x256x10", (128, 256, 10)),
        ("heads3_128x256x30", (128, 256, 30)),
    ] {
        bench_shape(c, "gemm_model", label, shape);
    }
    // A classifier head as the autodiff calls it: y = x · Wᵀ with W stored [out, in].
    for n in [10, 30] {
        let (m, k) = (128, 256);
        let x = random(m * k, 3);
        let w = random(n * k, 4);
        let mut y = vec![0.0f32; m * n];
        let mut g = c.benchmark_group("gemm_head_wt");
        g.throughput(Throughput::Elements((2 * m * n * k) as u64));
        g.bench_function(BenchmarkId::from_parameter(format!("128x256x{n}")), |bench| {
            bench.iter(|| {
                sgemm(
                    m, k, n, 1.0, &x, k as isize, 1, &w, 1, k as isize, 0.0, &mut y, n as isize, 1,
                );
                black_box(&y);
            })
        });
        g.finish();
    }
}

criterion_group!(benches, gemm);
criterion_main!(benches);
