//! The trainer: epochs of [`TrainStep`]s over a [`MultiTaskDataset`], with per-task metrics on
//! the training and validation data each epoch and an [`Observer`] for progress and logging.
//!
//! Runs are deterministic: the batch order comes from the seed and the epoch, dropout masks from
//! the seed and the step, and every reduction has a fixed order, so the same seed, data and
//! thread count give bitwise-identical parameters.
//!
//! ```
//! use rand::SeedableRng;
//! use ndarray::Array2;
//! use tapestry_data::{MultiTaskDataset, TaskSpec, TaskTargets};
//! use tapestry_mtl::model::HardSharing;
//! use tapestry_mtl::trainer::{NoObserver, Trainer, TrainerConfig};
//! use tapestry_mtl::weighting::EqualWeighting;
//! use tapestry_nn::optim::Adam;
//! use tapestry_nn::{Linear, Params, Relu, Sequential};
//!
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let mut params = Params::new();
//! let trunk = Sequential::new()
//!     .push(Linear::new(&mut params, "trunk.0", 2, 8, &mut rng).unwrap())
//!     .push(Relu);
//! let a = Linear::new(&mut params, "heads.sum", 8, 1, &mut rng).unwrap();
//! let b = Linear::new(&mut params, "heads.sign", 8, 2, &mut rng).unwrap();
//! let model = HardSharing::builder(trunk)
//!     .head(TaskSpec::regression("sum", 1), a)
//!     .head(TaskSpec::classification("sign", 2), b)
//!     .build(&params)
//!     .unwrap();
//! let x = Array2::from_shape_fn((32, 2), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 5.0 - 1.0);
//! let sum = Array2::from_shape_fn((32, 1), |(i, _)| x[[i, 0]] + x[[i, 1]]);
//! let sign: Vec<i64> = (0..32).map(|i| i64::from(x[[i, 0]] > 0.0)).collect();
//! let data = MultiTaskDataset::new(
//!     "toy",
//!     x.into_dyn(),
//!     vec![TaskSpec::regression("sum", 1), TaskSpec::classification("sign", 2)],
//!     vec![TaskTargets::Values { values: sum, mask: None }, TaskTargets::Classes { labels: sign }],
//! )
//! .unwrap();
//! let config = TrainerConfig { epochs: 2, batch_size: 8, ..TrainerConfig::default() };
//! let mut trainer = Trainer::new(config, Adam::new(1e-2), EqualWeighting);
//! let epochs = trainer.fit(&model, &mut params, &data, Some(&data), &mut NoObserver).unwrap();
//! assert_eq!(epochs.len(), 2);
//! assert_eq!(trainer.steps(), 8);
//! ```

use std::time::Instant;

use tapestry_data::{Batch, BatchOptions, MultiTaskDataset};
use tapestry_nn::optim::Optimizer;
use tapestry_nn::Params;

use crate::error::MtlError;
use crate::metrics::{Evaluation, TaskMetric};
use crate::model::MultiTaskModel;
use crate::multi_input::{check_multi_input, TaskData};
use crate::schedule::{Schedule, StepPlan};
use crate::step::{StepCounters, StepOptions, StepReport, TrainStep};
use crate::weighting::Weighting;

/// How the trainer runs.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerConfig {
    /// Epochs per call of [`Trainer::fit`].
    pub epochs: usize,
    /// Samples per training batch (at least 1).
    pub batch_size: usize,
    /// Samples per evaluation batch; 0 means `batch_size`.
    pub eval_batch_size: usize,
    /// Drop the last partial training batch of each epoch.
    pub drop_last: bool,
    /// The seed of the batch order and of dropout masks.
    pub seed: u64,
    /// How each step computes what the weighting needs.
    pub step: StepOptions,
    /// Which tasks each step trains (every task by default).
    pub schedule: Schedule,
    /// Steps per optimizer update, on the mean of their gradients (at least 1; the default 1).
    pub accumulate: usize,
    /// Stop with [`MtlError::Diverged`] when a task's loss exceeds this many times its first
    /// positive value (`None`, the default: only non-finite losses stop a run).
    pub divergence: Option<f64>,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        TrainerConfig {
            epochs: 1,
            batch_size: 64,
            eval_batch_size: 0,
            drop_last: false,
            seed: 0,
            step: StepOptions::default(),
            schedule: Schedule::All,
            accumulate: 1,
            divergence: None,
        }
    }
}

/// What one epoch did.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// The epoch, from 0.
    pub epoch: u64,
    /// Steps taken in this epoch.
    pub steps: u64,
    /// Per-task loss and metric on the training data, accumulated over the epoch's steps (in
    /// train mode, each batch seen before its update).
    pub train: Evaluation,
    /// Per-task loss and metric on the validation data after the epoch, in eval mode.
    pub validation: Option<Evaluation>,
    /// The mean of each task's weight over the epoch's steps.
    pub mean_weights: Vec<f64>,
    /// Wall-clock seconds of the epoch's training steps (not of validation).
    pub seconds: f64,
    /// What the model reports after the epoch (for example a learned task covariance).
    pub model_diagnostics: Vec<(String, Vec<f64>)>,
    /// The mean inter-task affinity `Z_{i→j}` (`T × T` row-major) over the epoch's steps where
    /// it was measured ([`StepOptions::affinity`]), if it was.
    pub affinity: Option<Vec<f64>>,
}

/// The running mean of matrices of one size.
#[derive(Debug, Default)]
struct MeanMatrix {
    sum: Vec<f64>,
    count: u64,
}

impl MeanMatrix {
    fn add(&mut self, values: &[f64]) {
        if self.sum.is_empty() {
            self.sum = vec![0.0; values.len()];
        }
        for (s, v) in self.sum.iter_mut().zip(values) {
            *s += v;
        }
        self.count += 1;
    }

    fn mean(&self) -> Option<Vec<f64>> {
        (self.count > 0).then(|| self.sum.iter().map(|s| s / self.count as f64).collect())
    }
}

/// Where a run stands, to save it and resume it bit for bit. The parameters and the
/// optimizer's state are saved with the model ([`tapestry_nn::checkpoint`]), the weighting's
/// with [`Weighting::state`] and the model's own with [`MultiTaskModel::state`]; this holds the
/// rest: the counters, the epoch in progress, and the losses the schedule and the divergence
/// check remember.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainerState {
    /// Steps taken.
    pub steps: u64,
    /// Epochs completed.
    pub epochs: u64,
    /// The epoch stopped part-way, if it was ([`Observer::stop_requested`]).
    pub in_epoch: Option<EpochProgress>,
    /// Each task's first positive loss (the divergence check's reference), once seen.
    pub first_losses: Vec<Option<f64>>,
    /// Each task's first and last loss as the schedule saw them
    /// ([`crate::schedule::TaskScheduler::losses_seen`]); empty before the first step.
    pub schedule_losses: LossesSeen,
}

/// Each task's first and last loss as a schedule saw them (`None` before it trained the task).
pub type LossesSeen = (Vec<Option<f64>>, Vec<Option<f64>>);

/// The sums of an epoch stopped part-way.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochProgress {
    /// Steps of the epoch done: the next step takes its batch number `batches` (from 0).
    pub batches: u64,
    /// Training samples seen.
    pub samples: usize,
    /// Seconds of training so far.
    pub seconds: f64,
    /// The sum of each task's weight over the steps done.
    pub weight_sums: Vec<f64>,
    /// Each task's metric sums ([`TaskMetric::to_values`]).
    pub metrics: Vec<Vec<f64>>,
    /// The sum of the affinity matrices measured, and their count.
    pub affinity: (Vec<f64>, u64),
}

/// Hooks the trainer calls after every step and every epoch, for progress bars and logs.
pub trait Observer {
    /// After each step.
    fn on_step(&mut self, _report: &StepReport) {}
    /// After each epoch, validation included.
    fn on_epoch(&mut self, _report: &EpochReport) {}
    /// Asked after each step that completed an optimizer update: `true` stops the epoch there
    /// (the trainer keeps its progress in [`Trainer::state`], and the next call of
    /// [`Trainer::fit`] goes on from the next step). The default never stops.
    fn stop_requested(&mut self) -> bool {
        false
    }
}

/// An observer that does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// Trains a multi-task model with an optimizer and a weighting.
pub struct Trainer {
    config: TrainerConfig,
    optimizer: Box<dyn Optimizer>,
    weighting: Box<dyn Weighting>,
    steps: u64,
    epochs: u64,
    plan: Option<StepPlan>,
    progress: Option<EpochProgress>,
    first_losses: Vec<Option<f64>>,
    schedule_losses: Option<LossesSeen>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("config", &self.config)
            .field("optimizer", &self.optimizer.kind())
            .field("weighting", &self.weighting.name())
            .field("steps", &self.steps)
            .field("epochs", &self.epochs)
            .finish()
    }
}

impl Trainer {
    /// A trainer with the given optimizer and weighting.
    pub fn new(
        config: TrainerConfig,
        optimizer: impl Optimizer + 'static,
        weighting: impl Weighting + 'static,
    ) -> Self {
        Self::from_boxed(config, Box::new(optimizer), Box::new(weighting))
    }

    /// A trainer with an optimizer and a weighting chosen at run time.
    pub fn from_boxed(
        config: TrainerConfig,
        optimizer: Box<dyn Optimizer>,
        weighting: Box<dyn Weighting>,
    ) -> Self {
        Trainer {
            config,
            optimizer,
            weighting,
            steps: 0,
            epochs: 0,
            plan: None,
            progress: None,
            first_losses: Vec::new(),
            schedule_losses: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &dyn Optimizer {
        self.optimizer.as_ref()
    }

    /// The weighting.
    pub fn weighting(&self) -> &dyn Weighting {
        self.weighting.as_ref()
    }

    /// Steps taken so far (optimizer updates are fewer with [`TrainerConfig::accumulate`]).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Epochs completed so far.
    pub fn epochs(&self) -> u64 {
        self.epochs
    }

    /// The optimizer, to restore its state.
    pub fn optimizer_mut(&mut self) -> &mut dyn Optimizer {
        self.optimizer.as_mut()
    }

    /// The weighting, to restore its state.
    pub fn weighting_mut(&mut self) -> &mut dyn Weighting {
        self.weighting.as_mut()
    }

    /// The epoch stopped part-way by [`Observer::stop_requested`], if one was.
    pub fn in_epoch(&self) -> Option<&EpochProgress> {
        self.progress.as_ref()
    }

    /// Where the run stands (see [`TrainerState`]).
    pub fn state(&self) -> TrainerState {
        let schedule_losses = match (&self.plan, &self.schedule_losses) {
            (Some(plan), _) => {
                let (first, last) = plan.scheduler().losses_seen();
                (first.to_vec(), last.to_vec())
            }
            (None, Some(saved)) => saved.clone(),
            (None, None) => (Vec::new(), Vec::new()),
        };
        TrainerState {
            steps: self.steps,
            epochs: self.epochs,
            in_epoch: self.progress.clone(),
            first_losses: self.first_losses.clone(),
            schedule_losses,
        }
    }

    /// Continues from `state`, saved by [`Trainer::state`] of a trainer with the same
    /// configuration (the parameters, optimizer and weighting are restored by their owners).
    /// Checked against the model at the next [`Trainer::fit`].
    pub fn set_state(&mut self, state: TrainerState) {
        self.steps = state.steps;
        self.epochs = state.epochs;
        self.progress = state.in_epoch;
        self.first_losses = state.first_losses;
        self.schedule_losses =
            (!state.schedule_losses.0.is_empty()).then_some(state.schedule_losses);
        self.plan = None;
    }

    /// Trains for [`TrainerConfig::epochs`] more epochs on `train`, evaluating on `validation`
    /// after each, and returns the epochs' reports.
    ///
    /// Errors before any step if a data set does not fit the model or the batch size is 0;
    /// stops at the first step whose loss or update is not finite
    /// ([`MtlError::NonFiniteLoss`] names the task and the step), leaving the parameters as
    /// they were before that step.
    pub fn fit(
        &mut self,
        model: &(impl MultiTaskModel + ?Sized),
        params: &mut Params,
        train: &MultiTaskDataset,
        validation: Option<&MultiTaskDataset>,
        observer: &mut (impl Observer + ?Sized),
    ) -> Result<Vec<EpochReport>, MtlError> {
        self.fit_data(model, params, train.into(), validation.map(TaskData::from), observer)
    }

    /// [`Trainer::fit`] on one data set every task reads, or on one data set per task
    /// ([`TaskData::PerTask`]: each task trains on batches of its own training set and is
    /// evaluated on its own validation set). The schedule and the accumulation of the
    /// configuration apply to both.
    ///
    /// # Errors
    /// As [`Trainer::fit`]; also, before any step, a schedule or accumulation the run cannot
    /// take ([`StepPlan::new`]) and, with one data set per task, a method that works at the
    /// representation ([`check_multi_input`]).
    pub fn fit_data(
        &mut self,
        model: &(impl MultiTaskModel + ?Sized),
        params: &mut Params,
        train: TaskData<'_>,
        validation: Option<TaskData<'_>>,
        observer: &mut (impl Observer + ?Sized),
    ) -> Result<Vec<EpochReport>, MtlError> {
        if self.config.batch_size == 0 {
            return Err(MtlError::Config("the batch size must be at least 1".into()));
        }
        train.check(model)?;
        if let Some(v) = &validation {
            v.check(model)?;
        }
        if matches!(train, TaskData::PerTask(_)) {
            check_multi_input(self.weighting.as_ref())?;
        }
        let tasks = model.tasks();
        if self.plan.is_none() {
            let (schedule, k) = (self.config.schedule.clone(), self.config.accumulate);
            let mut plan = StepPlan::new(schedule, k, tasks.len(), self.weighting.as_ref())?;
            if let Some((first, last)) = self.schedule_losses.take() {
                plan.scheduler_mut().set_losses_seen(first, last)?;
            }
            self.plan = Some(plan);
        }
        if self.first_losses.is_empty() {
            self.first_losses = vec![None; tasks.len()];
        }
        let saved = |what: &str, found: usize| {
            MtlError::Config(format!(
                "the saved training state holds {what} for {found} tasks, but the model has {}",
                tasks.len()
            ))
        };
        if self.first_losses.len() != tasks.len() {
            return Err(saved("first losses", self.first_losses.len()));
        }
        if let Some(p) = &self.progress {
            if p.weight_sums.len() != tasks.len() || p.metrics.len() != tasks.len() {
                return Err(saved("epoch sums", p.weight_sums.len()));
            }
        }
        self.weighting.register(params, tasks)?;
        let step =
            TrainStep::new(model, params, self.weighting.as_ref(), self.config.step.clone())?;
        let options = BatchOptions {
            batch_size: self.config.batch_size,
            shuffle: true,
            seed: self.config.seed,
            drop_last: self.config.drop_last,
        };
        let eval_batch = match self.config.eval_batch_size {
            0 => self.config.batch_size,
            n => n,
        };
        let mut reports = Vec::with_capacity(self.config.epochs);
        for _ in 0..self.config.epochs {
            let epoch = self.epochs;
            let start = Instant::now();
            let mut metrics: Vec<TaskMetric> = tasks.iter().map(TaskMetric::new).collect();
            let mut weight_sums = vec![0.0; tasks.len()];
            let mut affinity = MeanMatrix::default();
            let (mut steps, mut samples, mut seconds_before) = (0u64, 0usize, 0.0);
            if let Some(p) = self.progress.take() {
                for (t, values) in p.metrics.iter().enumerate() {
                    metrics[t] = TaskMetric::from_values(&tasks[t], values)?;
                }
                weight_sums = p.weight_sums;
                affinity = MeanMatrix { sum: p.affinity.0, count: p.affinity.1 };
                (steps, samples, seconds_before) = (p.batches, p.samples, p.seconds);
            }
            let plan = self.plan.as_mut().expect("made above");
            let skip = usize::try_from(steps).unwrap_or(usize::MAX);
            for batches in train.epoch(&options, epoch)?.skip(skip) {
                let counters = StepCounters { step: self.steps, epoch, seed: self.config.seed };
                let view = batches.view();
                let report = plan.step(
                    &step,
                    model,
                    params,
                    self.optimizer.as_mut(),
                    self.weighting.as_mut(),
                    view.clone(),
                    counters,
                )?;
                for &t in &report.trained {
                    let (batch, targets) = (view.batch(t), view.targets(t));
                    let targets = targets.expect("a trained task has targets");
                    metrics[t].add_loss(report.losses[t], batch.map_or(0, Batch::len));
                    metrics[t].add_output(&tasks[t], &report.outputs[t], targets)?;
                }
                for (sum, w) in weight_sums.iter_mut().zip(&report.weights) {
                    *sum += w;
                }
                if let Some(z) = &report.affinity {
                    affinity.add(z);
                }
                if let Some(factor) = self.config.divergence {
                    check_divergence(&mut self.first_losses, &report, tasks, factor, counters)?;
                }
                observer.on_step(&report);
                self.steps += 1;
                steps += 1;
                samples += report.batch_size;
                if plan.pending() == 0 && observer.stop_requested() {
                    self.progress = Some(EpochProgress {
                        batches: steps,
                        samples,
                        seconds: seconds_before + start.elapsed().as_secs_f64(),
                        weight_sums,
                        metrics: metrics.iter().map(TaskMetric::to_values).collect(),
                        affinity: (affinity.sum, affinity.count),
                    });
                    return Ok(reports);
                }
            }
            plan.finish(model, params, self.optimizer.as_mut(), self.steps.saturating_sub(1));
            let seconds = seconds_before + start.elapsed().as_secs_f64();
            let validation =
                validation.map(|v| v.evaluate(model, params, eval_batch)).transpose()?;
            let report = EpochReport {
                epoch,
                steps,
                train: Evaluation::from_metrics(tasks, &metrics, samples),
                validation,
                mean_weights: weight_sums.iter().map(|w| w / steps.max(1) as f64).collect(),
                seconds,
                model_diagnostics: model.diagnostics(),
                affinity: affinity.mean(),
            };
            observer.on_epoch(&report);
            reports.push(report);
            self.epochs += 1;
        }
        Ok(reports)
    }
}

/// Errors with [`MtlError::Diverged`] if a trained task's loss is above `factor` times its
/// first positive loss, which it records when first seen.
fn check_divergence(
    first: &mut [Option<f64>],
    report: &StepReport,
    tasks: &[tapestry_data::TaskSpec],
    factor: f64,
    counters: StepCounters,
) -> Result<(), MtlError> {
    for &t in &report.trained {
        let loss = report.losses[t];
        match first[t] {
            None if loss > 0.0 && loss.is_finite() => first[t] = Some(loss),
            Some(reference) if loss > factor * reference => {
                return Err(MtlError::Diverged {
                    task: tasks[t].name.clone(),
                    step: counters.step,
                    epoch: counters.epoch,
                    loss,
                    first: reference,
                    factor,
                });
            }
            _ => {}
        }
    }
    Ok(())
}
