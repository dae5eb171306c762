//! `Flatten` and `Gelu` layers.

use tapestry_autodiff::{Tape, Tensor};
use tapestry_nn::{Ctx, Flatten, Gelu, Module, Params};

#[test]
fn flatten_keeps_the_batch_axis_and_passes_gradients_back() {
    let params = Params::new();
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let mut ctx = Ctx::train(&bound);
    let data: Vec<f32> = (0..24).map(|v| v as f32).collect();
    let x = tape.leaf(Tensor::from_vec(&[2, 3, 2, 2], data.clone()).unwrap());
    let y = Flatten.forward(x, &mut ctx);
    assert_eq!(y.shape(), vec![2, 12]);
    assert_eq!(y.value().to_vec(), data);
    let w = tape.constant(Tensor::from_vec(&[2, 12], data.clone()).unwrap());
    let g = tape.backward((y * w).sum_all()).wrt(x);
    assert_eq!(g.shape(), &[2, 3, 2, 2]);
    assert_eq!(g.to_vec(), data);
}

/// `torch.nn.GELU()(torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0]))` with PyTorch 1.13:
/// `[-0.0455001, -0.15426879, 0.0, 0.84134471, 2.99595022]`.
#[test]
fn gelu_matches_pytorch() {
    let params = Params::new();
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let mut ctx = Ctx::eval(&bound);
    let x = tape.constant(Tensor::from(vec![-2.0, -0.5, 0.0, 1.0, 3.0]));
    let y = Gelu.forward(x, &mut ctx).value().to_vec();
    let want: [f32; 5] = [-0.0455001, -0.15426879, 0.0, 0.8413447, 2.9959502];
    for (a, b) in y.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{y:?}");
    }
}

#[test]
fn upsample2_repeats_each_value_in_a_block_and_sums_the_gradient_back() {
    let params = Params::new();
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let mut ctx = Ctx::train(&bound);
    let x = tape.leaf(Tensor::from_vec(&[1, 1, 2, 2], vec![1., 2., 3., 4.]).unwrap());
    let y = tapestry_nn::Upsample2.forward(x, &mut ctx);
    assert_eq!(y.shape(), vec![1, 1, 4, 4]);
    let want = [1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.];
    assert_eq!(y.value().to_vec(), want);
    // Weights 0..16 over the output: each input gets the sum of its 2 × 2 block.
    let w = tape
        .constant(Tensor::from_vec(&[1, 1, 4, 4], (0..16).map(|v| v as f32).collect()).unwrap());
    let g = tape.backward((y * w).sum_all()).wrt(x);
    assert_eq!(g.to_vec(), vec![10., 18., 42., 50.]);
}
