//! Matrix products: `matmul` (2-D and batched, numpy semantics) and `linear` (x Wᵀ + b).
//!
//! | op | forward | backward |
//! | --- | --- | --- |
//! | matmul | C = A·B | Ā = g·Bᵀ, B̄ = Aᵀ·g (summed over broadcast batch axes) |
//! | linear | y = x·Wᵀ + b | x̄ = g·W, W̄ = gᵀ·x, b̄ = Σ g over all but the last axis |
//!
//! Leading task axes of a stacked cotangent are just more batch axes here: `g·W` with `g` of
//! shape `[T, N, out]` folds into one `[T·N, out] × [out, in]` GEMM.

use tapestry_kernels::buffer;

use crate::backward::Ctx;
use crate::broadcast::broadcast_shape;
use crate::compute;
use crate::error::shape_panic;
use crate::graph::GraphCtx;
use crate::ops::{Family, Op};
use crate::tape::{NodeId, Var};
use crate::tensor::Tensor;

/// Matrix-product ops.
#[derive(Clone)]
pub(crate) enum MatmulOp {
    Matmul(NodeId, NodeId),
    Linear { x: NodeId, w: NodeId, b: Option<NodeId> },
}

/// `op(a)·op(b)` over the last two axes, where `op` transposes when `ta`/`tb` is set, with numpy
/// broadcasting over the leading (batch) axes. Both need at least two axes.
///
/// # Panics
/// If an input has fewer than two axes, the inner dimensions differ, or the batch axes do not
/// broadcast; the message names `name` and both shapes.
pub(crate) fn matmul_nd(name: &'static str, a: &Tensor, b: &Tensor, ta: bool, tb: bool) -> Tensor {
    let (sa, sb) = (a.shape(), b.shape());
    if sa.len() < 2 || sb.len() < 2 {
        shape_panic(name, sa, sb);
    }
    let (ra, ca) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (rb, cb) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    let (m, k) = if ta { (ca, ra) } else { (ra, ca) };
    let (k2, n) = if tb { (cb, rb) } else { (rb, cb) };
    if k != k2 {
        shape_panic(name, sa, sb);
    }
    let (ba, bb) = (&sa[..sa.len() - 2], &sb[..sb.len() - 2]);
    let batch = broadcast_shape(name, ba, bb);
    let count: usize = batch.iter().product();
    let sta = if ta { (1, ca) } else { (ca, 1) };
    let stb = if tb { (1, cb) } else { (cb, 1) };
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    // Every GEMM below overwrites its block of `out` (beta = 0), except with k = 0.
    let mut out =
        if k == 0 { buffer::take_zeroed(count * m * n) } else { buffer::take(count * m * n) };

    let b_batch: usize = bb.iter().product();
    if b_batch == 1 && !ta {
        // B is shared by every batch entry and A's rows are contiguous: one tall GEMM.
        let rows = count * m;
        let a_rows: usize = ba.iter().product::<usize>() * m;
        if a_rows == rows {
            compute::gemm(
                (rows, k, n),
                a.as_slice(),
                sta,
                b.as_slice(),
                stb,
                &mut out,
                (n, 1),
                false,
            );
            return Tensor::from_vec(&out_shape, out).expect("shape");
        }
    }
    let offsets = |own: &[usize], mat: usize| -> Vec<usize> {
        // For each batch index, the offset of the matching matrix in an input with batch `own`.
        let mut offs = Vec::with_capacity(count);
        let pad = batch.len() - own.len();
        for idx in 0..count {
            let (mut rem, mut off, mut stride) = (idx, 0, mat);
            for ax in (0..batch.len()).rev() {
                let i = rem % batch[ax];
                rem /= batch[ax];
                if ax >= pad {
                    let d = own[ax - pad];
                    if d != 1 {
                        off += i * stride;
                    }
                    stride *= d;
                }
            }
            offs.push(off);
        }
        offs
    };
    let (oa, ob) = (offsets(ba, ra * ca), offsets(bb, rb * cb));
    for (i, c) in out.chunks_mut(m * n).enumerate() {
        let a_mat = &a.as_slice()[oa[i]..oa[i] + ra * ca];
        let b_mat = &b.as_slice()[ob[i]..ob[i] + rb * cb];
        compute::gemm((m, k, n), a_mat, sta, b_mat, stb, c, (n, 1), false);
    }
    Tensor::from_vec(&out_shape, out).expect("shape")
}

impl<'t> Var<'t> {
    /// Matrix product over the last two axes, broadcasting leading (batch) axes like numpy.
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let a = tape.leaf(Tensor::from_vec(&[2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap());
    /// let b = tape.leaf(Tensor::ones(&[3, 1]));
    /// assert_eq!(a.matmul(b).value().to_vec(), vec![6., 15.]);
    /// ```
    ///
    /// # Panics
    /// If either input has fewer than 2 axes, the inner dimensions differ, or the batch axes do
    /// not broadcast (`shape mismatch in matmul: lhs [..], rhs [..]`).
    pub fn matmul(self, other: Var<'t>) -> Var<'t> {
        self.same_tape(other);
        let value = matmul_nd("matmul", &self.value(), &other.value(), false, false);
        self.record(value, Op::Matmul(MatmulOp::Matmul(self.id, other.id)))
    }

    /// `self · weightᵀ + bias`: `self` is `[.., in]`, `weight` is `[out, in]`, `bias` is `[out]`.
    ///
    /// # Panics
    /// If `self` has fewer than 2 axes, `weight` is not 2-D, the `in` sizes differ, or the bias
    /// is not `[out]`.
    pub fn linear(self, weight: Var<'t>, bias: Option<Var<'t>>) -> Var<'t> {
        self.same_tape(weight);
        let (x, w) = (self.value(), weight.value());
        if w.ndim() != 2 {
            shape_panic("linear", x.shape(), w.shape());
        }
        let mut y = matmul_nd("linear", &x, &w, false, true);
        if let Some(b) = bias {
            self.same_tape(b);
            let bv = b.value();
            if bv.shape() != [w.shape()[0]] {
                shape_panic("linear (bias)", w.shape(), bv.shape());
            }
            let out = bv.len();
            for row in y.make_mut().chunks_mut(out) {
                for (v, bias) in row.iter_mut().zip(bv.as_slice()) {
                    *v += bias;
                }
            }
        }
        let op = MatmulOp::Linear { x: self.id, w: weight.id, b: bias.map(|b| b.id) };
        self.record(y, Op::Matmul(op))
    }
}

impl Family for MatmulOp {
    fn name(&self) -> &'static str {
        match self {
            MatmulOp::Matmul(..) => "matmul",
            MatmulOp::Linear { .. } => "linear",
        }
    }

    fn for_each_input(&self, f: &mut dyn FnMut(NodeId)) {
        match *self {
            MatmulOp::Matmul(a, b) => {
                f(a);
                f(b)
            }
            MatmulOp::Linear { x, w, b } => {
                f(x);
                f(w);
                if let Some(b) = b {
                    f(b)
                }
            }
        }
    }

    // Both rules need the inputs only.
    fn reads_output(&self) -> bool {
        false
    }

    fn backward(&self, _out: &Tensor, g: &Tensor, ctx: &mut Ctx<'_>) {
        match *self {
            MatmulOp::Matmul(a, b) => {
                let (va, vb) = (ctx.value(a), ctx.value(b));
                ctx.acc(a, || matmul_nd("matmul backward", g, vb, false, true));
                ctx.acc(b, || matmul_nd("matmul backward", va, g, true, false));
            }
            MatmulOp::Linear { x, w, b } => {
                let (vx, vw) = (ctx.value(x), ctx.value(w));
                ctx.acc(x, || matmul_nd("linear backward", g, vw, false, false));
                ctx.acc(w, || matmul_nd("linear backward", g, vx, true, false));
                if let Some(b) = b {
                    ctx.acc(b, || g.clone());
                }
            }
        }
    }

    fn backward_graph<'t>(&self, _out: Var<'t>, g: Var<'t>, ctx: &mut GraphCtx<'t>) {
        match *self {
            MatmulOp::Matmul(a, b) => {
                let (va, vb) = (ctx.var(a), ctx.var(b));
                ctx.acc(a, || g.matmul(last_two_swapped(vb)));
                ctx.acc(b, || last_two_swapped(va).matmul(g));
            }
            MatmulOp::Linear { x, w, b } => {
                let (vx, vw) = (ctx.var(x), ctx.var(w));
                ctx.acc(x, || g.matmul(vw));
                ctx.acc(w, || {
                    // gᵀ·x over all rows: the leading axes of x and g folded into one.
                    let (gs, xs) = (g.shape(), vx.shape());
                    let rows = gs[..gs.len() - 1].iter().product::<usize>();
                    let g2 = g.reshape(&[rows, gs[gs.len() - 1]]);
                    g2.transpose(0, 1).matmul(vx.reshape(&[rows, xs[xs.len() - 1]]))
                });
                if let Some(b) = b {
                    ctx.acc(b, || g);
                }
            }
        }
    }
}

/// The matrix transpose of each matrix of a batch (the last two axes swapped), recorded.
fn last_two_swapped(v: Var<'_>) -> Var<'_> {
    let n = v.ndim();
    v.transpose(n - 2, n - 1)
}
