//! Elementwise kernels in bytes moved: ReLU forward and backward on the reference model's
//! activations, and `exp` and `sum` on the run-time-chosen SIMD path against the forced
//! portable path. Then the autodiff ops that run on these kernels, forward (recording the op on
//! a fresh tape) and backward (one sweep from the sum of the op's output, which includes
//! spreading the sum's cotangent: `sum_all` alone measures that part), in elements per second.
//!
//! `RAYON_NUM_THREADS=1 cargo bench --bench elementwise -- --warm-up-time 1 --measurement-time 3`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry::autodiff::ops::loss::Reduction;
use tapestry::autodiff::{Tape, Tensor, Var};
use tapestry_kernels::elementwise as ew;
use tapestry_kernels::path::{forced, Force};

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
    for isa in [ew::detected_isa(), ew::Isa::Scalar] {
        let label = format!("{isa:?}");
        let force = Force { isa: Some(isa), ..Force::NONE };
        grp.bench_function(BenchmarkId::new("exp", &label), |b| {
            b.iter(|| {
                forced(force, || ew::exp(&x, &mut y));
                black_box(&y);
            })
        });
        grp.bench_function(BenchmarkId::new("sum", &label), |b| {
            b.iter(|| black_box(forced(force, || ew::sum(&x)).0))
        });
        grp.bench_function(BenchmarkId::new("softmax_rows_16", &label), |b| {
            b.iter(|| {
                forced(force, || ew::softmax_rows(&x, 16, &mut y));
                black_box(&y);
            })
        });
    }
    grp.finish();
}

type Unary = for<'t> fn(Var<'t>) -> Var<'t>;

/// Forward and backward of unary ops on the reference model's first activation.
fn unary_ops(c: &mut Criterion) {
    let shape = [128, 32, 28, 28];
    let len: usize = shape.iter().product();
    let x = Tensor::from_vec(&shape, random(len, 5)).unwrap();
    let mut grp = c.benchmark_group("op");
    grp.throughput(Throughput::Elements(len as u64));
    let ops: [(&str, Unary); 6] = [
        ("sum_all", |x| x),
        ("relu", |x| x.relu()),
        ("sigmoid", |x| x.sigmoid()),
        ("tanh", |x| x.tanh()),
        ("exp", |x| x.exp()),
        ("mul_scalar", |x| x * 0.5),
    ];
    for (name, op) in ops {
        if name != "sum_all" {
            grp.bench_function(BenchmarkId::new("forward", name), |b| {
                b.iter(|| {
                    let tape = Tape::new();
                    black_box(op(tape.leaf(x.clone())).value())
                })
            });
        }
        let tape = Tape::new();
        let vx = tape.leaf(x.clone());
        let root = op(vx).sum_all();
        grp.bench_function(BenchmarkId::new("backward", name), |b| {
            b.iter(|| black_box(tape.grad(root, &[vx]).len()))
        });
    }
    grp.finish();
}

/// A bias added to every row (`[N, C] + [C]`), its backward (the bias gradient is the sum over
/// rows), and cross-entropy of `[N, 10]` logits.
fn broadcast_and_loss_ops(c: &mut Criterion) {
    let (n, cols) = (4096, 256);
    let x = Tensor::from_vec(&[n, cols], random(n * cols, 6)).unwrap();
    let bias = Tensor::from_vec(&[cols], random(cols, 7)).unwrap();
    let mut grp = c.benchmark_group("op");
    grp.throughput(Throughput::Elements((n * cols) as u64));
    grp.bench_function(BenchmarkId::new("forward", "add_bias_4096x256"), |b| {
        b.iter(|| {
            let tape = Tape::new();
            black_box((tape.leaf(x.clone()) + tape.leaf(bias.clone())).value())
        })
    });
    let tape = Tape::new();
    let (vx, vb) = (tape.leaf(x.clone()), tape.leaf(bias.clone()));
    let root = (vx + vb).sum_all();
    grp.bench_function(BenchmarkId::new("backward", "add_bias_4096x256"), |b| {
        b.iter(|| black_box(tape.grad(root, &[vx, vb]).len()))
    });

    let (n, classes) = (8192, 10);
    let logits = Tensor::from_vec(&[n, classes], random(n * classes, 8)).unwrap();
    let labels: Vec<i64> = (0..n).map(|i| (i * 7 % classes) as i64).collect();
    grp.throughput(Throughput::Elements((n * classes) as u64));
    grp.bench_function(BenchmarkId::new("forward", "cross_entropy_8192x10"), |b| {
        b.iter(|| {
            let tape = Tape::new();
            let loss = tape.leaf(logits.clone()).cross_entropy(&labels, None, Reduction::Mean);
            black_box(loss.value())
        })
    });
    let tape = Tape::new();
    let vl = tape.leaf(logits.clone());
    let root = vl.cross_entropy(&labels, None, Reduction::Mean);
    grp.bench_function(BenchmarkId::new("backward", "cross_entropy_8192x10"), |b| {
        b.iter(|| black_box(tape.grad(root, &[vl]).len()))
    });
    grp.finish();
}

criterion_group!(benches, relu, simd_vs_portable, unary_ops, broadcast_and_loss_ops);
criterion_main!(benches);
