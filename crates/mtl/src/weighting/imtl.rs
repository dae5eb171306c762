//! IMTL-G (Liu et al., 2021, "Towards Impartial Multi-task Learning"): the weights α, summing
//! to one, whose combined gradient `d = Σ_t α_t g_t` has the same projection on every task's
//! unit gradient `u_t = g_t/‖g_t‖`, that is `⟨d, u_1⟩ = ⟨d, u_t⟩` for all t. With `D` the rows
//! `g_1 − g_t` and `U` the rows `u_1 − u_t` (t = 2..T),
//!
//! ```text
//! α_{2..T} = g_1 Uᵀ (D Uᵀ)⁻¹,     α_1 = 1 − Σ_{t≥2} α_t
//! ```
//!
//! Every entry is an inner product of gradients, so the solve needs only the `T × T` Gram
//! matrix: `⟨g_1 − g_t, u_1 − u_s⟩ = G_11/n_1 − G_1s/n_s − G_t1/n_1 + G_ts/n_s` with `n = ‖g‖`.
//! Cost: the Gram of the per-task gradients (like MGDA's, reduced during the sweep) and a
//! `(T−1)`-square solve. Where the
//! system is singular (two tasks' gradients parallel, or a zero gradient) there is no unique
//! impartial direction and the weights fall back to equal ones, `1/T` (reported as
//! `imtl.singular`).

use nalgebra::{DMatrix, DVector};

use super::{check_losses, Needs, StepInput, StepWeights, Weighting, WeightingError};

/// IMTL-G on the shared parameters' gradients.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImtlG;

impl ImtlG {
    /// The impartial weights for the `T × T` Gram matrix `gram` (row-major), or `None` if the
    /// system is singular.
    pub fn weights_from_gram(gram: &[f64], t: usize) -> Option<Vec<f64>> {
        if t == 1 {
            return Some(vec![1.0]);
        }
        let n: Vec<f64> = (0..t).map(|i| gram[i * t + i].sqrt()).collect();
        if n.iter().any(|&v| !(v > 0.0 && v.is_finite())) {
            return None;
        }
        let g = |i: usize, j: usize| gram[i * t + j];
        // ⟨g_1, u_1 − u_s⟩ and ⟨g_1 − g_r, u_1 − u_s⟩ for r, s = 2..T (0-based 1..t).
        let rhs = DVector::from_iterator(t - 1, (1..t).map(|s| g(0, 0) / n[0] - g(0, s) / n[s]));
        let m = DMatrix::from_fn(t - 1, t - 1, |r, s| {
            let (r, s) = (r + 1, s + 1);
            g(0, 0) / n[0] - g(0, s) / n[s] - g(r, 0) / n[0] + g(r, s) / n[s]
        });
        // α is a row vector: α (D Uᵀ) = g_1 Uᵀ, that is (D Uᵀ)ᵀ αᵀ = (g_1 Uᵀ)ᵀ.
        let scale = m.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
        let lu = m.transpose().lu();
        let tail =
            lu.solve(&rhs).filter(|_| lu.determinant().abs() > 1e-12 * scale.powi(t as i32 - 1))?;
        let mut alpha = vec![1.0 - tail.sum()];
        alpha.extend(tail.iter());
        alpha.iter().all(|a| a.is_finite()).then_some(alpha)
    }
}

impl Weighting for ImtlG {
    fn name(&self) -> &'static str {
        "imtl-g"
    }

    fn needs(&self) -> Needs {
        Needs { shared_gram: true, ..Needs::LOSSES }
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("imtl-g", input.losses)?;
        let gram = input.shared_gram("imtl-g")?;
        let t = input.losses.len();
        let (weights, singular) = match Self::weights_from_gram(gram, t) {
            Some(alpha) => (alpha, 0.0),
            None => (vec![1.0 / t as f64; t], 1.0),
        };
        Ok(StepWeights {
            weights,
            diagnostics: vec![("imtl.singular".into(), vec![singular])],
            ..Default::default()
        })
    }
}
