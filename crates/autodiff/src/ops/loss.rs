//! Softmax, log-softmax and losses. Every loss returns a scalar (shape `[]`).
//!
//! For a loss the cotangent `g` is one number per task (shape `[lead..]`); each rule computes
//! the local gradient ∂L/∂input and scales it by `g` (reshaped to `[lead.., 1, .., 1]` so that
//! it broadcasts over the input's axes, not along them). `s` is the reduction's scale: 1 for
//! [`Reduction::Sum`], 1/count for [`Reduction::Mean`]; `d = pred − target`.
//!
//! | op | forward | backward |
//! | --- | --- | --- |
//! | softmax | yₖ = e^{xₖ−max} / Σⱼ e^{xⱼ−max} along `axis` | x̄ = y·(g − Σₖ gₖ·yₖ) |
//! | log_softmax | yₖ = (xₖ − max) − ln Σⱼ e^{xⱼ−max} | x̄ = g − eʸ·Σₖ gₖ |
//! | cross_entropy | s·Σ (logsumexp(x) − x_label) over labelled positions | x̄ = g·s·(softmax(x) − onehot(label)), 0 where ignored |
//! | nll_loss | −s·Σ x_label over labelled positions | x̄ = −g·s at the label, 0 elsewhere |
//! | mse_loss | s·Σ d² | p̄ = g·2s·d, t̄ = −p̄ |
//! | l1_loss | s·Σ \|d\| | p̄ = g·s·sign(d), t̄ = −p̄ |
//! | smooth_l1_loss | s·Σ (½d²/β if \|d\| < β, else \|d\| − ½β) | p̄ = g·s·(d/β or sign(d)), t̄ = −p̄ |
//! | bce_with_logits | s·Σ (max(x, 0) − x·t + ln(1 + e^{−\|x\|})) | x̄ = g·s·(σ(x) − t), t̄ = −g·s·x |
//!
//! Cross-entropy and NLL take logits `[N, C]` with labels `[N]`, or `[N, C, d₁, ..]` with labels
//! `[N, d₁, ..]` (per pixel); positions labelled `ignore_index` count neither in the sum nor in
//! the mean, and a batch with nothing labelled has loss 0.
//!
//! Softmax and log-softmax along the last axis, and cross-entropy of `[N, C]` logits, run row by
//! row on the elementwise kernels (`e^x` there is within 2 ulp); along other axes, and per pixel,
//! they walk strided lanes here. Every product of `g` with a local gradient runs on the kernels.

use crate::backward::Ctx;
use crate::broadcast::{map_tasks, zip_map};
use crate::compute::elementwise as ew;
use crate::error::{invalid, shape_panic};
use crate::graph::GraphCtx;
use crate::ops::{Family, Op};
use crate::tape::{NodeId, Var};
use crate::tensor::Tensor;

/// How a loss combines its per-element (or per-sample) terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// The mean over the counted terms (PyTorch's default).
    #[default]
    Mean,
    /// The sum of the terms.
    Sum,
}

impl Reduction {
    /// The factor applied to the sum of `count` terms (0 if there are none).
    fn scale(self, count: usize) -> f32 {
        match self {
            Reduction::Sum => 1.0,
            Reduction::Mean if count == 0 => 0.0,
            Reduction::Mean => 1.0 / count as f32,
        }
    }
}

/// Ops of the loss family. `targets` hold one class per position (`None` where ignored),
/// `scale` the reduction factor.
#[derive(Clone)]
pub(crate) enum LossOp {
    Softmax { x: NodeId, axis: usize },
    LogSoftmax { x: NodeId, axis: usize },
    CrossEntropy { logits: NodeId, probs: Tensor, targets: Vec<Option<u32>>, scale: f32 },
    Nll { log_probs: NodeId, targets: Vec<Option<u32>>, scale: f32 },
    Mse { pred: NodeId, target: NodeId, scale: f32 },
    L1 { pred: NodeId, target: NodeId, scale: f32 },
    SmoothL1 { pred: NodeId, target: NodeId, beta: f32, scale: f32 },
    BceWithLogits { logits: NodeId, target: NodeId, scale: f32 },
}

/// The lanes along `axis` of a tensor of `shape` with `lead` more leading axes (that repeat
/// the lanes): calls `f(start, stride, len)` for each lane, in order.
fn for_each_lane(
    total: usize,
    shape: &[usize],
    axis: usize,
    mut f: impl FnMut(usize, usize, usize),
) {
    let (len, inner) = (shape[axis], shape[axis + 1..].iter().product::<usize>());
    let outer = total / (len * inner).max(1);
    for o in 0..outer {
        for i in 0..inner {
            f(o * len * inner + i, inner, len);
        }
    }
}

/// `(max, ln Σ e^{x−max})` of one lane: logsumexp = max + the second, stable for any finite x.
fn lane_lse(x: &[f32], start: usize, stride: usize, len: usize) -> (f32, f32) {
    let lane = (0..len).map(|k| x[start + k * stride]);
    let max = lane.clone().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = lane.map(|v| (v - max).exp()).sum();
    (max, sum.ln())
}

fn check_axis(op: &'static str, shape: &[usize], axis: usize) {
    if axis >= shape.len() {
        invalid(op, format!("axis {axis} out of range for shape {shape:?}"));
    }
}

/// Validates class labels against logits `[N, C, ..]`: one label per position, each in
/// `0..C` or equal to `ignore_index`. Returns the targets and the number not ignored.
fn class_targets(
    op: &'static str,
    shape: &[usize],
    labels: &[i64],
    ignore_index: Option<i64>,
) -> (Vec<Option<u32>>, usize) {
    if shape.len() < 2 {
        invalid(op, format!("expected [N, C, ..] scores, got {shape:?}"));
    }
    let mut label_shape = vec![shape[0]];
    label_shape.extend_from_slice(&shape[2..]);
    if labels.len() != label_shape.iter().product::<usize>() {
        invalid(
            op,
            format!("{} labels for scores {shape:?}: expected {label_shape:?}", labels.len()),
        );
    }
    let classes = shape[1] as i64;
    let targets: Vec<Option<u32>> = (labels.iter())
        .map(|&l| match l {
            l if Some(l) == ignore_index => None,
            l if (0..classes).contains(&l) => Some(l as u32),
            l => invalid(op, format!("label {l} out of range for {classes} classes")),
        })
        .collect();
    let count = targets.iter().flatten().count();
    (targets, count)
}

/// Calls `f(target, start, stride)` for every labelled position of `[N, C, ..]` scores;
/// the position's C scores sit at `start + k·stride`.
fn for_each_target(shape: &[usize], targets: &[Option<u32>], mut f: impl FnMut(u32, usize, usize)) {
    let (classes, spatial) = (shape[1], shape[2..].iter().product::<usize>());
    for (pos, t) in targets.iter().enumerate() {
        if let Some(t) = *t {
            let (n, s) = (pos / spatial, pos % spatial);
            f(t, n * classes * spatial + s, spatial);
        }
    }
}

/// `g` (one value per task, shape `[lead..]`) times the local gradient: `[lead.., local..]`.
fn times_cot(g: &Tensor, local: &Tensor) -> Tensor {
    let mut shape = g.shape().to_vec();
    shape.extend_from_slice(local.shape());
    Tensor::from_kernel(&shape, |out| {
        if !local.is_empty() {
            for (o, &gt) in out.chunks_exact_mut(local.len()).zip(g.as_slice()) {
                ew::scale(gt, local.as_slice(), o);
            }
        }
    })
}

/// True if `axis` is the last axis of `shape`: its lanes are the contiguous rows the kernels take.
fn is_last(shape: &[usize], axis: usize) -> bool {
    axis + 1 == shape.len()
}

/// Checks that prediction and target have the same shape.
fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) {
    if a.shape() != b.shape() {
        shape_panic(op, a.shape(), b.shape());
    }
}

fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Σ f(pred, target) in f64, as a scalar tensor scaled by `scale`.
fn pointwise_sum(
    pred: &Tensor,
    target: &Tensor,
    scale: f32,
    f: impl Fn(f32, f32) -> f32,
) -> Tensor {
    let sum: f64 =
        pred.as_slice().iter().zip(target.as_slice()).map(|(&p, &t)| f(p, t) as f64).sum();
    Tensor::scalar((sum * scale as f64) as f32)
}

impl<'t> Var<'t> {
    /// Softmax along `axis`, computed stably (shifted by the lane's maximum).
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(&[1, 2], vec![0.0, 1e4]).unwrap());
    /// assert_eq!(x.softmax(1).value().to_vec(), vec![0.0, 1.0]);
    /// ```
    ///
    /// # Panics
    /// If `axis` is out of range.
    pub fn softmax(self, axis: usize) -> Var<'t> {
        let x = self.value();
        check_axis("softmax", x.shape(), axis);
        if is_last(x.shape(), axis) {
            let cols = x.shape()[axis];
            let y = Tensor::from_kernel(x.shape(), |y| ew::softmax_rows(x.as_slice(), cols, y));
            return self.record(y, Op::Loss(LossOp::Softmax { x: self.id, axis }));
        }
        let mut y = x.to_vec();
        for_each_lane(x.len(), x.shape(), axis, |start, stride, len| {
            let (max, ln_sum) = lane_lse(x.as_slice(), start, stride, len);
            for k in 0..len {
                y[start + k * stride] = (x.as_slice()[start + k * stride] - max - ln_sum).exp();
            }
        });
        let y = Tensor::from_vec(x.shape(), y).expect("shape");
        self.record(y, Op::Loss(LossOp::Softmax { x: self.id, axis }))
    }

    /// Log-softmax along `axis`: `x − logsumexp(x)`, finite for any finite input.
    ///
    /// # Panics
    /// If `axis` is out of range.
    pub fn log_softmax(self, axis: usize) -> Var<'t> {
        let x = self.value();
        check_axis("log_softmax", x.shape(), axis);
        if is_last(x.shape(), axis) {
            let cols = x.shape()[axis];
            let y = Tensor::from_kernel(x.shape(), |y| ew::log_softmax_rows(x.as_slice(), cols, y));
            return self.record(y, Op::Loss(LossOp::LogSoftmax { x: self.id, axis }));
        }
        let mut y = x.to_vec();
        for_each_lane(x.len(), x.shape(), axis, |start, stride, len| {
            let (max, ln_sum) = lane_lse(x.as_slice(), start, stride, len);
            for k in 0..len {
                y[start + k * stride] = (x.as_slice()[start + k * stride] - max) - ln_sum;
            }
        });
        let y = Tensor::from_vec(x.shape(), y).expect("shape");
        self.record(y, Op::Loss(LossOp::LogSoftmax { x: self.id, axis }))
    }

    /// Cross-entropy of logits `[N, C]` (or per position `[N, C, d₁, ..]`) with integer class
    /// `labels` of `[N]` (or `[N, d₁, ..]`) in row-major order, as PyTorch's `cross_entropy`.
    /// Positions labelled `ignore_index` are skipped; the mean is over the others, and is 0 if
    /// every position is ignored.
    ///
    /// ```
    /// use tapestry_autodiff::ops::loss::Reduction;
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let logits = tape.leaf(Tensor::from_vec(&[2, 2], vec![1e4, -1e4, 0.0, 0.0]).unwrap());
    /// let loss = logits.cross_entropy(&[0, 1], None, Reduction::Mean);
    /// assert!((loss.value().item() - 0.5 * 2f32.ln()).abs() < 1e-6);
    /// let all_ignored = logits.cross_entropy(&[-100, -100], Some(-100), Reduction::Mean);
    /// assert_eq!(all_ignored.value().item(), 0.0);
    /// ```
    ///
    /// # Panics
    /// If the logits have fewer than 2 axes, the number of labels does not match, or a label is
    /// outside `0..C` and not `ignore_index`; the message names the op and the shapes.
    pub fn cross_entropy(
        self,
        labels: &[i64],
        ignore_index: Option<i64>,
        reduction: Reduction,
    ) -> Var<'t> {
        let x = self.value();
        let (targets, count) = class_targets("cross_entropy", x.shape(), labels, ignore_index);
        let scale = reduction.scale(count);
        if x.ndim() == 2 {
            // Rows of logits: log-probabilities, then probabilities, on the kernels.
            let classes = x.shape()[1];
            let log_probs = Tensor::from_kernel(x.shape(), |lp| {
                ew::log_softmax_rows(x.as_slice(), classes, lp)
            });
            let mut total = 0.0f64;
            for (row, t) in log_probs.as_slice().chunks_exact(classes.max(1)).zip(&targets) {
                if let Some(t) = *t {
                    total -= row[t as usize] as f64;
                }
            }
            let probs = Tensor::from_kernel(x.shape(), |p| ew::exp(log_probs.as_slice(), p));
            let loss = Tensor::scalar((total * scale as f64) as f32);
            let op = LossOp::CrossEntropy { logits: self.id, probs, targets, scale };
            return self.record(loss, Op::Loss(op));
        }
        let mut probs = vec![0.0f32; x.len()];
        let mut total = 0.0f64;
        for_each_target(x.shape(), &targets, |t, start, stride| {
            let (max, ln_sum) = lane_lse(x.as_slice(), start, stride, x.shape()[1]);
            for k in 0..x.shape()[1] {
                let i = start + k * stride;
                probs[i] = (x.as_slice()[i] - max - ln_sum).exp();
            }
            total += (ln_sum - (x.as_slice()[start + t as usize * stride] - max)) as f64;
        });
        let probs = Tensor::from_vec(x.shape(), probs).expect("shape");
        let loss = Tensor::scalar((total * scale as f64) as f32);
        self.record(loss, Op::Loss(LossOp::CrossEntropy { logits: self.id, probs, targets, scale }))
    }

    /// Negative log-likelihood of log-probabilities (for example from
    /// [`Var::log_softmax`] along axis 1), with the label layout and `ignore_index` of
    /// [`Var::cross_entropy`].
    ///
    /// # Panics
    /// As [`Var::cross_entropy`].
    pub fn nll_loss(
        self,
        labels: &[i64],
        ignore_index: Option<i64>,
        reduction: Reduction,
    ) -> Var<'t> {
        let x = self.value();
        let (targets, count) = class_targets("nll_loss", x.shape(), labels, ignore_index);
        let scale = reduction.scale(count);
        let mut total = 0.0f64;
        for_each_target(x.shape(), &targets, |t, start, stride| {
            total -= x.as_slice()[start + t as usize * stride] as f64;
        });
        let loss = Tensor::scalar((total * scale as f64) as f32);
        self.record(loss, Op::Loss(LossOp::Nll { log_probs: self.id, targets, scale }))
    }

    /// Squared error `Σ (self − target)²`, reduced by `reduction` (the mean is over elements).
    ///
    /// # Panics
    /// If the shapes differ (`shape mismatch in mse_loss: lhs [..], rhs [..]`).
    pub fn mse_loss(self, target: Var<'t>, reduction: Reduction) -> Var<'t> {
        self.same_tape(target);
        let (p, t) = (self.value(), target.value());
        same_shape("mse_loss", &p, &t);
        let scale = reduction.scale(p.len());
        let loss = pointwise_sum(&p, &t, scale, |p, t| (p - t) * (p - t));
        self.record(loss, Op::Loss(LossOp::Mse { pred: self.id, target: target.id, scale }))
    }

    /// Absolute error `Σ |self − target|`, reduced by `reduction`.
    ///
    /// # Panics
    /// If the shapes differ.
    pub fn l1_loss(self, target: Var<'t>, reduction: Reduction) -> Var<'t> {
        self.same_tape(target);
        let (p, t) = (self.value(), target.value());
        same_shape("l1_loss", &p, &t);
        let scale = reduction.scale(p.len());
        let loss = pointwise_sum(&p, &t, scale, |p, t| (p - t).abs());
        self.record(loss, Op::Loss(LossOp::L1 { pred: self.id, target: target.id, scale }))
    }

    /// Huber-like loss: `½d²/β` where `|d| < β`, else `|d| − ½β`, with `d = self − target`
    /// (PyTorch's `smooth_l1_loss`; `β = 0` is the L1 loss).
    ///
    /// # Panics
    /// If the shapes differ or `beta` is negative.
    pub fn smooth_l1_loss(self, target: Var<'t>, beta: f32, reduction: Reduction) -> Var<'t> {
        self.same_tape(target);
        let (p, t) = (self.value(), target.value());
        same_shape("smooth_l1_loss", &p, &t);
        if beta.is_nan() || beta < 0.0 {
            invalid("smooth_l1_loss", format!("beta {beta} is negative"));
        }
        let scale = reduction.scale(p.len());
        let loss = pointwise_sum(&p, &t, scale, |p, t| {
            let d = (p - t).abs();
            if d < beta {
                0.5 * d * d / beta
            } else {
                d - 0.5 * beta
            }
        });
        let op = LossOp::SmoothL1 { pred: self.id, target: target.id, beta, scale };
        self.record(loss, Op::Loss(op))
    }

    /// Binary cross-entropy of logits `self` with targets in `[0, 1]` of the same shape, in the
    /// stable form `max(x, 0) − x·t + ln(1 + e^{−|x|})` (finite for any finite logit).
    ///
    /// ```
    /// use tapestry_autodiff::ops::loss::Reduction;
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from(vec![1e4, -1e4]));
    /// let t = tape.constant(Tensor::from(vec![0.0, 0.0]));
    /// assert_eq!(x.bce_with_logits(t, Reduction::Sum).value().item(), 1e4);
    /// ```
    ///
    /// # Panics
    /// If the shapes differ.
    pub fn bce_with_logits(self, target: Var<'t>, reduction: Reduction) -> Var<'t> {
        self.same_tape(target);
        let (x, t) = (self.value(), target.value());
        same_shape("bce_with_logits", &x, &t);
        let scale = reduction.scale(x.len());
        let loss =
            pointwise_sum(&x, &t, scale, |x, t| x.max(0.0) - x * t + (-x.abs()).exp().ln_1p());
        let op = LossOp::BceWithLogits { logits: self.id, target: target.id, scale };
        self.record(loss, Op::Loss(op))
    }
}

impl Family for LossOp {
    fn name(&self) -> &'static str {
        match self {
            LossOp::Softmax { .. } => "softmax",
            LossOp::LogSoftmax { .. } => "log_softmax",
            LossOp::CrossEntropy { .. } => "cross_entropy",
            LossOp::Nll { .. } => "nll_loss",
            LossOp::Mse { .. } => "mse_loss",
            LossOp::L1 { .. } => "l1_loss",
            LossOp::SmoothL1 { .. } => "smooth_l1_loss",
            LossOp::BceWithLogits { .. } => "bce_with_logits",
        }
    }

    fn for_each_input(&self, f: &mut dyn FnMut(NodeId)) {
        match *self {
            LossOp::Softmax { x, .. } | LossOp::LogSoftmax { x, .. } => f(x),
            LossOp::CrossEntropy { logits: x, .. } | LossOp::Nll { log_probs: x, .. } => f(x),
            LossOp::Mse { pred, target, .. }
            | LossOp::L1 { pred, target, .. }
            | LossOp::SmoothL1 { pred, target, .. }
            | LossOp::BceWithLogits { logits: pred, target, .. } => {
                f(pred);
                f(target)
            }
        }
    }

    fn backward(&self, out: &Tensor, g: &Tensor, ctx: &mut Ctx<'_>) {
        // The pointwise losses: local = ∂L/∂pred from (pred, target); the target gets −local.
        let pointwise =
            |ctx: &mut Ctx<'_>, pred: NodeId, target: NodeId, local: &dyn Fn(f32) -> f32| {
                let local = zip_map("loss backward", ctx.value(pred), ctx.value(target), |p, t| {
                    local(p - t)
                });
                ctx.acc(target, || times_cot(g, &local).map(|v| -v));
                ctx.acc(pred, || times_cot(g, &local));
            };
        match *self {
            LossOp::Softmax { x, axis } if is_last(out.shape(), axis) => {
                let cols = out.shape()[axis];
                ctx.acc(x, || {
                    map_tasks(g, out, |y, g, dx| ew::softmax_rows_backward(y, g, cols, dx))
                })
            }
            LossOp::LogSoftmax { x, axis } if is_last(out.shape(), axis) => {
                let cols = out.shape()[axis];
                let rule = |y: &[f32], g: &[f32], dx: &mut [f32]| {
                    ew::log_softmax_rows_backward(y, g, cols, dx)
                };
                ctx.acc(x, || map_tasks(g, out, rule))
            }
            LossOp::Softmax { x, axis } => ctx.acc(x, || {
                let mut dx = g.to_vec();
                for_each_lane(g.len(), out.shape(), axis, |start, stride, len| {
                    let y = |k: usize| out.as_slice()[(start + k * stride) % out.len()];
                    let dot: f32 = (0..len).map(|k| dx[start + k * stride] * y(k)).sum();
                    for k in 0..len {
                        dx[start + k * stride] = y(k) * (dx[start + k * stride] - dot);
                    }
                });
                Tensor::from_vec(g.shape(), dx).expect("shape")
            }),
            LossOp::LogSoftmax { x, axis } => ctx.acc(x, || {
                let mut dx = g.to_vec();
                for_each_lane(g.len(), out.shape(), axis, |start, stride, len| {
                    let sum: f32 = (0..len).map(|k| dx[start + k * stride]).sum();
                    for k in 0..len {
                        let y = out.as_slice()[(start + k * stride) % out.len()];
                        dx[start + k * stride] -= y.exp() * sum;
                    }
                });
                Tensor::from_vec(g.shape(), dx).expect("shape")
            }),
            LossOp::CrossEntropy { logits, ref probs, ref targets, scale } if probs.ndim() == 2 => {
                let classes = probs.shape()[1];
                ctx.acc(logits, || {
                    let local = Tensor::from_kernel(probs.shape(), |local| {
                        ew::scale(scale, probs.as_slice(), local);
                        let rows = local
                            .chunks_exact_mut(classes.max(1))
                            .zip(probs.as_slice().chunks_exact(classes.max(1)));
                        for ((row, p), t) in rows.zip(targets) {
                            match *t {
                                Some(t) => row[t as usize] = scale * (p[t as usize] - 1.0),
                                None => row.fill(0.0),
                            }
                        }
                    });
                    times_cot(g, &local)
                })
            }
            LossOp::CrossEntropy { logits, ref probs, ref targets, scale } => {
                ctx.acc(logits, || {
                    let mut local = vec![0.0f32; probs.len()];
                    for_each_target(probs.shape(), targets, |t, start, stride| {
                        for k in 0..probs.shape()[1] {
                            let i = start + k * stride;
                            local[i] = scale
                                * (probs.as_slice()[i] - f32::from(u8::from(k == t as usize)));
                        }
                    });
                    times_cot(g, &Tensor::from_vec(probs.shape(), local).expect("shape"))
                })
            }
            LossOp::Nll { log_probs, ref targets, scale } => {
                let shape = ctx.value(log_probs).shape();
                ctx.acc(log_probs, || {
                    let mut local = vec![0.0f32; shape.iter().product()];
                    for_each_target(shape, targets, |t, start, stride| {
                        local[start + t as usize * stride] = -scale;
                    });
                    times_cot(g, &Tensor::from_vec(shape, local).expect("shape"))
                })
            }
            LossOp::Mse { pred, target, scale } => {
                pointwise(ctx, pred, target, &|d| 2.0 * scale * d)
            }
            LossOp::L1 { pred, target, scale } => {
                pointwise(ctx, pred, target, &|d| scale * sign(d))
            }
            LossOp::SmoothL1 { pred, target, beta, scale } => pointwise(ctx, pred, target, &|d| {
                if d.abs() < beta {
                    scale * d / beta
                } else {
                    scale * sign(d)
                }
            }),
            LossOp::BceWithLogits { logits, target, scale } => {
                let (x, t) = (ctx.value(logits), ctx.value(target));
                ctx.acc(logits, || {
                    times_cot(
                        g,
                        &zip_map("bce_with_logits backward", x, t, |x, t| scale * (sigmoid(x) - t)),
                    )
                });
                ctx.acc(target, || times_cot(g, &x.map(|x| -scale * x)));
            }
        }
    }

    fn backward_graph<'t>(&self, out: Var<'t>, g: Var<'t>, ctx: &mut GraphCtx<'t>) {
        // The pointwise losses: ∂L/∂pred = g·s·local(d) with d = pred − target; the target gets
        // the negative. `local` is recorded, so a smooth loss has its second derivative.
        let pointwise = |ctx: &mut GraphCtx<'t>, pred: NodeId, target: NodeId, local: Var<'t>| {
            let gp = local * g;
            ctx.acc(target, || -gp);
            ctx.acc(pred, || gp);
        };
        let d = |ctx: &GraphCtx<'t>, pred: NodeId, target: NodeId| ctx.var(pred) - ctx.var(target);
        let map_d = |ctx: &GraphCtx<'t>, pred: NodeId, target: NodeId, f: &dyn Fn(f32) -> f32| {
            let (p, t) = (ctx.var(pred).value(), ctx.var(target).value());
            ctx.constant(zip_map("loss backward", &p, &t, |p, t| f(p - t)))
        };
        match *self {
            LossOp::Softmax { x, axis } => ctx.acc(x, || out * (g - (g * out).sum(&[axis], true))),
            LossOp::LogSoftmax { x, axis } => ctx.acc(x, || g - out.exp() * g.sum(&[axis], true)),
            LossOp::CrossEntropy { logits, ref probs, ref targets, scale } => {
                // s·(softmax(x) − onehot) at labelled positions, with softmax recorded from x.
                let (mut labelled, mut onehot) =
                    (vec![0.0f32; probs.len()], vec![0.0f32; probs.len()]);
                for_each_target(probs.shape(), targets, |t, start, stride| {
                    for k in 0..probs.shape()[1] {
                        labelled[start + k * stride] = 1.0;
                    }
                    onehot[start + t as usize * stride] = 1.0;
                });
                let constant = |v| ctx.constant(Tensor::from_vec(probs.shape(), v).expect("shape"));
                let (labelled, onehot) = (constant(labelled), constant(onehot));
                let vx = ctx.var(logits);
                ctx.acc(logits, || (vx.softmax(1) * labelled - onehot) * (g * scale))
            }
            LossOp::Nll { log_probs, ref targets, scale } => {
                let shape = ctx.var(log_probs).shape();
                let mut local = vec![0.0f32; shape.iter().product()];
                for_each_target(&shape, targets, |t, start, stride| {
                    local[start + t as usize * stride] = -scale;
                });
                let local = ctx.constant(Tensor::from_vec(&shape, local).expect("shape"));
                ctx.acc(log_probs, || g * local)
            }
            LossOp::Mse { pred, target, scale } => {
                let local = d(ctx, pred, target) * (2.0 * scale);
                pointwise(ctx, pred, target, local)
            }
            LossOp::L1 { pred, target, scale } => {
                let local = map_d(ctx, pred, target, &|d| scale * sign(d));
                pointwise(ctx, pred, target, local)
            }
            LossOp::SmoothL1 { pred, target, beta, scale } => {
                // d·s/β inside the quadratic zone (recorded), s·sign(d) outside (constant).
                let inner =
                    map_d(ctx, pred, target, &|d| if d.abs() < beta { scale / beta } else { 0.0 });
                let outer = map_d(ctx, pred, target, &|d| {
                    if d.abs() < beta {
                        0.0
                    } else {
                        scale * sign(d)
                    }
                });
                let local = d(ctx, pred, target) * inner + outer;
                pointwise(ctx, pred, target, local)
            }
            LossOp::BceWithLogits { logits, target, scale } => {
                let (x, t) = (ctx.var(logits), ctx.var(target));
                ctx.acc(logits, || (x.sigmoid() - t) * (g * scale));
                ctx.acc(target, || -(x * (g * scale)));
            }
        }
    }
}
