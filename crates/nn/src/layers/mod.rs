//! Layers: each a [`Module`](crate::Module) that registers its parameters under a name prefix.
//!
//! Names follow PyTorch, so `Linear::new(&mut params, "trunk.fc1", ..)` registers
//! `trunk.fc1.weight` and `trunk.fc1.bias`, exactly the keys of the equivalent PyTorch
//! module's `state_dict()`.

mod activation;
mod conv;
mod dropout;
mod flatten;
mod linear;
mod norm;
mod pool;
mod sequential;
mod upsample;

pub use activation::{Gelu, Identity, LeakyRelu, Relu, Sigmoid, Softplus, Tanh};
pub use conv::Conv2d;
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use linear::Linear;
pub use norm::{BatchNorm2d, LayerNorm};
pub use pool::{AvgPool2d, GlobalAvgPool, MaxPool2d};
pub use sequential::Sequential;
pub use upsample::Upsample2;
