//! tapestry-nn: parameters, modules, initialisation, losses, optimizers and checkpoints.
//!
//! - [`Params`] is the persistent, named store of a model's parameters (and [`Buffers`]),
//!   independent of any tape. Each step, [`Params::bind`] places the parameters on the step's
//!   tape as leaves ([`Bound`]); gradients come back as [`ParamGrads`] keyed by [`ParamId`].
//!   [`Params::select_prefix`] picks a subset (the shared trunk) in one call.
//! - [`Module`] is a layer: [`Linear`], the activations, [`Sequential`], ...; a forward pass
//!   runs in a [`Ctx`] (bound parameters, train/eval [`Mode`], buffers, RNG).
//! - [`init`]: Kaiming and Xavier initialisation and PyTorch's layer defaults.
//! - [`optim`]: SGD, Adam, AdamW, schedules, clipping, accumulation.
//! - [`losses`]: cross-entropy, MSE, L1.
//! - [`checkpoint`]: atomic safetensors checkpoints with PyTorch names, resumable bit for bit.
//!
//! ```
//! use rand::SeedableRng;
//! use tapestry_autodiff::{Tape, Tensor};
//! use tapestry_nn::optim::{Adam, Optimizer};
//! use tapestry_nn::{losses, Ctx, Linear, Module, Params, Relu, Sequential};
//!
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let mut params = Params::new();
//! let net = Sequential::new()
//!     .push(Linear::new(&mut params, "net.0", 2, 8, &mut rng).unwrap())
//!     .push(Relu)
//!     .push(Linear::new(&mut params, "net.2", 8, 1, &mut rng).unwrap());
//! let mut adam = Adam::new(1e-2);
//! let x = Tensor::from_vec(&[4, 2], vec![0., 0., 0., 1., 1., 0., 1., 1.]).unwrap();
//! let y = Tensor::from_vec(&[4, 1], vec![0., 1., 1., 0.]).unwrap();
//! for _ in 0..5 {
//!     let tape = Tape::new();
//!     let bound = params.bind(&tape);
//!     let mut ctx = Ctx::train(&bound);
//!     let pred = net.forward(tape.constant(x.clone()), &mut ctx);
//!     let loss = losses::mse_loss(pred, tape.constant(y.clone()));
//!     let grads = bound.grads(&tape.backward(loss));
//!     adam.step(&mut params, &grads);
//! }
//! ```
//!
//! `docs/nn.md` in the repository is the guide.
#![forbid(unsafe_code)]

mod bind;
pub mod checkpoint;
pub mod error;
pub mod functional;
mod grads;
pub mod init;
pub mod layers;
pub mod losses;
mod module;
pub mod optim;
mod params;
mod util;

pub use bind::Bound;
pub use error::{MismatchReport, NnError};
pub use grads::ParamGrads;
pub use layers::{
    AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Gelu, GlobalAvgPool, Identity, LayerNorm,
    LeakyRelu, Linear, MaxPool2d, Relu, Sequential, Sigmoid, Softplus, Tanh, Upsample2,
};
pub use module::{named_params, Ctx, Mode, Module};
pub use params::{join_name, BufferDtype, BufferId, Buffers, ParamId, Params, OPTIMIZER_PREFIX};
