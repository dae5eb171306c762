//! Optimizers, learning-rate schedules, gradient clipping and accumulation.
//!
//! An [`Optimizer`] updates a [`Params`] store in place from a [`ParamGrads`] of the same
//! store, with PyTorch's update rules (same order of operations, scalars computed in f64 and
//! applied in f32). Its state (step count, moments) is an [`OptimizerState`], which checkpoints
//! save and restore by parameter name.
//!
//! A typical step:
//!
//! ```
//! use tapestry_autodiff::{Tape, Tensor};
//! use tapestry_nn::optim::{clip_grad_norm, Adam, LrSchedule, Optimizer, Warmup, Cosine};
//! use tapestry_nn::Params;
//!
//! let mut params = Params::new();
//! let w = params.add("w", Tensor::from(vec![1.0, -2.0])).unwrap();
//! let mut adam = Adam::new(1e-2);
//! let schedule = Warmup::new(10, 0.1, Cosine::new(1e-2, 90, 0.0));
//! for _ in 0..3 {
//!     let tape = Tape::new();
//!     let bound = params.bind(&tape);
//!     let loss = (bound.var(w) * bound.var(w)).sum_all();
//!     let mut grads = bound.grads(&tape.backward(loss));
//!     clip_grad_norm(&mut grads, 1.0);
//!     adam.set_lr(schedule.lr(adam.steps()));
//!     adam.step(&mut params, &grads);
//! }
//! assert_eq!(adam.steps(), 3);
//! ```

mod accumulate;
mod adam;
mod clip;
mod schedule;
mod sgd;

use std::collections::BTreeMap;

use tapestry_autodiff::Tensor;

pub use accumulate::GradAccumulator;
pub use adam::{Adam, AdamConfig, AdamW};
pub use clip::{clip_grad_norm, clip_grad_value};
pub use schedule::{Constant, Cosine, LrSchedule, Sequence, StepDecay, Warmup};
pub use sgd::{Sgd, SgdConfig};

use crate::error::NnError;
use crate::grads::ParamGrads;
use crate::params::{ParamId, Params};

/// Updates parameters from their gradients. Object safe: a trainer can hold a
/// `Box<dyn Optimizer>`.
pub trait Optimizer: std::fmt::Debug + Send {
    /// A short name of the algorithm (`"sgd"`, `"adam"`, `"adamw"`), saved in checkpoints.
    fn kind(&self) -> &'static str;

    /// Applies one update to every parameter of `params`.
    ///
    /// # Panics
    /// If `grads` does not cover exactly the parameters of `params` with their shapes, or the
    /// optimizer was used with another store before.
    fn step(&mut self, params: &mut Params, grads: &ParamGrads);

    /// The current learning rate.
    fn lr(&self) -> f64;

    /// Sets the learning rate (a schedule calls this before each step).
    fn set_lr(&mut self, lr: f64);

    /// The number of steps taken.
    fn steps(&self) -> u64;

    /// The state to save: step count, learning rate, hyperparameters and per-parameter slots.
    fn state(&self) -> OptimizerState;

    /// Restores a saved state (from [`Optimizer::state`] of the same kind) for `params`:
    /// step count, learning rate, hyperparameters and slots.
    ///
    /// Errors if the kind differs or a slot does not fit its parameter; nothing is changed then.
    fn load_state(&mut self, params: &Params, state: &OptimizerState) -> Result<(), NnError>;
}

/// An optimizer's persistent state.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    /// [`Optimizer::kind`].
    pub kind: String,
    /// The number of steps taken.
    pub step: u64,
    /// The learning rate at the time of saving.
    pub lr: f64,
    /// Hyperparameters other than the learning rate; restored on load, as PyTorch's
    /// `load_state_dict` restores its parameter groups.
    pub hyper: BTreeMap<String, f64>,
    /// `(slot name, parameter, tensor)`, for example `("exp_avg", id, m)`.
    pub slots: Vec<(String, ParamId, Tensor)>,
}

/// Checks that `grads` fits `params`.
fn check_fit(params: &Params, grads: &ParamGrads) {
    assert_eq!(params.len(), grads.len(), "gradients cover another number of parameters");
    for (id, name, value) in params.iter() {
        assert_eq!(
            value.shape(),
            grads.get(id).shape(),
            "gradient of `{name}` has the wrong shape"
        );
    }
}

/// Checks a saved state against the optimizer kind and the parameters, and collects the slots
/// by name and parameter.
fn check_state<'s>(
    kind: &str,
    slot_names: &[&str],
    params: &Params,
    state: &'s OptimizerState,
) -> Result<BTreeMap<(&'s str, ParamId), &'s Tensor>, NnError> {
    if state.kind != kind {
        return Err(NnError::OptimizerState(format!(
            "saved by `{}`, loading into `{kind}`",
            state.kind
        )));
    }
    let mut slots = BTreeMap::new();
    for (slot, id, tensor) in &state.slots {
        if !slot_names.contains(&slot.as_str()) {
            return Err(NnError::OptimizerState(format!("unknown slot `{slot}` for `{kind}`")));
        }
        if id.index() >= params.len() || params.shape(*id) != tensor.shape() {
            return Err(NnError::OptimizerState(format!(
                "slot `{slot}` of parameter {} does not fit",
                id.index()
            )));
        }
        slots.insert((slot.as_str(), *id), tensor);
    }
    Ok(slots)
}

/// Hyperparameter `key` of a saved state.
fn hyper(state: &OptimizerState, key: &str) -> Result<f64, NnError> {
    state
        .hyper
        .get(key)
        .copied()
        .ok_or_else(|| NnError::OptimizerState(format!("hyperparameter `{key}` is missing")))
}
