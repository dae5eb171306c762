//! Soft parameter sharing: every task keeps a tower of its own (one architecture, separate
//! parameters), and a penalty pulls the towers' chosen layers together:
//!
//! ```text
//! min Σ_t L_t(f_t(x; θ_t)) + λ Σ_{i≠j} ‖θ_i − θ_j‖²
//! ```
//!
//! Over ordered pairs, `Σ_{i≠j} ‖θ_i − θ_j‖² = 2T Σ_i ‖θ_i − θ̄‖²` with `θ̄` the towers' mean
//! (expand `‖θ_i − θ_j‖² = ‖θ_i − θ̄‖² + ‖θ_j − θ̄‖² − 2⟨θ_i − θ̄, θ_j − θ̄⟩` and use
//! `Σ_i (θ_i − θ̄) = 0`), so the penalty and its gradient `4Tλ(θ_i − θ̄)` cost `O(T·|θ|)`, not
//! `O(T²·|θ|)`. Nothing is shared, so the per-task gradient methods do not apply; the tasks are
//! coupled only through the penalty.

use tapestry_autodiff::Var;
use tapestry_data::TaskSpec;
use tapestry_nn::{Ctx, Module, ParamId, Params};

use super::{check_prefix, check_tasks, ModelOutput, MultiTaskModel, HEADS_PREFIX, TOWERS_PREFIX};
use crate::error::MtlError;

/// Soft parameter sharing: a tower and a head per task, towers coupled by
/// `λ Σ_{i≠j} ‖θ_i − θ_j‖²` over chosen layers.
#[derive(Debug)]
pub struct SoftSharing {
    towers: Vec<Box<dyn Module>>,
    heads: Vec<Box<dyn Module>>,
    tasks: Vec<TaskSpec>,
    lambda: f32,
    /// Per coupled layer, its parameter in each tower (task order).
    coupled: Vec<Vec<ParamId>>,
    input_shape: Option<Vec<usize>>,
}

/// A task as the builder holds it: its spec, its tower, its head.
type TowerTask = (TaskSpec, Box<dyn Module>, Box<dyn Module>);

/// Builds a [`SoftSharing`] model; see [`SoftSharing::builder`].
#[derive(Debug)]
pub struct SoftSharingBuilder {
    lambda: f32,
    tasks: Vec<TowerTask>,
    layers: Option<Vec<String>>,
    input_shape: Option<Vec<usize>>,
}

/// `λ Σ_{i≠j} ‖θ_i − θ_j‖²` summed over groups, each group holding one tensor per task, computed
/// through the mean as `2Tλ Σ_i ‖θ_i − θ̄‖²`.
///
/// # Panics
/// If a group is empty or its tensors differ in shape.
pub fn soft_sharing_penalty<'t>(groups: &[Vec<Var<'t>>], lambda: f32) -> Option<Var<'t>> {
    groups
        .iter()
        .map(|group| {
            let stacked = Var::stack(group, 0);
            let centred = stacked - stacked.mean(&[0], true);
            (centred * centred).sum_all() * (2.0 * group.len() as f32 * lambda)
        })
        .reduce(|a, b| a + b)
}

impl SoftSharing {
    /// Starts a model whose towers are coupled with strength `lambda`.
    pub fn builder(lambda: f32) -> SoftSharingBuilder {
        SoftSharingBuilder { lambda, tasks: Vec::new(), layers: None, input_shape: None }
    }

    /// The coupling strength λ.
    pub fn lambda(&self) -> f32 {
        self.lambda
    }

    /// The coupled layers: per layer, its parameter in each task's tower.
    pub fn coupled(&self) -> &[Vec<ParamId>] {
        &self.coupled
    }
}

impl SoftSharingBuilder {
    /// Adds a task with its tower (parameters under `towers.<name>.`) and its head (under
    /// `heads.<name>.`). Every tower must have the same architecture.
    pub fn task(
        mut self,
        spec: TaskSpec,
        tower: impl Module + 'static,
        head: impl Module + 'static,
    ) -> Self {
        self.tasks.push((spec, Box::new(tower), Box::new(head)));
        self
    }

    /// Couples only these layers, named inside a tower (`0.weight`, `conv1.bias`); by default
    /// every tower parameter is coupled.
    pub fn coupled_layers(mut self, names: &[&str]) -> Self {
        self.layers = Some(names.iter().map(|n| n.to_string()).collect());
        self
    }

    /// Fixes the shape of one input sample.
    pub fn input_shape(mut self, shape: &[usize]) -> Self {
        self.input_shape = Some(shape.to_vec());
        self
    }

    /// Checks the towers against each other and against `params`, and assembles the model.
    ///
    /// # Errors
    /// [`MtlError::Model`] if λ is negative or not finite, there are fewer than two tasks, the
    /// towers differ in their parameters' names or shapes, a coupled layer is missing, or a
    /// module's `params()` and its names disagree.
    pub fn build(self, params: &Params) -> Result<SoftSharing, MtlError> {
        let bad = |m: String| Err(MtlError::Model(m));
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return bad(format!(
                "soft sharing's lambda must be finite and at least 0, got {}",
                self.lambda
            ));
        }
        let tasks: Vec<TaskSpec> = self.tasks.iter().map(|(s, _, _)| s.clone()).collect();
        check_tasks(&tasks)?;
        if tasks.len() < 2 {
            return bad(
                "soft sharing couples the towers of several tasks; it needs at least two".into()
            );
        }
        // Each tower's parameters by their name inside the tower.
        let mut towers_named: Vec<Vec<(String, ParamId)>> = Vec::new();
        for (spec, tower, head) in &self.tasks {
            let prefix = format!("{TOWERS_PREFIX}{}.", spec.name);
            let ids = tower.params();
            check_prefix(params, &format!("task `{}`'s tower", spec.name), &prefix, &ids)?;
            let head_prefix = format!("{HEADS_PREFIX}{}.", spec.name);
            check_prefix(
                params,
                &format!("task `{}`'s head", spec.name),
                &head_prefix,
                &head.params(),
            )?;
            towers_named.push(
                ids.iter().map(|&id| (params.name(id)[prefix.len()..].to_string(), id)).collect(),
            );
        }
        let first = &towers_named[0];
        for (t, named) in towers_named.iter().enumerate().skip(1) {
            let same = named.len() == first.len()
                && named.iter().zip(first).all(|((n, a), (m, b))| {
                    n == m && params.get(*a).shape() == params.get(*b).shape()
                });
            if !same {
                return bad(format!(
                    "the towers of `{}` and `{}` differ; soft sharing needs one architecture for every task",
                    tasks[0].name, tasks[t].name
                ));
            }
        }
        let names: Vec<String> = match self.layers {
            Some(names) => names,
            None => first.iter().map(|(n, _)| n.clone()).collect(),
        };
        let mut coupled = Vec::new();
        for name in &names {
            let Some(k) = first.iter().position(|(n, _)| n == name) else {
                let known: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
                return bad(format!(
                    "soft sharing couples layer `{name}`, which the towers lack (they have {})",
                    known.join(", ")
                ));
            };
            coupled.push(towers_named.iter().map(|named| named[k].1).collect());
        }
        let (towers, heads) = self.tasks.into_iter().map(|(_, tower, head)| (tower, head)).unzip();
        Ok(SoftSharing {
            towers,
            heads,
            tasks,
            lambda: self.lambda,
            coupled,
            input_shape: self.input_shape,
        })
    }
}

impl MultiTaskModel for SoftSharing {
    fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> ModelOutput<'t> {
        let representations: Vec<Var<'t>> = self.towers.iter().map(|t| t.forward(x, ctx)).collect();
        let outputs =
            self.heads.iter().zip(&representations).map(|(h, &z)| h.forward(z, ctx)).collect();
        let groups: Vec<Vec<Var<'t>>> =
            self.coupled.iter().map(|ids| ids.iter().map(|&id| ctx.var(id)).collect()).collect();
        let aux_loss =
            if self.lambda > 0.0 { soft_sharing_penalty(&groups, self.lambda) } else { None };
        ModelOutput { representations, outputs, aux_loss }
    }

    fn shared_params(&self) -> Vec<ParamId> {
        Vec::new()
    }

    fn shares_representation(&self) -> bool {
        false
    }

    fn input_shape(&self) -> Option<&[usize]> {
        self.input_shape.as_deref()
    }
}
