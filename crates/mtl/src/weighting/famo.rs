//! FAMO (Liu, Liu, Jin, Stone & Liu, NeurIPS 2023, "FAMO: Fast Adaptive Multitask
//! Optimization"): task weights `z = softmax(ξ)` over logits ξ learned from how much each
//! task's log-loss fell at the previous step, with one backward pass per step like equal
//! weighting.
//!
//! With `D_t = L_t − m_t + ε` (`m_t = 0` the losses' lower bounds, `ε = 1e-8`), the step
//! differentiates
//!
//! ```text
//! Σ_t z_t log D_t / c,      c = Σ_s z_s / D_s  (held constant)
//! ```
//!
//! whose gradient is `Σ_t w_t ∇L_t` with `w_t = z_t / (c D_t)`: those are the weights the step
//! uses and reports, and they sum to 1. After the optimizer's update, on the same batch, with
//! `L'_t` the losses at the new parameters (one more forward pass, [`Needs::losses_after_update`]):
//!
//! ```text
//! δ_t = log D_t − log(L'_t − m_t + ε)                 how much each log-loss fell
//! ∂/∂ξ_i = (Jᵀ δ)_i = z_i (δ_i − Σ_j z_j δ_j)          J = ∂z/∂ξ = diag(z) − z zᵀ
//! ξ ← Adam step with learning rate w_lr, L2 weight decay γ (torch.optim.Adam's)
//! ```
//!
//! so a task whose log-loss fell less than the z-weighted mean gains weight. ξ starts at 0
//! (equal weights). As in the authors' code and LibMTL, Adam has `β = (0.9, 0.999)`,
//! `eps = 1e-8` and adds `γ ξ` to the gradient; LibMTL's defaults `w_lr = 0.025`, `γ = 0.001`
//! (the authors' code defaults to `γ = 0.01` and their scripts use 0.001 or 0.01 by data set).
//! The authors' example also clips the shared gradient's norm at 1; LibMTL does not, nor does
//! this weighting (clipping belongs to the optimizer). Cost: equal weighting's one backward,
//! one forward pass more per step (no backward), and `O(T)` for the logits.
//!
//! Its [`WeightingState`]: the logits (`logits`, empty before the first step), the losses of a
//! step whose update has not come yet (`pending`, absent between steps) and Adam's
//! (`adam.steps`, `adam.first_moment`, `adam.second_moment`).

use super::state::optimizer_keys;
use super::{
    check_losses, Needs, StepInput, StepWeights, Weighting, WeightingError, WeightingState,
};
use crate::gradnorm::{WeightOptimizer, WeightOptimizerState};

/// The keys of FAMO's [`WeightingState`] (Adam's under the prefix).
const LOGITS: &str = "logits";
const PENDING: &str = "pending";
const ADAM: &str = "adam";

/// The `ε` added to every loss before its log (the reference's `1e-8`).
const FAMO_EPS: f64 = 1e-8;

/// FAMO with logits' learning rate `w_lr` and weight decay `gamma`.
#[derive(Debug, Clone)]
pub struct Famo {
    /// The weight decay γ ≥ 0 of the logits (LibMTL: 0.001).
    pub gamma: f64,
    /// The learning rate of the logits, > 0 (LibMTL: 0.025).
    pub w_lr: f64,
    /// The logits ξ, one per task (empty before the first step).
    logits: Vec<f64>,
    /// The losses of the step whose update `after_update` is waiting for.
    pending: Option<Vec<f64>>,
    /// Adam's moments on the logits.
    adam: WeightOptimizerState,
}

impl Default for Famo {
    fn default() -> Self {
        Famo::new(0.001, 0.025)
    }
}

impl Famo {
    /// FAMO with weight decay `gamma` and learning rate `w_lr` on the logits.
    pub fn new(gamma: f64, w_lr: f64) -> Self {
        Famo {
            gamma,
            w_lr,
            logits: Vec::new(),
            pending: None,
            adam: WeightOptimizerState::default(),
        }
    }

    /// The current logits ξ (empty before the first step).
    pub fn logits(&self) -> &[f64] {
        &self.logits
    }

    /// `softmax(logits)`.
    pub fn softmax(logits: &[f64]) -> Vec<f64> {
        let top = logits.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let e: Vec<f64> = logits.iter().map(|v| (v - top).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.iter().map(|v| v / sum).collect()
    }

    /// The weights `w_t = z_t / (c D_t)` of the losses for the logits `logits`: the gradient
    /// of `Σ_t z_t log D_t / c` with respect to each `L_t`.
    ///
    /// # Panics
    /// If `losses` and `logits` differ in length.
    pub fn loss_weights(logits: &[f64], losses: &[f64]) -> Vec<f64> {
        assert_eq!(logits.len(), losses.len(), "one logit per task");
        let z = Self::softmax(logits);
        let d: Vec<f64> = losses.iter().map(|l| l + FAMO_EPS).collect();
        let c: f64 = z.iter().zip(&d).map(|(z, d)| z / d).sum();
        z.iter().zip(&d).map(|(z, d)| z / (c * d)).collect()
    }

    /// The gradient of the logits, `Jᵀ δ`, for losses `before` and `after` an update.
    ///
    /// # Panics
    /// If the three slices differ in length.
    pub fn logit_gradient(logits: &[f64], before: &[f64], after: &[f64]) -> Vec<f64> {
        assert!(logits.len() == before.len() && before.len() == after.len(), "one per task");
        let z = Self::softmax(logits);
        let delta: Vec<f64> = (before.iter().zip(after))
            .map(|(b, a)| (b + FAMO_EPS).ln() - (a + FAMO_EPS).ln())
            .collect();
        let mean: f64 = z.iter().zip(&delta).map(|(z, d)| z * d).sum();
        z.iter().zip(&delta).map(|(z, d)| z * (d - mean)).collect()
    }

    fn check(&self, losses: &[f64]) -> Result<(), WeightingError> {
        check_losses("famo", losses)?;
        let invalid = |message: String| Err(WeightingError::Invalid { method: "famo", message });
        if let Some((t, l)) = losses.iter().enumerate().find(|(_, &l)| l < 0.0) {
            return invalid(format!("loss of task {t} is negative ({l}); FAMO weighs log-losses"));
        }
        if !(self.gamma >= 0.0 && self.gamma.is_finite()) {
            return invalid(format!("gamma must be finite and >= 0, got {}", self.gamma));
        }
        if !(self.w_lr > 0.0 && self.w_lr.is_finite()) {
            return invalid(format!("w_lr must be finite and > 0, got {}", self.w_lr));
        }
        Ok(())
    }
}

impl Weighting for Famo {
    fn name(&self) -> &'static str {
        "famo"
    }

    fn needs(&self) -> Needs {
        Needs { losses_after_update: true, ..Needs::LOSSES }
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        self.check(input.losses)?;
        let t = input.losses.len();
        if self.logits.len() != t {
            self.logits = vec![0.0; t];
            self.adam = WeightOptimizerState::default();
        }
        self.pending = Some(input.losses.to_vec());
        Ok(StepWeights {
            weights: Self::loss_weights(&self.logits, input.losses),
            direction: None,
            diagnostics: vec![
                ("famo.z".into(), Self::softmax(&self.logits)),
                ("famo.logits".into(), self.logits.clone()),
            ],
        })
    }

    fn after_update(&mut self, losses_after: &[f64]) -> Result<(), WeightingError> {
        self.check(losses_after)?;
        let Some(before) = self.pending.take() else {
            return Err(WeightingError::Invalid {
                method: "famo",
                message: "the losses after an update came before the step's weights".into(),
            });
        };
        if before.len() != losses_after.len() {
            return Err(WeightingError::Invalid {
                method: "famo",
                message: format!(
                    "{} losses after the update for {} tasks",
                    losses_after.len(),
                    before.len()
                ),
            });
        }
        let mut gradient = Self::logit_gradient(&self.logits, &before, losses_after);
        gradient.iter_mut().zip(&self.logits).for_each(|(g, x)| *g += self.gamma * x);
        let steps = WeightOptimizer::ADAM.descent_steps(&gradient, &mut self.adam);
        self.logits.iter_mut().zip(steps).for_each(|(x, s)| *x -= self.w_lr * s);
        Ok(())
    }

    fn state(&self) -> WeightingState {
        let mut state = WeightingState::new();
        state.insert(LOGITS, self.logits.clone());
        if let Some(pending) = &self.pending {
            state.insert(PENDING, pending.clone());
        }
        state.insert_optimizer(ADAM, &self.adam);
        state
    }

    fn set_state(&mut self, state: &WeightingState) -> Result<(), WeightingError> {
        let [steps, first, second] = optimizer_keys(ADAM);
        state.check_keys("famo", &[LOGITS, PENDING, &steps, &first, &second])?;
        let logits = state.required("famo", LOGITS)?.to_vec();
        let pending = state.optional_len("famo", PENDING, logits.len())?.map(<[f64]>::to_vec);
        let adam = state.optimizer("famo", ADAM, logits.len())?;
        (self.logits, self.pending, self.adam) = (logits, pending, adam);
        Ok(())
    }
}
