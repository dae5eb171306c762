//! Inter-task affinity (Fifty et al., 2021, "Efficiently Identifying Task Groupings via
//! Inter-Task Affinities", TAG): how much a step on one task's loss helps or hurts each other
//! task.
//!
//! At a step with shared parameters `θ_s`, task parameters `θ_j` and batch `x`, take for each
//! task `i` a lookahead SGD step on the shared parameters alone,
//! `θ_s' = θ_s − η ∇_{θ_s} L_i(x)`, and measure every task's loss there on the same batch:
//!
//! ```text
//! Z_{i→j} = 1 − L_j(x; θ_s', θ_j) / L_j(x; θ_s, θ_j)
//! ```
//!
//! `Z_{i→j} > 0` means that the step for task i lowered task j's loss (the tasks help each
//! other), `< 0` that it raised it. The diagonal `Z_{i→i}` is the step's own progress, positive
//! for a small enough η. Averaged over the steps where it is measured, the `T × T` matrix is
//! what TAG groups tasks by.
//!
//! Cost: the per-task gradients on the shared parameters ([`TaskGradients::on_params`]: free
//! when the step computes them anyway, otherwise one batched sweep) and T forward passes, one
//! per lookahead, with no backward pass: each runs on constants and is dropped before the next.
//! The lookahead forward passes use the step's dropout seed (the same masks as the step's own
//! forward) and a copy of the buffers, so BatchNorm's running statistics are not touched.

use tapestry_autodiff::{Tape, Tensor, Var};
use tapestry_data::Batch;
use tapestry_nn::{Bound, Ctx, Params};

use crate::error::MtlError;
use crate::model::{input_tensor, task_loss, MultiTaskModel};
use crate::task_grads::TaskGradients;

/// When and with which step size the trainer measures task affinity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffinityOptions {
    /// Measure at every step whose index (from 0) is a multiple of this; 0 counts as 1.
    pub every: u64,
    /// The learning rate η of the lookahead SGD step.
    pub lr: f64,
}

impl AffinityOptions {
    /// True if affinity is measured at `step`.
    pub fn due(&self, step: u64) -> bool {
        step.is_multiple_of(self.every.max(1))
    }
}

/// The affinity `Z_{i→j}` of every task pair on one batch, `T × T` row-major (row `i` is the
/// task whose lookahead step is taken, column `j` the task measured); see the module docs.
///
/// `grads` are the per-task gradients on the shared parameters at `params`
/// ([`TaskGradients::on_params`]), `losses` each task's loss `L_j(θ)` on `batch` at `params`
/// (the step's own losses), `lr` the lookahead's η, and `dropout_seed` the seed of the step's
/// dropout masks. Where `L_j(θ)` is not positive the ratio has no meaning and `Z_{i→j}` is 0.
///
/// # Errors
/// [`MtlError::Config`] if `grads` or `losses` do not have one entry per task, a block of
/// `grads` is not keyed by a parameter, `lr` is not finite, or a lookahead loss is not finite
/// (η too large); the targets' errors of [`task_loss`].
pub fn task_affinity(
    model: &(impl MultiTaskModel + ?Sized),
    params: &Params,
    batch: &Batch,
    grads: &TaskGradients,
    losses: &[f64],
    lr: f64,
    dropout_seed: u64,
) -> Result<Vec<f64>, MtlError> {
    let tasks = model.tasks();
    let t = tasks.len();
    if grads.tasks() != t || losses.len() != t {
        return Err(MtlError::Config(format!(
            "task affinity: {} task gradients and {} losses for {t} tasks",
            grads.tasks(),
            losses.len()
        )));
    }
    if !lr.is_finite() {
        return Err(MtlError::Config(format!("task affinity: the learning rate is {lr}")));
    }
    let x = input_tensor(&batch.inputs);
    let mut buffers = params.buffers().clone();
    let mut affinity = vec![0.0; t * t];
    for i in 0..t {
        let tape = Tape::new();
        let mut vars: Vec<Var<'_>> =
            params.iter().map(|(_, _, v)| tape.constant(v.clone())).collect();
        for b in 0..grads.blocks() {
            let (Some(id), stacked) = grads.block(b) else {
                return Err(MtlError::Config(
                    "task affinity needs the gradients on the shared parameters, not at a representation".into(),
                ));
            };
            let n = stacked.len() / t;
            let g = &stacked.as_slice()[i * n..(i + 1) * n];
            let theta = params.get(id);
            let stepped: Vec<f32> =
                theta.as_slice().iter().zip(g).map(|(&p, &g)| p - lr as f32 * g).collect();
            vars[id.index()] =
                tape.constant(Tensor::from_vec(theta.shape(), stepped).expect("the shape"));
        }
        let bound = Bound::from_vars(params, vars).expect("one value per parameter");
        let out = {
            let mut ctx = Ctx::train(&bound).with_buffers(&mut buffers).with_seed(dropout_seed);
            model.forward(tape.constant(x.clone()), &mut ctx)
        };
        for (j, ((spec, &o), targets)) in
            tasks.iter().zip(&out.outputs).zip(&batch.targets).enumerate()
        {
            let after = f64::from(task_loss(spec, o, targets)?.value().item());
            if !after.is_finite() {
                return Err(MtlError::Config(format!(
                    "task affinity: after the lookahead step of task `{}` (η = {lr}) the loss of task `{}` is {after}; lower the affinity learning rate",
                    tasks[i].name, spec.name
                )));
            }
            let before = losses[j];
            affinity[i * t + j] =
                if before > 0.0 && before.is_finite() { 1.0 - after / before } else { 0.0 };
        }
    }
    Ok(affinity)
}
