//! Shape ops: they move, copy or select elements, never combine them.
//!
//! | op | forward | backward (cotangent `g` of the output) |
//! | --- | --- | --- |
//! | reshape | the same elements under a new shape | x̄ = g reshaped back |
//! | permute | y = x with axes reordered by p | x̄ = g permuted by p⁻¹ |
//! | transpose | permute swapping two axes | x̄ = g with the two axes swapped back |
//! | broadcast_to | x stretched over new and size-1 axes | x̄ = g summed over the stretched axes |
//! | narrow, slice | y = x[start..end; step] along an axis | x̄ = zeros, with g written at the slice |
//! | concat | y = [x₁ x₂ …] along an axis | x̄ᵢ = the slice of g where xᵢ was placed |
//! | stack | y = [x₁ x₂ …] along a new axis | x̄ᵢ = g at position i of the new axis |
//! | index_select | `y = x[idx]` along an axis | x̄ = zeros, with g scatter-added at idx |
//! | gather | `y[p] = x[p with axis coordinate index[p]]` | x̄ = zeros, with g scatter-added there |
//! | scatter_add | y = zeros, `y[from[i]] += x[i]` (flat positions) | x̄ = `g[from[i]]` (a gather) |
//!
//! The recorded rules of the selecting ops (slice, index_select, gather, and max and max-pool
//! elsewhere) are one `scatter_add` by the flat positions the op read, and the recorded rule of
//! `scatter_add` is the gather by the same positions, so every order of derivative exists.
//!
//! Every rule addresses axes of `g` behind its leading task axes (`lead + axis`). Indexing ops
//! scatter-*add*, so an index that repeats collects the cotangent of every copy.

use ndarray::{ArrayD, Axis, IxDyn, Slice};

use crate::backward::Ctx;
use crate::broadcast::broadcast_to;
use crate::error::{invalid, shape_panic};
use crate::graph::GraphCtx;
use crate::ops::reduce::with_lead;
use crate::ops::{Family, Op};
use crate::tape::{NodeId, Var};
use crate::tensor::Tensor;

/// Shape ops: inputs, and what their rules need to put cotangents back. In `Permute`, `axes[i]`
/// is the input axis that becomes output axis `i`; in `Slice`, the output's length along `axis`
/// gives the end; in `Gather`, `from` holds the flat input index of every output element.
#[derive(Clone)]
pub(crate) enum ShapeOp {
    Reshape(NodeId),
    Permute { x: NodeId, axes: Vec<usize> },
    BroadcastTo(NodeId),
    Slice { x: NodeId, axis: usize, start: usize, step: usize },
    Concat { xs: Vec<NodeId>, axis: usize },
    Stack { xs: Vec<NodeId>, axis: usize },
    IndexSelect { x: NodeId, axis: usize, index: Vec<usize> },
    Gather { x: NodeId, from: Vec<usize> },
    ScatterAdd { x: NodeId, from: Vec<usize> },
}

use ShapeOp as S;

/// Adds each element of `g` (shape `[lead.., out]`) into a zero tensor of shape
/// `[lead.., in_shape]`, at the flat input index `from[k]` of its output element `k`.
pub(crate) fn scatter_add(g: &Tensor, lead: usize, in_shape: &[usize], from: &[usize]) -> Tensor {
    let mut out = Tensor::zeros(&with_lead(g, lead, in_shape));
    if from.is_empty() {
        return out;
    }
    let in_len: usize = in_shape.iter().product();
    let dst = out.make_mut();
    for (row, g_row) in g.as_slice().chunks(from.len()).enumerate() {
        let dst_row = &mut dst[row * in_len..(row + 1) * in_len];
        for (&i, &v) in from.iter().zip(g_row) {
            dst_row[i] += v;
        }
    }
    out
}

/// The slice of `len` elements from `start`, `step` apart.
/// `g[from[i]]` for each task row of `g` (the reverse of [`scatter_add`]); the result has
/// `out_shape` behind the lead axes.
fn take_rows(g: &Tensor, lead: usize, out_shape: &[usize], from: &[usize]) -> Tensor {
    let src_len = g.len() / g.shape()[..lead].iter().product::<usize>().max(1);
    let mut data = Vec::with_capacity(g.len() / src_len.max(1) * from.len());
    for row in g.as_slice().chunks(src_len.max(1)) {
        data.extend(from.iter().map(|&i| row[i]));
    }
    Tensor::from_vec(&with_lead(g, lead, out_shape), data).expect("one value per position")
}

/// The flat positions in a tensor of `shape` that `select` picks, in the order it lists them.
fn positions(
    shape: &[usize],
    select: impl Fn(ndarray::ArrayViewD<'_, usize>) -> ArrayD<usize>,
) -> Vec<usize> {
    let flat = ArrayD::from_shape_vec(IxDyn(shape), (0..shape.iter().product()).collect())
        .expect("one index per element");
    select(flat.view()).iter().copied().collect()
}

fn strided(start: usize, len: usize, step: usize) -> Slice {
    let end = if len == 0 { start } else { start + (len - 1) * step + 1 };
    Slice::new(start as isize, Some(end as isize), step as isize)
}

fn check_axis(op: &'static str, axis: usize, shape: &[usize]) {
    if axis >= shape.len() {
        invalid(op, format!("axis {axis} out of range for shape {shape:?}"));
    }
}

fn record<'t>(x: Var<'t>, value: Tensor, op: S) -> Var<'t> {
    x.record(value, Op::Shape(op))
}

/// Row-major `values` joined along `axis` (an existing axis for concat, a new one for stack)
/// into `shape`: per index of the axes before `axis` each value holds one contiguous run, and
/// the output is those runs in input order, copied whole.
fn join_runs(values: &[Tensor], axis: usize, shape: &[usize]) -> Tensor {
    let outer: usize = values[0].shape()[..axis].iter().product();
    let runs: Vec<usize> = values.iter().map(|v| v.shape()[axis..].iter().product()).collect();
    let mut data = Vec::with_capacity(values.iter().map(Tensor::len).sum());
    for o in 0..outer {
        for (v, &run) in values.iter().zip(&runs) {
            data.extend_from_slice(&v.as_slice()[o * run..(o + 1) * run]);
        }
    }
    Tensor::from_vec(shape, data).expect("the joined shape")
}

impl<'t> Var<'t> {
    /// The same elements, in row-major order, under `shape`.
    ///
    /// # Panics
    /// If `shape` holds a different number of elements
    /// (`shape mismatch in reshape: lhs [..], rhs [..]`).
    pub fn reshape(self, shape: &[usize]) -> Var<'t> {
        let x = self.value();
        let value = x.reshape(shape).unwrap_or_else(|_| shape_panic("reshape", x.shape(), shape));
        record(self, value, S::Reshape(self.id))
    }

    /// The axes reordered: output axis `i` is input axis `axes[i]` (as `torch.permute`).
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(&[2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap());
    /// let y = x.permute(&[1, 0]);
    /// assert_eq!(y.shape(), vec![3, 2]);
    /// assert_eq!(y.value().to_vec(), vec![1., 4., 2., 5., 3., 6.]);
    /// ```
    ///
    /// # Panics
    /// If `axes` is not a permutation of `0..ndim`.
    pub fn permute(self, axes: &[usize]) -> Var<'t> {
        let x = self.value();
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        if !sorted.iter().copied().eq(0..x.ndim()) {
            invalid("permute", format!("axes {axes:?} do not permute shape {:?}", x.shape()));
        }
        let value = permuted(&x, axes);
        record(self, value, S::Permute { x: self.id, axes: axes.to_vec() })
    }

    /// Axes `a` and `b` swapped (a [`Var::permute`]).
    ///
    /// # Panics
    /// If `a` or `b` is out of range.
    pub fn transpose(self, a: usize, b: usize) -> Var<'t> {
        let shape = self.shape();
        check_axis("transpose", a.max(b), &shape);
        let mut axes: Vec<usize> = (0..shape.len()).collect();
        axes.swap(a, b);
        self.permute(&axes)
    }

    /// The value broadcast to `shape` like numpy (new leading axes, size-1 axes stretched),
    /// materialised.
    ///
    /// # Panics
    /// If the value does not broadcast to `shape`
    /// (`shape mismatch in broadcast_to: lhs [..], rhs [..]`).
    pub fn broadcast_to(self, shape: &[usize]) -> Var<'t> {
        let value = broadcast_to(&self.value(), shape);
        record(self, value, S::BroadcastTo(self.id))
    }

    /// `len` consecutive elements along `axis`, from `start` (as `torch.narrow`).
    ///
    /// # Panics
    /// If `axis` is out of range or `start + len` exceeds the axis.
    pub fn narrow(self, axis: usize, start: usize, len: usize) -> Var<'t> {
        self.slice_impl("narrow", axis, start, start.saturating_add(len), 1)
    }

    /// Elements `start, start + step, …` below `end` along `axis` (as `x[start:end:step]`).
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from(vec![0., 1., 2., 3., 4., 5.]));
    /// assert_eq!(x.slice(0, 1, 6, 2).value().to_vec(), vec![1., 3., 5.]);
    /// ```
    ///
    /// # Panics
    /// If `axis` is out of range, `start > end`, `end` exceeds the axis, or `step` is 0.
    pub fn slice(self, axis: usize, start: usize, end: usize, step: usize) -> Var<'t> {
        self.slice_impl("slice", axis, start, end, step)
    }

    fn slice_impl(
        self,
        op: &'static str,
        axis: usize,
        start: usize,
        end: usize,
        step: usize,
    ) -> Var<'t> {
        let x = self.value();
        check_axis(op, axis, x.shape());
        if start > end || end > x.shape()[axis] || step == 0 {
            let msg = format!("range {start}..{end} step {step} on axis {axis} of {:?}", x.shape());
            invalid(op, msg);
        }
        let len = (end - start).div_ceil(step);
        let view = x.view();
        let value =
            Tensor::from_array(view.slice_axis(Axis(axis), strided(start, len, step)).to_owned());
        record(self, value, S::Slice { x: self.id, axis, start, step })
    }

    /// The values joined along an existing `axis` (as `torch.cat`).
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor, Var};
    /// let tape = Tape::new();
    /// let a = tape.leaf(Tensor::from_vec(&[1, 2], vec![1., 2.]).unwrap());
    /// let b = tape.leaf(Tensor::from_vec(&[2, 2], vec![3., 4., 5., 6.]).unwrap());
    /// let y = Var::concat(&[a, b], 0);
    /// assert_eq!(y.shape(), vec![3, 2]);
    /// ```
    ///
    /// # Panics
    /// If `xs` is empty, the values live on different tapes, `axis` is out of range, or the
    /// shapes differ in another axis (`shape mismatch in concat: lhs [..], rhs [..]`).
    pub fn concat(xs: &[Var<'t>], axis: usize) -> Var<'t> {
        let values = inputs("concat", xs);
        let first = values[0].shape();
        check_axis("concat", axis, first);
        for v in &values[1..] {
            let same = |i: usize| i == axis || v.shape().get(i) == first.get(i);
            if v.ndim() != first.len() || !(0..first.len()).all(same) {
                shape_panic("concat", first, v.shape());
            }
        }
        let mut shape = first.to_vec();
        shape[axis] = values.iter().map(|v| v.shape()[axis]).sum();
        let op = S::Concat { xs: xs.iter().map(|x| x.id).collect(), axis };
        record(xs[0], join_runs(&values, axis, &shape), op)
    }

    /// The values, all of one shape, joined along a new axis at position `axis`
    /// (as `torch.stack`).
    ///
    /// # Panics
    /// If `xs` is empty, the values live on different tapes, `axis > ndim`, or the shapes
    /// differ (`shape mismatch in stack: lhs [..], rhs [..]`).
    pub fn stack(xs: &[Var<'t>], axis: usize) -> Var<'t> {
        let values = inputs("stack", xs);
        let first = values[0].shape();
        if axis > first.len() {
            invalid("stack", format!("axis {axis} out of range for a new axis of {first:?}"));
        }
        if let Some(v) = values.iter().find(|v| v.shape() != first) {
            shape_panic("stack", first, v.shape());
        }
        let mut shape = first.to_vec();
        shape.insert(axis, values.len());
        let op = S::Stack { xs: xs.iter().map(|x| x.id).collect(), axis };
        record(xs[0], join_runs(&values, axis, &shape), op)
    }

    /// The entries at `index` along `axis`, in that order; indices may repeat
    /// (as `torch.index_select`).
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from(vec![10., 20., 30.]));
    /// let y = x.index_select(0, &[2, 0, 2]);
    /// assert_eq!(y.value().to_vec(), vec![30., 10., 30.]);
    /// assert_eq!(tape.backward(y.sum_all()).wrt(x).to_vec(), vec![1., 0., 2.]);
    /// ```
    ///
    /// # Panics
    /// If `axis` is out of range or an index is not below the axis length.
    pub fn index_select(self, axis: usize, index: &[usize]) -> Var<'t> {
        let x = self.value();
        check_axis("index_select", axis, x.shape());
        if let Some(&bad) = index.iter().find(|&&i| i >= x.shape()[axis]) {
            invalid(
                "index_select",
                format!("index {bad} out of range for axis {axis} of {:?}", x.shape()),
            );
        }
        let value = Tensor::from_array(x.view().select(Axis(axis), index));
        record(self, value, S::IndexSelect { x: self.id, axis, index: index.to_vec() })
    }

    /// `y[p] = x[p with its coordinate along axis replaced by index[p]]`, as `torch.gather`:
    /// `index` has as many axes as `x`, at most `x`'s length in every axis but `axis`, and the
    /// output has `index`'s shape.
    ///
    /// ```
    /// use ndarray::{arr2, ArrayD};
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(&[2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap());
    /// let index: ArrayD<usize> = arr2(&[[2], [0]]).into_dyn();
    /// assert_eq!(x.gather(1, &index).value().to_vec(), vec![3., 4.]);
    /// ```
    ///
    /// # Panics
    /// If `axis` is out of range, `index` has another number of axes or is longer than `x` in
    /// an axis other than `axis` (`shape mismatch in gather: lhs [..], rhs [..]`), or an index
    /// is not below the length of `axis`.
    pub fn gather(self, axis: usize, index: &ArrayD<usize>) -> Var<'t> {
        let x = self.value();
        let (shape, ishape) = (x.shape(), index.shape());
        check_axis("gather", axis, shape);
        if ishape.len() != shape.len()
            || (0..shape.len()).any(|d| d != axis && ishape[d] > shape[d])
        {
            shape_panic("gather", shape, ishape);
        }
        let mut strides = vec![1; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * shape[d + 1];
        }
        let from: Vec<usize> = index
            .indexed_iter()
            .map(|(pos, &i)| {
                if i >= shape[axis] {
                    invalid(
                        "gather",
                        format!("index {i} out of range for axis {axis} of {shape:?}"),
                    );
                }
                let at = |d: usize| if d == axis { i } else { pos[d] };
                (0..shape.len()).map(|d| at(d) * strides[d]).sum()
            })
            .collect();
        let data = from.iter().map(|&k| x.as_slice()[k]).collect();
        let value = Tensor::from_vec(ishape, data).expect("one value per index");
        record(self, value, S::Gather { x: self.id, from })
    }
}

/// The values of `xs`, checked to be non-empty and on one tape.
impl<'t> Var<'t> {
    /// A tensor of `shape`, zero except that element `i` of `self` (flattened) is added at the
    /// flat position `from[i]`; repeated positions add up.
    pub(crate) fn scatter_add(self, from: Vec<usize>, shape: &[usize]) -> Var<'t> {
        let x = self.value();
        assert_eq!(x.len(), from.len(), "scatter_add: one position per element");
        let value = scatter_add(&x, 0, shape, &from);
        record(self, value, S::ScatterAdd { x: self.id, from })
    }

    /// A tensor of `shape` whose element `i` is element `from[i]` of `self` (flattened).
    pub(crate) fn take(self, from: Vec<usize>, shape: &[usize]) -> Var<'t> {
        let value = take_rows(&self.value(), 0, shape, &from);
        record(self, value, S::Gather { x: self.id, from })
    }
}

fn inputs(op: &'static str, xs: &[Var<'_>]) -> Vec<Tensor> {
    let Some(&first) = xs.first() else { invalid(op, "no inputs") };
    xs.iter().for_each(|&x| first.same_tape(x));
    xs.iter().map(|x| x.value()).collect()
}

/// `t` with its axes reordered by `axes`, in standard layout.
fn permuted(t: &Tensor, axes: &[usize]) -> Tensor {
    Tensor::from_array(t.view().permuted_axes(IxDyn(axes)).as_standard_layout().into_owned())
}

impl Family for ShapeOp {
    fn name(&self) -> &'static str {
        match self {
            S::Reshape(..) => "reshape",
            S::Permute { .. } => "permute",
            S::BroadcastTo(..) => "broadcast_to",
            S::Slice { .. } => "slice",
            S::Concat { .. } => "concat",
            S::Stack { .. } => "stack",
            S::IndexSelect { .. } => "index_select",
            S::Gather { .. } => "gather",
            S::ScatterAdd { .. } => "scatter_add",
        }
    }

    fn for_each_input(&self, f: &mut dyn FnMut(NodeId)) {
        match self {
            S::Reshape(x) | S::BroadcastTo(x) => f(*x),
            S::Permute { x, .. } | S::Slice { x, .. } => f(*x),
            S::IndexSelect { x, .. } | S::Gather { x, .. } | S::ScatterAdd { x, .. } => f(*x),
            S::Concat { xs, .. } | S::Stack { xs, .. } => xs.iter().for_each(|&x| f(x)),
        }
    }

    // Every rule moves the cotangent by shapes and indices alone.
    fn reads_output(&self) -> bool {
        false
    }

    fn reads_inputs(&self) -> bool {
        false
    }

    fn backward(&self, out: &Tensor, g: &Tensor, ctx: &mut Ctx<'_>) {
        let lead = ctx.lead();
        let zeros = |shape: &[usize]| ArrayD::<f32>::zeros(IxDyn(&with_lead(g, lead, shape)));
        match self {
            S::Reshape(x) => {
                let shape = with_lead(g, lead, ctx.value(*x).shape());
                ctx.acc(*x, || g.reshape(&shape).expect("same size"))
            }
            S::Permute { x, axes } => {
                let mut inverse: Vec<usize> = (0..lead).collect();
                inverse.extend(
                    (0..axes.len())
                        .map(|i| lead + axes.iter().position(|&a| a == i).expect("perm")),
                );
                ctx.acc(*x, || permuted(g, &inverse))
            }
            S::BroadcastTo(x) => ctx.acc(*x, || g.clone()),
            S::Slice { x, axis, start, step } => {
                let (shape, at) =
                    (ctx.value(*x).shape(), strided(*start, out.shape()[*axis], *step));
                ctx.acc(*x, || {
                    let mut gx = zeros(shape);
                    gx.slice_axis_mut(Axis(lead + axis), at).assign(&g.view());
                    Tensor::from_array(gx)
                })
            }
            S::Concat { xs, axis } => {
                let mut offset = 0;
                for &x in xs {
                    let len = ctx.value(x).shape()[*axis];
                    let part = Slice::from(offset..offset + len);
                    ctx.acc(x, || {
                        Tensor::from_array(g.view().slice_axis(Axis(lead + axis), part).to_owned())
                    });
                    offset += len;
                }
            }
            S::Stack { xs, axis } => {
                for (i, &x) in xs.iter().enumerate() {
                    ctx.acc(x, || {
                        Tensor::from_array(g.view().index_axis(Axis(lead + axis), i).to_owned())
                    });
                }
            }
            S::IndexSelect { x, axis, index } => {
                let shape = ctx.value(*x).shape();
                ctx.acc(*x, || {
                    let mut gx = zeros(shape);
                    for (k, &i) in index.iter().enumerate() {
                        let mut row = gx.index_axis_mut(Axis(lead + axis), i);
                        row += &g.view().index_axis(Axis(lead + axis), k);
                    }
                    Tensor::from_array(gx)
                })
            }
            S::Gather { x, from } => {
                let shape = ctx.value(*x).shape();
                ctx.acc(*x, || scatter_add(g, lead, shape, from))
            }
            S::ScatterAdd { x, from } => {
                let shape = ctx.value(*x).shape();
                ctx.acc(*x, || take_rows(g, lead, shape, from))
            }
        }
    }

    fn backward_graph<'t>(&self, out: Var<'t>, g: Var<'t>, ctx: &mut GraphCtx<'t>) {
        let shape_of = |ctx: &GraphCtx<'t>, x: NodeId| ctx.var(x).shape();
        match self {
            S::Reshape(x) => {
                let shape = shape_of(ctx, *x);
                ctx.acc(*x, || g.reshape(&shape))
            }
            S::Permute { x, axes } => {
                let inverse: Vec<usize> = (0..axes.len())
                    .map(|i| axes.iter().position(|&a| a == i).expect("perm"))
                    .collect();
                ctx.acc(*x, || g.permute(&inverse))
            }
            S::BroadcastTo(x) => ctx.acc(*x, || g),
            S::Slice { x, axis, start, step } => {
                let shape = shape_of(ctx, *x);
                let at = strided(*start, out.shape()[*axis], *step);
                let from = positions(&shape, |v| v.slice_axis(Axis(*axis), at).to_owned());
                ctx.acc(*x, || g.reshape(&[from.len()]).scatter_add(from, &shape))
            }
            S::Concat { xs, axis } => {
                let mut offset = 0;
                for &x in xs {
                    let len = shape_of(ctx, x)[*axis];
                    ctx.acc(x, || g.narrow(*axis, offset, len));
                    offset += len;
                }
            }
            S::Stack { xs, axis } => {
                for (i, &x) in xs.iter().enumerate() {
                    let shape = shape_of(ctx, x);
                    ctx.acc(x, || g.narrow(*axis, i, 1).reshape(&shape));
                }
            }
            S::IndexSelect { x, axis, index } => {
                let shape = shape_of(ctx, *x);
                let from = positions(&shape, |v| v.select(Axis(*axis), index));
                ctx.acc(*x, || g.reshape(&[from.len()]).scatter_add(from, &shape))
            }
            S::Gather { x, from } => {
                let shape = shape_of(ctx, *x);
                ctx.acc(*x, || g.reshape(&[from.len()]).scatter_add(from.clone(), &shape))
            }
            S::ScatterAdd { x, from } => {
                let shape = shape_of(ctx, *x);
                ctx.acc(*x, || g.take(from.clone(), &shape))
            }
        }
    }
}
