//! Normalisation: batch norm (per channel, over batch and positions) and layer norm (over the
//! trailing axes), each one node with a closed-form backward.
//!
//! With x̂ = (x − μ)·r, r = 1/√(σ² + ε), over a group of m values, and γ the scale:
//!
//! | op | forward | backward (cotangent `g` of the output) |
//! | --- | --- | --- |
//! | batch_norm, train | y = γ_c·x̂ + β_c, μ, σ² (biased) over N and positions of channel c | x̄ = γ_c·r_c/m · (m·g − Σg − x̂·Σ(g·x̂)); γ̄_c = Σ g·x̂; β̄_c = Σ g |
//! | batch_norm, eval | y = γ_c·(x − μ_c)·r_c + β_c with running μ, σ² | x̄ = g·γ_c·r_c; γ̄, β̄ as above |
//! | layer_norm | y = γ·x̂ + β, μ, σ² over the trailing axes of each row | x̄ = r/m · (m·ĝ − Σĝ − x̂·Σ(ĝ·x̂)), ĝ = g·γ; γ̄ = Σ_rows g·x̂; β̄ = Σ_rows g |
//!
//! Sums run over the group (the channel's m = N·H·W values, or the row's m values), per task
//! when the cotangent is stacked. `docs/autodiff.md` derives the train-mode rule.

use crate::backward::Ctx;
use crate::broadcast::zip_map;
use crate::error::{invalid, shape_panic};
use crate::graph::GraphCtx;
use crate::ops::reduce::with_lead;
use crate::ops::{Family, Op};
use crate::tape::{NodeId, Var};
use crate::tensor::Tensor;

/// Which statistics [`Var::batch_norm`] normalises with.
#[derive(Clone, Copy, Debug)]
pub enum BatchNormMode<'a> {
    /// Training: the mean and biased variance of this batch; gradients flow through them.
    Train,
    /// Evaluation: fixed running statistics, each of shape `[C]`.
    Eval {
        /// Running mean per channel.
        running_mean: &'a Tensor,
        /// Running (unbiased) variance per channel.
        running_var: &'a Tensor,
    },
}

/// Per-channel statistics of one training batch, each of shape `[C]`.
///
/// A layer keeps running statistics as PyTorch does:
/// `running = (1 − momentum)·running + momentum·batch`, with `mean` and `unbiased_var`.
#[derive(Clone, Debug)]
pub struct BatchStats {
    /// The batch mean.
    pub mean: Tensor,
    /// The biased variance (divided by m), used to normalise.
    pub var: Tensor,
    /// The unbiased variance (divided by m − 1), for the running statistics.
    pub unbiased_var: Tensor,
}

/// Ops of the norm family: inputs, the normalised value x̂ and the reciprocal deviations.
#[derive(Clone)]
pub(crate) enum NormOp {
    BatchNorm {
        x: NodeId,
        gamma: Option<NodeId>,
        beta: Option<NodeId>,
        xhat: Tensor,
        inv_std: Vec<f32>,
        train: bool,
        eps: f32,
    },
    LayerNorm {
        x: NodeId,
        gamma: Option<NodeId>,
        beta: Option<NodeId>,
        xhat: Tensor,
        inv_std: Vec<f32>,
        eps: f32,
    },
}

/// Checks an optional affine parameter against the `expected` shape.
fn affine<'t>(
    op: &'static str,
    x: Var<'t>,
    p: Option<Var<'t>>,
    expected: &[usize],
) -> Option<Tensor> {
    p.map(|p| {
        x.same_tape(p);
        let v = p.value();
        if v.shape() != expected {
            shape_panic(op, x.value().shape(), v.shape());
        }
        v
    })
}

/// `γ·x̂ + β` elementwise, with `γ[k]`, `β[k]` picked by `param_index(element index)`.
fn scale_shift(
    xhat: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    param_index: impl Fn(usize) -> usize,
) -> Tensor {
    let data = (xhat.as_slice().iter().enumerate())
        .map(|(i, &v)| {
            let k = param_index(i);
            gamma.map_or(v, |g| v * g.as_slice()[k]) + beta.map_or(0.0, |b| b.as_slice()[k])
        })
        .collect();
    Tensor::from_vec(xhat.shape(), data).expect("shape")
}

impl<'t> Var<'t> {
    /// Batch normalisation of an `[N, C, ..]` input (`[N, C]` or `[N, C, H, W]`) per channel,
    /// with optional scale `gamma` and shift `beta` of shape `[C]`.
    ///
    /// In [`BatchNormMode::Train`] the batch mean and biased variance over all axes but the
    /// channel axis normalise the input (gradients flow through them), and the statistics come
    /// back for the running averages. In [`BatchNormMode::Eval`] the given running statistics
    /// are used as constants, and no statistics come back. A positive `eps` keeps a constant
    /// channel finite (it normalises to 0).
    ///
    /// ```
    /// use tapestry_autodiff::ops::norm::BatchNormMode;
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(&[4, 1], vec![1., 2., 3., 4.]).unwrap());
    /// let (y, stats) = x.batch_norm(None, None, BatchNormMode::Train, 0.0);
    /// let stats = stats.unwrap();
    /// assert_eq!((stats.mean.item(), stats.var.item()), (2.5, 1.25));
    /// assert!((stats.unbiased_var.item() - 5.0 / 3.0).abs() < 1e-6);
    /// assert!((y.value().to_vec()[3] - 1.5 / 1.25f32.sqrt()).abs() < 1e-6);
    /// ```
    ///
    /// # Panics
    /// If `self` has fewer than 2 axes, `gamma`, `beta` or a running statistic is not `[C]`
    /// (`shape mismatch in batch_norm: ..`), `eps` is negative, or in training a channel has
    /// fewer than 2 values.
    pub fn batch_norm(
        self,
        gamma: Option<Var<'t>>,
        beta: Option<Var<'t>>,
        mode: BatchNormMode<'_>,
        eps: f32,
    ) -> (Var<'t>, Option<BatchStats>) {
        const OP: &str = "batch_norm";
        let x = self.value();
        if x.ndim() < 2 {
            invalid(OP, format!("expected an [N, C, ..] input, got {:?}", x.shape()));
        }
        if eps.is_nan() || eps < 0.0 {
            invalid(OP, format!("eps {eps} is negative"));
        }
        let c = x.shape()[1];
        let spatial = x.shape()[2..].iter().product::<usize>().max(1);
        let m = x.len() / c.max(1);
        let channel = |i: usize| (i / spatial) % c;
        let (gv, bv) = (affine(OP, self, gamma, &[c]), affine(OP, self, beta, &[c]));

        let (mean, var, stats) = match mode {
            BatchNormMode::Train => {
                if m < 2 {
                    invalid(
                        OP,
                        format!(
                            "training needs more than 1 value per channel, got {:?}",
                            x.shape()
                        ),
                    );
                }
                let (mut sum, mut sq) = (vec![0.0f64; c], vec![0.0f64; c]);
                for (i, &v) in x.as_slice().iter().enumerate() {
                    sum[channel(i)] += v as f64;
                }
                let mean: Vec<f64> = sum.iter().map(|s| s / m as f64).collect();
                for (i, &v) in x.as_slice().iter().enumerate() {
                    sq[channel(i)] += (v as f64 - mean[channel(i)]).powi(2);
                }
                let var: Vec<f64> = sq.iter().map(|s| s / m as f64).collect();
                let to_tensor = |v: Vec<f32>| Tensor::from_vec(&[c], v).expect("shape");
                let stats = BatchStats {
                    mean: to_tensor(mean.iter().map(|&v| v as f32).collect()),
                    var: to_tensor(var.iter().map(|&v| v as f32).collect()),
                    unbiased_var: to_tensor(
                        sq.iter().map(|s| (s / (m - 1) as f64) as f32).collect(),
                    ),
                };
                (mean, var, Some(stats))
            }
            BatchNormMode::Eval { running_mean, running_var } => {
                for stat in [running_mean, running_var] {
                    if stat.shape() != [c] {
                        shape_panic(OP, x.shape(), stat.shape());
                    }
                }
                let widen = |t: &Tensor| t.as_slice().iter().map(|&v| v as f64).collect::<Vec<_>>();
                (widen(running_mean), widen(running_var), None)
            }
        };
        let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps as f64).sqrt()).collect();
        let xhat: Vec<f32> = (x.as_slice().iter().enumerate())
            .map(|(i, &v)| ((v as f64 - mean[channel(i)]) * inv_std[channel(i)]) as f32)
            .collect();
        let xhat = Tensor::from_vec(x.shape(), xhat).expect("shape");
        let y = scale_shift(&xhat, gv.as_ref(), bv.as_ref(), channel);
        let op = NormOp::BatchNorm {
            x: self.id,
            gamma: gamma.map(|g| g.id),
            beta: beta.map(|b| b.id),
            xhat,
            inv_std: inv_std.iter().map(|&v| v as f32).collect(),
            train: stats.is_some(),
            eps,
        };
        (self.record(y, Op::Norm(op)), stats)
    }

    /// Layer normalisation over the trailing axes `normalized_shape`, with an optional
    /// elementwise scale `gamma` and shift `beta` of that shape (PyTorch's `LayerNorm`).
    /// A positive `eps` keeps a constant row finite (it normalises to 0).
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(&[2, 2], vec![1., 3., 2., 6.]).unwrap());
    /// let y = x.layer_norm(&[2], None, None, 0.0);
    /// assert_eq!(y.value().to_vec(), vec![-1., 1., -1., 1.]);
    /// ```
    ///
    /// # Panics
    /// If `normalized_shape` is not the trailing part of the input's shape, or `gamma`/`beta`
    /// do not have that shape (`shape mismatch in layer_norm: ..`), or `eps` is negative.
    pub fn layer_norm(
        self,
        normalized_shape: &[usize],
        gamma: Option<Var<'t>>,
        beta: Option<Var<'t>>,
        eps: f32,
    ) -> Var<'t> {
        const OP: &str = "layer_norm";
        let x = self.value();
        if !x.shape().ends_with(normalized_shape) {
            shape_panic(OP, x.shape(), normalized_shape);
        }
        if eps.is_nan() || eps < 0.0 {
            invalid(OP, format!("eps {eps} is negative"));
        }
        let (gv, bv) =
            (affine(OP, self, gamma, normalized_shape), affine(OP, self, beta, normalized_shape));
        let m: usize = normalized_shape.iter().product();
        let mut xhat = Vec::with_capacity(x.len());
        let mut inv_std = Vec::with_capacity(x.len() / m.max(1));
        for row in x.as_slice().chunks(m.max(1)) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / m as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / m as f64;
            let r = 1.0 / (var + eps as f64).sqrt();
            xhat.extend(row.iter().map(|&v| ((v as f64 - mean) * r) as f32));
            inv_std.push(r as f32);
        }
        let xhat = Tensor::from_vec(x.shape(), xhat).expect("shape");
        let y = scale_shift(&xhat, gv.as_ref(), bv.as_ref(), |i| i % m.max(1));
        let op = NormOp::LayerNorm {
            x: self.id,
            gamma: gamma.map(|g| g.id),
            beta: beta.map(|b| b.id),
            xhat,
            inv_std,
            eps,
        };
        self.record(y, Op::Norm(op))
    }
}

/// `dx = r/m · (m·ĝ − Σĝ − x̂·Σ(ĝ·x̂))` over one row of m values, given ĝ, the cotangent of x̂.
fn normalise_backward(ghat: &[f32], xhat: &[f32], inv_std: f32, dx: &mut [f32]) {
    let m = ghat.len() as f32;
    let sum_g = ghat.iter().map(|&g| g as f64).sum::<f64>() as f32;
    let sum_gx = ghat.iter().zip(xhat).map(|(&g, &x)| (g * x) as f64).sum::<f64>() as f32;
    for ((d, &g), &x) in dx.iter_mut().zip(ghat).zip(xhat) {
        *d = inv_std / m * (m * g - sum_g - x * sum_gx);
    }
}

impl Family for NormOp {
    fn name(&self) -> &'static str {
        match self {
            NormOp::BatchNorm { .. } => "batch_norm",
            NormOp::LayerNorm { .. } => "layer_norm",
        }
    }

    fn for_each_input(&self, f: &mut dyn FnMut(NodeId)) {
        match *self {
            NormOp::BatchNorm { x, gamma, beta, .. } | NormOp::LayerNorm { x, gamma, beta, .. } => {
                f(x);
                gamma.into_iter().chain(beta).for_each(f);
            }
        }
    }

    fn backward(&self, _out: &Tensor, g: &Tensor, ctx: &mut Ctx<'_>) {
        let lead = ctx.lead();
        match self {
            NormOp::BatchNorm { x, gamma, beta, xhat, inv_std, train, .. } => {
                let (c, len) = (inv_std.len(), xhat.len());
                let spatial = xhat.shape()[2..].iter().product::<usize>().max(1);
                let batch = xhat.shape()[0];
                let gamma_v = gamma.map(|id| ctx.value(id).as_slice());
                let gamma_of = |k: usize| gamma_v.map_or(1.0, |v| v[k]);
                let tasks = g.len() / len.max(1);
                // Per task and channel: Σ g·x̂ and Σ g (also γ̄ and β̄).
                let (mut sum_gx, mut sum_g) = (vec![0.0f64; tasks * c], vec![0.0f64; tasks * c]);
                for (i, &gv) in g.as_slice().iter().enumerate() {
                    let (task, k) = (i / len, (i % len / spatial) % c);
                    sum_gx[task * c + k] += (gv * xhat.as_slice()[i % len]) as f64;
                    sum_g[task * c + k] += gv as f64;
                }
                let m = (batch * spatial) as f32;
                ctx.acc(*x, || {
                    let data = (g.as_slice().iter().enumerate())
                        .map(|(i, &gv)| {
                            let (task, k) = (i / len, (i % len / spatial) % c);
                            let scale = gamma_of(k) * inv_std[k];
                            if *train {
                                let (sg, sgx) =
                                    (sum_g[task * c + k] as f32, sum_gx[task * c + k] as f32);
                                scale / m * (m * gv - sg - xhat.as_slice()[i % len] * sgx)
                            } else {
                                gv * scale
                            }
                        })
                        .collect();
                    Tensor::from_vec(g.shape(), data).expect("shape")
                });
                let per_channel = |s: &[f64]| {
                    let v = s.iter().map(|&v| v as f32).collect();
                    Tensor::from_vec(&with_lead(g, lead, &[c]), v).expect("shape")
                };
                if let Some(gamma) = *gamma {
                    ctx.acc(gamma, || per_channel(&sum_gx));
                }
                if let Some(beta) = *beta {
                    ctx.acc(beta, || per_channel(&sum_g));
                }
            }
            NormOp::LayerNorm { x, gamma, beta, xhat, inv_std, .. } => {
                let m = xhat.len() / inv_std.len().max(1);
                let gamma_v = gamma.map(|id| ctx.value(id).as_slice());
                ctx.acc(*x, || {
                    let ghat = match gamma_v {
                        Some(gamma) => {
                            let data = (g.as_slice().iter().enumerate())
                                .map(|(i, &gv)| gv * gamma[i % m])
                                .collect();
                            Tensor::from_vec(g.shape(), data).expect("shape")
                        }
                        None => g.clone(),
                    };
                    let mut dx = vec![0.0; g.len()];
                    let rows = ghat.as_slice().chunks(m).zip(dx.chunks_mut(m));
                    for (row, (ghat, dx)) in rows.enumerate() {
                        let xhat = &xhat.as_slice()[row % inv_std.len() * m..][..m];
                        let r = inv_std[row % inv_std.len()];
                        normalise_backward(ghat, xhat, r, dx);
                    }
                    Tensor::from_vec(g.shape(), dx).expect("shape")
                });
                if let Some(gamma) = *gamma {
                    ctx.acc(gamma, || zip_map("layer_norm backward", g, xhat, |g, x| g * x));
                }
                if let Some(beta) = *beta {
                    ctx.acc(beta, || g.clone());
                }
            }
        }
    }

    fn backward_graph<'t>(&self, _out: Var<'t>, g: Var<'t>, ctx: &mut GraphCtx<'t>) {
        match self {
            NormOp::BatchNorm { x, gamma, beta, xhat, inv_std, train, eps } => {
                let vx = ctx.var(*x);
                let shape = vx.shape();
                let c = shape[1];
                // Per channel: reduce over every axis but 1; parameters broadcast as [1, C, 1..].
                let axes: Vec<usize> = (0..shape.len()).filter(|&a| a != 1).collect();
                let mut channel_shape = vec![1; shape.len()];
                channel_shape[1] = c;
                let per_channel = |v: Var<'t>| v.reshape(&channel_shape);
                let gamma_b = gamma.map(|id| per_channel(ctx.var(id)));
                let (xhat_v, r) = if *train {
                    normalised(vx, &axes, *eps)
                } else {
                    // Running statistics are constants: x̂ = (x − μ)·r is x's linear function
                    // x̂₀ + (x − x₀)·r, written so that its value is the saved x̂ exactly.
                    let r = per_channel(
                        ctx.constant(Tensor::from_vec(&[c], inv_std.clone()).expect("C")),
                    );
                    let x0 = ctx.constant(vx.value());
                    ((vx - x0) * r + ctx.constant(xhat.clone()), r)
                };
                let ghat = gamma_b.map_or(g, |gm| g * gm);
                ctx.acc(*x, || {
                    if *train {
                        normalise_backward_var(ghat, xhat_v, r, &axes)
                    } else {
                        ghat * r
                    }
                });
                if let Some(gm) = *gamma {
                    ctx.acc(gm, || (g * xhat_v).sum(&axes, false));
                }
                if let Some(bt) = *beta {
                    ctx.acc(bt, || g.sum(&axes, false));
                }
            }
            NormOp::LayerNorm { x, gamma, beta, xhat, inv_std, eps } => {
                let vx = ctx.var(*x);
                let shape = vx.shape();
                let m = xhat.len() / inv_std.len().max(1);
                // The normalised axes: the shortest run of trailing axes holding m elements.
                let mut first = shape.len();
                while first > 0 && shape[first..].iter().product::<usize>() < m {
                    first -= 1;
                }
                let axes: Vec<usize> = (first..shape.len()).collect();
                let (xhat_v, r) = normalised(vx, &axes, *eps);
                let ghat = gamma.map_or(g, |gm| g * ctx.var(gm));
                ctx.acc(*x, || normalise_backward_var(ghat, xhat_v, r, &axes));
                if let Some(gm) = *gamma {
                    ctx.acc(gm, || g * xhat_v);
                }
                if let Some(bt) = *beta {
                    ctx.acc(bt, || g);
                }
            }
        }
    }
}

/// x̂ = (x − μ)·r and r = 1/√(σ² + ε) over `axes`, recorded (so both depend on x).
fn normalised<'t>(x: Var<'t>, axes: &[usize], eps: f32) -> (Var<'t>, Var<'t>) {
    let centred = x - x.mean(axes, true);
    let r = ((centred * centred).mean(axes, true) + eps).pow_scalar(-0.5);
    (centred * r, r)
}

/// x̄ = r·(ĝ − mean ĝ − x̂·mean(ĝ·x̂)) over `axes`: the train-mode rule, recorded.
fn normalise_backward_var<'t>(ghat: Var<'t>, xhat: Var<'t>, r: Var<'t>, axes: &[usize]) -> Var<'t> {
    (ghat - ghat.mean(axes, true) - xhat * (ghat * xhat).mean(axes, true)) * r
}
