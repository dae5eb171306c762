//! Elementwise kernels against scalar std loops, and the forced-scalar path against SIMD.

mod common;
use common::random_vec;
use tapestry_kernels::elementwise as ew;

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

#[test]
fn forced_scalar_path_gives_the_same_bits() {
    let detected = ew::detected_isa();
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
            ew::softmax_rows(&a[..n / 17 * 17], 17, &mut t[..n / 17 * 17]);
            out.extend(bits(&t));
            out.push(ew::sum(&a).to_bits());
            out.push(ew::dot(&a, &b).to_bits());
            out.push(ew::max(&a).to_bits());
            out
        };
        let simd = run();
        ew::set_force_scalar(true);
        assert_eq!(ew::active_isa(), ew::Isa::Scalar);
        let scalar = run();
        ew::set_force_scalar(false);
        assert_eq!(ew::active_isa(), detected);
        assert_eq!(simd, scalar, "len {n} on {detected:?}");
    }
}

#[test]
#[should_panic(expected = "add: out has length 2, expected 3")]
fn length_mismatch_panics() {
    ew::add(&[1.0; 3], &[1.0; 3], &mut [0.0; 2]);
}
