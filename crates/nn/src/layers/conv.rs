//! `Conv2d`: 2-D convolution, as `torch.nn.Conv2d` (groups = 1, zero padding).

use rand::Rng;
use tapestry_autodiff::{Tensor, Var};

use crate::error::NnError;
use crate::init;
use crate::module::{Ctx, Module};
use crate::params::{join_name, ParamId, Params};

/// A 2-D convolution: input `[N, C_in, H, W]`, weight `[C_out, C_in, kh, kw]`, bias `[C_out]`,
/// output `[N, C_out, H', W']`. Stride 1, no padding and no dilation unless set with the
/// builder methods.
///
/// ```
/// use rand::SeedableRng;
/// use tapestry_nn::{layers::Conv2d, Params};
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let mut params = Params::new();
/// let conv = Conv2d::new(&mut params, "trunk.conv1", 3, 32, (3, 3), &mut rng)
///     .unwrap()
///     .padding((1, 1));
/// assert_eq!(params.shape(conv.weight()), &[32, 3, 3, 3]);
/// ```
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: ParamId,
    bias: Option<ParamId>,
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
}

impl Conv2d {
    /// A convolution with bias and PyTorch's default initialisation (both
    /// `U(−1/√fan_in, 1/√fan_in)` with `fan_in = C_in·kh·kw`), registered as `{name}.weight`
    /// and `{name}.bias`. The weight is drawn before the bias.
    ///
    /// Errors if a name is taken.
    ///
    /// # Panics
    /// If a channel count or kernel size is 0.
    pub fn new<R: Rng + ?Sized>(
        params: &mut Params,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        rng: &mut R,
    ) -> Result<Self, NnError> {
        let shape = [out_channels, in_channels, kernel.0, kernel.1];
        let weight = init::pytorch_default(&shape, rng);
        let bias = init::pytorch_default_bias(out_channels, init::fans(&shape).0, rng);
        Self::from_tensors(params, name, weight, Some(bias))
    }

    /// A convolution without bias, weight initialised as in [`Conv2d::new`].
    ///
    /// Errors if the name is taken.
    ///
    /// # Panics
    /// If a channel count or kernel size is 0.
    pub fn new_no_bias<R: Rng + ?Sized>(
        params: &mut Params,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        rng: &mut R,
    ) -> Result<Self, NnError> {
        let shape = [out_channels, in_channels, kernel.0, kernel.1];
        Self::from_tensors(params, name, init::pytorch_default(&shape, rng), None)
    }

    /// A convolution with the given weight `[C_out, C_in, kh, kw]` and optional bias `[C_out]`.
    ///
    /// Errors if a name is taken or the shapes do not fit.
    pub fn from_tensors(
        params: &mut Params,
        name: &str,
        weight: Tensor,
        bias: Option<Tensor>,
    ) -> Result<Self, NnError> {
        if weight.ndim() != 4 {
            return Err(NnError::Invalid(format!(
                "Conv2d `{name}` needs a 4-D weight, got shape {:?}",
                weight.shape()
            )));
        }
        let out_channels = weight.shape()[0];
        if let Some(b) = &bias {
            if b.shape() != [out_channels] {
                return Err(NnError::Shape {
                    name: join_name(name, "bias"),
                    expected: vec![out_channels],
                    found: b.shape().to_vec(),
                });
            }
        }
        let weight = params.add(join_name(name, "weight"), weight)?;
        let bias = bias.map(|b| params.add(join_name(name, "bias"), b)).transpose()?;
        Ok(Conv2d { weight, bias, stride: (1, 1), padding: (0, 0), dilation: (1, 1) })
    }

    /// Sets the stride (rows, columns).
    pub fn stride(mut self, stride: (usize, usize)) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the zero padding on each side (rows, columns).
    pub fn padding(mut self, padding: (usize, usize)) -> Self {
        self.padding = padding;
        self
    }

    /// Sets the dilation (rows, columns).
    pub fn dilation(mut self, dilation: (usize, usize)) -> Self {
        self.dilation = dilation;
        self
    }

    /// The weight's id.
    pub fn weight(&self) -> ParamId {
        self.weight
    }

    /// The bias's id, if the layer has one.
    pub fn bias(&self) -> Option<ParamId> {
        self.bias
    }
}

impl Module for Conv2d {
    /// # Panics
    /// If `x` is not `[N, C_in, H, W]`, or the kernel does not fit the padded input.
    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        let bias = self.bias.map(|b| ctx.var(b));
        x.conv2d(ctx.var(self.weight), bias, self.stride, self.padding, self.dilation)
    }

    fn params(&self) -> Vec<ParamId> {
        std::iter::once(self.weight).chain(self.bias).collect()
    }
}
