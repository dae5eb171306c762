//! Convolution, pooling and dropout over NCHW tensors.
//!
//! | op | forward | backward (cotangent `g` of the output) |
//! | --- | --- | --- |
//! | conv2d | `y[n,o,i,j] = b[o] + Σ_{c,p,q} w[o,c,p,q]·x[n,c,i·s−pad+p·d, j·s−pad+q·d]` | x̄ = transposed conv of g with w; `w̄[o,c,p,q] = Σ_{n,i,j} g[n,o,i,j]·x[n,c,tap]`; `b̄[o] = Σ_{n,i,j} g[n,o,i,j]` |
//! | max_pool2d | y = max over the window (padding is −∞) | x̄ at the saved arg-max += g, 0 elsewhere |
//! | avg_pool2d | y = Σ window / (kh·kw) (padding counts as 0) | x̄ += g/(kh·kw) at every window position |
//! | dropout | y = x·m, m = 0 with probability p, else 1/(1−p) | x̄ = g·m (the saved mask) |
//!
//! The rules of conv2d and avg-pool are ops of their own, so that recorded gradients can be
//! differentiated again. Each is bilinear or linear, and its rule is its adjoint:
//!
//! | op | forward | backward (cotangent `u` of the output) |
//! | --- | --- | --- |
//! | conv2d_input_grad | `dx = Cᵀ(dy; w)`, the transposed convolution | d̄y = conv2d(u, w); w̄ = conv2d_weight_grad(u, dy) |
//! | conv2d_weight_grad | `dw[o,c,p,q] = Σ_{n,i,j} dy[n,o,i,j]·x[n,c,tap]` | x̄ = conv2d_input_grad(dy, u); d̄y = conv2d(x, u) |
//! | avg_pool2d_grad | dx = dy spread evenly over each window | d̄y = avg_pool2d(u) |
//!
//! Max-pool's recorded rule is a scatter-add of `g` at the saved arg-max positions (see
//! `shape.rs`); its second derivative is zero, and ties go to the first maximum, as PyTorch.
//!
//! Every loop runs in `crate::compute`. With a stacked cotangent (`[T, N, ..]`) the input
//! gradient of conv2d is one call with a batch of T·N (the weights are shared), the weight
//! gradient one call per task; pooling loops over the tasks.

use rand::Rng;

use tapestry_kernels::buffer;

use crate::backward::Ctx;
use crate::broadcast::zip_map;
use crate::compute::{self, Conv2dGeometry, Pool2dGeometry};
use crate::error::{invalid, shape_panic};
use crate::graph::GraphCtx;
use crate::ops::reduce::with_lead;
use crate::ops::{Family, Op};
use crate::tape::{NodeId, Var};
use crate::tensor::Tensor;

/// Ops of the conv family, with what their rules need.
#[derive(Clone)]
pub(crate) enum ConvOp {
    Conv2d { x: NodeId, w: NodeId, b: Option<NodeId>, geom: Conv2dGeometry },
    MaxPool2d { x: NodeId, geom: Pool2dGeometry, argmax: Vec<u32> },
    AvgPool2d { x: NodeId, geom: Pool2dGeometry },
    Dropout { x: NodeId, mask: Tensor },
    Conv2dInputGrad { g: NodeId, w: NodeId, geom: Conv2dGeometry },
    Conv2dWeightGrad { x: NodeId, g: NodeId, geom: Conv2dGeometry },
    AvgPool2dGrad { g: NodeId, geom: Pool2dGeometry },
}

/// The 4 axes of an NCHW input, or a panic naming `op`.
fn nchw(op: &'static str, shape: &[usize]) -> [usize; 4] {
    match *shape {
        [n, c, h, w] => [n, c, h, w],
        _ => invalid(op, format!("expected an [N, C, H, W] input, got {shape:?}")),
    }
}

fn check_positive(op: &'static str, what: &str, v: (usize, usize)) {
    if v.0 == 0 || v.1 == 0 {
        invalid(op, format!("{what} must be positive, got {v:?}"));
    }
}

/// The pooling geometry of `x`, after checking the window, stride and padding.
fn pool_geometry(
    op: &'static str,
    x: &[usize],
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Pool2dGeometry {
    let [n, c, h, w] = nchw(op, x);
    check_positive(op, "kernel", kernel);
    check_positive(op, "stride", stride);
    if 2 * padding.0 > kernel.0 || 2 * padding.1 > kernel.1 {
        invalid(op, format!("padding {padding:?} exceeds half the kernel {kernel:?}"));
    }
    let geom = Pool2dGeometry { n, c, h, w, kh: kernel.0, kw: kernel.1, stride, padding };
    if geom.out_h() == 0 || geom.out_w() == 0 {
        invalid(op, format!("kernel {kernel:?} with padding {padding:?} does not fit input {x:?}"));
    }
    geom
}

/// One task's slice of a stacked buffer of tasks of `len` elements.
fn task_slice(data: &[f32], task: usize, len: usize) -> &[f32] {
    &data[task * len..][..len]
}

/// `shape` behind the leading task axes `lead`.
fn behind(lead: &[usize], shape: &[usize]) -> Vec<usize> {
    lead.iter().chain(shape).copied().collect()
}

/// conv2d of `x` (`[lead.., n, c_in, h, w]`: a stack of batches sharing the weights) with `w`.
fn conv_forward(
    geom: &Conv2dGeometry,
    x: &Tensor,
    w: &Tensor,
    b: Option<&[f32]>,
    lead: &[usize],
) -> Tensor {
    let stacked = Conv2dGeometry { n: lead.iter().product::<usize>() * geom.n, ..*geom };
    let mut y = buffer::take(stacked.n * geom.c_out * geom.out_h() * geom.out_w());
    compute::conv2d_forward(&stacked, x.as_slice(), w.as_slice(), b, &mut y);
    let shape = behind(lead, &[geom.n, geom.c_out, geom.out_h(), geom.out_w()]);
    Tensor::from_vec(&shape, y).expect("shape")
}

/// The input gradient for output cotangents `dy` (`[lead.., n, c_out, oh, ow]`) and weights `w`.
fn conv_input_grad(geom: &Conv2dGeometry, dy: &Tensor, w: &Tensor, lead: &[usize]) -> Tensor {
    let stacked = Conv2dGeometry { n: lead.iter().product::<usize>() * geom.n, ..*geom };
    let mut dx = buffer::take(stacked.n * geom.c_in * geom.h * geom.w);
    compute::conv2d_backward_input(&stacked, dy.as_slice(), w.as_slice(), &mut dx);
    Tensor::from_vec(&behind(lead, &[geom.n, geom.c_in, geom.h, geom.w]), dx).expect("shape")
}

/// The weight gradient of a convolution of `x` with output cotangent `dy`; one of the two may
/// carry leading task axes `lead` (one weight gradient per task).
fn conv_weight_grad(geom: &Conv2dGeometry, x: &Tensor, dy: &Tensor, lead: &[usize]) -> Tensor {
    let tasks = lead.iter().product::<usize>();
    let wlen = geom.c_out * geom.c_in * geom.kh * geom.kw;
    let xlen = geom.n * geom.c_in * geom.h * geom.w;
    let ylen = geom.n * geom.c_out * geom.out_h() * geom.out_w();
    let (x_stacked, y_stacked) = (x.len() > xlen, dy.len() > ylen);
    let mut dw = buffer::take(tasks * wlen);
    for (task, dw) in dw.chunks_mut(wlen).enumerate() {
        let xt = task_slice(x.as_slice(), if x_stacked { task } else { 0 }, xlen);
        let yt = task_slice(dy.as_slice(), if y_stacked { task } else { 0 }, ylen);
        compute::conv2d_backward_weight(geom, xt, yt, dw, None);
    }
    Tensor::from_vec(&behind(lead, &[geom.c_out, geom.c_in, geom.kh, geom.kw]), dw).expect("shape")
}

/// Average pooling of `x` (`[lead.., n, c, h, w]`).
fn avg_pool_forward(geom: &Pool2dGeometry, x: &Tensor, lead: &[usize]) -> Tensor {
    let stacked = Pool2dGeometry { n: lead.iter().product::<usize>() * geom.n, ..*geom };
    let mut y = buffer::take(stacked.n * geom.c * geom.out_h() * geom.out_w());
    compute::avg_pool2d_forward(&stacked, x.as_slice(), &mut y);
    Tensor::from_vec(&behind(lead, &[geom.n, geom.c, geom.out_h(), geom.out_w()]), y)
        .expect("shape")
}

/// The input gradient of average pooling for output cotangents `dy` (`[lead.., n, c, oh, ow]`).
fn avg_pool_input_grad(geom: &Pool2dGeometry, dy: &Tensor, lead: &[usize]) -> Tensor {
    let stacked = Pool2dGeometry { n: lead.iter().product::<usize>() * geom.n, ..*geom };
    let mut dx = buffer::take(stacked.n * geom.c * geom.h * geom.w);
    compute::avg_pool2d_backward(&stacked, dy.as_slice(), &mut dx);
    Tensor::from_vec(&behind(lead, &[geom.n, geom.c, geom.h, geom.w]), dx).expect("shape")
}

/// The flat positions in the input of each max-pool output's arg-max (saved per plane).
fn argmax_positions(geom: &Pool2dGeometry, argmax: &[u32]) -> Vec<usize> {
    let (plane_in, plane_out) = (geom.h * geom.w, geom.out_h() * geom.out_w());
    argmax.iter().enumerate().map(|(i, &a)| i / plane_out.max(1) * plane_in + a as usize).collect()
}

impl<'t> Var<'t> {
    /// 2-D convolution (cross-correlation, as in PyTorch) of an `[N, C, H, W]` input with a
    /// `[O, C, kh, kw]` weight and an optional `[O]` bias; `stride`, `padding` (zeros on each
    /// side) and `dilation` are (rows, columns). The output is `[N, O, out_h, out_w]` with
    /// `out = (in + 2·padding − dilation·(k − 1) − 1) / stride + 1`.
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::ones(&[1, 1, 4, 4]));
    /// let w = tape.leaf(Tensor::ones(&[2, 1, 3, 3]));
    /// let y = x.conv2d(w, None, (1, 1), (1, 1), (1, 1));
    /// assert_eq!(y.shape(), vec![1, 2, 4, 4]);
    /// assert_eq!(y.value().to_vec()[..4], [4., 6., 6., 4.]);
    /// ```
    ///
    /// # Panics
    /// If `self` or `weight` is not 4-D, their channel counts differ
    /// (`shape mismatch in conv2d: lhs [..], rhs [..]`), the bias is not `[O]`, a stride or
    /// dilation is 0, or the dilated kernel does not fit the padded input.
    pub fn conv2d(
        self,
        weight: Var<'t>,
        bias: Option<Var<'t>>,
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
    ) -> Var<'t> {
        const OP: &str = "conv2d";
        self.same_tape(weight);
        let (x, w) = (self.value(), weight.value());
        let [n, c_in, h, wd] = nchw(OP, x.shape());
        let [c_out, kh, kw] = match *w.shape() {
            [o, c, kh, kw] if c == c_in && kh > 0 && kw > 0 => [o, kh, kw],
            _ => shape_panic(OP, x.shape(), w.shape()),
        };
        check_positive(OP, "stride", stride);
        check_positive(OP, "dilation", dilation);
        let geom = Conv2dGeometry { n, c_in, h, w: wd, c_out, kh, kw, stride, padding, dilation };
        if geom.out_h() == 0 || geom.out_w() == 0 {
            invalid(
                OP,
                format!(
                    "kernel [{kh}, {kw}] dilated by {dilation:?} does not fit input {:?} padded by {padding:?}",
                    x.shape()
                ),
            );
        }
        if let Some(b) = bias {
            self.same_tape(b);
            if b.shape() != [c_out] {
                shape_panic("conv2d (bias)", w.shape(), &b.shape());
            }
        }
        self.conv2d_geom(weight, bias, geom)
    }

    /// conv2d with a checked geometry.
    fn conv2d_geom(self, weight: Var<'t>, bias: Option<Var<'t>>, geom: Conv2dGeometry) -> Var<'t> {
        let (x, w) = (self.value(), weight.value());
        let bias_value = bias.map(|b| b.value());
        let b_slice = bias_value.as_ref().map(Tensor::as_slice);
        let y = conv_forward(&geom, &x, &w, b_slice, &[]);
        let op = ConvOp::Conv2d { x: self.id, w: weight.id, b: bias.map(|b| b.id), geom };
        self.record(y, Op::Conv(op))
    }

    /// The input gradient of a convolution, `self` being the output cotangent: a transposed
    /// convolution, recorded so that it can be differentiated again.
    fn conv2d_input_grad(self, weight: Var<'t>, geom: Conv2dGeometry) -> Var<'t> {
        let value = conv_input_grad(&geom, &self.value(), &weight.value(), &[]);
        self.record(value, Op::Conv(ConvOp::Conv2dInputGrad { g: self.id, w: weight.id, geom }))
    }

    /// The weight gradient of a convolution of `self` with output cotangent `dy`, recorded.
    fn conv2d_weight_grad(self, dy: Var<'t>, geom: Conv2dGeometry) -> Var<'t> {
        let value = conv_weight_grad(&geom, &self.value(), &dy.value(), &[]);
        self.record(value, Op::Conv(ConvOp::Conv2dWeightGrad { x: self.id, g: dy.id, geom }))
    }

    /// Average pooling with a checked geometry.
    fn avg_pool2d_geom(self, geom: Pool2dGeometry) -> Var<'t> {
        let value = avg_pool_forward(&geom, &self.value(), &[]);
        self.record(value, Op::Conv(ConvOp::AvgPool2d { x: self.id, geom }))
    }

    /// The input gradient of average pooling, `self` being the output cotangent, recorded.
    fn avg_pool2d_grad(self, geom: Pool2dGeometry) -> Var<'t> {
        let value = avg_pool_input_grad(&geom, &self.value(), &[]);
        self.record(value, Op::Conv(ConvOp::AvgPool2dGrad { g: self.id, geom }))
    }

    /// Max over `kernel` windows of an `[N, C, H, W]` input, moved by `stride`, with `padding`
    /// of −∞ on each side (floor mode, as PyTorch's default). The gradient goes to the first
    /// maximum of each window.
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(&[1, 1, 2, 2], vec![1., 4., 3., 2.]).unwrap());
    /// let y = x.max_pool2d((2, 2), (2, 2), (0, 0));
    /// assert_eq!(y.value().to_vec(), vec![4.]);
    /// ```
    ///
    /// # Panics
    /// If `self` is not 4-D, a kernel size or stride is 0, the padding exceeds half the kernel,
    /// or the window does not fit the padded input.
    pub fn max_pool2d(
        self,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Var<'t> {
        let x = self.value();
        let geom = pool_geometry("max_pool2d", x.shape(), kernel, stride, padding);
        let len = geom.n * geom.c * geom.out_h() * geom.out_w();
        let (mut y, mut argmax) = (buffer::take(len), vec![0u32; len]);
        compute::max_pool2d_forward(&geom, x.as_slice(), &mut y, &mut argmax);
        let y = Tensor::from_vec(&[geom.n, geom.c, geom.out_h(), geom.out_w()], y).expect("shape");
        self.record(y, Op::Conv(ConvOp::MaxPool2d { x: self.id, geom, argmax }))
    }

    /// Mean over `kernel` windows of an `[N, C, H, W]` input, moved by `stride`, with zero
    /// `padding` counted in the mean (PyTorch's `count_include_pad=True`, floor mode).
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(&[1, 1, 2, 2], vec![1., 4., 3., 2.]).unwrap());
    /// assert_eq!(x.avg_pool2d((2, 2), (2, 2), (0, 0)).value().to_vec(), vec![2.5]);
    /// ```
    ///
    /// # Panics
    /// If `self` is not 4-D, a kernel size or stride is 0, the padding exceeds half the kernel,
    /// or the window does not fit the padded input.
    pub fn avg_pool2d(
        self,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Var<'t> {
        let geom = pool_geometry("avg_pool2d", &self.shape(), kernel, stride, padding);
        self.avg_pool2d_geom(geom)
    }

    /// Inverted dropout: in training, each element is zeroed with probability `p` and the rest
    /// are scaled by `1/(1−p)`, so the expected value is unchanged; the mask is drawn from `rng`
    /// (seed it for reproducible runs). Outside training, or with `p = 0`, returns `self`.
    ///
    /// ```
    /// use rand::SeedableRng;
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::ones(&[1000]));
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    /// let y = x.dropout(0.5, true, &mut rng).value();
    /// assert!(y.as_slice().iter().all(|&v| v == 0.0 || v == 2.0));
    /// ```
    ///
    /// # Panics
    /// If `p` is not in `[0, 1]`.
    pub fn dropout(self, p: f32, train: bool, rng: &mut impl Rng) -> Var<'t> {
        if !(0.0..=1.0).contains(&p) {
            invalid("dropout", format!("probability {p} is not in [0, 1]"));
        }
        if !train || p == 0.0 {
            return self;
        }
        let x = self.value();
        let keep = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
        let mask = (0..x.len()).map(|_| if rng.gen::<f32>() < p { 0.0 } else { keep }).collect();
        let mask = Tensor::from_vec(x.shape(), mask).expect("shape");
        let y = zip_map("dropout", &x, &mask, |v, m| v * m);
        self.record(y, Op::Conv(ConvOp::Dropout { x: self.id, mask }))
    }
}

impl Family for ConvOp {
    fn name(&self) -> &'static str {
        match self {
            ConvOp::Conv2d { .. } => "conv2d",
            ConvOp::MaxPool2d { .. } => "max_pool2d",
            ConvOp::AvgPool2d { .. } => "avg_pool2d",
            ConvOp::Dropout { .. } => "dropout",
            ConvOp::Conv2dInputGrad { .. } => "conv2d_input_grad",
            ConvOp::Conv2dWeightGrad { .. } => "conv2d_weight_grad",
            ConvOp::AvgPool2dGrad { .. } => "avg_pool2d_grad",
        }
    }

    fn for_each_input(&self, f: &mut dyn FnMut(NodeId)) {
        match *self {
            ConvOp::Conv2d { x, w, b, .. } => {
                f(x);
                f(w);
                if let Some(b) = b {
                    f(b)
                }
            }
            ConvOp::MaxPool2d { x, .. }
            | ConvOp::AvgPool2d { x, .. }
            | ConvOp::Dropout { x, .. }
            | ConvOp::AvgPool2dGrad { g: x, .. } => f(x),
            ConvOp::Conv2dInputGrad { g: a, w: b, .. }
            | ConvOp::Conv2dWeightGrad { x: a, g: b, .. } => {
                f(a);
                f(b)
            }
        }
    }

    // A convolution's rule needs x and w, a max-pool's its argmax: only their output's shape.
    fn reads_output(&self) -> bool {
        !matches!(self, ConvOp::Conv2d { .. } | ConvOp::MaxPool2d { .. })
    }

    fn reads_inputs(&self) -> bool {
        !matches!(self, ConvOp::MaxPool2d { .. })
    }

    fn backward(&self, out: &Tensor, g: &Tensor, ctx: &mut Ctx<'_>) {
        let lead = ctx.lead();
        let tasks = g.len() / out.len().max(1);
        match *self {
            ConvOp::Conv2d { x, w, b, geom } => {
                let (vx, vw) = (ctx.value(x), ctx.value(w));
                ctx.acc(x, || {
                    let stacked = Conv2dGeometry { n: tasks * geom.n, ..geom };
                    let mut dx = buffer::take(tasks * vx.len());
                    compute::conv2d_backward_input(&stacked, g.as_slice(), vw.as_slice(), &mut dx);
                    Tensor::from_vec(&with_lead(g, lead, vx.shape()), dx).expect("shape")
                });
                if ctx.needs(w) || b.is_some_and(|b| ctx.needs(b)) {
                    let (mut dw, mut db) =
                        (buffer::take(tasks * vw.len()), vec![0.0; tasks * geom.c_out]);
                    let chunks = dw.chunks_mut(vw.len()).zip(db.chunks_mut(geom.c_out));
                    for (task, (dw, db)) in chunks.enumerate() {
                        let g = task_slice(g.as_slice(), task, out.len());
                        let db = b.is_some().then_some(db);
                        compute::conv2d_backward_weight(&geom, vx.as_slice(), g, dw, db);
                    }
                    ctx.acc(w, || {
                        Tensor::from_vec(&with_lead(g, lead, vw.shape()), dw).expect("shape")
                    });
                    if let Some(b) = b {
                        ctx.acc(b, || {
                            Tensor::from_vec(&with_lead(g, lead, &[geom.c_out]), db).expect("shape")
                        });
                    }
                }
            }
            ConvOp::MaxPool2d { x, geom, ref argmax } => {
                let vx = ctx.value(x);
                ctx.acc(x, || {
                    let mut dx = buffer::take(tasks * vx.len());
                    for (task, dx) in dx.chunks_mut(vx.len()).enumerate() {
                        let g = task_slice(g.as_slice(), task, out.len());
                        compute::max_pool2d_backward(&geom, g, argmax, dx);
                    }
                    Tensor::from_vec(&with_lead(g, lead, vx.shape()), dx).expect("shape")
                });
            }
            ConvOp::AvgPool2d { x, geom } => {
                let vx = ctx.value(x);
                ctx.acc(x, || {
                    let mut dx = buffer::take(tasks * vx.len());
                    for (task, dx) in dx.chunks_mut(vx.len()).enumerate() {
                        let g = task_slice(g.as_slice(), task, out.len());
                        compute::avg_pool2d_backward(&geom, g, dx);
                    }
                    Tensor::from_vec(&with_lead(g, lead, vx.shape()), dx).expect("shape")
                });
            }
            ConvOp::Dropout { x, ref mask } => {
                ctx.acc(x, || zip_map("dropout", g, mask, |g, m| g * m))
            }
            ConvOp::Conv2dInputGrad { g: dy, w, geom } => {
                let lead = &g.shape()[..lead];
                let (vdy, vw) = (ctx.value(dy), ctx.value(w));
                ctx.acc(dy, || conv_forward(&geom, g, vw, None, lead));
                ctx.acc(w, || conv_weight_grad(&geom, g, vdy, lead));
            }
            ConvOp::Conv2dWeightGrad { x, g: dy, geom } => {
                let lead = &g.shape()[..lead];
                let (vx, vdy) = (ctx.value(x), ctx.value(dy));
                ctx.acc(x, || {
                    let per_task = g.as_slice().chunks(out.len()).map(|u| {
                        let u = Tensor::from_vec(out.shape(), u.to_vec()).expect("shape");
                        conv_input_grad(&geom, vdy, &u, &[])
                    });
                    stack_tasks(lead, vx.shape(), per_task)
                });
                ctx.acc(dy, || {
                    let per_task = g.as_slice().chunks(out.len()).map(|u| {
                        let u = Tensor::from_vec(out.shape(), u.to_vec()).expect("shape");
                        conv_forward(&geom, vx, &u, None, &[])
                    });
                    stack_tasks(lead, vdy.shape(), per_task)
                });
            }
            ConvOp::AvgPool2dGrad { g: dy, geom } => {
                ctx.acc(dy, || avg_pool_forward(&geom, g, &g.shape()[..lead]))
            }
        }
    }

    fn backward_graph<'t>(&self, _out: Var<'t>, g: Var<'t>, ctx: &mut GraphCtx<'t>) {
        match *self {
            ConvOp::Conv2d { x, w, b, geom } => {
                let (vx, vw) = (ctx.var(x), ctx.var(w));
                ctx.acc(x, || g.conv2d_input_grad(vw, geom));
                ctx.acc(w, || vx.conv2d_weight_grad(g, geom));
                if let Some(b) = b {
                    // Two sums over adjacent axes (on the kernels), not one over [0, 2, 3].
                    ctx.acc(b, || g.sum(&[2, 3], false).sum(&[0], false));
                }
            }
            ConvOp::MaxPool2d { x, geom, ref argmax } => {
                let shape = ctx.var(x).shape();
                let from = argmax_positions(&geom, argmax);
                ctx.acc(x, || g.reshape(&[from.len()]).scatter_add(from, &shape))
            }
            ConvOp::AvgPool2d { x, geom } => ctx.acc(x, || g.avg_pool2d_grad(geom)),
            ConvOp::Dropout { x, ref mask } => {
                let mask = ctx.constant(mask.clone());
                ctx.acc(x, || g * mask)
            }
            ConvOp::Conv2dInputGrad { g: dy, w, geom } => {
                let (vdy, vw) = (ctx.var(dy), ctx.var(w));
                ctx.acc(dy, || g.conv2d_geom(vw, None, geom));
                ctx.acc(w, || g.conv2d_weight_grad(vdy, geom));
            }
            ConvOp::Conv2dWeightGrad { x, g: dy, geom } => {
                let (vx, vdy) = (ctx.var(x), ctx.var(dy));
                ctx.acc(x, || vdy.conv2d_input_grad(g, geom));
                ctx.acc(dy, || vx.conv2d_geom(g, None, geom));
            }
            ConvOp::AvgPool2dGrad { g: dy, geom } => ctx.acc(dy, || g.avg_pool2d_geom(geom)),
        }
    }
}

/// One tensor of `shape` per task, stacked behind the lead axes.
fn stack_tasks(lead: &[usize], shape: &[usize], per_task: impl Iterator<Item = Tensor>) -> Tensor {
    let mut data = Vec::new();
    for t in per_task {
        data.extend_from_slice(t.as_slice());
    }
    Tensor::from_vec(&behind(lead, shape), data).expect("shape")
}
