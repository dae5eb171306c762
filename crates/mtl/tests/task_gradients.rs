//! Per-task gradients: the three modes agree with plain backward passes, and the weightings
//! built on them behave as documented.

mod common;

use common::{assert_same, gradnorm_gd_reference};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::{Tape, Tensor, Var};
use tapestry_mtl::task_grads::{layer_gradient_norms, GradMode, TaskGradients};
use tapestry_mtl::weighting::{
    EqualWeighting, GradNorm, GradNormalization, Mgda, MgdaUb, Needs, StepInput, Weighting,
    WeightingError,
};

fn random(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.gen_range(-0.6..0.6)).collect()).unwrap()
}

struct Net<'t> {
    shared: Vec<Var<'t>>,
    z: Var<'t>,
    losses: Vec<Var<'t>>,
}

/// The input, the shared parameters' values and the heads' values of [`net`].
fn net_values(tasks: usize, seed: u64) -> (Tensor, Vec<Tensor>, Vec<Tensor>) {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let x = random(&mut r, &[6, 5]);
    let shared = [&[8, 5][..], &[8], &[7, 8], &[7]].iter().map(|s| random(&mut r, s)).collect();
    let heads = (0..tasks).map(|_| random(&mut r, &[2, 7])).collect();
    (x, shared, heads)
}

/// Trunk of two linear layers on `x` with the given shared parameters, linear heads with
/// different losses.
fn build<'t>(tape: &'t Tape, x: &Tensor, shared: Vec<Var<'t>>, heads: &[Tensor]) -> Net<'t> {
    let x = tape.constant(x.clone());
    let zero = tape.constant(Tensor::scalar(0.0));
    let h = x.linear(shared[0], Some(shared[1])).maximum(zero);
    let z = h.linear(shared[2], Some(shared[3])).maximum(zero);
    let losses = heads
        .iter()
        .enumerate()
        .map(|(t, w)| {
            let y = z.linear(tape.leaf(w.clone()), None);
            if t % 2 == 0 {
                (y - 0.3).pow_scalar(2.0).mean_all()
            } else {
                y.exp().mean_all() * (t as f32 + 1.0)
            }
        })
        .collect();
    Net { shared, z, losses }
}

/// Trunk of two linear layers, `tasks` linear heads with different losses.
fn net(tape: &Tape, tasks: usize, seed: u64) -> Net<'_> {
    let (x, shared, heads) = net_values(tasks, seed);
    build(tape, &x, shared.into_iter().map(|v| tape.leaf(v)).collect(), &heads)
}

/// Task `t`'s loss gradient on the shared parameters, flattened, by fourth-order central
/// differences (step 1e-3, clear of the relu kinks) of the loss recomputed from scratch.
fn finite_difference_row(tasks: usize, seed: u64, t: usize) -> Vec<f64> {
    let (x, shared, heads) = net_values(tasks, seed);
    let loss_at = |values: &[Tensor]| -> f64 {
        let tape = Tape::new();
        let vars = values.iter().map(|v| tape.leaf(v.clone())).collect();
        build(&tape, &x, vars, &heads).losses[t].value().item() as f64
    };
    let mut row = vec![];
    for b in 0..shared.len() {
        for j in 0..shared[b].len() {
            let at = |delta: f32| {
                let mut values = shared.clone();
                let mut v = values[b].to_vec();
                v[j] += delta;
                values[b] = Tensor::from_vec(values[b].shape(), v).unwrap();
                loss_at(&values)
            };
            let h = 1e-3f32;
            let (p1, m1, p2, m2) = (at(h), at(-h), at(2.0 * h), at(-2.0 * h));
            row.push((8.0 * (p1 - m1) - (p2 - m2)) / (12.0 * h as f64));
        }
    }
    row
}

#[test]
fn param_and_batched_modes_agree() {
    for tasks in [2, 3, 5] {
        let tape = Tape::new();
        let n = net(&tape, tasks, 1);
        let gp = TaskGradients::compute(&tape, &n.losses, &n.shared, GradMode::Param);
        let gb = TaskGradients::compute(&tape, &n.losses, &n.shared, GradMode::Batched);
        assert_eq!((gp.tasks(), gp.dim(), gp.blocks()), (tasks, 8 * 5 + 8 + 7 * 8 + 7, 4));
        for (a, b) in gp.matrix().iter().zip(&gb.matrix()) {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1e-3), "{a} vs {b}");
        }
        // Row t is task t's gradient, in the order of the values: against finite differences
        // of that task's loss alone (an independent computation, not a backward pass).
        for t in 0..tasks {
            let want = finite_difference_row(tasks, 1, t);
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (j, (&a, &b)) in gp.row(t).iter().zip(&want).enumerate() {
                let tol = 2e-3 * b.abs() + 1e-3 * scale;
                assert!((a as f64 - b).abs() <= tol, "task {t} element {j}: {a} vs {b}");
            }
        }
        // combine = Σ w_t g_t per block, of each value's shape.
        let w = [0.5f32, 2.0, 1.0, 0.25, 3.0];
        let combined = gb.combine(&w[..tasks]);
        for (b, &v) in n.shared.iter().enumerate() {
            assert_eq!(combined[b].shape(), &v.shape()[..]);
            let mut want = vec![0.0f32; combined[b].len()];
            for (t, &l) in n.losses.iter().enumerate() {
                for (o, g) in want.iter_mut().zip(tape.backward(l).wrt(v).as_slice()) {
                    *o += w[t] * g;
                }
            }
            for (a, b) in combined[b].as_slice().iter().zip(&want) {
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1e-3), "{a} vs {b}");
            }
        }
        // The Gram matrix is the sum of the per-block Grams, and the full T x P one.
        let full = gp.matrix();
        let p = gp.dim();
        for s in 0..tasks {
            for u in 0..tasks {
                let want: f64 =
                    (0..p).map(|j| full[s * p + j] as f64 * full[u * p + j] as f64).sum();
                let blocks: f64 = (0..gp.blocks()).map(|b| gp.block_gram(b)[s * tasks + u]).sum();
                assert!((gp.gram()[s * tasks + u] - want).abs() <= 1e-9 * want.abs().max(1.0));
                assert!((blocks - want).abs() <= 1e-9 * want.abs().max(1.0));
            }
        }
        // A direction cut back into blocks gives back the row it came from.
        let parts = gp.split(&gp.row(0));
        assert_eq!(parts.iter().flat_map(|t| t.to_vec()).collect::<Vec<_>>(), gp.row(0));
    }
}

#[test]
fn blocks_on_parameters_are_keyed_by_id() {
    use rand::SeedableRng;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut params = tapestry_nn::Params::new();
    let a = params.add("trunk.a", random(&mut rng, &[3, 2])).unwrap();
    let b = params.add("trunk.b", random(&mut rng, &[4])).unwrap();
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let x = bound.var(a).sum_all() * bound.var(b).sum_all();
    let losses = [x, x * x];
    let g = TaskGradients::on_params(&tape, &losses, &bound, &[b, a], GradMode::Batched);
    assert_eq!(g.range(b), Some(0..4));
    assert_eq!(g.range(a), Some(4..10));
    assert_eq!(g.block(1).0, Some(a));
    assert_eq!(g.block(1).1.shape(), &[2, 3, 2]);
}

#[test]
fn representation_gradients_are_dl_dz() {
    let tape = Tape::new();
    let n = net(&tape, 3, 2);
    let r = TaskGradients::at(&tape, &n.losses, n.z);
    assert_eq!((r.tasks(), r.dim()), (3, 6 * 7));
    for (t, &l) in n.losses.iter().enumerate() {
        let want = tape.grad(l, &[n.z]).wrt(n.z).to_vec();
        for (a, b) in r.row(t).iter().zip(&want) {
            assert!((a - b).abs() <= 1e-6 + 1e-5 * b.abs());
        }
    }
}

#[test]
fn layer_norms_are_norms_of_each_tasks_gradient() {
    let tape = Tape::new();
    let n = net(&tape, 3, 3);
    let w = n.shared[2];
    let norms = layer_gradient_norms(&tape, &n.losses, w);
    for (t, &l) in n.losses.iter().enumerate() {
        let g = tape.backward(l).wrt(w);
        let want = g.as_slice().iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        assert!((norms[t] - want).abs() <= 1e-5 * want, "{} vs {want}", norms[t]);
    }
}

#[test]
fn mgda_direction_is_a_descent_direction_for_every_task() {
    for seed in 0..20 {
        let tape = Tape::new();
        let n = net(&tape, 4, 100 + seed);
        let g = TaskGradients::compute(&tape, &n.losses, &n.shared, GradMode::Batched);
        let losses: Vec<f64> = n.losses.iter().map(|l| l.value().item() as f64).collect();
        let input = StepInput { shared: Some(&g), ..StepInput::with_losses(&losses) };
        let out = Mgda::default().weights(&input).unwrap();
        let sum: f64 = out.weights.iter().sum();
        assert!((sum - 1.0).abs() < 1e-9 && out.weights.iter().all(|&w| w >= 0.0));
        let d: Vec<f32> = g
            .combine(&out.weights.iter().map(|&w| w as f32).collect::<Vec<_>>())
            .iter()
            .flat_map(|t| t.to_vec())
            .collect();
        let d_sq: f64 = d.iter().map(|&v| v as f64 * v as f64).sum();
        for t in 0..4 {
            let dot: f64 = g.row(t).iter().zip(&d).map(|(&a, &b)| a as f64 * b as f64).sum();
            // ⟨g_t, d⟩ ≥ ‖d‖² ≥ 0 at the min-norm point (up to f32 rounding of the gradients).
            assert!(dot >= d_sq - 1e-4 * d_sq.max(1e-6), "seed {seed} task {t}: {dot} < {d_sq}");
        }
    }
}

#[test]
fn mgda_normalizations_and_mgda_ub() {
    let tape = Tape::new();
    let n = net(&tape, 3, 5);
    let g = TaskGradients::compute(&tape, &n.losses, &n.shared, GradMode::Param);
    let r = TaskGradients::at(&tape, &n.losses, n.z);
    let losses: Vec<f64> = n.losses.iter().map(|l| l.value().item() as f64).collect();
    let input =
        StepInput { shared: Some(&g), representation: Some(&r), ..StepInput::with_losses(&losses) };
    for normalization in [
        GradNormalization::None,
        GradNormalization::L2,
        GradNormalization::Loss,
        GradNormalization::LossPlus,
    ] {
        let w = Mgda { normalization }.weights(&input).unwrap().weights;
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{normalization:?}");
        let w = MgdaUb { normalization }.weights(&input).unwrap();
        assert!(w.diagnostic("min_norm.kkt_residual").unwrap()[0] < 1e-9);
    }
    // With l2 normalisation every task's gradient counts alike: scaling one task's loss by
    // 1000 leaves the solve unchanged.
    let mut scaled = g.matrix();
    scaled[..g.dim()].iter_mut().for_each(|v| *v *= 1000.0);
    let g2 = TaskGradients::from_matrix(3, g.dim(), scaled);
    let a = Mgda { normalization: GradNormalization::L2 }.weights(&input).unwrap().weights;
    let b = Mgda { normalization: GradNormalization::L2 }
        .weights(&StepInput { shared: Some(&g2), ..input })
        .unwrap()
        .weights;
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-4, "{a:?} vs {b:?}");
    }
}

/// The two-task min-norm point in closed form (Sener & Koltun, 2018, Algorithm 2): for
/// `u₁, u₂`, the weight of `u₁` is `clamp((u₂ − u₁)·u₂ / ‖u₁ − u₂‖², 0, 1)`.
fn two_task_min_norm(u1: &[f64], u2: &[f64]) -> [f64; 2] {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let diff: Vec<f64> = u2.iter().zip(u1).map(|(b, a)| b - a).collect();
    let gamma = (dot(&diff, u2) / dot(&diff, &diff)).clamp(0.0, 1.0);
    [gamma, 1.0 - gamma]
}

#[test]
fn mgda_normalizations_scale_each_gradient_as_documented() {
    // The solve runs on u_t = g_t / n_t with n_t = 1, ‖g_t‖, L_t or L_t·‖g_t‖. Gradients and
    // losses of different sizes, so that each normalisation moves the weights somewhere else
    // (none at a vertex of the simplex). The weights of task 1, from the same formula:
    //
    // ```python
    // import numpy as np
    // def mn(u1, u2): d = u2 - u1; return np.clip(d @ u2 / (d @ d), 0, 1)
    // g1 = np.array([3.0, 0.5, 1.0, 2.0]); g2 = np.array([-0.5, 1.0, 0.25, 0.75]); L = (1.5, 0.8)
    // n1, n2 = np.linalg.norm(g1), np.linalg.norm(g2)
    // print([mn(g1 / a, g2 / b) for a, b in [(1, 1), (n1, n2), L, (L[0] * n1, L[1] * n2)]])
    // # [0.07692307692307693, 0.4999999999999999, 0.28761780955476113, 0.81670826102486]
    // ```
    let golden = [0.07692307692307693, 0.5, 0.28761780955476113, 0.81670826102486];
    let g1 = [3.0f32, 0.5, 1.0, 2.0];
    let g2 = [-0.5f32, 1.0, 0.25, 0.75];
    let losses = [1.5, 0.8];
    let grads = TaskGradients::from_matrix(2, 4, g1.iter().chain(&g2).copied().collect());
    let input = StepInput {
        shared: Some(&grads),
        representation: Some(&grads),
        ..StepInput::with_losses(&losses)
    };
    let norm = |g: &[f32]| g.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    let mut seen: Vec<[f64; 2]> = vec![];
    for (k, (normalization, n)) in [
        (GradNormalization::None, [1.0, 1.0]),
        (GradNormalization::L2, [norm(&g1), norm(&g2)]),
        (GradNormalization::Loss, losses),
        (GradNormalization::LossPlus, [losses[0] * norm(&g1), losses[1] * norm(&g2)]),
    ]
    .into_iter()
    .enumerate()
    {
        let u = |g: &[f32], n: f64| g.iter().map(|&v| v as f64 / n).collect::<Vec<f64>>();
        let want = two_task_min_norm(&u(&g1, n[0]), &u(&g2, n[1]));
        assert!((want[0] - golden[k]).abs() < 1e-12, "{normalization:?}: {want:?}");
        assert!(want[0] > 0.01 && want[0] < 0.99, "{normalization:?}: {want:?} at a vertex");
        for got in [
            Mgda { normalization }.weights(&input).unwrap().weights,
            MgdaUb { normalization }.weights(&input).unwrap().weights,
        ] {
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-9, "{normalization:?}: {got:?} vs {want:?}");
            }
        }
        assert!(seen.iter().all(|s| (s[0] - want[0]).abs() > 0.01), "{normalization:?}");
        seen.push(want);
    }
}

#[test]
fn missing_inputs_and_bad_losses_are_errors() {
    let losses = [1.0, 2.0];
    let input = StepInput::with_losses(&losses);
    assert!(matches!(Mgda::default().weights(&input), Err(WeightingError::MissingInput { .. })));
    assert!(matches!(MgdaUb::default().weights(&input), Err(WeightingError::MissingInput { .. })));
    assert!(matches!(
        GradNorm::new(0.12, 0.01).weights(&input),
        Err(WeightingError::MissingInput { .. })
    ));
    let nan = [1.0, f64::NAN];
    let err = EqualWeighting.weights(&StepInput { losses: &nan, ..input }).unwrap_err();
    assert_eq!(err.to_string(), "ew: loss of task 1 is not finite (NaN)");
    assert_eq!(EqualWeighting.needs(), Needs::LOSSES);
}

#[test]
fn gradnorm_weights_follow_the_papers_rule_and_favour_the_slow_task() {
    let mut gn = GradNorm::new(1.5, 0.05);
    let mut want = vec![1.0, 1.0];
    // Task 0 trains fast (loss ratio falls), task 1 stalls; equal gradient norms.
    for step in 0..20u64 {
        let losses = [1.0 / (1.0 + step as f64), 1.0];
        let norms = [1.0, 1.0];
        let input =
            StepInput { step, layer_grad_norms: Some(&norms), ..StepInput::with_losses(&losses) };
        let out = gn.weights(&input).unwrap();
        // The step's loss is weighted with the weights before the update; the update follows.
        assert_same(&out.weights, &want, &format!("step {step}"));
        want = gradnorm_gd_reference(&want, &norms, &losses, &[1.0, 1.0], (1.5, 0.05, 1e-3));
        assert_same(gn.current_weights(), &want, &format!("after step {step}"));
    }
    let w = gn.current_weights();
    assert!(w[1] > 1.2 && w[0] < 0.8, "{w:?}");
}
