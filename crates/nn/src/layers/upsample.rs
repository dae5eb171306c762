//! `Upsample2`: nearest-neighbour upsampling by 2, as `torch.nn.Upsample(scale_factor=2)`.

use tapestry_autodiff::Var;

use crate::module::{Ctx, Module};

/// Nearest-neighbour upsampling by 2: `[N, C, H, W]` to `[N, C, 2H, 2W]`, each value becoming a
/// 2 × 2 block. A reshape and a broadcast, so the gradient sums each block back.
#[derive(Clone, Copy, Debug, Default)]
pub struct Upsample2;

impl Module for Upsample2 {
    /// # Panics
    /// If the input is not 4-D.
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        let s = x.shape();
        assert!(s.len() == 4, "invalid argument to Upsample2: input {s:?} is not [N, C, H, W]");
        let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
        x.reshape(&[n, c, h, 1, w, 1]).broadcast_to(&[n, c, h, 2, w, 2]).reshape(&[
            n,
            c,
            2 * h,
            2 * w,
        ])
    }
}
