//! Gradient tests of the loss family: softmax, log_softmax, cross_entropy (per sample and per
//! pixel, with ignored labels), nll_loss, mse_loss, l1_loss, smooth_l1_loss, bce_with_logits.

mod batched;
mod common;

use common::{assert_close, away_from_zero, check, check_catches_one_percent, rng, uniform};
use rand::Rng;
use tapestry_autodiff::ops::loss::Reduction;
use tapestry_autodiff::{Tape, Tensor, Var};

/// A function of the checked inputs, as the gradient checks take it.
type OpFn = Box<dyn for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t>>;

/// Runs the finite-difference check and the batched-versus-separate check.
fn check_both(name: &str, f: &OpFn, inputs: &[Tensor]) {
    check(name, f, inputs);
    batched::check_batched(name, f, inputs);
}

#[test]
fn softmax_and_log_softmax() {
    let cases: [(&[usize], usize); 5] =
        [(&[2, 3, 4], 0), (&[2, 3, 4], 1), (&[2, 3, 4], 2), (&[5], 0), (&[3, 1], 0)];
    for (i, &(shape, axis)) in cases.iter().enumerate() {
        let x = uniform(&mut rng(i as u64), shape, -3.0, 3.0);
        check_both(
            &format!("softmax {shape:?} axis {axis}"),
            &softmax(axis, false),
            std::slice::from_ref(&x),
        );
        check_both(&format!("log_softmax {shape:?} axis {axis}"), &softmax(axis, true), &[x]);
    }
    let x = uniform(&mut rng(9), &[3, 4, 2], -3.0, 3.0);
    check_catches_one_percent("softmax", |_, v| v[0].softmax(1), std::slice::from_ref(&x));
    check_catches_one_percent("log_softmax", |_, v| v[0].log_softmax(2), &[x]);
}

fn softmax(axis: usize, log: bool) -> OpFn {
    Box::new(move |_, v| if log { v[0].log_softmax(axis) } else { v[0].softmax(axis) })
}

fn ce(labels: Vec<i64>, ignore: Option<i64>, reduction: Reduction) -> OpFn {
    Box::new(move |_, v| v[0].cross_entropy(&labels, ignore, reduction))
}

fn nll(labels: Vec<i64>, ignore: Option<i64>, reduction: Reduction) -> OpFn {
    Box::new(move |_, v| v[0].nll_loss(&labels, ignore, reduction))
}

/// Labels for `count` positions of `classes` classes; every `ignore_every`-th one is 255.
fn labels(seed: u64, count: usize, classes: usize, ignore_every: usize) -> Vec<i64> {
    let mut r = rng(seed);
    (0..count)
        .map(|i| {
            if ignore_every > 0 && i % ignore_every == 1 {
                255
            } else {
                r.gen_range(0..classes as i64)
            }
        })
        .collect()
}

#[test]
fn cross_entropy_and_nll() {
    // (logit shape, labels per sample or pixel)
    let cases: [(&[usize], usize); 4] =
        [(&[4, 5], 4), (&[1, 3], 1), (&[2, 3, 3, 2], 12), (&[3, 4, 5], 15)];
    for (i, &(shape, count)) in cases.iter().enumerate() {
        let x = uniform(&mut rng(10 + i as u64), shape, -2.0, 2.0);
        for (ignore_every, reduction) in
            [(0, Reduction::Mean), (3, Reduction::Mean), (3, Reduction::Sum)]
        {
            let labels = labels(i as u64, count, shape[1], ignore_every);
            let name = format!("{shape:?}, ignore every {ignore_every}, {reduction:?}");
            check_both(
                &format!("cross_entropy {name}"),
                &ce(labels.clone(), Some(255), reduction),
                std::slice::from_ref(&x),
            );
            check_both(
                &format!("nll_loss {name}"),
                &nll(labels, Some(255), reduction),
                std::slice::from_ref(&x),
            );
        }
    }
    let x = uniform(&mut rng(20), &[2, 4, 3, 3], -2.0, 2.0);
    check_catches_one_percent(
        "per-pixel cross_entropy",
        ce(labels(3, 18, 4, 4), Some(255), Reduction::Mean),
        std::slice::from_ref(&x),
    );
    check_catches_one_percent(
        "cross_entropy",
        ce(labels(4, 3, 5, 0), None, Reduction::Sum),
        &[uniform(&mut rng(21), &[3, 5], -2.0, 2.0)],
    );
    check_catches_one_percent(
        "nll_loss",
        nll(labels(5, 18, 4, 4), Some(255), Reduction::Mean),
        &[x],
    );
}

#[test]
fn cross_entropy_mean_is_sum_over_labelled_count() {
    let tape = Tape::new();
    let x = tape.leaf(uniform(&mut rng(30), &[2, 3, 2, 2], -2.0, 2.0));
    let labels = [0, 255, 2, 1, 255, 255, 0, 2];
    let mean = x.cross_entropy(&labels, Some(255), Reduction::Mean).value().item();
    let sum = x.cross_entropy(&labels, Some(255), Reduction::Sum).value().item();
    assert!((mean - sum / 5.0).abs() < 1e-6, "mean {mean}, sum {sum}");
    // Changing the logits of an ignored pixel changes nothing.
    let mut moved = x.value().to_vec();
    moved[1] += 5.0; // n 0, class 0, pixel 1: labelled 255
    let again = tape.leaf(Tensor::from_vec(&[2, 3, 2, 2], moved).unwrap());
    assert_eq!(again.cross_entropy(&labels, Some(255), Reduction::Mean).value().item(), mean);
}

#[test]
fn all_ignored_gives_zero_loss_and_gradient() {
    for reduction in [Reduction::Mean, Reduction::Sum] {
        let tape = Tape::new();
        let x = tape.leaf(uniform(&mut rng(31), &[2, 3, 2], -2.0, 2.0));
        let loss = x.cross_entropy(&[-100; 4], Some(-100), reduction);
        assert_eq!(loss.value().item(), 0.0);
        let g = tape.backward(loss).wrt(x);
        assert!(g.as_slice().iter().all(|&v| v == 0.0), "{g:?}");
        let loss = x.log_softmax(1).nll_loss(&[-100; 4], Some(-100), reduction);
        assert_eq!(loss.value().item(), 0.0);
        assert!(tape.backward(loss).wrt(x).as_slice().iter().all(|&v| v == 0.0));
    }
}

#[test]
fn extreme_logits_give_their_limits() {
    // Logits ±1e4 make every softmax one-hot: row 0 [1, 0, 0], row 1 [0, 0, 1]; each labelled
    // class is 2e4 below its row's maximum. So cross-entropy is 2e4 per row with gradient
    // softmax − one-hot; the column softmax sums to 3 whatever x (gradient 0); and BCE with
    // logits is max(x, 0) − x·t + ln(1 + e^−|x|) = 1e4 four times, ln 2 once (x = 0) and 0 once,
    // with gradient σ(x) − t.
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(&[2, 3], vec![1e4, -1e4, 0.0, -1e4, -1e4, 1e4]).unwrap());
    let t = Tensor::from_vec(&[2, 3], vec![0.0, 1.0, 0.5, 1.0, 0.0, 0.0]).unwrap();
    let ln2 = std::f64::consts::LN_2;
    let cases: [(&str, Var<'_>, f64, [f32; 6]); 4] = [
        (
            "ce mean",
            x.cross_entropy(&[1, 0], None, Reduction::Mean),
            2e4,
            [0.5, -0.5, 0.0, -0.5, 0.0, 0.5],
        ),
        (
            "nll sum",
            x.log_softmax(1).nll_loss(&[1, 0], None, Reduction::Sum),
            4e4,
            [1.0, -1.0, 0.0, -1.0, 0.0, 1.0],
        ),
        ("softmax over rows", x.softmax(0).sum_all(), 3.0, [0.0; 6]),
        (
            "bce mean",
            x.bce_with_logits(tape.constant(t), Reduction::Mean),
            (4e4 + ln2) / 6.0,
            [1.0 / 6.0, -1.0 / 6.0, 0.0, -1.0 / 6.0, 0.0, 1.0 / 6.0],
        ),
    ];
    for (name, loss, value, grad) in cases {
        let got = loss.value().item() as f64;
        assert!((got - value).abs() <= 1e-6 * value, "{name}: {got} vs {value}");
        let g = tape.backward(loss).wrt(x).to_vec();
        for (a, b) in g.iter().zip(&grad) {
            assert!((a - b).abs() <= 1e-6, "{name}: gradient {g:?} vs {grad:?}");
        }
    }
    assert!((x.cross_entropy(&[1, 0], None, Reduction::Sum).value().item() - 4e4).abs() < 1.0);
}

/// Prediction and target, with `pred − target` drawn by `diff`.
fn pair(
    seed: u64,
    shape: &[usize],
    diff: impl Fn(&mut rand_chacha::ChaCha8Rng) -> f32,
) -> Vec<Tensor> {
    let mut r = rng(seed);
    let target = uniform(&mut r, shape, -1.0, 1.0);
    let pred = target.as_slice().iter().map(|&t| t + diff(&mut r)).collect();
    vec![Tensor::from_vec(shape, pred).unwrap(), target]
}

fn signed(r: &mut rand_chacha::ChaCha8Rng, lo: f32, hi: f32) -> f32 {
    let v = r.gen_range(lo..hi);
    if r.gen_bool(0.5) {
        v
    } else {
        -v
    }
}

#[test]
fn regression_losses() {
    for (i, shape) in [&[6][..], &[2, 3, 4], &[1, 1]].into_iter().enumerate() {
        let seed = 40 + i as u64;
        for reduction in [Reduction::Mean, Reduction::Sum] {
            let mse: OpFn = Box::new(move |_, v| v[0].mse_loss(v[1], reduction));
            let l1: OpFn = Box::new(move |_, v| v[0].l1_loss(v[1], reduction));
            let smooth: OpFn = Box::new(move |_, v| v[0].smooth_l1_loss(v[1], 0.5, reduction));
            check_both(
                &format!("mse_loss {shape:?} {reduction:?}"),
                &mse,
                &pair(seed, shape, |r| r.gen_range(-2.0..2.0)),
            );
            // Away from the kink of |d| at 0.
            check_both(
                &format!("l1_loss {shape:?} {reduction:?}"),
                &l1,
                &pair(seed, shape, |r| signed(r, 0.2, 1.5)),
            );
            // Both branches, away from the switch at |d| = β.
            let d = |r: &mut rand_chacha::ChaCha8Rng| {
                if r.gen_bool(0.5) {
                    signed(r, 0.02, 0.4)
                } else {
                    signed(r, 0.6, 1.5)
                }
            };
            check_both(
                &format!("smooth_l1_loss {shape:?} {reduction:?}"),
                &smooth,
                &pair(seed, shape, d),
            );
        }
    }
    let inputs =
        pair(
            50,
            &[3, 5],
            |r| if r.gen_bool(0.5) { signed(r, 0.02, 0.4) } else { signed(r, 0.6, 1.5) },
        );
    check_catches_one_percent(
        "smooth_l1_loss",
        |_, v| v[0].smooth_l1_loss(v[1], 0.5, Reduction::Mean),
        &inputs,
    );
    check_catches_one_percent("mse_loss", |_, v| v[0].mse_loss(v[1], Reduction::Sum), &inputs);
}

#[test]
fn smooth_l1_with_beta_zero_is_l1() {
    // β = 0 is documented as plain L1 (PyTorch's convention): the same value and gradient, and
    // the gradient check holds away from the kink.
    let inputs = pair(51, &[3, 5], |r| signed(r, 0.2, 1.5));
    for reduction in [Reduction::Mean, Reduction::Sum] {
        let tape = Tape::new();
        let (p, t) = (tape.leaf(inputs[0].clone()), tape.leaf(inputs[1].clone()));
        let (smooth, l1) = (p.smooth_l1_loss(t, 0.0, reduction), p.l1_loss(t, reduction));
        assert_eq!(smooth.value().item(), l1.value().item(), "{reduction:?}");
        let (gs, gl) = (tape.backward(smooth), tape.backward(l1));
        assert_eq!(gs.wrt(p).to_vec(), gl.wrt(p).to_vec(), "{reduction:?}");
        assert_eq!(gs.wrt(t).to_vec(), gl.wrt(t).to_vec(), "{reduction:?}");
        check(
            "smooth_l1_loss beta 0",
            move |_, v| v[0].smooth_l1_loss(v[1], 0.0, reduction),
            &inputs,
        );
    }
}

#[test]
fn bce_with_logits() {
    for (i, shape) in [&[6][..], &[2, 3, 2]].into_iter().enumerate() {
        let mut r = rng(60 + i as u64);
        let inputs = [uniform(&mut r, shape, -4.0, 4.0), uniform(&mut r, shape, 0.0, 1.0)];
        for reduction in [Reduction::Mean, Reduction::Sum] {
            let f: OpFn = Box::new(move |_, v| v[0].bce_with_logits(v[1], reduction));
            check_both(&format!("bce_with_logits {shape:?} {reduction:?}"), &f, &inputs);
        }
        check_catches_one_percent(
            "bce_with_logits",
            |_, v| v[0].bce_with_logits(v[1], Reduction::Mean),
            &inputs,
        );
    }
    let x = away_from_zero(&mut rng(62), &[5], 0.1, 2.0);
    let t = uniform(&mut rng(63), &[5], 0.0, 1.0);
    check(
        "bce_with_logits, constant target",
        |tape, v| v[0].bce_with_logits(tape.constant(t.clone()), Reduction::Sum),
        &[x],
    );
}

#[test]
#[should_panic(expected = "invalid argument to cross_entropy: label 4 out of range for 4 classes")]
fn label_out_of_range() {
    let tape = Tape::new();
    tape.leaf(Tensor::zeros(&[2, 4])).cross_entropy(&[0, 4], None, Reduction::Mean);
}

#[test]
#[should_panic(
    expected = "invalid argument to cross_entropy: 3 labels for scores [2, 4, 2]: expected [2, 2]"
)]
fn label_count_names_shapes() {
    let tape = Tape::new();
    tape.leaf(Tensor::zeros(&[2, 4, 2])).cross_entropy(&[0, 1, 2], None, Reduction::Mean);
}

#[test]
#[should_panic(expected = "shape mismatch in mse_loss: lhs [2, 3], rhs [3]")]
fn regression_shapes_must_match() {
    let tape = Tape::new();
    tape.leaf(Tensor::zeros(&[2, 3])).mse_loss(tape.leaf(Tensor::zeros(&[3])), Reduction::Mean);
}

// Golden values from PyTorch 1.13 (float64), produced by this script:
//
// ```python
// import numpy as np
// import torch
// torch.set_default_dtype(torch.float64)
// F = torch.nn.functional
// def seq(n, a, m, d):  # deterministic values k/d, exact in f32
//     return torch.tensor([((i * a) % m - m // 2) / d for i in range(n)])
// def lit(v):  # the shortest Rust literal of the nearest f32
//     return np.format_float_positional(np.float32(v), unique=True, trim="0")
// def show(name, t):
//     print(f"const {name}: [f32; {t.numel()}] = [{', '.join(lit(v) for v in t.flatten().tolist())}];")
// def grad_of(f, *xs):
//     xs = [x.clone().requires_grad_() for x in xs]
//     out = f(*xs); out.backward()
//     return [out.detach()] + [x.grad for x in xs]
// # softmax / log_softmax along axis 1 of [2, 3, 2], objective Σ y·r
// x = seq(12, 7, 19, 4.0).reshape(2, 3, 2); r = seq(12, 5, 11, 2.0).reshape(2, 3, 2)
// show("SM_X", x)
// show("SM_Y", F.softmax(x, 1)); show("SM_DX", grad_of(lambda x: (F.softmax(x, 1) * r).sum(), x)[1])
// show("LSM_Y", F.log_softmax(x, 1)); show("LSM_DX", grad_of(lambda x: (F.log_softmax(x, 1) * r).sum(), x)[1])
// # cross-entropy [3, 4] with an extreme row, mean and sum
// logits = torch.tensor([[1e4, -1e4, 0.0, 5.0], [0.5, -1.0, 2.0, 0.25], [-2.0, 1.5, 0.75, 1e4]])
// labels = torch.tensor([3, 2, 0])
// show("CE_LOGITS", logits)
// for red in ["mean", "sum"]:
//     l, d = grad_of(lambda z: F.cross_entropy(z, labels, reduction=red), logits)
//     show(f"CE_{red.upper()}", l); show(f"CE_{red.upper()}_DX", d)
// # per-pixel cross-entropy [2, 3, 2, 2], labels [2, 2, 2] with ignore_index -100
// px = seq(24, 7, 17, 4.0).reshape(2, 3, 2, 2)
// pl = torch.tensor([[[0, 2], [-100, 1]], [[1, -100], [2, 0]]])
// show("PX_LOGITS", px)
// l, d = grad_of(lambda z: F.cross_entropy(z, pl, ignore_index=-100), px)
// show("PX_CE", l); show("PX_CE_DX", d)
// # nll of log-probabilities [3, 4], labels with one ignored
// lp = F.log_softmax(seq(12, 5, 9, 2.0).reshape(3, 4), 1)
// show("NLL_LOGP", lp)
// l, d = grad_of(lambda z: F.nll_loss(z, torch.tensor([1, -100, 3]), ignore_index=-100), lp)
// show("NLL", l); show("NLL_DX", d)
// # regression losses on [2, 3]
// p = seq(6, 5, 11, 4.0).reshape(2, 3); t = seq(6, 3, 13, 8.0).reshape(2, 3)
// show("REG_P", p); show("REG_T", t)
// for name, f in [("MSE", F.mse_loss), ("L1", F.l1_loss), ("SL1", lambda a, b: F.smooth_l1_loss(a, b, beta=0.5))]:
//     l, dp, dt = grad_of(f, p, t); show(name, l); show(name + "_DP", dp); show(name + "_DT", dt)
// # bce with logits incl. extreme logits, sum
// bx = torch.tensor([1e4, -1e4, 0.5, -2.0, 1e4, -1e4]); bt = torch.tensor([1.0, 0.0, 0.25, 1.0, 0.0, 1.0])
// show("BCE_X", bx); show("BCE_T", bt)
// l, dx, dt = grad_of(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction="sum"), bx, bt)
// show("BCE", l); show("BCE_DX", dx); show("BCE_DT", dt)
// ```
const SM_X: [f32; 12] = [-2.25, -0.5, 1.25, -1.75, 0.0, 1.75, -1.25, 0.5, 2.25, -0.75, 1.0, -2.0];
const SM_Y: [f32; 12] = [
    0.022934103,
    0.09281397,
    0.7594732,
    0.026591646,
    0.21759272,
    0.8805944,
    0.022934103,
    0.73067915,
    0.7594732,
    0.20934308,
    0.21759272,
    0.059977796,
];
const SM_DX: [f32; 12] = [
    -0.1095455,
    0.08296549,
    0.1697171,
    0.010474189,
    -0.060171593,
    -0.09343968,
    0.013699212,
    0.12030583,
    0.073919,
    -0.07020334,
    -0.08761821,
    -0.05010249,
];
const LSM_Y: [f32; 12] = [
    -3.7751303,
    -2.3771582,
    -0.27513027,
    -3.6271582,
    -1.5251303,
    -0.12715816,
    -3.7751303,
    -0.31378087,
    -0.27513027,
    -1.5637809,
    -1.5251303,
    -2.8137808,
];
const LSM_DX: [f32; 12] = [
    -2.5458682,
    0.13922095,
    0.98105365,
    -0.46011254,
    1.5648146,
    0.3208916,
    1.4311976,
    2.8840747,
    -1.2784196,
    -0.74394155,
    -0.15277813,
    -2.1401331,
];
const CE_LOGITS: [f32; 12] =
    [10000.0, -10000.0, 0.0, 5.0, 0.5, -1.0, 2.0, 0.25, -2.0, 1.5, 0.75, 10000.0];
const CE_MEAN: [f32; 1] = [6665.7896];
const CE_MEAN_DX: [f32; 12] = [
    0.33333334,
    0.0,
    0.0,
    -0.33333334,
    0.05141161,
    0.01147148,
    -0.10292249,
    0.0400394,
    -0.33333334,
    0.0,
    0.0,
    0.33333334,
];
const CE_SUM: [f32; 1] = [19997.37];
const CE_SUM_DX: [f32; 12] =
    [1.0, 0.0, 0.0, -1.0, 0.15423483, 0.03441444, -0.30876747, 0.1201182, -1.0, 0.0, 0.0, 1.0];
const PX_LOGITS: [f32; 24] = [
    -2.0, -0.25, 1.5, -1.0, 0.75, -1.75, 0.0, 1.75, -0.75, 1.0, -1.5, 0.25, 2.0, -0.5, 1.25, -1.25,
    0.5, -2.0, -0.25, 1.5, -1.0, 0.75, -1.75, 0.0,
];
const PX_CE: [f32; 1] = [1.9233541];
const PX_CE_DX: [f32; 24] = [
    -0.15838838,
    0.03535963,
    0.0,
    0.008278294,
    0.1294943,
    0.0078898,
    0.0,
    -0.037172373,
    0.028894082,
    -0.043249432,
    0.0,
    0.028894082,
    0.13093284,
    0.0,
    0.13093284,
    -0.15838838,
    -0.1374516,
    0.0,
    0.029215066,
    0.1294943,
    0.006518762,
    0.0,
    -0.1601479,
    0.028894082,
];
const NLL_LOGP: [f32; 12] = [
    -3.5529668, -1.0529667, -3.0529668, -0.5529667, -3.5529668, -1.0529667, -3.0529668, -0.5529667,
    -1.101005, -3.101005, -0.601005, -2.601005,
];
const NLL: [f32; 1] = [1.8269858];
const NLL_DX: [f32; 12] = [0.0, -0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.5];
const REG_P: [f32; 6] = [-1.25, 0.0, 1.25, -0.25, 1.0, -0.5];
const REG_T: [f32; 6] = [-0.75, -0.375, 0.0, 0.375, 0.75, -0.5];
const MSE: [f32; 1] = [0.40104166];
const MSE_DP: [f32; 6] = [-0.16666667, 0.125, 0.41666666, -0.20833333, 0.083333336, 0.0];
const MSE_DT: [f32; 6] = [0.16666667, -0.125, -0.41666666, 0.20833333, -0.083333336, 0.0];
const L1: [f32; 1] = [0.5];
const L1_DP: [f32; 6] = [-0.16666667, 0.16666667, 0.16666667, -0.16666667, 0.16666667, 0.0];
const L1_DT: [f32; 6] = [0.16666667, -0.16666667, -0.16666667, 0.16666667, -0.16666667, -0.0];
const SL1: [f32; 1] = [0.3046875];
const SL1_DP: [f32; 6] = [-0.16666667, 0.125, 0.16666667, -0.16666667, 0.083333336, 0.0];
const SL1_DT: [f32; 6] = [0.16666667, -0.125, -0.16666667, 0.16666667, -0.083333336, 0.0];
const BCE_X: [f32; 6] = [10000.0, -10000.0, 0.5, -2.0, 10000.0, -10000.0];
const BCE_T: [f32; 6] = [1.0, 0.0, 0.25, 1.0, 0.0, 1.0];
const BCE: [f32; 1] = [20002.977];
const BCE_DX: [f32; 6] = [0.0, 0.0, 0.37245932, -0.8807971, 1.0, -1.0];
const BCE_DT: [f32; 6] = [-10000.0, 10000.0, -0.5, 2.0, -10000.0, 10000.0];

fn seq(n: usize, a: usize, m: usize, d: f32) -> Vec<f32> {
    (0..n).map(|i| ((i * a) % m) as f32 - (m / 2) as f32).map(|v| v / d).collect()
}

fn t(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_vec(shape, data.to_vec()).unwrap()
}

#[test]
fn softmax_matches_pytorch() {
    let tape = Tape::new();
    let x = tape.leaf(t(&[2, 3, 2], &SM_X));
    assert_eq!(x.value().to_vec(), seq(12, 7, 19, 4.0));
    let r = tape.constant(t(&[2, 3, 2], &seq(12, 5, 11, 2.0)));
    let (y, ly) = (x.softmax(1), x.log_softmax(1));
    assert_close("softmax", &y.value().to_vec(), &SM_Y, 1e-5, 1e-7);
    assert_close("log_softmax", &ly.value().to_vec(), &LSM_Y, 1e-5, 1e-7);
    assert_close(
        "softmax dx",
        &tape.backward((y * r).sum_all()).wrt(x).to_vec(),
        &SM_DX,
        1e-5,
        1e-6,
    );
    assert_close(
        "log_softmax dx",
        &tape.backward((ly * r).sum_all()).wrt(x).to_vec(),
        &LSM_DX,
        1e-5,
        1e-6,
    );
}

#[test]
fn cross_entropy_matches_pytorch() {
    let tape = Tape::new();
    let x = tape.leaf(t(&[3, 4], &CE_LOGITS));
    for (reduction, loss, dx) in
        [(Reduction::Mean, CE_MEAN, CE_MEAN_DX), (Reduction::Sum, CE_SUM, CE_SUM_DX)]
    {
        let l = x.cross_entropy(&[3, 2, 0], None, reduction);
        assert_close("ce", &l.value().to_vec(), &loss, 1e-6, 0.0);
        assert_close("ce dx", &tape.backward(l).wrt(x).to_vec(), &dx, 1e-5, 1e-7);
    }
    let px = tape.leaf(t(&[2, 3, 2, 2], &PX_LOGITS));
    let l = px.cross_entropy(&[0, 2, -100, 1, 1, -100, 2, 0], Some(-100), Reduction::Mean);
    assert_close("per-pixel ce", &l.value().to_vec(), &PX_CE, 1e-6, 0.0);
    assert_close("per-pixel ce dx", &tape.backward(l).wrt(px).to_vec(), &PX_CE_DX, 1e-5, 1e-7);
    let lp = tape.leaf(t(&[3, 4], &NLL_LOGP));
    let l = lp.nll_loss(&[1, -100, 3], Some(-100), Reduction::Mean);
    assert_close("nll", &l.value().to_vec(), &NLL, 1e-6, 0.0);
    assert_close("nll dx", &tape.backward(l).wrt(lp).to_vec(), &NLL_DX, 1e-6, 0.0);
}

#[test]
fn regression_and_bce_match_pytorch() {
    let tape = Tape::new();
    let (p, q) = (tape.leaf(t(&[2, 3], &REG_P)), tape.leaf(t(&[2, 3], &REG_T)));
    let cases = [
        (p.mse_loss(q, Reduction::Mean), MSE, MSE_DP, MSE_DT),
        (p.l1_loss(q, Reduction::Mean), L1, L1_DP, L1_DT),
        (p.smooth_l1_loss(q, 0.5, Reduction::Mean), SL1, SL1_DP, SL1_DT),
    ];
    for (i, (l, loss, dp, dt)) in cases.into_iter().enumerate() {
        let grads = tape.backward(l);
        assert_close(&format!("loss {i}"), &l.value().to_vec(), &loss, 1e-6, 0.0);
        assert_close(&format!("dp {i}"), &grads.wrt(p).to_vec(), &dp, 1e-6, 1e-7);
        assert_close(&format!("dt {i}"), &grads.wrt(q).to_vec(), &dt, 1e-6, 1e-7);
    }
    let (x, y) = (tape.leaf(t(&[6], &BCE_X)), tape.leaf(t(&[6], &BCE_T)));
    let l = x.bce_with_logits(y, Reduction::Sum);
    let grads = tape.backward(l);
    assert_close("bce", &l.value().to_vec(), &BCE, 1e-6, 0.0);
    assert_close("bce dx", &grads.wrt(x).to_vec(), &BCE_DX, 1e-6, 1e-7);
    assert_close("bce dt", &grads.wrt(y).to_vec(), &BCE_DT, 1e-6, 0.0);
}
