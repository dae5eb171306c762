//! The min-norm problem of MGDA: the point of the convex hull of the task gradients closest to
//! the origin.
//!
//! Given T task gradients `g_1 .. g_T` on the shared parameters, MGDA (Sener & Koltun, 2018)
//! looks for weights `alpha` on the probability simplex that minimise `|sum_t alpha_t g_t|^2`.
//! Only inner products of gradients enter, so the problem is solved on the T x T Gram matrix
//! `G[s][t] = <g_s, g_t>`: the objective is `alpha^T G alpha`. The gradients may be millions of
//! numbers long; the Gram matrix is tiny, and everything here works on it in `f64`.
//!
//! Methods ([`MinNormMethod`]):
//!
//! - **Closed form** for T = 2: the point on the segment `g_1 - g_2` closest to the origin.
//! - **Active set** (Wolfe's nearest-point algorithm): exact up to rounding, finite, and for the
//!   small T of multi-task learning faster and far more accurate than Frank-Wolfe. This is what
//!   [`MinNormMethod::Auto`] uses for T > 2.
//! - **Frank-Wolfe** as in the original MGDA code (best pair to start, exact line search).
//! - **Projected gradient** with a projection onto the simplex.
//!
//! Every solve reports the minimum squared norm and its own optimality (KKT) residual, so a
//! caller can check the answer instead of trusting it. `docs/mtl.md` ("The min-norm problem")
//! explains the geometry and the method.
//!
//! ```
//! use tapestry_mtl::min_norm::{gram_matrix, min_norm_weights};
//!
//! // Two orthogonal unit gradients: the closest point of the segment is their midpoint.
//! let grads = [1.0_f32, 0.0, 0.0, 1.0];
//! let gram = gram_matrix(&grads, 2, 2);
//! let solution = min_norm_weights(&gram, 2).unwrap();
//! assert!((solution.weights[0] - 0.5).abs() < 1e-12);
//! assert!((solution.min_norm_sq - 0.5).abs() < 1e-12);
//! ```

mod active_set;
mod iterative;

use thiserror::Error;

/// Relative tolerance of the input checks of [`min_norm_weights_with`].
///
/// Asymmetry `|G[i][j] - G[j][i]|`, a negative diagonal entry, and the excess of `|G[i][j]|`
/// over `sqrt(G[i][i] G[j][j])` are accepted (as rounding) up to this times the largest
/// absolute entry of the matrix, and rejected beyond it.
pub const GRAM_TOLERANCE: f64 = 1e-6;

/// How [`min_norm_weights_with`] solves the problem.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum MinNormMethod {
    /// The closed form for T <= 2 and the active-set method above.
    #[default]
    Auto,
    /// The closed form; only for T <= 2 (the point of a segment closest to the origin).
    ClosedForm,
    /// Wolfe's active-set algorithm for the nearest point of a polytope, started at the best
    /// pair and finished by pairwise (SMO-style) steps that take it to the rounding level on
    /// near-degenerate inputs. Exact up to rounding.
    ActiveSet,
    /// Frank-Wolfe with exact line search, started at the best pair, as in the original MGDA
    /// code. Stops after `max_iter` steps, or once the dual part of
    /// [`MinNormSolution::kkt_residual`] (a normalised Frank-Wolfe gap) is at most `tol`, or
    /// once a step moves the weights by less than `tol` in the l1 norm (the criterion of the
    /// original code).
    FrankWolfe {
        /// Maximum number of Frank-Wolfe steps.
        max_iter: usize,
        /// Stopping tolerance; finite and nonnegative.
        tol: f64,
    },
    /// Projected gradient with step `1 / L` (L bounds the largest eigenvalue of `2 G`), started
    /// at uniform weights. Stops like [`MinNormMethod::FrankWolfe`].
    ProjectedGradient {
        /// Maximum number of gradient steps.
        max_iter: usize,
        /// Stopping tolerance; finite and nonnegative.
        tol: f64,
    },
}

impl MinNormMethod {
    /// Frank-Wolfe with the settings of the original MGDA code (250 steps, tolerance 1e-5).
    pub const FRANK_WOLFE: Self = Self::FrankWolfe { max_iter: 250, tol: 1e-5 };
    /// Projected gradient with 10 000 steps and tolerance 1e-12.
    pub const PROJECTED_GRADIENT: Self = Self::ProjectedGradient { max_iter: 10_000, tol: 1e-12 };
}

/// The answer of a min-norm solve.
#[derive(Debug, Clone, PartialEq)]
pub struct MinNormSolution {
    /// The task weights `alpha`: nonnegative, summing to 1 (up to rounding).
    pub weights: Vec<f64>,
    /// `alpha^T G alpha`, the squared norm of `sum_t alpha_t g_t`, computed on the given matrix
    /// (never negative).
    pub min_norm_sq: f64,
    /// The optimality (KKT) residual, dimensionless. With `q = alpha^T G alpha`,
    /// `r_t = (G alpha)_t - q`, `m = sum_s alpha_s |g_s|` and `size_t = m (|g_t| + m)`:
    /// `max(max_t max(-r_t, 0) / size_t, max_t alpha_t |r_t| / size_t)`. The first term is
    /// dual infeasibility (some task could still lower the norm), the second the
    /// complementarity gap on the support. It is zero exactly at a minimiser; `size_t` bounds
    /// the numbers compared (Cauchy-Schwarz), so the residual does not depend on the overall
    /// scale, a large gradient elsewhere does not hide a violation, and values near 1e-16 are
    /// rounding.
    pub kkt_residual: f64,
    /// Iterations spent: major cycles (points added to the corral) plus pairwise polishing
    /// steps for the active set, steps for Frank-Wolfe and projected gradient, 0 for a closed
    /// form.
    pub iterations: usize,
    /// The method that produced the weights (never [`MinNormMethod::Auto`]).
    /// [`MinNormMethod::ClosedForm`] also reports T = 1 and inputs with a zero gradient, whose
    /// answer is a vertex of the simplex.
    pub method: MinNormMethod,
}

/// Why a min-norm solve was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MinNormError {
    /// The problem has no tasks.
    #[error("min-norm: the Gram matrix is empty (t = 0)")]
    NoTasks,
    /// The slice does not hold a `t x t` matrix.
    #[error(
        "min-norm: the Gram matrix has {len} entries, expected t * t = {expected} for t = {t}"
    )]
    NotSquare {
        /// Entries given.
        len: usize,
        /// Number of tasks.
        t: usize,
        /// `t * t` (saturating).
        expected: usize,
    },
    /// An entry is NaN or infinite.
    #[error("min-norm: Gram entry ({row}, {col}) is not finite: {value}")]
    NonFinite {
        /// Row of the entry.
        row: usize,
        /// Column of the entry.
        col: usize,
        /// The value found.
        value: f64,
    },
    /// `G[row][col]` and `G[col][row]` differ beyond [`GRAM_TOLERANCE`].
    #[error(
        "min-norm: Gram matrix is not symmetric: G[{row}][{col}] = {upper} but \
         G[{col}][{row}] = {lower} (tolerance {tolerance})"
    )]
    Asymmetric {
        /// Row of the upper entry.
        row: usize,
        /// Column of the upper entry.
        col: usize,
        /// `G[row][col]`.
        upper: f64,
        /// `G[col][row]`.
        lower: f64,
        /// The absolute tolerance that was exceeded.
        tolerance: f64,
    },
    /// A diagonal entry (a squared norm) is negative beyond [`GRAM_TOLERANCE`].
    #[error("min-norm: Gram diagonal G[{index}][{index}] = {value} is negative (a squared norm)")]
    NegativeDiagonal {
        /// The task.
        index: usize,
        /// The value found.
        value: f64,
    },
    /// A 2 x 2 principal minor is negative: `|G[row][col]| > sqrt(G[row][row] G[col][col])`
    /// beyond [`GRAM_TOLERANCE`], which no set of vectors can produce (Cauchy-Schwarz).
    #[error(
        "min-norm: Gram matrix is not positive semidefinite: |G[{row}][{col}]| = {value} \
         exceeds sqrt(G[{row}][{row}] * G[{col}][{col}]) = {bound}"
    )]
    NotPositiveSemidefinite {
        /// Row of the entry.
        row: usize,
        /// Column of the entry.
        col: usize,
        /// `|G[row][col]|` (symmetrised).
        value: f64,
        /// `sqrt(G[row][row] G[col][col])`.
        bound: f64,
    },
    /// [`MinNormMethod::ClosedForm`] was asked for more than two tasks.
    #[error("min-norm: the closed form needs t <= 2 tasks, got t = {t}; use ActiveSet")]
    ClosedFormNeedsTwoTasks {
        /// Number of tasks.
        t: usize,
    },
    /// An iterative method was given a negative or non-finite tolerance.
    #[error("min-norm: {method} tolerance must be finite and >= 0, got {tol}")]
    InvalidTolerance {
        /// `"FrankWolfe"` or `"ProjectedGradient"`.
        method: &'static str,
        /// The tolerance given.
        tol: f64,
    },
}

/// Solves `min over the simplex of alpha^T G alpha` with [`MinNormMethod::Auto`].
///
/// `gram` is the `t x t` Gram matrix of the task gradients, row-major (see [`gram_matrix`]).
/// See [`min_norm_weights_with`] for the checks, the degenerate cases and the errors.
pub fn min_norm_weights(gram: &[f64], t: usize) -> Result<MinNormSolution, MinNormError> {
    min_norm_weights_with(gram, t, MinNormMethod::Auto)
}

/// Solves `min over the simplex of alpha^T G alpha` with the given method.
///
/// The input is checked (size, finiteness, symmetry, diagonal, 2 x 2 minors; see
/// [`MinNormError`] and [`GRAM_TOLERANCE`]), symmetrised, and divided by its largest diagonal
/// entry before solving, so gradient norms from 1e-8 to 1e8 are handled alike; `min_norm_sq`
/// and `kkt_residual` are then computed on the symmetrised input.
///
/// Degenerate cases: a task with a zero gradient (zero diagonal entry, hence a zero row) gets
/// all the weight and the norm is 0 (the first such task if there are several). Where the
/// minimiser is not unique (identical gradients, more tasks than dimensions), one minimiser is
/// returned; which one depends on the method. The result never holds NaN, and every method
/// stops after a bounded number of iterations.
pub fn min_norm_weights_with(
    gram: &[f64],
    t: usize,
    method: MinNormMethod,
) -> Result<MinNormSolution, MinNormError> {
    check_method(method, t)?;
    let sym = validated_symmetric(gram, t)?;
    let scale = (0..t).map(|i| sym[i * t + i]).fold(0.0_f64, f64::max);

    if let Some(zero) = (0..t).find(|&i| sym[i * t + i] == 0.0) {
        return Ok(finish(&sym, t, vertex(zero, t), 0, MinNormMethod::ClosedForm));
    }
    if t == 1 {
        return Ok(finish(&sym, t, vec![1.0], 0, MinNormMethod::ClosedForm));
    }
    let scaled: Vec<f64> = sym.iter().map(|&x| x / scale).collect();
    let (weights, iterations) = match method {
        MinNormMethod::Auto if t == 2 => (two_task_weights(&scaled).to_vec(), 0),
        MinNormMethod::ClosedForm => (two_task_weights(&scaled).to_vec(), 0),
        MinNormMethod::Auto | MinNormMethod::ActiveSet => active_set::wolfe(&scaled, t),
        MinNormMethod::FrankWolfe { max_iter, tol } => {
            iterative::frank_wolfe(&scaled, t, max_iter, tol)
        }
        MinNormMethod::ProjectedGradient { max_iter, tol } => {
            iterative::projected_gradient(&scaled, t, max_iter, tol)
        }
    };
    let used = match method {
        MinNormMethod::Auto if t == 2 => MinNormMethod::ClosedForm,
        MinNormMethod::Auto => MinNormMethod::ActiveSet,
        other => other,
    };
    Ok(finish(&sym, t, weights, iterations, used))
}

/// The Gram matrix of `t` row-major gradients of length `p`, in f64 (the one implementation,
/// beside the sweep that reduces gradients to their Gram: `tapestry_autodiff::gram_matrix`).
pub use tapestry_autodiff::gram_matrix;

fn check_method(method: MinNormMethod, t: usize) -> Result<(), MinNormError> {
    match method {
        MinNormMethod::ClosedForm if t > 2 => Err(MinNormError::ClosedFormNeedsTwoTasks { t }),
        MinNormMethod::FrankWolfe { tol, .. } if !(tol.is_finite() && tol >= 0.0) => {
            Err(MinNormError::InvalidTolerance { method: "FrankWolfe", tol })
        }
        MinNormMethod::ProjectedGradient { tol, .. } if !(tol.is_finite() && tol >= 0.0) => {
            Err(MinNormError::InvalidTolerance { method: "ProjectedGradient", tol })
        }
        _ => Ok(()),
    }
}

/// Checks the input and returns its symmetric part, with rounding-level negative diagonal
/// entries set to zero. The other solvers on the Gram (CAGrad, Nash-MTL, UPGrad) check theirs
/// with it.
///
/// # Errors
/// The [`MinNormError`]s of the size, finiteness, symmetry, diagonal and 2 x 2 minor checks.
pub(crate) fn validated_symmetric(gram: &[f64], t: usize) -> Result<Vec<f64>, MinNormError> {
    if t == 0 {
        return Err(MinNormError::NoTasks);
    }
    let expected = t.saturating_mul(t);
    if gram.len() != expected {
        return Err(MinNormError::NotSquare { len: gram.len(), t, expected });
    }
    if let Some(k) = gram.iter().position(|x| !x.is_finite()) {
        return Err(MinNormError::NonFinite { row: k / t, col: k % t, value: gram[k] });
    }
    let tolerance = GRAM_TOLERANCE * gram.iter().fold(0.0_f64, |m, x| m.max(x.abs()));
    let mut sym = gram.to_vec();
    for row in 0..t {
        let value = gram[row * t + row];
        if value < -tolerance {
            return Err(MinNormError::NegativeDiagonal { index: row, value });
        }
        sym[row * t + row] = value.max(0.0);
        for col in row + 1..t {
            let (upper, lower) = (gram[row * t + col], gram[col * t + row]);
            if (upper - lower).abs() > tolerance {
                return Err(MinNormError::Asymmetric { row, col, upper, lower, tolerance });
            }
            let mean = upper / 2.0 + lower / 2.0;
            sym[row * t + col] = mean;
            sym[col * t + row] = mean;
        }
    }
    for row in 0..t {
        for col in row + 1..t {
            let value = sym[row * t + col].abs();
            let bound = sym[row * t + row].sqrt() * sym[col * t + col].sqrt();
            if value > bound + tolerance {
                return Err(MinNormError::NotPositiveSemidefinite { row, col, value, bound });
            }
        }
    }
    Ok(sym)
}

fn vertex(index: usize, t: usize) -> Vec<f64> {
    let mut weights = vec![0.0; t];
    weights[index] = 1.0;
    weights
}

/// The weights `[gamma, 1 - gamma]` (`gamma` in `[0, 1]`) minimising
/// `|gamma a + (1 - gamma) b|^2`, from `aa = |a|^2`, `ab = <a, b>`, `bb = |b|^2`.
///
/// Setting the derivative of `|b + gamma (a - b)|^2` to zero gives
/// `gamma = <b, b - a> / |a - b|^2 = (bb - ab) / (aa + bb - 2 ab)` and likewise
/// `1 - gamma = (aa - ab) / (aa + bb - 2 ab)`; both are computed as quotients (not one as
/// `1 - other`), so a tiny weight keeps its relative accuracy. Clamping picks an endpoint when
/// the foot of the perpendicular from the origin falls outside the segment. When
/// `|a - b|^2` is at rounding level the quotients are noise, so the answer is also compared
/// with the better endpoint; if `a` and `b` coincide (`|a - b|^2 <= 0` and `aa == bb`) every
/// `gamma` is optimal and the midpoint is returned.
fn segment_weights(aa: f64, ab: f64, bb: f64) -> [f64; 2] {
    let dist_sq = aa + bb - 2.0 * ab;
    let endpoint = match aa.total_cmp(&bb) {
        std::cmp::Ordering::Less => [1.0, 0.0],
        std::cmp::Ordering::Greater => [0.0, 1.0],
        std::cmp::Ordering::Equal => [0.5, 0.5],
    };
    if dist_sq <= 0.0 {
        return endpoint;
    }
    let (to_a, to_b) = (bb - ab, aa - ab);
    let weights = if to_a <= 0.0 {
        [0.0, 1.0]
    } else if to_b <= 0.0 {
        [1.0, 0.0]
    } else {
        [to_a / dist_sq, to_b / dist_sq]
    };
    if segment_value(weights, aa, ab, bb) <= segment_value(endpoint, aa, ab, bb) {
        weights
    } else {
        endpoint
    }
}

/// `|w_a a + w_b b|^2`.
fn segment_value([w_a, w_b]: [f64; 2], aa: f64, ab: f64, bb: f64) -> f64 {
    w_a * w_a * aa + 2.0 * w_a * w_b * ab + w_b * w_b * bb
}

/// The T = 2 closed form on a 2 x 2 Gram matrix; equal weights for identical gradients.
fn two_task_weights(gram: &[f64]) -> [f64; 2] {
    segment_weights(gram[0], gram[1], gram[3])
}

/// `(G alpha)_t` for every task, summing over the support of `alpha` only.
fn gram_times(gram: &[f64], t: usize, weights: &[f64], out: &mut [f64]) {
    out.fill(0.0);
    for (s, &w) in weights.iter().enumerate() {
        if w != 0.0 {
            for (o, &g) in out.iter_mut().zip(&gram[s * t..(s + 1) * t]) {
                *o += g * w;
            }
        }
    }
}

/// Index and value of the smallest entry; the first on ties.
fn argmin(values: &[f64]) -> (usize, f64) {
    values
        .iter()
        .enumerate()
        .fold((0, f64::INFINITY), |best, (i, &v)| if v < best.1 { (i, v) } else { best })
}

/// Normalised optimality violations of `weights`, given `products = G weights` and the
/// gradient norms. With `q = weights . products`, `r_t = products_t - q`,
/// `m = sum_s weights_s |g_s|` and `size_t = m (|g_t| + m)`:
struct Violations {
    /// `max_t max(-r_t, 0) / size_t`: how much some task could still lower the norm.
    dual: f64,
    /// `max over weights_t > 0 of |r_t| / size_t`: equality on the support.
    support: f64,
    /// `max_t weights_t |r_t| / size_t`: the complementarity gap.
    complementarity: f64,
}

/// See [`Violations`]. `size_t` bounds `|products_t| + q` (Cauchy-Schwarz), hence the rounding
/// in `r_t`, whatever the scales of the other gradients.
fn violations(weights: &[f64], products: &[f64], norms: &[f64]) -> Violations {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let (q, m) = (dot(weights, products), dot(weights, norms));
    let mut found = Violations { dual: 0.0, support: 0.0, complementarity: 0.0 };
    for ((&w, &p), &n) in weights.iter().zip(products).zip(norms) {
        let size = m * (n + m);
        if size > 0.0 {
            let r = (p - q) / size;
            found.dual = found.dual.max(-r);
            if w > 0.0 {
                found.support = found.support.max(r.abs());
            }
            found.complementarity = found.complementarity.max(w * r.abs());
        }
    }
    found
}

/// Cleans the weights onto the simplex and measures them on the (unscaled) matrix.
fn finish(
    sym: &[f64],
    t: usize,
    mut weights: Vec<f64>,
    iterations: usize,
    method: MinNormMethod,
) -> MinNormSolution {
    for w in &mut weights {
        *w = if w.is_finite() { w.max(0.0) } else { 0.0 };
    }
    let total: f64 = weights.iter().sum();
    if total > 0.0 {
        weights.iter_mut().for_each(|w| *w /= total);
    } else {
        weights = vec![1.0 / t as f64; t];
    }
    let mut products = vec![0.0; t];
    gram_times(sym, t, &weights, &mut products);
    let norm_sq: f64 = weights.iter().zip(&products).map(|(w, p)| w * p).sum();
    let norms: Vec<f64> = (0..t).map(|i| sym[i * t + i].sqrt()).collect();
    let found = violations(&weights, &products, &norms);
    MinNormSolution {
        weights,
        min_norm_sq: norm_sq.max(0.0),
        kkt_residual: found.dual.max(found.complementarity),
        iterations,
        method,
    }
}
