//! Recorded backward passes, op by op: each recorded rule gives the same first-order values as
//! the eager rule, and its own backward (the second derivative) agrees with finite differences
//! of the recorded gradient; a few smooth ops are checked to third order.

mod common;

use common::{away_from_zero, rng, uniform};
use ndarray::{ArrayD, IxDyn};
use rand::SeedableRng;
use tapestry_autodiff::gradcheck::{
    analytic_gradients, compare, gradcheck_order, gradient_of, numeric_gradients, GradcheckOptions,
    InputFn,
};
use tapestry_autodiff::{BatchNormMode, Reduction, Tape, Tensor, Var};

fn boxed<F>(f: F) -> InputFn
where
    F: for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t> + 'static,
{
    Box::new(f)
}

/// The recorded first-order gradients equal the eager ones, and the second derivatives agree
/// with finite differences of the recorded gradient.
fn check2(name: &str, f: InputFn, inputs: &[Tensor]) {
    same_first_order(name, &f, inputs);
    if let Err(e) = gradcheck_order(f, inputs, 2, &GradcheckOptions::default()) {
        panic!("{name} (second order): {e}");
    }
}

fn same_first_order(name: &str, f: &InputFn, inputs: &[Tensor]) {
    let tape = Tape::new();
    let vars: Vec<Var<'_>> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
    let y = f(&tape, &vars);
    let w = tape.constant(uniform(&mut rng(99), &y.shape(), 0.5, 1.5));
    let loss = (y * w).sum_all();
    let eager = tape.grad(loss, &vars);
    let recorded = tape.grad_graph(loss, &vars);
    for (i, (v, r)) in vars.iter().zip(&recorded).enumerate() {
        let (e, r) = (eager.wrt(*v), r.value());
        assert_eq!(e.shape(), r.shape(), "{name}: gradient {i} shape");
        let scale = e.as_slice().iter().fold(1e-6f32, |m, x| m.max(x.abs()));
        for (k, (a, b)) in e.as_slice().iter().zip(r.as_slice()).enumerate() {
            assert!(
                (a - b).abs() <= 2e-5 * scale + 1e-5 * a.abs(),
                "{name}: eager and recorded gradients differ at input {i}[{k}]: {a} vs {b}"
            );
        }
    }
}

#[test]
fn elementwise_second_order() {
    let mut r = rng(11);
    let a = away_from_zero(&mut r, &[3, 4], 0.5, 2.0);
    let b = away_from_zero(&mut r, &[4], 0.5, 2.0);
    let pos = uniform(&mut r, &[3, 4], 0.5, 2.5);
    let ab = [a.clone(), b.clone()];
    check2("add", boxed(|_, v| (v[0] + v[1]).tanh()), &ab);
    check2("sub", boxed(|_, v| (v[0] - v[1]).tanh()), &ab);
    check2("mul", boxed(|_, v| v[0] * v[1] * v[0]), &ab);
    check2("div", boxed(|_, v| v[0] / v[1]), &ab);
    check2("neg", boxed(|_, v| (-v[0]).exp()), std::slice::from_ref(&a));
    check2("add_scalar", boxed(|_, v| (v[0] + 1.5).tanh()), std::slice::from_ref(&a));
    check2("mul_scalar", boxed(|_, v| (v[0] * -0.7).tanh()), std::slice::from_ref(&a));
    check2("pow_scalar", boxed(|_, v| v[0].pow_scalar(2.7)), std::slice::from_ref(&pos));
    check2("pow_scalar 3", boxed(|_, v| v[0].pow_scalar(3.0)), std::slice::from_ref(&a));
    check2("exp", boxed(|_, v| v[0].exp()), std::slice::from_ref(&a));
    check2("log", boxed(|_, v| v[0].log()), std::slice::from_ref(&pos));
    check2("sqrt", boxed(|_, v| v[0].sqrt()), std::slice::from_ref(&pos));
    check2("abs", boxed(|_, v| v[0].abs() * v[0]), std::slice::from_ref(&a));
    let c = a.map(|x| if (x.abs() - 1.0).abs() < 0.1 { x * 1.3 } else { x });
    check2("clamp", boxed(|_, v| v[0].clamp(-1.0, 1.0) * v[0]), &[c]);
    let m = a.map(|x| x + 0.37);
    check2("maximum", boxed(|_, v| v[0].maximum(v[1]) * v[0]), &[a.clone(), m.clone()]);
    check2("minimum", boxed(|_, v| v[0].minimum(v[1]) * v[1]), &[a, m]);
}

#[test]
fn activations_second_order() {
    let mut r = rng(12);
    let x = away_from_zero(&mut r, &[3, 5], 0.2, 2.5);
    let one = std::slice::from_ref(&x);
    check2("relu", boxed(|_, v| v[0].relu() * v[0]), one);
    check2("leaky_relu", boxed(|_, v| v[0].leaky_relu(0.1) * v[0]), one);
    check2("sigmoid", boxed(|_, v| v[0].sigmoid()), one);
    check2("tanh", boxed(|_, v| v[0].tanh()), one);
    check2("gelu", boxed(|_, v| v[0].gelu()), one);
    check2("gelu_tanh", boxed(|_, v| v[0].gelu_tanh()), one);
    check2("normal_cdf", boxed(|_, v| v[0].normal_cdf()), one);
    check2("softplus", boxed(|_, v| v[0].softplus_with(2.0, 3.0)), one);
}

#[test]
fn reductions_second_order() {
    let mut r = rng(13);
    let x = away_from_zero(&mut r, &[2, 3, 4], 0.2, 2.0);
    let one = std::slice::from_ref(&x);
    check2("sum", boxed(|_, v| v[0].sum(&[0, 2], false).tanh()), one);
    check2("sum keepdim", boxed(|_, v| (v[0].sum(&[1], true) * v[0]).tanh()), one);
    check2("mean", boxed(|_, v| v[0].mean(&[2], false).exp()), one);
    // Values 0.1 apart, so no lane has a near-tie within the finite-difference step.
    let distinct =
        Tensor::from_vec(&[2, 3, 4], (0..24).map(|i| ((i * 7) % 24) as f32 * 0.1 - 1.2).collect());
    check2("max", boxed(|_, v| v[0].max(&[1], false).pow_scalar(2.0)), &[distinct.unwrap()]);
    check2("logsumexp", boxed(|_, v| v[0].logsumexp(&[0, 2], true)), one);
    check2("var", boxed(|_, v| v[0].var(&[2], true, false)), one);
    check2("var biased", boxed(|_, v| v[0].var(&[0, 1], false, true)), one);
}

#[test]
fn shape_ops_second_order() {
    let mut r = rng(14);
    let x = away_from_zero(&mut r, &[2, 3, 4], 0.2, 2.0);
    let y = away_from_zero(&mut r, &[2, 2, 4], 0.2, 2.0);
    let one = std::slice::from_ref(&x);
    check2("reshape", boxed(|_, v| v[0].reshape(&[6, 4]).tanh() * v[0].reshape(&[6, 4])), one);
    check2("permute", boxed(|_, v| v[0].permute(&[2, 0, 1]).pow_scalar(3.0)), one);
    check2("transpose", boxed(|_, v| v[0].transpose(0, 2).tanh()), one);
    check2("broadcast_to", boxed(|_, v| v[0].broadcast_to(&[3, 2, 3, 4]).pow_scalar(3.0)), one);
    check2("narrow", boxed(|_, v| v[0].narrow(1, 1, 2).pow_scalar(3.0)), one);
    check2("slice", boxed(|_, v| v[0].slice(2, 0, 4, 3).pow_scalar(3.0)), one);
    check2("concat", boxed(|_, v| Var::concat(&[v[0], v[1]], 1).pow_scalar(3.0)), &[x.clone(), y]);
    check2("stack", boxed(|_, v| Var::stack(&[v[0], v[0].tanh()], 1).pow_scalar(3.0)), one);
    check2("index_select", boxed(|_, v| v[0].index_select(1, &[2, 0, 2]).pow_scalar(3.0)), one);
    let index =
        ArrayD::from_shape_vec(IxDyn(&[2, 2, 4]), (0..16).map(|i| (i * 7) % 3).collect()).unwrap();
    check2("gather", boxed(move |_, v| v[0].gather(1, &index).pow_scalar(3.0)), one);
}

#[test]
fn matmul_second_order() {
    let mut r = rng(15);
    // Square operands: a missing transpose would give wrong values, not only a shape panic.
    let a = uniform(&mut r, &[3, 3], -1.0, 1.0);
    let b = uniform(&mut r, &[3, 3], -1.0, 1.0);
    check2("matmul", boxed(|_, v| v[0].matmul(v[1]).tanh()), &[a, b]);
    let batched = uniform(&mut r, &[2, 3, 4], -1.0, 1.0);
    let shared = uniform(&mut r, &[4, 2], -1.0, 1.0);
    check2("matmul batched", boxed(|_, v| v[0].matmul(v[1]).tanh()), &[batched.clone(), shared]);
    let w = uniform(&mut r, &[4, 4], -1.0, 1.0);
    let bias = uniform(&mut r, &[4], -1.0, 1.0);
    let x = uniform(&mut r, &[2, 3, 4], -1.0, 1.0);
    check2("linear", boxed(|_, v| v[0].linear(v[1], Some(v[2])).tanh()), &[x, w, bias]);
}

#[test]
fn conv_and_pool_second_order() {
    let mut r = rng(16);
    let x = uniform(&mut r, &[2, 2, 5, 6], -1.0, 1.0);
    let w = uniform(&mut r, &[3, 2, 3, 2], -0.5, 0.5);
    let b = uniform(&mut r, &[3], -0.5, 0.5);
    let inputs = [x.clone(), w.clone(), b.clone()];
    for (stride, padding, dilation) in [((1, 1), (1, 0), (1, 1)), ((2, 1), (1, 1), (1, 2))] {
        let f = boxed(move |_, v| v[0].conv2d(v[1], Some(v[2]), stride, padding, dilation).tanh());
        check2("conv2d", f, &inputs);
    }
    // Distinct values so that no window has a tie within the finite-difference step.
    let distinct = Tensor::from_vec(
        &[1, 2, 4, 5],
        (0..40).map(|i| ((i * 17) % 40) as f32 * 0.05 - 1.0).collect(),
    )
    .unwrap();
    check2(
        "max_pool2d",
        boxed(|_, v| v[0].max_pool2d((2, 2), (2, 1), (0, 0)).pow_scalar(3.0)),
        std::slice::from_ref(&distinct),
    );
    check2(
        "avg_pool2d",
        boxed(|_, v| v[0].avg_pool2d((3, 2), (2, 2), (1, 1)).pow_scalar(3.0)),
        std::slice::from_ref(&x),
    );
    check2(
        "dropout",
        boxed(|_, v| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
            v[0].dropout(0.4, true, &mut rng).pow_scalar(3.0)
        }),
        std::slice::from_ref(&x),
    );
}

#[test]
fn softmax_and_losses_second_order() {
    let mut r = rng(17);
    let x = uniform(&mut r, &[3, 4], -2.0, 2.0);
    let t = uniform(&mut r, &[3, 4], -2.0, 2.0);
    let one = std::slice::from_ref(&x);
    check2("softmax last", boxed(|_, v| v[0].softmax(1) * v[0]), one);
    check2("softmax axis 0", boxed(|_, v| v[0].softmax(0) * v[0]), one);
    check2("log_softmax last", boxed(|_, v| v[0].log_softmax(1) * v[0]), one);
    check2("log_softmax axis 0", boxed(|_, v| v[0].log_softmax(0) * v[0]), one);
    check2(
        "cross_entropy",
        boxed(|_, v| v[0].cross_entropy(&[1, 3, 0], None, Reduction::Mean)),
        one,
    );
    let pixels = uniform(&mut r, &[2, 3, 2, 2], -2.0, 2.0);
    check2(
        "cross_entropy per pixel",
        boxed(|_, v| v[0].cross_entropy(&[0, 2, -1, 1, 1, 0, 2, -1], Some(-1), Reduction::Sum)),
        std::slice::from_ref(&pixels),
    );
    check2(
        "nll_loss",
        boxed(|_, v| v[0].log_softmax(1).nll_loss(&[2, 0, 1], None, Reduction::Sum)),
        one,
    );
    let pt = [x.clone(), t.clone()];
    check2("mse_loss", boxed(|_, v| v[0].mse_loss(v[1], Reduction::Mean)), &pt);
    check2("l1_loss", boxed(|_, v| (v[0] * v[0]).l1_loss(v[1], Reduction::Sum)), &pt);
    check2(
        "smooth_l1_loss",
        boxed(|_, v| (v[0] * v[0]).smooth_l1_loss(v[1], 1.5, Reduction::Mean)),
        &pt,
    );
    check2(
        "smooth_l1_loss beta 0",
        boxed(|_, v| (v[0] * v[0]).smooth_l1_loss(v[1], 0.0, Reduction::Sum)),
        &pt,
    );
    let probs = uniform(&mut r, &[3, 4], 0.1, 0.9);
    check2(
        "bce_with_logits",
        boxed(|_, v| (v[0] * v[1]).bce_with_logits(v[1], Reduction::Mean)),
        &[x, probs],
    );
}

#[test]
fn norms_second_order() {
    let mut r = rng(18);
    let x = uniform(&mut r, &[3, 2, 2, 2], -1.5, 1.5);
    let gamma = uniform(&mut r, &[2], 0.5, 1.5);
    let beta = uniform(&mut r, &[2], -0.5, 0.5);
    let inputs = [x.clone(), gamma, beta];
    check2(
        "batch_norm train",
        boxed(|_, v| {
            let (y, _) = v[0].batch_norm(Some(v[1]), Some(v[2]), BatchNormMode::Train, 1e-5);
            y.tanh()
        }),
        &inputs,
    );
    check2(
        "batch_norm eval",
        boxed(|_, v| {
            let mean = Tensor::from(vec![0.1, -0.2]);
            let var = Tensor::from(vec![0.8, 1.3]);
            let mode = BatchNormMode::Eval { running_mean: &mean, running_var: &var };
            v[0].batch_norm(Some(v[1]), Some(v[2]), mode, 1e-5).0.tanh()
        }),
        &inputs,
    );
    let rows = uniform(&mut r, &[3, 2, 4], -1.5, 1.5);
    let g = uniform(&mut r, &[2, 4], 0.5, 1.5);
    let b = uniform(&mut r, &[2, 4], -0.5, 0.5);
    check2(
        "layer_norm",
        boxed(|_, v| v[0].layer_norm(&[2, 4], Some(v[1]), Some(v[2]), 1e-5).tanh()),
        &[rows, g, b],
    );
}

#[test]
fn third_order_on_smooth_ops() {
    let mut r = rng(19);
    let x = uniform(&mut r, &[2, 3], -1.0, 1.0);
    let w = uniform(&mut r, &[3, 3], -1.0, 1.0);
    let away = away_from_zero(&mut r, &[2, 3], 0.2, 1.0);
    let opts = GradcheckOptions::default();
    let one = std::slice::from_ref(&x);
    let cases: Vec<(&str, InputFn, Vec<Tensor>)> = vec![
        ("tanh", boxed(|_, v| v[0].tanh()), one.to_vec()),
        // relu's recorded rule is an op of its own (relu_grad); its rule runs at third order.
        ("relu", boxed(|_, v| v[0].relu() * v[0] * v[0]), vec![away]),
        ("exp", boxed(|_, v| (v[0] * 0.5).exp()), one.to_vec()),
        ("softmax", boxed(|_, v| v[0].softmax(1) * v[0]), one.to_vec()),
        ("matmul chain", boxed(|_, v| v[0].matmul(v[1]).tanh().matmul(v[1])), vec![x.clone(), w]),
    ];
    for (name, f, inputs) in cases {
        if let Err(e) = gradcheck_order(f, &inputs, 3, &opts) {
            panic!("{name} (third order): {e}");
        }
    }
}

#[test]
fn the_second_order_check_catches_a_one_percent_error() {
    let mut r = rng(20);
    let x = uniform(&mut r, &[2, 3], -1.0, 1.0);
    let w = uniform(&mut r, &[3, 3], -1.0, 1.0);
    let opts = GradcheckOptions::default();
    for f in [
        gradient_of(|_, v: &[Var<'_>]| v[0].matmul(v[1]).tanh(), 1),
        gradient_of(|_, v: &[Var<'_>]| v[0].softmax(1) * v[1].narrow(0, 0, 2), 1),
    ] {
        let inputs = [x.clone(), w.clone()];
        let analytic = analytic_gradients(&f, &inputs, &opts);
        let numeric = numeric_gradients(&f, &inputs, &opts);
        compare(&analytic, &numeric, &opts).expect("the correct second derivative passes");
        let wrong: Vec<Tensor> = analytic.iter().map(|t| t.map(|v| v * 1.01)).collect();
        assert!(compare(&wrong, &numeric, &opts).is_err(), "a 1% error went unnoticed");
    }
}

#[test]
fn recorded_gradient_of_an_unrelated_value_is_a_constant_zero() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from(vec![1.0, 2.0]));
    let unused = tape.leaf(Tensor::from(vec![3.0, 4.0, 5.0]));
    let g = tape.grad_graph((x * x).sum_all(), &[x, unused]);
    assert_eq!(g[1].value().to_vec(), vec![0.0; 3]);
    assert!(!g[1].requires_grad());
    // A linear function's gradient is a constant: its derivative is zero, not an error.
    let lin = tape.grad_graph((x * 3.0).sum_all(), &[x])[0];
    assert_eq!(tape.grad(lin.sum_all(), &[x]).wrt(x).to_vec(), vec![0.0, 0.0]);
}

#[test]
#[should_panic(expected = "backward root must be a scalar, got shape [2]")]
fn a_non_scalar_root_without_a_seed_names_its_shape() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from(vec![1.0, 2.0]));
    tape.grad_graph(x * x, &[x]);
}

#[test]
#[should_panic(expected = "vjp seed of shape [3] does not match the output's shape [2]")]
fn a_seed_of_the_wrong_shape_is_refused() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from(vec![1.0, 2.0]));
    tape.vjp(x * x, &Tensor::from(vec![1.0, 1.0, 1.0]), &[x]);
}

#[test]
fn combining_two_tapes_names_both_values() {
    let (t1, t2) = (Tape::new(), Tape::new());
    let a = t1.leaf(Tensor::from(vec![1.0]));
    let b = t2.leaf(Tensor::from(vec![1.0, 2.0]));
    let msg = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a + b))
        .err()
        .and_then(|e| e.downcast_ref::<String>().cloned())
        .expect("combining two tapes panics");
    assert!(msg.contains("Var(%0 [1])") && msg.contains("Var(%0 [2])"), "{msg}");
}

#[test]
fn vjp_batched_equals_one_vjp_per_seed() {
    let mut r = rng(21);
    let tape = Tape::new();
    let x = tape.leaf(uniform(&mut r, &[2, 2, 4, 4], -1.0, 1.0));
    let w = tape.leaf(uniform(&mut r, &[3, 2, 3, 3], -0.5, 0.5));
    let z = x.conv2d(w, None, (1, 1), (1, 1), (1, 1)).relu().max_pool2d((2, 2), (2, 2), (0, 0));
    let seeds = uniform(&mut r, &[3, 2, 3, 2, 2], -1.0, 1.0);
    let batched = tape.vjp_batched(z, &seeds, &[x, w]);
    for t in 0..3 {
        let seed = Tensor::from_vec(&z.shape(), seeds.as_slice()[t * 24..(t + 1) * 24].to_vec());
        let one = tape.vjp(z, &seed.unwrap(), &[x, w]);
        for v in [x, w] {
            let (a, b) = (batched.get(t, v).unwrap(), one.wrt(v));
            assert!(a.max_abs_diff(&b).unwrap() < 1e-5, "task {t}");
        }
    }
}

#[test]
fn hessian_of_a_two_layer_net_is_symmetric_and_matches_hvp() {
    let mut r = rng(22);
    let tape = Tape::new();
    let x = tape.constant(uniform(&mut r, &[4, 3], -1.0, 1.0));
    let w1 = tape.leaf(uniform(&mut r, &[2, 3], -1.0, 1.0));
    let w2 = tape.constant(uniform(&mut r, &[1, 2], -1.0, 1.0));
    let loss = x.linear(w1, None).tanh().linear(w2, None).pow_scalar(2.0).mean_all();
    let h = tape.hessian(loss, w1);
    assert_eq!(h.shape(), [6, 6]);
    for i in 0..6 {
        for j in 0..6 {
            let (a, b) = (h.as_slice()[i * 6 + j], h.as_slice()[j * 6 + i]);
            assert!((a - b).abs() < 1e-5, "H[{i},{j}] = {a}, H[{j},{i}] = {b}");
        }
    }
    let v = uniform(&mut r, &[2, 3], -1.0, 1.0);
    let hv = tape.hvp(loss, &[w1], std::slice::from_ref(&v));
    for i in 0..6 {
        let want: f32 = (0..6).map(|j| h.as_slice()[i * 6 + j] * v.as_slice()[j]).sum();
        assert!((hv[0].as_slice()[i] - want).abs() < 1e-5, "(Hv)[{i}]");
    }
    // The Hessian against finite differences of the gradient.
    let grad_at = |w: &Tensor| {
        let t = Tape::new();
        let (xc, wl, w2c) = (t.constant(x.value()), t.leaf(w.clone()), t.constant(w2.value()));
        let l = xc.linear(wl, None).tanh().linear(w2c, None).pow_scalar(2.0).mean_all();
        t.backward(l).wrt(wl)
    };
    let w0 = w1.value();
    for j in 0..6 {
        let h_step = 1e-2f32;
        let mut plus = w0.to_vec();
        let mut minus = w0.to_vec();
        plus[j] += h_step;
        minus[j] -= h_step;
        let gp = grad_at(&Tensor::from_vec(&[2, 3], plus).unwrap());
        let gm = grad_at(&Tensor::from_vec(&[2, 3], minus).unwrap());
        for i in 0..6 {
            let fd = (gp.as_slice()[i] - gm.as_slice()[i]) / (2.0 * h_step);
            let a = h.as_slice()[i * 6 + j];
            assert!(
                (a - fd).abs() < 2e-3 * (1.0 + a.abs()),
                "H[{i},{j}] = {a}, finite difference {fd}"
            );
        }
    }
}

#[test]
fn clamp_passes_no_gradient_at_a_bound_like_pytorch() {
    // torch 2.15: x = tensor([-1., 0., 1.], requires_grad=True); x.clamp(-1, 1).sum().backward()
    // gives x.grad = [0., 1., 0.].
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from(vec![-1.0, 0.0, 1.0]));
    let y = x.clamp(-1.0, 1.0).sum_all();
    assert_eq!(tape.backward(y).wrt(x).to_vec(), vec![0.0, 1.0, 0.0]);
    assert_eq!(tape.grad_graph(y, &[x])[0].value().to_vec(), vec![0.0, 1.0, 0.0]);
}

#[test]
fn a_pass_over_a_recorded_gradient_walks_only_what_leads_to_its_targets() {
    // The same recorded gradient, with and without a long chain that feeds the root but does not
    // depend on the target: the second pass runs the same rules either way (a pass that walked
    // everything below its root would run 2000 more).
    let rules = |unrelated: usize| {
        let tape = Tape::new();
        let x = tape.leaf(Tensor::from(vec![0.3, -0.2, 0.5]));
        let w = tape.leaf(Tensor::from_vec(&[3, 3], vec![0.1; 9]).unwrap());
        let y = x.reshape(&[1, 3]).matmul(w).tanh().sum_all();
        let g = tape.grad_graph(y, &[w])[0];
        let other = tape.leaf(Tensor::from(vec![1.0]));
        let mut z = other;
        for _ in 0..unrelated {
            z = (z * 1.0001).tanh();
        }
        let second = tape.grad((g * g).sum_all() + z.sum_all(), &[x]);
        (second.rules_run(), second.wrt(x).to_vec())
    };
    let (short, a) = rules(0);
    let (long, b) = rules(2000);
    assert_eq!(short, long);
    assert_eq!(a, b);
}
