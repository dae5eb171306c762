//! GradNorm (Chen et al., 2018) as a weighting; the update itself is `crate::gradnorm`.

use super::state::optimizer_keys;
use super::{
    check_losses, Needs, StepInput, StepWeights, Weighting, WeightingError, WeightingState,
};
use crate::gradnorm::{gradnorm_update, GradNormConfig, WeightOptimizerState};

/// The keys of GradNorm's [`WeightingState`] (the optimizer's under the prefix).
const CURRENT: &str = "current";
const INITIAL_LOSSES: &str = "initial_losses";
const OPTIMIZER: &str = "optimizer";

/// GradNorm (Chen et al., 2018): learned task weights that balance the gradient norms of the
/// weighted losses on one shared layer against each task's relative training rate.
///
/// The weights used at a step are the current ones; the update computed from that step's
/// losses and norms applies from the next step. The initial losses `L_t(0)` are those of the
/// first step. The weights' optimizer state (Adam's moments) is kept from step to step.
///
/// Its [`WeightingState`]: `current` (the weights of the next step, empty before the first),
/// `initial_losses` (absent before the first step) and the weights' optimizer, `optimizer.steps`,
/// `optimizer.first_moment`, `optimizer.second_moment`.
#[derive(Debug, Clone)]
pub struct GradNorm {
    config: GradNormConfig,
    current: Vec<f64>,
    initial_losses: Option<Vec<f64>>,
    optimizer_state: WeightOptimizerState,
}

impl GradNorm {
    /// GradNorm with asymmetry `alpha` and weight learning rate `learning_rate`, with plain
    /// gradient descent on the weights ([`GradNormConfig::new`]).
    pub fn new(alpha: f64, learning_rate: f64) -> Self {
        GradNorm::with_config(GradNormConfig::new(alpha, learning_rate))
    }

    /// GradNorm with a full configuration, for instance [`GradNormConfig::adam`] for Adam on
    /// the weights as in the paper.
    pub fn with_config(config: GradNormConfig) -> Self {
        GradNorm {
            config,
            current: Vec::new(),
            initial_losses: None,
            optimizer_state: WeightOptimizerState::default(),
        }
    }

    /// The weights the next step will use (empty before the first step).
    pub fn current_weights(&self) -> &[f64] {
        &self.current
    }
}

impl Weighting for GradNorm {
    fn name(&self) -> &'static str {
        "gradnorm"
    }
    fn needs(&self) -> Needs {
        Needs { layer_gradient_norms: true, ..Needs::LOSSES }
    }
    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("gradnorm", input.losses)?;
        let norms = input.layer_grad_norms.ok_or(WeightingError::MissingInput {
            method: "gradnorm",
            what: "layer gradient norms",
        })?;
        let t = input.losses.len();
        if self.current.len() != t {
            self.current = vec![1.0; t];
            self.optimizer_state = WeightOptimizerState::default();
        }
        let initial = self.initial_losses.get_or_insert_with(|| input.losses.to_vec()).clone();
        let used = self.current.clone();
        let step = gradnorm_update(
            &used,
            norms,
            input.losses,
            &initial,
            &self.config,
            &mut self.optimizer_state,
        )?;
        self.current = step.weights.clone();
        let diagnostics = vec![
            ("gradnorm.next_weights".into(), step.weights),
            ("gradnorm.balance_loss".into(), vec![step.balance_loss]),
            ("gradnorm.weighted_grad_norms".into(), step.weighted_grad_norms),
            ("gradnorm.targets".into(), step.targets),
            ("gradnorm.weight_gradient".into(), step.weight_gradient),
        ];
        Ok(StepWeights { weights: used, diagnostics, ..Default::default() })
    }

    fn state(&self) -> WeightingState {
        let mut state = WeightingState::new();
        state.insert(CURRENT, self.current.clone());
        if let Some(initial) = &self.initial_losses {
            state.insert(INITIAL_LOSSES, initial.clone());
        }
        state.insert_optimizer(OPTIMIZER, &self.optimizer_state);
        state
    }

    fn set_state(&mut self, state: &WeightingState) -> Result<(), WeightingError> {
        let [steps, first, second] = optimizer_keys(OPTIMIZER);
        state.check_keys("gradnorm", &[CURRENT, INITIAL_LOSSES, &steps, &first, &second])?;
        let current = state.required("gradnorm", CURRENT)?.to_vec();
        // The first step sets both the weights and the initial losses.
        let initial_losses = if current.is_empty() {
            state.optional_len("gradnorm", INITIAL_LOSSES, 0)?.map(<[f64]>::to_vec)
        } else {
            Some(state.required_len("gradnorm", INITIAL_LOSSES, current.len())?.to_vec())
        };
        let optimizer_state = state.optimizer("gradnorm", OPTIMIZER, current.len())?;
        *self = GradNorm { config: self.config, current, initial_losses, optimizer_state };
        Ok(())
    }
}
