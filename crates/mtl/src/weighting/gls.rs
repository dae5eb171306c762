//! Geometric loss strategy (Chennupati et al., 2019): minimise the geometric mean of the task
//! losses, `L = (Π_t L_t)^{1/T}`. Its gradient is a weighted sum of the task gradients,
//!
//! ```text
//! ∂L/∂θ = Σ_t (L / (T·L_t)) ∇L_t,     so  w_t = L / (T·L_t)
//! ```
//!
//! which is what this weighting returns: a task's weight falls as its loss grows, so no task's
//! scale dominates (the geometric mean is invariant to rescaling one loss). Losses are floored at
//! 1e-12 so that a loss of 0 gives finite weights. Cost: that of equal weighting.

use super::{check_losses, Needs, StepInput, StepWeights, Weighting, WeightingError};

/// The smallest loss the weights divide by.
const FLOOR: f64 = 1e-12;

/// Geometric loss strategy.
#[derive(Debug, Clone, Copy, Default)]
pub struct GeometricLossStrategy;

impl Weighting for GeometricLossStrategy {
    fn name(&self) -> &'static str {
        "gls"
    }

    fn needs(&self) -> Needs {
        Needs::LOSSES
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("gls", input.losses)?;
        let t = input.losses.len() as f64;
        let floored: Vec<f64> = input.losses.iter().map(|l| l.max(FLOOR)).collect();
        // The geometric mean through logs, so a product of many large losses cannot overflow.
        let g = (floored.iter().map(|l| l.ln()).sum::<f64>() / t).exp();
        let weights = floored.iter().map(|l| g / (t * l)).collect();
        Ok(StepWeights {
            weights,
            diagnostics: vec![("gls.geometric_mean".into(), vec![g])],
            ..Default::default()
        })
    }
}
