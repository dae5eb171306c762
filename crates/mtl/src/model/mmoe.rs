//! Multi-gate mixture of experts (MMoE; Ma et al., KDD 2018): K experts, each a network of the
//! trunk's structure with parameters of its own, and for every task a gate that weighs them
//! from the input,
//!
//! ```text
//! g_t(x) = softmax(W_t flat(x) + b_t) ∈ Δ^K,    z_t = Σ_k g_t,k(x) · E_k(x),    ŷ_t = head_t(z_t)
//! ```
//!
//! The experts are the shared parameters (every task's mixture uses every expert); each gate is
//! its task's own, as in LibMTL. With one expert the gate is 1 and the model is hard sharing
//! with that expert as the trunk. Each task gets a representation of its own, so the methods
//! that work at one shared representation (MGDA-UB, GradDrop) do not apply. Cost per step: K
//! expert passes (K times hard sharing's trunk), T gates of `K·|x|` multiply-adds per sample and
//! T mixtures of `K·|z|`; parameters: `K·|θ_trunk| + T·K·(|x| + 1)` besides the heads.

use rand::Rng;
use tapestry_autodiff::Var;
use tapestry_data::TaskSpec;
use tapestry_nn::{Ctx, Linear, Module, ParamId, Params};

use super::{
    check_prefix, check_tasks, column_means, stage_shapes, LastBatchLog, ModelOutput,
    MultiTaskModel, HEADS_PREFIX,
};
use crate::error::MtlError;

/// The prefix of the shared experts' parameter names: expert `k` is under `experts_shared.<k>.`.
pub const EXPERTS_SHARED_PREFIX: &str = "experts_shared.";
/// The prefix of the task gates' parameter names: task `t`'s gate (at level `l`) is the linear
/// layer `gate_specific.<t>.<l>` (level 0 for MMoE and CGC).
pub const GATES_PREFIX: &str = "gate_specific.";

/// `Σ_k g[:, k] · e_k`: the experts' outputs `experts` (K values of one shape `[B, ...]`) mixed
/// per sample by the gate weights `gate` (`[B, K]`).
///
/// # Panics
/// If `experts` is empty or the shapes do not fit (`gate` is not `[B, K]`, the experts differ).
pub fn mix_experts<'t>(gate: Var<'t>, experts: &[Var<'t>]) -> Var<'t> {
    // Stacked on a new first axis, `[K, B, ...]`: each expert stays one contiguous block, so its
    // cotangent in the backward pass is a plain copy (on axis 1 it would be a strided gather).
    let shape = experts[0].shape();
    let mut gate_shape = vec![experts.len(), shape[0]];
    gate_shape.resize(shape.len() + 1, 1);
    let gate = gate.transpose(0, 1).reshape(&gate_shape);
    (Var::stack(experts, 0) * gate).sum(&[0], false)
}

/// A gate's weights: `softmax(W flat(x) + b)` over its experts, `[B, K]`.
pub(crate) fn gate_weights<'t>(gate: &Linear, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> Var<'t> {
    let shape = x.shape();
    let flat = x.reshape(&[shape[0], shape[1..].iter().product()]);
    gate.forward(flat, ctx).softmax(1)
}

/// A linear gate from `inputs` (the flattened size of what it reads) to `experts` logits,
/// registered as `name.weight` and `name.bias` with PyTorch's default initialisation.
pub(crate) fn new_gate<R: Rng + ?Sized>(
    params: &mut Params,
    name: &str,
    inputs: usize,
    experts: usize,
    rng: &mut R,
) -> Result<Linear, MtlError> {
    Linear::new(params, name, inputs, experts, rng).map_err(|e| MtlError::Model(e.to_string()))
}

/// Multi-gate mixture of experts: K shared experts, a softmax gate and a head per task.
#[derive(Debug)]
pub struct Mmoe {
    experts: Vec<Box<dyn Module>>,
    gates: Vec<Linear>,
    heads: Vec<Box<dyn Module>>,
    tasks: Vec<TaskSpec>,
    shared: Vec<ParamId>,
    input_shape: Vec<usize>,
    log: LastBatchLog,
}

/// Builds an [`Mmoe`] model; see [`Mmoe::builder`].
#[derive(Debug, Default)]
pub struct MmoeBuilder {
    experts: Vec<Box<dyn Module>>,
    heads: Vec<(TaskSpec, Box<dyn Module>)>,
    input_shape: Option<Vec<usize>>,
}

impl Mmoe {
    /// Starts a model with no expert and no task.
    pub fn builder() -> MmoeBuilder {
        MmoeBuilder::default()
    }

    /// The number of experts K.
    pub fn experts(&self) -> usize {
        self.experts.len()
    }

    /// The forward pass and, per task, its gate's weights `[B, K]` (named `mmoe.gate.<task>`).
    pub fn forward_with_gates<'t>(
        &self,
        x: Var<'t>,
        ctx: &mut Ctx<'_, 't>,
    ) -> (ModelOutput<'t>, Vec<(String, Var<'t>)>) {
        let experts: Vec<Var<'t>> = self.experts.iter().map(|e| e.forward(x, ctx)).collect();
        let mut representations = Vec::new();
        let mut gates = Vec::new();
        for (spec, gate) in self.tasks.iter().zip(&self.gates) {
            let g = gate_weights(gate, x, ctx);
            representations.push(mix_experts(g, &experts));
            gates.push((format!("mmoe.gate.{}", spec.name), g));
        }
        let outputs =
            self.heads.iter().zip(&representations).map(|(h, &z)| h.forward(z, ctx)).collect();
        (ModelOutput { representations, outputs, aux_loss: None }, gates)
    }
}

impl MmoeBuilder {
    /// Adds an expert (parameters under `experts_shared.<k>.`, k counting from 0 in the order
    /// added). Every expert must map the input to one output shape.
    pub fn expert(mut self, expert: impl Module + 'static) -> Self {
        self.experts.push(Box::new(expert));
        self
    }

    /// Adds a task with its head (parameters under `heads.<name>.`), reading the task's mixture.
    pub fn head(mut self, spec: TaskSpec, head: impl Module + 'static) -> Self {
        self.heads.push((spec, Box::new(head)));
        self
    }

    /// The shape of one input sample; required, since the gates read the flattened input.
    pub fn input_shape(mut self, shape: &[usize]) -> Self {
        self.input_shape = Some(shape.to_vec());
        self
    }

    /// Checks the experts and heads against `params`, registers a gate per task
    /// (`gate_specific.<task>.0`, drawn from `rng`) and assembles the model.
    ///
    /// # Errors
    /// [`MtlError::Model`] if there is no task or no expert, two tasks share a name, the input
    /// shape is missing, an expert has no parameters, the experts' outputs differ in shape, a
    /// module's `params()` and the names under its prefix disagree, or a gate's name is taken.
    ///
    /// # Panics
    /// If an expert does not fit the input shape (the autodiff engine's shape panic).
    pub fn build<R: Rng + ?Sized>(
        self,
        params: &mut Params,
        rng: &mut R,
    ) -> Result<Mmoe, MtlError> {
        let bad = |m: String| Err(MtlError::Model(m));
        let (tasks, heads): (Vec<TaskSpec>, Vec<Box<dyn Module>>) = self.heads.into_iter().unzip();
        check_tasks(&tasks)?;
        if self.experts.is_empty() {
            return bad("a mixture of experts needs at least one expert".into());
        }
        let Some(input_shape) = self.input_shape else {
            return bad("MMoE's gates read the flattened input; give the input shape".into());
        };
        let ids: Vec<Vec<ParamId>> = self.experts.iter().map(|e| e.params()).collect();
        let shared = check_experts(params, EXPERTS_SHARED_PREFIX, "shared expert", &ids)?;
        check_same_outputs(params, &input_shape, &self.experts, "the shared experts")?;
        for (spec, head) in tasks.iter().zip(&heads) {
            let prefix = format!("{HEADS_PREFIX}{}.", spec.name);
            check_prefix(params, &format!("task `{}`'s head", spec.name), &prefix, &head.params())?;
        }
        let inputs = input_shape.iter().product();
        let gates = tasks
            .iter()
            .map(|spec| {
                let name = format!("{GATES_PREFIX}{}.0", spec.name);
                new_gate(params, &name, inputs, self.experts.len(), rng)
            })
            .collect::<Result<_, _>>()?;
        Ok(Mmoe {
            experts: self.experts,
            gates,
            heads,
            tasks,
            shared,
            input_shape,
            log: LastBatchLog::default(),
        })
    }
}

/// Checks a group of experts, each given by its parameters, against `params` (expert `k`
/// under `<prefix><k>.`, and nothing else under `prefix`) and returns their parameters, in order.
pub(crate) fn check_experts(
    params: &Params,
    prefix: &str,
    what: &str,
    experts: &[Vec<ParamId>],
) -> Result<Vec<ParamId>, MtlError> {
    for (k, ids) in experts.iter().enumerate() {
        if ids.is_empty() {
            return Err(MtlError::Model(format!("{what} {k} has no parameters")));
        }
        check_prefix(params, &format!("{what} {k}"), &format!("{prefix}{k}."), ids)?;
    }
    let all: Vec<ParamId> = experts.concat();
    check_prefix(params, &format!("the group of {what}s"), prefix, &all)?;
    Ok(all)
}

/// Checks that `experts` map samples of shape `input` to one shape, and returns it.
fn check_same_outputs(
    params: &mut Params,
    input: &[usize],
    experts: &[Box<dyn Module>],
    what: &str,
) -> Result<Vec<usize>, MtlError> {
    let shapes: Vec<Vec<usize>> =
        experts.iter().map(|e| stage_shapes(params, input, &[e.as_ref()]).remove(0)).collect();
    if let Some(k) = shapes.iter().position(|s| *s != shapes[0]) {
        return Err(MtlError::Model(format!(
            "{what} must give outputs of one shape: expert 0 gives {:?}, expert {k} {:?}",
            shapes[0], shapes[k]
        )));
    }
    Ok(shapes[0].clone())
}

impl MultiTaskModel for Mmoe {
    fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> ModelOutput<'t> {
        let (out, gates) = self.forward_with_gates(x, ctx);
        self.log.record(ctx, || {
            gates.iter().map(|(name, g)| (name.clone(), column_means(&g.value()))).collect()
        });
        out
    }

    fn shared_params(&self) -> Vec<ParamId> {
        self.shared.clone()
    }

    fn shares_representation(&self) -> bool {
        false
    }

    fn input_shape(&self) -> Option<&[usize]> {
        Some(&self.input_shape)
    }

    /// Per task, `mmoe.gate.<task>`: its gate's weights on the K experts, averaged over the last
    /// training batch.
    fn diagnostics(&self) -> Vec<(String, Vec<f64>)> {
        self.log.entries()
    }
}
