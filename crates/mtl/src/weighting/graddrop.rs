//! GradDrop (Chen et al., 2020): at the shared representation `Z`, keep each element's
//! gradients of one sign only, chosen at random in proportion to how much of the elements'
//! total gradient has that sign. With `r_t = ∂L_t/∂Z` and per element of `Z`,
//!
//! ```text
//! P = ½ (1 + Σ_t r_t / (Σ_t |r_t| + 1e-7)),   U ~ Uniform(0, 1)
//! m_t = [P > U]·[r_t > 0] + [P < U]·[r_t < 0]
//! d = Σ_t (ℓ + (1 − ℓ) m_t) r_t                 (leak ℓ, 0 by default)
//! ```
//!
//! and `d` is pushed back through the trunk as the representation's cotangent (a vector-Jacobian
//! product); the heads get their own losses' gradients (weights 1). LibMTL's form; `U` is drawn
//! from the run's seed and the step. Cost: the heads' backward to `Z` (like MGDA-UB), then one
//! backward of the trunk from `d`, about equal weighting's.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::Tensor;

use super::{check_losses, Direction, Needs, StepInput, StepWeights, Weighting, WeightingError};

/// GradDrop with leak `leak` in [0, 1].
#[derive(Debug, Clone, Copy, Default)]
pub struct GradDrop {
    /// The share ℓ of every gradient kept whatever the draw (0 in the paper's main setting).
    pub leak: f32,
}

impl GradDrop {
    /// The direction at `Z` for the stacked gradients `r` (`[T, ..Z]`, row-major) and the
    /// uniform draws `u` (one per element of `Z`).
    ///
    /// # Panics
    /// If `r.len()` is not `T · u.len()`.
    pub fn direction(r: &[f32], tasks: usize, u: &[f32], leak: f32) -> Vec<f32> {
        let n = u.len();
        assert_eq!(r.len(), tasks * n, "one draw per element of the representation");
        (0..n)
            .map(|j| {
                let (sum, abs) = (0..tasks)
                    .fold((0.0f32, 0.0f32), |(s, a), t| (s + r[t * n + j], a + r[t * n + j].abs()));
                let p = 0.5 * (1.0 + sum / (abs + 1e-7));
                (0..tasks)
                    .map(|t| {
                        let g = r[t * n + j];
                        let kept = (p > u[j] && g > 0.0) || (p < u[j] && g < 0.0);
                        (leak + (1.0 - leak) * f32::from(u8::from(kept))) * g
                    })
                    .sum()
            })
            .collect()
    }

    /// The draws of step `step` of a run seeded with `seed`.
    pub fn draws(seed: u64, step: u64, n: usize) -> Vec<f32> {
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x4744);
        (0..n).map(|_| rng.gen::<f32>()).collect()
    }
}

impl Weighting for GradDrop {
    fn name(&self) -> &'static str {
        "graddrop"
    }

    fn needs(&self) -> Needs {
        Needs { representation_gradients: true, ..Needs::LOSSES }
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("graddrop", input.losses)?;
        if !(0.0..=1.0).contains(&self.leak) {
            return Err(WeightingError::Invalid {
                method: "graddrop",
                message: format!("the leak must lie in [0, 1], got {}", self.leak),
            });
        }
        let r = input.representation_gradients("graddrop")?;
        let (_, stacked) = r.block(0);
        let shape = &stacked.shape()[1..];
        let u = Self::draws(input.seed, input.step, shape.iter().product());
        let d = Self::direction(stacked.as_slice(), r.tasks(), &u, self.leak);
        let d = Tensor::from_vec(shape, d).expect("the representation's shape");
        Ok(StepWeights {
            weights: vec![1.0; r.tasks()],
            direction: Some(Direction::Representation(d)),
            ..Default::default()
        })
    }
}
