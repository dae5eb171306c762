//! Trains a small MLP for a few steps and saves it as a checkpoint whose names match
//! `torch.nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))`.
//!
//! ```text
//! cargo run -p tapestry-nn --example save_checkpoint -- /tmp/mlp.safetensors
//! ```
//!
//! Then, in Python:
//!
//! ```python
//! import torch
//! from safetensors.torch import load_file
//! sd = load_file("/tmp/mlp.safetensors")
//! nn = torch.nn
//! net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
//! net.load_state_dict({k: v for k, v in sd.items() if not k.startswith("optimizer.")})
//! net.eval()  # then net(x) gives the output this program prints
//! ```

use std::collections::BTreeMap;

use rand::SeedableRng;
use tapestry_autodiff::{Tape, Tensor};
use tapestry_nn::optim::{Adam, Optimizer};
use tapestry_nn::{
    checkpoint, losses, BatchNorm2d, Ctx, Linear, Module, NnError, Params, Relu, Sequential,
};

fn main() -> Result<(), NnError> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "mlp.safetensors".into());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut params = Params::new();
    // BatchNorm2d also normalises an [N, C] input per channel, as nn.BatchNorm1d does.
    let net = Sequential::new()
        .push(Linear::new(&mut params, "0", 4, 8, &mut rng)?)
        .push(BatchNorm2d::new(&mut params, "1", 8)?)
        .push(Relu)
        .push(Linear::new(&mut params, "3", 8, 3, &mut rng)?);
    let x: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
    let x = Tensor::from_vec(&[3, 4], x).expect("12 values");
    let mut adam = Adam::new(1e-2);
    for _ in 0..3 {
        let tape = Tape::new();
        let bound = params.bind(&tape);
        let mut ctx = Ctx::train(&bound).with_buffers(params.buffers_mut());
        let logits = net.forward(tape.constant(x.clone()), &mut ctx);
        let loss = losses::cross_entropy(logits, &[0, 2, 1]);
        adam.step(&mut params, &bound.grads(&tape.backward(loss)));
    }
    let tape = Tape::new();
    let bound = params.bind_constant(&tape);
    let mut ctx = Ctx::eval(&bound).with_buffers(params.buffers_mut());
    let out = net.forward(tape.constant(x), &mut ctx);
    let meta = BTreeMap::from([("step".to_string(), adam.steps().to_string())]);
    checkpoint::save(&path, &params, Some(&adam), &meta)?;
    println!("saved {path}; output on the probe batch: {:?}", out.value().to_vec());
    Ok(())
}
