//! Per-op cost of the tape on small tensors: records a chain of `mul`/`add` ops and runs
//! backward, printing nanoseconds per op for each phase. The reference chain is on a 4-element
//! tensor (its cost is the tape's own, not arithmetic); a 64-element chain is printed beside it,
//! past the size a tensor holds inline.
//!
//! `cargo run --release --example op_overhead`

use std::time::Instant;

use tapestry::autodiff::{Tape, Tensor};

/// `(record, backward)` in ns per op for a chain of `ops` ops on `len` elements, over `reps`.
fn chain(len: usize, ops: usize, reps: usize) -> (f64, f64) {
    let x0 = Tensor::from((0..len).map(|i| 0.1 + 0.1 * (i % 4) as f32).collect::<Vec<_>>());
    let (mut record, mut backward) = (0.0f64, 0.0f64);
    for rep in 0..reps + 100 {
        let t0 = Instant::now();
        let tape = Tape::with_capacity(ops + 2);
        let x = tape.leaf(x0.clone());
        let mut y = x;
        for i in 0..ops - 1 {
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
    let per = |s: f64| s * 1e9 / (reps * ops) as f64;
    (per(record), per(backward))
}

fn main() {
    for (len, label) in [(4, "4 elements (reference)"), (64, "64 elements")] {
        let (record, backward) = chain(len, 1000, 2000);
        println!("{label}:");
        println!("  record   {record:7.1} ns/op");
        println!("  backward {backward:7.1} ns/op (including dropping the tape)");
        println!("  total    {:7.1} ns/op", record + backward);
    }
}
