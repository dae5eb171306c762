//! Multi-task models: what the training step sees of a model, and the model families.
//!
//! A [`MultiTaskModel`] runs a forward pass that returns every task's output, its
//! representation(s) (one `Z` shared by every task, or one per task) and an optional auxiliary
//! loss (a regulariser the model adds to the training loss), and says which parameters are
//! shared. The families:
//!
//! | model | file | shared | representation | auxiliary loss |
//! | --- | --- | --- | --- | --- |
//! | [`HardSharing`] | `hard.rs` | the trunk | one `Z` | none |
//! | [`SoftSharing`] | `soft.rs` | nothing | one per task | `λ Σ_{i≠j} ‖θ_i − θ_j‖²` over chosen layers |
//! | [`CrossStitch`] | `cross_stitch.rs` | the stitch units | one per task | none |
//! | [`Mmoe`] | `mmoe.rs` | the experts | one per task (its gate's mixture) | none |
//! | [`Ple`] (CGC is one level) | `ple.rs` | the shared experts (and all of the lower levels) | one per task | none |
//! | [`Mtan`] | `mtan.rs` | the backbone | one per task (its attended features) | none |
//! | [`Regularized`] (any model) | `structure.rs` | as the inner model | as the inner model | trace norm, task relations |
//!
//! Parameters follow PyTorch-style names: the trunk's under `trunk.`, task `t`'s head under
//! `heads.<t>.`, a task tower under `towers.<t>.`, so a checkpoint reads `trunk.0.weight`,
//! `heads.left_digit.bias`, `towers.sum.0.weight`. Which parameters are shared comes from one
//! source, the modules' `params()`, and every builder checks it against the store: a parameter
//! registered under a module's prefix that the module does not list (a `Module` that forgot
//! `params()`) is an error, not a silent gap in the per-task gradients.
//!
//! ```
//! use rand::SeedableRng;
//! use tapestry_data::TaskSpec;
//! use tapestry_mtl::model::{HardSharing, MultiTaskModel};
//! use tapestry_nn::{Linear, Params, Relu, Sequential};
//!
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let mut params = Params::new();
//! let trunk = Sequential::new()
//!     .push(Linear::new(&mut params, "trunk.0", 16, 32, &mut rng).unwrap())
//!     .push(Relu);
//! let digit = Linear::new(&mut params, "heads.digit", 32, 10, &mut rng).unwrap();
//! let size = Linear::new(&mut params, "heads.size", 32, 1, &mut rng).unwrap();
//! let model = HardSharing::builder(trunk)
//!     .head(TaskSpec::classification("digit", 10), digit)
//!     .head(TaskSpec::regression("size", 1), size)
//!     .input_shape(&[16])
//!     .build(&params)
//!     .unwrap();
//! assert_eq!(model.tasks().len(), 2);
//! assert_eq!(model.shared_params().len(), 2); // trunk.0.weight, trunk.0.bias
//! ```

mod cross_stitch;
mod hard;
mod mmoe;
mod mtan;
mod ple;
mod soft;
mod structure;

pub use cross_stitch::{cross_stitch, CrossStitch, CrossStitchBuilder, STITCH_PREFIX};
pub use hard::{HardSharing, HardSharingBuilder};
pub use mmoe::{mix_experts, Mmoe, MmoeBuilder, EXPERTS_SHARED_PREFIX, GATES_PREFIX};
pub use mtan::{Mtan, MtanBuilder, ATTENTION_PREFIX};
pub use ple::{Ple, PleBuilder, EXPERTS_SPECIFIC_PREFIX, SHARED_GATES_PREFIX};
pub use soft::{soft_sharing_penalty, SoftSharing, SoftSharingBuilder};
pub use structure::{
    nuclear_norm, task_relation_omega, trace_norm_subgradient, Regularized, Regularizer,
};

use std::sync::Mutex;

use ndarray::ArrayD;
use tapestry_autodiff::{Reduction, Tape, Tensor, Var};
use tapestry_data::{LossKind, MultiTaskDataset, TaskKind, TaskSpec, TaskTargets, MISSING_LABEL};
use tapestry_nn::{Ctx, Module, ParamId, Params};

use crate::error::MtlError;

/// The prefix of the shared trunk's parameter names.
pub const TRUNK_PREFIX: &str = "trunk.";
/// The prefix of the heads' parameter names; task `t`'s head is under `heads.<t>.`.
pub const HEADS_PREFIX: &str = "heads.";

/// The prefix of task towers' parameter names; task `t`'s tower is under `towers.<t>.`.
pub const TOWERS_PREFIX: &str = "towers.";

/// What a forward pass of a multi-task model returns.
#[derive(Debug, Clone)]
pub struct ModelOutput<'t> {
    /// The representation(s) the heads read: one `Z` shared by every task (where MGDA-UB takes
    /// its gradients), or one per task, in task order.
    pub representations: Vec<Var<'t>>,
    /// Each task's output (logits, values, per-pixel maps), in task order.
    pub outputs: Vec<Var<'t>>,
    /// A regulariser the model adds to the training loss, if it has one.
    pub aux_loss: Option<Var<'t>>,
}

impl<'t> ModelOutput<'t> {
    /// The one representation every task shares, if there is exactly one.
    pub fn shared_representation(&self) -> Option<Var<'t>> {
        match self.representations[..] {
            [z] => Some(z),
            _ => None,
        }
    }
}

/// A multi-task model as the training step sees it.
pub trait MultiTaskModel: std::fmt::Debug {
    /// The tasks, in the order of the outputs.
    fn tasks(&self) -> &[TaskSpec];

    /// Runs the model on `x` (`[B, ...]`) on the tape of `ctx`, in the context's mode.
    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> ModelOutput<'t>;

    /// The parameters every task shares, in a fixed order: the `P` columns of the per-task
    /// gradient matrix. Empty for a model that shares none (soft sharing), which
    /// gradient-based weightings then refuse before training starts.
    fn shared_params(&self) -> Vec<ParamId>;

    /// True if the forward pass returns one representation shared by every task (so that
    /// methods working at the representation, like MGDA-UB, apply).
    fn shares_representation(&self) -> bool {
        true
    }

    /// The shape of one input sample (`[C, H, W]`, `[F]`), if the model fixes it; the trainer
    /// checks data sets against it.
    fn input_shape(&self) -> Option<&[usize]> {
        None
    }

    /// The shared layer whose weight GradNorm watches by default: the last shared parameter
    /// whose name ends in `weight` (the last one if none does).
    fn default_gradnorm_param(&self, params: &Params) -> Option<ParamId> {
        let shared = self.shared_params();
        shared
            .iter()
            .rev()
            .find(|&&id| params.name(id).ends_with("weight"))
            .or(shared.last())
            .copied()
    }

    /// Called after every optimisation step with the updated parameters (a task covariance
    /// learned in closed form updates here); the default does nothing.
    fn after_step(&self, _params: &Params, _step: u64) {}

    /// Name → values pairs the model wants logged (a learned task covariance, row-major).
    fn diagnostics(&self) -> Vec<(String, Vec<f64>)> {
        Vec::new()
    }

    /// What the model carries between steps outside its parameters (a task covariance learned
    /// in closed form), as name → values pairs, for checkpoints; empty by default.
    fn state(&self) -> Vec<(String, Vec<f64>)> {
        Vec::new()
    }

    /// Restores a state saved by [`MultiTaskModel::state`] of the same model.
    ///
    /// # Errors
    /// [`MtlError::Model`] if an entry is unknown or has the wrong length; the default accepts
    /// only an empty state.
    fn set_state(&self, state: &[(String, Vec<f64>)]) -> Result<(), MtlError> {
        match state.first() {
            None => Ok(()),
            Some((name, _)) => {
                Err(MtlError::Model(format!("the model keeps no state, but `{name}` was given")))
            }
        }
    }
}

/// A boxed model is a model (so architectures chosen at run time can be wrapped).
impl MultiTaskModel for Box<dyn MultiTaskModel> {
    fn tasks(&self) -> &[TaskSpec] {
        self.as_ref().tasks()
    }

    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> ModelOutput<'t> {
        self.as_ref().forward(x, ctx)
    }

    fn shared_params(&self) -> Vec<ParamId> {
        self.as_ref().shared_params()
    }

    fn shares_representation(&self) -> bool {
        self.as_ref().shares_representation()
    }

    fn input_shape(&self) -> Option<&[usize]> {
        self.as_ref().input_shape()
    }

    fn default_gradnorm_param(&self, params: &Params) -> Option<ParamId> {
        self.as_ref().default_gradnorm_param(params)
    }

    fn after_step(&self, params: &Params, step: u64) {
        self.as_ref().after_step(params, step)
    }

    fn diagnostics(&self) -> Vec<(String, Vec<f64>)> {
        self.as_ref().diagnostics()
    }

    fn state(&self) -> Vec<(String, Vec<f64>)> {
        self.as_ref().state()
    }

    fn set_state(&self, state: &[(String, Vec<f64>)]) -> Result<(), MtlError> {
        self.as_ref().set_state(state)
    }
}

/// Checks that the parameters `listed` by a module are exactly those of `params` named under
/// `prefix`: the one source of a model's parameter sets, checked against the store.
///
/// Errors with [`MtlError::Model`] naming the first parameter registered under `prefix` that the
/// module does not list, or listed but named elsewhere.
pub(crate) fn check_prefix(
    params: &Params,
    what: &str,
    prefix: &str,
    listed: &[ParamId],
) -> Result<(), MtlError> {
    for &id in listed {
        let name = params.name(id);
        if !name.starts_with(prefix) {
            return Err(MtlError::Model(format!(
                "parameter `{name}` of {what} is not named `{prefix}*`"
            )));
        }
    }
    for (id, name, _) in params.iter() {
        if name.starts_with(prefix) && !listed.contains(&id) {
            return Err(MtlError::Model(format!(
                "parameter `{name}` is registered under `{prefix}`, but {what} does not list it in `params()`"
            )));
        }
    }
    Ok(())
}

/// Errors unless the task names are distinct and there is at least one task.
pub(crate) fn check_tasks(tasks: &[TaskSpec]) -> Result<(), MtlError> {
    if tasks.is_empty() {
        return Err(MtlError::Model("a multi-task model needs at least one task".into()));
    }
    for (i, spec) in tasks.iter().enumerate() {
        if tasks[..i].iter().any(|s| s.name == spec.name) {
            return Err(MtlError::Model(format!("two tasks are named `{}`", spec.name)));
        }
    }
    Ok(())
}

/// The per-sample output shape of each of `stages`, run in turn (in eval mode) on a batch of
/// one zero sample of shape `input`: how a builder sizes the gates and attention layers it adds.
///
/// # Panics
/// If a stage does not fit the output of the one before (the autodiff engine's shape panic).
pub(crate) fn stage_shapes(
    params: &mut Params,
    input: &[usize],
    stages: &[&dyn Module],
) -> Vec<Vec<usize>> {
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let mut ctx = Ctx::eval(&bound).with_buffers(params.buffers_mut());
    let mut x = tape.constant(Tensor::zeros(&[&[1], input].concat()));
    stages
        .iter()
        .map(|stage| {
            x = stage.forward(x, &mut ctx);
            x.shape()[1..].to_vec()
        })
        .collect()
}

/// Name → values pairs a model measured on its last training batch (mean gate weights,
/// mean attention masks), kept for [`MultiTaskModel::diagnostics`].
#[derive(Debug, Default)]
pub(crate) struct LastBatchLog(Mutex<Vec<(String, Vec<f64>)>>);

impl LastBatchLog {
    /// Keeps `entries` if `ctx` is training (evaluation passes leave the log alone).
    pub(crate) fn record(
        &self,
        ctx: &Ctx<'_, '_>,
        entries: impl FnOnce() -> Vec<(String, Vec<f64>)>,
    ) {
        if ctx.is_training() {
            *self.0.lock().expect("the log") = entries();
        }
    }

    /// The entries of the last training batch (none before the first).
    pub(crate) fn entries(&self) -> Vec<(String, Vec<f64>)> {
        self.0.lock().expect("the log").clone()
    }
}

/// The mean over the batch (the first axis) of each column of a `[B, K]` value.
pub(crate) fn column_means(value: &Tensor) -> Vec<f64> {
    let k = value.shape()[1];
    let rows = value.len() / k.max(1);
    let mut sums = vec![0.0f64; k];
    for row in value.as_slice().chunks(k) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += f64::from(v);
        }
    }
    sums.iter().map(|s| s / rows.max(1) as f64).collect()
}

/// A batch's inputs as a tensor.
pub fn input_tensor(inputs: &ArrayD<f32>) -> Tensor {
    Tensor::from_array(inputs.as_standard_layout().into_owned())
}

/// Errors with [`MtlError::Output`] unless the output has `batch` rows and `ok` holds.
fn check_output(
    task: &TaskSpec,
    shape: &[usize],
    batch: usize,
    expected: &str,
    ok: bool,
) -> Result<(), MtlError> {
    if shape.first() != Some(&batch) || !ok {
        return Err(MtlError::Output {
            task: task.name.clone(),
            expected: expected.to_string(),
            found: shape.to_vec(),
        });
    }
    Ok(())
}

/// The loss of one task on one batch: cross-entropy for classes (labels equal to
/// [`MISSING_LABEL`], or to a per-pixel task's ignore label, count neither in the sum nor in the
/// mean), MSE or L1 over the unmasked values for regression.
///
/// Outputs: `[B, C]` (or `[B, C, 1, ..]`) logits for classification, `[B, dim]` for regression,
/// (or `[B, dim, 1, ..]`), `[B, C, H, W]` for per-pixel classes and `[B, H, W]` or `[B, 1, H, W]` for per-pixel values.
///
/// Errors with [`MtlError::Output`] if the output does not fit the task, and with
/// [`MtlError::Targets`] if the loss does not fit the targets (MSE on class labels, ...).
pub fn task_loss<'t>(
    task: &TaskSpec,
    output: Var<'t>,
    targets: &TaskTargets,
) -> Result<Var<'t>, MtlError> {
    let shape = output.shape();
    let batch = targets.len();
    let tape = output.tape();
    let mismatch = || MtlError::Targets {
        task: task.name.clone(),
        message: format!("loss {:?} does not fit targets of kind {:?}", task.loss, task.kind),
    };
    match (&task.kind, targets, task.loss) {
        (
            TaskKind::Classification { classes },
            TaskTargets::Classes { labels },
            LossKind::CrossEntropy,
        ) => {
            let ok = shape.len() >= 2 && shape[1] == *classes && shape[2..].iter().all(|&d| d == 1);
            check_output(task, &shape, batch, &format!("[{batch}, {classes}]"), ok)?;
            Ok(output.cross_entropy(labels, Some(MISSING_LABEL), Reduction::Mean))
        }
        (
            TaskKind::PixelClassification { classes, ignore_label },
            TaskTargets::PixelClasses(labels),
            LossKind::CrossEntropy,
        ) => {
            let (h, w) = (labels.shape()[1], labels.shape()[2]);
            let ok = shape.len() == 4 && shape[1..] == [*classes, h, w];
            check_output(task, &shape, batch, &format!("[{batch}, {classes}, {h}, {w}]"), ok)?;
            let labels: Vec<i64> = labels
                .iter()
                .map(|&l| if l == MISSING_LABEL { *ignore_label } else { l })
                .collect();
            Ok(output.cross_entropy(&labels, Some(*ignore_label), Reduction::Mean))
        }
        (
            TaskKind::Regression { dim },
            TaskTargets::Values { values, mask },
            LossKind::Mse | LossKind::L1,
        ) => {
            let ok = shape.len() >= 2 && shape[1] == *dim && shape[2..].iter().all(|&d| d == 1);
            check_output(task, &shape, batch, &format!("[{batch}, {dim}]"), ok)?;
            let target = values.as_standard_layout().iter().copied().collect::<Vec<f32>>();
            let mask = mask.as_ref().map(|m| {
                m.iter()
                    .flat_map(|&p| std::iter::repeat_n(if p { 1.0f32 } else { 0.0 }, *dim))
                    .collect()
            });
            Ok(masked_regression(output, target, mask, task.loss))
        }
        (
            TaskKind::PixelRegression,
            TaskTargets::PixelValues(values),
            LossKind::Mse | LossKind::L1,
        ) => {
            let (h, w) = (values.shape()[1], values.shape()[2]);
            let ok = shape[1..] == [h, w] || shape[1..] == [1, h, w];
            check_output(task, &shape, batch, &format!("[{batch}, 1, {h}, {w}]"), ok)?;
            let target =
                Tensor::from_vec(&shape, values.as_standard_layout().iter().copied().collect())
                    .expect("as many values as outputs");
            let target = tape.constant(target);
            Ok(match task.loss {
                LossKind::L1 => output.l1_loss(target, Reduction::Mean),
                _ => output.mse_loss(target, Reduction::Mean),
            })
        }
        _ => Err(mismatch()),
    }
}

/// MSE or L1 of `output` against `target`, averaged over the unmasked values (0 if none is).
fn masked_regression<'t>(
    output: Var<'t>,
    target: Vec<f32>,
    mask: Option<Vec<f32>>,
    loss: LossKind,
) -> Var<'t> {
    let tape = output.tape();
    let shape = output.shape();
    let reduce = |pred: Var<'t>, target: Var<'t>, reduction| match loss {
        LossKind::L1 => pred.l1_loss(target, reduction),
        _ => pred.mse_loss(target, reduction),
    };
    match mask {
        None => {
            let target = tape.constant(Tensor::from_vec(&shape, target).expect("shape"));
            reduce(output, target, Reduction::Mean)
        }
        Some(mask) => {
            let count = mask.iter().filter(|&&m| m > 0.0).count();
            let target: Vec<f32> = target.iter().zip(&mask).map(|(t, m)| t * m).collect();
            let target = tape.constant(Tensor::from_vec(&shape, target).expect("shape"));
            let mask = tape.constant(Tensor::from_vec(&shape, mask).expect("shape"));
            let scale = if count == 0 { 0.0 } else { 1.0 / count as f32 };
            reduce(output.mul(mask), target, Reduction::Sum).mul_scalar(scale)
        }
    }
}

/// Checks that `dataset` fits `model`: the same number of tasks, the same names and kinds in
/// the same order, and the model's input shape if it fixes one.
///
/// Errors with [`MtlError::TaskCount`], [`MtlError::TaskMismatch`] or [`MtlError::InputShape`].
pub fn check_dataset(
    model: &(impl MultiTaskModel + ?Sized),
    dataset: &MultiTaskDataset,
) -> Result<(), MtlError> {
    let tasks = model.tasks();
    if dataset.tasks.len() != tasks.len() {
        return Err(MtlError::TaskCount {
            dataset: dataset.name.clone(),
            expected: tasks.len(),
            found: dataset.tasks.len(),
        });
    }
    for (index, (want, have)) in tasks.iter().zip(&dataset.tasks).enumerate() {
        if want.name != have.name || want.kind != have.kind {
            return Err(MtlError::TaskMismatch {
                dataset: dataset.name.clone(),
                index,
                expected: format!("`{}` ({:?})", want.name, want.kind),
                found: format!("`{}` ({:?})", have.name, have.kind),
            });
        }
    }
    check_inputs(model, dataset)
}

/// Checks that the samples of `dataset` have the input shape `model` fixes, if it fixes one.
///
/// # Errors
/// [`MtlError::InputShape`] if they differ.
pub fn check_inputs(
    model: &(impl MultiTaskModel + ?Sized),
    dataset: &MultiTaskDataset,
) -> Result<(), MtlError> {
    if let Some(shape) = model.input_shape() {
        if dataset.sample_shape() != shape {
            return Err(MtlError::InputShape {
                dataset: dataset.name.clone(),
                expected: shape.to_vec(),
                found: dataset.sample_shape().to_vec(),
            });
        }
    }
    Ok(())
}
