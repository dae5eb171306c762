//! `tapestry finetune`: transfer to a task a run never saw, from K labelled examples per class.
//!
//! The source is a hard-sharing run of `tapestry train` (its trunk, the shared parameters), a
//! `tapestry meta-train` run on episodes (the hidden layers of its network, a MAML or Reptile
//! initialisation), or `scratch` (the same architecture, randomly initialised). A fresh linear
//! head for the new task goes on the trunk, and both train on the K-shot set with full-batch
//! Adam: the head at `--lr`, the trunk at `--trunk-lr` (0 freezes it, the default from a run).
//! The score is the accuracy on the data set's whole test split.
//!
//! The K-shot set is drawn from the training split by the fine-tuning seed alone, and the data
//! set is built with that seed too, so for one seed every source sees the same examples: the
//! comparison between sources is paired. Several sources, values of K and seeds in one command
//! give a table of mean ± standard deviation over the seeds and, with `--out`, `accuracy.svg` (and `.png`)
//! (accuracy against K); `{seed}` in a source's path stands for each seed, so a source can be
//! one run per seed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use tapestry_autodiff::Tape;
use tapestry_data::{derived_tasks, MultiTaskDataset, Splits, TaskKind, TaskTargets};
use tapestry_mtl::metrics::evaluate;
use tapestry_mtl::model::{input_tensor, task_loss, MultiTaskModel};
use tapestry_nn::checkpoint::{self, Checkpoint};
use tapestry_nn::optim::{Adam, Optimizer};
use tapestry_nn::{Ctx, ParamGrads, ParamId, Params};

use crate::config::RunConfig;
use crate::error::Result;
use crate::inputs::some_tasks;
use crate::invalid;
use crate::meta::MetaRunConfig;
use crate::models::{build_model, resolve_preset, BuiltModel};
use crate::output::{create_dir, write_atomic};
use crate::plots::{self, Series};
use crate::run::{locate_checkpoint, open_run, pad, CHECKPOINT_FILE, CONFIG_FILE};

/// Samples per evaluation batch.
const EVAL_BATCH: usize = 256;
/// The stream of the fine-tuning seed that draws the K-shot set (the head's initialisation
/// follows the model builder's own stream).
const SHOTS_STREAM: u64 = 0x5407;

/// The options of `tapestry finetune`.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// Where the trunk comes from: a `tapestry train` run directory (hard sharing), a
    /// `tapestry meta-train` run on episodes, or `scratch`. Comma-separated for several, each
    /// optionally `LABEL=PATH`; `{seed}` in a path stands for each seed.
    #[arg(long, value_delimiter = ',', required = true)]
    from: Vec<String>,
    /// The new task: a derived task (multidigits: left_parity, left_ge5, right_parity,
    /// right_ge5) or a classification task of the data set that the run did not train.
    #[arg(long)]
    task: String,
    /// K, labelled training examples per class, comma-separated for several (1,5,10,50).
    #[arg(long, value_delimiter = ',', default_value = "5")]
    shots: Vec<usize>,
    /// Seeds of the data, the K-shot draw and the head, comma-separated for several.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    seed: Vec<u64>,
    /// The data set (default: the train run's; multidigits otherwise).
    #[arg(long)]
    dataset: Option<String>,
    /// The folder or file of the data set (multifashion, fashion, csv, images).
    #[arg(long)]
    data_path: Option<PathBuf>,
    /// Full-batch Adam steps on the K-shot set.
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// The head's learning rate.
    #[arg(long, default_value_t = 1e-2)]
    lr: f64,
    /// The trunk's learning rate; 0 freezes it (default: 0 from a run, --lr from scratch).
    #[arg(long)]
    trunk_lr: Option<f64>,
    /// From scratch: the model preset (as for train).
    #[arg(long, default_value = "auto")]
    model: String,
    /// From scratch: the width of the MLP's last hidden layer (as for train).
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// A directory for finetune.json, finetune.txt, accuracy.svg and accuracy.png (several K) and, for a single
    /// run, the fine-tuned checkpoint.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Threads of the rayon pool (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Where a trunk comes from, opened.
enum Source {
    /// A random initialisation of the architecture `config` describes.
    Scratch(RunConfig),
    /// A hard-sharing `tapestry train` run.
    Train { dir: PathBuf, config: RunConfig, checkpoint: Checkpoint },
    /// A `tapestry meta-train` run on episodes.
    Meta { dir: PathBuf, config: MetaRunConfig, checkpoint: Checkpoint },
}

impl Source {
    /// Opens `from` (`scratch` or a run directory) for the scratch architecture of `args`.
    fn open(from: &str, args: &FinetuneArgs) -> Result<Self> {
        if from == "scratch" {
            let config = RunConfig {
                model: args.model.clone(),
                hidden: args.hidden,
                ..RunConfig::default()
            };
            return Ok(Source::Scratch(config.validate()?));
        }
        let dir = PathBuf::from(from);
        if !dir.exists() {
            return Err(invalid!("run directory {from} does not exist"));
        }
        let (file, config_path) = locate_checkpoint(&dir)?;
        let checkpoint = Checkpoint::read(&file)?;
        if checkpoint.user_metadata().contains_key("benchmark") {
            let config_path = config_path.ok_or_else(|| {
                invalid!(
                    "no {CONFIG_FILE} beside {}, so its network cannot be rebuilt",
                    file.display()
                )
            })?;
            let config = MetaRunConfig::from_toml_file(&config_path)?.validate()?;
            if config.benchmark != "episodes" {
                return Err(invalid!(
                    "{from} was meta-trained on `{}`, whose network reads one number, so it has no trunk for a classification task; meta-train with --benchmark episodes",
                    config.benchmark
                ));
            }
            return Ok(Source::Meta { dir, config, checkpoint });
        }
        let (_, config, checkpoint) = open_run(&dir)?;
        if config.arch != "hard" {
            return Err(invalid!(
                "{from} has architecture `{}`; finetune takes the one shared trunk of a hard-sharing run (--arch hard)",
                config.arch
            ));
        }
        Ok(Source::Train { dir, config, checkpoint })
    }

    /// The data set fine-tuning reads unless `--dataset` says otherwise.
    fn default_dataset(&self) -> String {
        match self {
            Source::Train { config, .. } if config.multi_input.is_empty() => config.dataset.clone(),
            Source::Meta { config, .. } if config.pool == "fashion" => "fashion".into(),
            _ => "multidigits".into(),
        }
    }

    /// What the source was trained on, for messages.
    fn trained_on(&self) -> String {
        match self {
            Source::Scratch(_) => "nothing".into(),
            Source::Train { config, .. } => format!("`{}`", config.data_name()),
            Source::Meta { config, .. } => format!("episodes of the `{}` pool", config.pool),
        }
    }

    /// The configuration `build_model` makes the fine-tuned model from (a hard-sharing trunk
    /// of the source's preset, for samples of `dataset`, initialised by `seed`), and the name
    /// in the source's checkpoint of each trunk parameter (none from scratch).
    fn model_config(&self, dataset: &str, seed: u64) -> Result<(RunConfig, TrunkNames)> {
        let base = |c: RunConfig| RunConfig { dataset: dataset.to_string(), seed, ..c };
        Ok(match self {
            Source::Scratch(config) => (base(config.clone()), TrunkNames::None),
            Source::Train { config, .. } => {
                let model = resolve_preset(&config.model, &config.dataset);
                let c = RunConfig { model, hidden: config.hidden, ..RunConfig::default() };
                (base(c), TrunkNames::Same)
            }
            Source::Meta { dir, config, .. } => {
                let widths = config.hidden_widths();
                let [first, last] = widths[..] else {
                    return Err(self.mlp_mismatch(dir, &widths));
                };
                if first != 2 * last {
                    return Err(self.mlp_mismatch(dir, &widths));
                }
                let c = RunConfig { model: "mlp".into(), hidden: last, ..RunConfig::default() };
                (base(c), TrunkNames::MetaNetwork)
            }
        })
    }

    fn mlp_mismatch(&self, dir: &Path, widths: &[usize]) -> crate::error::CliError {
        invalid!(
            "the meta-trained network of {} has hidden widths {widths:?}, not the [2h, h] trunk of the MLP preset; meta-train it with --widths 256,128 (for any h: 2h,h)",
            dir.display()
        )
    }

    /// The source's checkpoint, if it has one.
    fn checkpoint(&self) -> Option<(&Path, &Checkpoint)> {
        match self {
            Source::Scratch(_) => None,
            Source::Train { dir, checkpoint, .. } | Source::Meta { dir, checkpoint, .. } => {
                Some((dir, checkpoint))
            }
        }
    }
}

/// How the fine-tuned model's trunk parameters are named in the source's checkpoint.
#[derive(Clone, Copy)]
enum TrunkNames {
    /// Nothing is loaded (from scratch).
    None,
    /// As in the model (`trunk.1.weight`): a train run.
    Same,
    /// The meta-trained network's hidden layers, `net.0` and `net.2`, are the MLP preset's
    /// `trunk.1` and `trunk.3` (its Flatten takes index 0).
    MetaNetwork,
}

impl TrunkNames {
    fn source_name(self, name: &str) -> String {
        match self {
            TrunkNames::MetaNetwork => {
                name.replacen("trunk.1.", "net.0.", 1).replacen("trunk.3.", "net.2.", 1)
            }
            _ => name.to_string(),
        }
    }
}

/// The new task's training and test sets.
struct TaskData {
    /// The whole training split, with the new task alone.
    train: MultiTaskDataset,
    /// The whole test split, with the new task alone.
    test: MultiTaskDataset,
    /// What its classes mean.
    about: String,
    /// The data set's name.
    dataset: String,
}

/// Loads `dataset` with `seed` and picks the task called `task` (a derived task first).
fn task_data(dataset: &str, data_path: Option<PathBuf>, seed: u64, task: &str) -> Result<TaskData> {
    let config = RunConfig { dataset: dataset.to_string(), data_path, seed, ..Default::default() };
    let Splits { train, test } = crate::run::load_data(&config.validate()?)?;
    if let Some(derived) = derived_tasks(dataset).iter().find(|d| d.name == task) {
        return Ok(TaskData {
            train: derived.apply(&train)?,
            test: derived.apply(&test)?,
            about: derived.about.to_string(),
            dataset: dataset.to_string(),
        });
    }
    let Some(t) = train.task_index(task) else {
        let derived: Vec<&str> = derived_tasks(dataset).iter().map(|d| d.name).collect();
        let own: Vec<&str> = train.tasks.iter().map(|t| t.name.as_str()).collect();
        let derived = if derived.is_empty() {
            String::new()
        } else {
            format!("{} (derived) and ", derived.join(", "))
        };
        return Err(invalid!(
            "unknown task `{task}` for data set `{dataset}`; its tasks are {derived}{}",
            own.join(", ")
        ));
    };
    if !matches!(train.tasks[t].kind, TaskKind::Classification { .. }) {
        return Err(invalid!(
            "task `{task}` is not a classification, and finetune learns from K examples per class"
        ));
    }
    Ok(TaskData {
        train: some_tasks(&train, &[t])?,
        test: some_tasks(&test, &[t])?,
        about: format!("the data set's `{task}`"),
        dataset: dataset.to_string(),
    })
}

/// The K-shot set: `shots` examples of each class of the one task of `train`, drawn with
/// `seed`, in class order.
fn draw_shots(train: &MultiTaskDataset, shots: usize, seed: u64) -> Result<MultiTaskDataset> {
    let spec = &train.tasks[0];
    let (TaskKind::Classification { classes }, TaskTargets::Classes { labels }) =
        (&spec.kind, &train.targets[0])
    else {
        return Err(invalid!("task `{}` has no class labels", spec.name));
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(SHOTS_STREAM);
    let mut chosen = Vec::with_capacity(shots * classes);
    for class in 0..*classes as i64 {
        let mut pool: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        if shots > pool.len() {
            return Err(invalid!(
                "K = {shots} shots per class, but class {class} of `{}` has only {} training examples",
                spec.name,
                pool.len()
            ));
        }
        pool.shuffle(&mut rng);
        chosen.extend_from_slice(&pool[..shots]);
    }
    Ok(train.subset(format!("{}/{shots}-shot", train.name), &chosen))
}

/// One Adam per group of parameters, each with its own learning rate. Each one steps the whole
/// store on gradients that are zero outside its group: a parameter whose gradient is always
/// zero keeps zero moments, so Adam moves it by exactly 0 and each group learns at its own rate
/// alone. A frozen group has no optimizer at all.
struct GroupedAdam {
    groups: Vec<(Vec<ParamId>, Adam)>,
}

impl GroupedAdam {
    fn step(&mut self, params: &mut Params, grads: &ParamGrads) {
        for (ids, adam) in &mut self.groups {
            let mut masked = ParamGrads::zeros(params);
            for &id in ids.iter() {
                masked.set(id, grads.get(id).clone()).expect("the same store");
            }
            adam.step(params, &masked);
        }
    }
}

/// The outcome of one fine-tuning.
struct Outcome {
    accuracy: f64,
    test_loss: f64,
    train_loss: f64,
    test_samples: usize,
    seconds: f64,
    model: BuiltModel,
}

/// What one fine-tuning needs besides its source and data.
struct Schedule {
    steps: usize,
    lr: f64,
    trunk_lr: f64,
}

/// Builds the model for the new task on the source's trunk and trains it on `shots`.
fn finetune_one(
    source: &Source,
    data: &TaskData,
    shots: &MultiTaskDataset,
    seed: u64,
    schedule: &Schedule,
) -> Result<Outcome> {
    let dataset = &data.dataset;
    let sample = data.train.sample_shape();
    let (config, names) = source.model_config(dataset, seed)?;
    let unfit = |why: String| {
        let (dir, _) = source.checkpoint().expect("a run");
        invalid!(
            "the trunk of {} (trained on {}) does not fit the new task's inputs, samples of shape {sample:?} of `{dataset}`: {why}",
            dir.display(),
            source.trained_on()
        )
    };
    let mut built = match build_model(&config, sample, &data.train.tasks) {
        Ok(built) => built,
        Err(e) if source.checkpoint().is_some() => {
            return Err(unfit(e.sentence().trim_end_matches('.').to_string()))
        }
        Err(e) => return Err(e),
    };
    let trunk = built.model.shared_params();
    if let Some((_, checkpoint)) = source.checkpoint() {
        for &id in &trunk {
            let name = built.params.name(id).to_string();
            let stored = names.source_name(&name);
            let want = built.params.shape(id).to_vec();
            let tensor = match checkpoint.tensor(&stored) {
                Some(t) if t.shape() == want => t,
                Some(t) => {
                    return Err(unfit(format!(
                        "`{stored}` is {:?} in the checkpoint, where these inputs need {want:?}",
                        t.shape()
                    )))
                }
                None => return Err(unfit(format!("the checkpoint holds no `{stored}`"))),
            };
            built.params.set(id, tensor)?;
        }
    }
    let head: Vec<ParamId> =
        built.params.ids().into_iter().filter(|id| !trunk.contains(id)).collect();
    let mut groups = vec![(head, Adam::new(schedule.lr))];
    if schedule.trunk_lr > 0.0 {
        groups.push((trunk, Adam::new(schedule.trunk_lr)));
    }
    let mut optimizer = GroupedAdam { groups };
    let start = Instant::now();
    let spec = &shots.tasks[0];
    let x = input_tensor(&shots.inputs);
    let mut train_loss = f64::NAN;
    for _ in 0..schedule.steps {
        let grads = {
            let tape = Tape::new();
            let bound = built.params.bind(&tape);
            let mut buffers = built.params.buffers().clone();
            let mut ctx = Ctx::train(&bound).with_buffers(&mut buffers).with_seed(seed);
            let out = built.model.forward(tape.constant(x.clone()), &mut ctx);
            let loss = task_loss(spec, out.outputs[0], &shots.targets[0])?;
            train_loss = f64::from(loss.value().item());
            bound.grads(&tape.backward(loss))
        };
        if !train_loss.is_finite() {
            return Err(invalid!(
                "the training loss became {train_loss}; a smaller learning rate (--lr, --trunk-lr) may keep it finite"
            ));
        }
        optimizer.step(&mut built.params, &grads);
    }
    let seconds = start.elapsed().as_secs_f64();
    let evaluation = evaluate(&built.model, &built.params, &data.test, EVAL_BATCH)?;
    let task = &evaluation.tasks[0];
    Ok(Outcome {
        accuracy: task.value.unwrap_or(f64::NAN),
        test_loss: task.loss.unwrap_or(f64::NAN),
        train_loss,
        test_samples: evaluation.samples,
        seconds,
        model: built,
    })
}

/// A source of the command line: its label and its path (with `{seed}` still in it).
struct SourceSpec {
    label: String,
    path: String,
}

fn parse_sources(from: &[String]) -> Result<Vec<SourceSpec>> {
    let mut out: Vec<SourceSpec> = Vec::new();
    for entry in from {
        let (label, path) = match entry.split_once('=') {
            Some((l, p)) => (l.trim().to_string(), p.trim().to_string()),
            None => (entry.trim().to_string(), entry.trim().to_string()),
        };
        if label.is_empty() || path.is_empty() {
            return Err(invalid!(
                "--from entry `{entry}` names no run (LABEL=PATH, PATH or scratch)"
            ));
        }
        if out.iter().any(|s| s.label == label) {
            return Err(invalid!("--from names `{label}` twice"));
        }
        out.push(SourceSpec { label, path });
    }
    Ok(out)
}

/// Mean and sample standard deviation (0 for one value).
fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Runs `tapestry finetune`.
pub fn finetune(args: &FinetuneArgs) -> Result<()> {
    if args.shots.contains(&0) {
        return Err(invalid!("K, the shots per class, must be at least 1"));
    }
    if args.steps == 0 {
        return Err(invalid!("fine-tuning needs at least 1 step"));
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        return Err(invalid!(
            "the head's learning rate must be a positive number, got {}",
            args.lr
        ));
    }
    if let Some(lr) = args.trunk_lr.filter(|lr| !(lr.is_finite() && *lr >= 0.0)) {
        return Err(invalid!("the trunk's learning rate must be a number >= 0, got {lr}"));
    }
    if let Some(out) = &args.out {
        crate::run::check_out_dir(out)?;
    }
    let specs = parse_sources(&args.from)?;
    // Every source of every seed is opened (and fits) before anything trains.
    let mut sources: Vec<Vec<Source>> = Vec::new();
    for spec in &specs {
        let opened = args
            .seed
            .iter()
            .map(|seed| Source::open(&spec.path.replace("{seed}", &seed.to_string()), args))
            .collect::<Result<Vec<_>>>()?;
        sources.push(opened);
    }
    let dataset = match &args.dataset {
        Some(d) => d.to_ascii_lowercase(),
        None => sources[0][0].default_dataset(),
    };
    crate::init_threads(args.threads)?;
    let single = specs.len() == 1 && args.shots.len() == 1 && args.seed.len() == 1;
    let mut records = Vec::new();
    // accuracy[source][k][seed]
    let mut accuracy = vec![vec![Vec::new(); args.shots.len()]; specs.len()];
    let mut last_model = None;
    for (s, &seed) in args.seed.iter().enumerate() {
        let data = task_data(&dataset, args.data_path.clone(), seed, &args.task)?;
        if s == 0 {
            check_unseen(sources.iter().flatten(), &data)?;
        }
        for (k, &shots) in args.shots.iter().enumerate() {
            let shot_set = draw_shots(&data.train, shots, seed)?;
            for (i, spec) in specs.iter().enumerate() {
                let source = &sources[i][s];
                let scratch = matches!(source, Source::Scratch(_));
                let trunk_lr = args.trunk_lr.unwrap_or(if scratch { args.lr } else { 0.0 });
                let schedule = Schedule { steps: args.steps, lr: args.lr, trunk_lr };
                let o = finetune_one(source, &data, &shot_set, seed, &schedule)?;
                let path = spec.path.replace("{seed}", &seed.to_string());
                let trunk =
                    if trunk_lr == 0.0 { "frozen".to_string() } else { format!("lr {trunk_lr}") };
                println!(
                    "{}: {} ({}), K = {shots} ({} examples), seed {seed}, trunk {trunk}: test accuracy {:.4} on {} samples (test loss {:.4}, training loss {:.4})",
                    spec.label, args.task, data.about, shot_set.len(), o.accuracy, o.test_samples, o.test_loss, o.train_loss
                );
                records.push(json!({
                    "source": spec.label, "path": path, "task": args.task, "dataset": dataset,
                    "shots": shots, "examples": shot_set.len(), "seed": seed, "steps": args.steps,
                    "lr": args.lr, "trunk_lr": trunk_lr, "accuracy": o.accuracy,
                    "test_loss": o.test_loss, "train_loss": o.train_loss,
                    "test_samples": o.test_samples, "seconds": o.seconds,
                }));
                accuracy[i][k].push(o.accuracy);
                if single {
                    last_model = Some((o.model, path, trunk_lr));
                }
            }
        }
    }
    let table = summary_table(&specs, &args.shots, &accuracy, args.seed.len());
    if !single {
        print!("{table}");
    }
    let Some(out) = &args.out else { return Ok(()) };
    create_dir(out)?;
    let lines: Vec<String> = records.iter().map(|r| r.to_string()).collect();
    write_atomic(&out.join("finetune.json"), format!("[\n{}\n]\n", lines.join(",\n")).as_bytes())?;
    write_atomic(&out.join("finetune.txt"), table.as_bytes())?;
    let mut written: Vec<String> = vec!["finetune.json".into(), "finetune.txt".into()];
    if args.shots.len() > 1 {
        let series: Vec<(Series, Vec<f64>)> = specs
            .iter()
            .zip(&accuracy)
            .map(|(spec, per_k)| {
                let stats: Vec<(f64, f64)> = per_k.iter().map(|a| mean_sd(a)).collect();
                let points =
                    args.shots.iter().zip(&stats).map(|(&k, &(m, _))| (k as f64, m)).collect();
                (Series { name: spec.label.clone(), points }, stats.iter().map(|s| s.1).collect())
            })
            .collect();
        let title = format!(
            "{}: test accuracy against K (mean ± sd over {} seeds)",
            args.task,
            args.seed.len()
        );
        written.extend(plots::spread_chart(
            &out.join("accuracy.svg"),
            &title,
            "K, examples per class (log scale)",
            "test accuracy",
            &series,
        )?);
    }
    if let Some((model, path, trunk_lr)) = last_model {
        let metadata = BTreeMap::from([
            ("task".to_string(), args.task.clone()),
            ("dataset".to_string(), dataset.clone()),
            ("from".to_string(), path),
            ("shots".to_string(), args.shots[0].to_string()),
            ("seed".to_string(), args.seed[0].to_string()),
            ("trunk_lr".to_string(), trunk_lr.to_string()),
            ("model".to_string(), model.preset.clone()),
        ]);
        checkpoint::save(out.join(CHECKPOINT_FILE), &model.params, None, &metadata)?;
        written.push(CHECKPOINT_FILE.into());
    }
    println!("wrote {} to {}", written.join(", "), out.display());
    Ok(())
}

/// Refuses a task of the data set that a train run among `sources` trained (a derived task is
/// never one).
fn check_unseen<'s>(sources: impl Iterator<Item = &'s Source>, data: &TaskData) -> Result<()> {
    let task = &data.train.tasks[0].name;
    let derived = derived_tasks(&data.dataset).iter().any(|d| d.name == task);
    for source in sources {
        if let Source::Train { dir, config, .. } = source {
            let trained = config.dataset == data.dataset
                && config.multi_input.is_empty()
                && (config.tasks.is_empty() || config.tasks.contains(task));
            if trained && !derived {
                return Err(invalid!(
                    "{} trained task `{task}` already; finetune learns a task the run did not see",
                    dir.display()
                ));
            }
        }
    }
    Ok(())
}

/// The table of mean ± standard deviation of the test accuracy, a row per source, a column per
/// K.
fn summary_table(
    specs: &[SourceSpec],
    shots: &[usize],
    accuracy: &[Vec<Vec<f64>>],
    seeds: usize,
) -> String {
    let width = specs.iter().map(|s| s.label.chars().count()).max().unwrap_or(6).max(6);
    let mut out =
        format!("test accuracy, mean ± sd over {seeds} seed(s)\n  {}", pad("source", width));
    for k in shots {
        out.push_str(&format!("  {:>15}", format!("K = {k}")));
    }
    out.push('\n');
    for (spec, per_k) in specs.iter().zip(accuracy) {
        out.push_str(&format!("  {}", pad(&spec.label, width)));
        for a in per_k {
            let (m, sd) = mean_sd(a);
            out.push_str(&format!("  {:>15}", format!("{m:.4} ± {sd:.4}")));
        }
        out.push('\n');
    }
    out
}
