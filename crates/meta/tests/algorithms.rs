//! The meta-learning algorithms against their definitions: MAML's meta-gradient against finite
//! differences of the whole inner-and-outer procedure, first-order MAML against the gradient at
//! the adapted parameters, Reptile against one SGD step, Meta-SGD with frozen rates against
//! MAML, and a short sinusoid run that must learn.
//!
//! Finite differences: central, in f32, over the step actually taken (`(θ_j + h) − (θ_j − h)`
//! as rounded), of the procedure computed eagerly ([`tapestry_meta::adapt`]: the inner steps on
//! a copy of the store, then the query loss), one parameter element at a time. The error is
//! `max_i |g_i − fd_i| / max_i |fd_i|`; at h = 3e-3 it measures 5e-5 to 2e-4 here, so the
//! tolerance is 1e-3, and the test checks that it rejects the gradient scaled by 1.01.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::Tape;
use tapestry_meta::task::loss;
use tapestry_meta::{
    adapt, learning_rates, outer_gradient, Algorithm, InnerOptimizer, InnerRate, MetaConfig,
    MetaLearner, Sinusoid, Task, TaskSampler,
};
use tapestry_nn::{Linear, Module, Params, Relu, Sequential, Tanh};

const H: f32 = 3e-3;
const TOLERANCE: f64 = 1e-3;
/// Large enough that adaptation matters and the second-order term is far above the tolerance.
const INNER_LR: f32 = 0.05;

fn mlp(seed: u64, width: usize, smooth: bool) -> (Sequential, Params) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut params = Params::new();
    let act = |s: Sequential| if smooth { s.push(Tanh) } else { s.push(Relu) };
    let net =
        act(Sequential::new().push(Linear::new(&mut params, "net.0", 1, width, &mut rng).unwrap()));
    let net = act(net.push(Linear::new(&mut params, "net.2", width, width, &mut rng).unwrap()));
    let net = net.push(Linear::new(&mut params, "net.4", width, 1, &mut rng).unwrap());
    (net, params)
}

fn task(seed: u64) -> Task {
    Sinusoid::maml(5).sample(&mut ChaCha8Rng::seed_from_u64(seed))
}

fn config(algorithm: Algorithm, steps: usize) -> MetaConfig {
    MetaConfig { algorithm, inner_steps: steps, inner_lr: INNER_LR, ..MetaConfig::default() }
}

/// The query loss after `steps` eager inner steps from `params`.
fn procedure(
    net: &Sequential,
    params: &Params,
    rate: InnerRate<'_>,
    t: &Task,
    steps: usize,
) -> f64 {
    adapt(net, params, rate, t, steps).unwrap().query_losses[steps]
}

/// Central differences of the procedure in every element of `of` (the parameters, or with
/// `rates` the rates), in registration order.
fn finite_differences(
    net: &Sequential,
    params: &Params,
    rates: Option<&Params>,
    t: &Task,
    steps: usize,
) -> Vec<f32> {
    let target = rates.unwrap_or(params);
    let mut out = Vec::new();
    for id in target.ids() {
        for j in 0..target.get(id).len() {
            let (mut plus, mut minus) = (target.clone(), target.clone());
            let hi = plus.update(id, |v| {
                v[j] += H;
                v[j]
            });
            let lo = minus.update(id, |v| {
                v[j] -= H;
                v[j]
            });
            let run = |p: &Params| match rates {
                None => procedure(net, p, InnerRate::Scalar(INNER_LR), t, steps),
                Some(_) => procedure(net, params, InnerRate::PerElement(p), t, steps),
            };
            out.push(((run(&plus) - run(&minus)) / f64::from(hi - lo)) as f32);
        }
    }
    out
}

fn error(a: &[f32], e: &[f32]) -> f64 {
    assert_eq!(a.len(), e.len());
    let scale = e.iter().fold(0.0_f64, |m, &v| m.max(f64::from(v.abs())));
    let worst = a.iter().zip(e).fold(0.0_f64, |m, (&a, &e)| m.max(f64::from((a - e).abs())));
    worst / scale
}

#[test]
fn maml_matches_finite_differences_of_the_procedure_and_is_not_first_order() {
    let (net, params) = mlp(0, 8, true);
    for steps in 1..=3 {
        let t = task(steps as u64);
        let maml = outer_gradient(&net, &params, None, &t, &config(Algorithm::Maml, steps));
        let first = outer_gradient(&net, &params, None, &t, &config(Algorithm::FoMaml, steps));
        let (maml, first) = (maml.params.flatten_all(), first.params.flatten_all());
        let fd = finite_differences(&net, &params, None, &t, steps);
        let scaled: Vec<f32> = maml.iter().map(|g| 1.01 * g).collect();
        let (e, e_scaled, e_first) = (error(&maml, &fd), error(&scaled, &fd), error(&first, &fd));
        println!(
            "{steps} step(s): MAML {e:.2e}, MAML x 1.01 {e_scaled:.2e}, first order {e_first:.2e}"
        );
        assert!(e < TOLERANCE, "{steps} step(s): MAML off finite differences by {e}");
        assert!(e_scaled > TOLERANCE, "the tolerance misses a 1% error ({e_scaled})");
        assert!(e_first > 10.0 * TOLERANCE, "first order within {e_first} of the procedure");
    }
}

#[test]
fn first_order_maml_is_the_query_gradient_at_the_adapted_parameters() {
    let (net, params) = mlp(1, 8, true);
    for steps in 1..=3 {
        let t = task(10 + steps as u64);
        let first = outer_gradient(&net, &params, None, &t, &config(Algorithm::FoMaml, steps));
        // The other way: adapt eagerly, then one eager gradient of the query loss at φ_k.
        let phi = adapt(&net, &params, InnerRate::Scalar(INNER_LR), &t, steps).unwrap().params;
        let tape = Tape::new();
        let bound = phi.bind(&tape);
        let q = loss(&net, &bound, &mut phi.buffers().clone(), &t.query);
        let at_phi = bound.grads(&tape.backward(q)).flatten_all();
        let e = error(&first.params.flatten_all(), &at_phi);
        assert!(e < 1e-5, "{steps} step(s): {e}");
        assert!(
            (first.query_after
                - adapt(&net, &params, InnerRate::Scalar(INNER_LR), &t, steps)
                    .unwrap()
                    .query_losses[steps])
                .abs()
                < 1e-6
        );
    }
}

#[test]
fn meta_sgd_with_frozen_rates_is_maml_and_its_rate_gradient_matches_finite_differences() {
    let (net, params) = mlp(2, 6, true);
    let t = task(20);
    let rates = learning_rates(&params, INNER_LR).unwrap();
    for steps in 1..=2 {
        let maml = outer_gradient(&net, &params, None, &t, &config(Algorithm::Maml, steps));
        let msgd =
            outer_gradient(&net, &params, Some(&rates), &t, &config(Algorithm::MetaSgd, steps));
        let e = error(&msgd.params.flatten_all(), &maml.params.flatten_all());
        assert!(e < 1e-6, "{steps} step(s): Meta-SGD at α everywhere vs MAML: {e}");
        let rate_grads = msgd.rates.expect("rate gradients").flatten_all();
        let fd = finite_differences(&net, &params, Some(&rates), &t, steps);
        let e = error(&rate_grads, &fd);
        assert!(e < TOLERANCE, "{steps} step(s): dL/dα off finite differences by {e}");
    }
}

#[test]
fn reptile_with_one_step_and_epsilon_one_is_one_sgd_step() {
    let (net, params) = mlp(3, 8, false);
    let t = task(30);
    let cfg = MetaConfig {
        algorithm: Algorithm::Reptile,
        inner_steps: 1,
        inner_lr: 0.02,
        meta_batch: 1,
        outer_lr: 1.0,
        reptile_inner: InnerOptimizer::Sgd,
        iterations: 10,
    };
    let mut learner = MetaLearner::new(cfg, Box::new(mlp(3, 8, false).0), params.clone()).unwrap();
    learner.step(std::slice::from_ref(&t)).unwrap();
    let sgd = adapt(&net, &params, InnerRate::Scalar(0.02), &t, 1).unwrap().params;
    for id in params.ids() {
        let (a, b) = (learner.params().get(id).as_slice(), sgd.get(id).as_slice());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-6 * y.abs().max(1.0), "{x} vs {y}");
        }
    }
}

#[test]
fn a_short_sinusoid_run_lowers_the_post_adaptation_loss_for_every_algorithm() {
    let sampler = Sinusoid::maml(10);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let test_tasks: Vec<Task> = (0..100).map(|_| sampler.sample(&mut rng)).collect();
    for algorithm in [Algorithm::Maml, Algorithm::FoMaml, Algorithm::MetaSgd, Algorithm::Reptile] {
        let (net, params) = mlp(4, 40, false);
        let cfg = MetaConfig {
            algorithm,
            inner_lr: 0.01,
            meta_batch: 10,
            outer_lr: if algorithm == Algorithm::Reptile { 0.1 } else { 1e-3 },
            inner_steps: if algorithm == Algorithm::Reptile { 5 } else { 1 },
            iterations: 400,
            ..MetaConfig::default()
        };
        let mut learner = MetaLearner::new(cfg, Box::new(net), params).unwrap();
        let score = |l: &MetaLearner| {
            let after: f64 =
                test_tasks.iter().map(|t| l.adapt(t, 1).unwrap().query_losses[1]).sum();
            after / test_tasks.len() as f64
        };
        let before = score(&learner);
        let mut train_rng = ChaCha8Rng::seed_from_u64(11);
        for _ in 0..400 {
            let batch: Vec<Task> = (0..10).map(|_| sampler.sample(&mut train_rng)).collect();
            learner.step(&batch).unwrap();
        }
        let after = score(&learner);
        println!("{}: post-adaptation query MSE {before:.3} -> {after:.3}", algorithm.name());
        assert!(after < 0.8 * before, "{}: {before} -> {after}", algorithm.name());
    }
}

#[test]
fn runs_repeat_bit_for_bit() {
    let sampler = Sinusoid::maml(5);
    let run = || {
        let (net, params) = mlp(5, 16, false);
        let mut l = MetaLearner::new(config(Algorithm::MetaSgd, 2), Box::new(net), params).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..5 {
            let batch: Vec<Task> = (0..4).map(|_| sampler.sample(&mut rng)).collect();
            l.step(&batch).unwrap();
        }
        (l.params().clone(), l.rates().unwrap().clone())
    };
    let (a, b) = (run(), run());
    for id in a.0.ids() {
        assert_eq!(a.0.get(id).as_slice(), b.0.get(id).as_slice());
    }
    for id in a.1.ids() {
        assert_eq!(a.1.get(id).as_slice(), b.1.get(id).as_slice());
    }
}

#[test]
fn bad_settings_are_one_sentence() {
    let (net, params) = mlp(6, 4, false);
    let err = MetaLearner::new(config(Algorithm::Maml, 0), Box::new(net), params).unwrap_err();
    assert!(err.to_string().contains("at least one inner step"), "{err}");
    let err = Sinusoid::reptile(51).validate().unwrap_err().to_string();
    assert!(err.contains("more than the 50 points"), "{err}");
    let labels = [0, 0, 1, 1];
    let err =
        tapestry_meta::Episodes::new(&[0.0; 4], &[1], &labels, &[0, 1], (3, 1, 1)).unwrap_err();
    assert!(err.to_string().contains("N = 3 classes per episode, but only 2"), "{err}");
    let err =
        tapestry_meta::Episodes::new(&[0.0; 4], &[1], &labels, &[0, 1], (2, 2, 1)).unwrap_err();
    assert!(err.to_string().contains("class 0 has 2 examples, fewer than K + Q = 3"), "{err}");
    let _ = Module::params(&mlp(0, 2, true).0);
}
