//! One full multi-task training step (forward, per-task work, weighting, Adam) on the reference
//! model of the MTL issue, for each weighting method.
//!
//! Model: conv 3→32 (k3 p1) → ReLU → max-pool 2 → conv 32→64 (k3 p1) → ReLU → max-pool 2 →
//! flatten → linear 3136→256 → ReLU (the shared trunk, `Z` is `[128, 256]`) → 3 heads linear
//! 256→10 with cross-entropy; batch 128 of 3x28x28 random inputs (seeded), Adam.
//!
//! `mgda` is MGDA as it runs by default, on the Gram of the task gradients alone (one sweep,
//! then one weighted backward); `mgda_materialised_param` and `mgda_materialised_batched` are
//! the same method on the materialised path (the `T × P` gradients formed in either mode, the
//! shared update combined from them), which is what `mgda_param` and `mgda_batched` measured
//! before the Gram path existed.
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
use ndarray::ArrayD;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry::autodiff::Var;
use tapestry::data::{Batch, TaskSpec, TaskTargets};
use tapestry::mtl::step::{StepCounters, StepOptions, TrainStep};
use tapestry::mtl::task_grads::GradMode;
use tapestry::mtl::weighting::{
    EqualWeighting, GradNorm, Mgda, MgdaUb, Needs, StepInput, StepWeights, Weighting,
    WeightingError,
};
use tapestry::mtl::HardSharing;
use tapestry::nn::optim::Adam;
use tapestry::nn::{init, Ctx, Linear, Module, ParamId, Params, Relu, Sequential};

const BATCH: usize = 128;
const TASKS: usize = 3;

/// MGDA on the materialised path: it asks for the `T × P` gradients, and the step hands it
/// their Gram.
struct Materialised(Mgda);

impl Weighting for Materialised {
    fn name(&self) -> &'static str {
        "mgda"
    }
    fn needs(&self) -> Needs {
        Needs { shared_gradients: true, ..Needs::LOSSES }
    }
    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        self.0.weights(input)
    }
}

/// A 3x3 convolution with padding 1 and bias.
#[derive(Debug)]
struct Conv3x3 {
    weight: ParamId,
    bias: ParamId,
}

impl Conv3x3 {
    fn new(
        params: &mut Params,
        name: &str,
        c_in: usize,
        c_out: usize,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let w = init::pytorch_default(&[c_out, c_in, 3, 3], rng);
        let b = init::pytorch_default_bias(c_out, c_in * 9, rng);
        let weight = params.add(format!("{name}.weight"), w).unwrap();
        let bias = params.add(format!("{name}.bias"), b).unwrap();
        Conv3x3 { weight, bias }
    }
}

impl Module for Conv3x3 {
    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        x.conv2d(ctx.var(self.weight), Some(ctx.var(self.bias)), (1, 1), (1, 1), (1, 1))
    }
    fn params(&self) -> Vec<ParamId> {
        vec![self.weight, self.bias]
    }
}

/// 2x2 max pooling, stride 2.
#[derive(Debug)]
struct MaxPool2;

impl Module for MaxPool2 {
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        x.max_pool2d((2, 2), (2, 2), (0, 0))
    }
}

/// `[N, ...]` to `[N, rest]`.
#[derive(Debug)]
struct Flatten;

impl Module for Flatten {
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        let shape = x.shape();
        x.reshape(&[shape[0], shape[1..].iter().product()])
    }
}

fn reference_model(params: &mut Params, rng: &mut ChaCha8Rng) -> HardSharing {
    let trunk = Sequential::new()
        .push(Conv3x3::new(params, "trunk.0", 3, 32, rng))
        .push(Relu)
        .push(MaxPool2)
        .push(Conv3x3::new(params, "trunk.3", 32, 64, rng))
        .push(Relu)
        .push(MaxPool2)
        .push(Flatten)
        .push(Linear::new(params, "trunk.7", 3136, 256, rng).unwrap())
        .push(Relu);
    let mut builder = HardSharing::builder(trunk).input_shape(&[3, 28, 28]);
    for t in 0..TASKS {
        let name = format!("task{t}");
        let head = Linear::new(params, &format!("heads.{name}"), 256, 10, rng).unwrap();
        builder = builder.head(TaskSpec::classification(name, 10), head);
    }
    builder.build(params).unwrap()
}

fn random_batch(rng: &mut ChaCha8Rng) -> Batch {
    let inputs: Vec<f32> = (0..BATCH * 3 * 28 * 28).map(|_| rng.gen_range(-1.0..1.0)).collect();
    Batch {
        inputs: ArrayD::from_shape_vec(vec![BATCH, 3, 28, 28], inputs).unwrap(),
        targets: (0..TASKS)
            .map(|_| TaskTargets::Classes {
                labels: (0..BATCH).map(|_| rng.gen_range(0..10)).collect(),
            })
            .collect(),
        indices: (0..BATCH).collect(),
    }
}

fn bench_method<M: Measurement>(
    group: &mut BenchmarkGroup<'_, M>,
    name: &str,
    mode: GradMode,
    mut weighting: Box<dyn Weighting>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut params = Params::new();
    let model = reference_model(&mut params, &mut rng);
    let batch = random_batch(&mut rng);
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
    bench_method(&mut group, "mgda", GradMode::Batched, Box::new(Mgda::default()));
    let materialised = || Box::new(Materialised(Mgda::default()));
    bench_method(&mut group, "mgda_materialised_param", GradMode::Param, materialised());
    bench_method(&mut group, "mgda_materialised_batched", GradMode::Batched, materialised());
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
