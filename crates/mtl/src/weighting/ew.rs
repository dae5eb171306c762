//! Equal weighting: every task loss has weight 1, `L = Σ_t L_t`. Cost: one backward pass.

use super::{check_losses, Needs, StepInput, StepWeights, Weighting, WeightingError};

/// Equal weighting: every task loss has weight 1.
#[derive(Debug, Clone, Default)]
pub struct EqualWeighting;

impl Weighting for EqualWeighting {
    fn name(&self) -> &'static str {
        "ew"
    }

    fn needs(&self) -> Needs {
        Needs::LOSSES
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("ew", input.losses)?;
        Ok(StepWeights::weights(vec![1.0; input.losses.len()]))
    }
}
