//! Reductions over chosen axes, with or without keeping the reduced axes.
//!
//! | op | forward | backward |
//! | --- | --- | --- |
//! | sum | y = Σₐ x | x̄ = g broadcast back over the reduced axes |
//! | mean | y = Σₐ x / n | x̄ = g / n broadcast back |
//! | max | y = maxₐ x | x̄ = g at the arg-max (the first, on ties), 0 elsewhere |
//! | logsumexp | y = m + ln Σₐ e^(x − m), m = maxₐ x | x̄ = g·e^(x − y) (the softmax) |
//! | var | y = Σₐ (x − μ)² / (n − c), c = 1 if unbiased else 0 | x̄ = g·2(x − μ)/(n − c) |
//!
//! Sums over adjacent axes (all of them, leading ones, trailing ones) and the broadcasts back run
//! on the elementwise kernels, in their fixed order; max, logsumexp and var gather their lanes
//! through ndarray.
//!
//! Every rule first puts the reduced axes back as size 1 (`keep_shape`), then broadcasts. The
//! arg-max is found in the forward pass and kept as one flat input index per output element,
//! so the rule for max is a scatter-add. In var, the Σ(x − μ) = 0 term from μ's own dependence
//! on x vanishes, which is why μ needs no cotangent of its own.

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};

use crate::backward::Ctx;
use crate::broadcast::{broadcast_to, runs, sum_middle, zip_map};
use crate::error::invalid;
use crate::graph::GraphCtx;
use crate::ops::shape::scatter_add;
use crate::ops::{Family, Op};
use crate::tape::{NodeId, Var};
use crate::tensor::Tensor;

/// Reduction ops; `axes` are sorted, unique and in range. For `Max`, `arg` holds the flat input
/// index of each output element's maximum; for `Var`, the divisor is `n − correction`.
#[derive(Clone)]
pub(crate) enum ReduceOp {
    Sum { x: NodeId, axes: Vec<usize> },
    Mean { x: NodeId, axes: Vec<usize> },
    Max { x: NodeId, arg: Vec<usize> },
    LogSumExp { x: NodeId, axes: Vec<usize> },
    Var { x: NodeId, axes: Vec<usize>, correction: usize },
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
    let shape = reduced_shape(x.shape(), axes, keepdim);
    if let Some(r) = runs(x.shape(), |i| axes.contains(&i)) {
        // The reduced axes are adjacent: a sum of rows or over rows on the kernels.
        return Tensor::from_kernel(&shape, |out| sum_middle(x.as_slice(), r, out));
    }
    let mut arr = x.to_array();
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

/// The output shape of a reduction: reduced axes kept as 1, or dropped.
fn reduced_shape(shape: &[usize], axes: &[usize], keepdim: bool) -> Vec<usize> {
    if keepdim {
        return keep_shape(shape, axes);
    }
    shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect()
}

/// The elements of `a` with the kept axes first and the reduced axes last, in row-major
/// order: lane `i`, a run of `count(shape, axes)` elements, reduces to output element `i`.
fn lanes<A: Clone>(a: ArrayViewD<'_, A>, axes: &[usize]) -> Vec<A> {
    let perm: Vec<usize> =
        (0..a.ndim()).filter(|i| !axes.contains(i)).chain(axes.iter().copied()).collect();
    a.permuted_axes(IxDyn(&perm)).iter().cloned().collect()
}

/// `f` applied to every lane of `x` (see [`lanes`]), shaped as the reduction's output.
fn reduce_lanes(x: &Tensor, axes: &[usize], keepdim: bool, f: impl Fn(&[f32]) -> f32) -> Tensor {
    let shape = reduced_shape(x.shape(), axes, keepdim);
    let n = count(x.shape(), axes);
    let data = lanes(x.view(), axes);
    let outputs: usize = shape.iter().product();
    let values = (0..outputs).map(|i| f(&data[i * n..(i + 1) * n])).collect();
    Tensor::from_vec(&shape, values).expect("one value per lane")
}

/// The position of the first maximum of a non-empty lane; NaN wins, as in PyTorch.
fn first_argmax(lane: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in lane.iter().enumerate().skip(1) {
        if lane[best].is_nan() {
            break;
        }
        if v > lane[best] || v.is_nan() {
            best = i;
        }
    }
    best
}

/// ln Σ eˣ of a lane, shifted by its maximum so no term overflows.
fn logsumexp_lane(lane: &[f32]) -> f32 {
    let m = lane.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // All -inf (or an inf): no shift, so the result is -inf (or inf) rather than NaN.
    let m = if m.is_finite() { m } else { 0.0 };
    let s: f64 = lane.iter().map(|&v| ((v - m) as f64).exp()).sum();
    m + s.ln() as f32
}

/// Σ(x − μ)²/(n − correction) of a lane, accumulated in f64.
fn var_lane(lane: &[f32], correction: usize) -> f32 {
    let n = lane.len();
    let mean = lane.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let ss: f64 = lane.iter().map(|&v| (v as f64 - mean).powi(2)).sum();
    (ss / n.saturating_sub(correction) as f64) as f32
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

    /// Maximum over `axes` (all axes if empty); with `keepdim` the reduced axes stay as size 1.
    /// The gradient goes to one arg-max per output element: the first in row-major order over
    /// the reduced axes on ties, as PyTorch's `max(dim)`.
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(&[2, 3], vec![1., 5., 5., 7., 2., 3.]).unwrap());
    /// let y = x.max(&[1], false);
    /// assert_eq!(y.value().to_vec(), vec![5., 7.]);
    /// let g = tape.backward(y.sum_all());
    /// assert_eq!(g.wrt(x).to_vec(), vec![0., 1., 0., 1., 0., 0.]);
    /// ```
    ///
    /// # Panics
    /// If an axis is out of range, or a reduced axis has size 0.
    pub fn max(self, axes: &[usize], keepdim: bool) -> Var<'t> {
        let x = self.value();
        let axes = normalise_axes("max", axes, x.ndim());
        let n = count(x.shape(), &axes);
        if n == 0 {
            invalid("max", format!("empty reduction over axes {axes:?} of shape {:?}", x.shape()));
        }
        let flat = ArrayD::from_shape_vec(IxDyn(x.shape()), (0..x.len()).collect())
            .expect("one index per element");
        let (data, index) = (lanes(x.view(), &axes), lanes(flat.view(), &axes));
        let (values, arg): (Vec<f32>, Vec<usize>) = data
            .chunks(n)
            .zip(index.chunks(n))
            .map(|(lane, idx)| {
                let k = first_argmax(lane);
                (lane[k], idx[k])
            })
            .unzip();
        let value = Tensor::from_vec(&reduced_shape(x.shape(), &axes, keepdim), values)
            .expect("one value per lane");
        self.record(value, Op::Reduce(ReduceOp::Max { x: self.id, arg }))
    }

    /// ln Σ eˣ over `axes` (all axes if empty), computed as m + ln Σ e^(x − m) with m the
    /// maximum, so it is finite for every finite input; with `keepdim` the reduced axes stay
    /// as size 1.
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from(vec![1e4, 1e4]));
    /// let y = x.logsumexp(&[0], false).value().item();
    /// assert!((y - (1e4 + 2f32.ln())).abs() < 1e-2);
    /// ```
    ///
    /// # Panics
    /// If an axis is out of range.
    pub fn logsumexp(self, axes: &[usize], keepdim: bool) -> Var<'t> {
        let x = self.value();
        let axes = normalise_axes("logsumexp", axes, x.ndim());
        let value = reduce_lanes(&x, &axes, keepdim, logsumexp_lane);
        self.record(value, Op::Reduce(ReduceOp::LogSumExp { x: self.id, axes }))
    }

    /// Variance over `axes` (all axes if empty): Σ(x − μ)²/(n − 1) if `unbiased` (PyTorch's
    /// default for `torch.var`), else Σ(x − μ)²/n; with `keepdim` the reduced axes stay as
    /// size 1. As in PyTorch, the unbiased variance of a single element is NaN.
    ///
    /// # Panics
    /// If an axis is out of range.
    pub fn var(self, axes: &[usize], unbiased: bool, keepdim: bool) -> Var<'t> {
        let x = self.value();
        let axes = normalise_axes("var", axes, x.ndim());
        let correction = usize::from(unbiased);
        let value = reduce_lanes(&x, &axes, keepdim, |lane| var_lane(lane, correction));
        self.record(value, Op::Reduce(ReduceOp::Var { x: self.id, axes, correction }))
    }
}

impl Family for ReduceOp {
    fn name(&self) -> &'static str {
        match self {
            ReduceOp::Sum { .. } => "sum",
            ReduceOp::Mean { .. } => "mean",
            ReduceOp::Max { .. } => "max",
            ReduceOp::LogSumExp { .. } => "logsumexp",
            ReduceOp::Var { .. } => "var",
        }
    }

    fn for_each_input(&self, f: &mut dyn FnMut(NodeId)) {
        match *self {
            ReduceOp::Sum { x, .. } | ReduceOp::Mean { x, .. } | ReduceOp::Max { x, .. } => f(x),
            ReduceOp::LogSumExp { x, .. } | ReduceOp::Var { x, .. } => f(x),
        }
    }

    fn backward(&self, out: &Tensor, g: &Tensor, ctx: &mut Ctx<'_>) {
        let lead = ctx.lead();
        match self {
            ReduceOp::Sum { x, axes } => {
                let shape = ctx.value(*x).shape();
                ctx.acc(*x, || unreduce(g, lead, shape, axes))
            }
            ReduceOp::Mean { x, axes } => {
                let shape = ctx.value(*x).shape();
                let n = count(shape, axes) as f32;
                ctx.acc(*x, || unreduce(&g.map(|v| v / n), lead, shape, axes))
            }
            ReduceOp::Max { x, arg } => {
                let shape = ctx.value(*x).shape();
                ctx.acc(*x, || scatter_add(g, lead, shape, arg))
            }
            ReduceOp::LogSumExp { x, axes } => {
                let vx = ctx.value(*x);
                let y = out.reshape(&keep_shape(vx.shape(), axes)).expect("same size");
                let softmax = zip_map("logsumexp backward", vx, &y, |x, y| (x - y).exp());
                let gx = || {
                    zip_map(
                        "logsumexp backward",
                        &unreduce(g, lead, vx.shape(), axes),
                        &softmax,
                        |g, s| g * s,
                    )
                };
                ctx.acc(*x, gx)
            }
            ReduceOp::Var { x, axes, correction } => {
                let vx = ctx.value(*x);
                let n = count(vx.shape(), axes);
                let scale = 2.0 / n.saturating_sub(*correction) as f32;
                let mean = sum_axes(vx, axes, true).map(|v| v / n as f32);
                let local = zip_map("var backward", vx, &mean, |x, m| scale * (x - m));
                let gx = || {
                    zip_map("var backward", &unreduce(g, lead, vx.shape(), axes), &local, |g, l| {
                        g * l
                    })
                };
                ctx.acc(*x, gx)
            }
        }
    }

    fn backward_graph<'t>(&self, out: Var<'t>, g: Var<'t>, ctx: &mut GraphCtx<'t>) {
        match self {
            ReduceOp::Sum { x, axes } => {
                let vx = ctx.var(*x);
                ctx.acc(*x, || unreduce_var(g, &vx.shape(), axes))
            }
            ReduceOp::Mean { x, axes } => {
                let vx = ctx.var(*x);
                let n = count(&vx.shape(), axes) as f32;
                ctx.acc(*x, || unreduce_var(g, &vx.shape(), axes) * (1.0 / n))
            }
            ReduceOp::Max { x, arg } => {
                let shape = ctx.var(*x).shape();
                ctx.acc(*x, || g.reshape(&[arg.len()]).scatter_add(arg.clone(), &shape))
            }
            ReduceOp::LogSumExp { x, axes } => {
                let vx = ctx.var(*x);
                let shape = vx.shape();
                let y = out.reshape(&keep_shape(&shape, axes));
                ctx.acc(*x, || unreduce_var(g, &shape, axes) * (vx - y).exp())
            }
            ReduceOp::Var { x, axes, correction } => {
                let vx = ctx.var(*x);
                let shape = vx.shape();
                let n = count(&shape, axes);
                let scale = 2.0 / n.saturating_sub(*correction) as f32;
                ctx.acc(*x, || {
                    let centred = vx - vx.mean(axes, true);
                    unreduce_var(g, &shape, axes) * centred * scale
                })
            }
        }
    }
}

/// `g` with the reduced axes put back as size 1, broadcast to `in_shape` (recorded).
fn unreduce_var<'t>(g: Var<'t>, in_shape: &[usize], axes: &[usize]) -> Var<'t> {
    g.reshape(&keep_shape(in_shape, axes)).broadcast_to(in_shape)
}
