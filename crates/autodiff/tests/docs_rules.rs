//! The guide promises every rule: each op that a tape can hold (forward ops, and the ops that
//! recorded rules create) is named in a "Rules" section of docs/autodiff.md.

use ndarray::{ArrayD, IxDyn};
use rand::SeedableRng;
use tapestry_autodiff::{BatchNormMode, Reduction, Tape, Tensor, Var};

/// Records every op at least once, then the recorded gradient of the lot.
fn every_op(tape: &Tape) {
    let x = tape.leaf(
        Tensor::from_vec(&[2, 2, 4, 4], (0..64).map(|i| i as f32 * 0.03 - 1.0).collect()).unwrap(),
    );
    let w = tape.leaf(Tensor::full(&[3, 2, 3, 3], 0.1));
    let b = tape.leaf(Tensor::full(&[3], 0.2));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let y = x.conv2d(w, Some(b), (1, 1), (1, 1), (1, 1)).relu();
    let y = y.max_pool2d((2, 2), (2, 2), (0, 0)) + y.avg_pool2d((2, 2), (2, 2), (0, 0));
    let y = y.dropout(0.5, true, &mut rng);
    let (y, _) = y.batch_norm(None, None, BatchNormMode::Train, 1e-5);
    let y = y.layer_norm(&[2, 2], None, None, 1e-5);
    let v = y.reshape(&[2, 12]);
    let m = tape.leaf(Tensor::full(&[12, 3], 0.05));
    let h = v.matmul(m).linear(tape.leaf(Tensor::full(&[3, 3], 0.1)), None);
    let e = (h - h.neg()) * h / (h.abs() + 1.0);
    let e = e.maximum(h).minimum(h.exp()).clamp(-5.0, 5.0) + h.add_scalar(1.0).mul_scalar(2.0);
    let e = e + (h * h + 1.0).sqrt().log().pow_scalar(1.5);
    let a = e.leaky_relu(0.1).sigmoid().tanh() + e.gelu() + e.gelu_tanh() + e.softplus();
    let a = a + e.normal_cdf();
    let r = a.sum(&[1], true).mean(&[0], false).sum_all()
        + a.max(&[1], false).sum_all()
        + a.logsumexp(&[1], false).sum_all()
        + a.var(&[1], true, false).sum_all();
    let s = a.permute(&[1, 0]).transpose(0, 1).broadcast_to(&[2, 2, 3]).narrow(0, 0, 1);
    let s = s.slice(2, 0, 3, 2).reshape(&[2, 2]);
    let s = Var::concat(&[s, s], 0).index_select(0, &[1, 2]);
    let s = Var::stack(&[s, s], 0)
        .gather(0, &ArrayD::from_shape_vec(IxDyn(&[1, 2, 2]), vec![0, 1, 1, 0]).unwrap());
    let t = tape.constant(Tensor::full(&[2, 3], 0.3));
    let l = a.softmax(1).sum_all()
        + a.log_softmax(1).nll_loss(&[0, 2], None, Reduction::Mean)
        + a.cross_entropy(&[1, 0], None, Reduction::Mean)
        + a.mse_loss(t, Reduction::Mean)
        + a.l1_loss(t, Reduction::Sum)
        + a.smooth_l1_loss(t, 1.0, Reduction::Mean)
        + a.bce_with_logits(t, Reduction::Mean)
        + s.sum_all()
        + r;
    let grads = tape.grad_graph(l, &[x, w, b]);
    let second = grads.iter().map(|g| (*g * *g).sum_all()).reduce(|p, q| p + q).unwrap();
    tape.grad_graph(second, &[x, w]);
}

#[test]
fn the_guide_names_the_rule_of_every_op() {
    let tape = Tape::new();
    every_op(&tape);
    let dump = tape.dump();
    let mut names: Vec<&str> = dump
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .filter(|name| !matches!(*name, "leaf" | "constant"))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 50, "the tape should hold every op, got {names:?}");
    for recorded in ["conv2d_input_grad", "conv2d_weight_grad", "avg_pool2d_grad", "scatter_add"] {
        assert!(names.contains(&recorded), "the recorded rules should create {recorded}");
    }
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/autodiff.md"))
            .expect("docs/autodiff.md");
    let rules = &guide[guide.find("## Rules").expect("a Rules section")..];
    let named = |name: &str| {
        rules.match_indices(name).any(|(i, _)| {
            let before =
                rules[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_');
            let after = rules[i + name.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            !before && !after
        })
    };
    let missing: Vec<&&str> = names.iter().filter(|n| !named(n)).collect();
    assert!(missing.is_empty(), "docs/autodiff.md has no rule for {missing:?}");
}
