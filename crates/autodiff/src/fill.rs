//! Tensors whose elements a kernel writes.
//!
//! Ops that run on the elementwise kernels get their output buffer here: tiny tensors are
//! written on the stack and copied into one allocation, small ones filled in place in one
//! allocation (like every small tensor), large ones come from the kernels' buffer pool without
//! being cleared first, since the kernel overwrites every element.

use tapestry_kernels::buffer;
use tapestry_kernels::tune::tunables;

use crate::tensor::Tensor;

impl Tensor {
    /// A tensor of `shape` whose elements `fill` writes, every one of them: it receives the
    /// row-major slice, whose contents are unspecified.
    pub(crate) fn from_kernel(shape: &[usize], fill: impl FnOnce(&mut [f32])) -> Tensor {
        const STACK: usize = 64;
        let n: usize = shape.iter().product();
        if n <= STACK {
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
}
