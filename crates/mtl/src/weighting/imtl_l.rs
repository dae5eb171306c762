//! IMTL-L (Liu et al., 2021): learn a scale per task so that every scaled loss stays near 1,
//! `L = Σ_t (e^{s_t} L_t − s_t)` with `s` learned alongside the network, built in the graph.
//! `∂L/∂s_t = e^{s_t} L_t − 1` vanishes at `e^{s_t} = 1/L_t`, so each task's scaled loss is
//! driven to 1 whatever its units: the weights `e^{s_t}` (reported) undo each loss's scale.
//! `s` starts at 0 (weights 1). Cost: that of equal weighting, plus T parameters.

use tapestry_autodiff::Var;
use tapestry_data::TaskSpec;
use tapestry_nn::{Bound, ParamId, Params};

use super::{
    check_losses, per_task_param, Needs, StepInput, StepWeights, Weighting, WeightingError,
};

/// The name of the learned log-scales in the parameter store (and in checkpoints).
pub const LOG_SCALE_NAME: &str = "weighting.imtl_l.log_scale";

/// IMTL-L with learned log-scales `s_t`, starting at 0.
#[derive(Debug, Clone, Default)]
pub struct ImtlL {
    log_scale: Option<ParamId>,
    /// `s` as bound at the current step (for the reported weights): rewritten by
    /// `combined_loss` before every `weights`, a copy of the parameters rather than state.
    current: Vec<f64>,
}

impl Weighting for ImtlL {
    fn name(&self) -> &'static str {
        "imtl-l"
    }

    fn needs(&self) -> Needs {
        Needs::LOSSES
    }

    fn register(&mut self, params: &mut Params, tasks: &[TaskSpec]) -> Result<(), WeightingError> {
        self.log_scale = Some(per_task_param("imtl-l", params, LOG_SCALE_NAME, 0.0, tasks.len())?);
        Ok(())
    }

    fn combined_loss<'t>(&mut self, losses: &[Var<'t>], bound: &Bound<'t>) -> Option<Var<'t>> {
        let s = bound.var(self.log_scale.expect("imtl-l: register() runs before the first step"));
        self.current = s.value().as_slice().iter().map(|&v| f64::from(v)).collect();
        Some((Var::stack(losses, 0) * s.exp() - s).sum_all())
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("imtl-l", input.losses)?;
        if self.current.len() != input.losses.len() {
            return Err(WeightingError::MissingInput {
                method: "imtl-l",
                what: "its log-scales (register() was not called)",
            });
        }
        let weights = self.current.iter().map(|s| s.exp()).collect();
        Ok(StepWeights {
            weights,
            diagnostics: vec![("imtl_l.log_scale".into(), self.current.clone())],
            ..Default::default()
        })
    }
}
