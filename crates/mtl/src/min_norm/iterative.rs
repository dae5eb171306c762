//! The iterative methods, kept for comparison with the active set: Frank-Wolfe as in the
//! original MGDA code, and projected gradient.
//!
//! Both work on a Gram matrix scaled so its largest diagonal entry is 1, with `t >= 2`, and
//! stop when the normalised dual violation (the first term of the KKT residual, a normalised
//! Frank-Wolfe gap `alpha^T G alpha - min_t (G alpha)_t`) is at most `tol`, when a step moves
//! the weights by less than `tol` in the l1 norm, or after `max_iter` steps.

use super::{argmin, gram_times, segment_value, segment_weights, violations};

/// Frank-Wolfe: start at the best pair of tasks (the T = 2 closed form on every pair), then
/// repeatedly move towards the vertex `g_j` with the smallest `<x, g_j>`, by the exact line
/// search of the T = 2 closed form on the segment from `x` to `g_j`.
///
/// Unlike the original code, which clamps the line search to `[0.001, 0.999]` at the ends,
/// the line search here is exact.
pub(super) fn frank_wolfe(gram: &[f64], t: usize, max_iter: usize, tol: f64) -> (Vec<f64>, usize) {
    let at = |i: usize, j: usize| gram[i * t + j];
    let mut best = (f64::INFINITY, 0, 1, [0.5, 0.5]);
    for i in 0..t {
        for j in i + 1..t {
            let (aa, ab, bb) = (at(i, i), at(i, j), at(j, j));
            let pair = segment_weights(aa, ab, bb);
            let value = segment_value(pair, aa, ab, bb);
            if value < best.0 {
                best = (value, i, j, pair);
            }
        }
    }
    let mut weights = vec![0.0; t];
    weights[best.1] = best.3[0];
    weights[best.2] = best.3[1];

    let norms: Vec<f64> = (0..t).map(|i| at(i, i).sqrt()).collect();
    let mut products = vec![0.0; t];
    let mut steps = 0;
    while steps < max_iter {
        gram_times(gram, t, &weights, &mut products);
        if violations(&weights, &products, &norms).dual <= tol {
            break;
        }
        let norm_sq: f64 = weights.iter().zip(&products).map(|(w, p)| w * p).sum();
        let (vertex, product) = argmin(&products);
        // Point on the segment: keep x + step g_vertex.
        let [keep, step] = segment_weights(norm_sq, product, at(vertex, vertex));
        let mut change = 0.0;
        for (s, w) in weights.iter_mut().enumerate() {
            let target = if s == vertex { 1.0 } else { 0.0 };
            let new = keep * *w + step * target;
            change += (new - *w).abs();
            *w = new;
        }
        steps += 1;
        if change < tol {
            break;
        }
    }
    (weights, steps)
}

/// Projected gradient from uniform weights: `alpha <- P(alpha - 2 G alpha / L)`, where `P` is
/// the Euclidean projection onto the simplex and `L = 2 min(|G|_F, max_i sum_j |G_ij|)` bounds
/// the largest eigenvalue of the Hessian `2 G`, so every step decreases the objective.
pub(super) fn projected_gradient(
    gram: &[f64],
    t: usize,
    max_iter: usize,
    tol: f64,
) -> (Vec<f64>, usize) {
    let frobenius = gram.iter().map(|g| g * g).sum::<f64>().sqrt();
    let max_row_sum = gram.chunks_exact(t).map(|row| row.iter().map(|g| g.abs()).sum::<f64>());
    let lipschitz_half = max_row_sum.fold(0.0_f64, f64::max).min(frobenius);

    let norms: Vec<f64> = (0..t).map(|i| gram[i * t + i].sqrt()).collect();
    let mut weights = vec![1.0 / t as f64; t];
    let mut products = vec![0.0; t];
    let mut moved = vec![0.0; t];
    let mut steps = 0;
    while steps < max_iter {
        gram_times(gram, t, &weights, &mut products);
        if violations(&weights, &products, &norms).dual <= tol {
            break;
        }
        for ((m, w), p) in moved.iter_mut().zip(&weights).zip(&products) {
            *m = w - p / lipschitz_half;
        }
        let projected = project_onto_simplex(&moved);
        let change: f64 = projected.iter().zip(&weights).map(|(a, b)| (a - b).abs()).sum();
        weights = projected;
        steps += 1;
        if change < tol {
            break;
        }
    }
    (weights, steps)
}

/// Euclidean projection onto the probability simplex: `max(v - theta, 0)` with `theta` chosen
/// so the result sums to 1 (sort, then the largest prefix whose entries stay positive).
pub(super) fn project_onto_simplex(v: &[f64]) -> Vec<f64> {
    let mut sorted = v.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut prefix_sum = 0.0;
    let mut theta = 0.0;
    for (k, &x) in sorted.iter().enumerate() {
        prefix_sum += x;
        let candidate = (prefix_sum - 1.0) / (k + 1) as f64;
        if x > candidate {
            theta = candidate;
        }
    }
    v.iter().map(|&x| (x - theta).max(0.0)).collect()
}

#[cfg(test)]
mod tests {
    use super::project_onto_simplex;

    #[test]
    fn projection_onto_simplex_matches_hand_computed_cases() {
        // Already on the simplex: unchanged.
        assert_eq!(project_onto_simplex(&[0.25, 0.75]), vec![0.25, 0.75]);
        // Sorted [3, 1]: k=0 candidate 2 (3 > 2), k=1 candidate 1.5 (1 < 1.5) -> theta = 2.
        assert_eq!(project_onto_simplex(&[1.0, 3.0]), vec![0.0, 1.0]);
        // Uniform shift: [2, 2, 2] -> theta = 5/3 -> [1/3, 1/3, 1/3].
        let p = project_onto_simplex(&[2.0, 2.0, 2.0]);
        assert!(p.iter().all(|&x| (x - 1.0 / 3.0).abs() < 1e-15));
        // [0.5, 0.4, -1]: k=0 cand -0.5, k=1 cand -0.05 (0.4 > -0.05), k=2 cand -0.7 (-1 < -0.7)
        // -> theta = -0.05 -> [0.55, 0.45, 0].
        let p = project_onto_simplex(&[0.5, 0.4, -1.0]);
        assert!((p[0] - 0.55).abs() < 1e-15 && (p[1] - 0.45).abs() < 1e-15 && p[2] == 0.0);
    }
}
