//! One multi-task training step: forward, per-task losses, exactly the per-task work the
//! weighting asks for, the weighted update of every parameter, and the optimizer.
//!
//! | the weighting needs ([`Needs`](crate::weighting::Needs)) | per-task work | update |
//! | --- | --- | --- |
//! | the losses only (EW, UW) | none | one backward of `Σ_t w_t L_t` (or the weighting's own loss) |
//! | shared gradients (PCGrad) | [`TaskGradients::on_params`] on the shared parameters (`Param`: T backward passes, `Batched`: one sweep with T cotangents) | `Σ_t α_t ∇L_t` on the shared parameters from the same gradients (or the method's direction); a backward of `Σ_t α_t L_t` restricted to the other parameters (the heads only) |
//! | the shared gradients' Gram (MGDA, IMTL-G, Aligned-MTL) | [`gram_on_params`]: one sweep with T cotangents that reduces each parameter's block to `T × T` as it completes | one backward of `Σ_t α_t L_t` |
//! | representation gradients (MGDA-UB) | [`TaskGradients::at`] `Z` (the heads only) | one backward of `Σ_t α_t L_t` |
//! | layer gradient norms (GradNorm) | [`layer_gradient_norms`] on one shared weight `W` | one backward of `Σ_t w_t L_t` |
//!
//! A model's auxiliary loss (a regulariser) is added to the loss that is differentiated. A
//! direction a weighting returns replaces the shared parameters' gradient (or, at the
//! representation, is pushed back through the trunk as a vector-Jacobian product).
//!
//! With [`StepOptions::diagnostics`] on, every step also reports the norms and pairwise cosines
//! of the per-task gradients on the shared parameters (from their Gram, so a method that needs
//! only the Gram gets them for free).
//!
//! With [`StepOptions::affinity`] set, the step also measures the inter-task affinity
//! ([`task_affinity`]) at the steps it names, before the update.
//!
//! [`TrainStep::gradients`] does all of this on a tape that it owns and drops before it
//! returns, so the optimizer that runs next ([`TrainStep::run`]) updates the parameters in
//! place: there is no ordering rule to remember.

use tapestry_autodiff::{Tape, Tensor, Var};
use tapestry_nn::optim::Optimizer;
use tapestry_nn::{Bound, ParamGrads, ParamId, Params};

use crate::affinity::{task_affinity, AffinityOptions};
use crate::error::MtlError;
use crate::model::{task_loss, MultiTaskModel};
use crate::multi_input::TaskBatches;
use crate::task_grads::{
    gram_cosines, gram_norms, gram_on_params, layer_gradient_norms, GradMode, TaskGradients,
};
use crate::weighting::{Diagnostics, Direction, StepInput, Weighting};

/// How the step computes what the weighting needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepOptions {
    /// How per-task gradients on the shared parameters are computed, when they are.
    pub grad_mode: GradMode,
    /// Compute per-task gradient norms and cosines on the shared parameters every step, even
    /// when the weighting does not need them (costs a task sweep for EW, MGDA-UB, GradNorm).
    pub diagnostics: bool,
    /// The parameter whose weight GradNorm watches, by name; `None` is the model's default
    /// (the last shared weight, [`MultiTaskModel::default_gradnorm_param`]).
    pub gradnorm_param: Option<String>,
    /// Measure the inter-task affinity at the steps these options name (off when `None`).
    pub affinity: Option<AffinityOptions>,
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
    /// The statistics of per-task gradients.
    pub fn of(grads: &TaskGradients) -> Self {
        Self::from_gram(grads.gram(), grads.tasks())
    }

    /// The statistics of `t` gradients from their `T × T` Gram.
    ///
    /// # Panics
    /// If `gram` has fewer than `t²` entries.
    pub fn from_gram(gram: &[f64], t: usize) -> Self {
        GradientStats { norms: gram_norms(gram, t), cosines: gram_cosines(gram, t) }
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
    /// The number of samples the step read (summed over its batches, with one input per task).
    pub batch_size: usize,
    /// The tasks this step trained, in task order: every task, unless a schedule drew some
    /// ([`TaskBatches::only`]).
    pub trained: Vec<usize>,
    /// `L_t`, each task's loss on its batch (before the update); NaN for a task not trained.
    pub losses: Vec<f64>,
    /// The task weights of this step's update (`w_t` or `α_t`); 0 for a task not trained.
    pub weights: Vec<f64>,
    /// Per-task gradient norms and cosines on the shared parameters, when the Gram is computed
    /// (a method that reads it, such as MGDA, or any method with diagnostics on), over the
    /// trained tasks.
    pub shared: Option<GradientStats>,
    /// Per-task gradient norms and cosines at the shared representation `Z` (MGDA-UB).
    pub representation: Option<GradientStats>,
    /// `‖∇_W L_t‖` on GradNorm's layer (GradNorm).
    pub layer_grad_norms: Option<Vec<f64>>,
    /// The model's auxiliary loss (its regulariser), if it has one.
    pub aux_loss: Option<f64>,
    /// What the weighting reported (name → values).
    pub diagnostics: Diagnostics,
    /// The inter-task affinity `Z_{i→j}`, `T × T` row-major, at the steps where it is
    /// measured ([`StepOptions::affinity`]).
    pub affinity: Option<Vec<f64>>,
    /// Each task's output on its batch (off the tape), for training metrics; empty (`[0]`) for
    /// a task not trained.
    pub outputs: Vec<Tensor>,
}

impl StepReport {
    /// The weighting's diagnostic called `name` (for example `min_norm.kkt_residual`), if it
    /// reported one.
    pub fn diagnostic(&self, name: &str) -> Option<&[f64]> {
        crate::weighting::find_diagnostic(&self.diagnostics, name)
    }
}

/// A training step for one model and one weighting, with its parameter choices resolved.
#[derive(Debug, Clone)]
pub struct TrainStep {
    options: StepOptions,
    shared: Vec<ParamId>,
    gradnorm_param: Option<ParamId>,
}

impl TrainStep {
    /// Resolves the shared parameters and, for GradNorm, its layer, and checks that the
    /// weighting can run on the model.
    ///
    /// # Errors
    /// [`MtlError::Param`] if [`StepOptions::gradnorm_param`] names no shared parameter;
    /// [`MtlError::Config`] if the weighting needs shared gradients or a layer's gradient norms
    /// and the model shares no parameter, or needs gradients at the representation and the
    /// model has one per task.
    pub fn new(
        model: &(impl MultiTaskModel + ?Sized),
        params: &Params,
        weighting: &(impl Weighting + ?Sized),
        options: StepOptions,
    ) -> Result<Self, MtlError> {
        let shared = model.shared_params();
        let needs = weighting.needs();
        let name = weighting.name();
        if shared.is_empty() {
            if needs.shared_gradients || needs.shared_gram || needs.layer_gradient_norms {
                return Err(MtlError::Config(format!(
                    "method `{name}` needs per-task gradients on shared parameters, and this model shares none (choose a method that weighs losses, such as ew or uw)"
                )));
            }
            if options.diagnostics {
                return Err(MtlError::Config(
                    "gradient diagnostics need per-task gradients on shared parameters, and this model shares none (turn them off)".into(),
                ));
            }
            if options.affinity.is_some() {
                return Err(MtlError::Config(
                    "task affinity takes lookahead steps on shared parameters, and this model shares none (turn it off)".into(),
                ));
            }
        }
        if needs.representation_gradients && !model.shares_representation() {
            return Err(MtlError::Config(format!(
                "method `{name}` works at a representation shared by every task, and this model has one per task"
            )));
        }
        let gradnorm_param = match &options.gradnorm_param {
            Some(pname) => {
                let id = params.id(pname).ok_or_else(|| MtlError::Param {
                    name: pname.clone(),
                    reason: "no such parameter (GradNorm's layer)",
                })?;
                if !shared.contains(&id) {
                    return Err(MtlError::Param {
                        name: pname.clone(),
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

    /// Runs one step on `batches` and updates `params` with `optimizer`:
    /// [`TrainStep::gradients`], then the optimizer, then the model's
    /// [`MultiTaskModel::after_step`].
    ///
    /// A weighting that needs the losses after the update ([`Needs::losses_after_update`](crate::weighting::Needs::losses_after_update))
    /// gets them from one more forward pass on `batch` ([`losses_at`]).
    ///
    /// # Errors
    /// As [`TrainStep::gradients`], and then `params` is unchanged; an error of the forward pass
    /// after the update comes once `params` holds the update.
    pub fn run<'b>(
        &self,
        model: &(impl MultiTaskModel + ?Sized),
        params: &mut Params,
        optimizer: &mut (impl Optimizer + ?Sized),
        weighting: &mut (impl Weighting + ?Sized),
        batches: impl Into<TaskBatches<'b>>,
        counters: StepCounters,
    ) -> Result<StepReport, MtlError> {
        let batches = batches.into();
        let (grads, report) =
            self.gradients(model, params, weighting, batches.clone(), counters)?;
        optimizer.step(params, &grads);
        model.after_step(params, counters.step);
        after_update(model, params, weighting, &batches, counters)?;
        Ok(report)
    }

    /// Everything of one step but the optimizer: the forward pass, the per-task work the
    /// weighting needs, and the gradient of every parameter. The step's tape lives and dies
    /// inside this call, so the parameters can be updated in place afterwards.
    ///
    /// `batches` is one [`Batch`](tapestry_data::Batch) every task reads (`&batch` converts),
    /// or a [`TaskBatches`] with a batch per task and the tasks to train: the model runs once
    /// per distinct batch, and the weighting sees the trained tasks' losses and gradients.
    ///
    /// # Errors
    /// [`MtlError::NonFiniteLoss`] (naming the task and the step) if a loss is NaN or infinite,
    /// [`MtlError::NonFiniteGradient`] if a gradient is, [`MtlError::NonFiniteTaskGradient`] if
    /// a task's gradient norm on GradNorm's layer is, and the model's, targets' and
    /// weighting's errors. Only BatchNorm's running statistics in `params` change.
    pub fn gradients<'b>(
        &self,
        model: &(impl MultiTaskModel + ?Sized),
        params: &mut Params,
        weighting: &mut (impl Weighting + ?Sized),
        batches: impl Into<TaskBatches<'b>>,
        counters: StepCounters,
    ) -> Result<(ParamGrads, StepReport), MtlError> {
        let batches = batches.into();
        let tasks = model.tasks();
        batches.check(tasks.len())?;
        let trained = batches.trained();
        let tape = Tape::new();
        let bound = params.bind(&tape);
        let out =
            batches.forward(model, &tape, &bound, params.buffers_mut(), counters.dropout_seed());
        let losses = (trained.iter().zip(&out.outputs))
            .map(|(&t, &o)| task_loss(&tasks[t], o, batches.targets(t).expect("checked")))
            .collect::<Result<Vec<Var<'_>>, _>>()?;
        let values: Vec<f64> = losses.iter().map(|l| l.value().item() as f64).collect();
        if let Some((t, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(MtlError::NonFiniteLoss {
                task: tasks[trained[t]].name.clone(),
                step: counters.step,
                epoch: counters.epoch,
                value,
            });
        }

        let needs = weighting.needs();
        // The T x P gradients where a method reads them, or where the Gram (for the method or
        // the diagnostics) comes from them; in `GradMode::Gram` a method that reads only the
        // Gram, and the diagnostics, get it from a sweep that never holds them.
        let wants_gram = needs.shared_gram || self.options.diagnostics;
        let materialise =
            needs.shared_gradients || (wants_gram && self.options.grad_mode != GradMode::Gram);
        let shared_grads = materialise.then(|| {
            TaskGradients::on_params(&tape, &losses, &bound, &self.shared, self.options.grad_mode)
        });
        let shared_gram = match (&shared_grads, wants_gram) {
            (_, false) => None,
            (Some(g), true) => Some(g.gram().to_vec()),
            (None, true) => Some(gram_on_params(&tape, &losses, &bound, &self.shared)),
        };
        let representation = match (needs.representation_gradients, out.shared_representation()) {
            (true, Some(z)) => Some(TaskGradients::at(&tape, &losses, z)),
            (true, None) => {
                return Err(MtlError::Config(format!(
                    "method `{}` needs one representation shared by every task",
                    weighting.name()
                )))
            }
            (false, _) => None,
        };
        let layer_grad_norms = match (needs.layer_gradient_norms, self.gradnorm_param) {
            (true, Some(id)) => {
                let norms = layer_gradient_norms(&tape, &losses, bound.var(id));
                if let Some((t, &value)) = norms.iter().enumerate().find(|(_, n)| !n.is_finite()) {
                    return Err(MtlError::NonFiniteTaskGradient {
                        task: tasks[trained[t]].name.clone(),
                        param: params.name(id).to_string(),
                        step: counters.step,
                        epoch: counters.epoch,
                        value,
                    });
                }
                Some(norms)
            }
            _ => None,
        };
        let own_loss = weighting.combined_loss(&losses, &bound);
        let answer = weighting.weights(&StepInput {
            step: counters.step,
            epoch: counters.epoch,
            seed: counters.seed,
            losses: &values,
            shared: shared_grads.as_ref(),
            representation: representation.as_ref(),
            layer_grad_norms: layer_grad_norms.as_deref(),
            shared_gram: shared_gram.as_deref(),
        })?;
        if answer.weights.len() != trained.len() {
            return Err(MtlError::Config(format!(
                "weighting `{}` gave {} weights for {} tasks",
                weighting.name(),
                answer.weights.len(),
                trained.len()
            )));
        }
        // What the report reads off the tape, read now: an equal-weights step's backward is
        // the tape's last pass and releases the values it passes.
        let output_values: Vec<Tensor> = out.outputs.iter().map(|o| o.value()).collect();
        let aux_value = out.aux_loss.map(|a| f64::from(a.value().item()));
        let affinity_due = self.options.affinity.is_some_and(|a| a.due(counters.step));
        let w32: Vec<f32> = answer.weights.iter().map(|&w| w as f32).collect();
        let weighted = own_loss.unwrap_or_else(|| weighted_sum(&losses, &w32));
        let total = out.aux_loss.map_or(weighted, |aux| weighted + aux);

        let grads = match (&answer.direction, &shared_grads) {
            // The shared parameters' gradient from the per-task gradients already computed
            // (or the method's direction), the rest from a backward pass that skips the trunk.
            (direction, Some(g)) if own_loss.is_none() || direction.is_some() => {
                let shared_part = match direction {
                    None => g.combine(&w32),
                    Some(Direction::Combination(c)) => {
                        g.combine(&combination(c, losses.len(), weighting.name())?)
                    }
                    Some(Direction::Shared(d)) => {
                        if d.len() != g.dim() {
                            return Err(MtlError::Config(format!(
                                "weighting `{}` returned a direction of {} values for {} shared parameters",
                                weighting.name(),
                                d.len(),
                                g.dim()
                            )));
                        }
                        g.split(d)
                    }
                    Some(Direction::Representation(d)) => {
                        representation_direction(&tape, &out, &bound, &self.shared, d, weighting.name())?
                    }
                };
                self.assemble(params, &tape, &bound, total, out.aux_loss, shared_part)
            }
            (Some(Direction::Representation(d)), None) => {
                let shared_part =
                    representation_direction(&tape, &out, &bound, &self.shared, d, weighting.name())?;
                self.assemble(params, &tape, &bound, total, out.aux_loss, shared_part)
            }
            // Only the Gram was kept: one more backward pass, of `Σ_t c_t L_t`, restricted to
            // the shared parameters.
            (Some(Direction::Combination(c)), None) => {
                let c = combination(c, losses.len(), weighting.name())?;
                let vars = bound.vars(&self.shared);
                let g = tape.grad(weighted_sum(&losses, &c), &vars);
                let shared_part = vars.iter().map(|&v| g.wrt(v)).collect();
                self.assemble(params, &tape, &bound, total, out.aux_loss, shared_part)
            }
            (Some(Direction::Shared(_)), None) => {
                return Err(MtlError::Config(format!(
                    "weighting `{}` returned a direction on the shared parameters but did not ask for their gradients",
                    weighting.name()
                )))
            }
            // Task affinity reads the tape after the update's gradients; otherwise this pass is
            // the tape's last.
            _ if affinity_due => bound.grads(&tape.backward(total)),
            _ => bound.grads(&tape.backward_final(total)),
        };
        if let Some((id, _)) = grads.iter().find(|(_, g)| !g.all_finite()) {
            return Err(MtlError::NonFiniteGradient {
                param: params.name(id).to_string(),
                step: counters.step,
            });
        }
        let affinity = match self.options.affinity {
            Some(a) if affinity_due => {
                let batch = match batches.groups().as_slice() {
                    [(batch, trained_tasks)] if trained_tasks.len() == tasks.len() => *batch,
                    _ => {
                        return Err(MtlError::Config(
                            "task affinity scores every task on one batch, so it needs every task trained on a batch they all read".into(),
                        ))
                    }
                };
                let formed;
                let g = match &shared_grads {
                    Some(g) => g,
                    None => {
                        formed = TaskGradients::on_params(
                            &tape,
                            &losses,
                            &bound,
                            &self.shared,
                            self.options.grad_mode,
                        );
                        &formed
                    }
                };
                let seed = counters.dropout_seed();
                Some(task_affinity(model, params, batch, g, &values, a.lr, seed)?)
            }
            _ => None,
        };
        // Every task's entry, in task order (NaN, 0 and empty for a task not trained).
        let mut all_losses = vec![f64::NAN; tasks.len()];
        let mut all_weights = vec![0.0; tasks.len()];
        let mut outputs = vec![Tensor::zeros(&[0]); tasks.len()];
        for ((i, &t), value) in trained.iter().enumerate().zip(output_values) {
            (all_losses[t], all_weights[t]) = (values[i], answer.weights[i]);
            outputs[t] = value;
        }
        let report = StepReport {
            step: counters.step,
            epoch: counters.epoch,
            batch_size: batches.samples(),
            trained,
            losses: all_losses,
            weights: all_weights,
            shared: shared_gram.as_deref().map(|g| GradientStats::from_gram(g, losses.len())),
            representation: representation.as_ref().map(GradientStats::of),
            layer_grad_norms,
            aux_loss: aux_value,
            diagnostics: answer.diagnostics,
            affinity,
            outputs,
        };
        Ok((grads, report))
    }

    /// Every parameter's gradient: `shared_part` for the shared parameters (plus the auxiliary
    /// loss's gradient there), and for the others one backward of `total` restricted to them.
    fn assemble<'t>(
        &self,
        params: &Params,
        tape: &'t Tape,
        bound: &Bound<'t>,
        total: Var<'t>,
        aux: Option<Var<'t>>,
        shared_part: Vec<Tensor>,
    ) -> ParamGrads {
        let others: Vec<ParamId> =
            params.ids().into_iter().filter(|id| !self.shared.contains(id)).collect();
        let rest = tape.grad(total, &bound.vars(&others));
        let aux_shared = aux.map(|a| tape.grad(a, &bound.vars(&self.shared)));
        let mut grads = ParamGrads::zeros(params);
        for &id in &others {
            grads.set(id, rest.wrt(bound.var(id))).expect("same shape");
        }
        for (&id, mut g) in self.shared.iter().zip(shared_part) {
            if let Some(a) = &aux_shared {
                if let Some(extra) = a.get(bound.var(id)) {
                    g = Tensor::from_vec(
                        g.shape(),
                        g.as_slice().iter().zip(extra.as_slice()).map(|(x, y)| x + y).collect(),
                    )
                    .expect("same shape");
                }
            }
            grads.set(id, g).expect("same shape");
        }
        grads
    }
}

/// The losses of the tasks `batches` trains at the current parameters, from a forward pass
/// alone: in training mode with the step's dropout masks (`counters`), on a copy of the buffers
/// so that BatchNorm's running statistics move only once per step.
///
/// # Errors
/// [`MtlError::NonFiniteLoss`] if a loss is NaN or infinite, and the model's and targets' errors.
pub fn losses_at<'b>(
    model: &(impl MultiTaskModel + ?Sized),
    params: &Params,
    batches: impl Into<TaskBatches<'b>>,
    counters: StepCounters,
) -> Result<Vec<f64>, MtlError> {
    let batches = batches.into();
    let tasks = model.tasks();
    batches.check(tasks.len())?;
    let trained = batches.trained();
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let mut buffers = params.buffers().clone();
    let values = tape.no_grad(|| {
        let out = batches.forward(model, &tape, &bound, &mut buffers, counters.dropout_seed());
        (trained.iter().zip(&out.outputs))
            .map(|(&t, &o)| {
                task_loss(&tasks[t], o, batches.targets(t).expect("checked"))
                    .map(|l| f64::from(l.value().item()))
            })
            .collect::<Result<Vec<f64>, _>>()
    })?;
    if let Some((i, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(MtlError::NonFiniteLoss {
            task: tasks[trained[i]].name.clone(),
            step: counters.step,
            epoch: counters.epoch,
            value,
        });
    }
    Ok(values)
}

/// Hands `weighting` the losses after the optimizer's update when it asks for them
/// ([`Needs::losses_after_update`](crate::weighting::Needs::losses_after_update)): one more
/// forward pass on the step's batches. Every path that updates the parameters calls it once
/// per update ([`TrainStep::run`], and the trainer's accumulating plan).
///
/// # Errors
/// As [`losses_at`], and the weighting's.
pub fn after_update(
    model: &(impl MultiTaskModel + ?Sized),
    params: &Params,
    weighting: &mut (impl Weighting + ?Sized),
    batches: &TaskBatches<'_>,
    counters: StepCounters,
) -> Result<(), MtlError> {
    if weighting.needs().losses_after_update {
        let after = losses_at(model, params, batches.clone(), counters)?;
        weighting.after_update(&after)?;
    }
    Ok(())
}

/// `Σ_t w_t L_t` on the tape.
fn weighted_sum<'t>(losses: &[Var<'t>], w: &[f32]) -> Var<'t> {
    (losses.iter().zip(w)).map(|(&l, &w)| l * w).reduce(|a, b| a + b).expect("a task")
}

/// The coefficients of a [`Direction::Combination`] as the gradients' `f32`, checked: one per
/// trained task, each finite.
fn combination(c: &[f64], tasks: usize, method: &str) -> Result<Vec<f32>, MtlError> {
    if c.len() != tasks {
        return Err(MtlError::Config(format!(
            "weighting `{method}` returned {} coefficients for {tasks} tasks",
            c.len()
        )));
    }
    if let Some(v) = c.iter().find(|v| !v.is_finite()) {
        return Err(MtlError::Config(format!(
            "weighting `{method}` returned a coefficient of {v} for a task's gradient"
        )));
    }
    Ok(c.iter().map(|&v| v as f32).collect())
}

/// The shared parameters' gradient for a cotangent `d` at the shared representation: the
/// vector-Jacobian product of the trunk.
fn representation_direction<'t>(
    tape: &'t Tape,
    out: &crate::model::ModelOutput<'t>,
    bound: &Bound<'t>,
    shared: &[ParamId],
    d: &Tensor,
    method: &str,
) -> Result<Vec<Tensor>, MtlError> {
    let z = out.shared_representation().ok_or_else(|| {
        MtlError::Config(format!(
            "method `{method}` returned a direction at a representation the model does not share"
        ))
    })?;
    if d.shape() != z.shape() {
        return Err(MtlError::Config(format!(
            "method `{method}` returned a direction of shape {:?} at a representation of shape {:?}",
            d.shape(),
            z.shape()
        )));
    }
    let vars = bound.vars(shared);
    let g = tape.vjp(z, d, &vars);
    Ok(vars.iter().map(|&v| g.wrt(v)).collect())
}
