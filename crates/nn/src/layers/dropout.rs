//! `Dropout`, as `torch.nn.Dropout`.

use tapestry_autodiff::Var;

use crate::module::{Ctx, Module};

/// Inverted dropout: in [`Mode::Train`](crate::Mode::Train) each element is zeroed with
/// probability `p` and the others are scaled by `1/(1−p)`; in eval mode the input passes
/// unchanged. Masks come from the context's RNG ([`Ctx::with_seed`]), so a run is reproducible
/// from its seeds (the masks differ from PyTorch's, which uses another generator).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    p: f32,
}

impl Dropout {
    /// Dropout with probability `p`.
    ///
    /// # Panics
    /// If `p` is not in `[0, 1]`.
    pub fn new(p: f32) -> Self {
        assert!((0.0..=1.0).contains(&p), "dropout probability {p} is not in [0, 1]");
        Dropout { p }
    }

    /// The drop probability.
    pub fn p(&self) -> f32 {
        self.p
    }
}

impl Module for Dropout {
    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        let train = ctx.is_training();
        x.dropout(self.p, train, ctx.rng())
    }
}
