//! The reference model of the MTL benchmarks, shared by `benches/mtl_step.rs` and
//! `examples/method_costs.rs`: conv 3→32 (k3 p1) → ReLU → max-pool 2 → conv 32→64 (k3 p1) →
//! ReLU → max-pool 2 → flatten → linear 3136→256 → ReLU (the shared trunk; `Z` is `[128, 256]`)
//! → 3 heads linear 256→10 with cross-entropy, on a batch of 128 seeded random 3x28x28 inputs.

use ndarray::ArrayD;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry::data::{Batch, TaskSpec, TaskTargets};
use tapestry::mtl::HardSharing;
use tapestry::nn::{Conv2d, Flatten, Linear, MaxPool2d, Params, Relu, Sequential};

/// Samples per batch.
pub const BATCH: usize = 128;
/// Tasks (heads).
pub const TASKS: usize = 3;

/// The model and its parameters, initialised from `seed`.
pub fn reference_model(seed: u64) -> (HardSharing, Params) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut params = Params::new();
    let p = &mut params;
    let conv = |p: &mut Params, name: &str, c_in, c_out, rng: &mut ChaCha8Rng| {
        Conv2d::new(p, name, c_in, c_out, (3, 3), rng).unwrap().padding((1, 1))
    };
    let trunk = Sequential::new()
        .push(conv(p, "trunk.0", 3, 32, &mut rng))
        .push(Relu)
        .push(MaxPool2d::new((2, 2)))
        .push(conv(p, "trunk.3", 32, 64, &mut rng))
        .push(Relu)
        .push(MaxPool2d::new((2, 2)))
        .push(Flatten)
        .push(Linear::new(p, "trunk.7", 3136, 256, &mut rng).unwrap())
        .push(Relu);
    let mut builder = HardSharing::builder(trunk).input_shape(&[3, 28, 28]);
    for t in 0..TASKS {
        let name = format!("task{t}");
        let head = Linear::new(p, &format!("heads.{name}"), 256, 10, &mut rng).unwrap();
        builder = builder.head(TaskSpec::classification(name, 10), head);
    }
    let model = builder.build(p).unwrap();
    (model, params)
}

/// A batch of seeded random inputs and labels.
pub fn random_batch(seed: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let inputs: Vec<f32> = (0..BATCH * 3 * 28 * 28).map(|_| rng.gen_range(-1.0..1.0)).collect();
    Batch {
        inputs: ArrayD::from_shape_vec(vec![BATCH, 3, 28, 28], inputs).unwrap(),
        targets: (0..TASKS)
            .map(|_| TaskTargets::Classes {
                labels: (0..BATCH).map(|_| rng.gen_range(0..10)).collect(),
            })
            .collect(),
        indices: (0..BATCH).collect(),
    }
}
