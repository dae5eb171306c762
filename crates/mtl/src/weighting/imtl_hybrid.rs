//! IMTL (Liu et al., ICLR 2021, "Towards Impartial Multi-task Learning"): the paper's full
//! method, IMTL-L and IMTL-G together (its "hybrid"; LibMTL's `IMTL`, which has no other mode).
//!
//! The losses are scaled in the graph as IMTL-L does ([`ImtlL`]): `L'_t = e^{s_t} L_t − s_t`
//! with learned log-scales `s`. The gradients of the scaled losses on the shared parameters are
//! `e^{s_t} g_t`, whose Gram is `G_st e^{s_s + s_t}`; IMTL-G's weights α of that Gram
//! ([`ImtlG::weights_from_gram`]) give the shared parameters' update
//!
//! ```text
//! d = Σ_t α_t e^{s_t} g_t
//! ```
//!
//! returned as a direction, while the heads and the scales get the gradient of
//! `Σ_t (e^{s_t} L_t − s_t)`, as in LibMTL (whose per-task backward passes of the scaled losses
//! reach them before the shared gradients are replaced). The weight reported for task t is that
//! of `L_t` on the shared parameters, `α_t e^{s_t}`. Where IMTL-G's system is singular (parallel
//! or zero gradients) α falls back to `1/T`, flagged as `imtl.singular`.
//!
//! Cost: IMTL-G's (the per-task gradients, their Gram, a `(T−1)`-square solve, one combination,
//! returned as a [`Direction::Combination`]), and T parameters.

use tapestry_autodiff::Var;
use tapestry_data::TaskSpec;
use tapestry_nn::{Bound, Params};

use super::{
    check_losses, Direction, ImtlG, ImtlL, Needs, StepInput, StepWeights, Weighting,
    WeightingError, WeightingState,
};

/// IMTL: IMTL-L's learned loss scales and IMTL-G's weights on the scaled gradients.
#[derive(Debug, Clone, Default)]
pub struct Imtl {
    scales: ImtlL,
}

impl Imtl {
    /// IMTL-G's weights α for the gradients `e^{s_t} g_t`, from the Gram `gram` of the `g_t`
    /// (`t × t`, row-major) and the scales `e^{s_t}`; `None` where the system is singular.
    ///
    /// # Panics
    /// If `scales.len() != t` or `gram.len() != t * t`.
    pub fn weights_from_gram(gram: &[f64], t: usize, scales: &[f64]) -> Option<Vec<f64>> {
        assert!(scales.len() == t && gram.len() == t * t, "a {t} x {t} Gram and {t} scales");
        let scaled: Vec<f64> =
            (0..t * t).map(|k| gram[k] * scales[k / t] * scales[k % t]).collect();
        ImtlG::weights_from_gram(&scaled, t)
    }
}

impl Weighting for Imtl {
    fn name(&self) -> &'static str {
        "imtl"
    }

    fn needs(&self) -> Needs {
        Needs { shared_gram: true, ..Needs::LOSSES }
    }

    fn register(&mut self, params: &mut Params, tasks: &[TaskSpec]) -> Result<(), WeightingError> {
        self.scales.register(params, tasks)
    }

    fn combined_loss<'t>(&mut self, losses: &[Var<'t>], bound: &Bound<'t>) -> Option<Var<'t>> {
        self.scales.combined_loss(losses, bound)
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("imtl", input.losses)?;
        let gram = input.shared_gram("imtl")?;
        let scaled = self.scales.weights(input)?;
        let t = input.losses.len();
        let (alpha, singular) = match Self::weights_from_gram(gram, t, &scaled.weights) {
            Some(alpha) => (alpha, 0.0),
            None => (vec![1.0 / t as f64; t], 1.0),
        };
        let weights: Vec<f64> = alpha.iter().zip(&scaled.weights).map(|(a, e)| a * e).collect();
        let direction = Some(Direction::Combination(weights.clone()));
        let mut diagnostics = vec![("imtl.singular".into(), vec![singular])];
        diagnostics.extend(scaled.diagnostics);
        Ok(StepWeights { weights, direction, diagnostics })
    }

    fn state(&self) -> WeightingState {
        self.scales.state()
    }

    fn set_state(&mut self, state: &WeightingState) -> Result<(), WeightingError> {
        self.scales.set_state(state).map_err(|e| match e {
            WeightingError::Invalid { message, .. } => {
                WeightingError::Invalid { method: "imtl", message }
            }
            e => e,
        })
    }
}
