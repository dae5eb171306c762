//! Elementwise kernels against scalar std loops, and the forced-scalar path against SIMD.

mod common;
use common::{assert_carries_forced_isa, random_vec};
use tapestry_kernels::elementwise::{self as ew, Isa};
use tapestry_kernels::path::{forced, Force};

/// Lengths around the SIMD widths (4, 8, 16 lanes and the 16-lane unroll), plus one long
/// enough to run in parallel chunks.
const LENS: [usize; 14] = [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 100, (1 << 18) + 5];

/// A slice kernel `out = op(a, b)`.
type BinaryKernel = fn(&[f32], &[f32], &mut [f32]);
/// The same operation on one pair of numbers.
type ScalarOp = fn(f32, f32) -> f32;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn binary_maps_match_scalar_loops_exactly() {
    for &n in &LENS {
        let a = random_vec(n, 1);
        let b: Vec<f32> = random_vec(n, 2).iter().map(|v| v + 1.5).collect();
        let mut out = vec![f32::NAN; n];
        let ops: [(BinaryKernel, ScalarOp); 4] = [
            (ew::add, |x, y| x + y),
            (ew::sub, |x, y| x - y),
            (ew::mul, |x, y| x * y),
            (ew::div, |x, y| x / y),
        ];
        for (k, (op, f)) in ops.iter().enumerate() {
            op(&a, &b, &mut out);
            let want: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| f(x, y)).collect();
            assert_eq!(bits(&out), bits(&want), "op {k} len {n}");
        }
        let mut y = b.clone();
        ew::axpy(0.5, &a, &mut y);
        let want: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| y + 0.5 * x).collect();
        assert_eq!(bits(&y), bits(&want), "axpy len {n}");
        ew::scale(-3.0, &a, &mut y);
        let want: Vec<f32> = a.iter().map(|&x| -3.0 * x).collect();
        assert_eq!(bits(&y), bits(&want), "scale len {n}");
        let mut y = b.clone();
        ew::add_assign(&mut y, &a);
        let want: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| y + x).collect();
        assert_eq!(bits(&y), bits(&want), "add_assign len {n}");
    }
}

#[test]
fn relu_forward_and_backward() {
    for &n in &LENS {
        let x = random_vec(n, 3);
        let dy = random_vec(n, 4);
        let mut y = vec![f32::NAN; n];
        ew::relu_forward(&x, &mut y);
        assert!(x.iter().zip(&y).all(|(&a, &b)| b == if a > 0.0 { a } else { 0.0 }), "len {n}");
        let mut dx = vec![f32::NAN; n];
        ew::relu_backward(&x, &dy, &mut dx);
        let ok =
            x.iter().zip(&dy).zip(&dx).all(|((&a, &d), &g)| g == if a > 0.0 { d } else { 0.0 });
        assert!(ok, "relu_backward len {n}");
        let mut d = dy.clone();
        ew::relu_backward_in_place(&x, &mut d);
        assert_eq!(bits(&d), bits(&dx), "relu_backward_in_place len {n}");
    }
}

#[test]
fn exp_is_within_two_ulp_of_std() {
    let mut x: Vec<f32> = (0..20001).map(|i| -87.0 + i as f32 * (175.7 / 20000.0)).collect();
    x.extend([0.0, -0.0, 1e-8, -1e-8, 1.0, -1.0, 88.72, -87.33]);
    let mut y = vec![0.0; x.len()];
    ew::exp(&x, &mut y);
    for (&v, &e) in x.iter().zip(&y) {
        let want = (v as f64).exp();
        let ulp = (want as f32).abs() * f32::EPSILON;
        assert!(((e as f64) - want).abs() <= 2.0 * ulp as f64, "exp({v}) = {e}, want {want}");
    }
    let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 100.0, -100.0];
    let mut y = [0.0; 5];
    ew::exp(&special, &mut y);
    assert!(y[0].is_nan());
    assert_eq!(&y[1..], &[f32::INFINITY, 0.0, f32::INFINITY, 0.0]);
}

#[test]
fn reductions_match_f64_and_are_fixed_order() {
    for &n in &LENS {
        let x = random_vec(n, 5);
        let y = random_vec(n, 6);
        let s64: f64 = x.iter().map(|&v| v as f64).sum();
        let s = ew::sum(&x);
        assert!((s as f64 - s64).abs() <= 1e-6 * (n as f64).sqrt().max(1.0) * 10.0, "sum len {n}");
        let d64: f64 = x.iter().zip(&y).map(|(&a, &b)| a as f64 * b as f64).sum();
        assert!(
            (ew::dot(&x, &y) as f64 - d64).abs() <= 1e-5 * (n as f64).sqrt().max(1.0),
            "dot {n}"
        );
        let m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(ew::max(&x), m, "max len {n}");
        // The same call in a one-thread pool gives the same bits.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert_eq!(pool.install(|| ew::sum(&x)).to_bits(), s.to_bits(), "sum order len {n}");
    }
    assert!(ew::max(&[1.0, f32::NAN, 3.0]).is_nan());
    assert_eq!(ew::max(&[]), f32::NEG_INFINITY);
}

#[test]
fn broadcast_row_and_its_reverse() {
    let (rows, cols) = (5, 19);
    let x = random_vec(rows * cols, 7);
    let row = random_vec(cols, 8);
    let mut out = vec![0.0; rows * cols];
    ew::add_row_broadcast(&x, &row, &mut out);
    for r in 0..rows {
        for c in 0..cols {
            assert_eq!(out[r * cols + c], x[r * cols + c] + row[c]);
        }
    }
    let mut s = vec![f32::NAN; cols];
    ew::sum_over_rows(&x, &mut s);
    for c in 0..cols {
        let mut want = 0.0f32;
        for r in 0..rows {
            want += x[r * cols + c];
        }
        assert_eq!(s[c], want);
    }
}

#[test]
fn softmax_and_log_softmax_rows() {
    for &cols in &[1, 7, 10, 16, 17, 100] {
        let rows = 6;
        let x: Vec<f32> = random_vec(rows * cols, cols as u64).iter().map(|v| v * 30.0).collect();
        let mut y = vec![0.0; x.len()];
        let mut ly = vec![0.0; x.len()];
        ew::softmax_rows(&x, cols, &mut y);
        ew::log_softmax_rows(&x, cols, &mut ly);
        for r in 0..rows {
            let xr = &x[r * cols..(r + 1) * cols];
            let m = xr.iter().cloned().fold(f64::NEG_INFINITY, |a, b| a.max(b as f64));
            let z: f64 = xr.iter().map(|&v| (v as f64 - m).exp()).sum();
            for c in 0..cols {
                let p = (xr[c] as f64 - m).exp() / z;
                let lp = xr[c] as f64 - m - z.ln();
                assert!((y[r * cols + c] as f64 - p).abs() <= 1e-6, "softmax cols {cols}");
                assert!(
                    (ly[r * cols + c] as f64 - lp).abs() <= 1e-5 * (1.0 + lp.abs()),
                    "log_softmax"
                );
            }
        }
    }
}

/// `a op b` over an output of `n` elements, each operand repeating along it: the definition of
/// `ew::binary`, one element at a time.
fn tiled_reference(op: ew::BinaryOp, a: &[f32], b: &[f32], n: usize) -> Vec<f32> {
    (0..n).map(|i| op.apply(a[i % a.len()], b[i % b.len()])).collect()
}

const OPS: [ew::BinaryOp; 4] =
    [ew::BinaryOp::Add, ew::BinaryOp::Sub, ew::BinaryOp::Mul, ew::BinaryOp::Div];

#[test]
fn binary_with_a_repeated_operand_matches_the_definition() {
    // Rows around the SIMD widths, a single value (cols 1), and sizes on the parallel path: many
    // narrow rows, and rows wider than a parallel chunk.
    let mut cases: Vec<(usize, usize)> = Vec::new();
    for rows in [1, 2, 7] {
        for cols in [1, 3, 15, 16, 17, 100] {
            cases.push((rows, cols));
        }
    }
    cases.extend([((1 << 18) / 10 + 3, 10), ((1 << 18) + 5, 1), (14, 20_000)]);
    for (rows, cols) in cases {
        let n = rows * cols;
        let full = random_vec(n, 21);
        let row: Vec<f32> = random_vec(cols, 22).iter().map(|v| v + 1.5).collect();
        let mut out = vec![f32::NAN; n];
        for op in OPS {
            ew::binary(op, &full, &row, &mut out);
            let want = tiled_reference(op, &full, &row, n);
            assert_eq!(bits(&out), bits(&want), "{op:?} [{rows}, {cols}] row on the right");
            ew::binary(op, &row, &full, &mut out);
            let want = tiled_reference(op, &row, &full, n);
            assert_eq!(bits(&out), bits(&want), "{op:?} [{rows}, {cols}] row on the left");
            let other = random_vec(n, 23);
            ew::binary(op, &full, &other, &mut out);
            let want = tiled_reference(op, &full, &other, n);
            assert_eq!(bits(&out), bits(&want), "{op:?} [{rows}, {cols}] equal lengths");
        }
    }
    let mut empty: [f32; 0] = [];
    ew::binary(ew::BinaryOp::Add, &[], &[], &mut empty);
}

#[test]
#[should_panic(
    expected = "binary Mul: operands of lengths 6 and 4 do not tile an output of length 6"
)]
fn binary_refuses_operands_that_do_not_tile() {
    ew::binary(ew::BinaryOp::Mul, &[1.0; 6], &[1.0; 4], &mut [0.0; 6]);
}

#[test]
fn leaky_relu_and_the_fused_backward_rules_match_scalar_loops() {
    for &n in &LENS {
        let x = random_vec(n, 31);
        let dy = random_vec(n, 32);
        let y: Vec<f32> = random_vec(n, 33).iter().map(|v| 0.5 + 0.45 * v).collect();
        let mut out = vec![f32::NAN; n];
        ew::leaky_relu_forward(0.1, &x, &mut out);
        let want: Vec<f32> = x.iter().map(|&v| if v > 0.0 { v } else { 0.1 * v }).collect();
        assert_eq!(bits(&out), bits(&want), "leaky_relu_forward len {n}");
        ew::leaky_relu_backward(0.1, &x, &dy, &mut out);
        let want: Vec<f32> =
            x.iter().zip(&dy).map(|(&v, &d)| if v > 0.0 { d } else { 0.1 * d }).collect();
        assert_eq!(bits(&out), bits(&want), "leaky_relu_backward len {n}");
        ew::sigmoid_backward(&y, &dy, &mut out);
        let want: Vec<f32> = y.iter().zip(&dy).map(|(&s, &d)| d * (s * (1.0 - s))).collect();
        assert_eq!(bits(&out), bits(&want), "sigmoid_backward len {n}");
        ew::tanh_backward(&y, &dy, &mut out);
        let want: Vec<f32> = y.iter().zip(&dy).map(|(&t, &d)| d * (1.0 - t * t)).collect();
        assert_eq!(bits(&out), bits(&want), "tanh_backward len {n}");
    }
}

/// The gap between `|want|` rounded to `f32` and the next `f32` up.
fn ulp(want: f64) -> f64 {
    let a = (want as f32).abs();
    (f32::from_bits(a.to_bits() + 1) - a) as f64
}

/// The largest error of `kernel` over `xs` against `exact`, in ulp, over normal results.
fn max_ulp_error(xs: &[f32], kernel: fn(&[f32], &mut [f32]), exact: fn(f64) -> f64) -> f64 {
    let mut y = vec![0.0; xs.len()];
    kernel(xs, &mut y);
    let mut worst = 0.0f64;
    for (&x, &got) in xs.iter().zip(&y) {
        let want = exact(x as f64);
        if want.is_finite() && (want as f32).abs() >= f32::MIN_POSITIVE {
            worst = worst.max((got as f64 - want).abs() / ulp(want));
        }
    }
    worst
}

fn linspace(lo: f32, hi: f32, steps: usize) -> Vec<f32> {
    (0..=steps).map(|i| lo + (hi - lo) * (i as f32 / steps as f32)).collect()
}

#[test]
fn tanh_sigmoid_and_ln_are_within_their_stated_error() {
    // tanh: 2 ulp over [-10, 10], and over every 37th float of |x| in [1e-19, 0.625] (the
    // polynomial's range) with both signs.
    let mut xs = linspace(-10.0, 10.0, 400_000);
    let mut b = 0x2000_0000u32;
    while b < 0x3f20_0000 {
        xs.extend([f32::from_bits(b), -f32::from_bits(b)]);
        b += 37 * 101;
    }
    let e = max_ulp_error(&xs, ew::tanh, f64::tanh);
    assert!(e <= 2.0, "tanh: {e} ulp");
    // sigmoid: 3 ulp where the result is normal.
    let e =
        max_ulp_error(&linspace(-87.0, 30.0, 400_000), ew::sigmoid, |x| 1.0 / (1.0 + (-x).exp()));
    assert!(e <= 3.0, "sigmoid: {e} ulp");
    // ln: 1 ulp over all positive floats, subnormals included (every 9973rd bit pattern), and
    // densely around 1, where the result is small.
    let mut xs: Vec<f32> = (1..0x7f80_0000u32).step_by(9973).map(f32::from_bits).collect();
    xs.extend(linspace(0.5, 2.0, 400_000));
    let e = max_ulp_error(&xs, ew::ln, f64::ln);
    assert!(e <= 1.0, "ln: {e} ulp");

    let special = [0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 30.0, -30.0];
    let mut y = [0.0; 7];
    ew::tanh(&special, &mut y);
    assert_eq!(&y[..4], &[0.0, 0.0, 1.0, -1.0]);
    assert!(y[4].is_nan() && y[5] == 1.0 && y[6] == -1.0);
    ew::sigmoid(&special, &mut y);
    assert_eq!(&y[..4], &[0.5, 0.5, 1.0, 0.0]);
    assert!(y[4].is_nan() && y[5] == 1.0 && y[6] > 0.0 && y[6] < 1e-12);
    ew::ln(&special, &mut y);
    assert_eq!(&y[..3], &[f32::NEG_INFINITY, f32::NEG_INFINITY, f32::INFINITY]);
    assert!(y[3].is_nan() && y[4].is_nan() && y[6].is_nan());
    assert_eq!(y[5], 30f32.ln());
}

#[test]
fn single_values_are_the_kernels_bits() {
    type Pair = (fn(&[f32], &mut [f32]), fn(f32) -> f32);
    let pairs: [(&str, Pair); 4] = [
        ("exp", (ew::exp, ew::single::exp)),
        ("ln", (ew::ln, ew::single::ln)),
        ("sigmoid", (ew::sigmoid, ew::single::sigmoid)),
        ("tanh", (ew::tanh, ew::single::tanh)),
    ];
    let mut x: Vec<f32> = random_vec(1000, 61).iter().map(|v| v * 40.0).collect();
    x.extend([0.0, -0.0, 1e-30, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 100.0, -100.0]);
    let mut y = vec![0.0; x.len()];
    for (name, (kernel, one)) in pairs {
        kernel(&x, &mut y);
        let want: Vec<f32> = x.iter().map(|&v| one(v)).collect();
        assert_eq!(bits(&y), bits(&want), "{name}");
    }
}

#[test]
fn sums_over_and_of_rows() {
    // (rows, cols) in one block, in many blocks (parallel), and with rows wider than a chunk.
    let cases = [(1, 1), (5, 19), (3, 16), (7, 33), (40_000, 10), ((1 << 18) + 3, 1), (20, 20_000)];
    for (rows, cols) in cases {
        let x = random_vec(rows * cols, 41);
        let mut s = vec![f32::NAN; cols];
        ew::sum_over_rows(&x, &mut s);
        for c in 0..cols {
            let want: f64 = (0..rows).map(|r| x[r * cols + c] as f64).sum();
            assert!(
                (s[c] as f64 - want).abs() <= 1e-5 * (rows as f64).sqrt(),
                "[{rows}, {cols}] col {c}"
            );
        }
        if rows * cols <= 1 << 14 || cols >= 1 << 14 {
            // One block, or columns split between tasks: the plain sum of the rows in order.
            for c in 0..cols {
                let mut want = 0.0f32;
                for r in 0..rows {
                    want += x[r * cols + c];
                }
                assert_eq!(s[c].to_bits(), want.to_bits(), "[{rows}, {cols}] in order");
            }
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let mut s1 = vec![f32::NAN; cols];
        pool.install(|| ew::sum_over_rows(&x, &mut s1));
        assert_eq!(bits(&s1), bits(&s), "[{rows}, {cols}] one thread");

        let mut r = vec![f32::NAN; rows];
        ew::sum_rows(&x, cols, &mut r);
        let want: Vec<f32> = x.chunks(cols).map(ew::sum).collect();
        assert_eq!(bits(&r), bits(&want), "sum_rows [{rows}, {cols}]");
        let mut r1 = vec![f32::NAN; rows];
        pool.install(|| ew::sum_rows(&x, cols, &mut r1));
        assert_eq!(bits(&r1), bits(&r), "sum_rows [{rows}, {cols}] one thread");
    }
    let mut r = [f32::NAN; 3];
    ew::sum_rows(&[], 0, &mut r);
    assert_eq!(r, [0.0; 3]);
}

#[test]
fn softmax_backward_rows_match_f64() {
    for &cols in &[1, 7, 10, 16, 17, 100] {
        for rows in [1, 6, (1 << 18) / cols + 1] {
            let n = rows * cols;
            let x: Vec<f32> = random_vec(n, cols as u64).iter().map(|v| v * 5.0).collect();
            let dy = random_vec(n, 51);
            let (mut y, mut ly) = (vec![0.0; n], vec![0.0; n]);
            ew::softmax_rows(&x, cols, &mut y);
            ew::log_softmax_rows(&x, cols, &mut ly);
            let (mut dx, mut ldx) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            ew::softmax_rows_backward(&y, &dy, cols, &mut dx);
            ew::log_softmax_rows_backward(&ly, &dy, cols, &mut ldx);
            // Check a few rows (all of them when small).
            for r in (0..rows).step_by((rows / 7).max(1)) {
                let at = |v: &[f32], c: usize| v[r * cols + c] as f64;
                let dot: f64 = (0..cols).map(|c| at(&dy, c) * at(&y, c)).sum();
                let sum: f64 = (0..cols).map(|c| at(&dy, c)).sum();
                for c in 0..cols {
                    let want = at(&y, c) * (at(&dy, c) - dot);
                    assert!((at(&dx, c) - want).abs() <= 1e-6, "softmax backward cols {cols}");
                    let want = at(&dy, c) - at(&ly, c).exp() * sum;
                    assert!((at(&ldx, c) - want).abs() <= 1e-5, "log_softmax backward cols {cols}");
                }
            }
        }
    }
}

#[test]
fn every_instruction_set_gives_the_same_bits() {
    // Each copy forced on this thread only (the other tests of this binary keep theirs), the
    // longest length large enough to split over the pool, whose tasks take the forced copy too.
    let detected = ew::detected_isa();
    let isas: Vec<Isa> =
        [Isa::Scalar, Isa::Avx2Fma, Isa::Avx512].into_iter().filter(|&i| i <= detected).collect();
    for &n in &[17usize, 1000, (1 << 18) + 5] {
        let a = random_vec(n, 11);
        let b = random_vec(n, 12);
        let run = || {
            let mut out = Vec::new();
            let mut t = vec![0.0; n];
            ew::mul(&a, &b, &mut t);
            out.extend(bits(&t));
            ew::exp(&a, &mut t);
            out.extend(bits(&t));
            ew::relu_backward(&a, &b, &mut t);
            out.extend(bits(&t));
            let m = n / 17 * 17;
            ew::softmax_rows(&a[..m], 17, &mut t[..m]);
            out.extend(bits(&t));
            ew::log_softmax_rows_backward(&a[..m], &b[..m], 17, &mut t[..m]);
            out.extend(bits(&t));
            ew::softmax_rows_backward(&a[..m], &b[..m], 17, &mut t[..m]);
            out.extend(bits(&t));
            for op in OPS {
                ew::binary(op, &a[..m], &b[..17], &mut t[..m]);
                out.extend(bits(&t[..m]));
            }
            ew::tanh(&a, &mut t);
            out.extend(bits(&t));
            ew::sigmoid(&a, &mut t);
            out.extend(bits(&t));
            ew::ln(&b, &mut t);
            out.extend(bits(&t));
            ew::leaky_relu_backward(0.2, &a, &b, &mut t);
            out.extend(bits(&t));
            ew::sigmoid_backward(&a, &b, &mut t);
            out.extend(bits(&t));
            ew::tanh_backward(&a, &b, &mut t);
            out.extend(bits(&t));
            ew::sum_over_rows(&a[..m], &mut t[..17]);
            out.extend(bits(&t[..17]));
            ew::sum_rows(&a[..m], 17, &mut t[..m / 17]);
            out.extend(bits(&t[..m / 17]));
            out.push(ew::sum(&a).to_bits());
            out.push(ew::dot(&a, &b).to_bits());
            out.push(ew::max(&a).to_bits());
            out
        };
        let (reference, ran) = forced(Force::NONE, run);
        assert_eq!(ran.isas(), vec![ew::active_isa()], "len {n}: the default copy");
        for &isa in &isas {
            let (bits, ran) = forced(Force { isa: Some(isa), ..Force::NONE }, || {
                assert_eq!(ew::active_isa(), isa);
                run()
            });
            assert_eq!(ran.isas(), vec![isa], "len {n}: only the forced copy ran");
            assert!(bits == reference, "len {n}: {isa:?} differs from {:?}", ew::active_isa());
        }
    }
    // Forcing more than the CPU has runs the best it has.
    let (_, ran) = forced(Force { isa: Some(Isa::Avx512), ..Force::NONE }, || ew::sum(&[1.0; 40]));
    assert_eq!(ran.isas(), vec![detected]);
}

#[test]
fn every_parallel_kernel_carries_the_forced_copy_to_the_pool() {
    // Past the parallel threshold of 2^18 elements, in whole rows of 17.
    let n = 17 * 15_500;
    let (a, b) = (random_vec(n, 14), random_vec(n, 15));
    let mut t = vec![0.0; n];
    let m = n / 17 * 17;
    assert_carries_forced_isa("mul", true, || ew::mul(&a, &b, &mut t));
    assert_carries_forced_isa("binary row", true, || {
        ew::binary(ew::BinaryOp::Add, &a[..m], &b[..17], &mut t[..m])
    });
    assert_carries_forced_isa("softmax_rows", true, || ew::softmax_rows(&a[..m], 17, &mut t[..m]));
    assert_carries_forced_isa("sum_over_rows", true, || ew::sum_over_rows(&a[..m], &mut t[..17]));
    assert_carries_forced_isa("sum_over_rows, one wide row", true, || {
        ew::sum_over_rows(&a, &mut t)
    });
    assert_carries_forced_isa("sum_rows", true, || ew::sum_rows(&a[..m], 17, &mut t[..m / 17]));
    assert_carries_forced_isa("sum", true, || {
        ew::sum(&a);
    });
    assert_carries_forced_isa("dot", true, || {
        ew::dot(&a, &b);
    });
}

#[test]
fn a_forced_copy_stays_on_its_thread() {
    let x = random_vec(1000, 13);
    let default = ew::active_isa();
    let ((), ran) = forced(Force { isa: Some(Isa::Scalar), ..Force::NONE }, || {
        // A thread of its own (not a task a kernel handed to the pool) keeps the default.
        let other = std::thread::spawn({
            let x = x.clone();
            move || forced(Force::NONE, || ew::sum(&x)).1
        });
        assert_eq!(other.join().unwrap().isas(), vec![default]);
        ew::sum(&x);
    });
    assert_eq!(ran.isas(), vec![Isa::Scalar]);
    assert_eq!(forced(Force::NONE, || ew::sum(&x)).1.isas(), vec![default]);
}

#[test]
#[should_panic(expected = "add: out has length 2, expected 3")]
fn length_mismatch_panics() {
    ew::add(&[1.0; 3], &[1.0; 3], &mut [0.0; 2]);
}
