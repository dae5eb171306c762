//! `Linear`: `y = x · Wᵀ + b`, as `torch.nn.Linear`.

use rand::Rng;
use tapestry_autodiff::{Tensor, Var};

use crate::error::NnError;
use crate::init;
use crate::module::{Ctx, Module};
use crate::params::{join_name, ParamId, Params};

/// A fully connected layer: input `[.., in]`, weight `[out, in]`, bias `[out]`, output
/// `[.., out]`.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: ParamId,
    bias: Option<ParamId>,
    in_features: usize,
    out_features: usize,
}

impl Linear {
    /// A layer with bias and PyTorch's default initialisation (both `U(−1/√in, 1/√in)`),
    /// registered as `{name}.weight` and `{name}.bias`. The weight is drawn before the bias.
    ///
    /// Errors if a name is taken.
    ///
    /// # Panics
    /// If `in_features` is 0.
    pub fn new<R: Rng + ?Sized>(
        params: &mut Params,
        name: &str,
        in_features: usize,
        out_features: usize,
        rng: &mut R,
    ) -> Result<Self, NnError> {
        let weight = init::pytorch_default(&[out_features, in_features], rng);
        let bias = init::pytorch_default_bias(out_features, in_features, rng);
        Self::from_tensors(params, name, weight, Some(bias))
    }

    /// A layer without bias, weight initialised as in [`Linear::new`].
    ///
    /// Errors if the name is taken.
    ///
    /// # Panics
    /// If `in_features` is 0.
    pub fn new_no_bias<R: Rng + ?Sized>(
        params: &mut Params,
        name: &str,
        in_features: usize,
        out_features: usize,
        rng: &mut R,
    ) -> Result<Self, NnError> {
        let weight = init::pytorch_default(&[out_features, in_features], rng);
        Self::from_tensors(params, name, weight, None)
    }

    /// A layer with the given weight `[out, in]` and optional bias `[out]`.
    ///
    /// Errors if a name is taken or the shapes do not fit.
    pub fn from_tensors(
        params: &mut Params,
        name: &str,
        weight: Tensor,
        bias: Option<Tensor>,
    ) -> Result<Self, NnError> {
        if weight.ndim() != 2 {
            return Err(NnError::Invalid(format!(
                "Linear `{name}` needs a 2-D weight, got shape {:?}",
                weight.shape()
            )));
        }
        let (out_features, in_features) = (weight.shape()[0], weight.shape()[1]);
        if let Some(b) = &bias {
            if b.shape() != [out_features] {
                return Err(NnError::Shape {
                    name: join_name(name, "bias"),
                    expected: vec![out_features],
                    found: b.shape().to_vec(),
                });
            }
        }
        let weight = params.add(join_name(name, "weight"), weight)?;
        let bias = bias.map(|b| params.add(join_name(name, "bias"), b)).transpose()?;
        Ok(Linear { weight, bias, in_features, out_features })
    }

    /// The weight's id.
    pub fn weight(&self) -> ParamId {
        self.weight
    }

    /// The bias's id, if the layer has one.
    pub fn bias(&self) -> Option<ParamId> {
        self.bias
    }

    /// The input width.
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// The output width.
    pub fn out_features(&self) -> usize {
        self.out_features
    }
}

impl Module for Linear {
    /// # Panics
    /// If `x` has fewer than 2 axes or its last axis is not `in_features`.
    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        x.linear(ctx.var(self.weight), self.bias.map(|b| ctx.var(b)))
    }

    fn params(&self) -> Vec<ParamId> {
        std::iter::once(self.weight).chain(self.bias).collect()
    }
}
