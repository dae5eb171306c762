//! Random loss weighting (Lin et al., 2022): every step draws fresh weights,
//! `w = softmax(z)`, `z ~ N(0, I_T)`, and weighs the losses with them (LibMTL's form; the
//! weights sum to 1). In expectation it is equal weighting; the noise is the point (the paper
//! argues it helps escape poor regions). The draw is a pure function of the run's seed and the
//! step, so a run is reproducible. Cost: that of equal weighting.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::{check_losses, Needs, StepInput, StepWeights, Weighting, WeightingError};

/// Random loss weighting.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomLossWeighting;

impl RandomLossWeighting {
    /// The weights of step `step` of a run seeded with `seed`: the softmax of T standard normal
    /// draws from a generator seeded by both.
    pub fn draw(seed: u64, step: u64, tasks: usize) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(
            seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x0052_4C57,
        );
        let z: Vec<f64> = (0..tasks).map(|_| StandardNormal.sample(&mut rng)).collect();
        let top = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let e: Vec<f64> = z.iter().map(|v| (v - top).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.iter().map(|v| v / sum).collect()
    }
}

impl Weighting for RandomLossWeighting {
    fn name(&self) -> &'static str {
        "rlw"
    }

    fn needs(&self) -> Needs {
        Needs::LOSSES
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("rlw", input.losses)?;
        Ok(StepWeights::weights(Self::draw(input.seed, input.step, input.losses.len())))
    }
}
