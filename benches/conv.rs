//! conv2d forward, input gradient (dX) and weight gradient (dW) in FLOP/s (`2·outputs·c_in·kh·kw`
//! per pass) at the reference model's two convolutions, batch 32 and 128, and at the two of the
//! Multi-Fashion LeNet (1 → 10 k9 on 36x36 and 10 → 20 k5 on 14x14, no padding), batch 256. The
//! LeNet's forward passes and weight gradients run on rows of pixels (its channel counts are not
//! whole vectors of 16); `examples/conv_paths.rs` in the kernels crate times every path that can
//! compute them side by side. The count is the direct algorithm's whatever algorithm runs, so that
//! figures compare by time: the 32 → 64 layer runs Winograd F(2×2, 3×3) on AVX-512, with 2.25 times
//! fewer multiplications, and may report more than the core's FMA peak (`TAPESTRY_CONV_WINOGRAD=0`
//! runs it on the direct kernel).
//!
//! `RAYON_NUM_THREADS=1 cargo bench --bench conv -- --warm-up-time 1 --measurement-time 3`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_kernels::conv::{
    conv2d_backward_input, conv2d_backward_weight, conv2d_forward, Conv2dGeometry,
};

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

/// Name, input channels, input height and width, output channels, kernel size, padding, batches.
type Shape = (&'static str, usize, usize, usize, usize, usize, &'static [usize]);

fn conv(c: &mut Criterion) {
    let shapes: [Shape; 4] = [
        ("3to32_28x28", 3, 28, 32, 3, 1, &[32, 128]),
        ("32to64_14x14", 32, 14, 64, 3, 1, &[32, 128]),
        ("lenet_1to10_k9_36x36", 1, 36, 10, 9, 0, &[256]),
        ("lenet_10to20_k5_14x14", 10, 14, 20, 5, 0, &[256]),
    ];
    for (name, c_in, hw, c_out, k, pad, batches) in shapes {
        for &n in batches {
            let g = Conv2dGeometry {
                n,
                c_in,
                h: hw,
                w: hw,
                c_out,
                kh: k,
                kw: k,
                stride: (1, 1),
                padding: (pad, pad),
                dilation: (1, 1),
            };
            let x = random(g.x_len(), 1);
            let w = random(g.w_len(), 2);
            let bias = random(c_out, 3);
            let dy = random(g.y_len(), 4);
            let mut y = vec![0.0f32; g.y_len()];
            let mut dx = vec![0.0f32; g.x_len()];
            let mut dw = vec![0.0f32; g.w_len()];
            let mut db = vec![0.0f32; c_out];
            let flops = 2 * g.y_len() * c_in * k * k;
            let mut grp = c.benchmark_group(format!("conv_{name}"));
            grp.throughput(Throughput::Elements(flops as u64));
            grp.bench_function(BenchmarkId::new("forward", format!("b{n}")), |b| {
                b.iter(|| {
                    conv2d_forward(&g, &x, &w, Some(&bias), &mut y);
                    black_box(&y);
                })
            });
            grp.bench_function(BenchmarkId::new("dx", format!("b{n}")), |b| {
                b.iter(|| {
                    conv2d_backward_input(&g, &dy, &w, &mut dx);
                    black_box(&dx);
                })
            });
            grp.bench_function(BenchmarkId::new("dw", format!("b{n}")), |b| {
                b.iter(|| {
                    conv2d_backward_weight(&g, &x, &dy, &mut dw, Some(&mut db));
                    black_box(&dw);
                })
            });
            grp.finish();
        }
    }
}

criterion_group!(benches, conv);
criterion_main!(benches);
