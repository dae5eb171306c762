//! One full multi-task training step (forward, per-task work, weighting, Adam) on the reference
//! model of the MTL issue, for each weighting method.
//!
//! Model: the reference model of `benches/reference/mod.rs` (two 3x3 convolutions with pooling
//! and a 3136→256 linear layer shared, three linear heads, batch 128 of 3x28x28), Adam.
//!
//! MGDA runs in the three gradient modes: `mgda_param` (T reverse sweeps form the `T × P`
//! gradients), `mgda_batched` (one sweep with T cotangents, the default) and `mgda_gram` (one
//! sweep that keeps only the `T × T` Gram, then one more weighted backward for the update).
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo bench --bench mtl_step -- --warm-up-time 2 --measurement-time 10
//! RAYON_NUM_THREADS=2 cargo bench --bench mtl_step -- --warm-up-time 2 --measurement-time 10
//! ```
//!
//! With `TAPESTRY_BENCH_CPU_TIME=1` (Linux) criterion measures the process's CPU time (user +
//! system, all threads, from `/proc/self/stat`, 10 ms ticks) instead of wall time: on a shared
//! machine, time spent waiting for a core then does not count. At 2 threads CPU time is the sum
//! over both threads, so compare wall times there.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkGroup, Criterion, Throughput};
use tapestry::mtl::step::{StepCounters, StepOptions, TrainStep};
use tapestry::mtl::task_grads::GradMode;
use tapestry::mtl::weighting::{EqualWeighting, GradNorm, Mgda, MgdaUb, Weighting};
use tapestry::nn::optim::Adam;

mod reference;

fn bench_method<M: Measurement>(
    group: &mut BenchmarkGroup<'_, M>,
    name: &str,
    mode: GradMode,
    mut weighting: Box<dyn Weighting>,
) {
    let (model, mut params) = reference::reference_model(0);
    let batch = reference::random_batch(1);
    let options = StepOptions { grad_mode: mode, ..StepOptions::default() };
    let step = TrainStep::new(&model, &params, weighting.as_ref(), options).unwrap();
    let mut adam = Adam::new(1e-4);
    let mut counters = StepCounters::default();
    group.bench_function(name, |b| {
        b.iter(|| {
            let report = step
                .run(&model, &mut params, &mut adam, weighting.as_mut(), &batch, counters)
                .unwrap();
            counters.step += 1;
            report.losses[0]
        })
    });
}

/// One training step of the reference model per weighting method.
fn mtl_step<M: Measurement>(c: &mut Criterion<M>) {
    let mut group = c.benchmark_group("mtl_step");
    group.sample_size(10);
    bench_method(&mut group, "ew", GradMode::Batched, Box::new(EqualWeighting));
    bench_method(&mut group, "mgda_param", GradMode::Param, Box::new(Mgda::default()));
    bench_method(&mut group, "mgda_batched", GradMode::Batched, Box::new(Mgda::default()));
    bench_method(&mut group, "mgda_gram", GradMode::Gram, Box::new(Mgda::default()));
    bench_method(&mut group, "mgda_ub", GradMode::Batched, Box::new(MgdaUb::default()));
    bench_method(&mut group, "gradnorm", GradMode::Batched, Box::new(GradNorm::new(1.5, 0.025)));
    group.finish();
}

/// CPU time of the whole process (user + system, every thread), in seconds.
struct ProcessCpuTime;

/// Clock ticks per second of `/proc/self/stat` (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat (Linux only)");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 of `rest`.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / TICKS_PER_SECOND
}

impl Measurement for ProcessCpuTime {
    type Intermediate = f64;
    type Value = f64;
    fn start(&self) -> f64 {
        process_cpu_seconds()
    }
    fn end(&self, start: f64) -> f64 {
        process_cpu_seconds() - start
    }
    fn add(&self, a: &f64, b: &f64) -> f64 {
        a + b
    }
    fn zero(&self) -> f64 {
        0.0
    }
    fn to_f64(&self, value: &f64) -> f64 {
        value * 1e9
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Formats CPU nanoseconds as milliseconds.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v /= 1e6);
        "ms (CPU)"
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        _t: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        values.iter_mut().for_each(|v| *v = 0.0);
        "n/a"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns (CPU)"
    }
}

fn main() {
    // What `criterion_group!` and `criterion_main!` expand to, without their undocumented items.
    if std::env::var_os("TAPESTRY_BENCH_CPU_TIME").is_some_and(|v| v == "1") {
        let mut criterion =
            Criterion::default().with_measurement(ProcessCpuTime).configure_from_args();
        mtl_step(&mut criterion);
        criterion.final_summary();
    } else {
        let mut criterion = Criterion::default().with_measurement(WallTime).configure_from_args();
        mtl_step(&mut criterion);
        criterion.final_summary();
    }
}
