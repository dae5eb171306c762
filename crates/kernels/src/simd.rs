//! Run-time choice of instruction set, made once and cached.
//!
//! Kernels are written once as plain loops over fixed-width lane arrays and compiled three times
//! by [`multiversion!`](crate::simd::multiversion): for AVX-512, for AVX2+FMA and for the target's
//! baseline. The compiler vectorises each copy for its instruction set. Because Rust never
//! reassociates floating-point operations or fuses a multiply and an add on its own, the three
//! copies compute bitwise-identical results; only their speed differs.

use std::sync::OnceLock;

/// The instruction sets the kernels can run on, from the baseline up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable code for the target's baseline (SSE2 on x86-64), no run-time feature needed.
    Scalar,
    /// AVX2 with FMA (256-bit vectors).
    Avx2Fma,
    /// AVX-512 F/VL/DQ/BW (512-bit vectors).
    Avx512,
}

/// The best instruction set this CPU supports, detected once and cached.
pub fn detected_isa() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(detect)
}

/// The instruction set kernels run on unless a thread forces another ([`crate::path`]):
/// [`detected_isa`], or [`Isa::Scalar`] when the environment variable `TAPESTRY_FORCE_SCALAR=1`
/// is set before the first kernel call.
pub(crate) fn default_isa() -> Isa {
    static DEFAULT: OnceLock<Isa> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        if std::env::var("TAPESTRY_FORCE_SCALAR").is_ok_and(|v| v == "1") {
            Isa::Scalar
        } else {
            detected_isa()
        }
    })
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    if is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
    {
        Isa::Avx512
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Isa::Avx2Fma
    } else {
        Isa::Scalar
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Isa {
    Isa::Scalar
}

/// The instruction set kernels called now on this thread use: the one this thread forces
/// ([`crate::path::forced`], lowered to [`detected_isa`]), else the default
/// ([`detected_isa`], or the baseline under `TAPESTRY_FORCE_SCALAR=1`).
pub fn active_isa() -> Isa {
    crate::path::current_isa()
}

/// Defines a function whose body is compiled for AVX-512, AVX2+FMA and the baseline, and which
/// dispatches on [`active_isa`] at each call (recording the one it ran, see [`crate::path`]).
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            fn avx512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }

            match $crate::path::isa_for_call() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `isa_for_call` returns `Avx512` only when run-time detection found
                // every feature this copy was compiled for (a forced choice is lowered to
                // `detected_isa`, and the default is `detected_isa` or the baseline).
                $crate::simd::Isa::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above, `Avx2Fma` only when AVX2 and FMA were detected.
                $crate::simd::Isa::Avx2Fma => unsafe { avx2($($arg),*) },
                _ => body($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;

/// Lanes per accumulator array: one AVX-512 register of `f32`.
pub(crate) const LANES: usize = 16;

/// Sums lane accumulators in a fixed tree order.
#[inline(always)]
pub(crate) fn reduce_lanes(acc: [f32; LANES]) -> f32 {
    let mut a8 = [0.0f32; 8];
    for i in 0..8 {
        a8[i] = acc[i] + acc[i + 8];
    }
    let mut a4 = [0.0f32; 4];
    for i in 0..4 {
        a4[i] = a8[i] + a8[i + 4];
    }
    (a4[0] + a4[2]) + (a4[1] + a4[3])
}

/// Fixed-order dot product of two equal-length slices (16 lane accumulators, then a tree).
#[inline(always)]
pub(crate) fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (xa, xb) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] += xa[l] * xb[l];
        }
    }
    for (l, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[l] += x * y;
    }
    reduce_lanes(acc)
}

/// Fixed-order sum of a slice (16 lane accumulators, then a tree).
#[inline(always)]
pub(crate) fn sum_lanes(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    for (l, v) in chunks.remainder().iter().enumerate() {
        acc[l] += v;
    }
    reduce_lanes(acc)
}

/// The largest element in a fixed lane order: NaN if any element is NaN, minus infinity for an
/// empty slice.
#[inline(always)]
pub(crate) fn max_lanes(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut nan = [false; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
            nan[l] |= c[l].is_nan();
        }
    }
    for (l, &v) in chunks.remainder().iter().enumerate() {
        acc[l] = if v > acc[l] { v } else { acc[l] };
        nan[l] |= v.is_nan();
    }
    if nan.iter().any(|&b| b) {
        return f32::NAN;
    }
    acc.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}
