//! Helpers shared by the integration tests.
#![allow(dead_code)]

use tapestry_autodiff::Tensor;

/// `v[i] = sin(a·i + b)` computed in f64 and rounded to f32, row-major: the same values as
/// `torch.sin(a * torch.arange(n, dtype=torch.float64) + b).float()` in the golden scripts.
pub fn vals(shape: &[usize], a: f64, b: f64) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|i| (a * i as f64 + b).sin() as f32).collect()).unwrap()
}

/// `t · s`, elementwise.
pub fn scaled(t: Tensor, s: f32) -> Tensor {
    t.map(|v| v * s)
}

/// Asserts `|a − e| <= atol + rtol·|e|` elementwise, naming the first offending index.
#[track_caller]
pub fn assert_close(what: &str, actual: &[f32], expected: &[f32], rtol: f32, atol: f32) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= atol + rtol * e.abs(),
            "{what}[{i}]: got {a}, expected {e} (diff {})",
            (a - e).abs()
        );
    }
}
