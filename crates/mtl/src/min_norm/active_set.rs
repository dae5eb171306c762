//! Wolfe's nearest-point algorithm (P. Wolfe, "Finding the nearest point in a polytope",
//! Math. Programming 11, 1976), written on the Gram matrix.
//!
//! The state is a *corral* `S` of affinely independent gradients and weights `lambda > 0` on
//! it; `x = sum_{s in S} lambda_s g_s`. At the start of every major cycle `x` is the point of
//! the affine hull of `S` closest to the origin, so `<x, g_s> = |x|^2` for every `s` in `S`.
//!
//! - **Major cycle.** Take `j = argmin_t <x, g_t> = argmin_t (G lambda)_t`. If
//!   `<x, g_j> >= |x|^2` (up to a tolerance) no gradient lies beyond the hyperplane through `x`
//!   normal to `x`, which is the optimality condition: stop. Otherwise add `j` to `S`.
//! - **Minor cycle.** Let `y = sum mu_s g_s` be the point of the affine hull of `S` closest to
//!   the origin (`sum mu_s = 1`, signs free). If every `mu_s > 0`, move to it and start a major
//!   cycle. Otherwise walk from `lambda` towards `mu` until the first weight reaches zero, drop
//!   that point from `S`, and repeat.
//!
//! `|x|` strictly decreases from one major cycle to the next, so no corral repeats and the
//! algorithm is finite. Numerically, the loop also stops when a cycle fails to decrease `|x|`,
//! when the new point is already in `S`, or when it is affinely dependent on `S` up to
//! rounding; and after a fixed number of cycles. Each minor cycle solves a small positive
//! definite system by Cholesky, from scratch (`|S| <= T`, and T is small).

use super::{argmin, gram_times};

/// Optimality tolerance, relative to the largest squared norm in the corral (Wolfe's Z1).
const OPTIMALITY_TOL: f64 = 1e-12;
/// A Cholesky pivot (a squared distance to the affine hull of the other points) at most this
/// times the largest squared norm in the corral counts as zero: affinely dependent.
const DEPENDENCE_TOL: f64 = 1e-13;

/// Runs the algorithm on a Gram matrix scaled so its largest diagonal entry is 1, with no zero
/// diagonal entry and `t >= 2`. Returns the weights and the number of major cycles.
pub(super) fn wolfe(gram: &[f64], t: usize) -> (Vec<f64>, usize) {
    let at = |i: usize, j: usize| gram[i * t + j];
    let start = argmin(&(0..t).map(|i| at(i, i)).collect::<Vec<_>>()).0;
    let mut corral = vec![start];
    let mut weights = vec![0.0; t];
    weights[start] = 1.0;
    let mut products = vec![0.0; t];
    let max_major = 50 * t + 100;

    let mut major = 0;
    while major < max_major {
        gram_times(gram, t, &weights, &mut products);
        let norm_sq = dot(&weights, &products);
        let (entering, product) = argmin(&products);
        let local_scale = corral.iter().map(|&s| at(s, s)).fold(0.0_f64, f64::max);
        if norm_sq - product <= OPTIMALITY_TOL * local_scale || corral.contains(&entering) {
            break;
        }
        major += 1;
        let saved = weights.clone();
        corral.push(entering);
        minor_cycles(gram, t, &mut corral, &mut weights);

        gram_times(gram, t, &weights, &mut products);
        let new_norm_sq = dot(&weights, &products);
        if new_norm_sq.is_nan() || new_norm_sq >= norm_sq {
            // No progress: rounding has the last word. Keep the previous point.
            weights = saved;
            break;
        }
    }
    (weights, major)
}

/// Minor cycles after a point joined the corral (with weight 0). Returns with `weights` the
/// affine minimiser of the final corral if its coefficients were all positive, or the last
/// feasible point reached if an affine minimiser could not be computed.
fn minor_cycles(gram: &[f64], t: usize, corral: &mut Vec<usize>, weights: &mut [f64]) {
    loop {
        let Some(affine) = affine_minimiser(gram, t, corral) else {
            return;
        };
        if affine.iter().all(|&m| m > 0.0) {
            for (&s, &m) in corral.iter().zip(&affine) {
                weights[s] = m;
            }
            return;
        }
        // Walk from `weights` towards `affine` until the first weight hits zero.
        let mut step = 1.0;
        let mut leaving = 0;
        for (k, (&s, &m)) in corral.iter().zip(&affine).enumerate() {
            if m <= 0.0 {
                let w = weights[s];
                let ratio = if w - m > 0.0 { w / (w - m) } else { 0.0 };
                if ratio < step {
                    step = ratio;
                    leaving = k;
                }
            }
        }
        for (&s, &m) in corral.iter().zip(&affine) {
            weights[s] = (1.0 - step) * weights[s] + step * m;
        }
        weights[corral[leaving]] = 0.0;
        corral.retain(|&s| {
            let keep = weights[s] > 0.0;
            if !keep {
                weights[s] = 0.0;
            }
            keep
        });
        let total: f64 = corral.iter().map(|&s| weights[s]).sum();
        corral.iter().for_each(|&s| weights[s] /= total);
    }
}

/// The coefficients `mu` (summing to 1) of the point of the affine hull of the corral closest
/// to the origin, or `None` if the corral is affinely dependent up to rounding.
///
/// With base point `b = corral[0]` and directions `d_i = g_i - g_b`, the point is
/// `g_b + sum c_i d_i` with `(D^T D) c = -D^T g_b`, where
/// `(D^T D)_ij = G_ij - G_ib - G_bj + G_bb` and `(D^T g_b)_i = G_ib - G_bb`.
fn affine_minimiser(gram: &[f64], t: usize, corral: &[usize]) -> Option<Vec<f64>> {
    let at = |i: usize, j: usize| gram[i * t + j];
    let base = corral[0];
    let others = &corral[1..];
    let m = others.len();
    let local_scale = corral.iter().map(|&s| at(s, s)).fold(0.0_f64, f64::max);

    // Lower Cholesky factor of D^T D, row-major m x m.
    let mut chol = vec![0.0; m * m];
    for i in 0..m {
        for j in 0..=i {
            let (oi, oj) = (others[i], others[j]);
            let mut value = at(oi, oj) - at(oi, base) - at(base, oj) + at(base, base);
            for k in 0..j {
                value -= chol[i * m + k] * chol[j * m + k];
            }
            if i == j {
                if value.is_nan() || value <= DEPENDENCE_TOL * local_scale {
                    return None;
                }
                chol[i * m + i] = value.sqrt();
            } else {
                chol[i * m + j] = value / chol[j * m + j];
            }
        }
    }
    // Forward then backward substitution.
    let mut c: Vec<f64> = others.iter().map(|&o| at(base, base) - at(o, base)).collect();
    for i in 0..m {
        for k in 0..i {
            c[i] -= chol[i * m + k] * c[k];
        }
        c[i] /= chol[i * m + i];
    }
    for i in (0..m).rev() {
        for k in i + 1..m {
            c[i] -= chol[k * m + i] * c[k];
        }
        c[i] /= chol[i * m + i];
    }
    let mut affine = Vec::with_capacity(m + 1);
    affine.push(1.0 - c.iter().sum::<f64>());
    affine.extend(c);
    affine.iter().all(|x| x.is_finite()).then_some(affine)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
