//! Customized gate control (CGC) and progressive layered extraction (PLE; Tang et al., RecSys
//! 2020). CGC keeps shared experts and, for every task, experts of its own; task t's gate, a
//! softmax from the input, mixes the shared experts and t's experts only:
//!
//! ```text
//! g_t(x) = softmax(W_t flat(x) + b_t),    z_t = Σ_k g_t,k(x) · [E_shared,1..Ks ; E_t,1..Kt]_k(x)
//! ```
//!
//! PLE stacks L such levels, each expert being one stage of the trunk. Level l reads, per task,
//! the task's mixture from level l − 1 (x at level 0), and a shared branch reads the shared
//! mixture: below the last level a shared gate, from the shared branch's input, weighs *all*
//! the level's experts (the shared ones and every task's) and feeds the next level's shared
//! experts. The last level is a CGC and has no shared gate. One level is CGC itself.
//!
//! The shared parameters are exactly those more than one task's loss reaches: the shared
//! experts of every level and the shared gates; the task experts below the last level (they
//! feed the shared gate); the task gates below the last two levels (they feed those experts).
//! Cost per step, with `Ks` shared and `Kt` task experts per task: `Ks + T·Kt` expert passes of
//! each stage (the shared experts run once, on the shared branch), the gates and the mixtures;
//! parameters: `(Ks + T·Kt)·|θ_trunk|` plus the gates.
//!
//! LibMTL's PLE runs the shared experts on each task's branch and has no shared gate; this is
//! the paper's form.

use rand::Rng;
use tapestry_autodiff::Var;
use tapestry_data::TaskSpec;
use tapestry_nn::{Ctx, Linear, Module, ParamId, Params};

use super::mmoe::{check_experts, gate_weights, mix_experts, new_gate};
use super::{
    check_prefix, check_tasks, column_means, stage_shapes, LastBatchLog, ModelOutput,
    MultiTaskModel, EXPERTS_SHARED_PREFIX, GATES_PREFIX, HEADS_PREFIX,
};
use crate::error::MtlError;

/// The prefix of the task experts' parameter names: task `t`'s expert `k` is under
/// `experts_specific.<t>.<k>.`.
pub const EXPERTS_SPECIFIC_PREFIX: &str = "experts_specific.";
/// The prefix of PLE's shared gates: the one of level `l` is the linear layer `gate_shared.<l>`.
pub const SHARED_GATES_PREFIX: &str = "gate_shared.";

/// One level: stage `l` of every expert, a gate per task and, below the last level, the
/// shared gate.
#[derive(Debug)]
struct Level {
    shared_experts: Vec<Box<dyn Module>>,
    /// `task_experts[t][k]`.
    task_experts: Vec<Vec<Box<dyn Module>>>,
    task_gates: Vec<Linear>,
    shared_gate: Option<Linear>,
}

/// CGC (one level) or PLE (several): shared and task-specific experts mixed by per-task gates.
#[derive(Debug)]
pub struct Ple {
    levels: Vec<Level>,
    heads: Vec<Box<dyn Module>>,
    tasks: Vec<TaskSpec>,
    shared: Vec<ParamId>,
    input_shape: Vec<usize>,
    log: LastBatchLog,
}

/// An expert as the builder holds it: its stages, one per level.
type Stages = Vec<Box<dyn Module>>;

/// A task as the builder holds it: its spec, its experts, its head.
type ExpertTask = (TaskSpec, Vec<Stages>, Box<dyn Module>);

/// Builds a [`Ple`] model; see [`Ple::builder`].
#[derive(Debug, Default)]
pub struct PleBuilder {
    shared: Vec<Stages>,
    tasks: Vec<ExpertTask>,
    input_shape: Option<Vec<usize>>,
}

impl Ple {
    /// Starts a model with no expert and no task.
    pub fn builder() -> PleBuilder {
        PleBuilder::default()
    }

    /// The number of levels L (1 for CGC).
    pub fn levels(&self) -> usize {
        self.levels.len()
    }

    /// The prefix of the diagnostics' names: `cgc` with one level, `ple` with several.
    fn name(&self) -> &'static str {
        if self.levels.len() == 1 {
            "cgc"
        } else {
            "ple"
        }
    }

    /// The forward pass and every gate's weights: task t's at level l, `[B, Ks + Kt]` (shared
    /// experts first), named `cgc.gate.<t>` with one level and `ple.gate.<t>.<l>` with several;
    /// the shared gate of level l, `[B, Ks + T·Kt]` (shared experts, then each task's in task
    /// order), named `ple.shared_gate.<l>`.
    pub fn forward_with_gates<'t>(
        &self,
        x: Var<'t>,
        ctx: &mut Ctx<'_, 't>,
    ) -> (ModelOutput<'t>, Vec<(String, Var<'t>)>) {
        let name = self.name();
        let last = self.levels.len() - 1;
        let mut task_inputs = vec![x; self.tasks.len()];
        let mut shared_input = x;
        let mut gates = Vec::new();
        for (l, level) in self.levels.iter().enumerate() {
            let shared: Vec<Var<'t>> =
                level.shared_experts.iter().map(|e| e.forward(shared_input, ctx)).collect();
            let own: Vec<Vec<Var<'t>>> = (level.task_experts.iter().zip(&task_inputs))
                .map(|(experts, &input)| experts.iter().map(|e| e.forward(input, ctx)).collect())
                .collect();
            let mut next = Vec::with_capacity(self.tasks.len());
            for (t, spec) in self.tasks.iter().enumerate() {
                let g = gate_weights(&level.task_gates[t], task_inputs[t], ctx);
                next.push(mix_experts(g, &[&shared[..], &own[t][..]].concat()));
                let label = if last == 0 {
                    format!("{name}.gate.{}", spec.name)
                } else {
                    format!("{name}.gate.{}.{l}", spec.name)
                };
                gates.push((label, g));
            }
            if let Some(gate) = &level.shared_gate {
                let g = gate_weights(gate, shared_input, ctx);
                let all: Vec<Var<'t>> =
                    shared.iter().chain(own.iter().flatten()).copied().collect();
                shared_input = mix_experts(g, &all);
                gates.push((format!("{name}.shared_gate.{l}"), g));
            }
            task_inputs = next;
        }
        let outputs =
            self.heads.iter().zip(&task_inputs).map(|(h, &z)| h.forward(z, ctx)).collect();
        (ModelOutput { representations: task_inputs, outputs, aux_loss: None }, gates)
    }
}

impl PleBuilder {
    /// Adds a shared expert as its stages, one per level (parameters under
    /// `experts_shared.<k>.`, k counting from 0 in the order added). For CGC give one stage.
    pub fn shared_expert(mut self, stages: Vec<Box<dyn Module>>) -> Self {
        self.shared.push(stages);
        self
    }

    /// Adds a task with its own experts, each as its stages (expert `k` under
    /// `experts_specific.<name>.<k>.`), and its head (under `heads.<name>.`).
    pub fn task(
        mut self,
        spec: TaskSpec,
        experts: Vec<Vec<Box<dyn Module>>>,
        head: impl Module + 'static,
    ) -> Self {
        self.tasks.push((spec, experts, Box::new(head)));
        self
    }

    /// The shape of one input sample; required, since the gates read the flattened input.
    pub fn input_shape(mut self, shape: &[usize]) -> Self {
        self.input_shape = Some(shape.to_vec());
        self
    }

    /// Checks the experts and heads against `params`, registers the gates (task `t`'s at level
    /// `l` as `gate_specific.<t>.<l>`, the shared ones as `gate_shared.<l>`, drawn from `rng`)
    /// and assembles the model.
    ///
    /// # Errors
    /// [`MtlError::Model`] if there is no task or no shared expert, two tasks share a name, the
    /// input shape is missing, the experts have different numbers of stages (or none), an
    /// expert has no parameters, the experts of one level give outputs of different shapes, a
    /// module's `params()` and the names under its prefix disagree, or a gate's name is taken.
    ///
    /// # Panics
    /// If a stage does not fit its input (the autodiff engine's shape panic).
    pub fn build<R: Rng + ?Sized>(self, params: &mut Params, rng: &mut R) -> Result<Ple, MtlError> {
        let bad = |m: String| Err(MtlError::Model(m));
        let tasks: Vec<TaskSpec> = self.tasks.iter().map(|(s, _, _)| s.clone()).collect();
        check_tasks(&tasks)?;
        if self.shared.is_empty() {
            return bad("CGC and PLE need at least one shared expert".into());
        }
        let Some(input_shape) = self.input_shape else {
            return bad(
                "CGC's and PLE's gates read the flattened input; give the input shape".into()
            );
        };
        let depth = self.shared[0].len();
        let every: Vec<&Stages> =
            self.shared.iter().chain(self.tasks.iter().flat_map(|(_, e, _)| e)).collect();
        if depth == 0 || every.iter().any(|e| e.len() != depth) {
            return bad(format!(
                "every expert needs the same number of stages (one per level, at least one); shared expert 0 has {depth}"
            ));
        }
        let ids = |stages: &Stages| stages.iter().flat_map(|s| s.params()).collect::<Vec<_>>();
        let shared_ids: Vec<Vec<ParamId>> = self.shared.iter().map(ids).collect();
        check_experts(params, EXPERTS_SHARED_PREFIX, "shared expert", &shared_ids)?;
        let mut specific = Vec::new();
        for (spec, experts, head) in &self.tasks {
            let prefix = format!("{EXPERTS_SPECIFIC_PREFIX}{}.", spec.name);
            let what = format!("task `{}`'s expert", spec.name);
            let expert_ids: Vec<Vec<ParamId>> = experts.iter().map(ids).collect();
            specific.extend(check_experts(params, &prefix, &what, &expert_ids)?);
            let head_prefix = format!("{HEADS_PREFIX}{}.", spec.name);
            let what = format!("task `{}`'s head", spec.name);
            check_prefix(params, &what, &head_prefix, &head.params())?;
        }
        check_prefix(params, "the set of task experts", EXPERTS_SPECIFIC_PREFIX, &specific)?;
        // The shape each level reads: the input, then the output of the level below.
        let mut level_inputs = vec![input_shape.clone()];
        for l in 0..depth {
            let shapes: Vec<Vec<usize>> = every
                .iter()
                .map(|e| stage_shapes(params, &level_inputs[l], &[e[l].as_ref()]).remove(0))
                .collect();
            if let Some(other) = shapes.iter().find(|s| **s != shapes[0]) {
                return bad(format!(
                    "the experts of level {l} must give outputs of one shape: shared expert 0 gives {:?}, another expert {other:?}",
                    shapes[0]
                ));
            }
            level_inputs.push(shapes[0].clone());
        }
        let (ks, kts): (usize, Vec<usize>) =
            (self.shared.len(), self.tasks.iter().map(|(_, e, _)| e.len()).collect());
        let mut shared_levels = by_level(self.shared, depth).into_iter();
        let mut heads = Vec::new();
        let mut task_levels = Vec::new();
        for (_, experts, head) in self.tasks {
            heads.push(head);
            task_levels.push(by_level(experts, depth).into_iter());
        }
        let mut levels = Vec::new();
        let mut shared = Vec::new();
        for (l, input) in level_inputs[..depth].iter().enumerate() {
            let inputs: usize = input.iter().product();
            let below_last = l + 1 < depth;
            let shared_experts = shared_levels.next().expect("depth checked");
            let task_experts: Vec<Vec<Box<dyn Module>>> =
                task_levels.iter_mut().map(|t| t.next().expect("depth checked")).collect();
            let task_gates = (tasks.iter().zip(&kts))
                .map(|(spec, &kt)| {
                    let name = format!("{GATES_PREFIX}{}.{l}", spec.name);
                    new_gate(params, &name, inputs, ks + kt, rng)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let shared_gate = if below_last {
                let all = ks + kts.iter().sum::<usize>();
                Some(new_gate(params, &format!("{SHARED_GATES_PREFIX}{l}"), inputs, all, rng)?)
            } else {
                None
            };
            // The parameters more than one task reaches (see the module's documentation).
            shared.extend(shared_experts.iter().flat_map(|e| e.params()));
            if below_last {
                shared.extend(task_experts.iter().flatten().flat_map(|e| e.params()));
                if l + 2 < depth {
                    shared.extend(task_gates.iter().flat_map(|g| g.params()));
                }
                shared.extend(shared_gate.iter().flat_map(|g| g.params()));
            }
            levels.push(Level { shared_experts, task_experts, task_gates, shared_gate });
        }
        Ok(Ple { levels, heads, tasks, shared, input_shape, log: LastBatchLog::default() })
    }
}

/// Experts given as their stages, regrouped by level: `result[l]` holds stage `l` of each.
fn by_level(experts: Vec<Stages>, depth: usize) -> Vec<Vec<Box<dyn Module>>> {
    let mut levels: Vec<Vec<Box<dyn Module>>> = (0..depth).map(|_| Vec::new()).collect();
    for expert in experts {
        for (level, stage) in levels.iter_mut().zip(expert) {
            level.push(stage);
        }
    }
    levels
}

impl MultiTaskModel for Ple {
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

    /// Every gate's weights (named as in [`Ple::forward_with_gates`]), averaged over the last
    /// training batch.
    fn diagnostics(&self) -> Vec<(String, Vec<f64>)> {
        self.log.entries()
    }
}
