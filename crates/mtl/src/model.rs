//! Multi-task models: a shared trunk producing the representation `Z`, and one head per task.
//!
//! [`MultiTaskModel`] is what the training step and the trainer see: a forward pass that
//! returns `Z` and every task's output, the tasks' descriptions, and which parameters are
//! shared. [`HardSharing`] is the classic architecture (one trunk, all of whose parameters every
//! task shares; a head per task); soft sharing (a trunk per task tied by a penalty) or
//! meta-learned models are further implementations of the same trait.
//!
//! Parameters follow PyTorch-style names: the trunk's under `trunk.`, task `t`'s head under
//! `heads.<t>.`, so a checkpoint reads `trunk.0.weight`, `heads.left_digit.bias`, ...
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

use ndarray::ArrayD;
use tapestry_autodiff::{Reduction, Tensor, Var};
use tapestry_data::{LossKind, MultiTaskDataset, TaskKind, TaskSpec, TaskTargets, MISSING_LABEL};
use tapestry_nn::{Ctx, Module, ParamId, Params};

use crate::error::MtlError;

/// The prefix of the shared trunk's parameter names.
pub const TRUNK_PREFIX: &str = "trunk.";
/// The prefix of the heads' parameter names; task `t`'s head is under `heads.<t>.`.
pub const HEADS_PREFIX: &str = "heads.";

/// What a forward pass of a multi-task model returns.
#[derive(Debug, Clone)]
pub struct ModelOutput<'t> {
    /// The shared representation `Z` (the trunk's output), where MGDA-UB takes its gradients.
    pub z: Var<'t>,
    /// Each task's output (logits, values, per-pixel maps), in task order.
    pub outputs: Vec<Var<'t>>,
}

/// A multi-task model as the training step sees it.
pub trait MultiTaskModel: std::fmt::Debug {
    /// The tasks, in the order of the outputs.
    fn tasks(&self) -> &[TaskSpec];

    /// Runs the model on `x` (`[B, ...]`) on the tape of `ctx`, in the context's mode.
    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> ModelOutput<'t>;

    /// The parameters every task shares (the trunk), in a fixed order: the `P` columns of the
    /// per-task gradient matrix.
    fn shared_params(&self) -> Vec<ParamId>;

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
}

/// Hard parameter sharing: one trunk shared by all tasks, one head per task on its output.
#[derive(Debug)]
pub struct HardSharing {
    trunk: Box<dyn Module>,
    heads: Vec<Box<dyn Module>>,
    tasks: Vec<TaskSpec>,
    shared: Vec<ParamId>,
    input_shape: Option<Vec<usize>>,
}

/// Builds a [`HardSharing`] model; see [`HardSharing::builder`].
#[derive(Debug)]
pub struct HardSharingBuilder {
    trunk: Box<dyn Module>,
    heads: Vec<(TaskSpec, Box<dyn Module>)>,
    input_shape: Option<Vec<usize>>,
}

impl HardSharing {
    /// Starts a model with `trunk`, whose parameters (registered under `trunk.`) are the shared
    /// ones.
    pub fn builder(trunk: impl Module + 'static) -> HardSharingBuilder {
        HardSharingBuilder { trunk: Box::new(trunk), heads: Vec::new(), input_shape: None }
    }

    /// The trunk.
    pub fn trunk(&self) -> &dyn Module {
        self.trunk.as_ref()
    }

    /// The head of task `t`.
    ///
    /// # Panics
    /// If `t` is not a task index.
    pub fn head(&self, t: usize) -> &dyn Module {
        self.heads[t].as_ref()
    }
}

impl HardSharingBuilder {
    /// Adds a task with its head (parameters registered under `heads.<name>.`).
    pub fn head(mut self, spec: TaskSpec, head: impl Module + 'static) -> Self {
        self.heads.push((spec, Box::new(head)));
        self
    }

    /// Fixes the shape of one input sample; the trainer rejects data sets of another shape.
    pub fn input_shape(mut self, shape: &[usize]) -> Self {
        self.input_shape = Some(shape.to_vec());
        self
    }

    /// Checks the names against `params` (where the layers registered their parameters) and
    /// assembles the model.
    ///
    /// Errors with [`MtlError::Model`] if there is no task, two tasks share a name, the trunk
    /// has no parameters, or a parameter is not named under `trunk.` / `heads.<task>.`.
    pub fn build(self, params: &Params) -> Result<HardSharing, MtlError> {
        let bad = |m: String| Err(MtlError::Model(m));
        if self.heads.is_empty() {
            return bad("a multi-task model needs at least one task head".into());
        }
        let shared = self.trunk.params();
        if shared.is_empty() {
            return bad("the trunk has no parameters, so nothing is shared".into());
        }
        for &id in &shared {
            let name = params.name(id);
            if !name.starts_with(TRUNK_PREFIX) {
                return bad(format!("trunk parameter `{name}` is not named `{TRUNK_PREFIX}*`"));
            }
        }
        for (i, (spec, head)) in self.heads.iter().enumerate() {
            if self.heads[..i].iter().any(|(s, _)| s.name == spec.name) {
                return bad(format!("two tasks are named `{}`", spec.name));
            }
            let prefix = format!("{HEADS_PREFIX}{}.", spec.name);
            for id in head.params() {
                let name = params.name(id);
                if !name.starts_with(&prefix) {
                    return bad(format!(
                        "parameter `{name}` of task `{}`'s head is not named `{prefix}*`",
                        spec.name
                    ));
                }
            }
        }
        let (tasks, heads) = self.heads.into_iter().unzip();
        Ok(HardSharing { trunk: self.trunk, heads, tasks, shared, input_shape: self.input_shape })
    }
}

impl MultiTaskModel for HardSharing {
    fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> ModelOutput<'t> {
        let z = self.trunk.forward(x, ctx);
        let outputs = self.heads.iter().map(|h| h.forward(z, ctx)).collect();
        ModelOutput { z, outputs }
    }

    fn shared_params(&self) -> Vec<ParamId> {
        self.shared.clone()
    }

    fn input_shape(&self) -> Option<&[usize]> {
        self.input_shape.as_deref()
    }
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
