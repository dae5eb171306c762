//! Tensors whose elements a kernel writes.
//!
//! Ops that run on the elementwise kernels get their output buffer here: tiny tensors are
//! written on the stack and copied into one allocation, small ones filled in place in one
//! allocation (like every small tensor), large ones come from the kernels' buffer pool without
//! being cleared first, since the kernel overwrites every element.

use tapestry_kernels::buffer;
use tapestry_kernels::tune::tunables;

use crate::tensor::{Tensor, INLINE_VALUES};

/// Tensors up to this many elements skip the kernels for maps whose values a closure gives as
/// well (arithmetic, scaling, accumulation, the activations): there a plain loop costs less than
/// choosing the kernel, and it computes the same bits.
pub(crate) const TINY: usize = 32;

impl Tensor {
    /// A tensor of `shape` whose elements `fill` writes, every one of them: it receives the
    /// row-major slice, whose contents are unspecified.
    pub(crate) fn from_kernel(shape: &[usize], fill: impl FnOnce(&mut [f32])) -> Tensor {
        const STACK: usize = 64;
        let n: usize = shape.iter().product();
        if n <= INLINE_VALUES {
            let mut values = [0.0f32; INLINE_VALUES];
            fill(&mut values[..n]);
            Tensor::inline(shape, values, n)
        } else if n <= STACK {
            let mut values = [0.0f32; STACK];
            fill(&mut values[..n]);
            Tensor::from_exact_iter(shape, values[..n].iter().copied())
        } else if n < tunables().buffer_pool_min_len {
            let mut t = Tensor::from_exact_iter(shape, std::iter::repeat_n(0.0, n));
            fill(t.make_mut());
            t
        } else {
            let mut data = buffer::take(n);
            fill(&mut data);
            Tensor::from_vec(shape, data).expect("one element per position")
        }
    }

    /// `one` applied to every element: by `kernel(elements, out)`, or for a tiny tensor by a
    /// plain loop over `one`, which must compute the kernel's bits.
    pub(crate) fn map_kernel(
        &self,
        one: impl Fn(f32) -> f32,
        kernel: impl FnOnce(&[f32], &mut [f32]),
    ) -> Tensor {
        if self.len() <= TINY {
            self.map(one)
        } else {
            Tensor::from_kernel(self.shape(), |out| kernel(self.as_slice(), out))
        }
    }
}
