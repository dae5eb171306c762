//! Uncertainty weighting (Kendall, Gal & Cipolla, 2018): each task's loss is scaled by a learned
//! homoscedastic variance, `L = Σ_t (L_t / (2σ_t²) + log σ_t)`. With `s_t = log σ_t²` learned
//! (as LibMTL does, from `s_t = −0.5`), this is `Σ_t (e^{−s_t} L_t + s_t) / 2`, built inside
//! the graph so that `s` trains with the model's optimizer. A task whose loss stays large gets a
//! large σ and a small weight `e^{−s_t}/2`; the `log σ` term keeps σ from growing without bound.
//! Cost: that of equal weighting (one backward pass), plus T parameters.

use tapestry_autodiff::Var;
use tapestry_data::TaskSpec;
use tapestry_nn::{Bound, ParamId, Params};

use super::{
    check_losses, per_task_param, Needs, StepInput, StepWeights, Weighting, WeightingError,
};

/// The name of the learned log-variances in the parameter store (and in checkpoints).
pub const LOG_VAR_NAME: &str = "weighting.uw.log_var";

/// Uncertainty weighting with learned log-variances `s_t`, initialised to `initial`.
#[derive(Debug, Clone)]
pub struct UncertaintyWeighting {
    /// The initial `s_t = log σ_t²` (LibMTL: −0.5).
    pub initial: f32,
    log_var: Option<ParamId>,
    /// `s` as bound at the current step (for the reported weights): rewritten by
    /// `combined_loss` before every `weights`, a copy of the parameters rather than state.
    current: Vec<f64>,
}

impl Default for UncertaintyWeighting {
    fn default() -> Self {
        UncertaintyWeighting { initial: -0.5, log_var: None, current: Vec::new() }
    }
}

impl Weighting for UncertaintyWeighting {
    fn name(&self) -> &'static str {
        "uw"
    }

    fn needs(&self) -> Needs {
        Needs::LOSSES
    }

    fn register(&mut self, params: &mut Params, tasks: &[TaskSpec]) -> Result<(), WeightingError> {
        self.log_var = Some(per_task_param("uw", params, LOG_VAR_NAME, self.initial, tasks.len())?);
        Ok(())
    }

    fn combined_loss<'t>(&mut self, losses: &[Var<'t>], bound: &Bound<'t>) -> Option<Var<'t>> {
        let s = bound.var(self.log_var.expect("uw: register() runs before the first step"));
        self.current = s.value().as_slice().iter().map(|&v| f64::from(v)).collect();
        let l = Var::stack(losses, 0);
        Some(((l * (-s).exp() + s) * 0.5).sum_all())
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("uw", input.losses)?;
        if self.current.len() != input.losses.len() {
            return Err(WeightingError::MissingInput {
                method: "uw",
                what: "its log-variances (register() was not called)",
            });
        }
        let weights = self.current.iter().map(|s| (-s).exp() / 2.0).collect();
        let diagnostics = vec![("uw.log_var".into(), self.current.clone())];
        Ok(StepWeights { weights, diagnostics, ..Default::default() })
    }
}
