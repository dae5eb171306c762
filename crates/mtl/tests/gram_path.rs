//! The Gramian-only path: MGDA, IMTL-G and Aligned-MTL read only the `T × T` Gram of the
//! per-task gradients on the shared parameters, which the step reduces during one sweep without
//! holding `T × P`. Their weights and updates must equal those of the materialised path (the
//! T gradients formed, their Gram taken, the shared update combined from them).

mod common;

use common::{conv_model, Conv};
use ndarray::{Array2, ArrayD};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::{Tape, Var};
use tapestry_data::{Batch, BatchOptions, MultiTaskDataset, TaskSpec, TaskTargets};
use tapestry_mtl::model::{input_tensor, task_loss, HardSharing, MultiTaskModel};
use tapestry_mtl::step::{StepCounters, StepOptions, TrainStep};
use tapestry_mtl::task_grads::{gram_on_params, GradMode, TaskGradients};
use tapestry_mtl::weighting::{
    AlignedMtl, CaGrad, GradVac, Imtl, ImtlG, Mgda, NashMtl, Needs, PcGrad, StepInput, StepWeights,
    Upgrad, Weighting, WeightingError,
};
use tapestry_nn::{Ctx, Flatten, Linear, MaxPool2d, Params, Relu, Sequential};

fn tasks3() -> Vec<TaskSpec> {
    vec![
        TaskSpec::classification("left", 3),
        TaskSpec::classification("top", 2),
        TaskSpec::regression("mean", 1),
    ]
}

/// The benchmarks' reference model in small: conv 1→8 (k3 p1), ReLU, max-pool 2, flatten,
/// linear 128→24, ReLU; three linear heads. With a batch of 16 the Gram identity is cheaper
/// than the weight gradients on the linear layer (16²·128 + 3·16²·24 + 6·16·24 multiply-adds
/// against 3·16·128·24 + 6·128·24), so that layer takes it and the conv takes its block.
fn reference_style(params: &mut Params, seed: u64) -> HardSharing {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let trunk = Sequential::new()
        .push(Conv::new(params, "trunk.0", (1, 8, 3, 1), &mut rng))
        .push(Relu)
        .push(MaxPool2d::new((2, 2)))
        .push(Flatten)
        .push(Linear::new(params, "trunk.4", 128, 24, &mut rng).unwrap())
        .push(Relu);
    let mut builder = HardSharing::builder(trunk).input_shape(&[1, 8, 8]);
    for (spec, out) in tasks3().into_iter().zip([3, 2, 1]) {
        let head = Linear::new(params, &format!("heads.{}", spec.name), 24, out, &mut rng).unwrap();
        builder = builder.head(spec, head);
    }
    builder.build(params).unwrap()
}

/// `n` random 8x8 images with three targets: the class of the left half's mean, whether the
/// top half is brighter than the bottom, and the image's mean.
fn dataset3(n: usize, seed: u64) -> MultiTaskDataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<f32> = (0..n * 64).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let (mut left, mut top) = (Vec::new(), Vec::new());
    let mut mean = Array2::zeros((n, 1));
    for i in 0..n {
        let img = &x[i * 64..(i + 1) * 64];
        let l: f32 = (0..64).filter(|p| p % 8 < 4).map(|p| img[p]).sum::<f32>() / 32.0;
        left.push(if l < -0.05 {
            0
        } else if l < 0.05 {
            1
        } else {
            2
        });
        top.push(i64::from(img[..32].iter().sum::<f32>() > img[32..].iter().sum::<f32>()));
        mean[[i, 0]] = img.iter().sum::<f32>() / 64.0 * 8.0;
    }
    MultiTaskDataset::new(
        "gram-toy",
        ArrayD::from_shape_vec(vec![n, 1, 8, 8], x).unwrap(),
        tasks3(),
        vec![
            TaskTargets::Classes { labels: left },
            TaskTargets::Classes { labels: top },
            TaskTargets::Values { values: mean, mask: None },
        ],
    )
    .unwrap()
}

fn first_batch(data: &MultiTaskDataset, size: usize) -> Batch {
    data.batches(&BatchOptions::new(size, 3), 0).unwrap().next().unwrap()
}

/// The two models with a batch each: the reference-style one (T = 3) and the conv one (T = 2).
fn cases() -> Vec<(HardSharing, Params, Batch)> {
    let mut p1 = Params::new();
    let m1 = reference_style(&mut p1, 1);
    let mut p2 = Params::new();
    let m2 = conv_model(&mut p2, 2, 0.0);
    vec![
        (m1, p1, first_batch(&dataset3(16, 3), 16)),
        (m2, p2, first_batch(&common::dataset(24, 4), 24)),
    ]
}

fn assert_rel(got: &[f64], want: &[f64], tol: f64, what: &str) {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    for (a, b) in got.iter().zip(want) {
        assert!((a - b).abs() <= tol * scale, "{what}: {got:?} vs {want:?}");
    }
}

#[test]
fn the_swept_gram_equals_the_gram_of_the_formed_gradients() {
    for (model, params, batch) in cases() {
        let tape = Tape::new();
        let bound = params.bind(&tape);
        let out =
            model.forward(tape.constant(input_tensor(&batch.inputs)), &mut Ctx::train(&bound));
        let losses: Vec<Var<'_>> = (model.tasks().iter().zip(&out.outputs).zip(&batch.targets))
            .map(|((s, &o), t)| task_loss(s, o, t).unwrap())
            .collect();
        let shared = model.shared_params();
        let want = TaskGradients::on_params(&tape, &losses, &bound, &shared, GradMode::Param);
        let got = gram_on_params(&tape, &losses, &bound, &shared);
        assert_rel(&got, want.gram(), 1e-6, "Gram");
        assert!(got[1] != 0.0 && got[0] > 0.0, "the tasks' gradients meet: {got:?}");
        assert_eq!(got, gram_on_params(&tape, &losses, &bound, &shared), "deterministic");
    }
}

/// One step of `weighting` on the Gram path (`GradMode::Gram`) and on the materialised path
/// (`GradMode::Batched`): the weights to 1e-6 relative, every parameter's gradient to 1e-5 of
/// its scale, and only the materialised path hands the method the `T × P` gradients.
fn same_step(make: fn() -> Box<dyn Weighting>) {
    /// Records whether the step handed over the `T × P` gradients.
    struct Spy(Box<dyn Weighting>, Option<bool>);
    impl Weighting for Spy {
        fn name(&self) -> &'static str {
            self.0.name()
        }
        fn needs(&self) -> Needs {
            self.0.needs()
        }
        fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
            self.1 = Some(input.shared.is_some());
            self.0.weights(input)
        }
    }
    for (model, params, batch) in cases() {
        let mut answers = Vec::new();
        for grad_mode in [GradMode::Gram, GradMode::Batched] {
            let mut weighting = Spy(make(), None);
            let mut params = params.clone();
            let options = StepOptions { grad_mode, ..StepOptions::default() };
            let step = TrainStep::new(&model, &params, &weighting, options).unwrap();
            let (grads, report) = step
                .gradients(&model, &mut params, &mut weighting, &batch, StepCounters::default())
                .unwrap();
            assert!(report.shared.is_some(), "both paths report the gradient statistics");
            let formed = grad_mode == GradMode::Batched;
            assert_eq!(weighting.1, Some(formed), "{grad_mode:?}: T x P gradients formed?");
            answers.push((report.weights, grads.flatten_all()));
        }
        let name = make().name();
        assert_rel(&answers[0].0, &answers[1].0, 1e-6, name);
        let (a, b): (Vec<f64>, Vec<f64>) = (answers[0].1.iter().map(|&v| v as f64))
            .zip(answers[1].1.iter().map(|&v| v as f64))
            .unzip();
        assert_rel(&a, &b, 1e-5, "gradients");
    }
}

#[test]
fn mgda_on_the_gram_path_matches_the_materialised_path() {
    same_step(|| Box::new(Mgda::default()));
}

#[test]
fn imtl_g_and_aligned_mtl_on_the_gram_path_match_the_materialised_path() {
    same_step(|| Box::new(ImtlG));
    same_step(|| Box::new(AlignedMtl));
    same_step(|| Box::new(NashMtl));
    same_step(|| Box::new(Upgrad));
    same_step(|| Box::new(CaGrad { c: 0.5 }));
}

#[test]
fn the_combining_methods_on_the_gram_path_match_the_materialised_path() {
    same_step(|| Box::new(PcGrad));
    same_step(|| Box::new(GradVac::default()));
}

#[test]
fn the_gram_only_methods_ask_for_the_gram_alone() {
    let cagrad = CaGrad { c: 0.5 };
    let gradvac = GradVac::default();
    let gram_only =
        [&Mgda::default() as &dyn Weighting, &ImtlG, &AlignedMtl, &NashMtl, &Upgrad, &cagrad];
    for w in gram_only.into_iter().chain([&PcGrad as &dyn Weighting, &gradvac, &Imtl::default()]) {
        assert_eq!(w.needs(), Needs { shared_gram: true, ..Needs::LOSSES }, "{}", w.name());
    }
}

#[test]
fn degenerate_grams_give_finite_weights_of_the_right_shape() {
    // Identical, opposite, one zero, all zero gradients (as Grams), with losses up to 1e6.
    let grams: [&[f64]; 4] =
        [&[4.0, 4.0, 4.0, 4.0], &[4.0, -4.0, -4.0, 4.0], &[4.0, 0.0, 0.0, 0.0], &[0.0; 4]];
    let losses = [1e6, 1.0];
    for gram in grams {
        let input = StepInput { shared_gram: Some(gram), ..StepInput::with_losses(&losses) };
        for w in [&mut Mgda::default() as &mut dyn Weighting, &mut ImtlG, &mut AlignedMtl] {
            let out = w.weights(&input).unwrap();
            assert_eq!(out.weights.len(), 2, "{}", w.name());
            assert!(out.weights.iter().all(|v| v.is_finite()), "{}: {gram:?}", w.name());
        }
    }
    // Identical gradients: MGDA may pick any point of the segment, all of which are g.
    // Opposite ones: the midpoint, where the combination is 0.
    let opposite = StepInput { shared_gram: Some(grams[1]), ..StepInput::with_losses(&losses) };
    assert_eq!(Mgda::default().weights(&opposite).unwrap().weights, vec![0.5, 0.5]);
    // A Gram of the wrong size is refused, not read out of bounds.
    let bad = StepInput { shared_gram: Some(&[1.0]), ..StepInput::with_losses(&losses) };
    assert!(matches!(Mgda::default().weights(&bad), Err(WeightingError::Invalid { .. })));
    let none = StepInput::with_losses(&losses);
    assert!(matches!(ImtlG.weights(&none), Err(WeightingError::MissingInput { .. })));
}
