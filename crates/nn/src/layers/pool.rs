//! Pooling layers, as `torch.nn.MaxPool2d` and `torch.nn.AvgPool2d` (floor mode), and global
//! average pooling (`torch.nn.AdaptiveAvgPool2d(1)` followed by a flatten).

use tapestry_autodiff::Var;

use crate::module::{Ctx, Module};

/// Max over `kernel` windows of an `[N, C, H, W]` input. The stride defaults to the kernel
/// size, as in PyTorch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Window size (rows, columns).
    pub kernel: (usize, usize),
    /// Step between windows.
    pub stride: (usize, usize),
    /// Padding (of −∞) on each side.
    pub padding: (usize, usize),
}

impl MaxPool2d {
    /// Windows of `kernel`, stride `kernel`, no padding.
    pub fn new(kernel: (usize, usize)) -> Self {
        MaxPool2d { kernel, stride: kernel, padding: (0, 0) }
    }

    /// Sets the stride.
    pub fn stride(mut self, stride: (usize, usize)) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the padding.
    pub fn padding(mut self, padding: (usize, usize)) -> Self {
        self.padding = padding;
        self
    }
}

impl Module for MaxPool2d {
    /// # Panics
    /// If `x` is not 4-D or the window does not fit the padded input.
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        x.max_pool2d(self.kernel, self.stride, self.padding)
    }
}

/// Mean over `kernel` windows of an `[N, C, H, W]` input (zero padding counted, as PyTorch's
/// default). The stride defaults to the kernel size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2d {
    /// Window size (rows, columns).
    pub kernel: (usize, usize),
    /// Step between windows.
    pub stride: (usize, usize),
    /// Zero padding on each side.
    pub padding: (usize, usize),
}

impl AvgPool2d {
    /// Windows of `kernel`, stride `kernel`, no padding.
    pub fn new(kernel: (usize, usize)) -> Self {
        AvgPool2d { kernel, stride: kernel, padding: (0, 0) }
    }

    /// Sets the stride.
    pub fn stride(mut self, stride: (usize, usize)) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the padding.
    pub fn padding(mut self, padding: (usize, usize)) -> Self {
        self.padding = padding;
        self
    }
}

impl Module for AvgPool2d {
    /// # Panics
    /// If `x` is not 4-D or the window does not fit the padded input.
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        x.avg_pool2d(self.kernel, self.stride, self.padding)
    }
}

/// The mean of each feature map: `[N, C, H, W]` to `[N, C]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalAvgPool;

impl Module for GlobalAvgPool {
    /// # Panics
    /// If `x` is not 4-D.
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        assert_eq!(
            x.shape().len(),
            4,
            "invalid argument to GlobalAvgPool: input {:?} is not [N, C, H, W]",
            x.shape()
        );
        x.mean(&[2, 3], false)
    }
}
