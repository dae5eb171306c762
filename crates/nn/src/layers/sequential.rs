//! `Sequential`: modules applied one after another, as `torch.nn.Sequential`.

use tapestry_autodiff::Var;

use crate::module::{Ctx, Module};
use crate::params::{BufferId, ParamId};

/// A chain of modules. To get PyTorch's names for an `nn.Sequential` called `trunk`, register
/// its layers as `trunk.0`, `trunk.1`, ... (parameter-free layers still take an index).
///
/// ```
/// use rand::SeedableRng;
/// use tapestry_nn::{Linear, Params, Relu, Sequential};
///
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let mut params = Params::new();
/// let trunk = Sequential::new()
///     .push(Linear::new(&mut params, "trunk.0", 4, 8, &mut rng).unwrap())
///     .push(Relu)
///     .push(Linear::new(&mut params, "trunk.2", 8, 8, &mut rng).unwrap());
/// assert_eq!(trunk.len(), 3);
/// assert_eq!(params.id("trunk.2.bias").is_some(), true);
/// ```
#[derive(Debug, Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    /// An empty chain (the identity).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a module, builder style.
    pub fn push(mut self, module: impl Module + 'static) -> Self {
        self.layers.push(Box::new(module));
        self
    }

    /// Appends a boxed module.
    pub fn push_boxed(&mut self, module: Box<dyn Module>) {
        self.layers.push(module);
    }

    /// The number of modules.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True if the chain is empty.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The modules in order.
    pub fn layers(&self) -> &[Box<dyn Module>] {
        &self.layers
    }
}

impl Module for Sequential {
    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        self.layers.iter().fold(x, |x, layer| layer.forward(x, ctx))
    }

    fn params(&self) -> Vec<ParamId> {
        self.layers.iter().flat_map(|l| l.params()).collect()
    }

    fn buffers(&self) -> Vec<BufferId> {
        self.layers.iter().flat_map(|l| l.buffers()).collect()
    }
}
