//! `Flatten`: keeps the batch axis and folds every other axis into one, as `torch.nn.Flatten()`.

use tapestry_autodiff::Var;

use crate::module::{Ctx, Module};

/// Reshapes `[N, d1, d2, ..]` to `[N, d1·d2·..]` (no copy; the gradient is reshaped back).
#[derive(Clone, Copy, Debug, Default)]
pub struct Flatten;

impl Module for Flatten {
    /// # Panics
    /// If the input has no axes.
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        let shape = x.shape();
        assert!(!shape.is_empty(), "invalid argument to Flatten: a 0-dimensional input");
        let rest: usize = shape[1..].iter().product();
        x.reshape(&[shape[0], rest])
    }
}
