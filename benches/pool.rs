//! Pooling throughput in bytes moved (input read + output written, plus arg-max indices for
//! max-pooling) at the reference model's activations, batch 32 and 128.
//!
//! `RAYON_NUM_THREADS=1 cargo bench --bench pool -- --warm-up-time 1 --measurement-time 3`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_kernels::pool::{
    avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward,
    Pool2dGeometry,
};

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

fn pool(c: &mut Criterion) {
    for (name, ch, hw) in [("32x28x28", 32, 28), ("64x14x14", 64, 14)] {
        for n in [32, 128] {
            let g = Pool2dGeometry {
                n,
                c: ch,
                h: hw,
                w: hw,
                kh: 2,
                kw: 2,
                stride: (2, 2),
                padding: (0, 0),
            };
            let x = random(g.x_len(), 1);
            let dy = random(g.y_len(), 2);
            let mut y = vec![0.0f32; g.y_len()];
            let mut am = vec![0u32; g.y_len()];
            let mut dx = vec![0.0f32; g.x_len()];
            max_pool2d_forward(&g, &x, &mut y, &mut am);
            let (xb, yb) = (4 * g.x_len() as u64, 4 * g.y_len() as u64);
            let mut grp = c.benchmark_group(format!("pool2x2_{name}"));
            grp.throughput(Throughput::Bytes(xb + 2 * yb));
            grp.bench_function(BenchmarkId::new("max_forward", format!("b{n}")), |b| {
                b.iter(|| {
                    max_pool2d_forward(&g, &x, &mut y, &mut am);
                    black_box(&y);
                })
            });
            grp.bench_function(BenchmarkId::new("max_backward", format!("b{n}")), |b| {
                b.iter(|| {
                    max_pool2d_backward(&g, &dy, &am, &mut dx);
                    black_box(&dx);
                })
            });
            grp.throughput(Throughput::Bytes(xb + yb));
            grp.bench_function(BenchmarkId::new("avg_forward", format!("b{n}")), |b| {
                b.iter(|| {
                    avg_pool2d_forward(&g, &x, &mut y);
                    black_box(&y);
                })
            });
            grp.bench_function(BenchmarkId::new("avg_backward", format!("b{n}")), |b| {
                b.iter(|| {
                    avg_pool2d_backward(&g, &dy, &mut dx);
                    black_box(&dx);
                })
            });
            grp.finish();
        }
    }
}

criterion_group!(benches, pool);
criterion_main!(benches);
