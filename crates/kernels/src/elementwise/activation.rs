//! Activations with their derivatives, and the elementwise `exp` and `ln`.
//!
//! The backward kernels compute `dx = dy · f′` with the derivative written in terms of what the
//! autodiff keeps: the input for ReLU and leaky ReLU, the output `y` for sigmoid
//! (`f′ = y(1 − y)`) and tanh (`f′ = 1 − y²`), so one pass over two slices does the whole rule.
//!
//! `exp`, `ln` and `tanh` are branch-free polynomial approximations (Cephes `expf`, `logf`,
//! `tanhf`) so that loops over them vectorise; each function's documentation states its error,
//! which a test checks against `f64`.

use super::{check_same, map1, map2};
use crate::simd::multiversion;

multiversion! {
    fn relu_k(x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = if v > 0.0 { v } else { 0.0 };
        }
    }
}

/// `y[i] = max(x[i], 0)` (NaN maps to 0).
///
/// # Panics
///
/// If the slices differ in length.
pub fn relu_forward(x: &[f32], y: &mut [f32]) {
    check_same("relu_forward", "y", y.len(), x.len());
    map1(x, y, relu_k);
}

multiversion! {
    fn relu_back_k(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((o, &v), &d) in dx.iter_mut().zip(x).zip(dy) {
            *o = if v > 0.0 { d } else { 0.0 };
        }
    }
}

/// `dx[i] = dy[i]` where `x[i] > 0`, else 0 (the derivative at 0 is taken as 0).
///
/// # Panics
///
/// If the three slices differ in length.
pub fn relu_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    check_same("relu_backward", "dy", dy.len(), x.len());
    check_same("relu_backward", "dx", dx.len(), x.len());
    map2(x, dy, dx, relu_back_k);
}

multiversion! {
    fn relu_back_in_place_k(x: &[f32], d: &mut [f32]) {
        for (o, &v) in d.iter_mut().zip(x) {
            *o = if v > 0.0 { *o } else { 0.0 };
        }
    }
}

/// [`relu_backward`] writing `dx` over `dy`: `d[i]` stays where `x[i] > 0`, else becomes 0. For
/// a cotangent nothing else holds, so that the rule needs no second buffer.
///
/// # Panics
///
/// If the slices differ in length.
pub fn relu_backward_in_place(x: &[f32], d: &mut [f32]) {
    check_same("relu_backward_in_place", "d", d.len(), x.len());
    map1(x, d, relu_back_in_place_k);
}

multiversion! {
    fn leaky_relu_k(slope: f32, x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = if v > 0.0 { v } else { slope * v };
        }
    }
}

/// `y[i] = x[i]` where `x[i] > 0`, else `slope · x[i]`.
///
/// # Panics
///
/// If the slices differ in length.
pub fn leaky_relu_forward(slope: f32, x: &[f32], y: &mut [f32]) {
    check_same("leaky_relu_forward", "y", y.len(), x.len());
    map1(x, y, |x, y| leaky_relu_k(slope, x, y));
}

multiversion! {
    fn leaky_relu_back_k(slope: f32, x: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((o, &v), &d) in dx.iter_mut().zip(x).zip(dy) {
            *o = if v > 0.0 { d } else { slope * d };
        }
    }
}

/// `dx[i] = dy[i]` where `x[i] > 0`, else `slope · dy[i]` (the slope at 0 is taken as `slope`).
///
/// # Panics
///
/// If the three slices differ in length.
pub fn leaky_relu_backward(slope: f32, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    check_same("leaky_relu_backward", "dy", dy.len(), x.len());
    check_same("leaky_relu_backward", "dx", dx.len(), x.len());
    map2(x, dy, dx, |x, dy, dx| leaky_relu_back_k(slope, x, dy, dx));
}

/// `e^x` in `f32`, branch-free so that loops over it vectorise: range reduction
/// `x = n·ln2 + r`, a degree-6 polynomial for `e^r` (Cephes `expf`), and `2^n` built from
/// exponent bits. Within 2 ulp of the correctly rounded result for normal outputs; inputs below
/// -87.3365 (results below the smallest normal number) give 0, above 88.7228 give infinity.
#[inline(always)]
pub fn exp_scalar(x: f32) -> f32 {
    const HI: f32 = 88.722_83;
    const LO: f32 = -87.336_55;
    let xc = x.clamp(LO, HI);
    let fx = xc * std::f32::consts::LOG2_E;
    // Round to nearest by adding 1.5·2²³: the integer then sits in the low mantissa bits, which
    // gives it without a float-to-int conversion (so the loop vectorises).
    let t = fx + 12_582_912.0;
    let n = t - 12_582_912.0;
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let r = xc - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * (r * r) + r + 1.0;
    // 2^n as two factors, so that n = 128 (x near the top of the range) does not overflow.
    let (n1, n2) = (ni >> 1, ni.wrapping_sub(ni >> 1));
    let v = e
        * f32::from_bits((n1.wrapping_add(127) as u32) << 23)
        * f32::from_bits((n2.wrapping_add(127) as u32) << 23);
    let v = if x > HI { f32::INFINITY } else { v };
    let v = if x < LO { 0.0 } else { v };
    if x.is_nan() {
        x
    } else {
        v
    }
}

multiversion! {
    fn exp_k(x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = exp_scalar(v);
        }
    }
}

/// `y[i] = e^x[i]` (within 2 ulp; results below the smallest normal `f32` flush to 0).
///
/// # Panics
///
/// If the slices differ in length.
pub fn exp(x: &[f32], y: &mut [f32]) {
    check_same("exp", "y", y.len(), x.len());
    map1(x, y, exp_k);
}

/// `σ(x)` in `f32`, branch-free: `e^(−|x|)` never overflows, and σ(x) is `1/(1 + e^−x)` for
/// `x ≥ 0`, `e^x/(1 + e^x)` below.
#[inline(always)]
pub fn sigmoid_scalar(x: f32) -> f32 {
    let e = exp_scalar(-x.abs());
    if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

multiversion! {
    fn sigmoid_k(x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = sigmoid_scalar(v);
        }
    }
}

/// `y[i] = σ(x[i]) = 1 / (1 + e^−x[i])`, computed as `e^x/(1 + e^x)` for negative `x` so that
/// nothing overflows. Within 3 ulp of the exact value wherever that is a normal number (2.3
/// measured); below about −87.3 the result flushes to 0 with `e^x`.
///
/// # Panics
///
/// If the slices differ in length.
pub fn sigmoid(x: &[f32], y: &mut [f32]) {
    check_same("sigmoid", "y", y.len(), x.len());
    map1(x, y, sigmoid_k);
}

multiversion! {
    fn sigmoid_back_k(y: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((o, &s), &d) in dx.iter_mut().zip(y).zip(dy) {
            *o = d * (s * (1.0 - s));
        }
    }
}

/// `dx[i] = dy[i] · y[i](1 − y[i])`, the sigmoid's backward from its output `y`.
///
/// # Panics
///
/// If the three slices differ in length.
pub fn sigmoid_backward(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    check_same("sigmoid_backward", "dy", dy.len(), y.len());
    check_same("sigmoid_backward", "dx", dx.len(), y.len());
    map2(y, dy, dx, sigmoid_back_k);
}

/// `tanh x` in `f32`, branch-free: for `|x| < 0.625` the odd polynomial
/// `x + x³·P(x²)` of Cephes `tanhf`, beyond it `1 − 2/(e^(2|x|) + 1)` with [`exp_scalar`]; the
/// sign is copied from `x`. Within 2 ulp of the exact value (1.3 measured on a dense sweep of
/// `[-10, 10]` against `f64`, which a test repeats); ±1 from `|x| ≈ 9` on, NaN stays NaN.
#[inline(always)]
pub fn tanh_scalar(x: f32) -> f32 {
    let a = x.abs();
    let z = a * a;
    let mut p = -5.704_988_7e-3;
    p = p * z + 2.063_909e-2;
    p = p * z - 5.373_971_6e-2;
    p = p * z + 0.133_314_42;
    p = p * z - 0.333_332_8;
    let small = p * z * a + a;
    let large = 1.0 - 2.0 / (exp_scalar(a + a) + 1.0);
    let t = if a < 0.625 { small } else { large };
    t.copysign(x)
}

multiversion! {
    fn tanh_k(x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = tanh_scalar(v);
        }
    }
}

/// `y[i] = tanh x[i]` (within 2 ulp of the exact value; ±1 beyond `|x| ≈ 9`).
///
/// # Panics
///
/// If the slices differ in length.
pub fn tanh(x: &[f32], y: &mut [f32]) {
    check_same("tanh", "y", y.len(), x.len());
    map1(x, y, tanh_k);
}

multiversion! {
    fn tanh_back_k(y: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((o, &t), &d) in dx.iter_mut().zip(y).zip(dy) {
            *o = d * (1.0 - t * t);
        }
    }
}

/// `dx[i] = dy[i] · (1 − y[i]²)`, tanh's backward from its output `y`.
///
/// # Panics
///
/// If the three slices differ in length.
pub fn tanh_backward(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    check_same("tanh_backward", "dy", dy.len(), y.len());
    check_same("tanh_backward", "dx", dx.len(), y.len());
    map2(y, dy, dx, tanh_back_k);
}

/// `ln x` in `f32`, branch-free (Cephes `logf`): `x = m·2^e` with `m` in `[√½, √2)` from the
/// exponent bits (subnormal inputs are scaled by 2²³ first), `ln m` from a degree-9
/// polynomial in `m − 1`, plus `e·ln 2` in two parts. Within 1 ulp of the exact value for every
/// positive finite input, subnormals included (0.75 measured on a sweep over the whole range,
/// which a test repeats);
/// `ln 0 = −∞`, `ln ∞ = ∞`, negative inputs and NaN give NaN.
#[inline(always)]
pub fn ln_scalar(x: f32) -> f32 {
    let subnormal = x < f32::MIN_POSITIVE;
    let xs = if subnormal { x * 8_388_608.0 } else { x };
    let bits = xs.to_bits() as i32;
    let e = ((bits >> 23) & 0xff) - 126 - if subnormal { 23 } else { 0 };
    // m in [0.5, 1); below √½ take 2m − 1 and one less in the exponent, so m − 1 is small.
    let m = f32::from_bits(((bits & 0x007f_ffff) | 0x3f00_0000) as u32);
    let low = m < std::f32::consts::FRAC_1_SQRT_2;
    let e = (if low { e - 1 } else { e }) as f32;
    let t = if low { m + m - 1.0 } else { m - 1.0 };
    let z = t * t;
    let mut p = 7.037_683_6e-2;
    p = p * t - 1.151_461e-1;
    p = p * t + 1.167_699_9e-1;
    p = p * t - 1.242_014_1e-1;
    p = p * t + 1.424_932_3e-1;
    p = p * t - 1.666_805_8e-1;
    p = p * t + 2.000_071_4e-1;
    p = p * t - 2.499_999_4e-1;
    p = p * t + 3.333_333e-1;
    let y = p * t * z + e * -2.121_944_4e-4 - 0.5 * z;
    let r = t + y + e * 0.693_359_4;
    let r = if x == f32::INFINITY { x } else { r };
    let r = if x == 0.0 { f32::NEG_INFINITY } else { r };
    if x < 0.0 || x.is_nan() {
        f32::NAN
    } else {
        r
    }
}

multiversion! {
    fn ln_k(x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = ln_scalar(v);
        }
    }
}

/// `y[i] = ln x[i]` (within 1 ulp of the exact value; `ln 0 = −∞`, NaN for negative inputs).
///
/// # Panics
///
/// If the slices differ in length.
pub fn ln(x: &[f32], y: &mut [f32]) {
    check_same("ln", "y", y.len(), x.len());
    map1(x, y, ln_k);
}
