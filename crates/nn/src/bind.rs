//! `Bound`: a [`Params`](crate::Params) store placed on one step's tape.
//!
//! Binding makes one leaf per parameter; [`Bound::var`] hands out its [`Var`]. After a backward
//! pass, [`Bound::grads`] turns the tape's [`Grads`] back into [`ParamGrads`] keyed by
//! [`ParamId`]. For per-task gradients on a subset (the shared trunk), [`Bound::vars`] gives the
//! subset's Vars for [`Tape::grad`], and [`Bound::flatten`] / [`Bound::flatten_batched`] lay the
//! gradients out as one row per task in a fixed order: the order of the ids, each parameter's
//! elements in row-major order.

use ndarray::Array2;
use tapestry_autodiff::{BatchedGrads, Grads, Tape, Var};

use crate::grads::ParamGrads;
use crate::params::ParamId;

/// The parameters of a store as leaves on one tape; lives as long as the tape's step.
#[derive(Clone, Debug)]
pub struct Bound<'t> {
    vars: Vec<Var<'t>>,
}

impl<'t> Bound<'t> {
    pub(crate) fn new(vars: Vec<Var<'t>>) -> Self {
        Bound { vars }
    }

    /// The leaf of parameter `id`.
    ///
    /// # Panics
    /// If `id` is not from the store that was bound.
    pub fn var(&self, id: ParamId) -> Var<'t> {
        self.vars[id.index()]
    }

    /// The leaves of the parameters `ids`, in that order.
    ///
    /// # Panics
    /// If an id is not from the store that was bound.
    pub fn vars(&self, ids: &[ParamId]) -> Vec<Var<'t>> {
        ids.iter().map(|&id| self.var(id)).collect()
    }

    /// The leaves of every parameter, in registration order.
    pub fn all_vars(&self) -> &[Var<'t>] {
        &self.vars
    }

    /// The number of bound parameters.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// True if the store was empty.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// The tape the parameters were bound to.
    ///
    /// # Panics
    /// If the store was empty.
    pub fn tape(&self) -> &'t Tape {
        self.vars.first().expect("an empty store was bound").tape()
    }

    /// The gradients of every parameter from one backward pass (of [`Tape::backward`] or
    /// [`Tape::grad`]); zeros for parameters the root does not reach or that were not asked for.
    pub fn grads(&self, grads: &Grads) -> ParamGrads {
        ParamGrads::from_tensors(self.vars.iter().map(|&v| grads.wrt(v)).collect())
    }

    /// The gradients of root `task` of a batched pass, for every parameter.
    ///
    /// # Panics
    /// If `task >= batched.tasks()`.
    pub fn task_grads(&self, batched: &BatchedGrads, task: usize) -> ParamGrads {
        let tensors = self
            .vars
            .iter()
            .map(|&v| {
                batched.get(task, v).unwrap_or_else(|| tapestry_autodiff::Tensor::zeros(&v.shape()))
            })
            .collect();
        ParamGrads::from_tensors(tensors)
    }

    /// The gradients of the parameters `ids` from one backward pass, concatenated into one
    /// vector in the order of `ids` (zeros where the root does not reach).
    ///
    /// # Panics
    /// If an id is not from the store that was bound.
    pub fn flatten(&self, grads: &Grads, ids: &[ParamId]) -> Vec<f32> {
        let mut flat = Vec::new();
        for &id in ids {
            let var = self.var(id);
            match grads.get(var) {
                Some(g) => flat.extend_from_slice(g.as_slice()),
                None => flat.resize(flat.len() + var.value().len(), 0.0),
            }
        }
        flat
    }

    /// The T per-task gradients of the parameters `ids` from one batched pass, as a T x P
    /// matrix: row t is task t's gradient flattened as by [`Bound::flatten`].
    ///
    /// # Panics
    /// If an id is not from the store that was bound.
    pub fn flatten_batched(&self, batched: &BatchedGrads, ids: &[ParamId]) -> Array2<f32> {
        let tasks = batched.tasks();
        let stacks: Vec<_> = ids.iter().map(|&id| batched.stacked(self.var(id))).collect();
        let width: usize = stacks.iter().map(|s| s.len() / tasks.max(1)).sum();
        let mut out = Array2::zeros((tasks, width));
        for t in 0..tasks {
            let mut row = out.row_mut(t);
            let row = row.as_slice_mut().expect("a fresh matrix is contiguous");
            let mut at = 0;
            for stack in &stacks {
                let n = stack.len() / tasks;
                row[at..at + n].copy_from_slice(&stack.as_slice()[t * n..(t + 1) * n]);
                at += n;
            }
        }
        out
    }
}
