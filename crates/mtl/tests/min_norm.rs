//! Tests of the min-norm solver: brute force over supports, closed forms, degenerate inputs,
//! KKT conditions, agreement between methods, and MGDA's descent property.

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_mtl::min_norm::{
    gram_matrix, min_norm_weights, min_norm_weights_with, MinNormError, MinNormMethod,
    MinNormSolution,
};

// ---------------------------------------------------------------------------------------------
// Independent reference: enumerate every support S, solve the equality-constrained QP
//   min mu^T G_SS mu  s.t.  sum mu = 1
// through its KKT system [G_SS 1; 1^T 0] [mu; -nu] = [0; 1] by Gaussian elimination with
// partial pivoting, and keep the best feasible (mu >= 0) one. The optimum is attained on an
// affinely independent support (Caratheodory), whose system is nonsingular.

fn solve_dense(mut a: Vec<f64>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    let size = a.iter().fold(0.0_f64, |m, x| m.max(x.abs()));
    for col in 0..n {
        let pivot =
            (col..n).max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))?;
        if a[pivot * n + col].abs() <= 1e-18 * size {
            return None;
        }
        for k in 0..n {
            a.swap(col * n + k, pivot * n + k);
        }
        b.swap(col, pivot);
        for row in col + 1..n {
            let factor = a[row * n + col] / a[col * n + col];
            for k in col..n {
                a[row * n + k] -= factor * a[col * n + k];
            }
            b[row] -= factor * b[col];
        }
    }
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| a[row * n + k] * b[k]).sum();
        b[row] = (b[row] - tail) / a[row * n + row];
    }
    Some(b)
}

/// Best value and weights over all supports of size at most `max_support`.
fn brute_force(gram: &[f64], t: usize, max_support: usize) -> (f64, Vec<f64>) {
    let mut best = (f64::INFINITY, vec![]);
    for mask in 1_u64..(1 << t) {
        let support: Vec<usize> = (0..t).filter(|&i| mask >> i & 1 == 1).collect();
        let k = support.len();
        if k > max_support {
            continue;
        }
        let n = k + 1;
        // The weights do not change if G_SS is scaled; scaling keeps the border comparable.
        let scale = support.iter().map(|&s| gram[s * t + s]).fold(0.0, f64::max);
        if scale == 0.0 {
            return (0.0, (0..t).map(|i| if i == support[0] { 1.0 } else { 0.0 }).collect());
        }
        let mut a = vec![0.0; n * n];
        for (i, &si) in support.iter().enumerate() {
            for (j, &sj) in support.iter().enumerate() {
                a[i * n + j] = gram[si * t + sj] / scale;
            }
            a[i * n + k] = 1.0;
            a[k * n + i] = 1.0;
        }
        let mut b = vec![0.0; n];
        b[k] = 1.0;
        let Some(x) = solve_dense(a, b) else { continue };
        if x[..k].iter().any(|&m| m < -1e-12) {
            continue;
        }
        let mut weights = vec![0.0; t];
        for (i, &s) in support.iter().enumerate() {
            weights[s] = x[i];
        }
        let value = quad(gram, t, &weights);
        if value < best.0 {
            best = (value, weights);
        }
    }
    best
}

fn quad(gram: &[f64], t: usize, w: &[f64]) -> f64 {
    (0..t).map(|i| (0..t).map(|j| w[i] * gram[i * t + j] * w[j]).sum::<f64>()).sum()
}

fn max_diag(gram: &[f64], t: usize) -> f64 {
    (0..t).map(|i| gram[i * t + i]).fold(0.0, f64::max)
}

/// Random gradients: a shared component plus noise, each row with its own magnitude, so
/// supports of every size occur.
fn random_grads(rng: &mut ChaCha8Rng, t: usize, p: usize, log10_spread: f64) -> Vec<f32> {
    let shared: Vec<f64> = (0..p).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let pull: f64 = rng.gen_range(0.0..2.0);
    let mut grads = Vec::with_capacity(t * p);
    for _ in 0..t {
        let magnitude = 10f64.powf(rng.gen_range(-log10_spread..=log10_spread));
        for s in &shared {
            grads.push((magnitude * (pull * s + rng.gen_range(-1.0..1.0))) as f32);
        }
    }
    grads
}

/// The checks every solution must pass, independent of the method.
fn assert_on_simplex(solution: &MinNormSolution, t: usize) {
    assert_eq!(solution.weights.len(), t);
    assert!(solution.weights.iter().all(|w| w.is_finite() && *w >= 0.0), "{solution:?}");
    let sum: f64 = solution.weights.iter().sum();
    assert!((sum - 1.0).abs() < 1e-12, "weights sum to {sum}");
    assert!(solution.min_norm_sq.is_finite() && solution.min_norm_sq >= 0.0);
    assert!(solution.kkt_residual.is_finite() && solution.kkt_residual >= 0.0);
}

/// KKT conditions of the simplex QP, checked from scratch: (G a)_t >= a^T G a - tol for every
/// t, with equality on the support when `on_support` is set.
fn assert_kkt(gram: &[f64], t: usize, weights: &[f64], rel_tol: f64, on_support: bool) {
    let scale = max_diag(gram, t);
    let q = quad(gram, t, weights);
    for s in 0..t {
        let product: f64 = (0..t).map(|u| gram[s * t + u] * weights[u]).sum();
        assert!(product >= q - rel_tol * scale, "task {s}: (Ga)_t = {product} < q = {q}");
        if on_support && weights[s] > 0.0 {
            assert!(
                (product - q).abs() <= rel_tol * scale,
                "task {s} in support: (Ga)_t = {product} != q = {q}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Brute force

#[test]
fn active_set_matches_brute_force_on_random_problems() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut support_sizes = [0_usize; 9];
    for t in 2..=8 {
        for case in 0..60 {
            // Dimension from 1 (rank one) to 2T: rank-deficient and full-rank problems.
            let p = 1 + case % (2 * t);
            let grads = random_grads(&mut rng, t, p, 2.0);
            let gram = gram_matrix(&grads, t, p);
            let scale = max_diag(&gram, t);
            let (best, _) = brute_force(&gram, t, t);
            for method in [MinNormMethod::Auto, MinNormMethod::ActiveSet] {
                let solution = min_norm_weights_with(&gram, t, method).unwrap();
                assert_on_simplex(&solution, t);
                assert!(
                    (solution.min_norm_sq - best).abs() <= 1e-10 * scale,
                    "t = {t}, p = {p}, {method:?}: solver {} vs brute force {best}",
                    solution.min_norm_sq
                );
                assert!(solution.kkt_residual <= 1e-10, "{solution:?}");
            }
            let weights = min_norm_weights(&gram, t).unwrap().weights;
            support_sizes[weights.iter().filter(|w| **w > 0.0).count()] += 1;
        }
    }
    // The cases exercise vertices, edges and larger faces alike.
    assert!(support_sizes[1] > 10 && support_sizes[2] > 10, "{support_sizes:?}");
    assert!(support_sizes[3..].iter().sum::<usize>() > 10, "{support_sizes:?}");
}

#[test]
fn active_set_weights_match_brute_force_when_the_minimiser_is_unique() {
    // P >= T Gaussian gradients: the Gram matrix is positive definite and the minimiser unique.
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for t in 2..=8 {
        for _ in 0..20 {
            let p = 2 * t + 1;
            let grads = random_grads(&mut rng, t, p, 0.3);
            let gram = gram_matrix(&grads, t, p);
            let (_, best_weights) = brute_force(&gram, t, t);
            let solution = min_norm_weights(&gram, t).unwrap();
            for (a, b) in solution.weights.iter().zip(&best_weights) {
                assert!((a - b).abs() < 1e-8, "{:?} vs {best_weights:?}", solution.weights);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Closed forms and degenerate inputs

#[test]
fn orthogonal_unit_gradients_give_uniform_weights() {
    for t in 2..=6 {
        let mut grads = vec![0.0_f32; t * t];
        (0..t).for_each(|i| grads[i * t + i] = 1.0);
        let gram = gram_matrix(&grads, t, t);
        for method in all_methods() {
            if t > 2 && method == MinNormMethod::ClosedForm {
                continue;
            }
            let solution = min_norm_weights_with(&gram, t, method).unwrap();
            assert_on_simplex(&solution, t);
            for w in &solution.weights {
                assert!((w - 1.0 / t as f64).abs() < 1e-6, "t = {t}, {method:?}: {solution:?}");
            }
            assert!((solution.min_norm_sq - 1.0 / t as f64).abs() < 1e-9);
        }
    }
}

#[test]
fn two_task_closed_form_is_the_foot_of_the_perpendicular() {
    // g1 = (2, 0), g2 = (0, 1): the segment point closest to the origin is
    // gamma g1 + (1 - gamma) g2 with gamma = (|g2|^2 - <g1,g2>) / |g1 - g2|^2 = 1 / 5,
    // i.e. (0.4, 0.8), squared norm 0.16 + 0.64 = 0.8.
    let gram = gram_matrix(&[2.0, 0.0, 0.0, 1.0], 2, 2);
    let solution = min_norm_weights(&gram, 2).unwrap();
    assert_eq!(solution.method, MinNormMethod::ClosedForm);
    assert!((solution.weights[0] - 0.2).abs() < 1e-15 && (solution.weights[1] - 0.8).abs() < 1e-15);
    assert!((solution.min_norm_sq - 0.8).abs() < 1e-15);
    // g1 = (1, 0), g2 = (2, 1): the perpendicular foot lies beyond g1, so g1 itself.
    let gram = gram_matrix(&[1.0, 0.0, 2.0, 1.0], 2, 2);
    let solution = min_norm_weights(&gram, 2).unwrap();
    assert_eq!(solution.weights, vec![1.0, 0.0]);
    assert_eq!(solution.min_norm_sq, 1.0);
    assert_eq!(solution.kkt_residual, 0.0);
}

#[test]
fn opposite_gradients_cancel() {
    // g2 = -g1 with equal norms: equal weights, norm 0.
    let gram = gram_matrix(&[1.0, -2.0, 3.0, -1.0, 2.0, -3.0], 2, 3);
    for method in all_methods() {
        let solution = min_norm_weights_with(&gram, 2, method).unwrap();
        assert_on_simplex(&solution, 2);
        assert!((solution.weights[0] - 0.5).abs() < 1e-9, "{method:?}: {solution:?}");
        assert!(solution.min_norm_sq < 1e-12);
    }
    // g2 = -3 g1: weights (3/4, 1/4) make 3/4 g1 - 3/4 g1 = 0.
    let gram = gram_matrix(&[1.0, 1.0, -3.0, -3.0], 2, 2);
    let solution = min_norm_weights(&gram, 2).unwrap();
    assert!((solution.weights[0] - 0.75).abs() < 1e-15, "{solution:?}");
    assert!(solution.min_norm_sq < 1e-15);
    // Three tasks, two of them opposite: the origin is in the hull.
    let gram = gram_matrix(&[1.0, 2.0, -1.0, -2.0, 5.0, 1.0], 3, 2);
    for method in [MinNormMethod::ActiveSet, MinNormMethod::PROJECTED_GRADIENT] {
        let solution = min_norm_weights_with(&gram, 3, method).unwrap();
        assert!(solution.min_norm_sq < 1e-10, "{method:?}: {solution:?}");
    }
}

#[test]
fn a_zero_gradient_takes_all_the_weight() {
    for t in 1..=4 {
        for zero in 0..t {
            let mut grads: Vec<f32> = (0..t * 3).map(|k| (k as f32 * 0.7).sin() + 2.0).collect();
            grads[zero * 3..zero * 3 + 3].fill(0.0);
            let gram = gram_matrix(&grads, t, 3);
            for method in all_methods() {
                if t > 2 && method == MinNormMethod::ClosedForm {
                    continue;
                }
                let solution = min_norm_weights_with(&gram, t, method).unwrap();
                let mut expected = vec![0.0; t];
                expected[zero] = 1.0;
                assert_eq!(solution.weights, expected, "t = {t}, {method:?}");
                assert_eq!(solution.min_norm_sq, 0.0);
                assert_eq!(solution.kkt_residual, 0.0);
            }
        }
    }
    // Several zero gradients: the first one.
    let gram = gram_matrix(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0], 3, 2);
    assert_eq!(min_norm_weights(&gram, 3).unwrap().weights, vec![0.0, 1.0, 0.0]);
    // All zero.
    let solution = min_norm_weights(&[0.0; 9], 3).unwrap();
    assert_eq!(solution.weights, vec![1.0, 0.0, 0.0]);
}

#[test]
fn identical_gradients_give_their_own_norm() {
    for t in 2..=5 {
        let grads: Vec<f32> = (0..t).flat_map(|_| [0.5_f32, -1.5, 2.0]).collect();
        let gram = gram_matrix(&grads, t, 3);
        for method in all_methods() {
            if t > 2 && method == MinNormMethod::ClosedForm {
                continue;
            }
            let solution = min_norm_weights_with(&gram, t, method).unwrap();
            assert_on_simplex(&solution, t);
            assert!((solution.min_norm_sq - 6.5).abs() < 1e-12, "{method:?}: {solution:?}");
            assert!(solution.kkt_residual < 1e-12);
        }
    }
    // T = 2: any split is optimal; the closed form splits evenly.
    let gram = gram_matrix(&[1.0, 2.0, 1.0, 2.0], 2, 2);
    assert_eq!(min_norm_weights(&gram, 2).unwrap().weights, vec![0.5, 0.5]);
}

#[test]
fn collinear_gradients() {
    // Same direction, magnitudes 3, 1, 2: the shortest one alone.
    let u = [0.6_f32, -0.8];
    let grads: Vec<f32> = [3.0_f32, 1.0, 2.0].iter().flat_map(|c| u.map(|x| c * x)).collect();
    let gram = gram_matrix(&grads, 3, 2);
    for method in all_methods().into_iter().filter(|m| *m != MinNormMethod::ClosedForm) {
        let solution = min_norm_weights_with(&gram, 3, method).unwrap();
        assert!((solution.weights[1] - 1.0).abs() < 1e-9, "{method:?}: {solution:?}");
        assert!((solution.min_norm_sq - gram[4]).abs() < 1e-12);
    }
    // Magnitudes 2 and -1 on one line: weights (1/3, 2/3) cancel them.
    let grads: Vec<f32> = [2.0_f32, -1.0].iter().flat_map(|c| u.map(|x| c * x)).collect();
    let solution = min_norm_weights(&gram_matrix(&grads, 2, 2), 2).unwrap();
    assert!((solution.weights[0] - 1.0 / 3.0).abs() < 1e-7, "{solution:?}");
    assert!(solution.min_norm_sq < 1e-12);
    // 2, -1, 3 on one line: the origin is reached (not uniquely).
    let grads: Vec<f32> = [2.0_f32, -1.0, 3.0].iter().flat_map(|c| u.map(|x| c * x)).collect();
    let solution = min_norm_weights(&gram_matrix(&grads, 3, 2), 3).unwrap();
    assert!(solution.min_norm_sq < 1e-12, "{solution:?}");
}

#[test]
fn extreme_magnitudes_scale_out() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for t in [2, 3, 5, 8] {
        let p = 6;
        let grads = random_grads(&mut rng, t, p, 0.5);
        let reference = min_norm_weights(&gram_matrix(&grads, t, p), t).unwrap();
        for factor in [1e-8_f32, 1e8] {
            let scaled: Vec<f32> = grads.iter().map(|g| g * factor).collect();
            let solution = min_norm_weights(&gram_matrix(&scaled, t, p), t).unwrap();
            let factor_sq = f64::from(factor).powi(2);
            for (a, b) in solution.weights.iter().zip(&reference.weights) {
                assert!((a - b).abs() < 1e-6, "factor {factor}: {solution:?} vs {reference:?}");
            }
            let expected = reference.min_norm_sq * factor_sq;
            assert!(
                (solution.min_norm_sq - expected).abs() <= 1e-6 * expected.max(1e-12 * factor_sq),
                "factor {factor}: {} vs {expected}",
                solution.min_norm_sq
            );
            assert!(solution.kkt_residual < 1e-10);
        }
    }
    // Mixed: g1 = 1e-8 e1, g2 = 1e8 e2. Closed form: alpha_1 = 1e16 / (1e16 + 1e-16),
    // norm^2 = 1e-16 * 1e16 / (1e16 + 1e-16) ~= 1e-16.
    // (The iterative methods stop on tolerances relative to the largest squared norm, 1e16
    // here, so they are not expected to resolve the 1e-16 answer.)
    let gram = gram_matrix(&[1e-8, 0.0, 0.0, 1e8], 2, 2);
    let exact = [MinNormMethod::Auto, MinNormMethod::ClosedForm, MinNormMethod::ActiveSet];
    for method in exact {
        let solution = min_norm_weights_with(&gram, 2, method).unwrap();
        assert!((solution.weights[0] - 1.0).abs() < 1e-12, "{method:?}: {solution:?}");
        let expected = f64::from(1e-8_f32).powi(2);
        assert!((solution.min_norm_sq - expected).abs() < 1e-9 * expected, "{solution:?}");
    }
    // Mixed, three tasks: a tiny gradient opposite to a big one.
    let gram = gram_matrix(&[1e8, 0.0, -1e-8, 0.0, 0.0, 1.0], 3, 2);
    let solution = min_norm_weights(&gram, 3).unwrap();
    assert!(solution.min_norm_sq < 1e-20, "{solution:?}");
    assert_kkt(&gram, 3, &solution.weights, 1e-12, true);
}

#[test]
fn more_tasks_than_dimensions() {
    let mut rng = ChaCha8Rng::seed_from_u64(20);
    for offset in [0.0_f64, 0.5, 3.0] {
        for _ in 0..10 {
            // T = 20 gradients in 3 dimensions; an offset pushes the origin out of the hull.
            let (t, p) = (20, 3);
            let grads: Vec<f32> = (0..t * p)
                .map(|k| (rng.gen_range(-1.0..1.0) + offset * (k % p == 0) as u8 as f64) as f32)
                .collect();
            let gram = gram_matrix(&grads, t, p);
            let (best, _) = brute_force(&gram, t, p + 1);
            let solution = min_norm_weights(&gram, t).unwrap();
            assert_on_simplex(&solution, t);
            assert!(
                (solution.min_norm_sq - best).abs() < 1e-10 * max_diag(&gram, t),
                "offset {offset}: {} vs {best}",
                solution.min_norm_sq
            );
            assert!(solution.weights.iter().filter(|w| **w > 0.0).count() <= p + 1);
            assert_kkt(&gram, t, &solution.weights, 1e-10, true);
        }
    }
}

#[test]
fn large_problems_satisfy_kkt_and_match_projected_gradient() {
    let mut rng = ChaCha8Rng::seed_from_u64(64);
    for (t, p) in [(32, 100), (64, 100), (64, 10), (64, 64)] {
        // Norms spread over two decades (KKT only), then over a factor of about 2.5, where
        // projected gradient converges fully and must land on the same minimum.
        for spread in [1.0, 0.2] {
            let grads = random_grads(&mut rng, t, p, spread);
            let gram = gram_matrix(&grads, t, p);
            let solution = min_norm_weights(&gram, t).unwrap();
            assert_eq!(solution.method, MinNormMethod::ActiveSet);
            assert_on_simplex(&solution, t);
            assert!(solution.kkt_residual < 1e-10, "t = {t}, p = {p}: {solution:?}");
            assert_kkt(&gram, t, &solution.weights, 1e-10, true);
            assert_descent(&grads, t, p, &solution.weights);
            if spread < 0.5 {
                let slow = MinNormMethod::ProjectedGradient { max_iter: 200_000, tol: 1e-13 };
                let reference = min_norm_weights_with(&gram, t, slow).unwrap();
                let scale = max_diag(&gram, t);
                assert!(reference.kkt_residual < 1e-11, "{reference:?}");
                let excess = reference.min_norm_sq - solution.min_norm_sq;
                assert!(excess.abs() < 1e-11 * scale, "t = {t}, p = {p}: {excess}");
            }
        }
    }
}

#[test]
fn rounding_level_negative_eigenvalues_are_tolerated() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for _ in 0..20 {
        // Rank two, six tasks, then symmetric noise at 1e-14 of the scale.
        let (t, p) = (6, 2);
        let grads = random_grads(&mut rng, t, p, 1.0);
        let exact = gram_matrix(&grads, t, p);
        let scale = max_diag(&exact, t);
        let mut noisy = exact.clone();
        for i in 0..t {
            for j in i..t {
                let noise = rng.gen_range(-1e-14..1e-14) * scale;
                noisy[i * t + j] += noise;
                if i != j {
                    noisy[j * t + i] += noise;
                }
            }
        }
        let clean = min_norm_weights(&exact, t).unwrap();
        let solution = min_norm_weights(&noisy, t).unwrap();
        assert_on_simplex(&solution, t);
        assert!((solution.min_norm_sq - clean.min_norm_sq).abs() < 1e-10 * scale);
        assert!(solution.kkt_residual < 1e-10, "{solution:?}");
    }
}

#[test]
fn regression_nearly_identical_pair_picks_the_shorter_endpoint() {
    // |g1 - g2|^2 is 2.5e-14 of |g1|^2 + |g2|^2: the perpendicular foot lies far outside the
    // segment and g1 (the shorter) is the answer, not the midpoint.
    let grads = [0.0, 0.0, 0.781_397_1, 1e-7, 1e-7, 0.781_397_2];
    let gram = gram_matrix(&grads, 2, 3);
    let solution = min_norm_weights(&gram, 2).unwrap();
    assert_eq!(solution.weights, vec![1.0, 0.0]);
    assert_kkt(&gram, 2, &solution.weights, 1e-12, true);
}

#[test]
fn regression_opposite_pair_after_a_third_gradient() {
    // g3 = -g2. The corral {g2, g1} is left for {g2, g3}, whose midpoint is the origin.
    let grads = [-0.839_790_4, -0.886_533_86, -0.273_479_28, -0.104_742_39, 0.496_204_88];
    let grads: Vec<f32> = grads.iter().copied().chain([0.445_786_06, 0.104_742_39]).collect();
    let grads: Vec<f32> = grads.into_iter().chain([-0.496_204_88, -0.445_786_06]).collect();
    let gram = gram_matrix(&grads, 3, 3);
    let solution = min_norm_weights(&gram, 3).unwrap();
    assert_eq!(solution.weights, vec![0.0, 0.5, 0.5]);
    assert_eq!(solution.min_norm_sq, 0.0);
}

#[test]
fn regression_mixed_scales_in_one_corral() {
    // Two gradients of norm ~1 and one of norm 1e7: the optimum puts ~7e-8 on the big one.
    // The affine-dependence test must judge the small pair on its own scale.
    let grads = [0.0, 0.292_023_66, 0.410_955_34, -0.997_632_7, 0.0, -7_017_217.0, 7_124_508.5];
    let grads: Vec<f32> = grads
        .iter()
        .copied()
        .chain([0.0, 0.0, 0.316_455_72, -0.861_668_05, -0.660_325_47])
        .collect();
    let gram = gram_matrix(&grads, 3, 4);
    let solution = min_norm_weights(&gram, 3).unwrap();
    let (best, _) = brute_force(&gram, 3, 3);
    assert!((solution.min_norm_sq - best).abs() < 1e-9 * best, "{solution:?} vs {best}");
    assert!(solution.weights[1] > 0.0);
}

// ---------------------------------------------------------------------------------------------
// Agreement between methods

fn all_methods() -> Vec<MinNormMethod> {
    vec![
        MinNormMethod::Auto,
        MinNormMethod::ClosedForm,
        MinNormMethod::ActiveSet,
        MinNormMethod::FrankWolfe { max_iter: 100_000, tol: 1e-14 },
        MinNormMethod::ProjectedGradient { max_iter: 100_000, tol: 1e-14 },
    ]
}

#[test]
fn all_methods_agree_with_the_active_set() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for t in 2..=8 {
        for _ in 0..20 {
            let p = 2 * t;
            let grads = random_grads(&mut rng, t, p, 0.3);
            let gram = gram_matrix(&grads, t, p);
            let scale = max_diag(&gram, t);
            let exact = min_norm_weights_with(&gram, t, MinNormMethod::ActiveSet).unwrap();
            for method in all_methods() {
                if t > 2 && method == MinNormMethod::ClosedForm {
                    continue;
                }
                let solution = min_norm_weights_with(&gram, t, method).unwrap();
                assert_on_simplex(&solution, t);
                // Nothing beats the exact minimum; the iterative methods come close to it
                // (Frank-Wolfe only at its O(1/k) rate: 1e5 steps bound the excess by ~8e-5).
                let excess = solution.min_norm_sq - exact.min_norm_sq;
                assert!(excess > -1e-12 * scale, "{method:?} beat the active set by {excess}");
                let allowed = match method {
                    MinNormMethod::FrankWolfe { .. } => 1e-4,
                    _ => 1e-11,
                };
                assert!(excess < allowed * scale, "t = {t}, {method:?}: excess {excess}");
                if let MinNormMethod::ProjectedGradient { .. } = method {
                    for (a, b) in solution.weights.iter().zip(&exact.weights) {
                        assert!((a - b).abs() < 1e-5, "{solution:?} vs {exact:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn default_frank_wolfe_is_close_and_reports_its_residual() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let (t, p) = (5, 10);
    let grads = random_grads(&mut rng, t, p, 0.3);
    let gram = gram_matrix(&grads, t, p);
    let exact = min_norm_weights(&gram, t).unwrap();
    let fw = min_norm_weights_with(&gram, t, MinNormMethod::FRANK_WOLFE).unwrap();
    assert!(fw.iterations <= 250);
    assert!(fw.min_norm_sq >= exact.min_norm_sq - 1e-12 * max_diag(&gram, t));
    // The residual tells the truth about the inexact answer: it is larger than the exact one's.
    assert!(fw.kkt_residual >= exact.kkt_residual, "{fw:?} vs {exact:?}");
}

// ---------------------------------------------------------------------------------------------
// Properties on random inputs

/// Gradients whose rows are copies, negations, rescalings and zeros of a few base rows.
fn nasty_gradients(max_t: usize) -> impl Strategy<Value = (usize, usize, Vec<f32>)> {
    (1_usize..=max_t, 1_usize..=6).prop_flat_map(|(t, p)| {
        let base = prop::collection::vec(-1.0_f32..1.0, 3 * p);
        let rows = prop::collection::vec((0_usize..3, 0_u8..5, -8_i32..=8), t);
        (Just(t), Just(p), base, rows).prop_map(|(t, p, base, rows)| {
            let mut grads = Vec::with_capacity(t * p);
            for (which, op, exponent) in rows {
                let row = &base[which * p..(which + 1) * p];
                let factor = 10f32.powi(exponent);
                grads.extend(row.iter().map(|&x| match op {
                    0 => x,
                    1 => -x,
                    2 => x * factor,
                    3 => 0.0,
                    _ => x + 0.001 * factor.min(1.0),
                }));
            }
            (t, p, grads)
        })
    })
}

/// Random gradients, each row scaled by `10^e` with `e` in `-max_exponent..=max_exponent`.
fn plain_gradients(max_exponent: i32) -> impl Strategy<Value = (usize, usize, Vec<f32>)> {
    (1_usize..=12, 1_usize..=10).prop_flat_map(move |(t, p)| {
        let values = prop::collection::vec(-10.0_f32..10.0, t * p);
        let exponents = prop::collection::vec(-max_exponent..=max_exponent, t);
        (Just(t), Just(p), values, exponents).prop_map(|(t, p, mut values, exponents)| {
            for (row, e) in values.chunks_mut(p).zip(exponents) {
                row.iter_mut().for_each(|x| *x *= 10f32.powi(e));
            }
            (t, p, values)
        })
    })
}

/// MGDA's descent property on the gradients themselves: with d = sum a_t g_t,
/// <g_t, d> >= |d|^2 - tol >= -tol for every task.
fn assert_descent(grads: &[f32], t: usize, p: usize, weights: &[f64]) {
    let row = |s: usize| grads[s * p..(s + 1) * p].iter().map(|&x| f64::from(x));
    let mut d = vec![0.0; p];
    for (s, &w) in weights.iter().enumerate() {
        d.iter_mut().zip(row(s)).for_each(|(d, g)| *d += w * g);
    }
    let d_sq: f64 = d.iter().map(|x| x * x).sum();
    let scale = (0..t).map(|s| row(s).map(|g| g * g).sum::<f64>()).fold(0.0, f64::max);
    for s in 0..t {
        let inner: f64 = row(s).zip(&d).map(|(g, d)| g * d).sum();
        assert!(inner >= d_sq - 1e-9 * scale, "task {s}: <g, d> = {inner} < |d|^2 = {d_sq}");
        assert!(inner >= -1e-9 * scale);
    }
}

// Tolerances. On gradients whose norms span up to 8 decades the solver reaches the rounding
// level (residual ~1e-15). Beyond that, with near-collinear gradients whose norms differ by
// 1e8 or more (1e16 in the Gram matrix), the Gram matrix no longer resolves the geometry to
// the last digit: in 20 000 random cases of that kind 6 solves ended above 1e-10, the worst at
// 4.3e-4; the residual reports it.
const ACCURATE: f64 = 1e-10;
const EXTREME: f64 = 1e-3;

proptest! {
    // A fixed seed keeps the suite deterministic; the failures found so far are replayed from
    // min_norm.proptest-regressions and pinned as the regression_* tests above.
    #![proptest_config(ProptestConfig {
        cases: 1000,
        rng_seed: RngSeed::Fixed(5),
        ..ProptestConfig::default()
    })]

    #[test]
    fn kkt_conditions_hold((t, p, grads) in plain_gradients(4)) {
        let gram = gram_matrix(&grads, t, p);
        let solution = min_norm_weights(&gram, t).unwrap();
        assert_on_simplex(&solution, t);
        prop_assert!(solution.kkt_residual <= ACCURATE, "{:?}", solution);
        assert_kkt(&gram, t, &solution.weights, ACCURATE, true);
        assert_descent(&grads, t, p, &solution.weights);
    }

    #[test]
    fn kkt_conditions_hold_for_norms_from_1e_minus_8_to_1e8(
        (t, p, grads) in plain_gradients(8)
    ) {
        let gram = gram_matrix(&grads, t, p);
        let solution = min_norm_weights(&gram, t).unwrap();
        assert_on_simplex(&solution, t);
        prop_assert!(solution.kkt_residual <= EXTREME, "{:?}", solution);
        assert_kkt(&gram, t, &solution.weights, ACCURATE, false);
        assert_descent(&grads, t, p, &solution.weights);
    }

    #[test]
    fn degenerate_inputs_never_break_the_solver((t, p, grads) in nasty_gradients(12)) {
        let gram = gram_matrix(&grads, t, p);
        let solution = min_norm_weights(&gram, t).unwrap();
        assert_on_simplex(&solution, t);
        prop_assert!(solution.kkt_residual <= EXTREME, "{:?}", solution);
        assert_kkt(&gram, t, &solution.weights, ACCURATE, false);
        assert_descent(&grads, t, p, &solution.weights);
        for method in [MinNormMethod::FRANK_WOLFE, MinNormMethod::PROJECTED_GRADIENT] {
            let other = min_norm_weights_with(&gram, t, method).unwrap();
            assert_on_simplex(&other, t);
            prop_assert!(other.min_norm_sq >= solution.min_norm_sq - ACCURATE * max_diag(&gram, t));
        }
    }

    #[test]
    fn degenerate_inputs_match_brute_force((t, p, grads) in nasty_gradients(7)) {
        let gram = gram_matrix(&grads, t, p);
        let solution = min_norm_weights(&gram, t).unwrap();
        let (best, _) = brute_force(&gram, t, t);
        let scale = max_diag(&gram, t);
        prop_assert!(
            (solution.min_norm_sq - best).abs() <= ACCURATE * scale,
            "{:?} vs {}", solution, best
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Gram matrix and input checks

#[test]
fn gram_matrix_matches_a_naive_loop() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    for p in [0, 1, 7, 8, 9, 16, 17, 100, 1001] {
        let t = 3;
        let grads: Vec<f32> = (0..t * p).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let gram = gram_matrix(&grads, t, p);
        for s in 0..t {
            for u in 0..t {
                let naive: f64 =
                    (0..p).map(|k| f64::from(grads[s * p + k]) * f64::from(grads[u * p + k])).sum();
                assert!((gram[s * t + u] - naive).abs() <= 1e-13 * (1.0 + naive.abs()));
                assert_eq!(gram[s * t + u], gram[u * t + s]);
            }
        }
    }
}

#[test]
#[should_panic(expected = "expected t * p")]
fn gram_matrix_rejects_a_wrong_length() {
    gram_matrix(&[1.0, 2.0, 3.0], 2, 2);
}

#[test]
fn invalid_inputs_are_rejected_with_a_clear_error() {
    assert_eq!(min_norm_weights(&[], 0), Err(MinNormError::NoTasks));
    assert!(matches!(
        min_norm_weights(&[1.0, 0.0, 0.0], 2),
        Err(MinNormError::NotSquare { len: 3, t: 2, expected: 4 })
    ));
    let err = min_norm_weights(&[1.0, 0.0, f64::NAN, 1.0], 2).unwrap_err();
    assert!(matches!(err, MinNormError::NonFinite { row: 1, col: 0, .. }));
    assert!(err.to_string().contains("(1, 0)"), "{err}");
    let err = min_norm_weights(&[1.0, f64::INFINITY, 0.0, 1.0], 2).unwrap_err();
    assert!(matches!(err, MinNormError::NonFinite { row: 0, col: 1, .. }));
    assert!(matches!(
        min_norm_weights(&[1.0, 0.5, 0.4, 1.0], 2),
        Err(MinNormError::Asymmetric { row: 0, col: 1, .. })
    ));
    assert!(matches!(
        min_norm_weights(&[1.0, 0.0, 0.0, -0.1], 2),
        Err(MinNormError::NegativeDiagonal { index: 1, .. })
    ));
    assert!(matches!(
        min_norm_weights(&[1.0, 2.0, 2.0, 1.0], 2),
        Err(MinNormError::NotPositiveSemidefinite { row: 0, col: 1, .. })
    ));
    assert_eq!(
        min_norm_weights_with(&[1.0; 9], 3, MinNormMethod::ClosedForm),
        Err(MinNormError::ClosedFormNeedsTwoTasks { t: 3 })
    );
    let bad_tol = MinNormMethod::FrankWolfe { max_iter: 10, tol: -1.0 };
    assert!(matches!(
        min_norm_weights_with(&[1.0], 1, bad_tol),
        Err(MinNormError::InvalidTolerance { method: "FrankWolfe", .. })
    ));
    // Rounding-level asymmetry and negative diagonal are accepted.
    let solution = min_norm_weights(&[1.0, 1e-12, 0.0, -1e-12], 2).unwrap();
    assert_eq!(solution.weights, vec![0.0, 1.0]);
}

#[test]
fn a_single_task_gets_weight_one() {
    let solution = min_norm_weights(&[4.0], 1).unwrap();
    assert_eq!(solution.weights, vec![1.0]);
    assert_eq!(solution.min_norm_sq, 4.0);
    assert_eq!(solution.method, MinNormMethod::ClosedForm);
}
