//! Whole-graph properties: many roots over one forward pass, batched equals separate,
//! gradients at intermediates, diamonds, long chains, constants and no-grad regions.

mod common;

use common::{assert_close, rng, uniform};
use tapestry_autodiff::{Tape, Tensor, Var};

/// A two-layer trunk and `heads` heads with different losses; returns the task losses.
fn mtl_graph<'t>(tape: &'t Tape, params: &[Var<'t>], x: Var<'t>) -> (Var<'t>, Vec<Var<'t>>) {
    let h = x.linear(params[0], Some(params[1]));
    let h = h.maximum(tape.constant(Tensor::scalar(0.0))); // relu
    let z = h.linear(params[2], Some(params[3])).abs();
    let mut losses = Vec::new();
    for (t, w) in params[4..].iter().enumerate() {
        let y = z.linear(*w, None);
        losses.push(match t % 3 {
            0 => (y * y).mean_all(),
            1 => y.exp().sum_all().log(),
            _ => (y - 1.0).abs().sum_all() * 0.1,
        });
    }
    (z, losses)
}

fn mtl_params(tasks: usize, seed: u64) -> (Vec<Tensor>, Tensor) {
    let mut r = rng(seed);
    let mut p = vec![
        uniform(&mut r, &[16, 8], -0.5, 0.5),
        uniform(&mut r, &[16], -0.5, 0.5),
        uniform(&mut r, &[12, 16], -0.5, 0.5),
        uniform(&mut r, &[12], -0.5, 0.5),
    ];
    for _ in 0..tasks {
        p.push(uniform(&mut r, &[3, 12], -0.5, 0.5));
    }
    (p, uniform(&mut r, &[5, 8], -1.0, 1.0))
}

#[test]
fn separate_backward_passes_are_independent() {
    let (p, xv) = mtl_params(3, 1);
    let tape = Tape::new();
    let params: Vec<Var<'_>> = p.iter().map(|t| tape.leaf(t.clone())).collect();
    let (_, losses) = mtl_graph(&tape, &params, tape.constant(xv.clone()));
    let nodes_before = tape.len();
    let first: Vec<_> = losses.iter().map(|&l| tape.backward(l)).collect();
    // Backward passes in another order give the same gradients and leave the tape untouched.
    let second: Vec<_> = losses.iter().rev().map(|&l| tape.backward(l)).collect();
    assert_eq!(tape.len(), nodes_before);
    for t in 0..3 {
        for &v in &params {
            assert_eq!(first[t].wrt(v), second[2 - t].wrt(v));
        }
    }
    // Each equals the gradient from a fresh forward pass of that loss alone.
    for (t, g) in first.iter().enumerate() {
        let fresh = Tape::new();
        let fp: Vec<Var<'_>> = p.iter().map(|x| fresh.leaf(x.clone())).collect();
        let (_, fl) = mtl_graph(&fresh, &fp, fresh.constant(xv.clone()));
        let fg = fresh.backward(fl[t]);
        for (a, b) in params.iter().zip(&fp) {
            assert_eq!(g.wrt(*a), fg.wrt(*b));
        }
    }
    // Head t's weights get no gradient from task u != t.
    assert!(first[0].get(params[5]).is_none());
}

#[test]
fn batched_backward_equals_separate_passes() {
    for tasks in [1, 2, 3, 8] {
        let (p, xv) = mtl_params(tasks, 2);
        let tape = Tape::new();
        let params: Vec<Var<'_>> = p.iter().map(|t| tape.leaf(t.clone())).collect();
        let (z, losses) = mtl_graph(&tape, &params, tape.constant(xv));
        let batched = tape.backward_batched(&losses);
        let mut wanted = params.clone();
        wanted.push(z);
        let batched_at = tape.grad_batched(&losses, &wanted);
        for (t, &l) in losses.iter().enumerate() {
            let single = tape.backward(l);
            for &v in &params {
                let want = single.wrt(v);
                let got = batched.get(t, v).unwrap_or_else(|| Tensor::zeros(&v.shape()));
                assert_close("batched", &got.to_vec(), &want.to_vec(), 1e-5, 1e-6);
                assert_eq!(tape.grad(l, &[v]).wrt(v), want);
            }
            // Gradients at the intermediate z (for MGDA-UB) agree too.
            let want = tape.grad(l, &[z]).wrt(z);
            let got = batched_at.get(t, z).expect("every task reaches z");
            assert_close("batched at z", &got.to_vec(), &want.to_vec(), 1e-5, 1e-6);
            let stacked = batched.stacked(params[0]);
            assert_eq!(stacked.shape(), &[tasks, 16, 8]);
        }
    }
}

#[test]
fn batched_sweep_runs_each_shared_rule_once() {
    let (p, xv) = mtl_params(3, 3);
    let tape = Tape::new();
    let params: Vec<Var<'_>> = p.iter().map(|t| tape.leaf(t.clone())).collect();
    let (_, losses) = mtl_graph(&tape, &params, tape.constant(xv));
    let separate: usize = losses.iter().map(|&l| tape.backward(l).rules_run()).sum();
    let batched = tape.backward_batched(&losses).rules_run();
    // Trunk: linear, maximum, linear, abs = 4 rules; shared once instead of three times.
    assert_eq!(separate - batched, 2 * 4);
}

#[test]
fn gradient_at_an_intermediate_visits_only_what_reaches_it() {
    let (p, xv) = mtl_params(2, 4);
    let tape = Tape::new();
    let params: Vec<Var<'_>> = p.iter().map(|t| tape.leaf(t.clone())).collect();
    let (z, losses) = mtl_graph(&tape, &params, tape.constant(xv));
    let gz = tape.grad(losses[0], &[z]);
    // Head 0: linear, mul, mean = 3 rules; nothing of the trunk.
    assert_eq!(gz.rules_run(), 3);
    // dL/dz for L = mean(y²), y = z Wᵀ: 2/(N·3) · y W.
    let y = z.value().to_array();
    let w = p[4].to_array();
    let y = ndarray::Array2::from_shape_vec((5, 12), y.into_raw_vec_and_offset().0).unwrap();
    let w = ndarray::Array2::from_shape_vec((3, 12), w.into_raw_vec_and_offset().0).unwrap();
    let want = y.dot(&w.t()).dot(&w) * (2.0 / 15.0);
    assert_close("dL/dz", &gz.wrt(z).to_vec(), want.as_slice().unwrap(), 1e-5, 1e-6);
    assert!(gz.get(params[0]).is_none(), "leaves below z were not asked for");
}

#[test]
fn diamonds_accumulate() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from(vec![1.0, -2.0]));
    let mut acc = x;
    for _ in 0..99 {
        acc = acc + x;
    }
    // y = (100 x) * x  → dy/dx = 200 x
    let y = (acc * x).sum_all();
    assert_eq!(tape.backward(y).wrt(x).to_vec(), vec![200.0, -400.0]);
}

#[test]
fn a_ten_thousand_op_chain_needs_no_stack() {
    let tape = Tape::with_capacity(20_001);
    let x = tape.leaf(Tensor::from(vec![0.5]));
    let mut y = x;
    for _ in 0..10_000 {
        y = y.mul_scalar(1.0001).add_scalar(-0.0001);
    }
    let g = tape.backward(y.sum_all());
    let want = 1.0001f64.powi(10_000) as f32;
    assert_close("chain", &g.wrt(x).to_vec(), &[want], 1e-3, 0.0);
    assert_eq!(g.rules_run(), 20_001);
}

#[test]
fn constants_and_no_grad_cost_nothing() {
    let tape = Tape::new();
    let w = tape.leaf(Tensor::from(vec![2.0]));
    let data = tape.constant(Tensor::from(vec![3.0]));
    let frozen = tape.no_grad(|| (w * w).exp());
    assert!(!frozen.requires_grad());
    let d = data.exp().log(); // constants all the way: not recorded as ops
    let y = (w * d + frozen).sum_all();
    let g = tape.backward(y);
    assert_eq!(g.wrt(w).to_vec(), vec![3.0]);
    assert!(g.get(data).is_none());
    // mul, add, sum: the no-grad part and the constant chain are not visited.
    assert_eq!(g.rules_run(), 3);
    assert_eq!(tape.backward(w.detach().sum_all()).len(), 0);
}

#[test]
#[should_panic(expected = "backward root must be a scalar")]
fn root_must_be_scalar() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::zeros(&[2]));
    tape.backward(x * x);
}

#[test]
#[should_panic(expected = "two different tapes")]
fn values_of_two_tapes_do_not_mix() {
    let (a, b) = (Tape::new(), Tape::new());
    let _ = a.leaf(Tensor::zeros(&[1])) + b.leaf(Tensor::zeros(&[1]));
}

#[test]
fn dump_and_dot_describe_the_tape() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from(vec![1.0, 2.0]));
    let y = (x * x).sum_all();
    let _ = y;
    let dump = tape.dump();
    assert!(dump.contains("%1   = mul            (%0, %0) shape [2]  [grad]"), "{dump}");
    assert!(tape.to_dot().contains("n0 -> n1;"));
}
