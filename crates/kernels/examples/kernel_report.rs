//! Prints the median and best time of each kernel at the benchmark shapes, with the same
//! method as the Python comparison scripts in `benches/` (time-boxed repeated runs), so that
//! figures taken on a busy machine can be compared side by side. The criterion benches in
//! `benches/` remain the reference measurements.
//!
//! `RAYON_NUM_THREADS=1 cargo run --release -p tapestry-kernels --example kernel_report [gemm|conv|pool|relu]...`
//!
//! With `REPORT_CLOCK=cpu` (meaningful at one thread only) the clock is the thread's CPU time.
//! With `REPORT_MATCH=text`, only the convolutions whose name contains `text` are timed.

use std::time::Instant;
use tapestry_kernels::conv::{
    conv2d_backward_input, conv2d_backward_weight, conv2d_forward, Conv2dGeometry,
};
use tapestry_kernels::elementwise as ew;
use tapestry_kernels::gemm::sgemm;
use tapestry_kernels::pool::{max_pool2d_backward, max_pool2d_forward, Pool2dGeometry};

/// A deterministic pseudo-random vector in [-1, 1).
fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

use tapestry_kernels::clock::thread_cpu_seconds;

/// True when `REPORT_CLOCK=cpu`: time by this thread's CPU time instead of the wall clock, so
/// that single-threaded figures on a shared machine leave out the time other processes ran.
fn cpu_clock() -> bool {
    std::env::var("REPORT_CLOCK").is_ok_and(|v| v == "cpu") && thread_cpu_seconds().is_some()
}

/// The current reading of the chosen clock, in seconds.
fn now(start: Instant) -> f64 {
    if cpu_clock() {
        thread_cpu_seconds().unwrap_or(0.0)
    } else {
        start.elapsed().as_secs_f64()
    }
}

/// (median, best) seconds per call over about `budget` seconds of repeated batches.
fn time(mut f: impl FnMut(), budget: f64) -> (f64, f64) {
    let origin = Instant::now();
    f();
    let t = now(origin);
    f();
    let one = now(origin) - t;
    let reps = ((0.05 / one.max(1e-7)) as usize).max(1);
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < budget || samples.len() < 5 {
        let t = now(origin);
        for _ in 0..reps {
            f();
        }
        samples.push((now(origin) - t) / reps as f64);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (samples[samples.len() / 2], samples[0])
}

fn report(name: &str, (med, best): (f64, f64), flops: Option<f64>, bytes: Option<f64>) {
    let rate = |s: f64| match (flops, bytes) {
        (Some(f), _) => format!("{:8.1} GFLOP/s", f / s / 1e9),
        (_, Some(b)) => format!("{:8.1} GB/s", b / s / 1e9),
        _ => String::new(),
    };
    println!(
        "{name:44} median {:10.1} us {}   best {:10.1} us {}",
        med * 1e6,
        rate(med),
        best * 1e6,
        rate(best)
    );
}

fn gemm() {
    let shapes = [
        ("gemm_square/64", 64, 64, 64),
        ("gemm_square/128", 128, 128, 128),
        ("gemm_square/256", 256, 256, 256),
        ("gemm_square/512", 512, 512, 512),
        ("gemm_square/1024", 1024, 1024, 1024),
        ("gemm_model/fc_forward_128x3136x256", 128, 3136, 256),
        ("gemm_model/fc_dw_3136x128x256", 3136, 128, 256),
        ("gemm_model/fc_dx_128x256x3136", 128, 256, 3136),
        ("gemm_model/head_128x256x10", 128, 256, 10),
        ("gemm_model/heads3_128x256x30", 128, 256, 30),
    ];
    for (name, m, k, n) in shapes {
        let a = random(m * k, 1);
        let b = random(k * n, 2);
        let mut c = vec![0.0f32; m * n];
        let t = time(
            || {
                sgemm(
                    m, k, n, 1.0, &a, k as isize, 1, &b, n as isize, 1, 0.0, &mut c, n as isize, 1,
                )
            },
            3.0,
        );
        report(name, t, Some((2 * m * n * k) as f64), None);
    }
}

/// True unless `REPORT_MATCH` is set and `name` does not contain it (to time one case alone).
fn selected(name: &str) -> bool {
    std::env::var("REPORT_MATCH").map_or(true, |m| name.contains(&m))
}

fn conv() {
    for (label, c_in, hw, c_out) in [("3to32_28x28", 3, 28, 32), ("32to64_14x14", 32, 14, 64)] {
        for n in [32, 128] {
            let g = Conv2dGeometry {
                n,
                c_in,
                h: hw,
                w: hw,
                c_out,
                kh: 3,
                kw: 3,
                stride: (1, 1),
                padding: (1, 1),
                dilation: (1, 1),
            };
            let x = random(g.x_len(), 1);
            let w = random(g.w_len(), 2);
            let bias = random(c_out, 3);
            let dy = random(g.y_len(), 4);
            let (mut y, mut dx) = (vec![0.0; g.y_len()], vec![0.0; g.x_len()]);
            let (mut dw, mut db) = (vec![0.0; g.w_len()], vec![0.0; c_out]);
            let flops = Some((2 * g.y_len() * c_in * 9) as f64);
            let run = |pass: &str, f: &mut dyn FnMut()| {
                let name = format!("conv_{label}/{pass}/b{n}");
                if selected(&name) {
                    report(&name, time(f, 2.0), flops, None);
                }
            };
            run("forward", &mut || conv2d_forward(&g, &x, &w, Some(&bias), &mut y));
            run("dx", &mut || conv2d_backward_input(&g, &dy, &w, &mut dx));
            run("dw", &mut || conv2d_backward_weight(&g, &x, &dy, &mut dw, Some(&mut db)));
        }
    }
}

fn pool() {
    for (label, c, hw) in [("32x28x28", 32, 28), ("64x14x14", 64, 14)] {
        for n in [32, 128] {
            let g = Pool2dGeometry {
                n,
                c,
                h: hw,
                w: hw,
                kh: 2,
                kw: 2,
                stride: (2, 2),
                padding: (0, 0),
            };
            let x = random(g.x_len(), 1);
            let dy = random(g.y_len(), 2);
            let (mut y, mut am, mut dx) =
                (vec![0.0; g.y_len()], vec![0u32; g.y_len()], vec![0.0; g.x_len()]);
            let bytes = Some((4 * g.x_len() + 8 * g.y_len()) as f64);
            let t = time(|| max_pool2d_forward(&g, &x, &mut y, &mut am), 2.0);
            report(&format!("pool2x2_{label}/max_forward/b{n}"), t, None, bytes);
            let t = time(|| max_pool2d_backward(&g, &dy, &am, &mut dx), 2.0);
            report(&format!("pool2x2_{label}/max_backward/b{n}"), t, None, bytes);
        }
    }
}

fn relu() {
    for n in [32, 128] {
        let len = n * 32 * 28 * 28;
        let x = random(len, 1);
        let dy = random(len, 2);
        let mut y = vec![0.0; len];
        let t = time(|| ew::relu_forward(&x, &mut y), 2.0);
        report(&format!("relu/forward/{n}x32x28x28"), t, None, Some(8.0 * len as f64));
        let t = time(|| ew::relu_backward(&x, &dy, &mut y), 2.0);
        report(&format!("relu/backward/{n}x32x28x28"), t, None, Some(12.0 * len as f64));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let want = |s: &str| args.is_empty() || args.iter().any(|a| a == s);
    println!(
        "# tapestry-kernels, {} rayon thread(s), {:?}, clock: {}",
        rayon::current_num_threads(),
        ew::detected_isa(),
        if cpu_clock() { "thread CPU time" } else { "wall" }
    );
    if want("gemm") {
        gemm();
    }
    if want("conv") {
        conv();
    }
    if want("pool") {
        pool();
    }
    if want("relu") {
        relu();
    }
}
