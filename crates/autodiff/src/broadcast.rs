//! Broadcasting, and undoing it in one place.
//!
//! Forward ops broadcast like numpy: shapes align on the right, and an axis of size 1 (or a
//! missing leading axis) stretches to match. The backward of a broadcast is a sum: the cotangent
//! of an input is the output cotangent summed over every axis the input was stretched along.
//! [`sum_to`] does that for every op, so no backward rule repeats it.
//!
//! Cotangents may carry `lead` extra leading axes (the task axis of a batched backward); those
//! are kept, and the stretched axes are found behind them.
//!
//! The layouts that occur in practice run on the elementwise kernels: equal shapes; an operand
//! that repeats as a trailing block of the other (a bias `[C]` over `[N, C]`, a scalar, one
//! sample's values over a stack of tasks `[T, ..]`); and sums or repeats over one run of
//! adjacent axes (a bias gradient, a per-task sum, a row mean). Anything else takes the general
//! path through ndarray, with the same results up to the order of additions.

use ndarray::{ArrayD, Axis, IxDyn, Zip};

use crate::compute::elementwise::{self as ew, BinaryOp};
use crate::error::shape_panic;
use crate::fill::TINY;
use crate::tensor::Tensor;

/// The numpy broadcast of two shapes.
///
/// # Panics
/// If the shapes are incompatible; the message names `op` and both shapes.
pub fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Vec<usize> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
        let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => shape_panic(op, a, b),
        };
    }
    out
}

/// `f` applied elementwise to `a` and `b` broadcast together.
///
/// # Panics
/// If the shapes do not broadcast.
pub fn zip_map(op: &'static str, a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32) -> Tensor {
    if same_dims(a.shape(), b.shape()) {
        return zip_same(a, b, f);
    }
    let shape = broadcast_shape(op, a.shape(), b.shape());
    let av = a.view();
    let bv = b.view();
    let av = av.broadcast(IxDyn(&shape)).expect("checked");
    let bv = bv.broadcast(IxDyn(&shape)).expect("checked");
    let mut out = ArrayD::<f32>::zeros(IxDyn(&shape));
    Zip::from(&mut out).and(&av).and(&bv).for_each(|o, &x, &y| *o = f(x, y));
    Tensor::from_array(out)
}

/// `f` applied elementwise to two tensors of the same shape.
fn zip_same(a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32) -> Tensor {
    let values = a.as_slice().iter().zip(b.as_slice()).map(|(&x, &y)| f(x, y));
    Tensor::from_exact_iter(a.shape(), values)
}

/// True if an operand of shape `small` broadcast to `out` repeats as one contiguous block:
/// without its leading 1s, `small` is the tail of `out`.
fn repeats_as_block(small: &[usize], out: &[usize]) -> bool {
    let first = small.iter().position(|&d| d != 1).unwrap_or(small.len());
    out.ends_with(&small[first..])
}

/// `a op b` broadcast together, on the kernels when the shapes are equal or one operand repeats
/// as a trailing block of the other (see [`ew::binary`]); on [`zip_map`] otherwise. Every
/// element is `a op b` rounded once, whichever path runs.
///
/// # Panics
/// If the shapes do not broadcast; the message names `name` and both shapes.
pub(crate) fn binary(name: &'static str, op: BinaryOp, a: &Tensor, b: &Tensor) -> Tensor {
    if same_dims(a.shape(), b.shape()) {
        if a.len() <= TINY {
            return match op {
                BinaryOp::Add => zip_same(a, b, |x, y| x + y),
                BinaryOp::Sub => zip_same(a, b, |x, y| x - y),
                BinaryOp::Mul => zip_same(a, b, |x, y| x * y),
                BinaryOp::Div => zip_same(a, b, |x, y| x / y),
            };
        }
        return Tensor::from_kernel(a.shape(), |o| ew::binary(op, a.as_slice(), b.as_slice(), o));
    }
    let shape = broadcast_shape(name, a.shape(), b.shape());
    let n: usize = shape.iter().product();
    let fits = |full: &Tensor, other: &Tensor| {
        full.len() == n && repeats_as_block(other.shape(), &shape) && !other.is_empty()
    };
    if fits(a, b) || fits(b, a) {
        return Tensor::from_kernel(&shape, |o| ew::binary(op, a.as_slice(), b.as_slice(), o));
    }
    zip_map(name, a, b, |x, y| op.apply(x, y))
}

/// `f(y, g_t, out_t)` for each task block `g_t` of a cotangent `g` of shape `[lead.., y shape]`:
/// a backward rule that combines the cotangent with a saved value of the node's own shape. The
/// result has `g`'s shape.
pub(crate) fn map_tasks(g: &Tensor, y: &Tensor, f: impl Fn(&[f32], &[f32], &mut [f32])) -> Tensor {
    debug_assert!(g.shape().ends_with(y.shape()), "{:?} after {:?}", g.shape(), y.shape());
    Tensor::from_kernel(g.shape(), |out| {
        if !y.is_empty() {
            let blocks = out.chunks_exact_mut(y.len()).zip(g.as_slice().chunks_exact(y.len()));
            for (o, gt) in blocks {
                f(y.as_slice(), gt, o);
            }
        }
    })
}

/// A row-major shape seen as `[outer, mid, inner]`, where `mid` holds one run of adjacent axes
/// that are summed over (or repeated along) and `outer`, `inner` the axes before and after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Runs {
    pub(crate) outer: usize,
    pub(crate) mid: usize,
    pub(crate) inner: usize,
}

/// `shape` as [`Runs`] with the axes `marked` in the middle, if the marked axes of length above
/// 1 are adjacent (axes of length 1 go anywhere); `None` otherwise.
pub(crate) fn runs(shape: &[usize], marked: impl Fn(usize) -> bool) -> Option<Runs> {
    let mut r = Runs { outer: 1, mid: 1, inner: 1 };
    // 0: before the marked run, 1: inside it, 2: after it.
    let mut phase = 0;
    for (i, &d) in shape.iter().enumerate() {
        if d == 1 {
            continue;
        }
        match (marked(i), phase) {
            (true, 2) => return None,
            (true, _) => {
                phase = 1;
                r.mid *= d;
            }
            (false, 0) => r.outer *= d,
            (false, _) => {
                phase = 2;
                r.inner *= d;
            }
        }
    }
    Some(r)
}

/// Sums `x`, laid out as `r`, over the middle run into `out` (`outer · inner` values).
pub(crate) fn sum_middle(x: &[f32], r: Runs, out: &mut [f32]) {
    if x.is_empty() {
        out.fill(0.0);
    } else if r.inner == 1 {
        ew::sum_rows(x, r.mid, out);
    } else {
        for (o, block) in out.chunks_exact_mut(r.inner).zip(x.chunks_exact(r.mid * r.inner)) {
            ew::sum_over_rows(block, o);
        }
    }
}

/// Writes `src` (`outer · inner` values) repeated `r.mid` times along the middle run into `out`,
/// laid out as `r`.
fn repeat_middle(src: &[f32], r: Runs, out: &mut [f32]) {
    if out.is_empty() {
        return;
    }
    for (block, s) in out.chunks_exact_mut(r.mid * r.inner).zip(src.chunks_exact(r.inner)) {
        if let [v] = *s {
            block.fill(v);
        } else {
            for row in block.chunks_exact_mut(r.inner) {
                row.copy_from_slice(s);
            }
        }
    }
}

/// Sums `g` down to `lead` leading axes followed by `shape`: the reverse of broadcasting a
/// value of `shape` to the trailing axes of `g`.
///
/// # Panics
/// If `g` cannot have come from broadcasting `shape`.
pub fn sum_to(g: &Tensor, lead: usize, shape: &[usize]) -> Tensor {
    sum_to_owned(g.clone(), lead, shape)
}

/// `a == b` for shapes, by a plain loop: shapes have a few axes, and this check runs for every
/// op and cotangent, where a call to the C library's `memcmp` costs more than the comparison.
#[inline]
pub(crate) fn same_dims(a: &[usize], b: &[usize]) -> bool {
    a.len() == b.len() && (0..a.len()).all(|i| a[i] == b[i])
}

/// [`sum_to`] taking the cotangent by value: returned as it is when nothing was broadcast.
pub(crate) fn sum_to_owned(g: Tensor, lead: usize, shape: &[usize]) -> Tensor {
    let gs = g.shape();
    if gs.len() == lead + shape.len() && same_dims(&gs[lead..], shape) {
        return g;
    }
    sum_broadcast_axes(&g, lead, shape)
}

/// The work of [`sum_to_owned`] when something was broadcast (kept out of line: the check
/// above runs for every cotangent and should stay small).
#[inline(never)]
fn sum_broadcast_axes(g: &Tensor, lead: usize, shape: &[usize]) -> Tensor {
    let gs = g.shape();
    assert!(gs.len() >= lead + shape.len(), "sum_to: {gs:?} cannot reduce to {shape:?}");
    let extra = gs.len() - lead - shape.len();
    // The target aligned with g's axes: the lead axes, `extra` summed-away axes, then `shape`.
    let target = |i: usize| match i {
        i if i < lead => gs[i],
        i if i < lead + extra => 1,
        i => shape[i - lead - extra],
    };
    for i in lead + extra..gs.len() {
        assert!(target(i) == gs[i] || target(i) == 1, "sum_to: {gs:?} cannot reduce to {shape:?}");
    }
    let mut out_shape = gs[..lead].to_vec();
    out_shape.extend_from_slice(shape);
    if let Some(r) = runs(gs, |i| target(i) != gs[i]) {
        return Tensor::from_kernel(&out_shape, |out| sum_middle(g.as_slice(), r, out));
    }
    let mut arr = g.to_array();
    // Axes the input did not have at all (between the lead axes and the input's own axes).
    for _ in 0..extra {
        arr = arr.sum_axis(Axis(lead));
    }
    // Axes where the input had size 1.
    for (i, &d) in shape.iter().enumerate() {
        let ax = lead + i;
        if d == 1 && arr.shape()[ax] != 1 {
            arr = arr.sum_axis(Axis(ax)).insert_axis(Axis(ax));
        }
    }
    Tensor::from_array(arr)
}

/// Broadcasts `t` to `shape`, materialising the result.
///
/// # Panics
/// If `t` does not broadcast to `shape`.
pub fn broadcast_to(t: &Tensor, shape: &[usize]) -> Tensor {
    if t.shape() == shape {
        return t.clone();
    }
    let ts = t.shape();
    let pad = shape.len().checked_sub(ts.len());
    let source = |i: usize| pad.and_then(|p| i.checked_sub(p)).map_or(1, |j| ts[j]);
    let fits = pad.is_some() && (0..shape.len()).all(|i| source(i) == shape[i] || source(i) == 1);
    if !fits {
        shape_panic("broadcast_to", ts, shape);
    }
    if let Some(r) = runs(shape, |i| source(i) != shape[i]) {
        return Tensor::from_kernel(shape, |out| repeat_middle(t.as_slice(), r, out));
    }
    let v = t.view();
    Tensor::from_array(v.broadcast(IxDyn(shape)).expect("checked").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_shapes() {
        assert_eq!(broadcast_shape("t", &[3], &[2, 3]), vec![2, 3]);
        assert_eq!(broadcast_shape("t", &[2, 1, 4], &[3, 1]), vec![2, 3, 4]);
        assert_eq!(broadcast_shape("t", &[], &[5]), vec![5]);
    }

    #[test]
    #[should_panic(expected = "shape mismatch in add: lhs [2, 3], rhs [4]")]
    fn incompatible_shapes_name_op() {
        broadcast_shape("add", &[2, 3], &[4]);
    }

    #[test]
    fn sum_to_keeps_lead_axes() {
        // g: [T=2, 2, 3] from broadcasting an input of shape [3] (lead 1).
        let g = Tensor::from_vec(&[2, 2, 3], (0..12).map(|v| v as f32).collect()).unwrap();
        let s = sum_to(&g, 1, &[3]);
        assert_eq!(s.shape(), &[2, 3]);
        assert_eq!(s.to_vec(), vec![3., 5., 7., 15., 17., 19.]);
        let s = sum_to(&g, 1, &[2, 1]);
        assert_eq!(s.shape(), &[2, 2, 1]);
        assert_eq!(s.to_vec(), vec![3., 12., 21., 30.]);
        let s = sum_to(&g, 0, &[]);
        assert_eq!(s.to_vec(), vec![66.]);
    }

    #[test]
    fn runs_find_one_middle_run() {
        let r = |outer, mid, inner| Some(Runs { outer, mid, inner });
        assert_eq!(runs(&[4, 5, 6], |i| i == 0), r(1, 4, 30));
        assert_eq!(runs(&[4, 5, 6], |i| i == 2), r(20, 6, 1));
        assert_eq!(runs(&[4, 5, 6], |i| i == 1), r(4, 5, 6));
        assert_eq!(runs(&[4, 1, 5, 6], |i| i <= 2), r(1, 20, 6));
        // A length-1 axis between marked axes does not split the run.
        assert_eq!(runs(&[4, 1, 5], |i| i != 1), r(1, 20, 1));
        assert_eq!(runs(&[4, 5, 6], |i| i != 1), None);
        assert_eq!(runs(&[], |_| true), r(1, 1, 1));
    }

    #[test]
    #[should_panic(expected = "shape mismatch in broadcast_to: lhs [2, 3], rhs [3]")]
    fn broadcast_to_refuses_fewer_axes() {
        broadcast_to(&Tensor::zeros(&[2, 3]), &[3]);
    }
}
