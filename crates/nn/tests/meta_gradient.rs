//! The MAML meta-gradient through recorded inner steps, checked against finite differences of
//! the whole inner-and-outer procedure, and told apart from its first-order approximation.
//!
//! A 1-8-8-1 tanh MLP (`Linear` layers, 97 parameters) adapts to a sinusoid on 5 support points
//! with K = 1, 2, 3 steps of SGD, `θ_{k+1} = θ_k − α·∇L_support(θ_k)`, and is scored on 5 other
//! query points. The meta-gradient `d L_query(θ_K) / d θ_0` runs back through every inner
//! step: each inner gradient is recorded (`Tape::grad_graph`) and the steps are recorded ops
//! (`Bound::sgd_step`), so the Hessian-vector products of the inner losses are part of it.
//!
//! **Inner learning rate.** α = 0.1: adaptation matters (the query loss falls from 1.08 to
//! 0.69 in three steps for one initialisation, from 1.44 to 0.59 for the other), and the
//! second-order term (the `−α·∇²L_support` in each step's Jacobian `I − α·∇²L_support`) moves
//! the meta-gradient by 20–40% of its largest component. With α = 0.01 it would be 3–10%.
//!
//! **Finite differences.** Central differences in f32 of the procedure computed without the
//! recorded backward (eager gradients, the update applied to a copy of the store), one
//! parameter at a time, over the step actually taken in f32 (`(θ_j + h) − (θ_j − h)` as
//! rounded). The error measure is `max_i |g_i − fd_i| / max_i |fd_i|`. Measured on these
//! models: at h = 1e-3 it is about 2e-4 (rounding of the losses, ~1e-7, over 2h), at h = 1e-2
//! about 1e-4 to 3e-4 (truncation, growing as h²), at h = 3e-3 between 5e-5 and 1e-4: that is
//! the step used. The tolerance 1e-3 is ten times the worst measured error, and a tenth of
//! the error of a gradient scaled by 1.01 (about 1e-2), which the test checks it rejects.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::{Tape, Tensor, Var};
use tapestry_nn::{losses, Bound, Ctx, Linear, Module, Params, Sequential, Tanh};

/// The inner (adaptation) learning rate α.
const INNER_LR: f32 = 0.1;
/// The finite-difference step.
const H: f32 = 3e-3;
/// The largest accepted `max_i |g_i − fd_i| / max_i |fd_i|`.
const TOLERANCE: f64 = 1e-3;

/// A model, its initial parameters θ_0, and one task's support and query sets.
struct Problem {
    net: Sequential,
    params: Params,
    support: (Tensor, Tensor),
    query: (Tensor, Tensor),
}

/// `(x, 1.5·sin(x + 0.7))` as two `[n, 1]` tensors.
fn sinusoid(xs: &[f32]) -> (Tensor, Tensor) {
    let ys = xs.iter().map(|&x| (1.5 * (f64::from(x) + 0.7).sin()) as f32).collect();
    let n = xs.len();
    (Tensor::from_vec(&[n, 1], xs.to_vec()).unwrap(), Tensor::from_vec(&[n, 1], ys).unwrap())
}

fn problem(seed: u64) -> Problem {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut params = Params::new();
    let net = Sequential::new()
        .push(Linear::new(&mut params, "net.0", 1, 8, &mut rng).unwrap())
        .push(Tanh)
        .push(Linear::new(&mut params, "net.2", 8, 8, &mut rng).unwrap())
        .push(Tanh)
        .push(Linear::new(&mut params, "net.4", 8, 1, &mut rng).unwrap());
    assert_eq!(params.numel(), 97);
    Problem {
        net,
        params,
        support: sinusoid(&[-2.5, -1.2, -0.3, 0.8, 1.9]),
        query: sinusoid(&[-2.0, -0.7, 0.4, 1.3, 2.6]),
    }
}

/// The mean squared error of the model on `(x, y)`, with the parameters `bound`.
fn loss<'t>(p: &Problem, bound: &Bound<'t>, (x, y): &(Tensor, Tensor)) -> Var<'t> {
    let tape = bound.tape();
    let pred = p.net.forward(tape.constant(x.clone()), &mut Ctx::train(bound));
    losses::mse_loss(pred, tape.constant(y.clone()))
}

/// The inner gradients as recorded (exact MAML), or detached: constants, so the outer pass
/// treats them as fixed (first-order MAML).
#[derive(Clone, Copy, PartialEq)]
enum Inner {
    Recorded,
    Detached,
}

/// `d L_query(θ_K) / d θ_0` by autodiff, flattened in registration order; also the gradient of
/// the query loss at θ_K with respect to θ_K itself.
fn meta_gradient(p: &Problem, steps: usize, inner: Inner) -> (Vec<f32>, Vec<f32>) {
    let tape = Tape::new();
    let theta = p.params.bind(&tape);
    let mut adapted = theta.clone();
    for _ in 0..steps {
        let grads = tape.grad_graph(loss(p, &adapted, &p.support), adapted.all_vars());
        let grads = match inner {
            Inner::Recorded => grads,
            Inner::Detached => grads.iter().map(|g| g.detach()).collect(),
        };
        adapted = adapted.sgd_step(&grads, INNER_LR);
    }
    let query = loss(p, &adapted, &p.query);
    let meta = theta.grads(&tape.backward(query)).flatten_all();
    let at_adapted = adapted.grads(&tape.grad(query, adapted.all_vars())).flatten_all();
    (meta, at_adapted)
}

/// The whole procedure as a number, without the recorded backward: `steps` SGD steps on the
/// support loss from `params` (eager gradients, applied to a copy of the store), then the
/// query loss.
fn procedure(p: &Problem, params: &Params, steps: usize) -> f32 {
    let mut params = params.clone();
    for _ in 0..steps {
        let tape = Tape::new();
        let bound = params.bind(&tape);
        let grads = bound.grads(&tape.backward(loss(p, &bound, &p.support)));
        drop(bound);
        for id in params.ids() {
            let g = grads.get(id).as_slice();
            params.update(id, |v| v.iter_mut().zip(g).for_each(|(x, g)| *x -= INNER_LR * g));
        }
    }
    let tape = Tape::new();
    let value = loss(p, &params.bind_constant(&tape), &p.query).value().item();
    value
}

/// Central differences of [`procedure`] in every parameter element, in registration order.
fn finite_differences(p: &Problem, steps: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(p.params.numel());
    for id in p.params.ids() {
        for j in 0..p.params.get(id).len() {
            let (mut plus, mut minus) = (p.params.clone(), p.params.clone());
            let hi = plus.update(id, |v| {
                v[j] += H;
                v[j]
            });
            let lo = minus.update(id, |v| {
                v[j] -= H;
                v[j]
            });
            let rise =
                f64::from(procedure(p, &plus, steps)) - f64::from(procedure(p, &minus, steps));
            out.push((rise / f64::from(hi - lo)) as f32);
        }
    }
    out
}

/// `max_i |a_i − e_i| / max_i |e_i|`.
fn error(a: &[f32], e: &[f32]) -> f64 {
    assert_eq!(a.len(), e.len());
    let scale = e.iter().fold(0.0_f64, |m, &v| m.max(f64::from(v.abs())));
    let worst = a.iter().zip(e).fold(0.0_f64, |m, (&a, &e)| m.max(f64::from((a - e).abs())));
    worst / scale
}

#[test]
fn the_meta_gradient_matches_finite_differences_and_is_not_first_order() {
    for seed in [0, 1] {
        let p = problem(seed);
        for steps in 1..=3 {
            let (meta, _) = meta_gradient(&p, steps, Inner::Recorded);
            let (first_order, at_adapted) = meta_gradient(&p, steps, Inner::Detached);
            let fd = finite_differences(&p, steps);
            let scaled: Vec<f32> = meta.iter().map(|g| 1.01 * g).collect();
            let (e_meta, e_scaled, e_first) =
                (error(&meta, &fd), error(&scaled, &fd), error(&first_order, &fd));
            let gap = error(&first_order, &meta);
            println!(
                "seed {seed}, {steps} inner step(s): query loss {:.4} -> {:.4}; vs FD: \
                 meta-gradient {e_meta:.2e}, meta-gradient x 1.01 {e_scaled:.2e}, first order \
                 {e_first:.2e}; first order vs meta-gradient {gap:.2e}",
                procedure(&p, &p.params, 0),
                procedure(&p, &p.params, steps),
            );
            let at = format!("seed {seed}, {steps} step(s)");
            assert!(e_meta < TOLERANCE, "{at}: meta-gradient off finite differences by {e_meta}");
            assert!(e_scaled > TOLERANCE, "{at}: the tolerance misses a 1% error ({e_scaled})");
            // A silently first-order implementation fails: the second-order term is far above
            // the tolerance, whether measured against finite differences or the exact value.
            assert!(e_first > 10.0 * TOLERANCE, "{at}: first order within {e_first} of FD");
            assert!(gap > 10.0 * TOLERANCE, "{at}: first order within {gap} of second order");
            // First order is the gradient at the adapted parameters, inner gradients fixed:
            // the steps then pass the cotangent through unchanged.
            assert_eq!(first_order, at_adapted, "{at}");
        }
    }
}
