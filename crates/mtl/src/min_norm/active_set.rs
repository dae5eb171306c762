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
//! algorithm is finite. Each minor cycle solves a small positive definite system by Cholesky,
//! from scratch (`|S| <= T`, and T is small), with the shortest member of the corral as base
//! point so that the differences `g_i - g_b` do not cancel.
//!
//! In floating point:
//!
//! - it starts from the best pair of tasks instead of the shortest gradient;
//! - a major cycle that fails to decrease `|x|` ends the cycles (anti-cycling), as does a fixed
//!   cap on their number;
//! - a new point that is affinely dependent on the corral up to rounding is tried in place of
//!   each member instead;
//! - pairwise steps ([`polish`]) then finish the job with products by `G` only, and the whole is
//!   restarted from the polished support at most [`ROUNDS`] times if that was not enough.

use super::{argmin, gram_times, segment_value, segment_weights, violations};

/// Optimality tolerance on the normalised dual violation of [`violations`] (Wolfe's Z1).
const OPTIMALITY_TOL: f64 = 1e-12;
/// A Cholesky pivot (the squared distance of `g_i - g_b` to the span of the earlier
/// directions) at most this times `|g_i - g_b|^2 + |g_i|^2 + |g_b|^2` (the size of the
/// rounding in it) counts as zero: the point is affinely dependent on the earlier ones.
const DEPENDENCE_TOL: f64 = 1e-14;
/// The polishing steps stop once the normalised dual and support violations of
/// [`violations`] are at most this.
const POLISH_TOL: f64 = 1e-14;

/// Rounds of major cycles and polishing; a round restarts from the support of the last.
const ROUNDS: usize = 3;

/// Runs the algorithm on a Gram matrix scaled so its largest diagonal entry is 1, with no zero
/// diagonal entry and `t >= 2`. Returns the weights and the number of major cycles plus
/// polishing steps.
///
/// If major cycles and polishing stop short of [`POLISH_TOL`] (near-degenerate inputs), the
/// major cycles restart from the support of the polished point, up to [`ROUNDS`] times.
pub(super) fn wolfe(gram: &[f64], t: usize) -> (Vec<f64>, usize) {
    let norms: Vec<f64> = (0..t).map(|i| gram[i * t + i].sqrt()).collect();
    let (mut corral, mut weights) = best_pair(gram, t);
    let mut products = vec![0.0; t];
    let mut iterations = 0;
    for _ in 0..ROUNDS {
        iterations += major_cycles(gram, t, &norms, &mut corral, &mut weights);
        iterations += polish(gram, t, &norms, &mut weights);
        gram_times(gram, t, &weights, &mut products);
        let violation = violations(&weights, &products, &norms);
        if violation.dual.max(violation.support) <= POLISH_TOL {
            break;
        }
        corral = (0..t).filter(|&s| weights[s] > 0.0).collect();
        minor_cycles(gram, t, &mut corral, &mut weights, None);
    }
    (weights, iterations)
}

/// The start: the best pair of tasks by the T = 2 closed form (Wolfe starts from the
/// shortest gradient; the pair costs O(T^2) and settles opposite gradients at once). The
/// corral is the pair if its optimum is interior, else the vertex.
fn best_pair(gram: &[f64], t: usize) -> (Vec<usize>, Vec<f64>) {
    let at = |i: usize, j: usize| gram[i * t + j];
    let mut best = (f64::INFINITY, 0, 1, [1.0, 0.0]);
    for i in 0..t {
        for j in i + 1..t {
            let pair = segment_weights(at(i, i), at(i, j), at(j, j));
            let value = segment_value(pair, at(i, i), at(i, j), at(j, j));
            if value < best.0 {
                best = (value, i, j, pair);
            }
        }
    }
    let (_, i, j, [w_i, w_j]) = best;
    let mut weights = vec![0.0; t];
    weights[i] = w_i;
    weights[j] = w_j;
    let corral = [i, j].into_iter().filter(|&s| weights[s] > 0.0).collect();
    (corral, weights)
}

/// Wolfe's major cycles from a corral whose weights are its affine minimiser; returns their
/// number.
fn major_cycles(
    gram: &[f64],
    t: usize,
    norms: &[f64],
    corral: &mut Vec<usize>,
    weights: &mut Vec<f64>,
) -> usize {
    let mut products = vec![0.0; t];
    let max_major = 50 * t + 100;
    let mut major = 0;
    while major < max_major {
        gram_times(gram, t, weights, &mut products);
        let norm_sq = dot(weights, &products);
        let (entering, _) = argmin(&products);
        if violations(weights, &products, norms).dual <= OPTIMALITY_TOL
            || corral.contains(&entering)
        {
            break;
        }
        major += 1;
        let saved = (corral.clone(), weights.clone());
        corral.push(entering);
        if let Some(affine) = affine_minimiser(gram, t, corral) {
            minor_cycles(gram, t, corral, weights, Some(affine));
        } else {
            // `entering` lies in the affine hull of the corral up to rounding; it can still
            // lower the norm in place of one member (say, the tiny gradient of a corral
            // {tiny, g} offered -g).
            corral.pop();
            let Some((swapped, affine)) = best_swap(gram, t, corral, entering) else {
                break;
            };
            corral.iter().for_each(|&s| weights[s] = 0.0);
            swapped.iter().zip(&affine).for_each(|(&s, &m)| weights[s] = m);
            *corral = swapped;
        }

        gram_times(gram, t, weights, &mut products);
        let new_norm_sq = dot(weights, &products);
        if new_norm_sq.is_nan() || new_norm_sq >= norm_sq {
            // No progress: rounding has the last word. Keep the previous point.
            (*corral, *weights) = saved;
            break;
        }
    }
    major
}

/// The corral with `entering` in place of one member whose affine minimiser has positive
/// coefficients and the smallest norm, with those coefficients.
fn best_swap(
    gram: &[f64],
    t: usize,
    corral: &[usize],
    entering: usize,
) -> Option<(Vec<usize>, Vec<f64>)> {
    let mut best: Option<(f64, Vec<usize>, Vec<f64>)> = None;
    for position in 0..corral.len() {
        let mut swapped = corral.to_vec();
        swapped[position] = entering;
        let Some(affine) = affine_minimiser(gram, t, &swapped) else { continue };
        if affine.iter().any(|&m| m <= 0.0) {
            continue;
        }
        let norm_sq: f64 = swapped
            .iter()
            .zip(&affine)
            .map(|(&a, &ma)| {
                swapped.iter().zip(&affine).map(|(&b, &mb)| ma * gram[a * t + b] * mb).sum::<f64>()
            })
            .sum();
        if best.as_ref().is_none_or(|b| norm_sq < b.0) {
            best = Some((norm_sq, swapped, affine));
        }
    }
    best.map(|(_, swapped, affine)| (swapped, affine))
}

/// Pairwise steps after the active set, as in SMO solvers for support vector machines: move
/// weight `eta` from a support task `k` to a task `i`, along `e_i - e_k`, choosing the pair
/// and the (exact, clipped to `alpha_k`) step that lower `alpha^T G alpha` the most:
/// with `v = (G alpha)_k - (G alpha)_i > 0` and `c = G_ii + G_kk - 2 G_ik = |g_i - g_k|^2`,
/// `eta = min(v / c, alpha_k)` lowers it by `eta (2 v - eta c)`. Stops once the violations are
/// at most [`POLISH_TOL`], when no pair improves, or after `10 T + 100` steps; returns the
/// number of steps.
///
/// The active set's linear solves square the conditioning of the gradients (they work on the
/// Gram matrix), so a gradient within about `1e-7` (relative) of the affine hull of the corral
/// is judged dependent, or rounding in the norm hides the progress of a cycle, and the loop
/// above stops short of the rounding level. These steps use only products with `G`, and
/// remove the rest (for instance by swapping the weight of a gradient for that of a
/// near-duplicate in one step); on well-separated problems they find nothing to do.
fn polish(gram: &[f64], t: usize, norms: &[f64], weights: &mut [f64]) -> usize {
    let at = |i: usize, j: usize| gram[i * t + j];
    let mut products = vec![0.0; t];
    let max_steps = 10 * t + 100;
    for step in 0..max_steps {
        gram_times(gram, t, weights, &mut products);
        let violation = violations(weights, &products, norms);
        if violation.dual.max(violation.support) <= POLISH_TOL {
            return step;
        }
        // (entering i, leaving k, eta, decrease)
        let mut best = (0, 0, 0.0, 0.0);
        for leaving in (0..t).filter(|&k| weights[k] > 0.0) {
            for entering in 0..t {
                let v = products[leaving] - products[entering];
                if v <= 0.0 {
                    continue;
                }
                let c = at(entering, entering) + at(leaving, leaving) - 2.0 * at(entering, leaving);
                let available = weights[leaving];
                let eta = if c > 0.0 { (v / c).min(available) } else { available };
                let decrease = eta * (2.0 * v - eta * c);
                if decrease > best.3 {
                    best = (entering, leaving, eta, decrease);
                }
            }
        }
        let (entering, leaving, eta, decrease) = best;
        if decrease <= 0.0 {
            return step;
        }
        weights[entering] += eta;
        weights[leaving] = if eta == weights[leaving] { 0.0 } else { weights[leaving] - eta };
    }
    max_steps
}

/// Minor cycles after a point joined the corral (with weight 0). Returns with `weights` the
/// affine minimiser of the final corral if its coefficients were all positive, or the last
/// feasible point reached if an affine minimiser could not be computed. `first`, if given, is
/// the affine minimiser of the corral as passed in.
fn minor_cycles(
    gram: &[f64],
    t: usize,
    corral: &mut Vec<usize>,
    weights: &mut [f64],
    mut first: Option<Vec<f64>>,
) {
    loop {
        let Some(affine) = first.take().or_else(|| affine_minimiser(gram, t, corral)) else {
            return;
        };
        if affine.iter().all(|&m| m > 0.0) {
            for (&s, &m) in corral.iter().zip(&affine) {
                weights[s] = m;
            }
            return;
        }
        // Walk from `weights` towards `affine` until the first weight hits zero (there is one:
        // some coefficient of `affine` is not positive).
        let (mut step, mut leaving) = (f64::INFINITY, 0);
        for (k, (&s, &m)) in corral.iter().zip(&affine).enumerate() {
            if m <= 0.0 {
                let w = weights[s];
                let ratio = if w - m > 0.0 { w / (w - m) } else { 0.0 };
                if ratio < step {
                    (step, leaving) = (ratio, k);
                }
            }
        }
        let step = step.min(1.0);
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
/// With base point `b` (the shortest member) and directions `d_i = g_i - g_b`, the point is
/// `g_b + sum c_i d_i` with `(D^T D) c = -D^T g_b`, where
/// `(D^T D)_ij = G_ij - G_ib - G_bj + G_bb` and `(D^T g_b)_i = G_ib - G_bb`.
fn affine_minimiser(gram: &[f64], t: usize, corral: &[usize]) -> Option<Vec<f64>> {
    let at = |i: usize, j: usize| gram[i * t + j];
    // The shortest member as base keeps the differences g_i - g_b from cancelling.
    let base_position = (0..corral.len())
        .min_by(|&a, &b| at(corral[a], corral[a]).total_cmp(&at(corral[b], corral[b])))?;
    let base = corral[base_position];
    let others: Vec<usize> = corral.iter().copied().filter(|&s| s != base).collect();
    let m = others.len();

    // Lower Cholesky factor of D^T D, row-major m x m.
    let mut chol = vec![0.0; m * m];
    for i in 0..m {
        for j in 0..=i {
            let (oi, oj) = (others[i], others[j]);
            let mut value = at(oi, oj) - at(oi, base) - at(base, oj) + at(base, base);
            let rounding_scale = value.abs() + at(oi, oi) + at(base, base);
            for k in 0..j {
                value -= chol[i * m + k] * chol[j * m + k];
            }
            if i == j {
                if value.is_nan() || value <= DEPENDENCE_TOL * rounding_scale {
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
    let base_weight = 1.0 - c.iter().sum::<f64>();
    let mut rest = c.into_iter();
    let affine: Vec<f64> = corral
        .iter()
        .map(|&s| if s == base { base_weight } else { rest.next().unwrap_or(f64::NAN) })
        .collect();
    affine.iter().all(|x| x.is_finite()).then_some(affine)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
