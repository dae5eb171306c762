//! Hessian-vector product time against gradient time, for comparison with PyTorch's double
//! backward (`benches/hvp_torch.py` prints the same table for the same models and shapes).
//!
//! Two models, each with a 10-class cross-entropy loss (mean over the batch of 128) and the HVP
//! taken with respect to all parameters along a random direction `v` (uniform in [-1, 1]):
//!
//! - `mlp`: input `[128, 256]` → linear 256→256 → tanh → linear 256→10 (tanh rather than ReLU
//!   so that the Hessian is not block-sparse: ReLU's second derivative is zero).
//! - `conv`: the reference model of `benches/mtl_step.rs` with a single head: conv 3→32 (k3 p1)
//!   → ReLU → max-pool 2 → conv 32→64 (k3 p1) → ReLU → max-pool 2 → flatten → linear 3136→256
//!   → ReLU → linear 256→10; input `[128, 3, 28, 28]`.
//!
//! Per model it times a gradient (record the forward pass, one backward pass: `tape.grad`) and
//! an HVP (record the forward pass, then `tape.hvp`: a recorded backward pass, the dot product
//! `Σ ⟨gᵢ, vᵢ⟩` on the tape, and one ordinary backward pass of it), each from a fresh tape, as
//! a training step would. Times are the median and the best of repeated samples, taken as in
//! `benches/conv_torch.py`: one warm-up call, a sample repeats the call for about 50 ms, samples
//! are taken for `BENCH_BUDGET` seconds (default 2) and at least 5. Below the table, a line per
//! model splits the HVP into its phases (median of single calls per phase), and a check line
//! compares the HVP on a small batch with a central finite difference of gradients (along `v`
//! for the MLP, along `v` on the output layer for the conv model: see `check_direction`).
//! `HVP_DUMP=DIR` also writes the small problems with their HVP along all of `v`, for
//! `HVP_COMPARE=DIR python3 benches/hvp_torch.py` to compare with PyTorch's HVP in float64.
//!
//! ```text
//! cargo build --release --example hvp_report
//! RAYON_NUM_THREADS=1 REPORT_CLOCK=cpu cargo run --release --example hvp_report
//! RAYON_NUM_THREADS=2 cargo run --release --example hvp_report
//! HVP_MODEL=mlp cargo run --release --example hvp_report        # or conv; default both
//! HVP_DUMP=/tmp/hvp cargo run --release --example hvp_report && \
//!     HVP_COMPARE=/tmp/hvp python3 benches/hvp_torch.py
//! ```
//!
//! `REPORT_CLOCK=cpu` (Linux) times by the CPU time of the process (all threads,
//! `tapestry_kernels::clock`), which leaves out the time other processes ran on a shared
//! machine; it is meaningful at one thread only (at two it sums both threads, spinning
//! included), so compare wall times there. The thread count is rayon's: `RAYON_NUM_THREADS`.
//! Run one model per process (`HVP_MODEL`) for figures that do not depend on what ran before
//! (the kernels' buffer pool and the allocator carry state from one model to the next).

use std::hint::black_box;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry::autodiff::{Reduction, Tape, Tensor, Var};
use tapestry::nn::init;

const BATCH: usize = 128;
const CLASSES: usize = 10;

/// Which network.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Mlp,
    Conv,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mlp => "mlp",
            Kind::Conv => "conv",
        }
    }
}

/// A model's parameters (in a fixed order), one batch of inputs and labels, and a direction.
struct Problem {
    kind: Kind,
    params: Vec<Tensor>,
    x: Tensor,
    labels: Vec<i64>,
    v: Vec<Tensor>,
}

fn uniform(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(shape, data).expect("shape")
}

/// Weight `[out, fan_in..]` and bias `[out]` with PyTorch's default initialisation.
fn layer(shape: &[usize], rng: &mut ChaCha8Rng) -> [Tensor; 2] {
    let fan_in = shape[1..].iter().product();
    [init::pytorch_default(shape, rng), init::pytorch_default_bias(shape[0], fan_in, rng)]
}

impl Problem {
    fn new(kind: Kind, batch: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (shapes, input): (Vec<Vec<usize>>, Vec<usize>) = match kind {
            Kind::Mlp => (vec![vec![256, 256], vec![CLASSES, 256]], vec![batch, 256]),
            Kind::Conv => (
                vec![vec![32, 3, 3, 3], vec![64, 32, 3, 3], vec![256, 3136], vec![CLASSES, 256]],
                vec![batch, 3, 28, 28],
            ),
        };
        let params: Vec<Tensor> = shapes.iter().flat_map(|s| layer(s, &mut rng)).collect();
        let x = uniform(&input, &mut rng);
        let labels = (0..batch).map(|_| rng.gen_range(0..CLASSES as i64)).collect();
        let v = params.iter().map(|p| uniform(p.shape(), &mut rng)).collect();
        Problem { kind, params, x, labels, v }
    }

    fn param_count(&self) -> usize {
        self.params.iter().map(Tensor::len).sum()
    }

    /// Records the forward pass and the loss; `p` are the parameters on `tape`.
    fn loss<'t>(&self, tape: &'t Tape, p: &[Var<'t>]) -> Var<'t> {
        let x = tape.constant(self.x.clone());
        let logits = match self.kind {
            Kind::Mlp => x.linear(p[0], Some(p[1])).tanh().linear(p[2], Some(p[3])),
            Kind::Conv => {
                let conv = |x: Var<'t>, w: Var<'t>, b: Var<'t>| {
                    x.conv2d(w, Some(b), (1, 1), (1, 1), (1, 1)).relu().max_pool2d(
                        (2, 2),
                        (2, 2),
                        (0, 0),
                    )
                };
                let h = conv(conv(x, p[0], p[1]), p[2], p[3]);
                let n = h.shape()[0];
                let h = h.reshape(&[n, 3136]).linear(p[4], Some(p[5])).relu();
                h.linear(p[6], Some(p[7]))
            }
        };
        logits.cross_entropy(&self.labels, None, Reduction::Mean)
    }

    fn leaves<'t>(&self, tape: &'t Tape, params: &[Tensor]) -> Vec<Var<'t>> {
        params.iter().map(|t| tape.leaf(t.clone())).collect()
    }

    /// One gradient from a fresh tape: forward, one backward pass.
    fn grad_at(&self, params: &[Tensor]) -> Vec<Tensor> {
        let tape = Tape::new();
        let p = self.leaves(&tape, params);
        let loss = self.loss(&tape, &p);
        let g = tape.grad(loss, &p);
        p.iter().map(|&w| g.wrt(w)).collect()
    }

    /// One HVP along `v` from a fresh tape: forward, `tape.hvp`.
    fn hvp(&self, v: &[Tensor]) -> Vec<Tensor> {
        let tape = Tape::new();
        let p = self.leaves(&tape, &self.params);
        let loss = self.loss(&tape, &p);
        tape.hvp(loss, &p, v)
    }

    /// The direction of the finite-difference check. For the MLP, `v`. For the conv model, `v`
    /// on the output layer and zero elsewhere: moving the output layer moves no ReLU or max-pool
    /// kink, so the loss is smooth along it and the central difference converges (along `v`
    /// itself some of the ~10⁵ ReLU units cross zero and the difference does not converge, in
    /// f64 as well). `H·v` then still has every block: the cross terms reach the whole trunk
    /// through the recorded rules of conv2d, ReLU and max-pool.
    fn check_direction(&self) -> Vec<Tensor> {
        let last = self.v.len() - 2;
        let keep = |i: usize| self.kind == Kind::Mlp || i >= last;
        let zero = |t: &Tensor| Tensor::zeros(t.shape());
        self.v.iter().enumerate().map(|(i, t)| if keep(i) { t.clone() } else { zero(t) }).collect()
    }

    /// Writes the parameters, input, labels, `v` and `hv` (raw little-endian f32, one file each,
    /// shapes in `shapes.txt`) for `HVP_COMPARE` in `benches/hvp_torch.py`.
    fn dump(&self, hv: &[Tensor], dir: &std::path::Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut shapes = String::new();
        let named = [("p", &self.params), ("v", &self.v), ("hv", &hv.to_vec())];
        let tensors = named.iter().flat_map(|(n, ts)| {
            ts.iter().enumerate().map(move |(i, t)| (format!("{n}{i}"), t.clone()))
        });
        for (name, t) in tensors.chain([("x".to_string(), self.x.clone())]) {
            let bytes: Vec<u8> = t.as_slice().iter().flat_map(|x| x.to_le_bytes()).collect();
            std::fs::write(dir.join(format!("{name}.bin")), bytes)?;
            let dims: Vec<String> = t.shape().iter().map(usize::to_string).collect();
            shapes += &format!("{name} {}\n", dims.join(" "));
        }
        std::fs::write(dir.join("shapes.txt"), shapes)?;
        let labels: Vec<String> = self.labels.iter().map(i64::to_string).collect();
        std::fs::write(dir.join("labels.txt"), labels.join(" ") + "\n")
    }
}

/// What a timing reads: wall time, or the process's CPU time.
#[derive(Clone, Copy)]
enum Clock {
    Wall(Instant),
    Cpu,
}

/// The process's CPU time in seconds, all threads.
fn process_cpu_seconds() -> f64 {
    tapestry::kernels::clock::process_cpu_seconds().expect("REPORT_CLOCK=cpu needs Linux")
}

impl Clock {
    fn from_env() -> Self {
        if std::env::var("REPORT_CLOCK").is_ok_and(|c| c == "cpu") {
            Clock::Cpu
        } else {
            Clock::Wall(Instant::now())
        }
    }

    fn label(self) -> &'static str {
        match self {
            Clock::Wall(_) => "wall",
            Clock::Cpu => "cpu",
        }
    }

    /// Seconds since an arbitrary origin.
    fn now(self) -> f64 {
        match self {
            Clock::Wall(origin) => origin.elapsed().as_secs_f64(),
            Clock::Cpu => process_cpu_seconds(),
        }
    }
}

/// Median and best seconds per call of `f`, sampled as `benches/conv_torch.py` does.
fn median_time(clock: Clock, budget: f64, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let t = clock.now();
    f();
    let one = clock.now() - t;
    let reps = ((0.05 / one.max(1e-7)) as usize).max(1);
    let mut samples = Vec::new();
    let deadline = Instant::now() + std::time::Duration::from_secs_f64(budget);
    while Instant::now() < deadline || samples.len() < 5 {
        let t = clock.now();
        for _ in 0..reps {
            f();
        }
        samples.push((clock.now() - t) / reps as f64);
    }
    (median(&mut samples), samples.iter().copied().fold(f64::INFINITY, f64::min))
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}

/// Median seconds of each HVP phase over single calls, for about `budget` seconds.
fn hvp_phases(problem: &Problem, clock: Clock, budget: f64, checksum: &mut f64) -> [f64; 5] {
    let mut phases: [Vec<f64>; 5] = Default::default();
    let deadline = Instant::now() + std::time::Duration::from_secs_f64(budget);
    while Instant::now() < deadline || phases[0].len() < 5 {
        let t0 = clock.now();
        let tape = Tape::new();
        let p = problem.leaves(&tape, &problem.params);
        let loss = problem.loss(&tape, &p);
        let t1 = clock.now();
        let grads = tape.grad_graph(loss, &p);
        let t2 = clock.now();
        // The dot product as `Tape::hvp` builds it.
        let mut dot: Option<Var<'_>> = None;
        for (g, v) in grads.iter().zip(&problem.v) {
            let term = (*g * tape.constant(v.clone())).sum_all();
            dot = Some(dot.map_or(term, |d| d + term));
        }
        let dot = dot.expect("parameters");
        let t3 = clock.now();
        let second = tape.grad(dot, &p);
        let hv: Vec<Tensor> = p.iter().map(|&w| second.wrt(w)).collect();
        let t4 = clock.now();
        *checksum += hv.iter().map(|h| h.as_slice()[0] as f64).sum::<f64>();
        drop((hv, second, grads, p));
        drop(tape);
        let t5 = clock.now();
        for (i, d) in [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4].into_iter().enumerate() {
            phases[i].push(d);
        }
    }
    phases.map(|mut p| median(&mut p))
}

fn norm(xs: &[Tensor]) -> f64 {
    xs.iter().flat_map(|t| t.as_slice()).map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt()
}

/// `‖FD − Hv‖ / ‖Hv‖` where FD is the central difference `(g(θ+εv) − g(θ−εv)) / 2ε`.
fn fd_error(problem: &Problem, v: &[Tensor], hv: &[Tensor], eps: f32) -> f64 {
    let shifted = |sign: f32| -> Vec<Tensor> {
        let params: Vec<Tensor> = problem
            .params
            .iter()
            .zip(v)
            .map(|(p, v)| {
                let data = p
                    .as_slice()
                    .iter()
                    .zip(v.as_slice())
                    .map(|(a, b)| a + sign * eps * b)
                    .collect();
                Tensor::from_vec(p.shape(), data).expect("shape")
            })
            .collect();
        problem.grad_at(&params)
    };
    let (plus, minus) = (shifted(1.0), shifted(-1.0));
    let mut diff = 0.0f64;
    for ((p, m), h) in plus.iter().zip(&minus).zip(hv) {
        for ((a, b), c) in p.as_slice().iter().zip(m.as_slice()).zip(h.as_slice()) {
            let fd = (*a as f64 - *b as f64) / (2.0 * eps as f64);
            diff += (fd - *c as f64).powi(2);
        }
    }
    diff.sqrt() / norm(hv)
}

fn ms(s: f64) -> String {
    format!("{:10.3}", s * 1e3)
}

fn main() {
    let clock = Clock::from_env();
    let budget: f64 =
        std::env::var("BENCH_BUDGET").ok().and_then(|b| b.parse().ok()).unwrap_or(2.0);
    let kinds: Vec<Kind> = match std::env::var("HVP_MODEL").as_deref() {
        Ok("mlp") => vec![Kind::Mlp],
        Ok("conv") => vec![Kind::Conv],
        Ok("all") | Err(_) => vec![Kind::Mlp, Kind::Conv],
        Ok(other) => panic!("HVP_MODEL={other}: expected mlp, conv or all"),
    };
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# tapestry hvp_report: threads {threads} (RAYON_NUM_THREADS; {cores} cores), clock {}, \
         {budget} s per measurement, times in ms",
        clock.label()
    );
    println!(
        "{:6} {:9} {:>7} {:>5} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "model",
        "engine",
        "threads",
        "clock",
        "grad_med",
        "grad_best",
        "hvp_med",
        "hvp_best",
        "ratio_med",
        "ratio_best"
    );
    let mut notes = Vec::new();
    for &kind in &kinds {
        let problem = Problem::new(kind, BATCH, 0);
        // Uses every result, so that nothing is optimised away.
        let mut checksum = 0.0f64;
        let grad = median_time(clock, budget, || {
            let g = problem.grad_at(&problem.params);
            checksum += g.iter().map(|t| t.as_slice()[0] as f64).sum::<f64>();
            black_box(g);
        });
        let hvp = median_time(clock, budget, || {
            let hv = problem.hvp(&problem.v);
            checksum += hv.iter().map(|t| t.as_slice()[0] as f64).sum::<f64>();
            black_box(hv);
        });
        println!(
            "{:6} {:9} {:>7} {:>5} {} {} {} {} {:9.2} {:9.2}",
            kind.name(),
            "tapestry",
            threads,
            clock.label(),
            ms(grad.0),
            ms(grad.1),
            ms(hvp.0),
            ms(hvp.1),
            hvp.0 / grad.0,
            hvp.1 / grad.1
        );
        let [fwd, rec, dot, second, free] =
            hvp_phases(&problem, clock, budget / 2.0, &mut checksum);
        notes.push(format!(
            "# {} ({} parameters) HVP phases, median ms: forward {fwd:.3} | recorded backward \
             {rec:.3} | dot {dot:.3} | second backward {second:.3} | drop {free:.3} | sum {:.3}",
            kind.name(),
            problem.param_count(),
            (fwd + rec + dot + second + free) * 1e3,
            fwd = fwd * 1e3,
            rec = rec * 1e3,
            dot = dot * 1e3,
            second = second * 1e3,
            free = free * 1e3,
        ));
        let small = Problem::new(kind, if kind == Kind::Mlp { 8 } else { 2 }, 1);
        let v = small.check_direction();
        let hv = small.hvp(&v);
        let errors: Vec<String> = [1e-2f32, 3e-3, 1e-3]
            .iter()
            .map(|&eps| format!("eps {eps:.0e}: {:.2e}", fd_error(&small, &v, &hv, eps)))
            .collect();
        let along = if kind == Kind::Mlp { "v" } else { "v on the output layer" };
        notes.push(format!(
            "# {} check, batch {}, along {along}: |Hv - FD| / |Hv|, FD = (g(p + eps v) - \
             g(p - eps v)) / 2 eps: {} (|Hv| = {:.4e})",
            kind.name(),
            small.labels.len(),
            errors.join(", "),
            norm(&hv),
        ));
        if let Some(dir) = std::env::var_os("HVP_DUMP") {
            let dir = std::path::Path::new(&dir).join(kind.name());
            small.dump(&small.hvp(&small.v), &dir).expect("HVP_DUMP: writing the check problem");
            notes.push(format!("# {} check problem written to {}", kind.name(), dir.display()));
        }
        notes.push(format!("# {} checksum {checksum:.6e}", kind.name()));
    }
    for note in notes {
        println!("{note}");
    }
}
