//! Small helpers on tensors shared by the modules of this crate.

use ndarray::ArrayD;
use tapestry_autodiff::Tensor;

/// Runs `f` on the elements of `t`, in place if its storage is not shared (otherwise the
/// storage is copied first, so no other holder of the tensor sees the change).
pub(crate) fn modify<R>(t: &mut Tensor, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut array: ArrayD<f32> = std::mem::replace(t, Tensor::zeros(&[0])).into();
    let out = f(array.as_slice_mut().expect("a tensor is always in standard layout"));
    *t = Tensor::from_array(array);
    out
}

/// Sum of squares in f64, in element order.
pub(crate) fn sum_squares(xs: &[f32]) -> f64 {
    xs.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}
