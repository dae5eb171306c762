//! Autodiff overhead and multi-task backward: per-op cost on tiny tensors, a small MLP, and one
//! batched sweep against T separate sweeps.
//!
//! `cargo bench --bench autodiff`

// criterion_group! generates undocumented public items.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry::autodiff::{Tape, Tensor, Var};

fn random(rng: &mut ChaCha8Rng, shape: &[usize], scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.gen_range(-scale..scale)).collect()).unwrap()
}

const OPS: usize = 1000;

/// Records `OPS` alternating `mul`/`add` ops on `x0`; returns the leaf and the scalar root.
fn record_chain<'t>(tape: &'t Tape, x0: &Tensor) -> (Var<'t>, Var<'t>) {
    let x = tape.leaf(x0.clone());
    let mut y = x;
    for i in 0..OPS - 1 {
        y = if i % 2 == 0 { y * x } else { y + x };
    }
    (x, y.sum_all())
}

/// Record N ops on a 4-element tensor and run backward: the per-op cost of the tape itself.
fn per_op_overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("autodiff/per_op");
    group.throughput(Throughput::Elements(OPS as u64));
    let x0 = Tensor::from(vec![0.1, 0.2, 0.3, 0.4]);
    group.bench_function("record+backward tiny [4]", |b| {
        b.iter(|| {
            let tape = Tape::with_capacity(OPS + 2);
            let (x, root) = record_chain(&tape, &x0);
            std::hint::black_box(tape.backward(root).wrt(x));
        })
    });
    group.bench_function("record only tiny [4]", |b| {
        b.iter(|| {
            let tape = Tape::with_capacity(OPS + 2);
            std::hint::black_box(record_chain(&tape, &x0).1.value());
        })
    });
    group.finish();
}

struct Mlp {
    trunk: Vec<(Tensor, Tensor)>,
    heads: Vec<Tensor>,
    x: Tensor,
}

fn mlp(tasks: usize, batch: usize, widths: &[usize]) -> Mlp {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let trunk = widths
        .windows(2)
        .map(|w| {
            let s = 1.0 / (w[0] as f32).sqrt();
            (random(&mut rng, &[w[1], w[0]], s), random(&mut rng, &[w[1]], s))
        })
        .collect();
    let last = *widths.last().unwrap();
    let heads = (0..tasks).map(|_| random(&mut rng, &[10, last], 0.1)).collect();
    Mlp { trunk, heads, x: random(&mut rng, &[batch, widths[0]], 1.0) }
}

/// Records the forward pass; returns the task losses.
fn forward<'t>(tape: &'t Tape, m: &Mlp) -> Vec<Var<'t>> {
    let zero = tape.constant(Tensor::scalar(0.0));
    let mut h = tape.constant(m.x.clone());
    for (w, b) in &m.trunk {
        h = h.linear(tape.leaf(w.clone()), Some(tape.leaf(b.clone()))).maximum(zero);
    }
    m.heads
        .iter()
        .map(|w| (h.linear(tape.leaf(w.clone()), None) - 0.5).pow_scalar(2.0).mean_all())
        .collect()
}

fn mlp_forward_backward(c: &mut Criterion) {
    let mut group = c.benchmark_group("autodiff/mlp");
    let m = mlp(1, 64, &[64, 128, 128]);
    group.bench_function("forward+backward 64x[64,128,128]+head10", |b| {
        b.iter(|| {
            let tape = Tape::new();
            let losses = forward(&tape, &m);
            std::hint::black_box(tape.backward(losses[0]).len());
        })
    });
    group.finish();
}

/// One recorded forward pass, then either T separate sweeps or one batched sweep.
fn batched_vs_separate(c: &mut Criterion) {
    let mut group = c.benchmark_group("autodiff/task_gradients");
    for tasks in [2usize, 3, 8] {
        let m = mlp(tasks, 128, &[64, 256, 256]);
        let tape = Tape::new();
        let losses = forward(&tape, &m);
        group.bench_with_input(BenchmarkId::new("separate", tasks), &tasks, |b, _| {
            b.iter(|| {
                for &l in &losses {
                    std::hint::black_box(tape.backward(l).len());
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("batched", tasks), &tasks, |b, _| {
            b.iter(|| std::hint::black_box(tape.backward_batched(&losses).tasks()))
        });
    }
    group.finish();
}

criterion_group!(benches, per_op_overhead, mlp_forward_backward, batched_vs_separate);
criterion_main!(benches);
