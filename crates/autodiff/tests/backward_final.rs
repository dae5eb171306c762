//! `Tape::backward_final`: the tape's last pass releases each value once the sweep is past it,
//! gives the gradients of `Tape::backward` bit for bit, and refuses what would read a released
//! value.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::{Reduction, Tape, Tensor, Var};

fn random(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()).unwrap()
}

/// A small conv net: conv → ReLU → max-pool → dropout → linear → cross-entropy. Returns the
/// loss, the parameters and the input.
fn conv_net(tape: &Tape) -> (Var<'_>, Vec<Var<'_>>, Var<'_>) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let x = tape.constant(random(&[4, 2, 6, 6], &mut rng));
    let w = tape.leaf(random(&[3, 2, 3, 3], &mut rng));
    let b = tape.leaf(random(&[3], &mut rng));
    let fc = tape.leaf(random(&[5, 27], &mut rng));
    let h = x.conv2d(w, Some(b), (1, 1), (0, 0), (1, 1)).relu().max_pool2d((2, 2), (1, 1), (0, 0));
    let mut drop_rng = ChaCha8Rng::seed_from_u64(3);
    let h = h.dropout(0.25, true, &mut drop_rng).reshape(&[4, 27]);
    let loss = h.linear(fc, None).cross_entropy(&[0, 3, 1, 4], None, Reduction::Mean);
    (loss, vec![w, b, fc], x)
}

#[test]
fn the_final_pass_gives_the_gradients_of_backward_bit_for_bit() {
    let (tape, final_tape) = (Tape::new(), Tape::new());
    let (loss, params, _) = conv_net(&tape);
    let (final_loss, final_params, _) = conv_net(&final_tape);
    let want = tape.backward(loss);
    let got = final_tape.backward_final(final_loss);
    for (p, q) in params.iter().zip(&final_params) {
        let (a, b) = (want.wrt(*p).to_vec(), got.wrt(*q).to_vec());
        assert!(a.iter().any(|v| *v != 0.0), "a gradient of zeros proves nothing");
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
    assert_eq!(want.rules_run(), got.rules_run());
}

#[test]
fn leaves_and_constants_keep_their_values_and_every_visited_node_is_released() {
    let tape = Tape::new();
    let (loss, params, x) = conv_net(&tape);
    let before = params[0].value().to_vec();
    tape.backward_final(loss);
    assert_eq!(params[0].value().to_vec(), before);
    assert_eq!(x.shape(), vec![4, 2, 6, 6]);
    let dump = tape.dump();
    let released = dump.lines().filter(|l| l.contains("released")).count();
    // conv, relu, max-pool, dropout, reshape, linear and cross-entropy.
    assert_eq!(released, 7, "{dump}");
}

#[test]
#[should_panic(expected = "was released by `Tape::backward_final`")]
fn reading_a_released_value_panics_naming_it() {
    let tape = Tape::new();
    let (loss, _, _) = conv_net(&tape);
    tape.backward_final(loss);
    let _ = loss.value();
}

#[test]
#[should_panic(expected = "takes no further backward pass")]
fn a_pass_after_the_final_one_panics() {
    let tape = Tape::new();
    let (loss, params, _) = conv_net(&tape);
    // A root the final pass did not visit still has its value; the pass is refused all the same.
    let other = (params[1] * params[1]).sum_all();
    tape.backward_final(loss);
    let _ = tape.grad(other, &params);
}
