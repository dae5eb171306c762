//! Stochastic gradient descent with momentum, Nesterov momentum and weight decay, as
//! `torch.optim.SGD`.

use std::collections::BTreeMap;

use tapestry_autodiff::Tensor;

use crate::error::NnError;
use crate::grads::ParamGrads;
use crate::optim::{check_fit, check_state, hyper, Optimizer, OptimizerState};
use crate::params::{ParamId, Params};
use crate::util::modify;

/// The configuration of [`Sgd`]; the defaults are PyTorch's (no momentum, no weight decay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// The learning rate.
    pub lr: f64,
    /// The momentum factor μ (0 for plain SGD).
    pub momentum: f64,
    /// The dampening τ of the momentum update.
    pub dampening: f64,
    /// L2 penalty λ added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum (needs μ > 0 and τ = 0).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig { lr: 1e-2, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false }
    }
}

/// SGD, with PyTorch's update rule. With gradient `g`, parameter `p` and buffer `b`:
///
/// ```text
/// d = g + λ·p
/// b = d                      on the first step
/// b = μ·b + (1 − τ)·d        afterwards
/// d = d + μ·b  (Nesterov)    or   d = b
/// p = p − lr·d
/// ```
#[derive(Clone, Debug)]
pub struct Sgd {
    config: SgdConfig,
    steps: u64,
    momentum_buffers: Vec<Option<Tensor>>,
}

impl Sgd {
    /// Plain SGD with learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        Sgd {
            config: SgdConfig { lr, ..SgdConfig::default() },
            steps: 0,
            momentum_buffers: Vec::new(),
        }
    }

    /// SGD with the given configuration.
    ///
    /// Errors if a value is negative or not finite, or Nesterov is asked for without momentum
    /// or with dampening (as PyTorch).
    pub fn with_config(config: SgdConfig) -> Result<Self, NnError> {
        let SgdConfig { lr, momentum, dampening, weight_decay, nesterov } = config;
        for (name, v) in [
            ("lr", lr),
            ("momentum", momentum),
            ("dampening", dampening),
            ("weight_decay", weight_decay),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(NnError::Invalid(format!(
                    "SGD {name} must be finite and >= 0, got {v}"
                )));
            }
        }
        if nesterov && (momentum <= 0.0 || dampening != 0.0) {
            return Err(NnError::Invalid(
                "Nesterov momentum requires a momentum > 0 and zero dampening".into(),
            ));
        }
        Ok(Sgd { config, steps: 0, momentum_buffers: Vec::new() })
    }

    /// The configuration (with the current learning rate).
    pub fn config(&self) -> SgdConfig {
        self.config
    }
}

impl Optimizer for Sgd {
    fn kind(&self) -> &'static str {
        "sgd"
    }

    fn step(&mut self, params: &mut Params, grads: &ParamGrads) {
        check_fit(params, grads);
        if self.momentum_buffers.is_empty() {
            self.momentum_buffers = vec![None; params.len()];
        }
        assert_eq!(self.momentum_buffers.len(), params.len(), "optimizer used with another store");
        let SgdConfig { lr, momentum, dampening, weight_decay, nesterov } = self.config;
        let (wd, mu, one_minus_tau, neg_lr) =
            (weight_decay as f32, momentum as f32, (1.0 - dampening) as f32, (-lr) as f32);
        for id in params.ids() {
            let g = grads.get(id).as_slice();
            let slot = &mut self.momentum_buffers[id.index()];
            params.update(id, |p| {
                let mut d: Vec<f32> = g.to_vec();
                if weight_decay != 0.0 {
                    d.iter_mut().zip(p.iter()).for_each(|(d, p)| *d += wd * p);
                }
                if momentum != 0.0 {
                    match slot {
                        None => {
                            let shape = grads.get(id).shape();
                            *slot = Some(Tensor::from_vec(shape, d.clone()).expect("same size"));
                        }
                        Some(buf) => modify(buf, |b| {
                            b.iter_mut().zip(&d).for_each(|(b, d)| *b = *b * mu + one_minus_tau * d)
                        }),
                    }
                    let buf = slot.as_ref().expect("set above").as_slice();
                    if nesterov {
                        d.iter_mut().zip(buf).for_each(|(d, b)| *d += mu * b);
                    } else {
                        d.copy_from_slice(buf);
                    }
                }
                p.iter_mut().zip(&d).for_each(|(p, d)| *p += neg_lr * d);
            });
        }
        self.steps += 1;
    }

    fn lr(&self) -> f64 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn state(&self) -> OptimizerState {
        let c = self.config;
        let hyper = BTreeMap::from([
            ("momentum".to_string(), c.momentum),
            ("dampening".to_string(), c.dampening),
            ("weight_decay".to_string(), c.weight_decay),
            ("nesterov".to_string(), f64::from(u8::from(c.nesterov))),
        ]);
        let slots = self
            .momentum_buffers
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                Some(("momentum_buffer".to_string(), ParamId(i as u32), b.clone()?))
            })
            .collect();
        OptimizerState { kind: self.kind().into(), step: self.steps, lr: c.lr, hyper, slots }
    }

    fn load_state(&mut self, params: &Params, state: &OptimizerState) -> Result<(), NnError> {
        let slots = check_state(self.kind(), &["momentum_buffer"], params, state)?;
        let config = SgdConfig {
            lr: state.lr,
            momentum: hyper(state, "momentum")?,
            dampening: hyper(state, "dampening")?,
            weight_decay: hyper(state, "weight_decay")?,
            nesterov: hyper(state, "nesterov")? != 0.0,
        };
        let config =
            Sgd::with_config(config).map_err(|e| NnError::OptimizerState(e.to_string()))?.config;
        let mut buffers = vec![None; params.len()];
        for ((_, id), tensor) in slots {
            buffers[id.index()] = Some(tensor.clone());
        }
        self.momentum_buffers = buffers;
        self.steps = state.step;
        self.config = config;
        Ok(())
    }
}
