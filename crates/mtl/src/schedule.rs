//! Task schedules (which tasks a step trains) and gradient accumulation (how many steps make
//! one update).
//!
//! | schedule | tasks trained at step `s` | draw |
//! | --- | --- | --- |
//! | [`Schedule::All`] (the default) | every task | none |
//! | [`Schedule::RoundRobin`] | task `s mod T` | none |
//! | [`Schedule::Sampled`] with [`Proportions::Fixed`]`(π)` | one task, `P(t) = π_t / Σ π` | seeded by the run's seed and `s` |
//! | [`Schedule::Sampled`] with [`Proportions::LossDriven`] | one task, `P(t) ∝ max(L_t / L_t⁽⁰⁾, 0.01)` | seeded by the run's seed and `s` |
//!
//! A one-task step computes that task's loss alone (its weight is 1) and the update is its
//! gradient: there is nothing to weigh, so one-task schedules take equal weighting only
//! ([`Schedule::check`] refuses the others). In the loss-driven rule `L_t` is task `t`'s loss at
//! the last step that trained it and `L_t⁽⁰⁾` its loss at the first (a ratio of 1 until then, and
//! when `L_t⁽⁰⁾` is not positive); the floor keeps every task drawable. The draw is a pure
//! function of the run's seed, the step and the losses seen, so a run is reproducible.
//!
//! With accumulation over `k` steps ([`StepPlan`]), every step computes its combined gradient
//! exactly as without (the weighting's weights or direction on that step's batch, for every
//! method), and the optimizer steps once every `k` steps on their mean, `(1/k) Σ_i g_i`; the
//! last group of an epoch may be shorter and is averaged over its own length. So `k` steps of
//! `b` samples with equal weighting and mean losses give the gradient of one step of `k·b`
//! samples, and round-robin over `T` steps on one batch with `k = T` gives `1/T` times one
//! all-tasks step. A weighting's state (GradNorm's weights, DWA's loss history) moves at every
//! step, not at every update. Cost: one gradient store more; `k` steps per update.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_nn::optim::{GradAccumulator, Optimizer};
use tapestry_nn::Params;

use crate::error::MtlError;
use crate::model::MultiTaskModel;
use crate::multi_input::TaskBatches;
use crate::step::{after_update, StepCounters, StepReport, TrainStep};
use crate::weighting::Weighting;

/// The floor of a task's loss ratio in [`Proportions::LossDriven`].
pub const LOSS_RATIO_FLOOR: f64 = 0.01;

/// Which tasks each step trains.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Schedule {
    /// Every task at every step.
    #[default]
    All,
    /// One task per step, in turn: task `s mod T` at step `s`.
    RoundRobin,
    /// One task per step, drawn with the given proportions.
    Sampled(Proportions),
}

/// How [`Schedule::Sampled`] weighs the tasks.
#[derive(Debug, Clone, PartialEq)]
pub enum Proportions {
    /// Fixed positive proportions, one per task (normalised to sum to 1).
    Fixed(Vec<f64>),
    /// `P(t) ∝ max(L_t / L_t⁽⁰⁾, 0.01)`: tasks whose loss fell least are drawn most.
    LossDriven,
}

impl Schedule {
    /// True if a step trains one task only.
    pub fn is_one_task(&self) -> bool {
        !matches!(self, Schedule::All)
    }

    /// Errors unless the schedule fits `tasks` tasks and the method called `method`.
    ///
    /// # Errors
    /// [`MtlError::Config`] if fixed proportions are not one positive finite number per task,
    /// or a one-task schedule is asked of a method other than equal weighting (`ew`).
    pub fn check(&self, tasks: usize, method: &str) -> Result<(), MtlError> {
        self.check_proportions(tasks)?;
        if self.is_one_task() && method != "ew" {
            return Err(MtlError::Config(format!(
                "a one-task schedule trains the drawn task's loss alone, which leaves method `{method}` nothing to weigh (use method ew, or schedule all)"
            )));
        }
        Ok(())
    }

    /// Errors unless fixed proportions are one positive finite number per task.
    fn check_proportions(&self, tasks: usize) -> Result<(), MtlError> {
        if let Schedule::Sampled(Proportions::Fixed(p)) = self {
            if p.len() != tasks {
                return Err(MtlError::Config(format!(
                    "the schedule's proportions give {} values for {tasks} tasks",
                    p.len()
                )));
            }
            if let Some(v) = p.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
                return Err(MtlError::Config(format!(
                    "the schedule's proportions must be positive numbers, got {v}"
                )));
            }
        }
        Ok(())
    }
}

/// Draws the tasks of each step, keeping the losses the loss-driven rule needs.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskScheduler {
    schedule: Schedule,
    tasks: usize,
    first: Vec<Option<f64>>,
    last: Vec<Option<f64>>,
}

impl TaskScheduler {
    /// A scheduler for `tasks` tasks.
    ///
    /// # Errors
    /// [`MtlError::Config`] for no task, or fixed proportions that are not one positive finite
    /// number per task.
    pub fn new(schedule: Schedule, tasks: usize) -> Result<Self, MtlError> {
        if tasks == 0 {
            return Err(MtlError::Config("a schedule needs at least one task".into()));
        }
        schedule.check_proportions(tasks)?;
        Ok(TaskScheduler { schedule, tasks, first: vec![None; tasks], last: vec![None; tasks] })
    }

    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The probability of each task at the next draw of a sampled schedule (`None` otherwise).
    pub fn probabilities(&self) -> Option<Vec<f64>> {
        let raw: Vec<f64> = match &self.schedule {
            Schedule::Sampled(Proportions::Fixed(p)) => p.clone(),
            Schedule::Sampled(Proportions::LossDriven) => (0..self.tasks)
                .map(|t| match (self.first[t], self.last[t]) {
                    (Some(first), Some(last)) if first > 0.0 => {
                        (last / first).max(LOSS_RATIO_FLOOR)
                    }
                    _ => 1.0,
                })
                .collect(),
            _ => return None,
        };
        let sum: f64 = raw.iter().sum();
        Some(raw.iter().map(|p| p / sum).collect())
    }

    /// The tasks step `counters.step` trains, in task order.
    pub fn draw(&self, counters: StepCounters) -> Vec<usize> {
        match &self.schedule {
            Schedule::All => (0..self.tasks).collect(),
            Schedule::RoundRobin => vec![(counters.step % self.tasks as u64) as usize],
            Schedule::Sampled(_) => {
                let p = self.probabilities().expect("a sampled schedule");
                let mut rng = ChaCha8Rng::seed_from_u64(
                    counters.seed ^ counters.step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5343_4844,
                );
                let u: f64 = rng.gen();
                let mut cumulative = 0.0;
                let t = p.iter().position(|&pt| {
                    cumulative += pt;
                    u < cumulative
                });
                vec![t.unwrap_or(self.tasks - 1)]
            }
        }
    }

    /// Each task's first and last observed loss (what the loss-driven rule reads), for
    /// checkpoints.
    pub fn losses_seen(&self) -> (&[Option<f64>], &[Option<f64>]) {
        (&self.first, &self.last)
    }

    /// Restores the losses of [`TaskScheduler::losses_seen`].
    ///
    /// # Errors
    /// [`MtlError::Config`] unless both hold one entry per task.
    pub fn set_losses_seen(
        &mut self,
        first: Vec<Option<f64>>,
        last: Vec<Option<f64>>,
    ) -> Result<(), MtlError> {
        if first.len() != self.tasks || last.len() != self.tasks {
            return Err(MtlError::Config(format!(
                "the saved losses of the schedule are for {} tasks, not {}",
                first.len(),
                self.tasks
            )));
        }
        (self.first, self.last) = (first, last);
        Ok(())
    }

    /// Records the losses of the tasks a step trained.
    pub fn observe(&mut self, report: &StepReport) {
        for &t in &report.trained {
            let loss = report.losses[t];
            if loss.is_finite() && t < self.tasks {
                self.first[t].get_or_insert(loss);
                self.last[t] = Some(loss);
            }
        }
    }
}

/// The steps of a run: a schedule's draw, the step on the drawn tasks, and an optimizer update
/// every `accumulate` steps on the mean of their gradients.
#[derive(Debug)]
pub struct StepPlan {
    scheduler: TaskScheduler,
    accumulate: usize,
    pending: GradAccumulator,
}

impl StepPlan {
    /// A plan for a model of `tasks` tasks trained with `weighting`.
    ///
    /// # Errors
    /// As [`Schedule::check`], and [`MtlError::Config`] if `accumulate` is 0.
    pub fn new(
        schedule: Schedule,
        accumulate: usize,
        tasks: usize,
        weighting: &(impl Weighting + ?Sized),
    ) -> Result<Self, MtlError> {
        if accumulate == 0 {
            return Err(MtlError::Config(
                "gradient accumulation needs at least 1 step per update".into(),
            ));
        }
        schedule.check(tasks, weighting.name())?;
        let scheduler = TaskScheduler::new(schedule, tasks)?;
        Ok(StepPlan { scheduler, accumulate, pending: GradAccumulator::new() })
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &TaskScheduler {
        &self.scheduler
    }

    /// The scheduler, to restore its state.
    pub fn scheduler_mut(&mut self) -> &mut TaskScheduler {
        &mut self.scheduler
    }

    /// Steps per optimizer update.
    pub fn accumulate(&self) -> usize {
        self.accumulate
    }

    /// Steps taken since the last update.
    pub fn pending(&self) -> usize {
        self.pending.count()
    }

    /// One step: draws the tasks, computes the step's gradients on `batches` restricted to them
    /// ([`TrainStep::gradients`]), and, if this completes a group of `accumulate` steps, updates
    /// `params` with their mean and calls the model's [`MultiTaskModel::after_step`].
    ///
    /// # Errors
    /// As [`TrainStep::gradients`]; the steps accumulated since the last update are dropped and
    /// `params` keeps its value from that update.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        step: &TrainStep,
        model: &(impl MultiTaskModel + ?Sized),
        params: &mut Params,
        optimizer: &mut (impl Optimizer + ?Sized),
        weighting: &mut (impl Weighting + ?Sized),
        batches: TaskBatches<'_>,
        counters: StepCounters,
    ) -> Result<StepReport, MtlError> {
        let batches = batches.only(&self.scheduler.draw(counters));
        let (grads, report) =
            match step.gradients(model, params, weighting, batches.clone(), counters) {
                Ok(done) => done,
                Err(e) => {
                    self.pending.reset();
                    return Err(e);
                }
            };
        self.scheduler.observe(&report);
        if self.accumulate == 1 {
            optimizer.step(params, &grads);
            model.after_step(params, counters.step);
        } else {
            self.pending.add(&grads);
            if self.pending.count() < self.accumulate {
                return Ok(report);
            }
            self.update(model, params, optimizer, counters.step);
        }
        // A weighting that learns from the losses after an update sees them on the batches of
        // the step that completed the group.
        after_update(model, params, weighting, &batches, counters)?;
        Ok(report)
    }

    /// Updates `params` with the mean of the steps accumulated since the last update, if any
    /// (the end of an epoch closes its last, shorter group); returns whether it did. A
    /// weighting's [`after_update`] is not called for this update (its batches are gone): FAMO
    /// skips one logit update per epoch when the epoch's steps are not a multiple of the
    /// accumulation.
    pub fn finish(
        &mut self,
        model: &(impl MultiTaskModel + ?Sized),
        params: &mut Params,
        optimizer: &mut (impl Optimizer + ?Sized),
        last_step: u64,
    ) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        self.update(model, params, optimizer, last_step);
        true
    }

    fn update(
        &mut self,
        model: &(impl MultiTaskModel + ?Sized),
        params: &mut Params,
        optimizer: &mut (impl Optimizer + ?Sized),
        step: u64,
    ) {
        let mean = self.pending.take_mean().expect("a step was accumulated");
        optimizer.step(params, &mean);
        model.after_step(params, step);
    }
}
