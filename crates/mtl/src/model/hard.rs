//! Hard parameter sharing: one trunk every task shares, one head per task on its output `Z`.
//! The trunk's parameters are the shared ones; `Z` is the one representation.

use tapestry_autodiff::Var;
use tapestry_data::TaskSpec;
use tapestry_nn::{Ctx, Module, ParamId, Params};

use super::{check_prefix, check_tasks, ModelOutput, MultiTaskModel, HEADS_PREFIX, TRUNK_PREFIX};
use crate::error::MtlError;

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

    /// Checks the parameters against `params` (where the layers registered them) and
    /// assembles the model.
    ///
    /// # Errors
    /// [`MtlError::Model`] if there is no task, two tasks share a name, the trunk has no
    /// parameters, or a module's `params()` and the names under its prefix disagree.
    pub fn build(self, params: &Params) -> Result<HardSharing, MtlError> {
        let (tasks, heads): (Vec<TaskSpec>, Vec<Box<dyn Module>>) = self.heads.into_iter().unzip();
        check_tasks(&tasks)?;
        let shared = self.trunk.params();
        if shared.is_empty() {
            return Err(MtlError::Model(
                "the trunk has no parameters, so nothing is shared".into(),
            ));
        }
        check_prefix(params, "the trunk", TRUNK_PREFIX, &shared)?;
        for (spec, head) in tasks.iter().zip(&heads) {
            let prefix = format!("{HEADS_PREFIX}{}.", spec.name);
            check_prefix(params, &format!("task `{}`'s head", spec.name), &prefix, &head.params())?;
        }
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
        ModelOutput { representations: vec![z], outputs, aux_loss: None }
    }

    fn shared_params(&self) -> Vec<ParamId> {
        self.shared.clone()
    }

    fn input_shape(&self) -> Option<&[usize]> {
        self.input_shape.as_deref()
    }
}
