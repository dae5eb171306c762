//! MGDA and MGDA-UB: the min-norm point of the task gradients' convex hull,
//! `min_{α ∈ simplex} ‖Σ_t α_t g_t‖²`, solved on the `T × T` Gram matrix (`min_norm`).
//! MGDA takes the Gram of the gradients on the shared parameters (one sweep that never holds
//! `T × P`, [`crate::task_grads::gram_on_params`]); MGDA-UB the gradients at the representation
//! `Z`, which need only the heads' backward pass.

use super::{check_losses, Needs, StepInput, StepWeights, Weighting, WeightingError};
use crate::min_norm::{min_norm_weights, MinNormSolution};
use crate::task_grads::gram_norms;

/// How MGDA scales each task's gradient before the min-norm solve (Sener & Koltun's options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GradNormalization {
    /// No scaling.
    #[default]
    None,
    /// Divide by the gradient's norm `‖g_t‖`.
    L2,
    /// Divide by the task loss `L_t`.
    Loss,
    /// Divide by `L_t · ‖g_t‖`.
    LossPlus,
}

/// The normalisers `n_t` of each task (1 where the formula gives 0 or a non-finite value).
fn normalizers(kind: GradNormalization, norms: &[f64], losses: &[f64]) -> Vec<f64> {
    norms
        .iter()
        .zip(losses)
        .map(|(&n, &l)| {
            let v = match kind {
                GradNormalization::None => 1.0,
                GradNormalization::L2 => n,
                GradNormalization::Loss => l,
                GradNormalization::LossPlus => l * n,
            };
            if v > 0.0 && v.is_finite() {
                v
            } else {
                1.0
            }
        })
        .collect()
}

/// The Gram matrix of `g_t / n_t`: `G[s][t] / (n_s n_t)`.
fn normalized_gram(gram: &[f64], norm: &[f64]) -> Vec<f64> {
    let t = norm.len();
    let mut out = gram.to_vec();
    for s in 0..t {
        for u in 0..t {
            out[s * t + u] /= norm[s] * norm[u];
        }
    }
    out
}

fn min_norm_step(
    method: &'static str,
    gram: &[f64],
    losses: &[f64],
    normalization: GradNormalization,
) -> Result<StepWeights, WeightingError> {
    check_losses(method, losses)?;
    let t = losses.len();
    let n = normalizers(normalization, &gram_norms(gram, t), losses);
    let solution = min_norm_weights(&normalized_gram(gram, &n), t)?;
    // As in the reference MGDA code, the weights found for the normalised gradients weigh the
    // raw task losses.
    Ok(StepWeights {
        weights: solution.weights.clone(),
        diagnostics: min_norm_diagnostics(&solution),
        ..Default::default()
    })
}

/// The min-norm solve as diagnostics: `min_norm.norm_sq`, `min_norm.kkt_residual`.
fn min_norm_diagnostics(s: &MinNormSolution) -> super::Diagnostics {
    vec![
        ("min_norm.norm_sq".into(), vec![s.min_norm_sq]),
        ("min_norm.kkt_residual".into(), vec![s.kkt_residual]),
    ]
}

/// MGDA (Sener & Koltun, 2018): weights on the simplex minimising `‖Σ α_t g_t‖²` over the
/// per-task gradients on the shared parameters, from their Gram alone.
#[derive(Debug, Clone, Default)]
pub struct Mgda {
    /// The gradient normalisation before the solve.
    pub normalization: GradNormalization,
}

impl Weighting for Mgda {
    fn name(&self) -> &'static str {
        "mgda"
    }
    fn needs(&self) -> Needs {
        Needs { shared_gram: true, ..Needs::LOSSES }
    }
    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        let gram = input.shared_gram("mgda")?;
        min_norm_step("mgda", gram, input.losses, self.normalization)
    }
}

/// MGDA-UB: the min-norm solve on the gradients w.r.t. the shared representation `Z`, an upper
/// bound that needs only the heads' backward pass.
#[derive(Debug, Clone, Default)]
pub struct MgdaUb {
    /// The gradient normalisation before the solve.
    pub normalization: GradNormalization,
}

impl Weighting for MgdaUb {
    fn name(&self) -> &'static str {
        "mgda-ub"
    }
    fn needs(&self) -> Needs {
        Needs { representation_gradients: true, ..Needs::LOSSES }
    }
    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        let grads = input.representation_gradients("mgda-ub")?;
        min_norm_step("mgda-ub", grads.gram(), input.losses, self.normalization)
    }
}
