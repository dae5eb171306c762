//! Adam and AdamW, as `torch.optim.Adam` and `torch.optim.AdamW` (without AMSGrad).

use std::collections::BTreeMap;

use tapestry_autodiff::Tensor;

use crate::error::NnError;
use crate::grads::ParamGrads;
use crate::optim::{check_fit, check_state, hyper, Optimizer, OptimizerState};
use crate::params::{ParamId, Params};
use crate::util::modify;

/// The configuration of [`Adam`] and [`AdamW`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// The learning rate.
    pub lr: f64,
    /// β₁, the decay of the first moment.
    pub beta1: f64,
    /// β₂, the decay of the second moment.
    pub beta2: f64,
    /// ε, added to the bias-corrected √v (outside the square root, as PyTorch).
    pub eps: f64,
    /// λ: L2 penalty added to the gradient (Adam) or decoupled decay (AdamW).
    pub weight_decay: f64,
}

impl AdamConfig {
    /// PyTorch's Adam defaults: lr 1e-3, β = (0.9, 0.999), ε = 1e-8, no weight decay.
    pub fn adam() -> Self {
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }

    /// PyTorch's AdamW defaults: as Adam, with weight decay 1e-2.
    pub fn adamw() -> Self {
        AdamConfig { weight_decay: 1e-2, ..Self::adam() }
    }

    fn validate(&self) -> Result<(), NnError> {
        let AdamConfig { lr, beta1, beta2, eps, weight_decay } = *self;
        for (name, v) in [("lr", lr), ("eps", eps), ("weight_decay", weight_decay)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(NnError::Invalid(format!(
                    "Adam {name} must be finite and >= 0, got {v}"
                )));
            }
        }
        for (name, v) in [("beta1", beta1), ("beta2", beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(NnError::Invalid(format!("Adam {name} must be in [0, 1), got {v}")));
            }
        }
        Ok(())
    }
}

/// The moments and the update shared by Adam and AdamW.
#[derive(Clone, Debug)]
struct AdamCore {
    config: AdamConfig,
    decoupled: bool,
    steps: u64,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
}

impl AdamCore {
    fn new(config: AdamConfig, decoupled: bool) -> Self {
        AdamCore { config, decoupled, steps: 0, exp_avg: Vec::new(), exp_avg_sq: Vec::new() }
    }

    fn step(&mut self, params: &mut Params, grads: &ParamGrads) {
        check_fit(params, grads);
        if self.exp_avg.is_empty() {
            self.exp_avg = params.iter().map(|(_, _, v)| Tensor::zeros(v.shape())).collect();
            self.exp_avg_sq = self.exp_avg.clone();
        }
        assert_eq!(self.exp_avg.len(), params.len(), "optimizer used with another store");
        self.steps += 1;
        let AdamConfig { lr, beta1, beta2, eps, weight_decay } = self.config;
        let step = self.steps as f64;
        // Scalars as PyTorch computes them: in f64, applied to f32 tensors.
        let bias_correction1 = 1.0 - beta1.powf(step);
        let bias_correction2 = 1.0 - beta2.powf(step);
        let neg_step_size = (-(lr / bias_correction1)) as f32;
        let bias_correction2_sqrt = bias_correction2.sqrt() as f32;
        let (b1, b2) = (beta1 as f32, beta2 as f32);
        let (one_minus_b1, one_minus_b2) = ((1.0 - beta1) as f32, (1.0 - beta2) as f32);
        let (eps, wd) = (eps as f32, weight_decay as f32);
        let decay = (1.0 - lr * weight_decay) as f32;
        for id in params.ids() {
            let g = grads.get(id).as_slice();
            let (m, v) = (&mut self.exp_avg[id.index()], &mut self.exp_avg_sq[id.index()]);
            let decoupled = self.decoupled;
            params.update(id, |p| {
                modify(m, |m| {
                    modify(v, |v| {
                        for i in 0..p.len() {
                            if decoupled {
                                p[i] *= decay;
                            }
                            let g = if !decoupled && weight_decay != 0.0 {
                                g[i] + wd * p[i]
                            } else {
                                g[i]
                            };
                            m[i] = m[i] * b1 + one_minus_b1 * g;
                            v[i] = v[i] * b2 + one_minus_b2 * g * g;
                            let denom = v[i].sqrt() / bias_correction2_sqrt + eps;
                            p[i] += neg_step_size * (m[i] / denom);
                        }
                    })
                })
            });
        }
    }

    fn state(&self, kind: &str) -> OptimizerState {
        let c = self.config;
        let hyper = BTreeMap::from([
            ("beta1".to_string(), c.beta1),
            ("beta2".to_string(), c.beta2),
            ("eps".to_string(), c.eps),
            ("weight_decay".to_string(), c.weight_decay),
        ]);
        let mut slots = Vec::new();
        for (i, (m, v)) in self.exp_avg.iter().zip(&self.exp_avg_sq).enumerate() {
            slots.push(("exp_avg".to_string(), ParamId(i as u32), m.clone()));
            slots.push(("exp_avg_sq".to_string(), ParamId(i as u32), v.clone()));
        }
        OptimizerState { kind: kind.into(), step: self.steps, lr: c.lr, hyper, slots }
    }

    fn load_state(
        &mut self,
        kind: &str,
        params: &Params,
        state: &OptimizerState,
    ) -> Result<(), NnError> {
        let slots = check_state(kind, &["exp_avg", "exp_avg_sq"], params, state)?;
        let config = AdamConfig {
            lr: state.lr,
            beta1: hyper(state, "beta1")?,
            beta2: hyper(state, "beta2")?,
            eps: hyper(state, "eps")?,
            weight_decay: hyper(state, "weight_decay")?,
        };
        config.validate().map_err(|e| NnError::OptimizerState(e.to_string()))?;
        let (mut m, mut v) = (Vec::new(), Vec::new());
        if !slots.is_empty() {
            for id in params.ids() {
                for (name, out) in [("exp_avg", &mut m), ("exp_avg_sq", &mut v)] {
                    let t = slots.get(&(name, id)).ok_or_else(|| {
                        NnError::OptimizerState(format!(
                            "no `{name}` for parameter `{}`",
                            params.name(id)
                        ))
                    })?;
                    out.push((*t).clone());
                }
            }
        }
        self.exp_avg = m;
        self.exp_avg_sq = v;
        self.steps = state.step;
        self.config = config;
        Ok(())
    }
}

/// Adam (Kingma & Ba), with PyTorch's update rule. With gradient `g` and step count `t`:
///
/// ```text
/// g = g + λ·p                              (L2 penalty, if λ > 0)
/// m = β₁·m + (1 − β₁)·g
/// v = β₂·v + (1 − β₂)·g²
/// p = p − lr / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
/// ```
#[derive(Clone, Debug)]
pub struct Adam(AdamCore);

impl Adam {
    /// Adam with learning rate `lr` and PyTorch's other defaults.
    pub fn new(lr: f64) -> Self {
        Adam(AdamCore::new(AdamConfig { lr, ..AdamConfig::adam() }, false))
    }

    /// Adam with the given configuration.
    ///
    /// Errors if a value is out of range (β outside [0, 1), negative or non-finite others).
    pub fn with_config(config: AdamConfig) -> Result<Self, NnError> {
        config.validate()?;
        Ok(Adam(AdamCore::new(config, false)))
    }

    /// The configuration (with the current learning rate).
    pub fn config(&self) -> AdamConfig {
        self.0.config
    }
}

/// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, as `torch.optim.AdamW`:
/// first `p = p · (1 − lr·λ)`, then the Adam update without the L2 term.
#[derive(Clone, Debug)]
pub struct AdamW(AdamCore);

impl AdamW {
    /// AdamW with learning rate `lr` and PyTorch's other defaults (weight decay 1e-2).
    pub fn new(lr: f64) -> Self {
        AdamW(AdamCore::new(AdamConfig { lr, ..AdamConfig::adamw() }, true))
    }

    /// AdamW with the given configuration.
    ///
    /// Errors if a value is out of range.
    pub fn with_config(config: AdamConfig) -> Result<Self, NnError> {
        config.validate()?;
        Ok(AdamW(AdamCore::new(config, true)))
    }

    /// The configuration (with the current learning rate).
    pub fn config(&self) -> AdamConfig {
        self.0.config
    }
}

macro_rules! impl_optimizer {
    ($ty:ty, $kind:literal) => {
        impl Optimizer for $ty {
            fn kind(&self) -> &'static str {
                $kind
            }
            fn step(&mut self, params: &mut Params, grads: &ParamGrads) {
                self.0.step(params, grads)
            }
            fn lr(&self) -> f64 {
                self.0.config.lr
            }
            fn set_lr(&mut self, lr: f64) {
                self.0.config.lr = lr;
            }
            fn steps(&self) -> u64 {
                self.0.steps
            }
            fn state(&self) -> OptimizerState {
                self.0.state($kind)
            }
            fn load_state(
                &mut self,
                params: &Params,
                state: &OptimizerState,
            ) -> Result<(), NnError> {
                self.0.load_state($kind, params, state)
            }
        }
    };
}

impl_optimizer!(Adam, "adam");
impl_optimizer!(AdamW, "adamw");
