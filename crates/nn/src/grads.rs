//! `ParamGrads`: one gradient tensor per parameter of a store, keyed by [`ParamId`].
//!
//! This is what optimizers consume. It is dense (every parameter has a tensor, zeros where a
//! loss does not reach), so sums and weighted combinations of several tasks' gradients are
//! plain elementwise loops. A subset can be flattened into one `f32` vector in a fixed order
//! (the order of the ids given, each tensor row-major) and written back from one.

use tapestry_autodiff::Tensor;

use crate::error::NnError;
use crate::params::{ParamId, Params};
use crate::util::{modify, sum_squares};

/// Gradients of every parameter of a [`Params`] store.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamGrads {
    grads: Vec<Tensor>,
}

impl ParamGrads {
    pub(crate) fn from_tensors(grads: Vec<Tensor>) -> Self {
        ParamGrads { grads }
    }

    /// Zeros shaped like every parameter of `params`.
    pub fn zeros(params: &Params) -> Self {
        ParamGrads { grads: params.iter().map(|(_, _, v)| Tensor::zeros(v.shape())).collect() }
    }

    /// The number of parameters covered.
    pub fn len(&self) -> usize {
        self.grads.len()
    }

    /// True if no parameters are covered.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }

    /// The gradient of parameter `id`.
    ///
    /// # Panics
    /// If `id` is out of range.
    pub fn get(&self, id: ParamId) -> &Tensor {
        &self.grads[id.index()]
    }

    /// Replaces the gradient of parameter `id`; the shape must stay the same.
    ///
    /// # Panics
    /// If `id` is out of range.
    pub fn set(&mut self, id: ParamId, grad: Tensor) -> Result<(), NnError> {
        let old = &self.grads[id.index()];
        if old.shape() != grad.shape() {
            return Err(NnError::Shape {
                name: format!("gradient {}", id.index()),
                expected: old.shape().to_vec(),
                found: grad.shape().to_vec(),
            });
        }
        self.grads[id.index()] = grad;
        Ok(())
    }

    /// Runs `f` on the elements of the gradient of `id`, in place.
    ///
    /// # Panics
    /// If `id` is out of range.
    pub fn update<R>(&mut self, id: ParamId, f: impl FnOnce(&mut [f32]) -> R) -> R {
        modify(&mut self.grads[id.index()], f)
    }

    /// `(id, gradient)` of every parameter in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &Tensor)> + '_ {
        self.grads.iter().enumerate().map(|(i, g)| (ParamId(i as u32), g))
    }

    /// The gradients of `ids` concatenated in that order (each tensor row-major).
    ///
    /// # Panics
    /// If an id is out of range.
    pub fn flatten(&self, ids: &[ParamId]) -> Vec<f32> {
        let mut flat = Vec::with_capacity(self.numel_of(ids));
        for &id in ids {
            flat.extend_from_slice(self.grads[id.index()].as_slice());
        }
        flat
    }

    /// Every gradient concatenated in registration order.
    pub fn flatten_all(&self) -> Vec<f32> {
        self.grads.iter().flat_map(|g| g.as_slice().iter().copied()).collect()
    }

    /// Overwrites the gradients of `ids` with consecutive pieces of `flat`.
    ///
    /// Errors (and changes nothing) if the length does not match.
    ///
    /// # Panics
    /// If an id is out of range.
    pub fn set_flat(&mut self, ids: &[ParamId], flat: &[f32]) -> Result<(), NnError> {
        let expected = self.numel_of(ids);
        if expected != flat.len() {
            return Err(NnError::FlatLength { expected, found: flat.len() });
        }
        let mut at = 0;
        for &id in ids {
            let n = self.grads[id.index()].len();
            self.update(id, |g| g.copy_from_slice(&flat[at..at + n]));
            at += n;
        }
        Ok(())
    }

    /// The number of elements of the gradients of `ids`.
    ///
    /// # Panics
    /// If an id is out of range.
    pub fn numel_of(&self, ids: &[ParamId]) -> usize {
        ids.iter().map(|&id| self.grads[id.index()].len()).sum()
    }

    fn check_layout(&self, other: &ParamGrads) {
        assert_eq!(self.len(), other.len(), "gradients of stores of different sizes combined");
        for (a, b) in self.grads.iter().zip(&other.grads) {
            assert_eq!(a.shape(), b.shape(), "gradients of different shapes combined");
        }
    }

    /// `self += alpha * other`, elementwise.
    ///
    /// # Panics
    /// If the two do not cover the same parameters with the same shapes.
    pub fn add_scaled(&mut self, alpha: f32, other: &ParamGrads) {
        self.check_layout(other);
        for (a, b) in self.grads.iter_mut().zip(&other.grads) {
            modify(a, |a| {
                for (x, y) in a.iter_mut().zip(b.as_slice()) {
                    *x += alpha * y;
                }
            });
        }
    }

    /// `self += other`, elementwise.
    ///
    /// # Panics
    /// If the two do not cover the same parameters with the same shapes.
    pub fn add_assign(&mut self, other: &ParamGrads) {
        self.check_layout(other);
        for (a, b) in self.grads.iter_mut().zip(&other.grads) {
            modify(a, |a| {
                for (x, y) in a.iter_mut().zip(b.as_slice()) {
                    *x += y;
                }
            });
        }
    }

    /// Multiplies every gradient by `factor`.
    pub fn scale(&mut self, factor: f32) {
        for g in &mut self.grads {
            modify(g, |g| g.iter_mut().for_each(|x| *x *= factor));
        }
    }

    /// The global L2 norm over every gradient (accumulated in f64).
    pub fn norm(&self) -> f32 {
        self.grads.iter().map(|g| sum_squares(g.as_slice())).sum::<f64>().sqrt() as f32
    }

    /// The L2 norm over the gradients of `ids`.
    ///
    /// # Panics
    /// If an id is out of range.
    pub fn norm_of(&self, ids: &[ParamId]) -> f32 {
        ids.iter().map(|&id| sum_squares(self.grads[id.index()].as_slice())).sum::<f64>().sqrt()
            as f32
    }

    /// True if every element is finite.
    pub fn all_finite(&self) -> bool {
        self.grads.iter().all(Tensor::all_finite)
    }
}
