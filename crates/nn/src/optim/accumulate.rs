//! Gradient accumulation over several batches.

use crate::grads::ParamGrads;

/// Sums the gradients of several batches and hands back their mean, for an effective batch
/// larger than one forward pass.
///
/// ```
/// use tapestry_autodiff::Tensor;
/// use tapestry_nn::{optim::GradAccumulator, ParamGrads, Params};
///
/// let mut params = Params::new();
/// let w = params.add("w", Tensor::zeros(&[2])).unwrap();
/// let mut acc = GradAccumulator::new();
/// for k in 1..=4 {
///     let mut g = ParamGrads::zeros(&params);
///     g.set(w, Tensor::from(vec![k as f32, 0.0])).unwrap();
///     acc.add(&g);
/// }
/// assert_eq!(acc.count(), 4);
/// let mean = acc.take_mean().unwrap();           // (1+2+3+4)/4 = 2.5; the accumulator resets
/// assert_eq!(mean.get(w).to_vec(), vec![2.5, 0.0]);
/// assert!(acc.is_empty());
/// ```
#[derive(Clone, Debug, Default)]
pub struct GradAccumulator {
    sum: Option<ParamGrads>,
    count: usize,
}

impl GradAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one batch's gradients.
    ///
    /// # Panics
    /// If `grads` covers other parameters than the gradients added before.
    pub fn add(&mut self, grads: &ParamGrads) {
        match &mut self.sum {
            None => self.sum = Some(grads.clone()),
            Some(sum) => sum.add_assign(grads),
        }
        self.count += 1;
    }

    /// The number of batches added since the last reset.
    pub fn count(&self) -> usize {
        self.count
    }

    /// True if nothing was added since the last reset.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The sum of the added gradients, if any.
    pub fn sum(&self) -> Option<&ParamGrads> {
        self.sum.as_ref()
    }

    /// The mean of the added gradients (`None` if empty); the accumulator is reset.
    pub fn take_mean(&mut self) -> Option<ParamGrads> {
        let mut sum = self.sum.take()?;
        sum.scale(1.0 / self.count as f32);
        self.count = 0;
        Some(sum)
    }

    /// The sum of the added gradients (`None` if empty); the accumulator is reset.
    pub fn take_sum(&mut self) -> Option<ParamGrads> {
        self.count = 0;
        self.sum.take()
    }

    /// Drops everything added.
    pub fn reset(&mut self) {
        self.sum = None;
        self.count = 0;
    }
}
