//! Multi-task attention network (MTAN; Liu, Johns and Davison, CVPR 2019): one shared backbone
//! in stages, and per task an attention module at every stage that puts a soft mask on the
//! shared features. With `p_k` the backbone's output at stage k (`p_k = S_k(p_{k−1})`,
//! `p_{−1} = x`), task t's attended features are
//!
//! ```text
//! a_t,0 = σ(A_t,0(p_0)),                      â_t,0 = a_t,0 ⊙ p_0
//! a_t,k = σ(A_t,k([p_k ; S_k(â_t,k−1)])),     â_t,k = a_t,k ⊙ p_k      (k ≥ 1)
//! ŷ_t   = head_t(â_t,K−1)
//! ```
//!
//! `[· ; ·]` joins along the channel (feature) axis and `A_t,k` is a 1 × 1 convolution on
//! feature maps, a linear layer on vectors (the MLP analogue: sigmoid masks over the hidden
//! units). MTAN's attention block is two 1 × 1 convolutions with batch norm (`g`, then `h`) and
//! its `f`, which brings the previous attended features to the next stage's shape, is a
//! separate convolution shared by the tasks; here the block is one layer and `f` is the shared
//! backbone stage `S_k` itself, which maps stage k − 1's features to stage k's shape for any
//! backbone. The backbone is the shared parameters; the attention layers are each task's own.
//! Cost per step: the backbone once, T passes of its stages 1..K−1 on the attended features,
//! and the attention layers, `T·Σ_k (in_k + 1)·C_k` parameters (`in_k = C_k` at stage 0,
//! `2 C_k` after), per pixel on feature maps.

use rand::Rng;
use tapestry_autodiff::Var;
use tapestry_data::TaskSpec;
use tapestry_nn::{Conv2d, Ctx, Linear, Module, ParamId, Params};

use super::{
    check_prefix, check_tasks, stage_shapes, LastBatchLog, ModelOutput, MultiTaskModel,
    HEADS_PREFIX, TRUNK_PREFIX,
};
use crate::error::MtlError;

/// The prefix of the attention layers' parameter names: task `t`'s at stage `k` is
/// `attention.<t>.<k>`.
pub const ATTENTION_PREFIX: &str = "attention.";

/// A shared backbone in stages with a sigmoid attention mask per task and stage.
#[derive(Debug)]
pub struct Mtan {
    stages: Vec<Box<dyn Module>>,
    /// `attention[t][k]`: task t's layer at stage k.
    attention: Vec<Vec<Box<dyn Module>>>,
    heads: Vec<Box<dyn Module>>,
    tasks: Vec<TaskSpec>,
    shared: Vec<ParamId>,
    input_shape: Vec<usize>,
    log: LastBatchLog,
}

/// Builds an [`Mtan`] model; see [`Mtan::builder`].
#[derive(Debug)]
pub struct MtanBuilder {
    stages: Vec<Box<dyn Module>>,
    heads: Vec<(TaskSpec, Box<dyn Module>)>,
    input_shape: Option<Vec<usize>>,
}

impl Mtan {
    /// Starts a model whose backbone is `stages` (parameters under `trunk.`), in order.
    pub fn builder(stages: Vec<Box<dyn Module>>) -> MtanBuilder {
        MtanBuilder { stages, heads: Vec::new(), input_shape: None }
    }

    /// The forward pass and every mask `a_t,k` (the shape of `p_k`), named
    /// `mtan.mask.<task>.<k>`.
    pub fn forward_with_masks<'t>(
        &self,
        x: Var<'t>,
        ctx: &mut Ctx<'_, 't>,
    ) -> (ModelOutput<'t>, Vec<(String, Var<'t>)>) {
        let mut shared = Vec::with_capacity(self.stages.len());
        let mut p = x;
        for stage in &self.stages {
            p = stage.forward(p, ctx);
            shared.push(p);
        }
        let mut masks = Vec::new();
        let mut representations = Vec::new();
        for (spec, layers) in self.tasks.iter().zip(&self.attention) {
            let mut attended: Option<Var<'t>> = None;
            for (k, (layer, &p)) in layers.iter().zip(&shared).enumerate() {
                let input = match attended {
                    None => p,
                    Some(prev) => Var::concat(&[p, self.stages[k].forward(prev, ctx)], 1),
                };
                let mask = layer.forward(input, ctx).sigmoid();
                attended = Some(mask * p);
                masks.push((format!("mtan.mask.{}.{k}", spec.name), mask));
            }
            representations.push(attended.expect("at least one stage"));
        }
        let outputs =
            self.heads.iter().zip(&representations).map(|(h, &z)| h.forward(z, ctx)).collect();
        (ModelOutput { representations, outputs, aux_loss: None }, masks)
    }
}

impl MtanBuilder {
    /// Adds a task with its head (parameters under `heads.<name>.`), reading the task's
    /// attended features of the last stage.
    pub fn head(mut self, spec: TaskSpec, head: impl Module + 'static) -> Self {
        self.heads.push((spec, Box::new(head)));
        self
    }

    /// The shape of one input sample; required, since it sizes the attention layers.
    pub fn input_shape(mut self, shape: &[usize]) -> Self {
        self.input_shape = Some(shape.to_vec());
        self
    }

    /// Checks the backbone and heads against `params`, registers the attention layers (task
    /// `t`'s at stage `k` as `attention.<t>.<k>`, drawn from `rng`) and assembles the model.
    ///
    /// # Errors
    /// [`MtlError::Model`] if there is no task or no stage, two tasks share a name, the input
    /// shape is missing, the backbone has no parameters, a stage's output is neither `[B, C]`
    /// nor `[B, C, H, W]`, a module's `params()` and the names under its prefix disagree, or
    /// an attention layer's name is taken.
    ///
    /// # Panics
    /// If a stage does not fit the output of the one before (the autodiff engine's shape
    /// panic).
    pub fn build<R: Rng + ?Sized>(
        self,
        params: &mut Params,
        rng: &mut R,
    ) -> Result<Mtan, MtlError> {
        let bad = |m: String| Err(MtlError::Model(m));
        let (tasks, heads): (Vec<TaskSpec>, Vec<Box<dyn Module>>) = self.heads.into_iter().unzip();
        check_tasks(&tasks)?;
        if self.stages.is_empty() {
            return bad("MTAN's backbone needs at least one stage".into());
        }
        let Some(input_shape) = self.input_shape else {
            return bad("MTAN sizes its attention layers from the input shape; give it".into());
        };
        let shared: Vec<ParamId> = self.stages.iter().flat_map(|s| s.params()).collect();
        if shared.is_empty() {
            return bad("the backbone has no parameters, so nothing is shared".into());
        }
        check_prefix(params, "the backbone", TRUNK_PREFIX, &shared)?;
        for (spec, head) in tasks.iter().zip(&heads) {
            let prefix = format!("{HEADS_PREFIX}{}.", spec.name);
            check_prefix(params, &format!("task `{}`'s head", spec.name), &prefix, &head.params())?;
        }
        let stages: Vec<&dyn Module> = self.stages.iter().map(|s| s.as_ref()).collect();
        let shapes = stage_shapes(params, &input_shape, &stages);
        let mut attention = Vec::new();
        for spec in &tasks {
            let mut layers: Vec<Box<dyn Module>> = Vec::new();
            for (k, shape) in shapes.iter().enumerate() {
                let name = format!("{ATTENTION_PREFIX}{}.{k}", spec.name);
                let (c, c_in) = (shape[0], if k == 0 { shape[0] } else { 2 * shape[0] });
                let taken = |e: tapestry_nn::NnError| MtlError::Model(e.to_string());
                let layer: Box<dyn Module> = match shape.len() {
                    1 => Box::new(Linear::new(params, &name, c_in, c, rng).map_err(taken)?),
                    3 => Box::new(Conv2d::new(params, &name, c_in, c, (1, 1), rng).map_err(taken)?),
                    _ => {
                        return bad(format!(
                            "MTAN's stage {k} gives samples of shape {shape:?}; its masks need [C] or [C, H, W]"
                        ))
                    }
                };
                layers.push(layer);
            }
            attention.push(layers);
        }
        Ok(Mtan {
            stages: self.stages,
            attention,
            heads,
            tasks,
            shared,
            input_shape,
            log: LastBatchLog::default(),
        })
    }
}

impl MultiTaskModel for Mtan {
    fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> ModelOutput<'t> {
        let (out, masks) = self.forward_with_masks(x, ctx);
        self.log.record(ctx, || {
            let mut entries: Vec<(String, Vec<f64>)> = Vec::new();
            for (spec, chunk) in self.tasks.iter().zip(masks.chunks(self.stages.len())) {
                let means = chunk
                    .iter()
                    .map(|(_, m)| m.value().sum_all() / m.value().len() as f64)
                    .collect();
                entries.push((format!("mtan.mask.{}", spec.name), means));
            }
            entries
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

    /// Per task, `mtan.mask.<task>`: the mean of its mask at each stage over the last training
    /// batch (1 lets the shared features through, 0 blocks them).
    fn diagnostics(&self) -> Vec<(String, Vec<f64>)> {
        self.log.entries()
    }
}
