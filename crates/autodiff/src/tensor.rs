//! `Tensor`: an n-dimensional f32 array with shared, immutable storage.
//!
//! A tensor is a shape (held inline for up to six axes) and a reference-counted, row-major,
//! contiguous buffer: cloning is a reference-count increment, every kernel can take a plain
//! slice, and ndarray views ([`Tensor::view`]) and arrays ([`Tensor::to_array`]) are one call
//! away. Small tensors matter: a tape records one per op, so creating one must cost little more
//! than its allocation.

use std::fmt;
use std::sync::Arc;

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use tapestry_kernels::buffer::{self, Buffer};
use tapestry_kernels::tune::tunables;

use crate::error::ShapeError;

/// The most axes a shape holds without a heap allocation.
const INLINE_AXES: usize = 6;

/// The shape of a tensor: one length per axis, inline (a plain copy) up to six axes.
#[derive(Clone)]
pub(crate) enum Shape {
    Inline { len: u8, dims: [usize; INLINE_AXES] },
    Heap(Arc<[usize]>),
}

impl Shape {
    pub(crate) fn from_slice(dims: &[usize]) -> Self {
        if dims.len() <= INLINE_AXES {
            let mut inline = [0; INLINE_AXES];
            inline[..dims.len()].copy_from_slice(dims);
            Shape::Inline { len: dims.len() as u8, dims: inline }
        } else {
            Shape::Heap(dims.into())
        }
    }
}

impl std::ops::Deref for Shape {
    type Target = [usize];
    fn deref(&self) -> &[usize] {
        match self {
            Shape::Inline { len, dims } => &dims[..*len as usize],
            Shape::Heap(dims) => dims,
        }
    }
}

/// An n-dimensional `f32` array, cheap to clone (the storage is shared).
///
/// Invariant: `data.len()` is the product of `shape`, in row-major order.
#[derive(Clone)]
pub struct Tensor {
    shape: Shape,
    data: Storage,
}

/// The most elements a tensor holds inline, without an allocation.
pub(crate) const INLINE_VALUES: usize = 4;

/// Element storage, by size.
///
/// Up to [`INLINE_VALUES`] elements (a loss, a task's weight, the weights of a few tasks) are held
/// in the tensor itself: creating, cloning and dropping one costs no allocation, and a clone is a
/// copy. Small tensors are collected straight into one shared allocation (`Arc<[f32]>`). Large
/// ones live in a [`Buffer`] of the kernels' pool: when the last reference goes, the buffer is
/// recycled for the next tensor of the same length (next step's activation or cotangent),
/// instead of going back to the system and coming back as fresh pages to fault in. The inline
/// form fits in the space the shared ones take, so it does not make a tensor larger.
///
/// `Released` holds nothing: a value the final backward pass dropped before its sweep because no
/// rule reads its elements (see `Tape::backward_final`). Its shape stays, so rules may still ask
/// for it; reading an element panics naming the cause, so a wrong guess is never a silent result.
#[derive(Clone)]
enum Storage {
    Inline { len: u8, values: [f32; INLINE_VALUES] },
    Slice(Arc<[f32]>),
    Vec(Arc<Buffer>),
    Released,
}

/// Panics with the reason a released value has no elements.
#[track_caller]
fn released() -> ! {
    panic!(
        "this value was released by `Tape::backward_final`, which drops a value no rule of its \
         pass reads; read values before the final backward pass"
    )
}

impl std::ops::Deref for Storage {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            Storage::Inline { len, values } => &values[..usize::from(*len)],
            Storage::Slice(s) => s,
            Storage::Vec(v) => v,
            Storage::Released => released(),
        }
    }
}

impl Tensor {
    /// Wraps an ndarray array, copying only if it is not in standard layout.
    pub fn from_array(array: ArrayD<f32>) -> Self {
        let shape = Shape::from_slice(array.shape());
        let n = array.len();
        let data = if array.is_standard_layout() {
            match array.into_raw_vec_and_offset() {
                (v, Some(0)) if v.len() == n => v,
                (v, off) => {
                    let off = off.unwrap_or(0);
                    v[off..off + n].to_vec()
                }
            }
        } else {
            array.iter().copied().collect()
        };
        Tensor { shape, data: Storage::Vec(Arc::new(Buffer::new(data))) }
    }

    /// Builds a tensor from a shape and row-major data.
    ///
    /// ```
    /// use tapestry_autodiff::Tensor;
    /// let t = Tensor::from_vec(&[2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
    /// assert_eq!(t.shape(), &[2, 3]);
    /// assert!(Tensor::from_vec(&[2, 2], vec![1.0; 3]).is_err());
    /// ```
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Self, ShapeError> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(ShapeError::DataLength { shape: shape.to_vec(), len: data.len() });
        }
        Ok(Tensor::from_buffer(shape, data))
    }

    /// Wraps a buffer whose length the caller has checked against the shape.
    fn from_buffer(shape: &[usize], data: Vec<f32>) -> Self {
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        Tensor { shape: Shape::from_slice(shape), data: Storage::Vec(Arc::new(Buffer::new(data))) }
    }

    /// A tensor of the given shape filled with `value`.
    pub fn full(shape: &[usize], value: f32) -> Self {
        let n = shape.iter().product();
        Tensor::from_exact_iter(shape, std::iter::repeat_n(value, n))
    }

    /// A tensor from an iterator of exactly `shape.iter().product()` row-major values, collected
    /// into one allocation.
    ///
    /// # Panics
    /// If the iterator yields another number of values.
    pub(crate) fn from_exact_iter(shape: &[usize], mut values: impl Iterator<Item = f32>) -> Self {
        let n: usize = shape.iter().product();
        if n >= tunables().buffer_pool_min_len {
            let mut data = buffer::take(n);
            let mut written = 0;
            for (d, v) in data.iter_mut().zip(values.by_ref()) {
                *d = v;
                written += 1;
            }
            assert!(written == n && values.next().is_none(), "values do not fit {shape:?}");
            return Tensor::from_buffer(shape, data);
        }
        if n <= INLINE_VALUES {
            let mut inline = [0.0; INLINE_VALUES];
            let mut written = 0;
            for (d, v) in inline.iter_mut().zip(values.by_ref()) {
                *d = v;
                written += 1;
            }
            assert!(written == n && values.next().is_none(), "values do not fit {shape:?}");
            return Tensor::inline(shape, inline, n);
        }
        let data: Arc<[f32]> = values.collect();
        assert_eq!(data.len(), n, "values do not fit {shape:?}");
        Tensor { shape: Shape::from_slice(shape), data: Storage::Slice(data) }
    }

    /// A tensor of `shape` holding the first `n` of `values` inline (`n` is the shape's size,
    /// at most [`INLINE_VALUES`]).
    pub(crate) fn inline(shape: &[usize], values: [f32; INLINE_VALUES], n: usize) -> Self {
        debug_assert_eq!(n, shape.iter().product::<usize>());
        Tensor { shape: Shape::from_slice(shape), data: Storage::Inline { len: n as u8, values } }
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, 0.0)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Self {
        Self::full(shape, 1.0)
    }

    /// A 0-dimensional tensor holding one value.
    pub fn scalar(value: f32) -> Self {
        Self::full(&[], value)
    }

    /// The shape (one entry per axis).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of axes.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self.data {
            Storage::Released => self.shape.iter().product(),
            ref data => data.len(),
        }
    }

    /// True if the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same shape with no elements behind it, for a value nothing will read again. Its
    /// shape and length answer; any element access panics.
    pub(crate) fn released_like(&self) -> Tensor {
        Tensor { shape: self.shape.clone(), data: Storage::Released }
    }

    /// True for a tensor made by [`Tensor::released_like`].
    #[cfg(test)]
    pub(crate) fn is_released(&self) -> bool {
        matches!(self.data, Storage::Released)
    }

    /// The elements in row-major order.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The elements in row-major order, copied into a `Vec`.
    pub fn to_vec(&self) -> Vec<f32> {
        self.as_slice().to_vec()
    }

    /// A read-only ndarray view.
    pub fn view(&self) -> ArrayViewD<'_, f32> {
        ArrayViewD::from_shape(IxDyn(&self.shape), &self.data).expect("Tensor invariant")
    }

    /// An owned ndarray copy.
    pub fn to_array(&self) -> ArrayD<f32> {
        self.view().to_owned()
    }

    /// The single value of a tensor with one element.
    ///
    /// # Panics
    /// If the tensor does not have exactly one element.
    pub fn item(&self) -> f32 {
        assert_eq!(self.len(), 1, "item() on a tensor of shape {:?}", self.shape());
        self.as_slice()[0]
    }

    /// The same data under another shape with the same number of elements (no copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor, ShapeError> {
        if shape.iter().product::<usize>() != self.len() {
            return Err(ShapeError::mismatch("reshape", self.shape(), shape));
        }
        Ok(Tensor { shape: Shape::from_slice(shape), data: self.data.clone() })
    }

    /// Applies `f` to every element, returning a new tensor.
    pub fn map(&self, f: impl Fn(f32) -> f32) -> Tensor {
        Tensor::from_exact_iter(&self.shape, self.data.iter().map(|&v| f(v)))
    }

    /// The largest absolute difference to `other`, or `None` if the shapes differ.
    pub fn max_abs_diff(&self, other: &Tensor) -> Option<f32> {
        (self.shape() == other.shape()).then(|| {
            self.as_slice()
                .iter()
                .zip(other.as_slice())
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
        })
    }

    /// True if every element is finite (no NaN, no infinity).
    pub fn all_finite(&self) -> bool {
        self.as_slice().iter().all(|v| v.is_finite())
    }

    /// Sum of all elements, accumulated in f64 in a fixed order.
    pub fn sum_all(&self) -> f64 {
        self.as_slice().iter().map(|&v| v as f64).sum()
    }

    /// Mutable access to the elements; copies the storage first if it is shared.
    pub(crate) fn make_mut(&mut self) -> &mut [f32] {
        match &mut self.data {
            Storage::Inline { len, values } => &mut values[..usize::from(*len)],
            Storage::Vec(v) => &mut Arc::make_mut(v)[..],
            Storage::Slice(s) => {
                if Arc::get_mut(s).is_none() {
                    *s = Arc::from(&s[..]);
                }
                Arc::get_mut(s).expect("unique after the copy")
            }
            Storage::Released => released(),
        }
    }
}

impl From<ArrayD<f32>> for Tensor {
    fn from(array: ArrayD<f32>) -> Self {
        Tensor::from_array(array)
    }
}

impl From<Tensor> for ArrayD<f32> {
    fn from(t: Tensor) -> Self {
        let data = match t.data {
            Storage::Vec(v) => {
                Arc::try_unwrap(v).map_or_else(|shared| shared.to_vec(), Buffer::into_vec)
            }
            Storage::Inline { len, values } => values[..usize::from(len)].to_vec(),
            Storage::Slice(s) => s.to_vec(),
            Storage::Released => released(),
        };
        ArrayD::from_shape_vec(IxDyn(&t.shape), data).expect("Tensor invariant")
    }
}

impl From<f32> for Tensor {
    fn from(v: f32) -> Self {
        Tensor::scalar(v)
    }
}

impl From<Vec<f32>> for Tensor {
    /// A 1-D tensor.
    fn from(v: Vec<f32>) -> Self {
        let n = v.len();
        Tensor::from_vec(&[n], v).expect("1-D")
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor{:?} {:?}", self.shape(), self.view())
    }
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Self) -> bool {
        self.shape() == other.shape() && self.as_slice() == other.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_tensors_hold_their_values_and_clones_are_copies() {
        for n in 0..=INLINE_VALUES + 1 {
            let values: Vec<f32> = (0..n).map(|i| i as f32 - 1.5).collect();
            let built = [
                Tensor::from_exact_iter(&[n], values.iter().copied()),
                Tensor::from_kernel(&[n], |out| out.copy_from_slice(&values)),
            ];
            for t in built {
                assert_eq!(t.as_slice(), &values[..], "{n} elements");
                assert_eq!(matches!(t.data, Storage::Inline { .. }), n <= INLINE_VALUES);
                let original = t.clone();
                let mut changed = t;
                if n > 0 {
                    changed.make_mut()[0] = 99.0;
                    assert_eq!(original.as_slice(), &values[..], "the clone was not changed");
                    assert_eq!(changed.as_slice()[0], 99.0);
                }
                assert_eq!(ArrayD::from(original).as_slice().unwrap(), &values[..]);
            }
        }
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn holding_values_inline_does_not_make_a_tensor_larger() {
        // The inline shape (56 bytes) and the shared storage's fat pointer with its tag (24).
        assert_eq!(std::mem::size_of::<Tensor>(), 80);
    }
}
