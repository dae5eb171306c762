//! Per-op cost of the tape on tiny tensors: records a chain of `mul`/`add` ops on a
//! 4-element tensor and runs backward, printing nanoseconds per op for each phase.
//!
//! `cargo run --release --example op_overhead`

use std::time::Instant;

use tapestry::autodiff::{Tape, Tensor};

fn main() {
    const OPS: usize = 1000;
    const REPS: usize = 2000;
    let x0 = Tensor::from(vec![0.1, 0.2, 0.3, 0.4]);
    let (mut record, mut backward) = (0.0f64, 0.0f64);
    for rep in 0..REPS + 100 {
        let t0 = Instant::now();
        let tape = Tape::with_capacity(OPS + 2);
        let x = tape.leaf(x0.clone());
        let mut y = x;
        for i in 0..OPS - 1 {
            y = if i % 2 == 0 { y * x } else { y + x };
        }
        let root = y.sum_all();
        let t1 = Instant::now();
        let g = tape.backward(root);
        std::hint::black_box(g.wrt(x));
        drop(g);
        drop(tape);
        let t2 = Instant::now();
        if rep >= 100 {
            record += (t1 - t0).as_secs_f64();
            backward += (t2 - t1).as_secs_f64();
        }
    }
    let per = |s: f64| s * 1e9 / (REPS * OPS) as f64;
    println!("record   {:7.1} ns/op", per(record));
    println!("backward {:7.1} ns/op (including dropping the tape)", per(backward));
    println!("total    {:7.1} ns/op", per(record + backward));
}
