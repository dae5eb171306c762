//! `tapestry meta-train` and `tapestry meta-eval`: learn an initialisation with MAML,
//! first-order MAML, Meta-SGD or Reptile on sinusoid regression or N-way K-shot episodes, and
//! score it on held-out tasks after 0..k adaptation steps.
//!
//! A run directory holds `config.toml` (this module's [`MetaRunConfig`]), `metrics.jsonl`,
//! `checkpoint.safetensors` (θ, and Meta-SGD's learned rates as `lr.*`) and two plots:
//! `meta_loss.svg` (the query loss before and after adaptation over the meta-iterations) and
//! `adaptation.svg` (the held-out query loss against the number of adaptation steps).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tapestry_data::TaskTargets;
use tapestry_meta::{
    adaptation_curve, Algorithm, CurvePoint, Episodes, InnerOptimizer, InnerRate, MetaConfig,
    MetaLearner, Sinusoid, Task, TaskSampler,
};
use tapestry_nn::{checkpoint, Linear, Params, Relu, Sequential};

use crate::error::{CliError, Result};
use crate::invalid;
use crate::output::{json_lines, write_atomic};
use crate::plots::{self, Series};
use crate::run::RUN_FILES;
use crate::run::{CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE};
use crate::rundir::{self, LockedDir};
use crate::say;

/// The benchmarks `--benchmark` takes.
pub const BENCHMARKS: [&str; 3] = ["sinusoid", "sinusoid-reptile", "episodes"];
/// The pools episodes are drawn from: the UCI digits (8x8), Fashion-MNIST, and the MultiDigits
/// training images labelled by their left digit (12x12, the inputs `tapestry train` sees).
pub const POOLS: [&str; 3] = ["digits", "fashion", "multidigits"];
/// Classes of the pools: the first half trains, the second half is held out.
const POOL_CLASSES: usize = 10;
/// The seed offset of the held-out tasks, so that they never coincide with training tasks.
const HELD_OUT_SEED: u64 = 1_000_003;

/// Everything a meta-training run depends on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaRunConfig {
    /// `maml`, `fomaml`, `metasgd` or `reptile`.
    pub algo: String,
    /// See [`BENCHMARKS`].
    pub benchmark: String,
    /// Episodes: the labelled pool (see [`POOLS`]).
    pub pool: String,
    /// Episodes: the folder of Fashion-MNIST.
    pub data_path: Option<std::path::PathBuf>,
    /// Support points or examples per class (K).
    pub shots: usize,
    /// Episodes: classes per task (N).
    pub ways: usize,
    /// Episodes: query examples per class; sinusoids: query points (MAML's setting).
    pub queries: usize,
    /// Inner steps in meta-training.
    pub inner_steps: usize,
    /// Inner learning rate.
    pub inner_lr: f32,
    /// Tasks per meta-iteration.
    pub meta_batch: usize,
    /// Adam's learning rate (Reptile: the initial ε).
    pub outer_lr: f64,
    /// Reptile's inner optimizer: `sgd` or `adam`.
    pub reptile_inner: String,
    /// Meta-iterations.
    pub iterations: u64,
    /// Hidden width of the network.
    pub hidden: usize,
    /// The widths of the hidden layers, first to last; empty means two layers of `hidden`.
    /// `[2h, h]` is the trunk of `tapestry train`'s MLP preset of width `h`, so that
    /// `tapestry finetune` can start from either.
    pub widths: Vec<usize>,
    /// Held-out tasks the evaluation draws.
    pub eval_tasks: usize,
    /// Adaptation steps the evaluation records.
    pub eval_steps: usize,
    /// Meta-iterations between log records.
    pub log_every: u64,
    /// Seed of the initialisation and the task draws.
    pub seed: u64,
    /// Threads of the rayon pool (0: one per core).
    pub threads: usize,
}

impl Default for MetaRunConfig {
    /// MAML's sinusoid setting, with fewer iterations than the paper's 70,000.
    fn default() -> Self {
        MetaRunConfig {
            algo: "maml".into(),
            benchmark: "sinusoid".into(),
            pool: "digits".into(),
            data_path: None,
            shots: 10,
            ways: 5,
            queries: 10,
            inner_steps: 1,
            inner_lr: 0.01,
            meta_batch: 25,
            outer_lr: 1e-3,
            reptile_inner: "sgd".into(),
            iterations: 10_000,
            hidden: 40,
            widths: Vec::new(),
            eval_tasks: 600,
            eval_steps: 10,
            log_every: 100,
            seed: 0,
            threads: 0,
        }
    }
}

impl MetaRunConfig {
    /// Checks every value before anything is written.
    pub fn validate(self) -> Result<Self> {
        if Algorithm::from_name(&self.algo).is_none() {
            return Err(invalid!(
                "unknown meta-learning algorithm `{}`; expected one of {}",
                self.algo,
                Algorithm::NAMES.join(", ")
            ));
        }
        if !BENCHMARKS.contains(&self.benchmark.as_str()) {
            return Err(invalid!(
                "unknown benchmark `{}`; expected one of {}",
                self.benchmark,
                BENCHMARKS.join(", ")
            ));
        }
        if !POOLS.contains(&self.pool.as_str()) {
            return Err(invalid!(
                "unknown pool `{}`; expected one of {}",
                self.pool,
                POOLS.join(", ")
            ));
        }
        if !["sgd", "adam"].contains(&self.reptile_inner.as_str()) {
            return Err(invalid!(
                "unknown inner optimizer `{}`; expected sgd or adam",
                self.reptile_inner
            ));
        }
        if self.benchmark == "episodes" && self.ways > POOL_CLASSES / 2 {
            return Err(invalid!(
                "N = {} ways, but the {} pool holds out only {} classes for evaluation (and trains on {})",
                self.ways,
                self.pool,
                POOL_CLASSES / 2,
                POOL_CLASSES / 2
            ));
        }
        for width in std::iter::once(self.hidden).chain(self.widths.iter().copied()) {
            if !(1..=4096).contains(&width) {
                return Err(invalid!("a hidden width must lie in 1..=4096, got {width}"));
            }
        }
        if self.eval_tasks == 0 || self.log_every == 0 {
            return Err(invalid!(
                "the evaluation needs at least one task and the log a positive interval"
            ));
        }
        if self.threads > 1024 {
            return Err(invalid!("at most 1024 threads, got {}", self.threads));
        }
        self.meta_config().validate().map_err(|e| invalid!("{e}"))?;
        Ok(self)
    }

    /// The outer loop's configuration.
    pub fn meta_config(&self) -> MetaConfig {
        MetaConfig {
            algorithm: Algorithm::from_name(&self.algo).unwrap_or(Algorithm::Maml),
            inner_steps: self.inner_steps,
            inner_lr: self.inner_lr,
            meta_batch: self.meta_batch,
            outer_lr: self.outer_lr,
            reptile_inner: if self.reptile_inner == "adam" {
                InnerOptimizer::Adam
            } else {
                InnerOptimizer::Sgd
            },
            iterations: self.iterations,
        }
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a meta-run configuration serialises")
    }

    /// The widths of the hidden layers.
    pub fn hidden_widths(&self) -> Vec<usize> {
        if self.widths.is_empty() {
            vec![self.hidden; 2]
        } else {
            self.widths.clone()
        }
    }

    /// Reads `config.toml` of a run.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CliError::io("read", path, e))?;
        toml::from_str(&text)
            .map_err(|e| invalid!("config file {}: {}", path.display(), e.message().trim()))
    }
}

/// The task samplers of a run: for training, and for the held-out evaluation (other seeds, and
/// for episodes the other half of the classes).
struct Samplers {
    train: Box<dyn TaskSampler>,
    held_out: Box<dyn TaskSampler>,
    /// Input width and output width of the network.
    io: (usize, usize),
}

fn samplers(c: &MetaRunConfig) -> Result<Samplers> {
    let sampler_error = |e: tapestry_meta::MetaError| invalid!("{e}");
    match c.benchmark.as_str() {
        "sinusoid" | "sinusoid-reptile" => {
            let mut s = if c.benchmark == "sinusoid" {
                Sinusoid::maml(c.shots)
            } else {
                Sinusoid::reptile(c.shots)
            };
            if c.benchmark == "sinusoid" {
                s.k_query = c.queries;
            }
            s.validate().map_err(sampler_error)?;
            Ok(Samplers { train: Box::new(s.clone()), held_out: Box::new(s), io: (1, 1) })
        }
        _ => {
            let (inputs, labels, size) = pool(c)?;
            let half: Vec<usize> = (0..POOL_CLASSES / 2).collect();
            let rest: Vec<usize> = (POOL_CLASSES / 2..POOL_CLASSES).collect();
            let shape = [size];
            let k = (c.ways, c.shots, c.queries);
            let train = Episodes::new(&inputs, &shape, &labels, &half, k).map_err(sampler_error)?;
            let held = Episodes::new(&inputs, &shape, &labels, &rest, k).map_err(sampler_error)?;
            Ok(Samplers { train: Box::new(train), held_out: Box::new(held), io: (size, c.ways) })
        }
    }
}

/// The labelled pool of episodes: flat inputs in [0, 1], labels, and the input width.
fn pool(c: &MetaRunConfig) -> Result<(Vec<f32>, Vec<usize>, usize)> {
    if c.pool == "multidigits" {
        // The training split alone: the test split stays unseen, as for `tapestry train`.
        let train =
            tapestry_data::DatasetConfig::by_name("multidigits", c.seed, None)?.load()?.train;
        let Some(TaskTargets::Classes { labels }) =
            train.task_index("left_digit").map(|t| &train.targets[t])
        else {
            return Err(invalid!("the MultiDigits training split has no left_digit labels"));
        };
        let size = train.sample_shape().iter().product();
        let inputs = train.inputs.iter().copied().collect();
        Ok((inputs, labels.iter().map(|&l| l as usize).collect(), size))
    } else if c.pool == "digits" {
        let d = tapestry_data::uci_digits()?;
        let inputs = d.pixels.iter().map(|&p| f32::from(p) / 16.0).collect();
        Ok((inputs, d.labels.iter().map(|&l| usize::from(l)).collect(), 64))
    } else {
        let dir = c.data_path.clone().unwrap_or_else(|| tapestry_data::FASHION_MNIST_DIR.into());
        let f = tapestry_data::read_mnist_folder(&dir)?;
        let size = f.train.images.rows * f.train.images.cols;
        let inputs = f.train.images.pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
        Ok((inputs, f.train.labels.iter().map(|&l| usize::from(l)).collect(), size))
    }
}

/// The network: `inputs → widths... → outputs` with ReLU after every hidden layer (1-40-40-1
/// for sinusoids), its linear layers named `net.0`, `net.2`, ... (the ReLUs take the odd
/// indices).
fn network(c: &MetaRunConfig, (inputs, outputs): (usize, usize)) -> Result<(Sequential, Params)> {
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
    let mut p = Params::new();
    let mut net = Sequential::new();
    let mut width = inputs;
    for (i, &next) in c.hidden_widths().iter().enumerate() {
        net = net.push(Linear::new(&mut p, &format!("net.{}", 2 * i), width, next, &mut rng)?);
        net = net.push(Relu);
        width = next;
    }
    let last = format!("net.{}", 2 * c.hidden_widths().len());
    Ok((net.push(Linear::new(&mut p, &last, width, outputs, &mut rng)?), p))
}

/// The held-out tasks of a run: the same for every run of the benchmark, whatever its seed.
fn held_out_tasks(s: &Samplers, count: usize) -> Vec<Task> {
    let mut rng = ChaCha8Rng::seed_from_u64(HELD_OUT_SEED);
    (0..count).map(|_| s.held_out.sample(&mut rng)).collect()
}

fn curve_json(curve: &[CurvePoint]) -> serde_json::Value {
    json!(curve
        .iter()
        .map(|p| json!({"mean": p.mean, "ci95": p.ci95, "diverged": p.diverged}))
        .collect::<Vec<_>>())
}

/// The table of an adaptation curve.
fn curve_table(curve: &[CurvePoint], loss: &str) -> String {
    let mut out =
        format!("  {:>5}  {:>22}  {:>8}\n", "steps", format!("query {loss} ± 95% CI"), "diverged");
    for (k, p) in curve.iter().enumerate() {
        out.push_str(&format!(
            "  {k:>5}  {:>22}  {:>8}\n",
            format!("{:.4} ± {:.4}", p.mean, p.ci95),
            p.diverged
        ));
    }
    out
}

fn loss_name(c: &MetaRunConfig) -> &'static str {
    if c.benchmark == "episodes" {
        "cross-entropy"
    } else {
        "MSE"
    }
}

/// Runs `tapestry meta-train` into `out`.
///
/// A directory that holds a run is refused unless `force`; the old run is replaced only when the
/// new one ends, checkpoint first (see [`crate::rundir`]).
pub fn meta_train(config: &MetaRunConfig, out: &Path, quiet: bool, force: bool) -> Result<()> {
    let found = rundir::run_files(out, &RUN_FILES);
    if !found.is_empty() && !force {
        return Err(rundir::refuse_existing(out, &found, false));
    }
    let s = samplers(config)?;
    let (net, params) = network(config, s.io)?;
    let numel = params.numel();
    let mut learner = MetaLearner::new(config.meta_config(), Box::new(net), params)
        .map_err(|e| invalid!("{e}"))?;
    let _dir = LockedDir::open(out)?;
    if !quiet {
        say!(
            "tapestry meta-train: {} on {} ({numel} parameters), {} iterations of {} tasks, {} inner step(s) at {}",
            config.algo, config.benchmark, config.iterations, config.meta_batch, config.inner_steps, config.inner_lr
        );
    }
    let mut records =
        vec![json!({"kind": "run", "config": serde_json::to_value(config).expect("serialisable")})];
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(config.iterations), ProgressDrawTarget::stderr())
    };
    bar.set_style(
        ProgressStyle::with_template("meta-train [{bar:25}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x6d65_7461);
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let start = Instant::now();
    let (mut sum_before, mut sum_after, mut n) = (0.0, 0.0, 0u64);
    for it in 0..config.iterations {
        let batch: Vec<Task> = (0..config.meta_batch).map(|_| s.train.sample(&mut rng)).collect();
        let r = learner.step(&batch).map_err(|e| invalid!("{e}"))?;
        sum_before += r.query_before;
        sum_after += r.query_after;
        n += 1;
        if (it + 1) % config.log_every == 0 || it + 1 == config.iterations {
            let (b, a) = (sum_before / n as f64, sum_after / n as f64);
            records.push(json!({"kind": "iteration", "iteration": it + 1, "query_before": b, "query_after": a}));
            before.push((it as f64 + 1.0, b));
            after.push((it as f64 + 1.0, a));
            bar.set_message(format!(
                "query {} {b:.3} -> {a:.3} after adaptation",
                loss_name(config)
            ));
            (sum_before, sum_after, n) = (0.0, 0.0, 0);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let tasks = held_out_tasks(&s, config.eval_tasks);
    let curve = adaptation_curve(
        learner.model(),
        learner.params(),
        learner.inner_rate(),
        &tasks,
        config.eval_steps,
    )
    .map_err(|e| invalid!("{e}"))?;
    records.push(json!({
        "kind": "evaluation",
        "tasks": config.eval_tasks,
        "seconds": seconds,
        "ms_per_iteration": 1e3 * seconds / config.iterations as f64,
        "query_after_steps": curve_json(&curve),
    }));
    save(out, &learner, config)?;
    write_atomic(&out.join(METRICS_FILE), json_lines(&records).as_bytes())?;
    write_atomic(&out.join(CONFIG_FILE), config.to_toml().as_bytes())?;
    let loss = loss_name(config);
    plots::line_chart(
        &out.join("meta_loss.svg"),
        "Query loss over meta-training",
        "meta-iteration",
        loss,
        &[
            Series { name: "before adaptation".into(), points: before },
            Series { name: format!("after {} step(s)", config.inner_steps), points: after },
        ],
    )?;
    write_adaptation_plot(out, &curve, loss)?;
    if !quiet {
        say!(
            "trained in {seconds:.1} s ({:.3} ms per meta-iteration); held-out tasks ({}):",
            1e3 * seconds / config.iterations as f64,
            config.eval_tasks
        );
        crate::output::print_out(&curve_table(&curve, loss));
        say!("wrote {CONFIG_FILE}, {METRICS_FILE}, {CHECKPOINT_FILE}, meta_loss and adaptation (.svg, .png) to {}", out.display());
    }
    Ok(())
}

fn write_adaptation_plot(out: &Path, curve: &[CurvePoint], loss: &str) -> Result<()> {
    let points = curve.iter().enumerate().map(|(k, p)| (k as f64, p.mean)).collect();
    plots::line_chart(
        &out.join("adaptation.svg"),
        "Held-out query loss against adaptation steps",
        "adaptation steps",
        loss,
        &[Series { name: "mean over held-out tasks".into(), points }],
    )?;
    Ok(())
}

/// Saves θ and Meta-SGD's rates in one checkpoint, with the algorithm in its metadata.
fn save(out: &Path, learner: &MetaLearner, config: &MetaRunConfig) -> Result<()> {
    let mut all = learner.params().clone();
    if let Some(rates) = learner.rates() {
        for id in rates.ids() {
            all.add(rates.name(id), rates.get(id).clone())?;
        }
    }
    let metadata = BTreeMap::from([
        ("algo".to_string(), config.algo.clone()),
        ("benchmark".to_string(), config.benchmark.clone()),
        ("iterations".to_string(), learner.iteration().to_string()),
        ("config".to_string(), config.to_toml()),
    ]);
    checkpoint::save(out.join(CHECKPOINT_FILE), &all, None, &metadata)?;
    Ok(())
}

/// Runs `tapestry meta-eval` on the run in `dir`: rebuilds the network, loads θ (and the rates),
/// and scores it on `tasks` held-out tasks after 0..=`steps` adaptation steps.
pub fn meta_eval(dir: &Path, tasks: Option<usize>, steps: Option<usize>) -> Result<()> {
    let config_path = dir.join(CONFIG_FILE);
    let file = dir.join(CHECKPOINT_FILE);
    if !config_path.is_file() || !file.is_file() {
        return Err(invalid!(
            "{} holds no meta-training run ({CONFIG_FILE} and {CHECKPOINT_FILE})",
            dir.display()
        ));
    }
    let mut config = MetaRunConfig::from_toml_file(&config_path)?.validate()?;
    if let Some(t) = tasks {
        if t == 0 {
            return Err(invalid!("the evaluation needs at least one task"));
        }
        config.eval_tasks = t;
    }
    if let Some(k) = steps {
        config.eval_steps = k;
    }
    crate::init_threads(config.threads)?;
    let s = samplers(&config)?;
    let (net, mut params) = network(&config, s.io)?;
    let rates = (config.algo == "metasgd")
        .then(|| tapestry_meta::learning_rates(&params, config.inner_lr))
        .transpose()
        .map_err(|e| invalid!("{e}"))?;
    let mut all = params.clone();
    if let Some(r) = &rates {
        for id in r.ids() {
            all.add(r.name(id), r.get(id).clone())?;
        }
    }
    checkpoint::load(&file, &mut all, None)?;
    for id in params.ids() {
        let v = all.get(all.id(params.name(id)).expect("same names")).clone();
        params.set(id, v)?;
    }
    let rates = rates.map(|mut r| {
        for id in r.ids() {
            let v = all.get(all.id(r.name(id)).expect("same names")).clone();
            r.set(id, v).expect("same shape");
        }
        r
    });
    let rate = match &rates {
        Some(r) => InnerRate::PerElement(r),
        None => InnerRate::Scalar(config.inner_lr),
    };
    let held = held_out_tasks(&s, config.eval_tasks);
    let curve = adaptation_curve(&net, &params, rate, &held, config.eval_steps)
        .map_err(|e| invalid!("{e}"))?;
    say!("{} on {}: held-out tasks ({}):", config.algo, config.benchmark, config.eval_tasks);
    crate::output::print_out(&curve_table(&curve, loss_name(&config)));
    Ok(())
}
