//! Per-task gradients: the `T × P` matrix every gradient-based multi-task method starts from.
//!
//! [`TaskGradients`] is the one type that holds them. It keeps one block per value it was taken
//! on (a parameter of the shared trunk, or the shared representation `Z`): the T gradients of
//! that value stacked as `[T, ..shape]`, exactly as the batched sweep produces them, so nothing
//! is copied into a separate matrix. The columns of the `T × P` matrix are the blocks in order,
//! each parameter's elements row-major; [`TaskGradients::range`] gives a parameter's columns.
//! The Gram matrix `G = Σ_blocks B Bᵀ` is computed once, block by block, and the norms and
//! cosines come from it.
//!
//! | mode | how | cost |
//! | --- | --- | --- |
//! | [`GradMode::Param`] | T reverse sweeps over one forward pass, one from each task loss | T backward passes of the trunk |
//! | [`GradMode::Batched`] | one reverse sweep carrying T stacked cotangents through the trunk | one backward pass with T-times larger GEMMs |
//! | [`GradMode::Gram`] | the batched sweep, each parameter's T gradients reduced to their `T × T` Gram as they complete | the batched sweep, then one weighted backward for the update |
//! | at the representation ([`TaskGradients::at`]) | each task loss w.r.t. `Z` only | the heads' backward only |
//!
//! Methods that read only the Gram take [`gram_on_params`] instead, which never holds `T × P`.

use std::ops::Range;
use std::sync::OnceLock;

use tapestry_autodiff::{Tape, Tensor, Var};
use tapestry_nn::{Bound, ParamId};

use crate::min_norm::gram_matrix;

/// How the per-task gradients on the shared parameters are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GradMode {
    /// T separate reverse sweeps over one forward pass (what reference implementations do).
    Param,
    /// One reverse sweep with T stacked cotangents.
    #[default]
    Batched,
    /// For what needs only their `T × T` Gram (the methods that read nothing else, and the
    /// cosines): one batched sweep that reduces each parameter's block to its Gram as it
    /// completes and never holds `T × P` ([`gram_on_params`]); the update then takes one more
    /// weighted backward. Less memory than `Batched`, one backward more. Where the `T × P`
    /// gradients are needed they are formed as with `Batched`.
    Gram,
}

/// One value's T gradients.
#[derive(Debug, Clone, PartialEq)]
struct Block {
    /// The parameter, or `None` for a value that is not one (the representation).
    param: Option<ParamId>,
    /// `[T, ..shape]`.
    stacked: Tensor,
}

/// T per-task gradients on a list of values, as a `T × P` matrix of blocks; see the module
/// docs.
#[derive(Debug, Clone)]
pub struct TaskGradients {
    tasks: usize,
    blocks: Vec<Block>,
    /// `Σ_b B_b B_bᵀ` in f64, computed on first use.
    gram: OnceLock<Vec<f64>>,
}

impl PartialEq for TaskGradients {
    fn eq(&self, other: &Self) -> bool {
        self.tasks == other.tasks && self.blocks == other.blocks
    }
}

/// `[T, ..shape]`.
fn with_tasks(tasks: usize, shape: &[usize]) -> Vec<usize> {
    std::iter::once(tasks).chain(shape.iter().copied()).collect()
}

impl TaskGradients {
    /// The gradients of each scalar loss with respect to each of `values` (parameters or
    /// intermediate values), in `mode`. Only the part of the graph between `values` and the
    /// losses is swept.
    ///
    /// # Panics
    /// If a loss is not a scalar.
    pub fn compute(tape: &Tape, losses: &[Var<'_>], values: &[Var<'_>], mode: GradMode) -> Self {
        let tasks = losses.len();
        let stacked: Vec<Tensor> = match mode {
            GradMode::Batched | GradMode::Gram => {
                let b = tape.grad_batched(losses, values);
                values.iter().map(|&v| b.stacked(v)).collect()
            }
            GradMode::Param => {
                let per_task: Vec<_> = losses.iter().map(|&l| tape.grad(l, values)).collect();
                values
                    .iter()
                    .map(|&v| {
                        let mut data = Vec::with_capacity(tasks * v.value().len());
                        for g in &per_task {
                            data.extend_from_slice(g.wrt(v).as_slice());
                        }
                        Tensor::from_vec(&with_tasks(tasks, &v.shape()), data).expect("shape")
                    })
                    .collect()
            }
        };
        let blocks = stacked.into_iter().map(|stacked| Block { param: None, stacked }).collect();
        TaskGradients { tasks, blocks, gram: OnceLock::new() }
    }

    /// The gradients of each loss on the parameters `ids` of a bound store, each block keyed by
    /// its parameter.
    ///
    /// # Panics
    /// If a loss is not a scalar or an id is not from the bound store.
    pub fn on_params(
        tape: &Tape,
        losses: &[Var<'_>],
        bound: &Bound<'_>,
        ids: &[ParamId],
        mode: GradMode,
    ) -> Self {
        let mut g = Self::compute(tape, losses, &bound.vars(ids), mode);
        for (block, &id) in g.blocks.iter_mut().zip(ids) {
            block.param = Some(id);
        }
        g
    }

    /// Each task loss's gradient with respect to the representation `z` (MGDA-UB): one block;
    /// only the heads are swept.
    pub fn at(tape: &Tape, losses: &[Var<'_>], z: Var<'_>) -> Self {
        Self::compute(tape, losses, &[z], GradMode::Batched)
    }

    /// A fixed row-major `tasks × dim` matrix as one block (for tests and for methods that
    /// build a matrix of their own).
    ///
    /// # Panics
    /// If `data.len() != tasks * dim`.
    pub fn from_matrix(tasks: usize, dim: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), tasks * dim, "{tasks} x {dim} needs {} values", tasks * dim);
        let stacked = Tensor::from_vec(&[tasks, dim], data).expect("shape");
        TaskGradients { tasks, blocks: vec![Block { param: None, stacked }], gram: OnceLock::new() }
    }

    /// The number of tasks T.
    pub fn tasks(&self) -> usize {
        self.tasks
    }

    /// The length P of each gradient (all blocks).
    pub fn dim(&self) -> usize {
        self.blocks.iter().map(|b| b.stacked.len() / self.tasks.max(1)).sum()
    }

    /// The number of blocks (values the gradients were taken on).
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Block `b`'s T gradients, `[T, ..shape]`, and its parameter, if it is one.
    ///
    /// # Panics
    /// If `b >= self.blocks()`.
    pub fn block(&self, b: usize) -> (Option<ParamId>, &Tensor) {
        (self.blocks[b].param, &self.blocks[b].stacked)
    }

    /// The columns of parameter `id` in the `T × P` matrix, if it has a block.
    pub fn range(&self, id: ParamId) -> Option<Range<usize>> {
        let mut at = 0;
        for b in &self.blocks {
            let n = b.stacked.len() / self.tasks.max(1);
            if b.param == Some(id) {
                return Some(at..at + n);
            }
            at += n;
        }
        None
    }

    /// Task `t`'s gradient over every block, flattened in column order.
    ///
    /// # Panics
    /// If `t >= self.tasks()`.
    pub fn row(&self, t: usize) -> Vec<f32> {
        assert!(t < self.tasks, "task {t} out of range for {} tasks", self.tasks);
        let mut row = Vec::with_capacity(self.dim());
        for b in &self.blocks {
            let n = b.stacked.len() / self.tasks;
            row.extend_from_slice(&b.stacked.as_slice()[t * n..(t + 1) * n]);
        }
        row
    }

    /// The whole `T × P` matrix, row-major.
    pub fn matrix(&self) -> Vec<f32> {
        (0..self.tasks).flat_map(|t| self.row(t)).collect()
    }

    /// The `T × T` Gram matrix of block `b` alone (a per-layer Gram).
    ///
    /// # Panics
    /// If `b >= self.blocks()`.
    pub fn block_gram(&self, b: usize) -> Vec<f64> {
        let s = &self.blocks[b].stacked;
        gram_matrix(s.as_slice(), self.tasks, s.len() / self.tasks.max(1))
    }

    /// The `T × T` Gram matrix `G[s][t] = ⟨g_s, g_t⟩` in f64, row-major: the sum of the
    /// blocks' Grams in block order (computed on the first call and kept).
    pub fn gram(&self) -> &[f64] {
        self.gram.get_or_init(|| {
            let mut g = vec![0.0; self.tasks * self.tasks];
            for b in 0..self.blocks.len() {
                for (acc, v) in g.iter_mut().zip(self.block_gram(b)) {
                    *acc += v;
                }
            }
            g
        })
    }

    /// The Euclidean norm of each task's gradient.
    pub fn norms(&self) -> Vec<f64> {
        gram_norms(self.gram(), self.tasks)
    }

    /// Pairwise cosine similarities, `T × T` row-major (0 where a gradient is zero).
    pub fn cosines(&self) -> Vec<f64> {
        gram_cosines(self.gram(), self.tasks)
    }

    /// `Σ_t w_t g_t`, one tensor per block with the block's value's shape.
    ///
    /// # Panics
    /// If `weights.len() != self.tasks()`.
    pub fn combine(&self, weights: &[f32]) -> Vec<Tensor> {
        assert_eq!(weights.len(), self.tasks, "one weight per task");
        self.blocks
            .iter()
            .map(|b| {
                let n = b.stacked.len() / self.tasks.max(1);
                let mut out = vec![0.0f32; n];
                for (row, &w) in b.stacked.as_slice().chunks(n.max(1)).zip(weights) {
                    for (o, g) in out.iter_mut().zip(row) {
                        *o += w * g;
                    }
                }
                Tensor::from_vec(&b.stacked.shape()[1..], out).expect("shape")
            })
            .collect()
    }

    /// A flat direction of length P cut into one tensor per block (the inverse of flattening a
    /// row), for methods that return a direction instead of weights.
    ///
    /// # Panics
    /// If `direction.len() != self.dim()`.
    pub fn split(&self, direction: &[f32]) -> Vec<Tensor> {
        assert_eq!(direction.len(), self.dim(), "a direction of {} values", self.dim());
        let mut at = 0;
        self.blocks
            .iter()
            .map(|b| {
                let shape = &b.stacked.shape()[1..];
                let n: usize = shape.iter().product();
                at += n;
                Tensor::from_vec(shape, direction[at - n..at].to_vec()).expect("shape")
            })
            .collect()
    }
}

/// `‖g_t‖` for each task, from the `T × T` Gram `gram` (row-major): the square roots of its
/// diagonal.
///
/// # Panics
/// If `gram` has fewer than `t²` entries.
pub fn gram_norms(gram: &[f64], t: usize) -> Vec<f64> {
    (0..t).map(|i| gram[i * t + i].max(0.0).sqrt()).collect()
}

/// `cos(g_s, g_t)`, `T × T` row-major, from the Gram `gram` (0 where a gradient is zero).
///
/// # Panics
/// If `gram` has fewer than `t²` entries.
pub fn gram_cosines(gram: &[f64], t: usize) -> Vec<f64> {
    let norms = gram_norms(gram, t);
    let mut out = vec![0.0; t * t];
    for i in 0..t {
        for j in 0..t {
            let d = norms[i] * norms[j];
            out[i * t + j] = if d > 0.0 { (gram[i * t + j] / d).clamp(-1.0, 1.0) } else { 0.0 };
        }
    }
    out
}

/// The `T × T` Gram of each loss's gradient on the parameters `ids` of a bound store, in f64,
/// row-major, without ever holding the `T × P` gradients: one batched sweep that reduces each
/// parameter's block to its Gram as soon as it is complete, with the Gram identity for a linear
/// layer's weight where it is cheaper ([`Tape::grad_grams_batched`]). The per-parameter Grams
/// are summed in the order of `ids`, as [`TaskGradients::gram`] sums its blocks, and the result
/// equals that Gram to rounding.
///
/// # Panics
/// If a loss is not a scalar or an id is not from the bound store.
pub fn gram_on_params(
    tape: &Tape,
    losses: &[Var<'_>],
    bound: &Bound<'_>,
    ids: &[ParamId],
) -> Vec<f64> {
    let t = losses.len();
    let mut gram = vec![0.0; t * t];
    for block in tape.grad_grams_batched(losses, &bound.vars(ids)) {
        for (acc, v) in gram.iter_mut().zip(block) {
            *acc += v;
        }
    }
    gram
}

/// The gradient norm of each task loss on one value `w` (GradNorm's `‖∇_W L_t‖`). Only the part
/// of the graph between `w` and the losses is swept.
///
/// When `w` is the weight of one linear layer (GradNorm's default, the last shared layer), the
/// norms come from the Gram identity without forming the gradients
/// ([`Tape::grad_norms_batched`]).
pub fn layer_gradient_norms(tape: &Tape, losses: &[Var<'_>], w: Var<'_>) -> Vec<f64> {
    tape.grad_norms_batched(losses, w)
}
