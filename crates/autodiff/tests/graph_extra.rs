//! Graph-level tests through the activation, reduction and shape ops: long chains need no
//! stack, and values used many times (diamonds) accumulate their cotangents.

mod common;

use common::assert_close;
use tapestry_autodiff::{Tape, Tensor, Var};

/// Runs `f` on a thread with a 256 KiB stack: a recursive sweep over 10,000 nodes would
/// overflow it.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(256 * 1024).spawn(f).unwrap().join().unwrap();
}

#[test]
fn a_ten_thousand_tanh_chain_needs_no_stack() {
    on_small_stack(|| {
        let tape = Tape::with_capacity(10_002);
        let x = tape.leaf(Tensor::from(vec![0.5]));
        let mut y = x;
        // d tanh^n(x)/dx = Π (1 − y_k²) over the chain's outputs y_k.
        let mut want = 1.0f64;
        for _ in 0..10_000 {
            y = y.tanh();
            want *= 1.0 - (y.value().item() as f64).powi(2);
        }
        let g = tape.backward(y.sum_all()).wrt(x);
        assert_close("tanh chain", &g.to_vec(), &[want as f32], 1e-3, 0.0);
    });
}

#[test]
fn a_ten_thousand_shape_op_chain_needs_no_stack() {
    on_small_stack(|| {
        let tape = Tape::new();
        let x = tape.leaf(Tensor::from_vec(&[2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap());
        let mut y = x;
        for i in 0..10_000 {
            y = if i % 2 == 0 { y.transpose(0, 1) } else { y.reshape(&[2, 3]) };
        }
        let w = tape.constant(Tensor::from_vec(&[2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap());
        let g = tape.backward((y * w).sum_all()).wrt(x);
        let (yv, gv) = (y.value().to_vec(), g.to_vec());
        // The chain moves elements around: y[k] = x[p(k)] for some permutation p, and x holds
        // 1..=6, so p(k) = y[k] − 1. With L = Σ w·y and w[k] = k + 1, ∂L/∂x[p(k)] = k + 1.
        for (k, v) in yv.iter().enumerate() {
            assert_eq!(gv[*v as usize - 1], (k + 1) as f32);
        }
    });
}

#[test]
fn shape_op_diamonds_accumulate() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from(vec![1.0, -2.0]));
    let cat = Var::concat(&[x, x, x.mul_scalar(2.0)], 0); // [x, x, 2x]
    let stacked = Var::stack(&[x, x], 1); // [[x0, x0], [x1, x1]]
    let picked = x.index_select(0, &[1, 1, 0]); // [x1, x1, x0]
    let y = cat.sum_all() + stacked.sum_all() + picked.sum_all();
    // ∂y/∂x0 = (1 + 1 + 2) + 2 + 1 = 7, ∂y/∂x1 = 4 + 2 + 2 = 8.
    assert_eq!(tape.backward(y).wrt(x).to_vec(), vec![7.0, 8.0]);
}

#[test]
fn reduction_and_activation_diamonds_accumulate() {
    let tape = Tape::new();
    let data = vec![0.5f32, 2.0, -1.0];
    let x = tape.leaf(Tensor::from(data.clone()));
    let y = x.max(&[], false)
        + x.logsumexp(&[], false)
        + x.sigmoid().sum_all()
        + x.var(&[], true, false);
    let g = tape.backward(y).wrt(x).to_vec();
    let lse = data.iter().map(|v| v.exp()).sum::<f32>().ln();
    let mean = data.iter().sum::<f32>() / 3.0;
    let want: Vec<f32> = data
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let s = 1.0 / (1.0 + (-v).exp());
            f32::from(u8::from(i == 1)) + (v - lse).exp() + s * (1.0 - s) + (v - mean)
        })
        .collect();
    assert_close("diamond", &g, &want, 1e-5, 1e-6);
}
