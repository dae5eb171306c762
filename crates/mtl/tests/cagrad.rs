//! CAGrad: its inner problem solved exactly (the KKT conditions on random Grams, full rank and
//! rank-deficient, and agreement with an independent solve), the published weights, degenerate
//! inputs, and a training run.
//!
//! Golden values from scipy's SLSQP on LibMTL's objective (without its 1e-8 guards), with a
//! tight tolerance:
//!
//! ```text
//! import numpy as np
//! from scipy.optimize import minimize
//! def cagrad(g, c, rescale=1):
//!     T = len(g); GG = g @ g.T
//!     g0_norm = np.sqrt(GG.mean()); phi_sqrt = c * g0_norm
//!     b = np.ones(T) / T
//!     obj = lambda x: x @ GG @ b + phi_sqrt * np.sqrt(x @ GG @ x)
//!     res = minimize(obj, b, bounds=[(0, 1)] * T, method='SLSQP',
//!                    constraints={'type': 'eq', 'fun': lambda x: 1 - x.sum()},
//!                    options={'ftol': 1e-15, 'maxiter': 1000})
//!     w = res.x; lam = phi_sqrt / np.linalg.norm(w @ g)
//!     alpha = (b + lam * w) / (1 + c**2)
//!     return w, alpha, alpha @ g
//! g = np.array([[1.0, 2.0, -1.0, 0.5], [-1.0, 0.5, 2.0, 1.0], [0.5, -2.0, 0.0, 1.5]])
//! cagrad(g, 0.5)  # w [0.5170560864 0.1389157035 0.3440282101]
//!                 # α [0.4577336785 0.3179999921 0.3937949296]
//! cagrad(g, 2.0)  # w [0.4198903831 0.2417376242 0.3383719927]
//!                 # α [0.2376719694 0.1651171605 0.204472645 ]
//! cagrad(np.array([[3.0, 0.0], [-1.0, 1.0]]), 0.5)
//!                 # w [0 1]  α [0.4 0.716227766]
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_mtl::min_norm::{gram_matrix, min_norm_weights};
use tapestry_mtl::task_grads::TaskGradients;
use tapestry_mtl::weighting::{CaGrad, Direction, StepInput, Weighting};

fn gram_of(rows: &[&[f32]]) -> (Vec<f64>, usize) {
    let (t, p) = (rows.len(), rows[0].len());
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    (gram_matrix(&flat, t, p), t)
}

fn times(gram: &[f64], t: usize, v: &[f64]) -> Vec<f64> {
    (0..t).map(|i| (0..t).map(|j| gram[i * t + j] * v[j]).sum()).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The pieces of the problem: `b = G 1/T`, `√φ = c ‖g_0‖`.
fn problem(gram: &[f64], t: usize, c: f64) -> (Vec<f64>, f64) {
    let mean = vec![1.0 / t as f64; t];
    let b = times(gram, t, &mean);
    let radius = c * dot(&mean, &b).max(0.0).sqrt();
    (b, radius)
}

fn objective(gram: &[f64], t: usize, c: f64, w: &[f64]) -> f64 {
    let (b, radius) = problem(gram, t, c);
    dot(&b, w) + radius * dot(w, &times(gram, t, w)).max(0.0).sqrt()
}

/// Checks the KKT conditions of the inner problem from the definitions, independently of the
/// solver: `w` on the simplex; where `g_w ≠ 0`, with `∇f = b + √φ G w/‖g_w‖` and `ν = wᵀ∇f`,
/// `∇f_t ≥ ν` for all t, `w_t (∇f_t − ν) = 0`, and `α = 1/T + (√φ/‖g_w‖) w`; where `g_w = 0`,
/// `d = Σ α_t g_t` lies in the ball (`‖d − g_0‖ ≤ √φ`) and `⟨g_t, d⟩ ≥ 0` for all t. Tolerances
/// are relative to the largest squared norm. Returns whether the minimiser is the origin.
fn assert_kkt(gram: &[f64], t: usize, c: f64, w: &[f64], alpha: &[f64], tol: f64) -> bool {
    let scale = (0..t).map(|i| gram[i * t + i]).fold(0.0_f64, f64::max);
    let (b, radius) = problem(gram, t, c);
    assert!(w.iter().all(|&x| x >= 0.0), "{w:?}");
    assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{w:?}");
    let gw = times(gram, t, w);
    let r = dot(w, &gw).max(0.0).sqrt();
    let origin = r <= 1e-6 * scale.sqrt();
    if origin {
        let d_dot = times(gram, t, alpha);
        for (s, &v) in d_dot.iter().enumerate() {
            assert!(v >= -tol * scale, "⟨g_{s}, d⟩ = {v} < 0 at the origin; α {alpha:?}");
        }
        let shift: Vec<f64> = alpha.iter().map(|a| a - 1.0 / t as f64).collect();
        let distance = dot(&shift, &times(gram, t, &shift)).max(0.0).sqrt();
        assert!(distance <= radius + tol * scale.sqrt(), "‖d − g_0‖ = {distance} > {radius}");
        return true;
    }
    let grad: Vec<f64> = (0..t).map(|s| b[s] + radius * gw[s] / r).collect();
    let nu = dot(w, &grad);
    for s in 0..t {
        assert!(grad[s] - nu >= -tol * scale, "dual: ∇f_{s} − ν = {} ({w:?})", grad[s] - nu);
        assert!(w[s] * (grad[s] - nu).abs() <= tol * scale, "complementarity at {s}: {w:?}");
        let want = 1.0 / t as f64 + radius / r * w[s];
        assert!((alpha[s] - want).abs() <= tol * want.abs().max(1.0), "α {alpha:?} vs λ w");
    }
    false
}

/// An independent solve through the min-norm solver: `x(μ)`, the point of the hull closest to
/// `−μ g_0` (the min-norm point of the shifted gradients `g_t + μ g_0`), is CAGrad's minimiser
/// when `‖x(μ)‖ = √φ μ` (both have the normal `g_0 + x/μ`), so bisect on μ. Returns `w` and
/// μ (near 0 when the origin is optimal; then `‖x‖` is at the min-norm solver's precision).
fn reference(gram: &[f64], t: usize, c: f64) -> (Vec<f64>, f64) {
    let (b, radius) = problem(gram, t, c);
    let mean_sq = dot(&vec![1.0 / t as f64; t], &b);
    let at = |mu: f64| {
        let shifted: Vec<f64> =
            (0..t * t).map(|k| gram[k] + mu * (b[k / t] + b[k % t]) + mu * mu * mean_sq).collect();
        let w = min_norm_weights(&shifted, t).unwrap().weights;
        let r = dot(&w, &times(gram, t, &w)).max(0.0).sqrt();
        (w, r - radius * mu)
    };
    let largest = (0..t).map(|i| gram[i * t + i]).fold(0.0_f64, f64::max).sqrt();
    let (mut lo, mut hi) = (0.0, 2.0 * largest / radius + 1.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if at(mid).1 > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let mu = 0.5 * (lo + hi);
    (at(mu).0, mu)
}

/// `T` random gradients of dimension `dim` (rank `min(T, dim)`), as their Gram.
fn random_gram(rng: &mut ChaCha8Rng, t: usize, dim: usize) -> Vec<f64> {
    let scale = 10f32.powf(rng.gen_range(-3.0..3.0));
    let rows: Vec<f32> = (0..t * dim).map(|_| rng.gen_range(-1.0f32..1.0) * scale).collect();
    gram_matrix(&rows, t, dim)
}

#[test]
fn the_inner_problem_meets_its_kkt_conditions_on_random_grams() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut origins = 0;
    let mut worst = 0.0_f64;
    for t in 2..=6 {
        for dim in [1, 2, t - 1, t, 2 * t] {
            for c in [0.1, 0.5, 1.0, 2.0] {
                for _ in 0..40 {
                    let gram = random_gram(&mut rng, t, dim);
                    let s = CaGrad::solve(&gram, t, c).unwrap();
                    let origin = assert_kkt(&gram, t, c, &s.inner, &s.alpha, 1e-9);
                    assert_eq!(s.lambda.is_none(), origin, "{gram:?} c = {c}");
                    origins += usize::from(origin);
                    worst = worst.max(s.kkt_residual);
                }
            }
        }
    }
    // Collinear gradients of both signs with c ≥ 1 put the minimiser at the origin.
    assert!(origins > 20, "the origin case was exercised {origins} times");
    assert!(worst < 1e-9, "the solver's own KKT residual reached {worst}");
    println!("{origins} origins, worst residual {worst:e}");
}

#[test]
fn the_inner_problem_agrees_with_an_independent_solve() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (mut compared, mut origins) = (0, 0);
    for t in 2..=6 {
        for dim in [2, t, 2 * t] {
            for c in [0.2, 0.5, 1.5] {
                for _ in 0..10 {
                    let gram = random_gram(&mut rng, t, dim);
                    let s = CaGrad::solve(&gram, t, c).unwrap();
                    let scale = (0..t).map(|i| gram[i * t + i]).fold(0.0, f64::max);
                    let (w_ref, mu) = reference(&gram, t, c);
                    let (f, f_ref) =
                        (objective(&gram, t, c, &s.inner), objective(&gram, t, c, &w_ref));
                    if s.lambda.is_none() {
                        // The origin (f = 0): the reference finds nothing lower beyond the
                        // rounding of f near g_w = 0, about √φ √(ε G) ≤ 1e-8 G.
                        assert!(f_ref >= -1e-7 * scale, "reference {f_ref} below the origin's 0");
                        origins += 1;
                        continue;
                    }
                    assert!(f <= f_ref + 1e-12 * scale, "f {f} vs reference {f_ref}");
                    assert!((f - f_ref).abs() <= 1e-9 * scale, "f {f} vs reference {f_ref}");
                    // The same update d = Σ α_t g_t (unique where g_w ≠ 0; the reference is
                    // precise where ‖g_w‖ is well above the min-norm solver's rounding).
                    let Some(lambda) = s.lambda.filter(|&l| l * scale.sqrt() < 1e3) else {
                        continue;
                    };
                    let alpha_ref: Vec<f64> =
                        w_ref.iter().map(|x| 1.0 / t as f64 + x / mu).collect();
                    let diff: Vec<f64> =
                        s.alpha.iter().zip(&alpha_ref).map(|(a, b)| a - b).collect();
                    let gap = dot(&diff, &times(&gram, t, &diff)).max(0.0).sqrt();
                    let size = dot(&s.alpha, &times(&gram, t, &s.alpha)).sqrt();
                    assert!(gap <= 1e-6 * size, "d differs by {gap} (|d| = {size}, λ {lambda})");
                    compared += 1;
                }
            }
        }
    }
    println!("{compared} compared, {origins} origins");
    assert!(compared > 100 && origins > 5, "{compared} updates compared, {origins} origins");
}

#[test]
fn the_weights_match_the_published_solve() {
    let (gram, t) =
        gram_of(&[&[1.0, 2.0, -1.0, 0.5], &[-1.0, 0.5, 2.0, 1.0], &[0.5, -2.0, 0.0, 1.5]]);
    for (c, w_want, alpha_want) in [
        (
            0.5,
            [0.5170560864, 0.1389157035, 0.3440282101],
            [0.4577336785, 0.3179999921, 0.3937949296],
        ),
        (
            2.0,
            [0.4198903831, 0.2417376242, 0.3383719927],
            [0.2376719694, 0.1651171605, 0.204472645],
        ),
    ] {
        let s = CaGrad::solve(&gram, t, c).unwrap();
        let alpha = CaGrad::weights_from_gram(&gram, t, c).unwrap();
        for k in 0..3 {
            // SLSQP stops near 1e-8 of the minimiser; the solve here is exact.
            assert!((s.inner[k] - w_want[k]).abs() < 1e-6, "{:?}", s.inner);
            assert!((alpha[k] - alpha_want[k]).abs() < 1e-6, "{alpha:?}");
        }
        assert!(s.kkt_residual < 1e-12, "{}", s.kkt_residual);
    }
    // The minimiser at a vertex: w = (0, 1).
    let (gram, t) = gram_of(&[&[3.0, 0.0], &[-1.0, 1.0]]);
    let s = CaGrad::solve(&gram, t, 0.5).unwrap();
    assert_eq!(s.inner, vec![0.0, 1.0]);
    let alpha = CaGrad::weights_from_gram(&gram, t, 0.5).unwrap();
    assert!((alpha[0] - 0.4).abs() < 1e-12 && (alpha[1] - 0.716227766).abs() < 1e-9, "{alpha:?}");
}

/// `Σ_t α_t g_t` for rows `g`.
fn combine(alpha: &[f64], rows: &[&[f32]]) -> Vec<f64> {
    (0..rows[0].len()).map(|j| rows.iter().zip(alpha).map(|(r, a)| a * r[j] as f64).sum()).collect()
}

#[test]
fn degenerate_inputs_give_finite_weights_of_the_documented_shape() {
    let c = 0.5;
    let rescale = 1.0 + c * c;
    // c = 0: equal weights' mean, 1/T.
    let (gram, t) = gram_of(&[&[1.0, 2.0], &[-3.0, 0.5], &[0.0, 1.0]]);
    assert_eq!(CaGrad::weights_from_gram(&gram, t, 0.0).unwrap(), vec![1.0 / 3.0; 3]);
    // g_0 = 0 (opposite gradients): d = g_0 = 0, the weights 1/T (rescaled).
    let (gram, t) = gram_of(&[&[1.0, -2.0], &[-1.0, 2.0]]);
    let w = CaGrad::weights_from_gram(&gram, t, c).unwrap();
    assert!(w.iter().all(|&x| (x - 0.5 / rescale).abs() < 1e-12), "{w:?}");
    // All gradients equal: every w gives g_w = g, d = (1 + c) g.
    let rows: [&[f32]; 3] = [&[1.0, -2.0, 0.5]; 3];
    let (gram, t) = gram_of(&rows);
    let w = CaGrad::weights_from_gram(&gram, t, c).unwrap();
    let d = combine(&w, &rows);
    for (dj, gj) in d.iter().zip(rows[0]) {
        assert!((dj - (1.0 + c) / rescale * *gj as f64).abs() < 1e-12, "{d:?}");
    }
    // A zero gradient beside an agreeing one: the minimiser is g_w = 0 (the zero vertex), and
    // the mean gradient already helps every task, so d = g_0.
    let rows: [&[f32]; 2] = [&[1.0, 0.0], &[0.0, 0.0]];
    let (gram, t) = gram_of(&rows);
    let s = CaGrad::solve(&gram, t, c).unwrap();
    assert_eq!((s.lambda, s.inner.clone()), (None, vec![0.0, 1.0]));
    assert_eq!(s.alpha, vec![0.5, 0.5]);
    // A zero gradient beside two conflicting ones: finite, KKT, d helps no task less than 0.
    let rows: [&[f32]; 3] = [&[1.0, 0.0], &[-2.0, 0.2], &[0.0, 0.0]];
    let (gram, t) = gram_of(&rows);
    for c in [0.5, 2.0] {
        let s = CaGrad::solve(&gram, t, c).unwrap();
        assert!(s.alpha.iter().all(|a| a.is_finite() && *a >= 0.0), "{:?}", s.alpha);
        assert_kkt(&gram, t, c, &s.inner, &s.alpha, 1e-12);
    }
    // All gradients zero; one task; gradients of 1e-8 and 1e8 (scale-free weights).
    let (gram, t) = gram_of(&[&[0.0, 0.0], &[0.0, 0.0]]);
    assert_eq!(CaGrad::weights_from_gram(&gram, t, c).unwrap(), vec![0.5 / rescale; 2]);
    let (gram, t) = gram_of(&[&[3.0, 4.0]]);
    let w = CaGrad::weights_from_gram(&gram, t, c).unwrap();
    assert!((w[0] - (1.0 + c) / rescale).abs() < 1e-12, "{w:?}");
    let base = [[1.0f32, 2.0, -1.0], [-1.0, 0.5, 2.0], [0.5, -2.0, 0.0]];
    let want =
        CaGrad::weights_from_gram(&gram_of(&[&base[0], &base[1], &base[2]]).0, 3, c).unwrap();
    for scale in [1e-8f32, 1e8] {
        let rows: Vec<Vec<f32>> =
            base.iter().map(|r| r.iter().map(|v| v * scale).collect()).collect();
        let (gram, _) = gram_of(&[&rows[0], &rows[1], &rows[2]]);
        let w = CaGrad::weights_from_gram(&gram, 3, c).unwrap();
        for (a, b) in w.iter().zip(&want) {
            assert!((a - b).abs() < 1e-9, "{w:?} vs {want:?}");
        }
    }
    // A negative or NaN c, and a matrix that is no Gram, are refused.
    assert!(CaGrad::solve(&[1.0], 1, -0.5).is_err());
    assert!(CaGrad::solve(&[1.0], 1, f64::NAN).is_err());
    assert!(CaGrad::solve(&[1.0, 2.0, 2.0, 1.0], 2, 0.5).is_err());
}

#[test]
fn through_the_interface_the_weights_come_from_the_gram() {
    let g = TaskGradients::from_matrix(
        3,
        4,
        vec![1.0, 2.0, -1.0, 0.5, -1.0, 0.5, 2.0, 1.0, 0.5, -2.0, 0.0, 1.5],
    );
    let losses = [1e6, 2.0, 0.5];
    let input = StepInput { shared: Some(&g), ..StepInput::with_losses(&losses) };
    let mut cagrad = CaGrad::default();
    let out = cagrad.weights(&input).unwrap();
    // The shared update is Σ α_t g_t; the heads keep weight 1.
    let alpha = CaGrad::weights_from_gram(g.gram(), 3, 0.5).unwrap();
    assert_eq!(out.weights, vec![1.0; 3]);
    assert_eq!(out.direction, Some(Direction::Combination(alpha.clone())));
    assert_eq!(out.diagnostic("cagrad.alpha"), Some(&alpha[..]));
    assert!(out.diagnostic("cagrad.kkt_residual").unwrap()[0] < 1e-12);
    assert_eq!(out.diagnostic("cagrad.inner_weights").unwrap().len(), 3);
    // d conflicts with no task: CAGrad's worst-case improvement is positive here.
    let rows: Vec<Vec<f32>> = (0..3).map(|t| g.row(t)).collect();
    let d = combine(&alpha, &[&rows[0], &rows[1], &rows[2]]);
    for r in &rows {
        assert!(r.iter().zip(&d).map(|(&a, b)| a as f64 * b).sum::<f64>() > 0.0);
    }
    assert!(cagrad.weights(&StepInput { shared: None, ..input }).is_err());
    let nan = [f64::NAN, 1.0, 1.0];
    assert!(cagrad.weights(&StepInput { losses: &nan, ..input }).is_err());
}

#[test]
fn cagrad_trains_the_toy_end_to_end_and_deterministically() {
    use tapestry_mtl::toy::{gradnorm_toy, gradnorm_toy_model, GradNormToyConfig};
    use tapestry_mtl::trainer::{NoObserver, Trainer, TrainerConfig};
    use tapestry_nn::optim::Adam;
    use tapestry_nn::Params;
    let config = GradNormToyConfig {
        sigmas: vec![1.0, 10.0, 3.0],
        input_dim: 12,
        output_dim: 4,
        train: 200,
        test: 10,
        ..GradNormToyConfig::default()
    };
    let splits = gradnorm_toy(&config);
    let run = || {
        let mut params = Params::new();
        let model = gradnorm_toy_model(&mut params, &config, 16, 2, 0).unwrap();
        let trainer_config =
            TrainerConfig { epochs: 4, batch_size: 20, ..TrainerConfig::default() };
        let mut trainer = Trainer::new(trainer_config, Adam::new(1e-2), CaGrad::default());
        let epochs =
            trainer.fit(&model, &mut params, &splits.train, None, &mut NoObserver).unwrap();
        let loss =
            |e: usize| -> f64 { epochs[e].train.tasks.iter().map(|t| t.loss.unwrap()).sum() };
        assert!(epochs.iter().all(|e| e.mean_weights.iter().all(|w| w.is_finite() && *w > 0.0)));
        (loss(0), loss(3), params)
    };
    let (first, last, params) = run();
    assert!(last < 0.8 * first, "the summed loss went from {first} to {last}");
    let (_, _, again) = run();
    for id in params.ids() {
        assert_eq!(params.get(id), again.get(id), "{}", params.name(id));
    }
}
