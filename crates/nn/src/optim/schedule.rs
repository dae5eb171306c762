//! Learning-rate schedules: pure functions of the step count, so a resumed run needs no
//! schedule state (the optimizer's step count is in the checkpoint).
//!
//! Each follows its PyTorch scheduler in closed form, with `step` the number of optimizer steps
//! taken so far (PyTorch's `last_epoch` when `scheduler.step()` is called once per optimizer
//! step). They compose: [`Warmup`] ramps into any schedule, [`Sequence`] switches from one to
//! another at a milestone (as `SequentialLR`), and `Box<dyn LrSchedule>` is a schedule too.

use std::f64::consts::PI;
use std::fmt;

/// A learning rate for every step.
pub trait LrSchedule: fmt::Debug + Send + Sync {
    /// The learning rate to use for the update after `step` updates have been taken.
    fn lr(&self, step: u64) -> f64;
}

impl<S: LrSchedule + ?Sized> LrSchedule for Box<S> {
    fn lr(&self, step: u64) -> f64 {
        (**self).lr(step)
    }
}

/// The same rate at every step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Constant(pub f64);

impl LrSchedule for Constant {
    fn lr(&self, _step: u64) -> f64 {
        self.0
    }
}

/// `base · γ^⌊step / step_size⌋`, as `torch.optim.lr_scheduler.StepLR`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepDecay {
    /// The initial rate.
    pub base: f64,
    /// Steps between decays.
    pub step_size: u64,
    /// The factor applied at each decay.
    pub gamma: f64,
}

impl StepDecay {
    /// # Panics
    /// If `step_size` is 0.
    pub fn new(base: f64, step_size: u64, gamma: f64) -> Self {
        assert!(step_size > 0, "StepDecay needs step_size > 0");
        StepDecay { base, step_size, gamma }
    }
}

impl LrSchedule for StepDecay {
    fn lr(&self, step: u64) -> f64 {
        let decays = i32::try_from(step / self.step_size).unwrap_or(i32::MAX);
        self.base * self.gamma.powi(decays)
    }
}

/// Cosine annealing from `base` to `eta_min` over `t_max` steps:
/// `eta_min + (base − eta_min)(1 + cos(π·step / t_max)) / 2`, as
/// `torch.optim.lr_scheduler.CosineAnnealingLR` (which, like this, rises again after `t_max`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cosine {
    /// The initial rate.
    pub base: f64,
    /// The half period, in steps.
    pub t_max: u64,
    /// The smallest rate.
    pub eta_min: f64,
}

impl Cosine {
    /// # Panics
    /// If `t_max` is 0.
    pub fn new(base: f64, t_max: u64, eta_min: f64) -> Self {
        assert!(t_max > 0, "Cosine needs t_max > 0");
        Cosine { base, t_max, eta_min }
    }
}

impl LrSchedule for Cosine {
    fn lr(&self, step: u64) -> f64 {
        let phase = PI * step as f64 / self.t_max as f64;
        self.eta_min + (self.base - self.eta_min) * (1.0 + phase.cos()) / 2.0
    }
}

/// A linear warm-up into another schedule: for `step < steps` the rate is
/// `inner.lr(0) · (start_factor + (1 − start_factor) · step / steps)`, afterwards
/// `inner.lr(step − steps)`. This is PyTorch's `SequentialLR([LinearLR(start_factor,
/// total_iters=steps), inner], milestones=[steps])`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Warmup<S> {
    /// The length of the warm-up.
    pub steps: u64,
    /// The fraction of the rate at step 0.
    pub start_factor: f64,
    /// The schedule after the warm-up.
    pub inner: S,
}

impl<S: LrSchedule> Warmup<S> {
    /// A warm-up of `steps` steps starting at `start_factor` times the inner rate.
    pub fn new(steps: u64, start_factor: f64, inner: S) -> Self {
        Warmup { steps, start_factor, inner }
    }
}

impl<S: LrSchedule> LrSchedule for Warmup<S> {
    fn lr(&self, step: u64) -> f64 {
        if step < self.steps {
            let ramp = step as f64 / self.steps as f64;
            self.inner.lr(0) * (self.start_factor + (1.0 - self.start_factor) * ramp)
        } else {
            self.inner.lr(step - self.steps)
        }
    }
}

/// `first` until `milestone`, then `second` counted from the milestone (as `SequentialLR`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sequence<A, B> {
    /// The schedule before the milestone.
    pub first: A,
    /// The step at which `second` takes over.
    pub milestone: u64,
    /// The schedule from the milestone on, started at its own step 0.
    pub second: B,
}

impl<A: LrSchedule, B: LrSchedule> Sequence<A, B> {
    /// `first` until `milestone`, then `second`.
    pub fn new(first: A, milestone: u64, second: B) -> Self {
        Sequence { first, milestone, second }
    }
}

impl<A: LrSchedule, B: LrSchedule> LrSchedule for Sequence<A, B> {
    fn lr(&self, step: u64) -> f64 {
        if step < self.milestone {
            self.first.lr(step)
        } else {
            self.second.lr(step - self.milestone)
        }
    }
}
