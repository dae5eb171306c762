//! Nash-MTL and UPGrad, both on the Gram of the per-task gradients: values against independent
//! numpy solves, their defining properties on random Grams, degenerate inputs (zero, identical,
//! opposite and cancelling gradients, huge losses), and a short training run each.
//!
//! Nash-MTL's weights from numpy: a homotopy on a ridge (`G + μI`, μ from `tr G` down to 0) with
//! Newton on `α ⊙ Gα − 1` in log coordinates (not the solver under test), polished in 50-digit
//! decimal arithmetic for the near-degenerate cases:
//!
//! ```text
//! import numpy as np
//! def newton_log(G, x):
//!     for _ in range(100):
//!         a = np.exp(x); F = a * (G @ a) - 1
//!         if np.abs(F).max() < 1e-15: break
//!         Jf = np.diag(a * (G @ a)) + a[:, None] * G * a[None, :]
//!         x = x + np.linalg.solve(Jf, -F)
//!     return x
//! def nash(G):
//!     x = -0.5 * np.log(np.diag(G) + np.trace(G))
//!     for k in range(0, 80):
//!         x = newton_log(G + np.trace(G) * 2.0**-k * np.eye(len(G)), x)
//!     return np.exp(newton_log(G, x))
//! from decimal import Decimal, getcontext
//! getcontext().prec = 50
//! def polish(J, a):      # Newton on a * (G a) - 1 in Decimal, G = J J^T formed in Decimal
//!     J = [[Decimal(v) for v in row] for row in J]; n = len(J)
//!     G = [[sum(x * y for x, y in zip(J[i], J[j])) for j in range(n)] for i in range(n)]
//!     a = [Decimal(float(v)) for v in a]
//!     for _ in range(8):
//!         Ga = [sum(G[i][j] * a[j] for j in range(n)) for i in range(n)]
//!         F = [a[i] * Ga[i] - 1 for i in range(n)]
//!         Jf = [[(Ga[i] if i == j else 0) + a[i] * G[i][j] for j in range(n)] for i in range(n)]
//!         d = solve_dec(Jf, [-f for f in F]); a = [x + y for x, y in zip(a, d)]
//!     return a          # solve_dec: Gaussian elimination with partial pivoting in Decimal
//! for J in cases: J = np.array(J); print(nash(J @ J.T))
//! ```
//!
//! UPGrad's weights from numpy, by enumerating every active set of each projection:
//!
//! ```text
//! import itertools
//! def project(G, i):
//!     T = len(G); best = None
//!     for r in range(T + 1):
//!         for S in itertools.combinations(range(T), r):
//!             lam = np.zeros(T)
//!             if S:
//!                 S = list(S)
//!                 lam[S] = np.linalg.lstsq(G[np.ix_(S, S)], -G[S, i], rcond=None)[0]
//!             w = lam.copy(); w[i] += 1; p = G @ w
//!             tol = 1e-12 * np.sqrt(np.diag(G)).max() ** 2 * (1 + np.abs(w).sum())
//!             if (lam >= -tol).all() and (p >= -tol).all() and (np.abs(lam * p) <= tol).all():
//!                 if best is None or w @ G @ w < best @ G @ best - tol: best = w
//!     return best
//! def upgrad(J):
//!     J = np.array(J); G = J @ J.T
//!     W = np.array([project(G, i) for i in range(len(G))]); w = W.mean(0)
//!     return W, w, w @ J       # the projections' weights, UPGrad's weights, its direction
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_mtl::min_norm::min_norm_weights;
use tapestry_mtl::step::StepReport;
use tapestry_mtl::task_grads::TaskGradients;
use tapestry_mtl::toy::{gradnorm_toy, gradnorm_toy_model, GradNormToyConfig};
use tapestry_mtl::trainer::{Observer, Trainer, TrainerConfig};
use tapestry_mtl::weighting::{
    by_name, MethodOptions, NashFallback, NashMtl, StepInput, Upgrad, Weighting, NASH_RIDGE,
};
use tapestry_nn::optim::Adam;
use tapestry_nn::Params;

/// `J Jᵀ` of the rows `j`, in f64 (exact for the binary fractions used here).
fn gram(j: &[&[f64]]) -> Vec<f64> {
    let t = j.len();
    let mut g = vec![0.0; t * t];
    for a in 0..t {
        for b in 0..t {
            g[a * t + b] = j[a].iter().zip(j[b]).map(|(x, y)| x * y).sum();
        }
    }
    g
}

/// `G v`.
fn times(g: &[f64], v: &[f64]) -> Vec<f64> {
    let t = v.len();
    (0..t).map(|a| (0..t).map(|b| g[a * t + b] * v[b]).sum()).collect()
}

/// `Σ_t w_t j_t`.
fn combine(j: &[&[f64]], w: &[f64]) -> Vec<f64> {
    (0..j[0].len()).map(|k| j.iter().zip(w).map(|(row, wt)| wt * row[k]).sum()).collect()
}

fn close(got: &[f64], want: &[f64], rtol: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= rtol * w.abs().max(1.0), "{got:?} vs {want:?}");
    }
}

/// Rows of a random `t × p` matrix, entries uniform in [−1, 1).
fn random_rows(rng: &mut ChaCha8Rng, t: usize, p: usize) -> Vec<Vec<f64>> {
    (0..t).map(|_| (0..p).map(|_| rng.gen_range(-1.0..1.0)).collect()).collect()
}

// Gradient matrices of the golden cases (binary fractions, so `J Jᵀ` is exact in f64).
const T2: &[&[f64]] = &[&[1.0, 2.0, -1.0], &[-1.0, 0.5, 2.0]];
const T3: &[&[f64]] = &[&[1.0, 2.0, -1.0, 0.5], &[-1.0, 0.5, 2.0, 1.0], &[0.5, -2.0, 0.0, 1.5]];
const T4_NASH: &[&[f64]] = &[
    &[2.0, 0.25, -1.0, 0.5, 1.0],
    &[-0.5, 1.5, 0.75, 0.0, -1.0],
    &[0.25, -0.5, 1.0, 2.0, 0.5],
    &[1.0, 1.0, 1.0, -0.25, 0.0],
];
const T5_NASH: &[&[f64]] = &[
    &[1.0, 0.0, 0.5, -0.25, 2.0, 1.0],
    &[0.0, 3.0, -1.0, 0.5, 0.0, 0.25],
    &[-1.5, 0.5, 1.0, 1.0, -0.5, 0.0],
    &[0.25, 0.25, 0.25, 4.0, 0.0, -1.0],
    &[2.0, -1.0, 0.0, 0.5, 0.5, 0.5],
];

#[test]
fn nash_weights_match_an_independent_solve_for_two_to_five_tasks() {
    let cases: &[(&[&[f64]], &[f64])] = &[
        (T2, &[0.5088607129795655, 0.5439949844454415]),
        (T3, &[0.614656496617475, 0.48050238134735207, 0.5432452965862374]),
        (
            T4_NASH,
            &[0.4508465010374944, 0.588803205148829, 0.4135874044505004, 0.36319992398585565],
        ),
        (
            T5_NASH,
            &[
                0.39789405993517046,
                0.3424419932656847,
                0.6836141370127337,
                0.1538932711775111,
                0.5683406390715607,
            ],
        ),
        // Rank 2 (g_3 = g_1 + g_2) yet solvable: no non-negative combination vanishes.
        (
            &[&[1.0, 0.5, 0.0], &[0.0, 1.0, -1.0], &[1.0, 1.5, -1.0]],
            &[0.6463999666112179, 0.49589869247717805, 0.2806174162154812],
        ),
    ];
    for (j, want) in cases {
        let g = gram(j);
        let t = j.len();
        let s = NashMtl::weights_from_gram(&g, t).unwrap();
        close(&s.weights, want, 1e-12);
        assert_eq!(s.fallback, NashFallback::None);
        assert!(s.residual <= 1e-10, "{}", s.residual);
        // The defining equations, and ‖d‖² = αᵀGα = T.
        let ga = times(&g, &s.weights);
        for (a, p) in s.weights.iter().zip(&ga) {
            assert!((a * p - 1.0).abs() <= 1e-12, "{:?}", s.weights);
        }
        let d = combine(j, &s.weights);
        assert!((d.iter().map(|v| v * v).sum::<f64>() - t as f64).abs() < 1e-12);
        assert!(s.iterations < 20, "{} iterations", s.iterations);
    }
}

#[test]
fn nash_weights_are_right_on_near_degenerate_grams() {
    // Nearly opposite (cos = −1 + 2⁻²¹) and nearly cancelling gradients: 0 is almost in their
    // convex hull, so the weights are large, but there is a solution and it is found.
    let near_opposite: &[&[f64]] = &[&[1.0, 0.0], &[-1.0, 2f64.powi(-10)]];
    let near_cancel: &[&[f64]] =
        &[&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0], &[-1.0, -1.0, 2f64.powi(-8)]];
    let cases: &[(&[&[f64]], &[f64])] = &[
        (near_opposite, &[1448.15520577039, 1448.154515236671]),
        (near_cancel, &[443.40651025077227, 443.40651025077227, 443.40425498393046]),
    ];
    for (j, want) in cases {
        let s = NashMtl::weights_from_gram(&gram(j), j.len()).unwrap();
        assert_eq!(s.fallback, NashFallback::None, "{s:?}");
        assert!(s.residual <= 1e-10_f64.max(8.0 * 3.0 * f64::EPSILON * s.cancellation));
        assert!(s.cancellation > 1e5, "{s:?}");
        close(&s.weights, want, 1e-10);
    }
}

#[test]
fn two_task_nash_weights_have_a_closed_form() {
    // α_t (Gα)_t = 1 for T = 2 gives α_1/α_2 = ‖g_2‖/‖g_1‖ and α_t = 1/(‖g_t‖ √(1 + cos θ)).
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..50 {
        let rows = random_rows(&mut rng, 2, 4);
        let j: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
        let g = gram(&j);
        let n = [g[0].sqrt(), g[3].sqrt()];
        let cos = g[1] / (n[0] * n[1]);
        let s = NashMtl::weights_from_gram(&g, 2).unwrap();
        let want: Vec<f64> = n.iter().map(|n| 1.0 / (n * (1.0 + cos).sqrt())).collect();
        close(&s.weights, &want, 1e-10);
    }
}

#[test]
fn nash_falls_back_to_the_ridge_exactly_when_zero_is_in_the_convex_hull() {
    // Gα = 1/α has a solution iff no non-negative combination of the gradients vanishes, that
    // is iff MGDA's min-norm is positive. On random gradients (t > p + 1 puts 0 in the hull
    // often), the exact solve must succeed whenever the min-norm is clearly positive, and the
    // ridge must be taken whenever it is zero.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (mut exact, mut ridged) = (0, 0);
    for case in 0..1000 {
        let t = rng.gen_range(2..=6);
        let p = rng.gen_range(1..=8);
        let rows = random_rows(&mut rng, t, p);
        let j: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
        let g = gram(&j);
        let mean = (0..t).map(|i| g[i * t + i]).sum::<f64>() / t as f64;
        let gap = min_norm_weights(&g, t).unwrap().min_norm_sq / mean;
        let s = NashMtl::weights_from_gram(&g, t).unwrap();
        assert!(s.weights.iter().all(|w| w.is_finite() && *w > 0.0), "case {case}: {s:?}");
        assert!(s.iterations < 60, "case {case}: {s:?}");
        match s.fallback {
            NashFallback::None => {
                exact += 1;
                let rounding = 8.0 * t as f64 * f64::EPSILON * s.cancellation;
                for (a, p) in s.weights.iter().zip(times(&g, &s.weights)) {
                    assert!((a * p - 1.0).abs() <= 1e-10_f64.max(rounding), "case {case}");
                }
                assert!(gap > 1e-12, "case {case}: solved with 0 in the hull ({gap:e})");
            }
            _ => {
                ridged += 1;
                assert!(gap < 1e-5, "case {case}: no exact solution found, min-norm {gap:e}");
            }
        }
    }
    assert!(exact > 300 && ridged > 100, "{exact} exact, {ridged} ridged");
}

#[test]
fn nash_weights_scale_inversely_with_the_gradients() {
    let g = gram(T4_NASH);
    let base = NashMtl::weights_from_gram(&g, 4).unwrap().weights;
    for s in [1e6, 1e-6, 3.7, 1e150_f64.sqrt()] {
        let scaled: Vec<f64> = g.iter().map(|v| v * s * s).collect();
        let w = NashMtl::weights_from_gram(&scaled, 4).unwrap().weights;
        let back: Vec<f64> = w.iter().map(|v| v * s).collect();
        close(&back, &base, 1e-12);
    }
}

#[test]
fn with_losses_of_1e6_the_weights_are_1e6_times_smaller_and_the_update_is_the_same() {
    // Gradients 1e6 times larger (as a loss 1e6 times larger gives): weights 1e-6 times as
    // large, and the update Σ α_t g_t unchanged, of squared norm T.
    let rows: Vec<f32> = T3.iter().flat_map(|r| r.iter().map(|&v| v as f32)).collect();
    let big: Vec<f32> = rows.iter().map(|v| v * 1e6).collect();
    let small = TaskGradients::from_matrix(3, 4, rows);
    let large = TaskGradients::from_matrix(3, 4, big);
    let run = |g: &TaskGradients, losses: &[f64]| {
        NashMtl.weights(&StepInput { shared: Some(g), ..StepInput::with_losses(losses) }).unwrap()
    };
    let a = run(&small, &[1.0, 2.0, 0.5]);
    let b = run(&large, &[1e6, 2e6, 5e5]);
    assert!(b.weights.iter().all(|w| w.is_finite() && *w > 0.0));
    let back: Vec<f64> = b.weights.iter().map(|w| w * 1e6).collect();
    close(&back, &a.weights, 1e-9);
    let d = |g: &TaskGradients, w: &[f64]| {
        (0..4).map(|k| (0..3).map(|t| w[t] * f64::from(g.row(t)[k])).sum()).collect::<Vec<f64>>()
    };
    let (da, db) = (d(&small, &a.weights), d(&large, &b.weights));
    close(&db, &da, 1e-9);
    assert!((da.iter().map(|v| v * v).sum::<f64>() - 3.0).abs() < 1e-9);
    assert_eq!(b.diagnostic("nash.fallback"), Some(&[0.0][..]));
    assert!(b.diagnostic("nash.residual").unwrap()[0] <= 1e-10);
}

#[test]
fn where_the_bargaining_system_has_no_solution_a_ridge_gives_finite_weights() {
    let opposite: &[&[f64]] = &[&[1.0, 2.0], &[-2.0, -4.0]];
    let zero: &[&[f64]] = &[&[0.0, 0.0], &[1.0, -1.0]];
    let cancel: &[&[f64]] = &[&[1.0, 0.0], &[0.0, 1.0], &[-1.0, -1.0]];
    let with_a_conflict_free_task: &[&[f64]] =
        &[&[1.0, 0.0, 0.0], &[-1.0, 0.0, 0.0], &[0.0, 0.0, 1.0]];
    // A solution exists, but its equations cancel beyond NASH_MAX_CANCELLATION (about 2e8).
    let cancel_beyond_rounding: &[&[f64]] =
        &[&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0], &[-1.0, -1.0, 2f64.powi(-12)]];
    for j in [opposite, zero, cancel, with_a_conflict_free_task, cancel_beyond_rounding] {
        let t = j.len();
        let g = gram(j);
        let s = NashMtl::weights_from_gram(&g, t).unwrap();
        assert_eq!(s.fallback, NashFallback::Ridge, "{j:?}");
        assert!(s.residual <= 1e-10_f64.max(8.0 * t as f64 * f64::EPSILON * s.cancellation));
        assert!(s.weights.iter().all(|w| w.is_finite() && *w > 0.0), "{s:?}");
        // The ridged equations hold, and ‖α‖² ≤ T/ε bounds the weights.
        let eps = NASH_RIDGE * (0..t).map(|i| g[i * t + i]).sum::<f64>() / t as f64;
        let ga = times(&g, &s.weights);
        for (a, p) in s.weights.iter().zip(&ga) {
            assert!((a * (p + eps * a) - 1.0).abs() <= 1e-6, "{s:?}");
        }
        assert!(s.weights.iter().map(|a| a * a).sum::<f64>() <= t as f64 / eps * (1.0 + 1e-12));
        assert!(s.iterations <= 2 * tapestry_mtl::weighting::NASH_MAX_ITERATIONS);
    }
    // The task in conflict with no one keeps its ordinary weight 1/‖g‖ (up to the ridge).
    let s = NashMtl::weights_from_gram(&gram(with_a_conflict_free_task), 3).unwrap();
    assert!((s.weights[2] - 1.0).abs() < 1e-7, "{s:?}");
    // All-zero gradients: weights 1, flagged.
    let s = NashMtl::weights_from_gram(&[0.0; 4], 2).unwrap();
    assert_eq!((s.weights, s.fallback), (vec![1.0, 1.0], NashFallback::ZeroGradients));
}

#[test]
fn nash_on_identical_gradients_and_through_the_interface() {
    // Identical gradients: α (2‖g‖²) α = 1, α = 1/(‖g‖√2) each.
    let g = TaskGradients::from_matrix(2, 2, vec![3.0, 4.0, 3.0, 4.0]);
    let losses = [1e6, 1.0];
    let input = StepInput { shared: Some(&g), ..StepInput::with_losses(&losses) };
    let out = NashMtl.weights(&input).unwrap();
    close(&out.weights, &[1.0 / (5.0 * 2f64.sqrt()); 2], 1e-12);
    assert_eq!(out.direction, None);
    assert!(out.diagnostic("nash.iterations").is_some());
    assert!(NashMtl.weights(&StepInput { shared: None, ..input }).is_err());
    let nan = [f64::NAN, 1.0];
    assert!(NashMtl.weights(&StepInput { losses: &nan, ..input }).is_err());
    assert!(NashMtl::weights_from_gram(&[1.0, f64::NAN, f64::NAN, 1.0], 2).is_err());
    assert!(NashMtl::weights_from_gram(&[1.0, 0.0, 0.0], 2).is_err());
}

// ---------------------------------------------------------------------------------------------
// UPGrad

const T4_UPGRAD: &[&[f64]] = &[
    &[2.0, 0.25, -1.0, 0.5, 1.0],
    &[-0.5, 1.5, 0.75, 0.0, -1.0],
    &[0.25, -0.5, 1.0, 2.0, 0.5],
    &[-1.0, -1.0, 1.0, -0.25, 0.0],
];
const T5_UPGRAD: &[&[f64]] = &[
    &[1.0, 0.0, 0.5, -0.25, 2.0, 1.0],
    &[0.0, 3.0, -1.0, 0.5, 0.0, 0.25],
    &[-1.5, 0.5, 1.0, 1.0, -0.5, 0.0],
    &[0.25, 0.25, 0.25, 4.0, 0.0, -1.0],
    &[-2.0, -1.0, 0.0, 0.5, 0.5, 0.5],
];

#[test]
fn upgrad_projections_match_an_enumeration_of_active_sets() {
    #[rustfmt::skip]
    // The gradients, each projection's weights, their mean.
    type Case<'a> = (&'a [&'a [f64]], &'a [&'a [f64]], &'a [f64]);
    let cases: &[Case<'_>] = &[
        (
            T2,
            &[&[1.0, 0.38095238095238093], &[0.3333333333333333, 1.0]],
            &[0.6666666666666666, 0.6904761904761905],
        ),
        (
            T3,
            &[
                &[1.0, 0.24000000000000002, 0.42307692307692313],
                &[0.2948960302457467, 1.0, 0.12476370510396984],
                &[0.4668930390492359, 0.11205432937181652, 1.0],
            ],
            &[0.5872630230983275, 0.4506847764572722, 0.5159468760602977],
        ),
        (
            T4_UPGRAD,
            &[
                &[1.0, 0.6557273587882609, 0.0, 1.1555695803092454],
                &[1.0221347761928183, 1.0, 0.0, 1.2080668962124936],
                &[0.0, 0.15384615384615385, 1.0, 0.0],
                &[0.7150947080648311, 0.4795938293302092, 0.0, 1.0],
            ],
            &[0.6843073710644123, 0.572291835491156, 0.25, 0.8409091191304348],
        ),
        (
            T5_UPGRAD,
            &[
                &[1.0, 0.0, 0.47368421052631576, 0.0, 0.0],
                &[0.10574412532637074, 1.0, 0.0, 0.0, 0.4680156657963446],
                &[0.3564356435643564, 0.0, 1.0, 0.0, 0.0],
                &[0.25742574257425743, 0.0, 0.0, 1.0, 0.0],
                &[0.1143784953996031, 0.2587046725599856, 0.0, 0.0, 1.0],
            ],
            &[
                0.36679680137291754,
                0.2517409345119971,
                0.29473684210526313,
                0.2,
                0.2936031331592689,
            ],
        ),
    ];
    for (j, projections, mean) in cases {
        let g = gram(j);
        let t = j.len();
        for (i, want) in projections.iter().enumerate() {
            let p = Upgrad::projection_weights(&g, t, i).unwrap();
            close(&p.weights, want, 1e-12);
            assert!(p.kkt_residual <= 1e-14, "{p:?}");
        }
        let s = Upgrad::weights_from_gram(&g, t).unwrap();
        close(&s.weights, mean, 1e-12);
        assert!(s.kkt_residual <= 1e-14);
        assert!(s.projected >= 1);
    }
}

#[test]
fn upgrad_on_rank_deficient_grams_finds_the_unique_direction() {
    // More tasks than dimensions: λ need not be unique, the projections and their mean are.
    #[rustfmt::skip]
    let cases: &[(&[&[f64]], &[f64])] = &[
        // Four gradients of the plane that cancel with positive weights: the dual cone is {0}.
        (&[&[1.0, 0.0], &[0.0, 1.0], &[-1.0, 0.5], &[0.5, -1.0]], &[0.0, 0.0]),
        // Five in R³, all with a positive last entry: a dual cone with an interior.
        (&[&[1.0, 0.0, 0.5], &[0.0, 1.0, 0.5], &[-1.0, 0.5, 0.5], &[0.5, -1.0, 0.5],
           &[-0.5, -0.5, 0.5]],
            &[0.04047619047619053, 0.04047619047619053, 0.7761904761904762]),
        // g_3 = g_1 + g_2, with g_1 and g_2 in conflict.
        (&[&[1.0, 0.0], &[-0.5, 1.0], &[0.5, 1.0]], &[0.43333333333333335, 0.7999999999999999]),
    ];
    for (j, want) in cases {
        let t = j.len();
        let s = Upgrad::weights_from_gram(&gram(j), t).unwrap();
        assert!(s.kkt_residual <= 1e-10, "{s:?}");
        close(&combine(j, &s.weights), want, 1e-12);
    }
}

#[test]
fn upgrad_never_conflicts_with_a_task_on_random_grams() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for case in 0..400 {
        let t = rng.gen_range(2..=8);
        // p < t makes the Gram rank-deficient.
        let p = rng.gen_range(1..=10);
        let scale = 10f64.powi(rng.gen_range(-6..=6));
        let rows: Vec<Vec<f64>> = random_rows(&mut rng, t, p)
            .into_iter()
            .map(|r| r.iter().map(|v| v * scale).collect())
            .collect();
        let j: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
        let g = gram(&j);
        let norms: Vec<f64> = (0..t).map(|i| g[i * t + i].sqrt()).collect();
        let s = Upgrad::weights_from_gram(&g, t).unwrap();
        assert!(s.kkt_residual <= 1e-10, "case {case} (t {t}, p {p}): {}", s.kkt_residual);
        assert!(s.weights.iter().all(|&w| w >= 1.0 / t as f64 - 1e-15), "{:?}", s.weights);
        // ⟨d, g_j⟩ = (G w)_j ≥ 0 up to rounding, on the scale of ‖g_j‖ Σ_k w_k ‖g_k‖.
        let size: f64 = s.weights.iter().zip(&norms).map(|(w, n)| w * n).sum();
        for (k, p) in times(&g, &s.weights).iter().enumerate() {
            assert!(*p >= -1e-12 * norms[k] * size, "case {case}: ⟨d, g_{k}⟩ = {p}");
        }
        // The direction does not depend on the gradients' scale (the weights need not be
        // unique when p < t, so compare ⟨d, g_j⟩ = (G w)_j).
        let scaled: Vec<f64> = g.iter().map(|v| v * 1e12).collect();
        let w = Upgrad::weights_from_gram(&scaled, t).unwrap().weights;
        for (a, b) in times(&g, &w).iter().zip(times(&g, &s.weights)) {
            assert!((a - b).abs() <= 1e-12 * size * norms.iter().fold(0.0, |m: f64, &n| m.max(n)));
        }
        if p >= t {
            close(&w, &s.weights, 1e-9);
        }
    }
}

#[test]
fn upgrad_on_agreeing_opposite_identical_and_zero_gradients() {
    // Pairwise agreeing gradients (G ≥ 0): nothing is projected, d is the mean gradient.
    let agree: &[&[f64]] = &[&[1.0, 0.0, 2.0], &[0.5, 1.0, 0.0], &[0.0, 3.0, 1.0]];
    let s = Upgrad::weights_from_gram(&gram(agree), 3).unwrap();
    assert_eq!(s.weights, vec![1.0 / 3.0; 3]);
    assert_eq!(s.projected, 0);
    // Opposite gradients: the dual cone is g^⊥, d = 0, no NaN.
    let opposite: &[&[f64]] = &[&[1.0, 2.0], &[-3.0, -6.0]];
    let s = Upgrad::weights_from_gram(&gram(opposite), 2).unwrap();
    assert!(s.weights.iter().all(|w| w.is_finite()));
    close(&combine(opposite, &s.weights), &[0.0, 0.0], 1e-12);
    close(&s.weights, &[2.0, 2.0 / 3.0], 1e-12);
    // Identical gradients and a zero gradient: nothing to project.
    for j in [&[&[1.0, -2.0][..], &[1.0, -2.0]][..], &[&[0.0, 0.0], &[1.0, -2.0]]] {
        let s = Upgrad::weights_from_gram(&gram(j), 2).unwrap();
        assert_eq!(s.weights, vec![0.5, 0.5]);
    }
    // All zero: equal weights 1/T.
    assert_eq!(Upgrad::weights_from_gram(&[0.0; 9], 3).unwrap().weights, vec![1.0 / 3.0; 3]);
}

#[test]
fn upgrad_through_the_interface_with_huge_losses() {
    let rows: Vec<f32> = T3.iter().flat_map(|r| r.iter().map(|&v| v as f32 * 1e6)).collect();
    let g = TaskGradients::from_matrix(3, 4, rows);
    let losses = [1e6, 3e6, 1e6];
    let input = StepInput { shared: Some(&g), ..StepInput::with_losses(&losses) };
    let out = Upgrad.weights(&input).unwrap();
    close(&out.weights, &[0.5872630230983275, 0.4506847764572722, 0.5159468760602977], 1e-6);
    assert_eq!(out.direction, None);
    assert!(out.diagnostic("upgrad.kkt_residual").unwrap()[0] <= 1e-10);
    assert_eq!(out.diagnostic("upgrad.projected"), Some(&[3.0][..]));
    assert!(Upgrad.weights(&StepInput { shared: None, ..input }).is_err());
    assert!(Upgrad::projection_weights(&[1.0], 1, 1).is_err());
}

// ---------------------------------------------------------------------------------------------
// Training

#[derive(Default)]
struct Log(Vec<(Vec<f64>, Vec<f64>)>);

impl Observer for Log {
    fn on_step(&mut self, report: &StepReport) {
        self.0.push((report.weights.clone(), report.losses.clone()));
    }
}

/// Three epochs of the GradNorm toy (tasks of scale 1 and 100) with the registered `method`.
fn train(method: &str) -> Log {
    let config = GradNormToyConfig {
        sigmas: vec![1.0, 100.0],
        input_dim: 20,
        output_dim: 10,
        train: 400,
        test: 10,
        ..GradNormToyConfig::default()
    };
    let splits = gradnorm_toy(&config);
    let mut params = Params::new();
    let model = gradnorm_toy_model(&mut params, &config, 16, 2, 0).unwrap();
    let weighting = by_name(method, &MethodOptions::default()).unwrap();
    let trainer_config = TrainerConfig { epochs: 3, batch_size: 40, ..TrainerConfig::default() };
    let mut trainer = Trainer::from_boxed(trainer_config, Box::new(Adam::new(1e-3)), weighting);
    let mut log = Log::default();
    trainer.fit(&model, &mut params, &splits.train, None, &mut log).unwrap();
    log
}

#[test]
fn both_methods_train_the_toy_end_to_end_deterministically() {
    for method in ["nash-mtl", "upgrad"] {
        let log = train(method);
        assert_eq!(log.0.len(), 30);
        for (weights, losses) in &log.0 {
            assert!(weights.iter().all(|w| w.is_finite() && *w > 0.0), "{method}: {weights:?}");
            assert!(losses.iter().all(|l| l.is_finite()));
        }
        let (first, last) = (&log.0[0].1, &log.0[29].1);
        assert!(
            last[1] < first[1],
            "{method}: the large task's loss should fall: {first:?} {last:?}"
        );
        if method == "nash-mtl" {
            // The task of scale 100 has the larger gradient, so the smaller weight.
            assert!(log.0.iter().all(|(w, _)| w[0] > w[1]), "{method}");
        }
        let again = train(method);
        assert_eq!(again.0, log.0, "{method}: same seed, same run");
    }
}
