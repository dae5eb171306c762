//! The reference MTL step side by side with PyTorch's, interleaved in one run: time per step and
//! the peak memory the step adds to its process.
//!
//! Each round runs, for every method, Tapestry's step in a fresh process
//! (`benches/reference/measure.rs`) and then PyTorch's (`benches/mtl_step_torch.py`, the same
//! model, batch, optimizer and method), each for two warm-up and `STEP_STEPS` timed steps
//! (default 10). A process reports its median wall and CPU time per step and its peak resident
//! set (`VmHWM`) before the first step and after the last; the difference is what the step adds
//! (for PyTorch, on top of its import). After `STEP_ROUNDS` rounds (default 3) it prints the
//! medians over rounds, the range in brackets, and the ratios of the medians (Tapestry over
//! PyTorch: below 1, Tapestry is faster or smaller).
//!
//! ```text
//! cargo build --release --example step_vs_torch
//! RAYON_NUM_THREADS=1 PYTHON=/tmp/torchenv/bin/python target/release/examples/step_vs_torch
//! RAYON_NUM_THREADS=2 PYTHON=/tmp/torchenv/bin/python target/release/examples/step_vs_torch
//! ```
//!
//! `STEP_METHODS` picks the methods (default `ew,mgda`); PyTorch runs with as many threads as
//! `RAYON_NUM_THREADS` gives Tapestry (default 1).

use std::process::Command;

#[path = "../benches/reference/measure.rs"]
mod measure;
#[path = "../benches/reference/mod.rs"]
mod reference;

use measure::median;

/// One process's figures: wall ms, CPU ms, peak before and after (MiB).
type Figures = [f64; 4];

fn parse(line: &str, skip: usize) -> Figures {
    let f: Vec<f64> = line.split_whitespace().skip(skip).map(|v| v.parse().unwrap()).collect();
    assert_eq!(f.len(), 4, "unexpected line {line:?}");
    [f[0], f[1], f[2], f[3]]
}

fn run(command: &mut Command, what: &str) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `median [min–max]` of column `k`.
fn summary(rows: &[Figures], k: impl Fn(&Figures) -> f64) -> (f64, String) {
    let v: Vec<f64> = rows.iter().map(&k).collect();
    let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let m = median(v);
    (m, format!("{m:.1} [{lo:.1}–{hi:.1}]"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, name] = &args[..] {
        assert_eq!(flag, "--one", "usage: step_vs_torch [--one NAME]");
        measure::run_one(name);
        return;
    }
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let rounds: usize = env("STEP_ROUNDS", "3").parse().expect("STEP_ROUNDS is a count");
    let threads = env("RAYON_NUM_THREADS", "1");
    let python = env("PYTHON", "python3");
    let methods: Vec<String> =
        env("STEP_METHODS", "ew,mgda").split(',').map(String::from).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/mtl_step_torch.py");
    let exe = std::env::current_exe().unwrap();
    let mut ours: Vec<Vec<Figures>> = vec![Vec::new(); methods.len()];
    let mut theirs: Vec<Vec<Figures>> = vec![Vec::new(); methods.len()];
    for round in 0..rounds {
        for (m, method) in methods.iter().enumerate() {
            let line = run(
                Command::new(&exe).args(["--one", method]).env("RAYON_NUM_THREADS", &threads),
                &format!("tapestry {method}"),
            );
            eprintln!("round {round}: tapestry {line}");
            ours[m].push(parse(&line, 1));
            let line = run(
                Command::new(&python).args([script, method]).env("STEP_THREADS", &threads),
                &format!("{python} {script} {method}"),
            );
            eprintln!("round {round}: {line}");
            theirs[m].push(parse(&line, 3));
        }
    }
    println!("{threads} thread(s), batch {}, medians of {rounds} rounds [range]", reference::BATCH);
    println!(
        "| method | Tapestry wall ms | PyTorch wall ms | ratio | Tapestry CPU ms | PyTorch CPU ms \
         | ratio | Tapestry peak added (MiB) | PyTorch peak added (MiB) | ratio |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (m, method) in methods.iter().enumerate() {
        let mut cells = Vec::new();
        for k in [0, 1, 4] {
            let col = |f: &Figures| if k == 4 { f[3] - f[2] } else { f[k] };
            let (a, sa) = summary(&ours[m], col);
            let (b, sb) = summary(&theirs[m], col);
            cells.push(format!("{sa} | {sb} | {:.2}", a / b));
        }
        println!("| {method} | {} |", cells.join(" | "));
    }
}
