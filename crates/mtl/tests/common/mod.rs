//! A small conv multi-task model and data set for the training tests.
#![allow(dead_code)]

use ndarray::{Array2, ArrayD};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::Var;
use tapestry_data::{MultiTaskDataset, TaskSpec, TaskTargets, MISSING_LABEL};
use tapestry_mtl::model::HardSharing;
use tapestry_nn::{init, Ctx, Module, ParamId, Params, Relu, Sequential};

/// A 2-D convolution with bias, stride 1, registered as `{name}.weight` and `{name}.bias`.
#[derive(Debug)]
pub struct Conv {
    weight: ParamId,
    bias: ParamId,
    padding: usize,
}

impl Conv {
    pub fn new(
        params: &mut Params,
        name: &str,
        (c_in, c_out, k, padding): (usize, usize, usize, usize),
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let w = init::pytorch_default(&[c_out, c_in, k, k], rng);
        let b = init::pytorch_default_bias(c_out, c_in * k * k, rng);
        let weight = params.add(format!("{name}.weight"), w).unwrap();
        let bias = params.add(format!("{name}.bias"), b).unwrap();
        Conv { weight, bias, padding }
    }
}

impl Module for Conv {
    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        let p = (self.padding, self.padding);
        x.conv2d(ctx.var(self.weight), Some(ctx.var(self.bias)), (1, 1), p, (1, 1))
    }
    fn params(&self) -> Vec<ParamId> {
        vec![self.weight, self.bias]
    }
}

/// 2x2 max pooling.
#[derive(Debug)]
pub struct MaxPool2;

impl Module for MaxPool2 {
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        x.max_pool2d((2, 2), (2, 2), (0, 0))
    }
}

/// Inverted dropout with probability `p` in training.
#[derive(Debug)]
pub struct Dropout(pub f32);

impl Module for Dropout {
    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        let train = ctx.is_training();
        x.dropout(self.0, train, ctx.rng())
    }
}

pub fn tasks() -> Vec<TaskSpec> {
    vec![TaskSpec::classification("shape", 3), TaskSpec::regression("size", 2)]
}

/// Input `[1, 8, 8]`: conv 1→4 k3 p1, ReLU, max-pool 2, conv 4→6 k4 (to 1x1), ReLU (Z is
/// `[B, 6, 1, 1]`); heads are 1x1 convs: 3 class scores and 2 values.
pub fn conv_model(params: &mut Params, seed: u64, dropout: f32) -> HardSharing {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let trunk = Sequential::new()
        .push(Conv::new(params, "trunk.0", (1, 4, 3, 1), &mut rng))
        .push(Relu)
        .push(MaxPool2)
        .push(Dropout(dropout))
        .push(Conv::new(params, "trunk.3", (4, 6, 4, 0), &mut rng))
        .push(Relu);
    let shape = Conv::new(params, "heads.shape", (6, 3, 1, 0), &mut rng);
    let size = Conv::new(params, "heads.size", (6, 2, 1, 0), &mut rng);
    let t = tasks();
    HardSharing::builder(trunk)
        .head(t[0].clone(), shape)
        .head(t[1].clone(), size)
        .input_shape(&[1, 8, 8])
        .build(params)
        .unwrap()
}

/// `n` random images with a class (from the mean of the left half, some missing) and two
/// values (the means of the top and bottom halves, some masked).
pub fn dataset(n: usize, seed: u64) -> MultiTaskDataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<f32> = (0..n * 64).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let mut labels = Vec::new();
    let mut values = Array2::zeros((n, 2));
    let mut mask = Vec::new();
    for i in 0..n {
        let img = &x[i * 64..(i + 1) * 64];
        let left: f32 = (0..64).filter(|p| p % 8 < 4).map(|p| img[p]).sum::<f32>() / 32.0;
        let class = if left < -0.05 {
            0
        } else if left < 0.05 {
            1
        } else {
            2
        };
        labels.push(if i % 7 == 3 { MISSING_LABEL } else { class });
        values[[i, 0]] = img[..32].iter().sum::<f32>() / 32.0 * 5.0;
        values[[i, 1]] = img[32..].iter().sum::<f32>() / 32.0 * 5.0;
        mask.push(i % 5 != 1);
    }
    MultiTaskDataset::new(
        "conv-toy",
        ArrayD::from_shape_vec(vec![n, 1, 8, 8], x).unwrap(),
        tasks(),
        vec![TaskTargets::Classes { labels }, TaskTargets::Values { values, mask: Some(mask) }],
    )
    .unwrap()
}

/// Every parameter's values, as bits.
pub fn param_bits(params: &Params) -> Vec<u32> {
    params.iter().flat_map(|(_, _, v)| v.to_vec()).map(f32::to_bits).collect()
}

/// PCGrad's direction `Σ_k w_k g_k` of the gradients `rows`, from the coefficients computed on
/// their Gram ([`tapestry_mtl::weighting::PcGrad::coefficients`]).
pub fn pcgrad_direction(rows: &[Vec<f32>], orders: &[Vec<usize>]) -> (Vec<f32>, usize) {
    let t = rows.len();
    let g = tapestry_mtl::task_grads::TaskGradients::from_matrix(t, rows[0].len(), rows.concat());
    let (w, n) = tapestry_mtl::weighting::PcGrad::coefficients(g.gram(), orders);
    let d = (0..rows[0].len()).map(|j| (0..t).map(|k| w[k] * f64::from(rows[k][j])).sum::<f64>());
    (d.map(|v| v as f32).collect(), n)
}

/// One GradNorm update with gradient descent on the weights, written from the paper (Chen et
/// al., 2018, §3.2) independently of `tapestry_mtl::gradnorm`: `G_t = w_t n_t`, `Ḡ` their mean,
/// `L̃_t = L_t / L_t(0)`, `r_t = L̃_t / mean(L̃)`, the targets `c_t = Ḡ r_t^α` held constant,
/// `∂/∂w_t Σ|G_s − c_s| = sign(G_t − c_t) n_t`; then `w_t − lr·that`, floored at `min_weight`,
/// and the weights renormalised to sum to T.
pub fn gradnorm_gd_reference(
    weights: &[f64],
    norms: &[f64],
    losses: &[f64],
    initial: &[f64],
    (alpha, lr, min_weight): (f64, f64, f64),
) -> Vec<f64> {
    let t = weights.len() as f64;
    let g: Vec<f64> = weights.iter().zip(norms).map(|(w, n)| w * n).collect();
    let g_bar = g.iter().sum::<f64>() / t;
    let ratio: Vec<f64> = losses.iter().zip(initial).map(|(l, l0)| l / l0).collect();
    let mean_ratio = ratio.iter().sum::<f64>() / t;
    let stepped: Vec<f64> = (0..weights.len())
        .map(|i| {
            let r = if mean_ratio > 0.0 { ratio[i] / mean_ratio } else { 1.0 };
            let c = g_bar * r.powf(alpha);
            let d = g[i] - c;
            let sign = if d > 0.0 {
                1.0
            } else if d < 0.0 {
                -1.0
            } else {
                0.0
            };
            (weights[i] - lr * sign * norms[i]).max(min_weight)
        })
        .collect();
    let total: f64 = stepped.iter().sum();
    stepped.iter().map(|w| w * t / total).collect()
}

/// Asserts `got` equals `want` to 1e-12 relative, naming `what`.
pub fn assert_same(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (a, b) in got.iter().zip(want) {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{what}: {got:?} vs {want:?}");
    }
}

/// The shared parameters' gradient a weighting's `direction` asks for, flattened like the rows
/// of `g`: its combination of the rows, or its explicit direction.
pub fn shared_direction(
    g: &tapestry_mtl::task_grads::TaskGradients,
    direction: &Option<tapestry_mtl::weighting::Direction>,
) -> Vec<f32> {
    use tapestry_mtl::weighting::Direction;
    match direction {
        Some(Direction::Combination(c)) => {
            let c: Vec<f32> = c.iter().map(|&v| v as f32).collect();
            g.combine(&c).iter().flat_map(|b| b.as_slice().to_vec()).collect()
        }
        Some(Direction::Shared(d)) => d.clone(),
        other => panic!("no direction on the shared parameters: {other:?}"),
    }
}
