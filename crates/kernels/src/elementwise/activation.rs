//! Activations and elementwise math: ReLU, `exp`, sigmoid, `ln`.

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

/// `e^x` in `f32`, branch-free so that loops over it vectorise: range reduction
/// `x = n·ln2 + r`, a degree-6 polynomial for `e^r` (Cephes `expf`), and `2^n` built from
/// exponent bits. Within 2 ulp of the correctly rounded result for normal outputs; inputs below
/// -87.3365 (results below the smallest normal number) give 0, above 88.7228 give infinity.
#[inline(always)]
pub(super) fn exp_scalar(x: f32) -> f32 {
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

multiversion! {
    fn sigmoid_k(x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = 1.0 / (1.0 + exp_scalar(-v));
        }
    }
}

/// `y[i] = 1 / (1 + e^-x[i])`.
///
/// # Panics
///
/// If the slices differ in length.
pub fn sigmoid(x: &[f32], y: &mut [f32]) {
    check_same("sigmoid", "y", y.len(), x.len());
    map1(x, y, sigmoid_k);
}

fn ln_k(x: &[f32], y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = v.ln();
    }
}

/// `y[i] = ln x[i]` (the standard library's correctly rounded `ln`, not vectorised).
///
/// # Panics
///
/// If the slices differ in length.
pub fn ln(x: &[f32], y: &mut [f32]) {
    check_same("ln", "y", y.len(), x.len());
    map1(x, y, ln_k);
}
