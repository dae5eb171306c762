//! `tapestry train` and `tapestry eval`: a training run with progress bars, a metric table each
//! epoch, `metrics.jsonl`, plots and a checkpoint; and the evaluation of a saved run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use tapestry_data::{DatasetConfig, MetricKind, Splits, TaskSpec, TaskTargets};
use tapestry_mtl::metrics::Evaluation;
use tapestry_mtl::model::MultiTaskModel;
use tapestry_mtl::trainer::{EpochProgress, Observer, Trainer, TrainerConfig, TrainerState};
use tapestry_mtl::weighting::WeightingState;
use tapestry_mtl::{StepOptions, StepReport};
use tapestry_nn::checkpoint::{self, Checkpoint};
use tapestry_nn::Params;
use unicode_width::UnicodeWidthStr;

use crate::config::{parse_target, RunConfig};
use crate::error::{CliError, Result};
use crate::inputs::RunData;
use crate::invalid;
use crate::models::{build_model, resolve_preset, BuiltModel};
use crate::note;
use crate::output::{json_lines, write_atomic};
use crate::plots::{self, Series};
use crate::rundir::{self, LockedDir};
use crate::say;

/// The checkpoint's file name in a run directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The configuration's file name in a run directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The log's file name in a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Samples per evaluation batch.
const EVAL_BATCH: usize = 256;

/// The short name of a metric.
pub fn metric_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Accuracy => "accuracy",
        MetricKind::MeanAbsoluteError => "MAE",
        MetricKind::RootMeanSquaredError => "RMSE",
        MetricKind::MeanIou => "mIoU",
    }
}

/// Loads the data set of `config`, keeping at most `config.limit` samples of each split.
pub fn load_data(config: &RunConfig) -> Result<Splits> {
    let mut dataset =
        DatasetConfig::by_name(&config.dataset, config.seed, config.data_path.clone())?;
    let targets = || config.targets.iter().map(|t| parse_target(t)).collect::<Result<Vec<_>>>();
    match &mut dataset {
        DatasetConfig::Csv(csv) if !config.targets.is_empty() => csv.tasks = targets()?,
        DatasetConfig::Images(images) if !config.targets.is_empty() => {
            images.tasks = Some(targets()?);
        }
        DatasetConfig::Fashion(fashion) => fashion.max_samples = config.limit,
        // Multi-Fashion composes only the images the limit keeps (the same ones, faster).
        DatasetConfig::MultiFashion(fashion) => fashion.max_images = config.limit,
        _ => {}
    }
    let mut splits = dataset.load()?;
    if let Some(limit) = config.limit {
        for split in [&mut splits.train, &mut splits.test] {
            if split.len() > limit {
                let keep: Vec<usize> = (0..limit).collect();
                *split = split.subset(split.name.clone(), &keep);
            }
        }
    }
    let source = match &config.data_path {
        Some(path) => format!("`{}` ({})", config.dataset, path.display()),
        None => format!("`{}`", config.dataset),
    };
    if splits.train.is_empty() {
        return Err(invalid!("the training split of {source} is empty"));
    }
    if splits.test.is_empty() {
        return Err(invalid!("the test split of {source} is empty"));
    }
    match &dataset {
        DatasetConfig::Csv(csv) => check_learnable(&splits, &csv.path, &csv.path)?,
        DatasetConfig::Images(images) => {
            let (train_labels, test_labels) = images.label_files();
            check_learnable(&splits, &train_labels, &test_labels)?;
        }
        _ => {}
    }
    Ok(splits)
}

/// Refuses the tasks of a table that a run can neither learn nor score: a classification whose
/// training rows hold one class, and a task without any label in the training or test rows.
/// The training rows come from `train_file`, the test rows from `test_file`.
fn check_learnable(splits: &Splits, train_file: &Path, test_file: &Path) -> Result<()> {
    for (t, spec) in splits.train.tasks.iter().enumerate() {
        let what = match &splits.train.targets[t] {
            TaskTargets::Classes { .. } => "label",
            _ => "value",
        };
        for (split, name, file) in
            [(&splits.train, "training", train_file), (&splits.test, "test", test_file)]
        {
            if split.targets[t].present() == 0 {
                return Err(invalid!(
                    "{}: no {name} row has a {what} for task {:?}, so it can be neither learned \
                     nor scored; give more rows with a {what}",
                    file.display(),
                    spec.name
                ));
            }
        }
        if let TaskTargets::Classes { labels } = &splits.train.targets[t] {
            let classes: BTreeSet<i64> = labels.iter().copied().filter(|&l| l >= 0).collect();
            if classes.len() == 1 {
                return Err(invalid!(
                    "{}: the training rows give task {:?} only one class (label {}), so there is \
                     nothing to learn",
                    train_file.display(),
                    spec.name,
                    classes.first().expect("one class")
                ));
            }
        }
    }
    Ok(())
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The tasks.
    pub tasks: Vec<TaskSpec>,
    /// The evaluation on the test split after the last epoch.
    pub test: Evaluation,
    /// Seconds of training (all epochs, without evaluation).
    pub train_seconds: f64,
}

/// Collects the step records and drives the progress bar.
struct Logger {
    records: Vec<Value>,
    bar: ProgressBar,
    names: Vec<String>,
    epoch_start: Instant,
    epoch_samples: usize,
    /// Steps of the current epoch done.
    epoch_steps: u64,
    /// The run's pace: steps left to the end of the run, and when and how many steps this
    /// process has taken (a resumed run's earlier steps took an unknown time).
    eta: Eta,
}

/// The run's remaining time, from this process's mean time per step (evaluations included).
struct Eta {
    remaining: u64,
    start: Instant,
    taken: u64,
}

impl Eta {
    /// One more step taken; the estimate, as `1h02m`, `3m05s` or `42s`.
    fn step(&mut self) -> String {
        self.taken += 1;
        self.remaining = self.remaining.saturating_sub(1);
        let seconds =
            self.start.elapsed().as_secs_f64() / self.taken as f64 * self.remaining as f64;
        duration(seconds.round() as u64)
    }
}

/// `s` seconds as `1h02m`, `3m05s` or `42s`.
fn duration(s: u64) -> String {
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, min, sec) => format!("{min}m{sec:02}s"),
        (h, min, _) => format!("{h}h{min:02}m"),
    }
}

/// The mean of the `T × T` matrices a run reports at some steps.
#[derive(Default)]
struct MatrixMean {
    sums: Vec<f64>,
    count: u64,
}

impl MatrixMean {
    /// The mean of the step records' `key` matrices, in the records' order.
    fn of(steps: &[&Value], key: &str) -> MatrixMean {
        let mut m = MatrixMean::default();
        for r in steps {
            let Some(values) = r[key].as_array() else { continue };
            let Some(values) = values.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>()
            else {
                continue;
            };
            if m.sums.len() != values.len() {
                m.sums = vec![0.0; values.len()];
            }
            for (sum, v) in m.sums.iter_mut().zip(&values) {
                *sum += v;
            }
            m.count += 1;
        }
        m
    }

    /// The mean, `NaN` everywhere (`t × t`) if nothing was added.
    fn mean(&self, t: usize) -> Vec<f64> {
        if self.count == 0 {
            return vec![f64::NAN; t * t];
        }
        self.sums.iter().map(|s| s / self.count as f64).collect()
    }
}

impl Observer for Logger {
    fn on_step(&mut self, r: &StepReport) {
        let mut record = json!({
            "kind": "step",
            "step": r.step,
            "epoch": r.epoch,
            "batch_size": r.batch_size,
            "losses": r.losses,
            "weights": r.weights,
        });
        if let Some(s) = &r.shared {
            record["grad_norms"] = json!(s.norms);
            record["cosines"] = json!(s.cosines);
        }
        if let Some(z) = &r.affinity {
            record["affinity"] = json!(z);
        }
        if let Some(s) = &r.representation {
            record["rep_cosines"] = json!(s.cosines);
        }
        if let Some(aux) = r.aux_loss {
            record["aux_loss"] = json!(aux);
        }
        for (name, values) in &r.diagnostics {
            record[name.as_str()] = json!(values);
        }
        if r.trained.len() != r.losses.len() {
            record["trained"] = json!(r.trained);
        }
        self.records.push(record);
        self.epoch_samples += r.batch_size;
        self.epoch_steps += 1;
        let rate = self.epoch_samples as f64 / self.epoch_start.elapsed().as_secs_f64().max(1e-9);
        let losses: Vec<String> = (self.names.iter().zip(&r.losses))
            .filter(|(_, l)| l.is_finite())
            .map(|(n, l)| format!("{n} {l:.3}"))
            .collect();
        if crate::output::verbose() {
            let weights: Vec<String> =
                (self.names.iter().zip(&r.weights)).map(|(n, w)| format!("{n} {w:.4}")).collect();
            let (step, epoch) = (self.epoch_steps, r.epoch + 1);
            let steps = self.bar.length().unwrap_or(0);
            self.bar.suspend(|| {
                say!(
                    "epoch {epoch} step {step}/{steps} (run step {}): losses {}; weights {}",
                    r.step,
                    losses.join(", "),
                    weights.join(", ")
                )
            });
        }
        let eta = self.eta.step();
        self.bar
            .set_message(format!("{} | {rate:.0} samples/s | run ETA {eta}", losses.join(", ")));
        self.bar.inc(1);
    }

    fn stop_requested(&mut self) -> bool {
        stop_requested()
    }
}

fn evaluation_json(e: &Evaluation) -> Value {
    Value::Array(
        e.tasks
            .iter()
            .map(|t| {
                json!({"task": t.task, "loss": t.loss, "metric": metric_name(t.metric), "value": t.value})
            })
            .collect(),
    )
}

/// A value for a table: four decimals, or four significant digits and an exponent when that
/// would not fit in 10 columns (`6.635e28`); `-` for none.
pub fn fmt_opt(v: Option<f64>) -> String {
    match v {
        Some(v) => {
            let fixed = format!("{v:.4}");
            if fixed.len() > 10 && v.is_finite() {
                format!("{v:.3e}")
            } else {
                fixed
            }
        }
        None => "-".into(),
    }
}

/// `text` padded with spaces to `width` terminal columns (wide characters take two).
pub fn pad(text: &str, width: usize) -> String {
    format!("{text}{}", " ".repeat(width.saturating_sub(text.width())))
}

/// The per-task table of an epoch (or of an evaluation when `train` is `None`).
pub fn metric_table(train: Option<&Evaluation>, test: &Evaluation) -> String {
    let mut out = String::new();
    let width = test.tasks.iter().map(|t| t.task.width()).max().unwrap_or(4).max(4);
    match train {
        Some(_) => out.push_str(&format!(
            "  {}  {:>10}  {:>10}  {:>8}  {:>10}  {:>10}\n",
            pad("task", width),
            "train loss",
            "test loss",
            "metric",
            "train",
            "test"
        )),
        None => out.push_str(&format!(
            "  {}  {:>10}  {:>8}  {:>10}\n",
            pad("task", width),
            "loss",
            "metric",
            "value"
        )),
    }
    for (i, t) in test.tasks.iter().enumerate() {
        let name = metric_name(t.metric);
        match train {
            Some(tr) => out.push_str(&format!(
                "  {}  {:>10}  {:>10}  {:>8}  {:>10}  {:>10}\n",
                pad(&t.task, width),
                fmt_opt(tr.tasks[i].loss),
                fmt_opt(t.loss),
                name,
                fmt_opt(tr.tasks[i].value),
                fmt_opt(t.value)
            )),
            None => out.push_str(&format!(
                "  {}  {:>10}  {:>8}  {:>10}\n",
                pad(&t.task, width),
                fmt_opt(t.loss),
                name,
                fmt_opt(t.value)
            )),
        }
    }
    out
}

/// How `train` treats its output directory.
#[derive(Debug)]
pub enum Start {
    /// A new run; a directory that holds a run is refused.
    Fresh,
    /// A new run replacing the one in the directory, once it has its first checkpoint.
    Replace,
    /// Continue the saved run.
    Resume(Box<Saved>),
}

/// Set by the first Ctrl-C (SIGINT) or SIGTERM: training stops after the current step.
static STOP: AtomicBool = AtomicBool::new(false);

/// Makes the first Ctrl-C or SIGTERM stop training after the current step (with a checkpoint)
/// and a second one exit at once, with code 130. Without it a signal ends the process as usual.
pub fn install_stop_handler() {
    let installed = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            crate::output::print_err("\ntapestry: stopped at once, without a checkpoint.\n");
            std::process::exit(130);
        }
        crate::output::print_err(
            "\ntapestry: stopping after this step (press Ctrl-C again to quit at once)…\n",
        );
    });
    if let Err(e) = installed {
        note!("tapestry: note: Ctrl-C will end the run without a checkpoint ({e}).");
    }
}

/// True once a stop was asked for.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Metadata keys of a run's checkpoint, besides the short description (`epoch`, `step`,
/// `method`, `dataset`, `model`, `arch`).
const CONFIG_KEY: &str = "config";
const STATE_KEY: &str = "state";
const RECORDS_KEY: &str = "records";
/// The version of the saved state's layout.
const STATE_FORMAT: u64 = 1;

/// A run as its checkpoint saved it: the configuration, the state to resume from, and its log.
#[derive(Debug)]
pub struct Saved {
    /// The checkpoint file.
    pub file: PathBuf,
    /// The checkpoint (verified).
    pub checkpoint: Checkpoint,
    /// The run's configuration.
    pub config: RunConfig,
    /// The state to resume from (see [`save_state`]).
    pub state: Value,
    /// The log up to the checkpoint: `metrics.jsonl`'s records before the checkpoint's last
    /// segment, then that segment from the checkpoint.
    pub records: Vec<Value>,
    /// How many of `records` come before that segment (where it starts).
    pub records_before: usize,
}

impl Saved {
    /// Reads the run in `dir`.
    ///
    /// # Errors
    /// If `dir` holds no checkpoint, the checkpoint is not one of a run that can be resumed, or
    /// `metrics.jsonl` lacks the records before the checkpoint's last segment.
    pub fn read(dir: &Path) -> Result<Saved> {
        let file = dir.join(CHECKPOINT_FILE);
        if !file.is_file() {
            return Err(invalid!(
                "{} holds no {CHECKPOINT_FILE}, so there is no run to resume",
                dir.display()
            ));
        }
        let checkpoint = Checkpoint::read(&file)?;
        let meta = checkpoint.user_metadata();
        let (Some(config), Some(state), Some(segment)) =
            (meta.get(CONFIG_KEY), meta.get(STATE_KEY), meta.get(RECORDS_KEY))
        else {
            return Err(invalid!(
                "{} does not hold the state a resume needs (it was not written by `tapestry train`, or by an older version); start a new run with --force",
                file.display()
            ));
        };
        let source = format!("the configuration in {}", file.display());
        let config = RunConfig::from_toml_str(config, &source)?.validate()?;
        let state: Value = serde_json::from_str(state)
            .map_err(|e| invalid!("the saved state in {} is not valid: {e}", file.display()))?;
        if state["format"] != json!(STATE_FORMAT) {
            return Err(invalid!(
                "the saved state in {} has format {}, which this version cannot resume",
                file.display(),
                state["format"]
            ));
        }
        let before = state["records_before"].as_u64().unwrap_or(0) as usize;
        let log_path = dir.join(METRICS_FILE);
        let log = match read_records(&log_path) {
            Ok(log) => log,
            Err(_) if before == 0 => Vec::new(),
            Err(e) => return Err(e),
        };
        // The log is this run's if its run record holds this configuration (a resume may
        // have changed the epochs and threads since it was written).
        let resumable = |c: &Value| {
            let mut c = c.clone();
            if let Some(fields) = c.as_object_mut() {
                fields.remove("epochs");
                fields.remove("threads");
            }
            c
        };
        let belongs = log
            .first()
            .is_some_and(|r| resumable(&r["config"]) == resumable(&config_json(&config)));
        if before > 0 && (log.len() < before || !belongs) {
            return Err(invalid!(
                "{} does not hold the first {before} records of the run in {}, so its log cannot go on; start a new run with --force",
                log_path.display(),
                file.display()
            ));
        }
        let segment: Vec<Value> = segment
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).map_err(|e| {
                    invalid!("the saved log segment in {} is not valid: {e}", file.display())
                })
            })
            .collect::<Result<_>>()?;
        // The log's own records where it has them (they hold the timings the checkpoint
        // leaves out), the checkpoint's segment for the rest.
        let mut records: Vec<Value> = if belongs {
            log.into_iter().take(before + segment.len()).collect()
        } else {
            Vec::new()
        };
        let have = records.len() - before;
        records.extend(segment.into_iter().skip(have));
        Ok(Saved { file, checkpoint, config, state, records, records_before: before })
    }
}

/// The records of a `metrics.jsonl`.
fn read_records(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io("read", path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| invalid!("{} line {}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// The configuration as the log's run record holds it.
fn config_json(config: &RunConfig) -> Value {
    serde_json::to_value(config).expect("a configuration serialises")
}

/// An `f64` as its bit pattern, so that a saved state restores every value exactly (NaN too).
fn bits(v: f64) -> Value {
    json!(v.to_bits())
}

fn bits_vec(v: &[f64]) -> Value {
    Value::Array(v.iter().map(|&x| bits(x)).collect())
}

fn bits_opt(v: &[Option<f64>]) -> Value {
    Value::Array(v.iter().map(|x| x.map_or(Value::Null, bits)).collect())
}

/// Reads back what [`bits`] wrote; `what` names it in the error.
fn from_bits(v: &Value, what: &str) -> Result<f64> {
    v.as_u64().map(f64::from_bits).ok_or_else(|| invalid!("the saved state's {what} is not valid"))
}

fn from_bits_vec(v: &Value, what: &str) -> Result<Vec<f64>> {
    v.as_array()
        .ok_or_else(|| invalid!("the saved state's {what} is not valid"))?
        .iter()
        .map(|x| from_bits(x, what))
        .collect()
}

fn from_bits_opt(v: &Value, what: &str) -> Result<Vec<Option<f64>>> {
    v.as_array()
        .ok_or_else(|| invalid!("the saved state's {what} is not valid"))?
        .iter()
        .map(|x| if x.is_null() { Ok(None) } else { from_bits(x, what).map(Some) })
        .collect()
}

/// The state of a run to save beside its parameters: the trainer's counters and epoch in
/// progress, the weighting's and the model's own state, and how many log records came before
/// this checkpoint's segment.
fn save_state(trainer: &Trainer, model: &dyn MultiTaskModel, records_before: usize) -> Value {
    let t = trainer.state();
    let in_epoch = t.in_epoch.as_ref().map(|p| {
        json!({
            "batches": p.batches,
            "samples": p.samples,
            "seconds": bits(p.seconds),
            "weight_sums": bits_vec(&p.weight_sums),
            "metrics": p.metrics.iter().map(|m| bits_vec(m)).collect::<Vec<_>>(),
            "affinity_sum": bits_vec(&p.affinity.0),
            "affinity_count": p.affinity.1,
        })
    });
    let named = |entries: Vec<(String, Vec<f64>)>| -> Value {
        Value::Object(entries.into_iter().map(|(k, v)| (k, bits_vec(&v))).collect())
    };
    json!({
        "format": STATE_FORMAT,
        "records_before": records_before,
        "trainer": {
            "steps": t.steps,
            "epochs": t.epochs,
            "in_epoch": in_epoch,
            "first_losses": bits_opt(&t.first_losses),
            "schedule_first": bits_opt(&t.schedule_losses.0),
            "schedule_last": bits_opt(&t.schedule_losses.1),
        },
        "weighting": named(trainer.weighting().state().iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect()),
        "model": named(model.state()),
    })
}

/// Restores [`save_state`]'s state into `trainer` and `model`.
fn restore_state(state: &Value, trainer: &mut Trainer, model: &dyn MultiTaskModel) -> Result<()> {
    let t = &state["trainer"];
    let count = |v: &Value, what: &str| {
        v.as_u64().ok_or_else(|| invalid!("the saved state's {what} is not valid"))
    };
    let in_epoch = match &t["in_epoch"] {
        Value::Null => None,
        p => Some(EpochProgress {
            batches: count(&p["batches"], "epoch progress")?,
            samples: count(&p["samples"], "epoch progress")? as usize,
            seconds: from_bits(&p["seconds"], "epoch time")?,
            weight_sums: from_bits_vec(&p["weight_sums"], "weight sums")?,
            metrics: p["metrics"]
                .as_array()
                .ok_or_else(|| invalid!("the saved state's metric sums are not valid"))?
                .iter()
                .map(|m| from_bits_vec(m, "metric sums"))
                .collect::<Result<_>>()?,
            affinity: (
                from_bits_vec(&p["affinity_sum"], "affinity sums")?,
                count(&p["affinity_count"], "affinity count")?,
            ),
        }),
    };
    trainer.set_state(TrainerState {
        steps: count(&t["steps"], "step count")?,
        epochs: count(&t["epochs"], "epoch count")?,
        in_epoch,
        first_losses: from_bits_opt(&t["first_losses"], "first losses")?,
        schedule_losses: (
            from_bits_opt(&t["schedule_first"], "schedule losses")?,
            from_bits_opt(&t["schedule_last"], "schedule losses")?,
        ),
    });
    let named = |v: &Value, what: &str| -> Result<Vec<(String, Vec<f64>)>> {
        v.as_object()
            .ok_or_else(|| invalid!("the saved state's {what} is not valid"))?
            .iter()
            .map(|(k, x)| Ok((k.clone(), from_bits_vec(x, what)?)))
            .collect()
    };
    let weighting: WeightingState =
        named(&state["weighting"], "weighting state")?.into_iter().collect();
    trainer.weighting_mut().set_state(&weighting).map_err(tapestry_mtl::MtlError::from)?;
    model.set_state(&named(&state["model"], "model state")?)?;
    Ok(())
}

/// The files of a run directory that show a run is there.
pub const RUN_FILES: [&str; 3] = [CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE];

/// Trains as `config` says, writing everything into `out`; progress goes to stderr unless
/// `quiet`, the epoch tables to stdout. See [`crate::rundir`] for what the directory holds
/// when.
pub fn train(config: &RunConfig, out: &Path, quiet: bool, start: Start) -> Result<RunSummary> {
    let run_start = Instant::now();
    if matches!(start, Start::Fresh) {
        let found = rundir::run_files(out, &RUN_FILES);
        if !found.is_empty() {
            return Err(rundir::refuse_existing(out, &found, true));
        }
    }
    if let Start::Resume(saved) = &start {
        let t = &saved.state["trainer"];
        let done = t["epochs"].as_u64().unwrap_or(0);
        if done >= config.epochs as u64 {
            // A run killed after its last checkpoint may have left the log, the configuration
            // and the plots behind it (and a temporary file): bring them up to the checkpoint.
            let dir = LockedDir::open(out)?;
            let names: Vec<String> = saved
                .records
                .first()
                .and_then(|r| r["tasks"].as_array())
                .map_or_else(Vec::new, |t| {
                    t.iter().filter_map(|n| n.as_str().map(String::from)).collect()
                });
            write_views(dir.path(), &saved.config, &names, &saved.records)?;
            return Err(invalid!(
                "the run in {} has finished its {done} epochs; give --epochs with a larger total to train it further",
                out.display()
            ));
        }
    }
    if stop_requested() {
        return Err(CliError::Interrupted(
            "stopped before training began; nothing was written".into(),
        ));
    }
    let data = RunData::load(config)?;
    let tasks = data.tasks();
    let BuiltModel { model, mut params, preset, description } =
        build_model(config, data.sample_shape(), &tasks)?;
    // Whether the method can run on this model is known now: say so before anything is written.
    let mut weighting = config.weighting()?;
    let schedule = config.schedule(tasks.len())?;
    schedule.check(tasks.len(), &config.method)?;
    weighting.register(&mut params, model.tasks()).map_err(tapestry_mtl::MtlError::from)?;
    // Gradient cosines need every task's gradient at each step.
    let cosines = config.cosines && !model.shared_params().is_empty() && !schedule.is_one_task();
    let step_options = StepOptions {
        grad_mode: config.grad_mode(),
        diagnostics: cosines,
        gradnorm_param: None,
        affinity: config.affinity_options(),
    };
    tapestry_mtl::TrainStep::new(&model, &params, weighting.as_ref(), step_options.clone())?;
    let dir = LockedDir::open(out)?;
    // What an earlier run left: refused for a new run, replaced at the first checkpoint.
    let mut replaced = match &start {
        Start::Resume(_) => Vec::new(),
        _ => {
            let found = rundir::run_files(out, &RUN_FILES);
            if matches!(start, Start::Fresh) && !found.is_empty() {
                return Err(rundir::refuse_existing(out, &found, true));
            }
            old_run_files(out)?
        }
    };
    let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
    if !quiet {
        say!(
            "tapestry train: {} ({} train / {} test samples of shape {:?}), model {preset} ({} parameters), method {}, {} lr {}, {} epochs of batch {}",
            config.data_name(),
            data.train().len(),
            data.test().len(),
            data.sample_shape(),
            params.numel(),
            config.method,
            config.optimizer,
            config.lr,
            config.epochs,
            config.batch_size
        );
        say!("  {description}");
        if !config.multi_input.is_empty() {
            say!("  one input per task: each task trains and is tested on its own data set");
        }
        if config.schedule != "all" || config.accumulate > 1 {
            let proportions = match config.proportions.as_str() {
                "" => String::new(),
                p => format!(" (proportions {p})"),
            };
            say!(
                "  schedule {}{proportions}, one update every {} steps",
                config.schedule,
                config.accumulate
            );
        }
    }
    let trainer_config = TrainerConfig {
        epochs: 1,
        batch_size: config.batch_size,
        eval_batch_size: EVAL_BATCH,
        drop_last: false,
        seed: config.seed,
        step: step_options,
        schedule,
        accumulate: config.accumulate,
        divergence: (config.divergence > 0.0).then_some(config.divergence),
    };
    if config.cosines && model.shared_params().is_empty() && !quiet {
        say!("  no gradient cosines: the `{}` architecture shares no parameter", config.arch);
    } else if config.cosines && !cosines && !quiet {
        say!("  no gradient cosines: the {} schedule trains one task per step", config.schedule);
    }
    let mut trainer = Trainer::from_boxed(trainer_config, config.optimizer()?, weighting);
    let steps_per_epoch = data.steps_per_epoch(config.batch_size);
    let run_record = json!({
        "kind": "run",
        "tasks": names,
        "metrics": tasks.iter().map(|t| metric_name(t.metric)).collect::<Vec<_>>(),
        "higher_is_better": tasks.iter().map(|t| t.metric.higher_is_better()).collect::<Vec<_>>(),
        "model": preset,
        "parameters": params.numel(),
        "config": config_json(config),
    });
    let mut logger = Logger {
        records: vec![run_record],
        bar: ProgressBar::hidden(),
        names: names.clone(),
        epoch_start: Instant::now(),
        epoch_samples: 0,
        epoch_steps: 0,
        eta: Eta {
            remaining: steps_per_epoch * config.epochs as u64,
            start: Instant::now(),
            taken: 0,
        },
    };
    let mut segment_start = 0;
    if let Start::Resume(saved) = &start {
        saved.checkpoint.restore(&saved.file, &mut params, Some(trainer.optimizer_mut()))?;
        restore_state(&saved.state, &mut trainer, &model)?;
        let done = trainer.epochs() as usize;
        logger.records = saved.records.clone();
        logger.records[0]["config"] = config_json(config);
        let done_steps =
            done as u64 * steps_per_epoch + trainer.in_epoch().map_or(0, |p| p.batches);
        logger.eta.remaining = (steps_per_epoch * config.epochs as u64).saturating_sub(done_steps);
        segment_start = match trainer.in_epoch() {
            Some(_) => saved.records_before,
            None => logger.records.len(),
        };
        if !quiet {
            let at = match trainer.in_epoch() {
                Some(p) => format!("step {}/{steps_per_epoch} of epoch {}", p.batches, done + 1),
                None => format!("the end of epoch {done}"),
            };
            say!("  resuming from {at}");
        }
    }
    let mut summary = None;
    for epoch in trainer.epochs() as usize..config.epochs {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::with_draw_target(Some(steps_per_epoch), ProgressDrawTarget::stderr())
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:25}] {pos}/{len} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, config.epochs));
        let (done_steps, done_samples) =
            trainer.in_epoch().map_or((0, 0), |p| (p.batches, p.samples));
        bar.set_position(done_steps);
        logger.bar = bar;
        logger.epoch_start = Instant::now();
        logger.epoch_samples = done_samples;
        logger.epoch_steps = done_steps;
        let fitted =
            trainer.fit_data(&model, &mut params, data.train(), Some(data.test()), &mut logger);
        logger.bar.finish_and_clear();
        // A step that failed is named where the progress line counts it.
        let mut reports = fitted.map_err(|source| match source {
            tapestry_mtl::MtlError::NonFiniteLoss { .. }
            | tapestry_mtl::MtlError::NonFiniteGradient { .. }
            | tapestry_mtl::MtlError::NonFiniteTaskGradient { .. }
            | tapestry_mtl::MtlError::Diverged { .. } => CliError::Stopped {
                step: logger.epoch_steps + 1,
                steps: steps_per_epoch,
                epoch: epoch as u64 + 1,
                epochs: config.epochs as u64,
                source,
            },
            other => CliError::Mtl(other),
        })?;
        let commit = Commit { dir: &dir, config, preset: &preset, names: &names };
        if let Some(p) = trainer.in_epoch() {
            let at = format!("step {}/{steps_per_epoch} of epoch {}", p.batches, epoch + 1);
            commit.write(
                &trainer,
                &model,
                &params,
                &mut logger,
                &mut segment_start,
                &mut replaced,
            )?;
            return Err(interrupted(&at, out));
        }
        let report = reports.pop().expect("one epoch");
        let test = report.validation.clone().expect("validation data given");
        let rate = report.train.samples as f64 / report.seconds.max(1e-9);
        let mut record = json!({
            "kind": "epoch",
            "epoch": report.epoch,
            "steps": report.steps,
            "seconds": report.seconds,
            "samples_per_second": rate,
            "mean_weights": report.mean_weights,
            "model": report.model_diagnostics.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "train": evaluation_json(&report.train),
            "test": evaluation_json(&test),
        });
        if let Some(z) = &report.affinity {
            record["affinity"] = json!(z);
        }
        logger.records.push(record);
        if !quiet {
            let weights: Vec<String> = names
                .iter()
                .zip(&report.mean_weights)
                .map(|(n, w)| format!("{n} {w:.3}"))
                .collect();
            say!(
                "epoch {}/{}: {:.1} s, {rate:.0} samples/s, mean weights: {}",
                epoch + 1,
                config.epochs,
                report.seconds,
                weights.join(", ")
            );
            crate::output::print_out(&metric_table(Some(&report.train), &test));
        }
        commit.write(&trainer, &model, &params, &mut logger, &mut segment_start, &mut replaced)?;
        summary = Some(RunSummary { tasks: tasks.clone(), test, train_seconds: 0.0 });
        if stop_requested() && epoch + 1 < config.epochs {
            return Err(interrupted(&format!("the end of epoch {}", epoch + 1), out));
        }
    }
    let mut summary = summary.expect("at least one epoch");
    summary.train_seconds = logger
        .records
        .iter()
        .filter(|r| r["kind"] == "epoch")
        .filter_map(|r| r["seconds"].as_f64())
        .sum();
    if !quiet {
        say!(
            "done in {:.1} s; wrote {}, {}, {} and plots (*.svg, *.png) to {}",
            run_start.elapsed().as_secs_f64(),
            METRICS_FILE,
            CHECKPOINT_FILE,
            CONFIG_FILE,
            out.display()
        );
    }
    Ok(summary)
}

/// `records` without their wall-clock timings, so that identical runs write identical
/// checkpoints.
fn untimed(records: &[Value]) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if let Some(fields) = r.as_object_mut() {
                fields.remove("seconds");
                fields.remove("samples_per_second");
            }
            r
        })
        .collect()
}

/// The sentence of a run stopped by a signal at `at`, with a checkpoint in `out`.
fn interrupted(at: &str, out: &Path) -> CliError {
    CliError::Interrupted(format!(
        "stopped at {at}, with a checkpoint; `tapestry train --resume --out {}` continues the run",
        out.display()
    ))
}

/// The files an earlier run left in `dir` (its checkpoint, log, configuration, plots, exported
/// model and report), which a replacing run removes once it has a checkpoint of its own.
fn old_run_files(dir: &Path) -> Result<Vec<String>> {
    let mut found = rundir::run_files(dir, &RUN_FILES);
    let entries = std::fs::read_dir(dir).map_err(|e| CliError::io("read", dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let derived = name.ends_with(".svg")
            || name.ends_with(".png")
            || name == crate::export::MODEL_FILE
            || name == crate::report::REPORT_FILE;
        if derived && entry.path().is_file() {
            found.push(name);
        }
    }
    Ok(found)
}

/// What a checkpoint of the run commits.
struct Commit<'a> {
    dir: &'a LockedDir,
    config: &'a RunConfig,
    preset: &'a str,
    names: &'a [String],
}

impl Commit<'_> {
    /// Writes the checkpoint (the commit: parameters, optimizer, configuration, state and the
    /// log's new records), then the log, the configuration and the plots, and, at the first
    /// commit of a replacing run, removes what the old run left.
    fn write(
        &self,
        trainer: &Trainer,
        model: &dyn MultiTaskModel,
        params: &Params,
        logger: &mut Logger,
        segment_start: &mut usize,
        replaced: &mut Vec<String>,
    ) -> Result<()> {
        let out = self.dir.path();
        let state = save_state(trainer, model, *segment_start);
        let mut metadata = BTreeMap::from([
            ("epoch".to_string(), trainer.epochs().to_string()),
            ("step".to_string(), trainer.steps().to_string()),
            ("method".to_string(), self.config.method.clone()),
            ("dataset".to_string(), self.config.data_name()),
            ("model".to_string(), self.preset.to_string()),
            ("arch".to_string(), self.config.arch.clone()),
            (CONFIG_KEY.to_string(), self.config.to_toml()),
            (STATE_KEY.to_string(), state.to_string()),
            (RECORDS_KEY.to_string(), json_lines(&untimed(&logger.records[*segment_start..]))),
        ]);
        if let Some(p) = trainer.in_epoch() {
            metadata.insert("epoch_steps".to_string(), p.batches.to_string());
        }
        checkpoint::save(out.join(CHECKPOINT_FILE), params, Some(trainer.optimizer()), &metadata)?;
        // A segment ends only at an epoch's end, so that where a run was stopped inside an
        // epoch leaves no trace in the checkpoints that follow.
        if trainer.in_epoch().is_none() {
            *segment_start = logger.records.len();
        }
        let written = write_views(out, self.config, self.names, &logger.records)?;
        replaced.retain(|name| !RUN_FILES.contains(&name.as_str()) && !written.contains(name));
        rundir::remove_files(out, replaced)?;
        replaced.clear();
        Ok(())
    }
}

/// Writes the views of a checkpoint: the log `records`, the configuration and the plots;
/// returns the plots' file names.
fn write_views(
    out: &Path,
    config: &RunConfig,
    names: &[String],
    records: &[Value],
) -> Result<Vec<String>> {
    write_atomic(&out.join(METRICS_FILE), json_lines(records).as_bytes())?;
    write_atomic(&out.join(CONFIG_FILE), config.to_toml().as_bytes())?;
    write_plots(out, names, records)
}

/// Writes the plots of the run so far, from its log; returns their file names.
fn write_plots(out: &Path, names: &[String], records: &[Value]) -> Result<Vec<String>> {
    let t = names.len();
    let mut written = Vec::new();
    let steps: Vec<&Value> = records.iter().filter(|r| r["kind"] == "step").collect();
    let epochs: Vec<&Value> = records.iter().filter(|r| r["kind"] == "epoch").collect();
    let cosines = MatrixMean::of(&steps, "cosines");
    let affinity = MatrixMean::of(&steps, "affinity");
    let per_task = |key: &str, transform: fn(f64) -> f64| -> Vec<Series> {
        (0..t)
            .map(|i| Series {
                name: names[i].clone(),
                points: steps
                    .iter()
                    .filter_map(|r| Some((r["step"].as_f64()?, transform(r[key][i].as_f64()?))))
                    .collect(),
            })
            .collect()
    };
    written.extend(plots::smoothed_chart(
        &out.join("loss.svg"),
        "Training loss per task",
        "step",
        "loss",
        &per_task("losses", |l| l),
    )?);
    written.extend(plots::smoothed_chart(
        &out.join("weights.svg"),
        "Task weights",
        "step",
        "weight",
        &per_task("weights", |w| w),
    )?);
    if !epochs.is_empty() {
        let panels: Vec<(String, String, Vec<Series>)> = (0..t)
            .map(|i| {
                let curve = |name: &str, split: &str| Series {
                    name: name.into(),
                    points: epochs
                        .iter()
                        .filter_map(|e| {
                            Some((e["epoch"].as_f64()? + 1.0, e[split][i]["value"].as_f64()?))
                        })
                        .collect(),
                };
                let metric = epochs[0]["train"][i]["metric"].as_str().unwrap_or("metric");
                (
                    names[i].clone(),
                    metric.to_string(),
                    vec![curve("train", "train"), curve("test", "test")],
                )
            })
            .collect();
        written.extend(plots::panels(&out.join("metrics.svg"), "epoch", &panels)?);
    }
    let title = if cosines.count > 0 {
        format!("Mean gradient cosine on the shared parameters ({} steps)", cosines.count)
    } else {
        "Gradient cosines not computed (run with --cosines true)".to_string()
    };
    written.extend(plots::heatmap(&out.join("cosines.svg"), &title, names, &cosines.mean(t))?);
    // Each pair's cosine over the steps: the mean above hides when the conflict happens.
    let pairs: Vec<Series> = (0..t)
        .flat_map(|i| (i + 1..t).map(move |j| (i, j)))
        .map(|(i, j)| Series {
            name: format!("{} – {}", names[i], names[j]),
            points: steps
                .iter()
                .filter_map(|r| Some((r["step"].as_f64()?, r["cosines"][i * t + j].as_f64()?)))
                .collect(),
        })
        .collect();
    if pairs.iter().any(|p| !p.points.is_empty()) {
        let title = "Gradient cosine of each task pair on the shared parameters";
        written.extend(plots::pair_panels(&out.join("cosines_over_time.svg"), title, &pairs)?);
    }
    // The task affinity beside them, on a scale around 0 set by its largest entry.
    if affinity.count > 0 {
        let z = affinity.mean(t);
        let limit = z.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let title = format!("Mean task affinity Z(row → column) ({} steps)", affinity.count);
        written.extend(plots::diverging_heatmap(
            &out.join("affinity.svg"),
            &title,
            names,
            &z,
            limit,
        )?);
    }
    // A learned task covariance, next to the gradient cosines.
    let omega = epochs.last().and_then(|e| {
        let values = e["model"]["task_relation.omega"].as_array()?;
        values.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>()
    });
    if let Some(omega) = omega {
        let title = format!("Learned task covariance Ω after epoch {}", epochs.len());
        written.extend(plots::heatmap(&out.join("task_relation.svg"), &title, names, &omega)?);
    }
    Ok(written)
}

/// The checkpoint file for `--checkpoint DIR_OR_FILE`, and the `config.toml` beside it if there
/// is one.
pub fn locate_checkpoint(path: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    if !path.exists() {
        return Err(invalid!("checkpoint {} does not exist", path.display()));
    }
    let file = if path.is_dir() { path.join(CHECKPOINT_FILE) } else { path.to_path_buf() };
    if !file.is_file() {
        return Err(invalid!("{} holds no {CHECKPOINT_FILE}", path.display()));
    }
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let config = dir.join(CONFIG_FILE);
    if config.exists() && !config.is_file() {
        return Err(invalid!("{} is not a file", config.display()));
    }
    Ok((file, config.is_file().then_some(config)))
}

/// The configuration of the run whose checkpoint is `checkpoint`: the one it records, or, for
/// a checkpoint without one (written elsewhere), the `config.toml` beside it, checked against
/// what the checkpoint records of the run.
fn run_config(checkpoint: &Checkpoint, file: &Path, beside: Option<&Path>) -> Result<RunConfig> {
    let meta = checkpoint.user_metadata();
    if let Some(text) = meta.get(CONFIG_KEY) {
        let source = format!("the configuration in {}", file.display());
        return RunConfig::from_toml_str(text, &source)?.validate();
    }
    let Some(config_path) = beside else {
        return Err(invalid!(
            "{} records no configuration and no {CONFIG_FILE} is beside it: the model cannot be rebuilt without the run's configuration",
            file.display()
        ));
    };
    let config = RunConfig::from_toml_file(config_path)?.validate()?;
    check_run_record(&meta, &config, config_path, file)?;
    Ok(config)
}

/// A saved run for `DIR_OR_FILE`: its checkpoint file, its configuration (the one the
/// checkpoint records, see [`run_config`]; a note says so when `config.toml` differs) and the
/// checkpoint, read and verified.
pub fn open_run(path: &Path) -> Result<(PathBuf, RunConfig, Checkpoint)> {
    let (file, beside) = locate_checkpoint(path)?;
    // The checkpoint is read (and verified) first: the configuration it records is the run's.
    let checkpoint = Checkpoint::read(&file)?;
    let config = run_config(&checkpoint, &file, beside.as_deref())?;
    if let (Some(text), Some(beside)) = (checkpoint.user_metadata().get(CONFIG_KEY), &beside) {
        if std::fs::read_to_string(beside).ok().as_deref() != Some(text.as_str()) {
            note!(
                "tapestry: note: {} differs from the configuration recorded in {} (edited, or written by an interrupted run); the checkpoint's is used.",
                beside.display(),
                file.display()
            );
        }
    }
    Ok((file, config, checkpoint))
}

/// A saved run, loaded: its checkpoint file and metadata, its configuration, its data, and its
/// model holding the checkpoint's parameters.
pub struct LoadedRun {
    /// The checkpoint file.
    pub file: PathBuf,
    /// The checkpoint's user metadata.
    pub meta: BTreeMap<String, String>,
    /// The run's configuration (with the limit and threads given).
    pub config: RunConfig,
    /// The run's data.
    pub data: RunData,
    /// The model, its parameters restored from the checkpoint.
    pub built: BuiltModel,
}

/// Loads the run of `path` (a run directory or a checkpoint file) with its data and model;
/// `limit` and `threads` override the run's.
pub fn load_run(path: &Path, limit: Option<usize>, threads: Option<usize>) -> Result<LoadedRun> {
    let (file, mut config, checkpoint) = open_run(path)?;
    if limit.is_some() {
        config.limit = limit;
    }
    if let Some(n) = threads {
        config.threads = n;
    }
    config = config.validate()?;
    crate::init_threads(config.threads)?;
    let meta = checkpoint.user_metadata();
    let data = RunData::load(&config)?;
    let mut built = build_model(&config, data.sample_shape(), &data.tasks())?;
    // A weighting's own parameters (uncertainty weighting's variances) are in the checkpoint.
    config
        .weighting()?
        .register(&mut built.params, built.model.tasks())
        .map_err(tapestry_mtl::MtlError::from)?;
    checkpoint.restore(&file, &mut built.params, None)?;
    Ok(LoadedRun { file, meta, config, data, built })
}

/// Evaluates a saved run on its data set's test split; `limit` overrides the run's sample limit.
/// With `outputs`, also writes the test inputs and the model's outputs there as `.npy` files
/// (see [`write_outputs`]).
pub fn eval(
    path: &Path,
    limit: Option<usize>,
    threads: Option<usize>,
    outputs: Option<&Path>,
) -> Result<Evaluation> {
    let LoadedRun { file, meta, config, data, built } = load_run(path, limit, threads)?;
    let BuiltModel { model, params, preset, .. } = &built;
    let evaluation = data.test().evaluate(model.as_ref(), params, EVAL_BATCH)?;
    let epochs = meta.get("epoch").map(String::as_str).unwrap_or("?");
    let within = match meta.get("epoch_steps") {
        Some(steps) => format!(" and {steps} steps"),
        None => String::new(),
    };
    say!(
        "tapestry eval: {} ({} after {} {}{within} of {}) on the {} test split ({} samples)",
        file.display(),
        preset,
        epochs,
        if epochs == "1" { "epoch" } else { "epochs" },
        config.method,
        config.data_name(),
        evaluation.samples
    );
    crate::output::print_out(&metric_table(None, &evaluation));
    if let Some(dir) = outputs {
        let written = write_outputs(&data, model.as_ref(), params, dir)?;
        say!("wrote {} to {}", written.join(", "), dir.display());
    }
    Ok(evaluation)
}

/// Writes the test split's inputs and the model's outputs on them to `dir` as `.npy` arrays
/// (float32, samples in test order): `inputs.npy` (`[N, ...]`, the tensor the model reads) and
/// `outputs.<task>.npy` per task; with one data set per task, `inputs.<task>.npy` instead of
/// `inputs.npy`. Returns the file names.
pub fn write_outputs(
    data: &RunData,
    model: &dyn MultiTaskModel,
    params: &Params,
    dir: &Path,
) -> Result<Vec<String>> {
    crate::output::create_dir(dir)?;
    let tasks = model.tasks();
    let mut files: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let array = |t: &tapestry_autodiff::Tensor| (t.shape().to_vec(), t.as_slice().to_vec());
    let inputs = |d: &tapestry_data::MultiTaskDataset| {
        (d.inputs.shape().to_vec(), d.inputs.iter().copied().collect::<Vec<f32>>())
    };
    match data {
        RunData::Shared(splits) => {
            let (shape, values) = inputs(&splits.test);
            files.push(("inputs.npy".into(), shape, values));
            let outputs = tapestry_mtl::metrics::predict(model, params, &splits.test, EVAL_BATCH)?;
            for (spec, out) in tasks.iter().zip(&outputs) {
                let (shape, values) = array(out);
                files.push((format!("outputs.{}.npy", spec.name), shape, values));
            }
        }
        RunData::PerTask { test, .. } => {
            for (t, (spec, set)) in tasks.iter().zip(test).enumerate() {
                let (shape, values) = inputs(set);
                files.push((format!("inputs.{}.npy", spec.name), shape, values));
                let outputs = tapestry_mtl::metrics::predict(model, params, set, EVAL_BATCH)?;
                let (shape, values) = array(&outputs[t]);
                files.push((format!("outputs.{}.npy", spec.name), shape, values));
            }
        }
    }
    for (name, shape, values) in &files {
        let path = dir.join(name);
        write_atomic(&path, &tapestry_data::npy::f32_npy_bytes(shape, values))?;
    }
    Ok(files.into_iter().map(|(name, ..)| name).collect())
}

/// Refuses a configuration that does not describe the run whose checkpoint `meta` comes from:
/// the method, data set, architecture and model the checkpoint records (those it records) must
/// be the configuration's.
fn check_run_record(
    meta: &BTreeMap<String, String>,
    config: &RunConfig,
    config_path: &Path,
    file: &Path,
) -> Result<()> {
    let preset = resolve_preset(&config.model, &config.dataset);
    let data = config.data_name();
    let differences: Vec<String> = [
        ("method", config.method.as_str()),
        ("dataset", data.as_str()),
        ("arch", config.arch.as_str()),
        ("model", preset.as_str()),
    ]
    .into_iter()
    .filter_map(|(key, ours)| {
        let recorded = meta.get(key)?;
        (recorded != ours)
            .then(|| format!("{key} `{ours}` where the checkpoint records `{recorded}`"))
    })
    .collect();
    if differences.is_empty() {
        return Ok(());
    }
    Err(invalid!(
        "{} does not describe the run that wrote {}: it gives {}",
        config_path.display(),
        file.display(),
        differences.join(", ")
    ))
}

/// Makes sure `out` can be used: an existing file there is an error.
pub fn check_out_dir(out: &Path) -> Result<()> {
    if !out.exists() {
        if let Ok(target) = std::fs::read_link(out) {
            return Err(invalid!(
                "output path {} is a symbolic link to {}, which does not exist",
                out.display(),
                target.display()
            ));
        }
    }
    if out.exists() && !out.is_dir() {
        return Err(CliError::Invalid(format!(
            "output path {} exists and is not a directory",
            out.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_hours_minutes_or_seconds() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(185), "3m05s");
        assert_eq!(duration(3720), "1h02m");
    }
}
