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

/// How an operand is stored: row-major as it is, or the transpose of a row-major matrix (the
/// same buffer with its strides swapped, as the autodiff passes `Wᵀ` and `gᵀ`).
#[derive(Clone, Copy)]
enum Stored {
    AsIs,
    Transposed,
}

/// Strides of an `rows`×`cols` operand stored as `how`.
fn strides(rows: usize, cols: usize, how: Stored) -> (isize, isize) {
    match how {
        Stored::AsIs => (cols as isize, 1),
        Stored::Transposed => (1, rows as isize),
    }
}

/// Benchmarks `calls` products `C (m×n) = A (m×k) · B (k×n)` per iteration, A and B stored as
/// given, C row-major.
fn bench_shape(
    c: &mut Criterion,
    group: &str,
    label: &str,
    (m, k, n): (usize, usize, usize),
    (sa, sb): (Stored, Stored),
    calls: usize,
) {
    let a = random(m * k, 1);
    let b: Vec<Vec<f32>> = (0..calls).map(|i| random(k * n, 2 + i as u64)).collect();
    let mut out: Vec<Vec<f32>> = vec![vec![0.0f32; m * n]; calls];
    let ((rsa, csa), (rsb, csb)) = (strides(m, k, sa), strides(k, n, sb));
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements((2 * m * n * k * calls) as u64));
    g.bench_function(BenchmarkId::from_parameter(label), |bench| {
        bench.iter(|| {
            for (b, out) in b.iter().zip(out.iter_mut()) {
                sgemm(m, k, n, 1.0, &a, rsa, csa, b, rsb, csb, 0.0, out, n as isize, 1);
            }
            black_box(&out);
        })
    });
    g.finish();
}

fn gemm(c: &mut Criterion) {
    use Stored::{AsIs, Transposed};
    for s in [64, 128, 256, 512, 1024] {
        bench_shape(c, "gemm_square", &s.to_string(), (s, s, s), (AsIs, AsIs), 1);
    }
    // The reference model's products as the autodiff runs them (`ops/matmul.rs`), m x k x n:
    // the fully connected layer x [128, 3136] · Wᵀ (W stored [256, 3136]), its input gradient
    // g · W, its weight gradient gᵀ · x (g stored [128, 256]); a head x · Wᵀ (W [10, 256]), and
    // the three heads as three such products.
    for (label, shape, layouts, calls) in [
        ("fc_forward_x_wt_128x3136x256", (128, 3136, 256), (AsIs, Transposed), 1),
        ("fc_dx_g_w_128x256x3136", (128, 256, 3136), (AsIs, AsIs), 1),
        ("fc_dw_gt_x_256x128x3136", (256, 128, 3136), (Transposed, AsIs), 1),
        ("head_x_wt_128x256x10", (128, 256, 10), (AsIs, Transposed), 1),
        ("heads3_x_wt_3x128x256x10", (128, 256, 10), (AsIs, Transposed), 3),
    ] {
        bench_shape(c, "gemm_model", label, shape, layouts, calls);
    }
}

criterion_group!(benches, gemm);
criterion_main!(benches);
