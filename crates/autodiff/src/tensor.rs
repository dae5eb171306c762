//! `Tensor`: an n-dimensional f32 array with shared, immutable storage.
//!
//! A tensor is an [`ndarray::ArcArray`] kept in standard (row-major, contiguous) layout, so
//! cloning is a reference-count increment and every kernel can take a plain slice.

use std::fmt;

use ndarray::{ArcArray, ArrayD, ArrayViewD, IxDyn};

use crate::error::ShapeError;

/// An n-dimensional `f32` array, cheap to clone (the storage is shared).
///
/// Invariant: the data is always in standard (C, row-major) layout, so [`Tensor::as_slice`]
/// never fails.
#[derive(Clone)]
pub struct Tensor(ArcArray<f32, IxDyn>);

impl Tensor {
    /// Wraps an ndarray array, copying only if it is not in standard layout.
    pub fn from_array(array: ArrayD<f32>) -> Self {
        if array.is_standard_layout() {
            Tensor(array.into_shared())
        } else {
            Tensor(array.as_standard_layout().into_owned().into_shared())
        }
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
        Ok(Tensor(ArcArray::from_shape_vec(IxDyn(shape), data).expect("length checked above")))
    }

    /// A tensor of the given shape filled with `value`.
    pub fn full(shape: &[usize], value: f32) -> Self {
        Tensor(ArcArray::from_elem(IxDyn(shape), value))
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
        self.0.shape()
    }

    /// The number of axes.
    pub fn ndim(&self) -> usize {
        self.0.ndim()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The elements in row-major order.
    pub fn as_slice(&self) -> &[f32] {
        self.0.as_slice().expect("Tensor invariant: standard layout")
    }

    /// The elements in row-major order, copied into a `Vec`.
    pub fn to_vec(&self) -> Vec<f32> {
        self.as_slice().to_vec()
    }

    /// A read-only ndarray view.
    pub fn view(&self) -> ArrayViewD<'_, f32> {
        self.0.view()
    }

    /// The underlying shared array.
    pub fn array(&self) -> &ArcArray<f32, IxDyn> {
        &self.0
    }

    /// An owned ndarray copy.
    pub fn to_array(&self) -> ArrayD<f32> {
        self.0.to_owned()
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
        Ok(Tensor(self.0.clone().into_shape_with_order(IxDyn(shape)).expect("contiguous")))
    }

    /// Applies `f` to every element, returning a new tensor.
    pub fn map(&self, f: impl Fn(f32) -> f32) -> Tensor {
        Tensor::from_array(self.0.map(|&v| f(v)))
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
        self.0.as_slice_mut().expect("Tensor invariant: standard layout")
    }
}

impl From<ArrayD<f32>> for Tensor {
    fn from(array: ArrayD<f32>) -> Self {
        Tensor::from_array(array)
    }
}

impl From<Tensor> for ArrayD<f32> {
    fn from(t: Tensor) -> Self {
        t.0.into_owned()
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
        write!(f, "Tensor{:?} {:?}", self.shape(), self.0)
    }
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Self) -> bool {
        self.shape() == other.shape() && self.as_slice() == other.as_slice()
    }
}
