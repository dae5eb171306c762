//! Per-root gradient norms of one weight (GradNorm's `‖∇_W L_t‖`), without forming the
//! gradients when the weight feeds a single linear layer.
//!
//! For `y = x·wᵀ + b` with `x` flattened to `X` (`N × in`) and the cotangent of root `t` at `y`
//! flattened to `δ_t` (`N × out`), the gradient is `G_t = δ_tᵀ X` and
//!
//! ```text
//! ‖G_t‖² = tr(Xᵀ δ_t δ_tᵀ X) = Σ_ij (δ_t δ_tᵀ)_ij (X Xᵀ)_ij        (the Gram identity)
//! ```
//!
//! So the sweep stops at `y`, `X Xᵀ` is one `N × N` product shared by every root, and each root
//! adds one `δ_t δ_tᵀ`: `N²·(in + T·out)` multiply-adds against `T·N·in·out` for the `T`
//! gradients themselves. With a batch of 128, `in = 3136`, `out = 256` and three roots that is
//! five times less arithmetic.

use crate::compute;
use crate::ops::matmul::MatmulOp;
use crate::ops::Op;
use crate::tape::{NodeId, Tape, Var};

impl Tape {
    /// `‖∂L_t/∂w‖` for each root `L_t` (each root a scalar), in f64.
    ///
    /// When `w`'s only use on the tape is as the weight of one `linear` op and the Gram identity
    /// (see the module documentation) is cheaper, the norms come from it; otherwise the
    /// gradients are computed with [`Tape::grad_batched`] and their norms taken. The two agree
    /// to rounding.
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.constant(Tensor::from_vec(&[2, 2], vec![1., 2., 3., 4.]).unwrap());
    /// let w = tape.leaf(Tensor::from_vec(&[1, 2], vec![0.5, -1.]).unwrap());
    /// let y = x.linear(w, None);
    /// let (l1, l2) = (y.sum_all(), y.mul_scalar(3.0).sum_all());
    /// let norms = tape.grad_norms_batched(&[l1, l2], w);
    /// // ∂l1/∂w = column sums of x = [4, 6]; ∂l2/∂w = 3·[4, 6].
    /// assert!((norms[0] - 52f64.sqrt()).abs() < 1e-9);
    /// assert!((norms[1] - 3.0 * 52f64.sqrt()).abs() < 1e-9);
    /// ```
    pub fn grad_norms_batched(&self, roots: &[Var<'_>], w: Var<'_>) -> Vec<f64> {
        if let Some((y, x)) = self.sole_linear_use(w) {
            let (xv, wv) = (self.var(x).value(), w.value());
            let (out, inn) = (wv.shape()[0], wv.shape()[1]);
            let n = xv.len() / inn.max(1);
            let t = roots.len();
            if n * (inn + t * out) < t * inn * out {
                let delta = self.grad_batched(roots, &[self.var(y)]).stacked(self.var(y));
                return gram_norms(xv.as_slice(), n, inn, delta.as_slice(), t, out);
            }
        }
        let stacked = self.grad_batched(roots, &[w]).stacked(w);
        let len = stacked.len() / roots.len().max(1);
        stacked
            .as_slice()
            .chunks(len.max(1))
            .map(|row| row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt())
            .collect()
    }

    /// If `w` is used exactly once on the tape, as the weight of a `linear` op, that op's output
    /// and input.
    fn sole_linear_use(&self, w: Var<'_>) -> Option<(NodeId, NodeId)> {
        let nodes = self.nodes();
        let mut found = None;
        let mut uses = 0;
        for (i, node) in nodes.iter().enumerate().skip(w.id.index() + 1) {
            node.op.for_each_input(|id| {
                if id == w.id {
                    uses += 1;
                    found = match node.op {
                        Op::Matmul(MatmulOp::Linear { x, w: weight, .. })
                            if weight == w.id && x != w.id =>
                        {
                            Some((NodeId(i as u32), x))
                        }
                        _ => None,
                    };
                }
            });
        }
        if uses == 1 {
            found
        } else {
            None
        }
    }
}

/// `‖δ_tᵀ X‖` for each `t` by the Gram identity: `x` is `N × inn`, `delta` is `T × N × out`.
fn gram_norms(x: &[f32], n: usize, inn: usize, delta: &[f32], t: usize, out: usize) -> Vec<f64> {
    // K = X Xᵀ (N × N).
    let mut k = vec![0.0f32; n * n];
    compute::gemm((n, inn, n), x, (inn, 1), x, (1, inn), &mut k, (n, 1), false);
    let mut d = vec![0.0f32; n * n];
    (0..t)
        .map(|task| {
            let dt = &delta[task * n * out..(task + 1) * n * out];
            // D_t = δ_t δ_tᵀ (N × N).
            compute::gemm((n, out, n), dt, (out, 1), dt, (1, out), &mut d, (n, 1), false);
            let sq: f64 = d.iter().zip(&k).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
            sq.max(0.0).sqrt()
        })
        .collect()
}
