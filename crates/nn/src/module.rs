//! The `Module` trait and the context a forward pass runs in.
//!
//! A module owns no tensors: it holds the [`ParamId`]s it registered in a [`Params`] store when
//! it was built. Its forward pass reads the bound parameters from a [`Ctx`], which also carries
//! the mode (train or eval), the buffers (for BatchNorm's running statistics) and a seeded RNG
//! (for dropout masks).

use std::fmt;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::{Tape, Var};

use crate::bind::Bound;
use crate::params::{BufferId, Buffers, ParamId, Params};

/// Training or evaluation behaviour (dropout on/off, batch or running statistics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training: dropout active, BatchNorm uses batch statistics and updates running ones.
    Train,
    /// Evaluation: dropout off, BatchNorm uses running statistics.
    Eval,
}

/// What a forward pass sees: the bound parameters, the mode, the buffers and an RNG.
///
/// ```
/// use tapestry_autodiff::{Tape, Tensor};
/// use tapestry_nn::{Ctx, Linear, Module, Params};
/// use rand::SeedableRng;
///
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let mut params = Params::new();
/// let fc = Linear::new(&mut params, "fc", 3, 2, &mut rng).unwrap();
/// let tape = Tape::new();
/// let bound = params.bind(&tape);
/// let mut ctx = Ctx::train(&bound).with_buffers(params.buffers_mut()).with_seed(7);
/// let y = fc.forward(tape.constant(Tensor::ones(&[4, 3])), &mut ctx);
/// assert_eq!(y.shape(), vec![4, 2]);
/// ```
pub struct Ctx<'a, 't> {
    bound: &'a Bound<'t>,
    buffers: Option<&'a mut Buffers>,
    mode: Mode,
    rng: ChaCha8Rng,
}

impl<'a, 't> Ctx<'a, 't> {
    /// A context in `mode`, without buffers, with an RNG seeded with 0: call
    /// [`Ctx::with_seed`] with a per-step seed, or every step draws the same dropout masks.
    pub fn new(bound: &'a Bound<'t>, mode: Mode) -> Self {
        Ctx { bound, buffers: None, mode, rng: ChaCha8Rng::seed_from_u64(0) }
    }

    /// A training context.
    pub fn train(bound: &'a Bound<'t>) -> Self {
        Self::new(bound, Mode::Train)
    }

    /// An evaluation context.
    pub fn eval(bound: &'a Bound<'t>) -> Self {
        Self::new(bound, Mode::Eval)
    }

    /// Gives the layers access to the buffers (needed by BatchNorm in either mode).
    pub fn with_buffers(mut self, buffers: &'a mut Buffers) -> Self {
        self.buffers = Some(buffers);
        self
    }

    /// Seeds the RNG that dropout draws its masks from. Derive the seed from the step number to
    /// make runs (and resumed runs) reproducible.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
        self
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// True in [`Mode::Train`].
    pub fn is_training(&self) -> bool {
        self.mode == Mode::Train
    }

    /// The value bound to parameter `id` (its leaf, unless the binding was built from supplied
    /// values with [`Bound::from_vars`]).
    ///
    /// # Panics
    /// If `id` is not from the bound store.
    pub fn var(&self, id: ParamId) -> Var<'t> {
        self.bound.var(id)
    }

    /// The bound parameters.
    pub fn bound(&self) -> &'a Bound<'t> {
        self.bound
    }

    /// The tape of the step.
    ///
    /// # Panics
    /// If the bound store was empty.
    pub fn tape(&self) -> &'t Tape {
        self.bound.tape()
    }

    /// The buffers, if the context was given them.
    pub fn buffers(&mut self) -> Option<&mut Buffers> {
        self.buffers.as_deref_mut()
    }

    /// The buffers.
    ///
    /// # Panics
    /// If the context was built without [`Ctx::with_buffers`]; `who` names the layer asking.
    pub fn expect_buffers(&mut self, who: &str) -> &mut Buffers {
        match self.buffers.as_deref_mut() {
            Some(b) => b,
            None => panic!("{who} needs the buffers: build the context with Ctx::with_buffers"),
        }
    }

    /// The RNG (for dropout masks).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }
}

impl fmt::Debug for Ctx<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx").field("mode", &self.mode).finish_non_exhaustive()
    }
}

/// A layer or a composition of layers.
///
/// Implementors register their parameters in a [`Params`] store when built and keep the ids;
/// `forward` looks the bound parameters up in the [`Ctx`]. The trait is object safe, so
/// heterogeneous layers fit in a [`Sequential`](crate::Sequential); it requires `Send + Sync`
/// so that models can move between threads (a module holds ids and settings, never tensors).
pub trait Module: fmt::Debug + Send + Sync {
    /// Applies the module to `x` on the tape of `ctx`.
    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> Var<'t>;

    /// The ids of the parameters this module (and its children) registered, in order.
    fn params(&self) -> Vec<ParamId> {
        Vec::new()
    }

    /// The ids of the buffers this module (and its children) registered, in order.
    fn buffers(&self) -> Vec<BufferId> {
        Vec::new()
    }
}

/// A boxed module is a module (so layers chosen at run time fit wherever a module goes).
impl Module for Box<dyn Module> {
    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        self.as_ref().forward(x, ctx)
    }

    fn params(&self) -> Vec<ParamId> {
        self.as_ref().params()
    }

    fn buffers(&self) -> Vec<BufferId> {
        self.as_ref().buffers()
    }
}

/// `(name, id)` of every parameter of `module`, names as registered in `params`.
///
/// # Panics
/// If the module's ids are not from `params`.
pub fn named_params(module: &dyn Module, params: &Params) -> Vec<(String, ParamId)> {
    module.params().into_iter().map(|id| (params.name(id).to_string(), id)).collect()
}
