//! `tapestry train` and `tapestry eval`: a training run with progress bars, a metric table each
//! epoch, `metrics.jsonl`, plots and a checkpoint; and the evaluation of a saved run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use tapestry_data::{DatasetConfig, MetricKind, Splits, TaskSpec, TaskTargets};
use tapestry_mtl::metrics::Evaluation;
use tapestry_mtl::trainer::{EpochReport, Observer, Trainer, TrainerConfig};
use tapestry_mtl::{StepOptions, StepReport};
use tapestry_nn::checkpoint::{self, Checkpoint};
use unicode_width::UnicodeWidthStr;

use crate::config::{parse_target, RunConfig};
use crate::error::{CliError, Result};
use crate::inputs::RunData;
use crate::invalid;
use crate::models::{build_model, resolve_preset, BuiltModel};
use crate::output::{create_dir, json_lines, write_atomic};
use crate::plots::{self, Series};

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
    if let DatasetConfig::Csv(csv) = &mut dataset {
        if !config.targets.is_empty() {
            csv.tasks =
                config.targets.iter().map(|t| parse_target(t)).collect::<Result<Vec<_>>>()?;
        }
    }
    if let DatasetConfig::Fashion(fashion) = &mut dataset {
        fashion.max_samples = config.limit;
    }
    // Multi-Fashion composes only the images the limit keeps (the same ones, faster).
    if let DatasetConfig::MultiFashion(fashion) = &mut dataset {
        fashion.max_images = config.limit;
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
    if let (DatasetConfig::Csv(csv), "csv") = (&dataset, config.dataset.as_str()) {
        check_learnable(&splits, &csv.path)?;
    }
    Ok(splits)
}

/// Refuses the tasks of a table that a run can neither learn nor score: a classification whose
/// training rows hold one class, and a task without any label in the training or test rows.
fn check_learnable(splits: &Splits, file: &Path) -> Result<()> {
    for (t, spec) in splits.train.tasks.iter().enumerate() {
        let what = match &splits.train.targets[t] {
            TaskTargets::Classes { .. } => "label",
            _ => "value",
        };
        for (split, name) in [(&splits.train, "training"), (&splits.test, "test")] {
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
                    file.display(),
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
    cosines: MatrixMean,
    affinity: MatrixMean,
}

/// The running mean of the `T × T` matrices a run reports at some steps.
#[derive(Default)]
struct MatrixMean {
    sums: Vec<f64>,
    count: u64,
}

impl MatrixMean {
    fn add(&mut self, values: &[f64]) {
        if self.sums.len() != values.len() {
            self.sums = vec![0.0; values.len()];
        }
        for (sum, v) in self.sums.iter_mut().zip(values) {
            *sum += v;
        }
        self.count += 1;
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
            self.cosines.add(&s.cosines);
        }
        if let Some(z) = &r.affinity {
            record["affinity"] = json!(z);
            self.affinity.add(z);
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
        let rate = self.epoch_samples as f64 / self.epoch_start.elapsed().as_secs_f64().max(1e-9);
        let losses: Vec<String> = (self.names.iter().zip(&r.losses))
            .filter(|(_, l)| l.is_finite())
            .map(|(n, l)| format!("{n} {l:.3}"))
            .collect();
        self.bar.set_message(format!("{} | {rate:.0} samples/s", losses.join(", ")));
        self.bar.inc(1);
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

/// Trains as `config` says, writing everything into `out`; progress goes to stderr unless
/// `quiet`, the epoch tables to stdout.
pub fn train(config: &RunConfig, out: &Path, quiet: bool) -> Result<RunSummary> {
    let run_start = Instant::now();
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
    create_dir(out)?;
    write_atomic(&out.join(CONFIG_FILE), config.to_toml().as_bytes())?;
    let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
    if !quiet {
        println!(
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
        println!("  {description}");
        if !config.multi_input.is_empty() {
            println!("  one input per task: each task trains and is tested on its own data set");
        }
        if config.schedule != "all" || config.accumulate > 1 {
            let proportions = match config.proportions.as_str() {
                "" => String::new(),
                p => format!(" (proportions {p})"),
            };
            println!(
                "  schedule {}{proportions}, one update every {} steps",
                config.schedule, config.accumulate
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
    };
    if config.cosines && model.shared_params().is_empty() && !quiet {
        println!("  no gradient cosines: the `{}` architecture shares no parameter", config.arch);
    } else if config.cosines && !cosines && !quiet {
        println!(
            "  no gradient cosines: the {} schedule trains one task per step",
            config.schedule
        );
    }
    let mut trainer = Trainer::from_boxed(trainer_config, config.optimizer()?, weighting);
    let steps_per_epoch = data.steps_per_epoch(config.batch_size);
    let mut logger = Logger {
        records: vec![json!({
            "kind": "run",
            "tasks": names,
            "metrics": tasks.iter().map(|t| metric_name(t.metric)).collect::<Vec<_>>(),
            "higher_is_better": tasks.iter().map(|t| t.metric.higher_is_better()).collect::<Vec<_>>(),
            "model": preset,
            "parameters": params.numel(),
            "config": serde_json::to_value(config).expect("serialisable"),
        })],
        bar: ProgressBar::hidden(),
        names: names.clone(),
        epoch_start: Instant::now(),
        epoch_samples: 0,
        cosines: MatrixMean::default(),
        affinity: MatrixMean::default(),
    };
    let mut epochs: Vec<EpochReport> = Vec::new();
    let mut train_seconds = 0.0;
    for epoch in 0..config.epochs {
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
        logger.bar = bar;
        logger.epoch_start = Instant::now();
        logger.epoch_samples = 0;
        let report = trainer
            .fit_data(&model, &mut params, data.train(), Some(data.test()), &mut logger)?
            .pop()
            .expect("one epoch");
        logger.bar.finish_and_clear();
        train_seconds += report.seconds;
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
            println!(
                "epoch {}/{}: {:.1} s, {rate:.0} samples/s, mean weights: {}",
                epoch + 1,
                config.epochs,
                report.seconds,
                weights.join(", ")
            );
            print!("{}", metric_table(Some(&report.train), &test));
        }
        epochs.push(report);
        write_atomic(&out.join(METRICS_FILE), json_lines(&logger.records).as_bytes())?;
        let metadata = BTreeMap::from([
            ("epoch".to_string(), (epoch + 1).to_string()),
            ("step".to_string(), trainer.steps().to_string()),
            ("method".to_string(), config.method.clone()),
            ("dataset".to_string(), config.data_name()),
            ("model".to_string(), preset.clone()),
            ("arch".to_string(), config.arch.clone()),
        ]);
        checkpoint::save(out.join(CHECKPOINT_FILE), &params, Some(trainer.optimizer()), &metadata)?;
        write_plots(out, &names, &logger, &epochs)?;
    }
    let test = epochs.last().and_then(|e| e.validation.clone()).expect("at least one epoch");
    if !quiet {
        println!(
            "done in {:.1} s; wrote {}, {}, {} and plots (*.svg) to {}",
            run_start.elapsed().as_secs_f64(),
            METRICS_FILE,
            CHECKPOINT_FILE,
            CONFIG_FILE,
            out.display()
        );
    }
    Ok(RunSummary { tasks, test, train_seconds })
}

/// Writes the plots of the run so far.
fn write_plots(
    out: &Path,
    names: &[String],
    logger: &Logger,
    epochs: &[EpochReport],
) -> Result<()> {
    let t = names.len();
    let steps: Vec<&Value> = logger.records.iter().filter(|r| r["kind"] == "step").collect();
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
    plots::line_chart(
        &out.join("loss.svg"),
        "Training loss per task",
        "step",
        "log10(loss)",
        &per_task("losses", |l| l.max(1e-12).log10()),
    )?;
    plots::line_chart(
        &out.join("weights.svg"),
        "Task weights",
        "step",
        "weight",
        &per_task("weights", |w| w),
    )?;
    let panels: Vec<(String, String, Vec<Series>)> = (0..t)
        .map(|i| {
            let curve = |name: &str, f: &dyn Fn(&EpochReport) -> Option<f64>| Series {
                name: name.into(),
                points: epochs.iter().filter_map(|e| Some((e.epoch as f64 + 1.0, f(e)?))).collect(),
            };
            let metric = metric_name(epochs[0].train.tasks[i].metric);
            (
                names[i].clone(),
                metric.to_string(),
                vec![
                    curve("train", &|e| e.train.tasks[i].value),
                    curve("test", &|e| e.validation.as_ref()?.tasks[i].value),
                ],
            )
        })
        .collect();
    plots::panels(&out.join("metrics.svg"), "epoch", &panels)?;
    let title = if logger.cosines.count > 0 {
        format!("Mean gradient cosine on the shared parameters ({} steps)", logger.cosines.count)
    } else {
        "Gradient cosines not computed (run with --cosines true)".to_string()
    };
    plots::heatmap(&out.join("cosines.svg"), &title, names, &logger.cosines.mean(t))?;
    // The task affinity beside them, on a scale around 0 set by its largest entry.
    if logger.affinity.count > 0 {
        let z = logger.affinity.mean(t);
        let limit = z.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let title = format!("Mean task affinity Z(row → column) ({} steps)", logger.affinity.count);
        plots::diverging_heatmap(&out.join("affinity.svg"), &title, names, &z, limit)?;
    }
    // A learned task covariance, next to the gradient cosines.
    let omega = epochs
        .last()
        .and_then(|e| e.model_diagnostics.iter().find(|(k, _)| k == "task_relation.omega"));
    if let Some((_, omega)) = omega {
        let title = format!("Learned task covariance Ω after epoch {}", epochs.len());
        plots::heatmap(&out.join("task_relation.svg"), &title, names, omega)?;
    }
    Ok(())
}

/// The checkpoint file and the run's configuration for `--checkpoint DIR_OR_FILE`.
pub fn locate_checkpoint(path: &Path) -> Result<(PathBuf, PathBuf)> {
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
    if !config.is_file() {
        return Err(invalid!(
            "no {CONFIG_FILE} next to {}: the model cannot be rebuilt without the run's configuration",
            file.display()
        ));
    }
    Ok((file, config))
}

/// A saved run for `DIR_OR_FILE`: its checkpoint file, its configuration and the checkpoint,
/// read (and verified), whose own record of the run must agree with the configuration.
pub fn open_run(path: &Path) -> Result<(PathBuf, RunConfig, Checkpoint)> {
    let (file, config_path) = locate_checkpoint(path)?;
    let config = RunConfig::from_toml_file(&config_path)?.validate()?;
    let checkpoint = Checkpoint::read(&file)?;
    check_run_record(&checkpoint.user_metadata(), &config, &config_path, &file)?;
    Ok((file, config, checkpoint))
}

/// Evaluates a saved run on its data set's test split; `limit` overrides the run's sample limit.
pub fn eval(path: &Path, limit: Option<usize>, threads: Option<usize>) -> Result<Evaluation> {
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
    let BuiltModel { model, mut params, preset, .. } =
        build_model(&config, data.sample_shape(), &data.tasks())?;
    // A weighting's own parameters (uncertainty weighting's variances) are in the checkpoint.
    config
        .weighting()?
        .register(&mut params, model.tasks())
        .map_err(tapestry_mtl::MtlError::from)?;
    checkpoint.restore(&file, &mut params, None)?;
    let evaluation = data.test().evaluate(&model, &params, EVAL_BATCH)?;
    let epochs = meta.get("epoch").map(String::as_str).unwrap_or("?");
    println!(
        "tapestry eval: {} ({} after {} {} of {}) on the {} test split ({} samples)",
        file.display(),
        preset,
        epochs,
        if epochs == "1" { "epoch" } else { "epochs" },
        config.method,
        config.data_name(),
        evaluation.samples
    );
    print!("{}", metric_table(None, &evaluation));
    Ok(evaluation)
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
