//! Cross-stitch networks (Misra et al., 2016): a tower per task, and after chosen stages a
//! learned `T × T` unit that mixes the towers' activations, `x̃_i = Σ_j α_ij x_j`. With α the
//! identity the towers are independent networks; off-diagonal weight shares features. The units
//! start near the identity (0.9 on the diagonal, 0.1 spread evenly off it) and are the model's
//! shared parameters (every task's loss depends on them). Cost per unit: one `T × T` by
//! `T × (B·features)` product forward and backward.

use tapestry_autodiff::{Tensor, Var};
use tapestry_data::TaskSpec;
use tapestry_nn::{Ctx, Module, ParamId, Params};

use super::{check_prefix, check_tasks, ModelOutput, MultiTaskModel, HEADS_PREFIX, TOWERS_PREFIX};
use crate::error::MtlError;

/// The prefix of the cross-stitch units' parameter names (`stitch.0`, `stitch.1`, ...).
pub const STITCH_PREFIX: &str = "stitch.";

/// A tower per task in stages, mixed by cross-stitch units between stages.
#[derive(Debug)]
pub struct CrossStitch {
    /// `stages[t][k]`: stage k of task t's tower.
    stages: Vec<Vec<Box<dyn Module>>>,
    heads: Vec<Box<dyn Module>>,
    tasks: Vec<TaskSpec>,
    /// The unit after stage k, if any.
    units: Vec<Option<ParamId>>,
    input_shape: Option<Vec<usize>>,
}

/// A task as the builder holds it: its spec, its tower's stages, its head.
type StitchedTask = (TaskSpec, Vec<Box<dyn Module>>, Box<dyn Module>);

/// Builds a [`CrossStitch`] model; see [`CrossStitch::builder`].
#[derive(Debug, Default)]
pub struct CrossStitchBuilder {
    tasks: Vec<StitchedTask>,
    after: Option<Vec<usize>>,
    input_shape: Option<Vec<usize>>,
    diagonal: Option<f32>,
}

/// Mixes `xs` (one activation per task, all of one shape) by the `T × T` matrix `alpha`:
/// `x̃_i = Σ_j α_ij x_j`.
pub fn cross_stitch<'t>(alpha: Var<'t>, xs: &[Var<'t>]) -> Vec<Var<'t>> {
    let shape = xs[0].shape();
    let n: usize = shape.iter().product();
    let mixed = alpha.matmul(Var::stack(xs, 0).reshape(&[xs.len(), n]));
    (0..xs.len()).map(|t| mixed.narrow(0, t, 1).reshape(&shape)).collect()
}

impl CrossStitch {
    /// Starts an empty model.
    pub fn builder() -> CrossStitchBuilder {
        CrossStitchBuilder::default()
    }
}

impl CrossStitchBuilder {
    /// Adds a task with its tower as a list of stages (parameters under `towers.<name>.`) and
    /// its head (under `heads.<name>.`).
    pub fn task(
        mut self,
        spec: TaskSpec,
        stages: Vec<Box<dyn Module>>,
        head: impl Module + 'static,
    ) -> Self {
        self.tasks.push((spec, stages, Box::new(head)));
        self
    }

    /// Puts units after these stages (0-based); by default after every stage but the last.
    pub fn stitch_after(mut self, stages: &[usize]) -> Self {
        self.after = Some(stages.to_vec());
        self
    }

    /// The initial diagonal of every unit (default 0.9; the rest of each row is spread evenly
    /// off the diagonal so rows sum to 1). 1.0 makes the towers independent at the start.
    pub fn initial_diagonal(mut self, diagonal: f32) -> Self {
        self.diagonal = Some(diagonal);
        self
    }

    /// Fixes the shape of one input sample.
    pub fn input_shape(mut self, shape: &[usize]) -> Self {
        self.input_shape = Some(shape.to_vec());
        self
    }

    /// Registers the units in `params` (as `stitch.<k>`), checks the towers, and assembles the
    /// model.
    ///
    /// # Errors
    /// [`MtlError::Model`] if there are fewer than two tasks, the towers have different numbers
    /// of stages, a unit would follow the last stage or a stage that does not exist, or a
    /// module's `params()` and its names disagree.
    pub fn build(self, params: &mut Params) -> Result<CrossStitch, MtlError> {
        let bad = |m: String| Err(MtlError::Model(m));
        let tasks: Vec<TaskSpec> = self.tasks.iter().map(|(s, _, _)| s.clone()).collect();
        check_tasks(&tasks)?;
        let t = tasks.len();
        if t < 2 {
            return bad(
                "cross-stitch units mix the towers of several tasks; it needs at least two".into(),
            );
        }
        let depth = self.tasks[0].1.len();
        for (spec, stages, head) in &self.tasks {
            if stages.len() != depth {
                return bad(format!(
                    "task `{}`'s tower has {} stages, `{}`'s has {depth}",
                    spec.name,
                    stages.len(),
                    tasks[0].name
                ));
            }
            let ids: Vec<ParamId> = stages.iter().flat_map(|s| s.params()).collect();
            check_prefix(
                params,
                &format!("task `{}`'s tower", spec.name),
                &format!("{TOWERS_PREFIX}{}.", spec.name),
                &ids,
            )?;
            check_prefix(
                params,
                &format!("task `{}`'s head", spec.name),
                &format!("{HEADS_PREFIX}{}.", spec.name),
                &head.params(),
            )?;
        }
        let after = self.after.unwrap_or_else(|| (0..depth.saturating_sub(1)).collect());
        if let Some(&k) = after.iter().find(|&&k| k + 1 >= depth) {
            return bad(format!("a cross-stitch unit after stage {k} of {depth} would follow the last stage (or none)"));
        }
        let diagonal = self.diagonal.unwrap_or(0.9);
        let off = if t > 1 { (1.0 - diagonal) / (t - 1) as f32 } else { 0.0 };
        let init: Vec<f32> =
            (0..t * t).map(|i| if i / t == i % t { diagonal } else { off }).collect();
        let mut units = vec![None; depth];
        for &k in &after {
            let value = Tensor::from_vec(&[t, t], init.clone()).expect("T x T");
            let id = params
                .add(format!("{STITCH_PREFIX}{k}"), value)
                .map_err(|e| MtlError::Model(e.to_string()))?;
            units[k] = Some(id);
        }
        let mut stages = Vec::new();
        let mut heads = Vec::new();
        for (_, s, h) in self.tasks {
            stages.push(s);
            heads.push(h);
        }
        Ok(CrossStitch { stages, heads, tasks, units, input_shape: self.input_shape })
    }
}

impl MultiTaskModel for CrossStitch {
    fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> ModelOutput<'t> {
        let mut xs = vec![x; self.tasks.len()];
        for (k, unit) in self.units.iter().enumerate() {
            xs =
                xs.iter().zip(&self.stages).map(|(&x, stages)| stages[k].forward(x, ctx)).collect();
            if let Some(id) = unit {
                xs = cross_stitch(ctx.var(*id), &xs);
            }
        }
        let outputs = self.heads.iter().zip(&xs).map(|(h, &z)| h.forward(z, ctx)).collect();
        ModelOutput { representations: xs, outputs, aux_loss: None }
    }

    fn shared_params(&self) -> Vec<ParamId> {
        self.units.iter().flatten().copied().collect()
    }

    fn shares_representation(&self) -> bool {
        false
    }

    fn input_shape(&self) -> Option<&[usize]> {
        self.input_shape.as_deref()
    }
}
