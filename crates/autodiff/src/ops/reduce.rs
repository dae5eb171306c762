//! Reductions over chosen axes, with or without keeping the reduced axes.
//!
//! | op | forward | backward |
//! | --- | --- | --- |
//! | sum | y = Σₐ x | x̄ = g broadcast back over the reduced axes |
//! | mean | y = Σₐ x / n | x̄ = g / n broadcast back |
//!
//! Every rule first puts the reduced axes back as size 1 (`keep_shape`), then broadcasts.

use ndarray::Axis;

use crate::backward::Ctx;
use crate::broadcast::broadcast_to;
use crate::error::invalid;
use crate::ops::{Family, Op};
use crate::tape::{NodeId, Var};
use crate::tensor::Tensor;

/// Reduction ops; `axes` are sorted, unique and in range.
pub(crate) enum ReduceOp {
    Sum { x: NodeId, axes: Vec<usize> },
    Mean { x: NodeId, axes: Vec<usize> },
}

/// Sorted, unique, in-range axes; an empty list means all axes.
///
/// # Panics
/// If an axis is out of range.
pub(crate) fn normalise_axes(op: &'static str, axes: &[usize], ndim: usize) -> Vec<usize> {
    let mut v: Vec<usize> = if axes.is_empty() { (0..ndim).collect() } else { axes.to_vec() };
    if let Some(&bad) = v.iter().find(|&&a| a >= ndim) {
        invalid(op, format!("axis {bad} out of range for {ndim} axes"));
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// The input shape with the reduced axes set to 1.
pub(crate) fn keep_shape(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    shape.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect()
}

/// `[lead.., shape..]`: a node shape behind the cotangent's leading task axes.
pub(crate) fn with_lead(g: &Tensor, lead: usize, shape: &[usize]) -> Vec<usize> {
    let mut s = g.shape()[..lead].to_vec();
    s.extend_from_slice(shape);
    s
}

/// Spreads the cotangent of a reduction back over the input's shape.
pub(crate) fn unreduce(g: &Tensor, lead: usize, in_shape: &[usize], axes: &[usize]) -> Tensor {
    let kept = g.reshape(&with_lead(g, lead, &keep_shape(in_shape, axes))).expect("same size");
    broadcast_to(&kept, &with_lead(g, lead, in_shape))
}

fn sum_axes(x: &Tensor, axes: &[usize], keepdim: bool) -> Tensor {
    let mut arr = x.array().view().to_owned();
    for &ax in axes.iter().rev() {
        arr = arr.sum_axis(Axis(ax));
    }
    let t = Tensor::from_array(arr);
    if keepdim {
        t.reshape(&keep_shape(x.shape(), axes)).expect("same size")
    } else {
        t
    }
}

fn count(shape: &[usize], axes: &[usize]) -> usize {
    axes.iter().map(|&a| shape[a]).product()
}

impl<'t> Var<'t> {
    /// Sum over `axes` (all axes if empty); with `keepdim` the reduced axes stay as size 1.
    ///
    /// # Panics
    /// If an axis is out of range.
    pub fn sum(self, axes: &[usize], keepdim: bool) -> Var<'t> {
        let x = self.value();
        let axes = normalise_axes("sum", axes, x.ndim());
        let value = sum_axes(&x, &axes, keepdim);
        self.record(value, Op::Reduce(ReduceOp::Sum { x: self.id, axes }))
    }

    /// Sum of all elements, as a scalar (shape `[]`).
    pub fn sum_all(self) -> Var<'t> {
        self.sum(&[], false)
    }

    /// Mean over `axes` (all axes if empty); with `keepdim` the reduced axes stay as size 1.
    ///
    /// # Panics
    /// If an axis is out of range.
    pub fn mean(self, axes: &[usize], keepdim: bool) -> Var<'t> {
        let x = self.value();
        let axes = normalise_axes("mean", axes, x.ndim());
        let n = count(x.shape(), &axes) as f32;
        let value = sum_axes(&x, &axes, keepdim).map(|v| v / n);
        self.record(value, Op::Reduce(ReduceOp::Mean { x: self.id, axes }))
    }

    /// Mean of all elements, as a scalar (shape `[]`).
    pub fn mean_all(self) -> Var<'t> {
        self.mean(&[], false)
    }
}

impl Family for ReduceOp {
    fn name(&self) -> &'static str {
        match self {
            ReduceOp::Sum { .. } => "sum",
            ReduceOp::Mean { .. } => "mean",
        }
    }

    fn for_each_input(&self, f: &mut dyn FnMut(NodeId)) {
        match *self {
            ReduceOp::Sum { x, .. } | ReduceOp::Mean { x, .. } => f(x),
        }
    }

    fn backward(&self, _out: &Tensor, g: &Tensor, ctx: &mut Ctx<'_>) {
        let lead = ctx.lead();
        match self {
            ReduceOp::Sum { x, axes } => {
                let shape = ctx.value(*x).shape();
                ctx.acc(*x, || unreduce(g, lead, shape, axes))
            }
            ReduceOp::Mean { x, axes } => {
                let shape = ctx.value(*x).shape();
                let n = count(shape, axes) as f32;
                ctx.acc(*x, || unreduce(g, lead, shape, axes).map(|v| v / n))
            }
        }
    }
}
