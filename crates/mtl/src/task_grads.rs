//! Per-task gradients on the shared parameters: the `T × P` matrix every gradient-based
//! multi-task method starts from.
//!
//! Three ways to get them, one result type ([`TaskGradients`]):
//!
//! | mode | how | cost |
//! | --- | --- | --- |
//! | [`GradMode::Param`] | T reverse sweeps over one forward pass, one from each task loss | T full backward passes |
//! | [`GradMode::Batched`] | one reverse sweep carrying T stacked cotangents through the trunk | one backward pass with T-times larger GEMMs |
//! | representation ([`representation_gradients`]) | each task loss w.r.t. the shared representation Z only | the heads' backward only |
//!
//! `Param` and `Batched` also yield every task's gradient on *all* parameters (heads
//! included), so a weighted combination needs no further backward pass.

use std::sync::OnceLock;

use tapestry_autodiff::{BatchedGrads, Grads, Tape, Tensor, Var};

use crate::min_norm::gram_matrix;

/// How the per-task gradients on the shared parameters are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GradMode {
    /// T separate reverse sweeps over one forward pass (what reference implementations do).
    Param,
    /// One reverse sweep with T stacked cotangents.
    #[default]
    Batched,
}

/// A `T × P` matrix of per-task gradients, row `t` being task t's gradient flattened over the
/// chosen values in a fixed order.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskGradients {
    tasks: usize,
    dim: usize,
    data: Vec<f32>,
    /// The Gram matrix, computed once on first use (a `T × P` pass over the data).
    gram: OnceLock<Vec<f64>>,
}

impl TaskGradients {
    /// Wraps a row-major `tasks × dim` matrix.
    ///
    /// # Panics
    /// If `data.len() != tasks * dim`.
    pub fn new(tasks: usize, dim: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            tasks * dim,
            "TaskGradients: {tasks} x {dim} needs {} values",
            tasks * dim
        );
        TaskGradients { tasks, dim, data, gram: OnceLock::new() }
    }

    /// The number of tasks T.
    pub fn tasks(&self) -> usize {
        self.tasks
    }

    /// The length P of each gradient.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Task `t`'s gradient.
    ///
    /// # Panics
    /// If `t >= self.tasks()`.
    pub fn row(&self, t: usize) -> &[f32] {
        &self.data[t * self.dim..(t + 1) * self.dim]
    }

    /// The whole matrix, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The `T × T` Gram matrix `G[s][t] = ⟨g_s, g_t⟩` in f64, row-major (computed on the first
    /// call and kept, so the weighting and the step's statistics share one pass).
    pub fn gram(&self) -> Vec<f64> {
        self.gram.get_or_init(|| gram_matrix(&self.data, self.tasks, self.dim)).clone()
    }

    /// The Euclidean norm of each task's gradient.
    pub fn norms(&self) -> Vec<f64> {
        let g = self.gram();
        (0..self.tasks).map(|t| g[t * self.tasks + t].sqrt()).collect()
    }

    /// Pairwise cosine similarities, `T × T` row-major (0 where a gradient is zero).
    pub fn cosines(&self) -> Vec<f64> {
        cosines_from_gram(&self.gram(), self.tasks)
    }

    /// `Σ_t w_t g_t`.
    ///
    /// # Panics
    /// If `weights.len() != self.tasks()`.
    pub fn combine(&self, weights: &[f32]) -> Vec<f32> {
        assert_eq!(weights.len(), self.tasks, "one weight per task");
        let mut out = vec![0.0f32; self.dim];
        for (t, &w) in weights.iter().enumerate() {
            for (o, g) in out.iter_mut().zip(self.row(t)) {
                *o += w * g;
            }
        }
        out
    }
}

/// Cosine similarities from a Gram matrix (0 where a norm is 0).
pub fn cosines_from_gram(gram: &[f64], t: usize) -> Vec<f64> {
    let norm = |i: usize| gram[i * t + i].sqrt();
    let mut out = vec![0.0; t * t];
    for i in 0..t {
        for j in 0..t {
            let d = norm(i) * norm(j);
            out[i * t + j] = if d > 0.0 { (gram[i * t + j] / d).clamp(-1.0, 1.0) } else { 0.0 };
        }
    }
    out
}

/// The result of the per-task sweeps: each task's gradient on every leaf.
pub enum TaskSweep {
    /// One [`Grads`] store per task.
    Separate(Vec<Grads>),
    /// One batched store for all tasks.
    Batched(BatchedGrads),
}

impl TaskSweep {
    /// Runs the sweeps for the scalar `losses` in the given mode.
    ///
    /// # Panics
    /// If a loss is not a scalar.
    pub fn run(tape: &Tape, losses: &[Var<'_>], mode: GradMode) -> Self {
        match mode {
            GradMode::Param => {
                TaskSweep::Separate(losses.iter().map(|&l| tape.backward(l)).collect())
            }
            GradMode::Batched => TaskSweep::Batched(tape.backward_batched(losses)),
        }
    }

    /// The number of tasks.
    pub fn tasks(&self) -> usize {
        match self {
            TaskSweep::Separate(v) => v.len(),
            TaskSweep::Batched(b) => b.tasks(),
        }
    }

    /// Task `t`'s gradient on `var`, zeros if the task does not depend on it.
    pub fn grad(&self, t: usize, var: Var<'_>) -> Tensor {
        match self {
            TaskSweep::Separate(v) => v[t].wrt(var),
            TaskSweep::Batched(b) => b.get(t, var).unwrap_or_else(|| Tensor::zeros(&var.shape())),
        }
    }

    /// The `T × P` matrix over `vars`, flattened in the given order.
    pub fn matrix(&self, vars: &[Var<'_>]) -> TaskGradients {
        let tasks = self.tasks();
        let dim: usize = vars.iter().map(|v| v.value().len()).sum();
        let mut data = vec![0.0f32; tasks * dim];
        match self {
            TaskSweep::Separate(v) => {
                for (t, grads) in v.iter().enumerate() {
                    let mut off = t * dim;
                    for &var in vars {
                        let n = var.value().len();
                        if let Some(g) = grads.get(var) {
                            data[off..off + n].copy_from_slice(g.as_slice());
                        }
                        off += n;
                    }
                }
            }
            TaskSweep::Batched(b) => {
                let mut col = 0;
                for &var in vars {
                    let stacked = b.stacked(var);
                    let n = stacked.len() / tasks;
                    for t in 0..tasks {
                        let dst = t * dim + col;
                        data[dst..dst + n].copy_from_slice(&stacked.as_slice()[t * n..(t + 1) * n]);
                    }
                    col += n;
                }
            }
        }
        TaskGradients::new(tasks, dim, data)
    }

    /// `Σ_t w_t ∂L_t/∂var`: the gradient of the weighted loss, without another backward pass.
    ///
    /// # Panics
    /// If `weights.len()` differs from the number of tasks.
    pub fn combined(&self, weights: &[f32], var: Var<'_>) -> Tensor {
        assert_eq!(weights.len(), self.tasks(), "one weight per task");
        let n = var.value().len();
        let mut out = vec![0.0f32; n];
        let mut add = |w: f32, g: &[f32]| {
            for (o, v) in out.iter_mut().zip(g) {
                *o += w * v;
            }
        };
        match self {
            TaskSweep::Separate(v) => {
                for (grads, &w) in v.iter().zip(weights) {
                    if let Some(g) = grads.get(var) {
                        add(w, g.as_slice());
                    }
                }
            }
            // One pass over the stack, without copying each task's row out first.
            TaskSweep::Batched(b) => {
                let stacked = b.stacked(var);
                for (row, &w) in stacked.as_slice().chunks(n.max(1)).zip(weights) {
                    add(w, row);
                }
            }
        }
        Tensor::from_vec(&var.shape(), out).expect("shape of var")
    }
}

/// Each task loss's gradient with respect to the shared representation `z` (MGDA-UB): a
/// `T × |z|` matrix. Only the heads are swept.
pub fn representation_gradients(tape: &Tape, losses: &[Var<'_>], z: Var<'_>) -> TaskGradients {
    let b = tape.grad_batched(losses, &[z]);
    let stacked = b.stacked(z);
    TaskGradients::new(losses.len(), z.value().len(), stacked.to_vec())
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
