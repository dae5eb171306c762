//! The ops that run on the elementwise kernels, on tensors large enough for the SIMD and rayon
//! paths (above the 2¹⁸-element parallel threshold) and on small ones: values and gradients
//! against the general path (`broadcast::zip_map`, ndarray) or an `f64` reference, against the
//! kernels called directly, and the same bits with one thread and with two.
//!
//! A kernel notices that it runs inside a rayon worker and then stays on one thread, so "one
//! thread" below is a call inside a one-thread pool, and "two threads" a call from the test
//! thread with the global pool built with two threads.

mod common;

use std::sync::Once;

use common::{rng, uniform};
use ndarray::Axis;
use tapestry_autodiff::broadcast::{sum_to, zip_map};
use tapestry_autodiff::ops::loss::Reduction;
use tapestry_autodiff::{Tape, Tensor, Var};
use tapestry_kernels::elementwise as ew;

/// Builds the global pool with two threads (once per test binary), so that long kernels fan
/// out even on a one-core machine or with `RAYON_NUM_THREADS=1`.
fn two_threads() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(2).build_global();
    });
    assert!(rayon::current_num_threads() >= 2, "the global pool has one thread");
}

/// Runs `f` inside a one-thread pool: every kernel then takes its serial path.
fn one_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(f)
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.as_slice().iter().map(|v| v.to_bits()).collect()
}

fn assert_same_bits(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    if let Some(i) =
        (0..got.len()).find(|&i| got.as_slice()[i].to_bits() != want.as_slice()[i].to_bits())
    {
        panic!("{what}: element {i} is {}, want {}", got.as_slice()[i], want.as_slice()[i]);
    }
}

/// Asserts `|got − want| ≤ tol·(1 + |want|)` element by element.
fn assert_near(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g as f64 - w).abs() <= tol * (1.0 + w.abs()), "{what}[{i}]: got {g}, want {w}");
    }
}

/// More elements than the kernels' parallel threshold (2¹⁸).
const BIG: [usize; 2] = [520, 600];

/// `(lhs, rhs)` shapes of every layout the kernels take: equal shapes, a bias row on either
/// side, a scalar on either side, a `[1, C]` row, and a sample repeated over a task stack; at a
/// tiny, a small, a mid and a large size.
fn kernel_layouts() -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut out = Vec::new();
    for [n, c] in [[3, 5], [7, 9], [40, 50], BIG] {
        out.extend([
            (vec![n, c], vec![n, c]),
            (vec![n, c], vec![c]),
            (vec![c], vec![n, c]),
            (vec![n, c], vec![]),
            (vec![], vec![n, c]),
            (vec![1, c], vec![n, c]),
            (vec![2, n, c], vec![n, c]),
        ]);
    }
    out
}

type Arith = for<'t> fn(Var<'t>, Var<'t>) -> Var<'t>;
type Scalar = fn(f32, f32) -> f32;

const ARITHMETIC: [(&str, Arith, Scalar); 4] = [
    ("add", |a, b| a + b, |x, y| x + y),
    ("sub", |a, b| a - b, |x, y| x - y),
    ("mul", |a, b| a * b, |x, y| x * y),
    ("div", |a, b| a / b, |x, y| x / y),
];

#[test]
fn arithmetic_on_the_kernels_equals_the_general_path() {
    two_threads();
    for (i, (sa, sb)) in kernel_layouts().into_iter().enumerate() {
        let a = uniform(&mut rng(i as u64), &sa, -2.0, 2.0);
        let b = uniform(&mut rng(100 + i as u64), &sb, 0.5, 2.0);
        for (name, op, f) in ARITHMETIC {
            let value = |a: &Tensor, b: &Tensor| {
                let tape = Tape::new();
                op(tape.constant(a.clone()), tape.constant(b.clone())).value()
            };
            let got = value(&a, &b);
            let want = zip_map(name, &a, &b, f);
            let what = format!("{name} {sa:?} {sb:?}");
            assert_same_bits(&what, &got, &want);
            assert_same_bits(&format!("{what} one thread"), &one_thread(|| value(&a, &b)), &got);
        }
    }
}

#[test]
fn a_middle_broadcast_takes_the_general_path_with_the_same_values() {
    // [N, 1, C] against [N, K, C] repeats along a middle axis: not a trailing block.
    let a = uniform(&mut rng(1), &[30, 1, 40], -2.0, 2.0);
    let b = uniform(&mut rng(2), &[30, 50, 40], 0.5, 2.0);
    let tape = Tape::new();
    let (va, vb) = (tape.leaf(a.clone()), tape.leaf(b.clone()));
    let y = va * vb;
    assert_same_bits("mul", &y.value(), &zip_map("mul", &a, &b, |x, y| x * y));
    let g = tape.backward(y.sum_all());
    let want: Vec<f64> = (0..30 * 40)
        .map(|i| (0..50).map(|k| b.as_slice()[(i / 40) * 2000 + k * 40 + i % 40] as f64).sum())
        .collect();
    assert_near("d/da", g.wrt(va).as_slice(), &want, 1e-5);
}

/// The gradients of `Σ w ⊙ f(a, b)`, leaves `a`, `b`, constant weights `w`: the cotangent of
/// `f(a, b)` is exactly `w`.
fn weighted_grads(f: Arith, a: &Tensor, b: &Tensor, w: &Tensor) -> (Tensor, Tensor) {
    let tape = Tape::new();
    let (va, vb) = (tape.leaf(a.clone()), tape.leaf(b.clone()));
    let loss = (f(va, vb) * tape.constant(w.clone())).sum_all();
    let g = tape.backward(loss);
    (g.wrt(va), g.wrt(vb))
}

#[test]
fn broadcast_gradients_on_the_kernels() {
    two_threads();
    // A bias row [C] over [N, C]: its gradient is the sum over rows; the other's is elementwise.
    for [n, c] in [[7, 9], [40, 50], BIG] {
        let x = uniform(&mut rng(3), &[n, c], 0.5, 2.0);
        let row = uniform(&mut rng(4), &[c], 0.5, 2.0);
        let w = uniform(&mut rng(5), &[n, c], -1.0, 1.0);
        for (name, op, _) in ARITHMETIC {
            let (gx, grow) = weighted_grads(op, &x, &row, &w);
            let (gx1, grow1) = one_thread(|| weighted_grads(op, &x, &row, &w));
            assert_same_bits(&format!("{name} [{n}, {c}] dx, one thread"), &gx1, &gx);
            assert_same_bits(&format!("{name} [{n}, {c}] drow, one thread"), &grow1, &grow);
            // The local derivatives, as the table of rules has them.
            let (xs, rs, ws) = (x.as_slice(), row.as_slice(), w.as_slice());
            let local = |i: usize| -> (f64, f64) {
                let (xv, rv) = (xs[i] as f64, rs[i % c] as f64);
                match name {
                    "add" => (1.0, 1.0),
                    "sub" => (1.0, -1.0),
                    "mul" => (rv, xv),
                    _ => (1.0 / rv, -xv / (rv * rv)),
                }
            };
            let want_x: Vec<f64> = (0..n * c).map(|i| ws[i] as f64 * local(i).0).collect();
            assert_near(&format!("{name} [{n}, {c}] dx"), gx.as_slice(), &want_x, 1e-6);
            let want_row: Vec<f64> = (0..c)
                .map(|j| (0..n).map(|r| ws[r * c + j] as f64 * local(r * c + j).1).sum())
                .collect();
            let tol = 1e-6 * (n as f64).sqrt();
            assert_near(&format!("{name} [{n}, {c}] drow"), grow.as_slice(), &want_row, tol);
        }
    }
}

#[test]
fn sum_to_agrees_with_ndarray() {
    two_threads();
    // Up to one block of rows, the sum over rows adds the rows in order, as ndarray does.
    let g = uniform(&mut rng(6), &[100, 60], -1.0, 1.0);
    let want = Tensor::from_array(g.to_array().sum_axis(Axis(0)));
    assert_same_bits("[100, 60] -> [60]", &sum_to(&g, 0, &[60]), &want);
    // Larger, per-task (lead axis), to [1, C] and to [N, 1]: within rounding of the ndarray sum,
    // and the same bits on one thread.
    let g = uniform(&mut rng(7), &[2, 400, 700], -1.0, 1.0);
    let a = g.to_array();
    let cases: [(usize, &[usize], Tensor); 4] = [
        (1, &[700], Tensor::from_array(a.sum_axis(Axis(1)))),
        (
            0,
            &[1, 700],
            Tensor::from_array(a.sum_axis(Axis(0)).sum_axis(Axis(0)).insert_axis(Axis(0))),
        ),
        (1, &[400, 1], Tensor::from_array(a.sum_axis(Axis(2)).insert_axis(Axis(2)))),
        (0, &[], Tensor::from_array(a.sum_axis(Axis(0)).sum_axis(Axis(0)).sum_axis(Axis(0)))),
    ];
    for (lead, shape, want) in cases {
        let got = sum_to(&g, lead, shape);
        let want64: Vec<f64> = want.as_slice().iter().map(|&v| v as f64).collect();
        assert_near(&format!("lead {lead} to {shape:?}"), got.as_slice(), &want64, 1e-3);
        assert_eq!(got.shape(), want.shape());
        assert_same_bits(
            &format!("lead {lead} to {shape:?} one thread"),
            &one_thread(|| sum_to(&g, lead, shape)),
            &got,
        );
    }
}

type Unary = for<'t> fn(Var<'t>) -> Var<'t>;
type Kernel = fn(&[f32], &mut [f32]);
type Exact = fn(f64) -> f64;

#[test]
fn activations_on_the_kernels() {
    two_threads();
    let cases: [(&str, Unary, Kernel, Exact); 5] = [
        ("relu", |x| x.relu(), ew::relu_forward, |x| x.max(0.0)),
        ("sigmoid", |x| x.sigmoid(), ew::sigmoid, |x| 1.0 / (1.0 + (-x).exp())),
        ("tanh", |x| x.tanh(), ew::tanh, f64::tanh),
        ("exp", |x| x.exp(), ew::exp, f64::exp),
        (
            "log",
            |x| x.abs().log(),
            |x, y| {
                let a: Vec<f32> = x.iter().map(|v| v.abs()).collect();
                ew::ln(&a, y)
            },
            |x| x.abs().ln(),
        ),
    ];
    for shape in [vec![5, 6], BIG.to_vec()] {
        let x = uniform(&mut rng(8), &shape, -4.0, 4.0);
        let w = uniform(&mut rng(9), &shape, -1.0, 1.0);
        for (name, act, kernel, exact) in cases {
            let run = || {
                let tape = Tape::new();
                let vx = tape.leaf(x.clone());
                let y = act(vx);
                let g = tape.backward((y * tape.constant(w.clone())).sum_all());
                (y.value(), g.wrt(vx))
            };
            let (y, gx) = run();
            let (y1, gx1) = one_thread(run);
            assert_same_bits(&format!("{name} {shape:?} one thread"), &y1, &y);
            assert_same_bits(&format!("{name} {shape:?} grad one thread"), &gx1, &gx);
            // The op's values are the kernel's, and within a few ulp of f64.
            let mut direct = vec![0.0; x.len()];
            kernel(x.as_slice(), &mut direct);
            assert_eq!(bits(&y), direct.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{name}");
            let want: Vec<f64> = x.as_slice().iter().map(|&v| exact(v as f64)).collect();
            assert_near(&format!("{name} {shape:?}"), y.as_slice(), &want, 1e-6);
            // The gradients, bit for bit as the table of rules writes them.
            let (ys, ws, xs) = (y.as_slice(), w.as_slice(), x.as_slice());
            let want: Vec<f32> = (0..x.len())
                .map(|i| match name {
                    "relu" => {
                        if xs[i] > 0.0 {
                            ws[i]
                        } else {
                            0.0
                        }
                    }
                    "sigmoid" => ws[i] * (ys[i] * (1.0 - ys[i])),
                    "tanh" => ws[i] * (1.0 - ys[i] * ys[i]),
                    "exp" => ws[i] * ys[i],
                    _ => {
                        let a = xs[i].abs();
                        let ga = ws[i] / a;
                        if xs[i] > 0.0 {
                            ga
                        } else if xs[i] < 0.0 {
                            -ga
                        } else {
                            0.0
                        }
                    }
                })
                .collect();
            assert_same_bits(
                &format!("{name} {shape:?} grad"),
                &gx,
                &Tensor::from_vec(&shape, want).unwrap(),
            );
        }
    }
}

#[test]
fn leaky_relu_on_the_kernels() {
    two_threads();
    let x = uniform(&mut rng(10), &BIG, -1.0, 1.0);
    let w = uniform(&mut rng(11), &BIG, -1.0, 1.0);
    let tape = Tape::new();
    let vx = tape.leaf(x.clone());
    let y = vx.leaky_relu(0.2);
    let g = tape.backward((y * tape.constant(w.clone())).sum_all()).wrt(vx);
    for i in 0..x.len() {
        let (xv, wv) = (x.as_slice()[i], w.as_slice()[i]);
        assert_eq!(y.value().as_slice()[i], if xv > 0.0 { xv } else { 0.2 * xv });
        assert_eq!(g.as_slice()[i], if xv > 0.0 { wv } else { 0.2 * wv });
    }
}

#[test]
fn reductions_on_the_kernels() {
    two_threads();
    let x = uniform(&mut rng(12), &[6, 300, 200], -1.0, 1.0);
    let a = x.to_array().mapv(|v| v as f64);
    // Adjacent axes (all, leading, trailing, middle) run on the kernels; [0, 2] does not.
    let cases: [(&[usize], ndarray::ArrayD<f64>); 5] = [
        (&[], ndarray::arr0(a.sum()).into_dyn()),
        (&[0, 1], a.sum_axis(Axis(0)).sum_axis(Axis(0))),
        (&[1, 2], a.sum_axis(Axis(2)).sum_axis(Axis(1))),
        (&[1], a.sum_axis(Axis(1))),
        (&[0, 2], a.sum_axis(Axis(2)).sum_axis(Axis(0))),
    ];
    for (axes, want) in cases {
        let run = || {
            let tape = Tape::new();
            let vx = tape.leaf(x.clone());
            let (s, m) = (vx.sum(axes, false), vx.mean(axes, true));
            let w = Tensor::from_vec(
                &m.shape(),
                (0..m.value().len()).map(|i| (i + 1) as f32).collect(),
            )
            .unwrap();
            let g = tape.backward((m * tape.constant(w)).sum_all());
            (s.value(), m.value(), g.wrt(vx))
        };
        let (s, m, g) = run();
        let (s1, m1, g1) = one_thread(run);
        assert_same_bits(&format!("sum {axes:?} one thread"), &s1, &s);
        assert_same_bits(&format!("mean {axes:?} one thread"), &m1, &m);
        assert_same_bits(&format!("mean grad {axes:?} one thread"), &g1, &g);
        let want: Vec<f64> = want.iter().copied().collect();
        assert_eq!(s.len(), want.len());
        assert_near(&format!("sum {axes:?}"), s.as_slice(), &want, 1e-4);
        // d mean / dx = w[lane] / count, spread over the reduced axes.
        let count = (x.len() / m.len()) as f32;
        let keep: Vec<usize> = m.shape().to_vec();
        let lane = |i: usize| {
            let (mut rem, mut idx, mut stride) = (i, 0, 1);
            for ax in (0..3).rev() {
                let d = x.shape()[ax];
                if keep[ax] != 1 {
                    idx += (rem % d) * stride;
                    stride *= keep[ax];
                }
                rem /= d;
            }
            idx
        };
        for i in (0..x.len()).step_by(997) {
            assert_eq!(g.as_slice()[i], (lane(i) + 1) as f32 / count, "mean grad {axes:?} at {i}");
        }
    }
}

#[test]
fn softmax_and_cross_entropy_on_the_kernels() {
    two_threads();
    let (n, c) = (30_000, 10);
    let x = uniform(&mut rng(13), &[n, c], -5.0, 5.0);
    let labels: Vec<i64> =
        (0..n).map(|i| if i % 97 == 5 { -1 } else { (i * 7 % c) as i64 }).collect();
    let w = uniform(&mut rng(14), &[n, c], -1.0, 1.0);
    let run = || {
        let tape = Tape::new();
        let vx = tape.leaf(x.clone());
        let (p, lp) = (vx.softmax(1), vx.log_softmax(1));
        let wv = tape.constant(w.clone());
        let gp = tape.backward((p * wv).sum_all()).wrt(vx);
        let glp = tape.backward((lp * wv).sum_all()).wrt(vx);
        let ce = vx.cross_entropy(&labels, Some(-1), Reduction::Mean);
        let gce = tape.backward(ce).wrt(vx);
        // The general path: softmax along axis 0 of the transpose walks strided lanes.
        let pt = vx.permute(&[1, 0]).softmax(0).permute(&[1, 0]);
        let gpt = tape.backward((pt * wv).sum_all()).wrt(vx);
        [p.value(), lp.value(), gp, glp, ce.value(), gce, pt.value(), gpt]
    };
    let got = run();
    let one = one_thread(run);
    for (i, (a, b)) in got.iter().zip(&one).enumerate() {
        assert_same_bits(&format!("result {i} one thread"), b, a);
    }
    let [p, lp, gp, glp, ce, gce, pt, gpt] = got;
    let mut direct = vec![0.0; x.len()];
    ew::softmax_rows(x.as_slice(), c, &mut direct);
    assert_eq!(bits(&p), direct.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "softmax rows");
    // Against f64, and the row path against the strided one.
    let (xs, ws) = (x.as_slice(), w.as_slice());
    let counted = labels.iter().filter(|&&l| l >= 0).count() as f64;
    let mut want: [Vec<f64>; 5] = Default::default();
    let mut loss = 0.0f64;
    for ((row, wr), &label) in xs.chunks(c).zip(ws.chunks(c)).zip(&labels) {
        let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let z: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        let prob: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp() / z).collect();
        let dot: f64 = wr.iter().zip(&prob).map(|(&w, p)| w as f64 * p).sum();
        let wsum: f64 = wr.iter().map(|&w| w as f64).sum();
        for (k, ((&v, &w), &p)) in row.iter().zip(wr).zip(&prob).enumerate() {
            let w = w as f64;
            let onehot = f64::from(u8::from(k as i64 == label));
            want[0].push(p);
            want[1].push(v as f64 - m - z.ln());
            want[2].push(p * (w - dot));
            want[3].push(w - p * wsum);
            want[4].push(if label < 0 { 0.0 } else { (p - onehot) / counted });
        }
        if label >= 0 {
            loss += m + z.ln() - row[label as usize] as f64;
        }
    }
    assert_near("softmax", p.as_slice(), &want[0], 1e-6);
    assert_near("log_softmax", lp.as_slice(), &want[1], 1e-6);
    assert_near("softmax grad", gp.as_slice(), &want[2], 1e-6);
    assert_near("log_softmax grad", glp.as_slice(), &want[3], 1e-5);
    assert_near("cross_entropy grad", gce.as_slice(), &want[4], 1e-9);
    assert!((ce.item() as f64 - loss / counted).abs() <= 1e-6 * (loss / counted), "cross_entropy");
    assert!(pt.max_abs_diff(&p).unwrap() <= 1e-6, "softmax rows vs lanes");
    assert!(gpt.max_abs_diff(&gp).unwrap() <= 1e-6, "softmax grad rows vs lanes");
}

#[test]
fn a_batched_sweep_through_the_kernels_equals_separate_sweeps() {
    two_threads();
    // A trunk of kernel ops; two task losses meet on it, so its cotangents are stacked [2, ..].
    let x = uniform(&mut rng(15), &BIG, -1.0, 1.0);
    let bias = uniform(&mut rng(16), &[BIG[1]], -1.0, 1.0);
    let scale = uniform(&mut rng(17), &[BIG[1]], 0.5, 1.5);
    let (w1, w2) = (uniform(&mut rng(18), &BIG, -1.0, 1.0), uniform(&mut rng(19), &BIG, -1.0, 1.0));
    let tape = Tape::new();
    let (vx, vb, vs) = (tape.leaf(x), tape.leaf(bias), tape.leaf(scale));
    let h = ((vx * vs + vb).relu() - vx.sigmoid()).tanh() * 0.5;
    let losses = [(h * tape.constant(w1)).sum_all(), (h.exp() * tape.constant(w2)).mean_all()];
    let batched = tape.backward_batched(&losses);
    for (t, &loss) in losses.iter().enumerate() {
        let single = tape.backward(loss);
        for (name, v) in [("x", vx), ("bias", vb), ("scale", vs)] {
            let got = batched.get(t, v).unwrap();
            assert_same_bits(&format!("task {t} d{name}"), &got, &single.wrt(v));
        }
    }
}
