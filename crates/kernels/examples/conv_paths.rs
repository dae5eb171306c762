//! Times every convolution algorithm that can compute each pass of the LeNet layers of the
//! Multi-Fashion protocol (batch 256), side by side: each path forced in turn, interleaved over
//! rounds, medians and ranges. A path that cannot compute a pass (the forced call fell back to
//! another) is left out, so the table shows what the dispatcher chooses between.
//!
//! `RAYON_NUM_THREADS=1 cargo run --release -p tapestry-kernels --example conv_paths`
//!
//! `ROUNDS` (default 9) sets the rounds; each round runs every pass 5 times per path.

use std::time::Instant;
use tapestry_kernels::conv::{
    conv2d_backward_input, conv2d_backward_weight, conv2d_forward, Conv2dGeometry,
};
use tapestry_kernels::path::{forced, ConvPath, Force};

/// A deterministic vector in [-0.5, 0.5).
fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5).collect()
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(9);
    let paths = [
        ConvPath::Winograd,
        ConvPath::Direct,
        ConvPath::DirectRows,
        ConvPath::ImageLanes,
        ConvPath::Im2col,
    ];
    println!("threads: {}, rounds: {rounds}", rayon::current_num_threads());
    println!("{:<24} {:<8} {:<11} {:>9}  range", "layer", "pass", "path", "median ms");
    for (name, c_in, hw, c_out, k) in
        [("1 -> 10, k9, 36x36", 1, 36, 10, 9), ("10 -> 20, k5, 14x14", 10, 14, 20, 5)]
    {
        let g = Conv2dGeometry {
            n: 256,
            c_in,
            h: hw,
            w: hw,
            c_out,
            kh: k,
            kw: k,
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
        };
        let (x, w, b, dy) =
            (values(g.x_len(), 1), values(g.w_len(), 2), values(c_out, 3), values(g.y_len(), 4));
        let (mut y, mut dx) = (vec![0.0f32; g.y_len()], vec![0.0f32; g.x_len()]);
        let (mut dw, mut db) = (vec![0.0f32; g.w_len()], vec![0.0f32; c_out]);
        for pass in ["forward", "dx", "dw"] {
            let mut times: Vec<Vec<f64>> = vec![vec![]; paths.len()];
            let mut ran_as: Vec<bool> = vec![true; paths.len()];
            for _ in 0..rounds {
                for (i, &path) in paths.iter().enumerate() {
                    let start = Instant::now();
                    let ((), ran) = forced(Force { conv: Some(path), ..Force::NONE }, || {
                        for _ in 0..5 {
                            match pass {
                                "forward" => conv2d_forward(&g, &x, &w, Some(&b), &mut y),
                                "dx" => conv2d_backward_input(&g, &dy, &w, &mut dx),
                                _ => conv2d_backward_weight(&g, &x, &dy, &mut dw, Some(&mut db)),
                            }
                        }
                    });
                    times[i].push(start.elapsed().as_secs_f64() * 1e3 / 5.0);
                    ran_as[i] &= ran.convs() == [path];
                }
            }
            for (i, t) in times.iter_mut().enumerate() {
                if !ran_as[i] {
                    continue;
                }
                t.sort_by(f64::total_cmp);
                let (lo, med, hi) = (t[0], t[t.len() / 2], t[t.len() - 1]);
                let path = format!("{:?}", paths[i]);
                println!("{name:<24} {pass:<8} {path:<11} {med:>9.2}  [{lo:.2}–{hi:.2}]");
            }
        }
    }
}
