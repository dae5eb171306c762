//! One multi-task training step: forward, per-task losses, exactly the per-task work the
//! weighting asks for, the weighted update of every parameter, and the optimizer.
//!
//! | [`Requirement`] | per-task work | update |
//! | --- | --- | --- |
//! | `Losses` (EW) | none | one backward of `Σ_t w_t L_t` |
//! | `SharedGradients` (MGDA) | a [`TaskSweep`] (`Param`: T backward passes, `Batched`: one sweep with T cotangents) | `Σ_t α_t ∇L_t` on every parameter, taken from the same sweep: no further backward |
//! | `RepresentationGradients` (MGDA-UB) | [`representation_gradients`] at `Z` (the heads only) | one backward of `Σ_t α_t L_t` |
//! | `LayerGradientNorms` (GradNorm) | [`layer_gradient_norms`] on one shared weight `W` | one backward of `Σ_t w_t L_t` |
//!
//! With [`StepOptions::diagnostics`] on, every step also runs the task sweep, reports the
//! per-task gradient norms and pairwise cosines on the shared parameters, and takes the update
//! from the sweep (so the cheap methods pay for the sweep instead of their own backward pass).
//! Methods that compute shared gradients anyway report them every step.

use tapestry_autodiff::{Tape, Tensor, Var};
use tapestry_data::Batch;
use tapestry_nn::optim::Optimizer;
use tapestry_nn::{Ctx, ParamGrads, ParamId, Params};

use crate::error::MtlError;
use crate::gradnorm::GradNormStep;
use crate::min_norm::MinNormSolution;
use crate::model::{input_tensor, task_loss, MultiTaskModel};
use crate::task_grads::{
    cosines_from_gram, layer_gradient_norms, representation_gradients, GradMode, TaskGradients,
    TaskSweep,
};
use crate::weighting::{Requirement, StepInput, Weighting};

/// How the step computes what the weighting needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepOptions {
    /// How per-task gradients on the shared parameters are computed, when they are.
    pub grad_mode: GradMode,
    /// Compute per-task gradient norms and cosines on the shared parameters every step, even
    /// when the weighting does not need them (costs a task sweep for EW, MGDA-UB, GradNorm).
    pub diagnostics: bool,
    /// The parameter whose weight GradNorm watches, by name; `None` is the model's default
    /// (the last shared weight, [`MultiTaskModel::default_gradnorm_param`]).
    pub gradnorm_param: Option<String>,
}

/// Norms and pairwise cosines of the T per-task gradients in one space.
#[derive(Debug, Clone, PartialEq)]
pub struct GradientStats {
    /// `‖g_t‖` for each task.
    pub norms: Vec<f64>,
    /// `cos(g_s, g_t)`, `T × T` row-major (0 where a gradient is zero).
    pub cosines: Vec<f64>,
}

impl GradientStats {
    /// The statistics of a `T × P` gradient matrix.
    pub fn of(grads: &TaskGradients) -> Self {
        let t = grads.tasks();
        let gram = grads.gram();
        GradientStats {
            norms: (0..t).map(|i| gram[i * t + i].sqrt()).collect(),
            cosines: cosines_from_gram(&gram, t),
        }
    }

    /// `cos(g_s, g_t)`.
    ///
    /// # Panics
    /// If `s` or `t` is not a task index.
    pub fn cosine(&self, s: usize, t: usize) -> f64 {
        let n = self.norms.len();
        assert!(s < n && t < n, "task index out of range");
        self.cosines[s * n + t]
    }
}

/// Which step of which epoch, and the run's seed (dropout masks are drawn from both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepCounters {
    /// The optimisation step, from 0.
    pub step: u64,
    /// The epoch, from 0.
    pub epoch: u64,
    /// The run's seed.
    pub seed: u64,
}

impl StepCounters {
    /// The seed of this step's dropout masks: a mix of the run's seed and the step.
    pub fn dropout_seed(&self) -> u64 {
        let mut z = self.seed ^ self.step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Everything one step computed.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// The optimisation step, from 0.
    pub step: u64,
    /// The epoch, from 0.
    pub epoch: u64,
    /// The number of samples in the batch.
    pub batch_size: usize,
    /// `L_t`, each task's loss on the batch (before the update).
    pub losses: Vec<f64>,
    /// The task weights of this step's update (`w_t` or `α_t`).
    pub weights: Vec<f64>,
    /// Per-task gradient norms and cosines on the shared parameters, when computed (MGDA, or
    /// any method with diagnostics on).
    pub shared: Option<GradientStats>,
    /// Per-task gradient norms and cosines at the shared representation `Z` (MGDA-UB).
    pub representation: Option<GradientStats>,
    /// `‖∇_W L_t‖` on GradNorm's layer (GradNorm).
    pub layer_grad_norms: Option<Vec<f64>>,
    /// The min-norm solve (MGDA, MGDA-UB).
    pub min_norm: Option<MinNormSolution>,
    /// GradNorm's update of its weights.
    pub gradnorm: Option<GradNormStep>,
    /// Each task's output on the batch (off the tape), for training metrics.
    pub outputs: Vec<Tensor>,
}

/// A training step for one model and one weighting, with its parameter choices resolved.
#[derive(Debug, Clone)]
pub struct TrainStep {
    options: StepOptions,
    shared: Vec<ParamId>,
    gradnorm_param: Option<ParamId>,
}

impl TrainStep {
    /// Resolves the shared parameters and, for GradNorm, its layer.
    ///
    /// Errors with [`MtlError::Param`] if [`StepOptions::gradnorm_param`] names no shared
    /// parameter, and with [`MtlError::Model`] if the model shares no parameter.
    pub fn new(
        model: &(impl MultiTaskModel + ?Sized),
        params: &Params,
        options: StepOptions,
    ) -> Result<Self, MtlError> {
        let shared = model.shared_params();
        if shared.is_empty() {
            return Err(MtlError::Model("the model shares no parameter".into()));
        }
        let gradnorm_param = match &options.gradnorm_param {
            Some(name) => {
                let id = params.id(name).ok_or_else(|| MtlError::Param {
                    name: name.clone(),
                    reason: "no such parameter (GradNorm's layer)",
                })?;
                if !shared.contains(&id) {
                    return Err(MtlError::Param {
                        name: name.clone(),
                        reason: "GradNorm's layer must be a shared parameter",
                    });
                }
                Some(id)
            }
            None => model.default_gradnorm_param(params),
        };
        Ok(TrainStep { options, shared, gradnorm_param })
    }

    /// The options.
    pub fn options(&self) -> &StepOptions {
        &self.options
    }

    /// The shared parameters, in the column order of the per-task gradient matrix.
    pub fn shared_params(&self) -> &[ParamId] {
        &self.shared
    }

    /// The parameter GradNorm watches.
    pub fn gradnorm_param(&self) -> Option<ParamId> {
        self.gradnorm_param
    }

    /// Runs one step on `batch` and updates `params` with `optimizer`.
    ///
    /// Errors: [`MtlError::NonFiniteLoss`] (naming the task and the step) before any update if
    /// a loss is NaN or infinite, [`MtlError::NonFiniteGradient`] if the update is, and the
    /// model's, targets' and weighting's errors. `params` is unchanged on error.
    pub fn run(
        &self,
        model: &(impl MultiTaskModel + ?Sized),
        params: &mut Params,
        optimizer: &mut (impl Optimizer + ?Sized),
        weighting: &mut (impl Weighting + ?Sized),
        batch: &Batch,
        counters: StepCounters,
    ) -> Result<StepReport, MtlError> {
        let tasks = model.tasks();
        if batch.targets.len() != tasks.len() {
            return Err(MtlError::TaskCount {
                dataset: "batch".into(),
                expected: tasks.len(),
                found: batch.targets.len(),
            });
        }
        let tape = Tape::new();
        let bound = params.bind(&tape);
        let x = tape.constant(input_tensor(&batch.inputs));
        let out = {
            let mut ctx = Ctx::train(&bound)
                .with_buffers(params.buffers_mut())
                .with_seed(counters.dropout_seed());
            model.forward(x, &mut ctx)
        };
        let losses = (tasks.iter().zip(&out.outputs).zip(&batch.targets))
            .map(|((spec, &o), targets)| task_loss(spec, o, targets))
            .collect::<Result<Vec<Var<'_>>, _>>()?;
        let values: Vec<f64> = losses.iter().map(|l| l.value().item() as f64).collect();
        if let Some((t, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(MtlError::NonFiniteLoss {
                task: tasks[t].name.clone(),
                step: counters.step,
                epoch: counters.epoch,
                value,
            });
        }

        let requirement = weighting.requirement();
        let sweep = (requirement == Requirement::SharedGradients || self.options.diagnostics)
            .then(|| TaskSweep::run(&tape, &losses, self.options.grad_mode));
        let shared_grads = sweep.as_ref().map(|s| s.matrix(&bound.vars(&self.shared)));
        let representation = (requirement == Requirement::RepresentationGradients)
            .then(|| representation_gradients(&tape, &losses, out.z));
        let layer_grad_norms = match (requirement, self.gradnorm_param) {
            (Requirement::LayerGradientNorms, Some(id)) => {
                Some(layer_gradient_norms(&tape, &losses, bound.var(id)))
            }
            _ => None,
        };
        let answer = weighting.weights(&StepInput {
            step: counters.step,
            epoch: counters.epoch,
            losses: &values,
            shared: shared_grads.as_ref(),
            representation: representation.as_ref(),
            layer_grad_norms: layer_grad_norms.as_deref(),
        })?;
        if answer.weights.len() != tasks.len() {
            return Err(MtlError::Config(format!(
                "weighting `{}` gave {} weights for {} tasks",
                weighting.name(),
                answer.weights.len(),
                tasks.len()
            )));
        }
        let w32: Vec<f32> = answer.weights.iter().map(|&w| w as f32).collect();

        let mut grads = match &sweep {
            Some(sweep) => {
                let mut grads = ParamGrads::zeros(params);
                for id in params.ids() {
                    grads.set(id, sweep.combined(&w32, bound.var(id))).expect("same shape");
                }
                grads
            }
            None => {
                let total = (losses.iter().zip(&w32))
                    .map(|(&l, &w)| l.mul_scalar(w))
                    .reduce(|a, b| a.add(b))
                    .expect("at least one task");
                bound.grads(&tape.backward(total))
            }
        };
        if let Some(direction) = &answer.direction {
            if sweep.is_none() {
                return Err(MtlError::Config(format!(
                    "weighting `{}` returned a direction but did not ask for shared gradients",
                    weighting.name()
                )));
            }
            grads
                .set_flat(&self.shared, direction)
                .map_err(|e| MtlError::Config(format!("direction: {e}")))?;
        }
        if let Some((id, _)) = grads.iter().find(|(_, g)| !g.all_finite()) {
            return Err(MtlError::NonFiniteGradient {
                param: params.name(id).to_string(),
                step: counters.step,
            });
        }
        let outputs = out.outputs.iter().map(|o| o.value()).collect();
        // The tape's leaves share storage with the parameters: release the step's tape first so
        // the optimizer updates them in place instead of copying every parameter.
        drop(sweep);
        drop(bound);
        drop(tape);
        optimizer.step(params, &grads);
        Ok(StepReport {
            step: counters.step,
            epoch: counters.epoch,
            batch_size: batch.len(),
            losses: values,
            weights: answer.weights,
            shared: shared_grads.as_ref().map(GradientStats::of),
            representation: representation.as_ref().map(GradientStats::of),
            layer_grad_norms,
            min_norm: answer.min_norm,
            gradnorm: answer.gradnorm,
            outputs,
        })
    }
}
