//! Normalisation layers, as `torch.nn.BatchNorm2d` and `torch.nn.LayerNorm`.

use tapestry_autodiff::ops::norm::BatchNormMode;
use tapestry_autodiff::{Tensor, Var};

use crate::error::NnError;
use crate::module::{Ctx, Module};
use crate::params::{join_name, BufferDtype, BufferId, ParamId, Params};

/// Batch normalisation per channel of an `[N, C, H, W]` (or `[N, C]`) input, with a learnt
/// scale and shift and running statistics, as `torch.nn.BatchNorm2d`.
///
/// Registers the parameters `{name}.weight` (ones) and `{name}.bias` (zeros) and the buffers
/// `{name}.running_mean` (zeros), `{name}.running_var` (ones) and
/// `{name}.num_batches_tracked` (0, saved as I64): PyTorch's names and initial values.
///
/// In train mode the batch's mean and biased variance normalise the input and the running
/// statistics move towards the batch's mean and unbiased variance:
/// `running = (1 − momentum)·running + momentum·batch` (momentum 0.1 by default), and
/// `num_batches_tracked` counts the batches. In eval mode the running statistics normalise.
/// Either way the context needs the buffers ([`Ctx::with_buffers`]).
#[derive(Clone, Debug)]
pub struct BatchNorm2d {
    weight: ParamId,
    bias: ParamId,
    running_mean: BufferId,
    running_var: BufferId,
    num_batches_tracked: BufferId,
    eps: f32,
    momentum: f64,
}

impl BatchNorm2d {
    /// A layer for `num_features` channels with eps 1e-5 and momentum 0.1.
    ///
    /// Errors if a name is taken.
    pub fn new(params: &mut Params, name: &str, num_features: usize) -> Result<Self, NnError> {
        let c = [num_features];
        let weight = params.add(join_name(name, "weight"), Tensor::ones(&c))?;
        let bias = params.add(join_name(name, "bias"), Tensor::zeros(&c))?;
        let mut buffer =
            |suffix, value, dtype| params.add_buffer(join_name(name, suffix), value, dtype);
        let running_mean = buffer("running_mean", Tensor::zeros(&c), BufferDtype::F32)?;
        let running_var = buffer("running_var", Tensor::ones(&c), BufferDtype::F32)?;
        let num_batches_tracked =
            buffer("num_batches_tracked", Tensor::scalar(0.0), BufferDtype::I64)?;
        Ok(BatchNorm2d {
            weight,
            bias,
            running_mean,
            running_var,
            num_batches_tracked,
            eps: 1e-5,
            momentum: 0.1,
        })
    }

    /// Sets ε, added to the variance.
    ///
    /// # Panics
    /// If `eps` is negative or NaN.
    pub fn eps(mut self, eps: f32) -> Self {
        assert!(eps >= 0.0, "BatchNorm2d eps must be >= 0, got {eps}");
        self.eps = eps;
        self
    }

    /// Sets the momentum of the running statistics.
    ///
    /// # Panics
    /// If `momentum` is not in `[0, 1]`.
    pub fn momentum(mut self, momentum: f64) -> Self {
        assert!((0.0..=1.0).contains(&momentum), "BatchNorm2d momentum {momentum} not in [0, 1]");
        self.momentum = momentum;
        self
    }

    /// The scale's id.
    pub fn weight(&self) -> ParamId {
        self.weight
    }

    /// The shift's id.
    pub fn bias(&self) -> ParamId {
        self.bias
    }

    /// The ids of `running_mean`, `running_var` and `num_batches_tracked`.
    pub fn buffer_ids(&self) -> [BufferId; 3] {
        [self.running_mean, self.running_var, self.num_batches_tracked]
    }
}

impl Module for BatchNorm2d {
    /// # Panics
    /// If the context has no buffers, `x` is not `[N, C, ..]` with C channels, or in train mode
    /// a channel has fewer than 2 values.
    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        let (gamma, beta) = (Some(ctx.var(self.weight)), Some(ctx.var(self.bias)));
        let train = ctx.is_training();
        let buffers = ctx.expect_buffers("BatchNorm2d");
        if !train {
            let mean = buffers.get(self.running_mean).clone();
            let var = buffers.get(self.running_var).clone();
            let mode = BatchNormMode::Eval { running_mean: &mean, running_var: &var };
            return x.batch_norm(gamma, beta, mode, self.eps).0;
        }
        let (y, stats) = x.batch_norm(gamma, beta, BatchNormMode::Train, self.eps);
        let stats = stats.expect("train mode returns the batch statistics");
        let m = self.momentum;
        for (id, batch) in
            [(self.running_mean, &stats.mean), (self.running_var, &stats.unbiased_var)]
        {
            buffers.update(id, |running| {
                for (r, &b) in running.iter_mut().zip(batch.as_slice()) {
                    *r = (m * f64::from(b) + (1.0 - m) * f64::from(*r)) as f32;
                }
            });
        }
        buffers.update(self.num_batches_tracked, |n| n[0] += 1.0);
        y
    }

    fn params(&self) -> Vec<ParamId> {
        vec![self.weight, self.bias]
    }

    fn buffers(&self) -> Vec<BufferId> {
        self.buffer_ids().to_vec()
    }
}

/// Layer normalisation over the trailing axes `normalized_shape`, with a learnt elementwise
/// scale (`{name}.weight`, ones) and shift (`{name}.bias`, zeros), as `torch.nn.LayerNorm`
/// with eps 1e-5.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: ParamId,
    bias: ParamId,
    normalized_shape: Vec<usize>,
    eps: f32,
}

impl LayerNorm {
    /// A layer normalising over the trailing axes `normalized_shape`.
    ///
    /// Errors if a name is taken.
    pub fn new(
        params: &mut Params,
        name: &str,
        normalized_shape: &[usize],
    ) -> Result<Self, NnError> {
        let weight = params.add(join_name(name, "weight"), Tensor::ones(normalized_shape))?;
        let bias = params.add(join_name(name, "bias"), Tensor::zeros(normalized_shape))?;
        Ok(LayerNorm { weight, bias, normalized_shape: normalized_shape.to_vec(), eps: 1e-5 })
    }

    /// Sets ε, added to the variance.
    ///
    /// # Panics
    /// If `eps` is negative or NaN.
    pub fn eps(mut self, eps: f32) -> Self {
        assert!(eps >= 0.0, "LayerNorm eps must be >= 0, got {eps}");
        self.eps = eps;
        self
    }

    /// The scale's id.
    pub fn weight(&self) -> ParamId {
        self.weight
    }

    /// The shift's id.
    pub fn bias(&self) -> ParamId {
        self.bias
    }
}

impl Module for LayerNorm {
    /// # Panics
    /// If the input's trailing axes are not `normalized_shape`.
    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        let (gamma, beta) = (Some(ctx.var(self.weight)), Some(ctx.var(self.bias)));
        x.layer_norm(&self.normalized_shape, gamma, beta, self.eps)
    }

    fn params(&self) -> Vec<ParamId> {
        vec![self.weight, self.bias]
    }
}
