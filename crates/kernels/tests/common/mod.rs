//! Helpers shared by the kernel tests.
#![allow(dead_code)]

pub mod conv_ref;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `len` values uniform in [-1, 1) from a fixed seed.
pub fn random_vec(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

/// Asserts `got` is within `tol * (1 + |want|)` of `want`, element by element.
pub fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= tol * (1.0 + w.abs()),
            "{what}: element {i}: got {g}, want {w} (err {err:e})"
        );
    }
}

/// Runs `f` with the baseline copy forced and asserts that the copy reached every task the
/// kernel handed to the rayon pool (with a pool of more than one thread, `f` must be large
/// enough to fan out): at least one pool task ran, and only the baseline ran (`multiversioned`:
/// and it did run; kernels without multiversioned loops record none).
pub fn assert_carries_forced_isa(name: &str, multiversioned: bool, f: impl FnOnce()) {
    use tapestry_kernels::elementwise::Isa;
    use tapestry_kernels::path::{forced, Force};
    let ((), ran) = forced(Force { isa: Some(Isa::Scalar), ..Force::NONE }, f);
    if rayon::current_num_threads() > 1 {
        assert!(ran.pool_tasks() > 0, "{name}: nothing ran on the pool");
    }
    let want = if multiversioned { vec![Isa::Scalar] } else { vec![] };
    assert_eq!(ran.isas(), want, "{name}");
}
