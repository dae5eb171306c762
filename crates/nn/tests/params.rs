//! The parameter store, binding, and gradients keyed by parameter.

mod common;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::{Tape, Tensor};
use tapestry_nn::optim::{clip_grad_norm, clip_grad_value, GradAccumulator};
use tapestry_nn::{
    losses, BufferDtype, Ctx, Linear, Module, NnError, ParamGrads, ParamId, Params, Relu,
    Sequential,
};

use common::vals;

/// A two-task model: `trunk.0` (3→4), ReLU, `trunk.2` (4→4), and heads `heads.a`, `heads.b`.
struct TwoTask {
    trunk: Sequential,
    head_a: Linear,
    head_b: Linear,
}

fn two_task(params: &mut Params) -> TwoTask {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let trunk = Sequential::new()
        .push(Linear::new(params, "trunk.0", 3, 4, &mut rng).unwrap())
        .push(Relu)
        .push(Linear::new(params, "trunk.2", 4, 4, &mut rng).unwrap());
    let head_a = Linear::new(params, "heads.a", 4, 2, &mut rng).unwrap();
    let head_b = Linear::new(params, "heads.b", 4, 1, &mut rng).unwrap();
    TwoTask { trunk, head_a, head_b }
}

#[test]
fn names_ids_prefixes_and_counts() {
    let mut params = Params::new();
    let model = two_task(&mut params);
    let names: Vec<&str> = params.iter().map(|(_, n, _)| n).collect();
    assert_eq!(
        names,
        [
            "trunk.0.weight",
            "trunk.0.bias",
            "trunk.2.weight",
            "trunk.2.bias",
            "heads.a.weight",
            "heads.a.bias",
            "heads.b.weight",
            "heads.b.bias"
        ]
    );
    let shared = params.select_prefix("trunk.");
    assert_eq!(shared, model.trunk.params());
    assert_eq!(params.numel_of(&shared), 3 * 4 + 4 + 4 * 4 + 4);
    assert_eq!(params.numel(), 36 + 4 * 2 + 2 + 4 + 1);
    assert_eq!(params.id("heads.b.bias"), model.head_b.bias());
    assert_eq!(params.id("nope"), None);
    assert_eq!(params.select_prefix("heads.a"), model.head_a.params());
}

#[test]
fn duplicate_and_reserved_names_are_errors() {
    let mut params = Params::new();
    params.add("a.weight", Tensor::zeros(&[1])).unwrap();
    assert!(matches!(params.add("a.weight", Tensor::zeros(&[1])), Err(NnError::DuplicateName(_))));
    assert!(matches!(
        params.add_buffer("a.weight", Tensor::zeros(&[1]), BufferDtype::F32),
        Err(NnError::DuplicateName(_))
    ));
    assert!(matches!(
        params.add("optimizer.x", Tensor::zeros(&[1])),
        Err(NnError::InvalidName { .. })
    ));
    assert!(matches!(params.add("", Tensor::zeros(&[1])), Err(NnError::InvalidName { .. })));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    assert!(Linear::new(&mut params, "a", 2, 2, &mut rng).is_err());
}

#[test]
fn set_checks_shapes() {
    let mut params = Params::new();
    let w = params.add("w", Tensor::zeros(&[2, 2])).unwrap();
    let err = params.set(w, Tensor::zeros(&[4])).unwrap_err();
    assert_eq!(err.to_string(), "shape mismatch for `w`: expected [2, 2], got [4]");
    params.set(w, Tensor::ones(&[2, 2])).unwrap();
    assert_eq!(params.get(w).to_vec(), vec![1.0; 4]);
}

#[test]
fn grads_are_zero_where_the_root_does_not_reach() {
    let mut params = Params::new();
    let model = two_task(&mut params);
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let mut ctx = Ctx::train(&bound);
    let z = model.trunk.forward(tape.constant(vals(&[5, 3], 0.3, 0.1)), &mut ctx);
    let loss_a = model.head_a.forward(z, &mut ctx).sum_all();
    let grads = bound.grads(&tape.backward(loss_a));
    for id in model.head_b.params() {
        assert!(grads.get(id).as_slice().iter().all(|&g| g == 0.0));
    }
    assert!(grads.get(model.head_a.weight()).as_slice().iter().any(|&g| g != 0.0));
    assert!(grads.get(params.select_prefix("trunk.")[0]).as_slice().iter().any(|&g| g != 0.0));
}

/// Gradients on a subset written from one flat vector (a direction on the shared parameters),
/// the rest left at zero; a vector of the wrong length is refused.
#[test]
fn a_flat_direction_is_written_into_its_subset() {
    let mut params = Params::new();
    let model = two_task(&mut params);
    let shared = params.select_prefix("trunk.");
    let n = params.numel_of(&shared);
    let d: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
    let combined = from_flat(&params, &shared, &d).unwrap();
    assert_eq!(combined.flatten(&shared), d);
    assert!(combined.get(model.head_a.weight()).as_slice().iter().all(|&g| g == 0.0));
    assert!(matches!(from_flat(&params, &shared, &d[1..]), Err(NnError::FlatLength { .. })));
}

/// A gradient store, zero but for `flat` written into the parameters `ids`.
fn from_flat(params: &Params, ids: &[ParamId], flat: &[f32]) -> Result<ParamGrads, NnError> {
    let mut g = ParamGrads::zeros(params);
    g.set_flat(ids, flat)?;
    Ok(g)
}

#[test]
fn add_scaled_scale_and_norm() {
    let mut params = Params::new();
    let a = params.add("a", Tensor::zeros(&[2])).unwrap();
    let b = params.add("b", Tensor::zeros(&[1])).unwrap();
    let g1 = from_flat(&params, &[a, b], &[1.0, 2.0, 3.0]).unwrap();
    let g2 = from_flat(&params, &[b, a], &[10.0, 20.0, 30.0]).unwrap();
    assert_eq!(g2.get(a).to_vec(), vec![20.0, 30.0]);
    let mut sum = g1.clone();
    sum.scale(2.0);
    sum.add_scaled(0.5, &g2);
    assert_eq!(sum.flatten_all(), vec![12.0, 19.0, 11.0]);
    assert_eq!(g1.norm(), 14f32.sqrt());
    assert_eq!(g1.norm_of(&[b]), 3.0);
}

#[test]
fn clipping_by_global_norm_returns_the_norm_before() {
    let mut params = Params::new();
    let a = params.add("a", Tensor::zeros(&[2])).unwrap();
    let b = params.add("b", Tensor::zeros(&[1])).unwrap();
    let mut g = from_flat(&params, &[a, b], &[3.0, 0.0, 4.0]).unwrap();
    assert_eq!(clip_grad_norm(&mut g, 10.0), 5.0);
    assert_eq!(g.flatten_all(), vec![3.0, 0.0, 4.0]);
    assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
    assert!((g.norm() - 1.0).abs() < 1e-6);
    assert!((g.get(a).as_slice()[0] - 0.6).abs() < 1e-6);
    clip_grad_value(&mut g, 0.7);
    assert!(g.flatten_all().iter().all(|v| v.abs() <= 0.7));
}

#[test]
fn accumulating_k_batches_equals_one_big_batch() {
    let mut params = Params::new();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let fc = Linear::new(&mut params, "fc", 3, 2, &mut rng).unwrap();
    let x = vals(&[8, 3], 0.4, 0.2);
    let y = vals(&[8, 2], 0.9, 0.3);
    let grads_of = |rows: std::ops::Range<usize>| {
        let tape = Tape::new();
        let bound = params.bind(&tape);
        let xs =
            Tensor::from_vec(&[rows.len(), 3], x.as_slice()[rows.start * 3..rows.end * 3].to_vec());
        let ys =
            Tensor::from_vec(&[rows.len(), 2], y.as_slice()[rows.start * 2..rows.end * 2].to_vec());
        let pred = fc.forward(tape.constant(xs.unwrap()), &mut Ctx::train(&bound));
        let loss = losses::mse_loss(pred, tape.constant(ys.unwrap()));
        bound.grads(&tape.backward(loss))
    };
    let mut acc = GradAccumulator::new();
    for k in 0..4 {
        acc.add(&grads_of(2 * k..2 * k + 2));
    }
    let mean = acc.take_mean().unwrap();
    let full = grads_of(0..8);
    for (a, b) in mean.flatten_all().iter().zip(full.flatten_all()) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    assert!(acc.is_empty() && acc.take_mean().is_none());
}

mod properties {
    use proptest::prelude::*;
    use tapestry_autodiff::Tensor;
    use tapestry_nn::{ParamGrads, Params};

    proptest! {
        /// Flattening a subset and writing it back is the identity, in any id order, and
        /// leaves the other parameters at zero.
        #[test]
        fn flat_round_trip(
            sizes in proptest::collection::vec(1usize..5, 1..6),
            pick in proptest::collection::vec(any::<bool>(), 6),
            seed in any::<u32>(),
        ) {
            let mut params = Params::new();
            let ids: Vec<_> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| params.add(format!("p{i}"), Tensor::zeros(&[n, 2])).unwrap())
                .collect();
            let mut subset: Vec<_> =
                ids.iter().zip(&pick).filter(|(_, &k)| k).map(|(id, _)| *id).collect();
            subset.reverse();
            let n = params.numel_of(&subset);
            let flat: Vec<f32> = (0..n).map(|i| ((i as u32 ^ seed) % 97) as f32 - 48.0).collect();
            let mut grads = ParamGrads::zeros(&params);
            grads.set_flat(&subset, &flat).unwrap();
            prop_assert_eq!(grads.flatten(&subset), flat);
            for id in ids.iter().filter(|id| !subset.contains(id)) {
                prop_assert!(grads.get(*id).as_slice().iter().all(|&v| v == 0.0));
            }
            prop_assert_eq!(grads.flatten_all().len(), params.numel());
        }
    }
}
