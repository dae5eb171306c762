//! Helpers shared by the gradient tests.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::gradcheck::{gradcheck, GradcheckOptions};
use tapestry_autodiff::{Tape, Tensor, Var};

/// A seeded generator, so every test is reproducible.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Uniform values in `[lo, hi)`.
pub fn uniform(rng: &mut ChaCha8Rng, shape: &[usize], lo: f32, hi: f32) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.gen_range(lo..hi)).collect()).unwrap()
}

/// Values with `|x| in [lo, hi)` and random sign: keeps clear of kinks at 0.
pub fn away_from_zero(rng: &mut ChaCha8Rng, shape: &[usize], lo: f32, hi: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            let v = rng.gen_range(lo..hi);
            if rng.gen_bool(0.5) {
                v
            } else {
                -v
            }
        })
        .collect();
    Tensor::from_vec(shape, data).unwrap()
}

/// Panics with the failing element if `f`'s gradients disagree with finite differences, or if
/// the final pass (`Tape::backward_final`, which drops every value no rule of its pass reads)
/// gives gradients that differ from `Tape::backward`'s in any bit.
pub fn check<F>(name: &str, f: F, inputs: &[Tensor])
where
    F: for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t>,
{
    final_pass_agrees(name, &f, inputs);
    if let Err(e) = gradcheck(f, inputs, &GradcheckOptions::default()) {
        panic!("{name}: {e}");
    }
}

/// `Tape::backward_final` against `Tape::backward` on `Σ rᵢ fᵢ(inputs)`, bit for bit: a rule
/// that reads a value it declared unread panics, and one that reads the wrong buffer differs.
pub fn final_pass_agrees<F>(name: &str, f: &F, inputs: &[Tensor])
where
    F: for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t>,
{
    let grads = |last: bool| -> Vec<Vec<u32>> {
        let tape = Tape::new();
        let vars: Vec<Var<'_>> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
        let y = f(&tape, &vars);
        let n = y.value().len();
        let r = Tensor::from_vec(&y.shape(), (0..n).map(|i| (i as f32 * 0.37).sin()).collect());
        let loss = (y * tape.constant(r.unwrap())).sum_all();
        let g = if last { tape.backward_final(loss) } else { tape.backward(loss) };
        vars.iter().map(|&v| g.wrt(v).as_slice().iter().map(|x| x.to_bits()).collect()).collect()
    };
    assert_eq!(grads(true), grads(false), "{name}: backward_final differs from backward");
}

/// Asserts that copies of the correct analytic gradient with small faults are rejected: every
/// element 1% or 0.2% off, or a single element 1% off (the smallest derivative of an input
/// that is at least 2% of its largest one). The tolerance of the check is tight enough to
/// catch such a rule.
pub fn check_catches_one_percent<F>(name: &str, f: F, inputs: &[Tensor])
where
    F: for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t>,
{
    use tapestry_autodiff::gradcheck::{analytic_gradients, compare, numeric_gradients};
    let opts = GradcheckOptions::default();
    let analytic = analytic_gradients(&f, inputs, &opts);
    let numeric = numeric_gradients(&f, inputs, &opts);
    compare(&analytic, &numeric, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    for factor in [1.01, 1.002] {
        let wrong: Vec<Tensor> = analytic.iter().map(|t| t.map(|v| v * factor)).collect();
        assert!(
            compare(&wrong, &numeric, &opts).is_err(),
            "{name}: every element x{factor} went unnoticed"
        );
    }
    for (i, n) in numeric.values.iter().enumerate() {
        let max = n.as_slice().iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let small = n
            .as_slice()
            .iter()
            .enumerate()
            .filter(|(_, v)| v.abs() >= 0.02 * max)
            .min_by(|a, b| a.1.abs().total_cmp(&b.1.abs()));
        if let Some((j, v)) = small {
            let mut wrong = analytic.clone();
            let mut values = wrong[i].to_vec();
            values[j] *= 1.01;
            wrong[i] = Tensor::from_vec(wrong[i].shape(), values).unwrap();
            assert!(
                compare(&wrong, &numeric, &opts).is_err(),
                "{name}: input {i} element {j} ({v}, {:.2}% of the largest) x1.01 went unnoticed",
                100.0 * v.abs() / max
            );
        }
    }
}

/// Element-wise closeness with a relative and absolute tolerance.
pub fn assert_close(name: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length {} vs {}", got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= atol + rtol * w.abs(), "{name}[{i}]: got {g}, want {w}");
    }
}
