//! Broadcasting, and undoing it in one place.
//!
//! Forward ops broadcast like numpy: shapes align on the right, and an axis of size 1 (or a
//! missing leading axis) stretches to match. The backward of a broadcast is a sum: the cotangent
//! of an input is the output cotangent summed over every axis the input was stretched along.
//! [`sum_to`] does that for every op, so no backward rule repeats it.
//!
//! Cotangents may carry `lead` extra leading axes (the task axis of a batched backward); those
//! are kept, and the stretched axes are found behind them.

use ndarray::{ArrayD, Axis, IxDyn, Zip};

use crate::error::shape_panic;
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
    if a.shape() == b.shape() {
        let values = a.as_slice().iter().zip(b.as_slice()).map(|(&x, &y)| f(x, y));
        return Tensor::from_exact_iter(a.shape(), values);
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

/// Sums `g` down to `lead` leading axes followed by `shape`: the reverse of broadcasting a
/// value of `shape` to the trailing axes of `g`.
///
/// # Panics
/// If `g` cannot have come from broadcasting `shape`.
pub fn sum_to(g: &Tensor, lead: usize, shape: &[usize]) -> Tensor {
    sum_to_owned(g.clone(), lead, shape)
}

/// [`sum_to`] taking the cotangent by value: returned as it is when nothing was broadcast.
pub(crate) fn sum_to_owned(g: Tensor, lead: usize, shape: &[usize]) -> Tensor {
    let gs = g.shape();
    if gs.len() == lead + shape.len() && &gs[lead..] == shape {
        return g;
    }
    assert!(gs.len() >= lead + shape.len(), "sum_to: {gs:?} cannot reduce to {shape:?}");
    let extra = gs.len() - lead - shape.len();
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
        } else {
            assert_eq!(arr.shape()[ax], d, "sum_to: {gs:?} cannot reduce to {shape:?}");
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
    let v = t.view();
    let b =
        v.broadcast(IxDyn(shape)).unwrap_or_else(|| shape_panic("broadcast_to", t.shape(), shape));
    Tensor::from_array(b.to_owned())
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
}
