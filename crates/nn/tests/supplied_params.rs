//! Modules run on parameter values the caller supplies (`Bound::from_vars`, `Bound::sgd_step`):
//! the same outputs as a store holding those values, gradients through the supplied values back
//! to what they were computed from, and the checks on count, shape and tape.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::{Tape, Tensor, Var};
use tapestry_nn::{
    losses, Bound, Conv2d, Ctx, Flatten, LayerNorm, Linear, Module, NnError, Params, Sequential,
    Tanh,
};

/// Conv 1→2 (k3 p1) → tanh → flatten → LayerNorm(32) → linear 32→3: one of each kind of
/// parameterised layer that reads its parameters through the binding.
fn model(params: &mut Params) -> Sequential {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    Sequential::new()
        .push(Conv2d::new(params, "conv", 1, 2, (3, 3), &mut rng).unwrap().padding((1, 1)))
        .push(Tanh)
        .push(Flatten)
        .push(LayerNorm::new(params, "norm", &[32]).unwrap())
        .push(Linear::new(params, "fc", 32, 3, &mut rng).unwrap())
}

fn input() -> Tensor {
    Tensor::from_vec(&[2, 1, 4, 4], (0..32).map(|i| (0.37 * i as f32).sin()).collect()).unwrap()
}

/// Every parameter of `params` mapped by `f`.
fn mapped(params: &Params, f: impl Fn(f32) -> f32) -> Params {
    let mut out = params.clone();
    for id in params.ids() {
        out.update(id, |v| v.iter_mut().for_each(|x| *x = f(*x)));
    }
    out
}

fn forward<'t>(net: &Sequential, bound: &Bound<'t>, x: Var<'t>) -> Var<'t> {
    net.forward(x, &mut Ctx::train(bound))
}

#[test]
fn a_module_on_supplied_values_computes_what_a_store_holding_them_computes() {
    let mut params = Params::new();
    let net = model(&mut params);
    let other = mapped(&params, |v| 0.9 * v + 0.01);
    let tape = Tape::new();
    let x = tape.constant(input());
    let reference = forward(&net, &other.bind(&tape), x).value();
    // The values of `other`, supplied for the parameters of `params`: as constants, as leaves,
    // and as the result of an op on the tape.
    let constants = other.iter().map(|(_, _, v)| tape.constant(v.clone())).collect();
    let leaves: Vec<Var<'_>> = other.iter().map(|(_, _, v)| tape.leaf(v.clone())).collect();
    let theta = params.bind(&tape);
    let computed =
        (theta.all_vars().iter()).map(|&p| p.mul_scalar(0.9).add_scalar(0.01)).collect::<Vec<_>>();
    for (what, vars) in [("constants", constants), ("leaves", leaves.clone()), ("ops", computed)] {
        let bound = Bound::from_vars(&params, vars).unwrap();
        assert_eq!(bound.len(), params.len());
        let out = forward(&net, &bound, x).value();
        if what == "ops" {
            // 0.9·v + 0.01 on the kernels may round differently from the scalar map above.
            let diff = out.max_abs_diff(&reference).unwrap();
            assert!(diff < 1e-5, "{what}: off by {diff}");
        } else {
            assert_eq!(out, reference, "{what}");
        }
    }
    // The leaves supplied get the gradients, keyed by parameter as for a plain binding.
    let bound = Bound::from_vars(&params, leaves).unwrap();
    let loss = forward(&net, &bound, x).pow_scalar(2.0).sum_all();
    let expected = other.bind(&tape);
    let expected_loss = forward(&net, &expected, x).pow_scalar(2.0).sum_all();
    let (got, want) =
        (bound.grads(&tape.backward(loss)), expected.grads(&tape.backward(expected_loss)));
    for id in params.ids() {
        assert_eq!(got.get(id), want.get(id), "{}", params.name(id));
    }
}

#[test]
fn sgd_step_records_theta_minus_lr_g_and_differentiates_through_it() {
    // f(θ) = Σ θ³/3 (∇f = θ², ∇²f = diag(2θ)), one step θ' = θ − lr·θ², query q(θ') = Σ θ'²/2:
    //   dq/dθ = θ'·(1 − 2·lr·θ)   (the exact meta-gradient)
    //   θ'                       (first order: the inner gradient held constant)
    let theta0 = [0.5_f32, -1.0, 2.0];
    let lr = 0.1_f32;
    let mut params = Params::new();
    let id = params.add("theta", Tensor::from(theta0.to_vec())).unwrap();
    let tape = Tape::new();
    let theta = params.bind(&tape);
    let t = theta.var(id);
    let inner = tape.grad_graph((t * t * t).sum_all().mul_scalar(1.0 / 3.0), theta.all_vars());
    let adapted = theta.sgd_step(&inner, lr);
    let stepped: Vec<f32> = theta0.iter().map(|v| v - lr * (v * v)).collect();
    let value = adapted.var(id).value().to_vec();
    for (a, e) in value.iter().zip(&stepped) {
        assert!((a - e).abs() <= 1e-6 * e.abs().max(1.0), "{value:?} vs {stepped:?}");
    }
    fn query<'t>(b: &Bound<'t>) -> Var<'t> {
        let v = b.all_vars()[0];
        (v * v).sum_all().mul_scalar(0.5)
    }
    let meta = theta.grads(&tape.backward(query(&adapted)));
    let first = theta.sgd_step(&[inner[0].detach()], lr);
    let first_order = theta.grads(&tape.backward(query(&first)));
    for (i, &v) in theta0.iter().enumerate() {
        let exact = (v - lr * v * v) * (1.0 - 2.0 * lr * v);
        let got = meta.get(id).as_slice()[i];
        assert!((got - exact).abs() < 1e-6, "meta-gradient[{i}]: {got} vs {exact}");
        let fo = first_order.get(id).as_slice()[i];
        assert!((fo - (v - lr * v * v)).abs() < 1e-6, "first order[{i}]: {fo}");
    }
    // The adapted values are not leaves: `grads` after `backward` sees none of them, while
    // `Tape::grad` names them.
    let at_adapted = adapted.grads(&tape.backward(query(&adapted)));
    assert_eq!(at_adapted.get(id).to_vec(), vec![0.0; 3]);
    let q = query(&adapted);
    let named = adapted.grads(&tape.grad(q, adapted.all_vars()));
    assert_eq!(named.get(id).to_vec(), value, "dq/dθ' = θ'");
}

#[test]
fn a_wrong_number_of_values_is_refused() {
    let mut params = Params::new();
    let _net = model(&mut params);
    let tape = Tape::new();
    let vars = params.bind(&tape).all_vars().to_vec();
    let n = params.len();
    let few = Bound::from_vars(&params, vars[..n - 1].to_vec()).unwrap_err();
    assert!(matches!(few, NnError::Invalid(_)), "{few:?}");
    let message = few.to_string();
    assert!(
        message.contains(&format!("{} values for a store of {n} parameters", n - 1)),
        "{message}"
    );
    let mut many = vars.clone();
    many.push(vars[0]);
    let err = Bound::from_vars(&params, many).unwrap_err();
    assert!(err.to_string().contains(&format!("{} values for a store of {n}", n + 1)), "{err}");
    // An empty store takes no values.
    let empty = Bound::from_vars(&Params::new(), Vec::new()).unwrap();
    assert!(empty.is_empty());
    assert!(Bound::from_vars(&Params::new(), vec![vars[0]]).is_err());
}

#[test]
fn a_value_of_the_wrong_shape_is_refused_naming_the_parameter() {
    let mut params = Params::new();
    let _net = model(&mut params);
    let tape = Tape::new();
    let mut vars = params.bind(&tape).all_vars().to_vec();
    let id = params.id("norm.bias").unwrap();
    vars[id.index()] = tape.leaf(Tensor::zeros(&[2, 16]));
    let err = Bound::from_vars(&params, vars).unwrap_err();
    match &err {
        NnError::Shape { name, expected, found } => {
            assert_eq!(name, "norm.bias");
            assert_eq!((expected.as_slice(), found.as_slice()), (&[32][..], &[2, 16][..]));
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    assert_eq!(err.to_string(), "shape mismatch for `norm.bias`: expected [32], got [2, 16]");
    // Same number of elements, other shape: still refused (the weight is [3, 32]).
    let mut vars = params.bind(&tape).all_vars().to_vec();
    let fc = params.id("fc.weight").unwrap();
    vars[fc.index()] = vars[fc.index()].reshape(&[32, 3]);
    let err = Bound::from_vars(&params, vars).unwrap_err();
    assert!(matches!(&err, NnError::Shape { name, .. } if name == "fc.weight"), "{err:?}");
}

#[test]
fn values_on_two_tapes_are_refused_naming_the_parameter() {
    let mut params = Params::new();
    let _net = model(&mut params);
    let (tape, other) = (Tape::new(), Tape::new());
    let mut vars = params.bind(&tape).all_vars().to_vec();
    let id = params.id("fc.bias").unwrap();
    vars[id.index()] = other.leaf(params.get(id).clone());
    let err = Bound::from_vars(&params, vars).unwrap_err();
    assert!(matches!(err, NnError::Invalid(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("`fc.bias`") && message.contains("another tape"), "{message}");
}

#[test]
#[should_panic(expected = "sgd_step: 1 gradients for 2 bound parameters")]
fn sgd_step_with_a_missing_gradient_panics() {
    let mut params = Params::new();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let fc = Linear::new(&mut params, "fc", 2, 1, &mut rng).unwrap();
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let x = tape.constant(Tensor::ones(&[1, 2]));
    let loss = losses::mse_loss(fc.forward(x, &mut Ctx::train(&bound)), x.sum(&[1], true));
    let grads = tape.grad_graph(loss, bound.all_vars());
    let _ = bound.sgd_step(&grads[..1], 0.1);
}

#[test]
#[should_panic(expected = "sgd_step: parameter 1 has shape [1], its gradient [1, 2]")]
fn sgd_step_with_a_gradient_of_the_wrong_shape_panics() {
    let mut params = Params::new();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let _fc = Linear::new(&mut params, "fc", 2, 1, &mut rng).unwrap();
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let w = bound.all_vars()[0];
    let _ = bound.sgd_step(&[w, w], 0.1);
}
