//! `Bound`: a [`Params`](crate::Params) store placed on one step's tape.
//!
//! Binding makes one leaf per parameter; [`Bound::var`] hands out its [`Var`]. After a backward
//! pass, [`Bound::grads`] turns the tape's [`Grads`] back into [`ParamGrads`] keyed by
//! [`ParamId`]. For gradients on a subset (the shared trunk), [`Bound::vars`] gives the subset's
//! Vars for [`Tape::grad`]; per-task gradients as a `T × P` matrix are `tapestry-mtl`'s
//! `TaskGradients`.
//!
//! A binding can also hold values the caller computed on the tape ([`Bound::from_vars`]), such
//! as the adapted parameters `θ' = θ − α·∇L` of an inner-loop step ([`Bound::sgd_step`]). Every
//! module reads its parameters through the binding, so it runs unchanged on them, and the
//! update stays on the tape: a loss at `θ'` differentiates back to the leaves `θ` through it.

use tapestry_autodiff::{Grads, Tape, Var};

use crate::error::NnError;
use crate::grads::ParamGrads;
use crate::params::{ParamId, Params};

/// The parameters of a store as values on one tape (leaves from [`Params::bind`], or any values
/// from [`Bound::from_vars`]); lives as long as the tape's step.
#[derive(Clone, Debug)]
pub struct Bound<'t> {
    vars: Vec<Var<'t>>,
}

impl<'t> Bound<'t> {
    pub(crate) fn new(vars: Vec<Var<'t>>) -> Self {
        Bound { vars }
    }

    /// Binds the parameters of `params` to values the caller supplies: `vars[i]` stands for the
    /// parameter of index `i` (registration order, as [`Params::ids`]). Any module built on
    /// `params` then runs on these values, whatever ops made them; gradients flow through them
    /// to whatever they were computed from.
    ///
    /// A meta-learning inner step (MAML) is a loss, a recorded gradient, an update and a second
    /// forward pass, all on one tape; the query loss then differentiates back to the initial
    /// leaves through the update, second-order terms included:
    ///
    /// ```
    /// use rand::SeedableRng;
    /// use tapestry_autodiff::{Tape, Tensor};
    /// use tapestry_nn::{losses, Bound, Ctx, Linear, Module, Params, Sequential, Tanh};
    ///
    /// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// let mut params = Params::new();
    /// let net = Sequential::new()
    ///     .push(Linear::new(&mut params, "0", 1, 8, &mut rng).unwrap())
    ///     .push(Tanh)
    ///     .push(Linear::new(&mut params, "2", 8, 1, &mut rng).unwrap());
    /// let xs = Tensor::from_vec(&[4, 1], vec![-1.0, -0.3, 0.4, 1.0]).unwrap();
    /// let ys = xs.map(f32::sin);
    ///
    /// let tape = Tape::new();
    /// let (x, y) = (tape.constant(xs), tape.constant(ys));
    /// let theta = params.bind(&tape);                               // leaves θ
    /// let loss = |b| losses::mse_loss(net.forward(x, &mut Ctx::train(b)), y);
    /// let inner = tape.grad_graph(loss(&theta), theta.all_vars());  // ∇L(θ), recorded
    /// let adapted = theta.sgd_step(&inner, 0.1);                    // θ' = θ − 0.1·∇L(θ)
    /// let query = loss(&adapted);                                   // L(θ'(θ))
    /// let meta = theta.grads(&tape.backward(query));                // dL(θ')/dθ, keyed by id
    ///
    /// // Holding ∇L(θ) constant instead gives first-order MAML, ∇L at θ': not the same.
    /// let frozen: Vec<_> = inner.iter().map(|g| g.detach()).collect();
    /// let first_order = theta.grads(&tape.backward(loss(&theta.sgd_step(&frozen, 0.1))));
    /// assert!(first_order.flatten_all() != meta.flatten_all());
    ///
    /// // The same binding, built by hand; wrong counts and shapes are refused.
    /// let by_hand: Vec<_> = (theta.all_vars().iter().zip(&inner))
    ///     .map(|(&p, &g)| p - g.mul_scalar(0.1))
    ///     .collect();
    /// assert!(Bound::from_vars(&params, by_hand).is_ok());
    /// assert!(Bound::from_vars(&params, theta.all_vars()[1..].to_vec()).is_err());
    /// ```
    ///
    /// [`Bound::grads`] after [`Tape::backward`] sees leaves only: for the gradients at supplied
    /// values that are not leaves, name them to [`Tape::grad`] (`tape.grad(loss,
    /// bound.all_vars())`).
    ///
    /// Errors with [`NnError::Invalid`] if `vars` does not hold exactly one value per parameter
    /// or its values live on more than one tape (the message names the first parameter on
    /// another tape), and with [`NnError::Shape`], naming the parameter, if a value does not
    /// have its parameter's shape.
    pub fn from_vars(params: &Params, vars: Vec<Var<'t>>) -> Result<Self, NnError> {
        if vars.len() != params.len() {
            return Err(NnError::Invalid(format!(
                "Bound::from_vars: {} values for a store of {} parameters (one per parameter, \
                 in registration order)",
                vars.len(),
                params.len()
            )));
        }
        for ((id, name, value), var) in params.iter().zip(&vars) {
            if !std::ptr::eq(var.tape(), vars[0].tape()) {
                return Err(NnError::Invalid(format!(
                    "Bound::from_vars: the value for `{name}` (parameter {}) lives on another \
                     tape than the value for `{}`",
                    id.index(),
                    params.name(ParamId(0)),
                )));
            }
            let shape = var.shape();
            if shape != value.shape() {
                return Err(NnError::Shape {
                    name: name.to_string(),
                    expected: value.shape().to_vec(),
                    found: shape,
                });
            }
        }
        Ok(Bound { vars })
    }

    /// The binding of one step of gradient descent, `θ − lr·g` for every parameter, recorded on
    /// the tape: `grads[i]` is the gradient of parameter `i`, normally from
    /// [`Tape::grad_graph`]`(loss, self.all_vars())`. With recorded gradients a loss at the
    /// result differentiates through the step exactly (MAML); with detached ones
    /// ([`Var::detach`]) it gives the first-order approximation. See [`Bound::from_vars`] for
    /// an example.
    ///
    /// # Panics
    /// If `grads` does not hold one gradient per bound parameter, a gradient does not have its
    /// parameter's shape (the message names the parameter's index and both shapes), or a
    /// gradient lives on another tape.
    pub fn sgd_step(&self, grads: &[Var<'t>], lr: f32) -> Bound<'t> {
        assert_eq!(
            grads.len(),
            self.vars.len(),
            "sgd_step: {} gradients for {} bound parameters",
            grads.len(),
            self.vars.len()
        );
        let vars = (self.vars.iter().zip(grads).enumerate())
            .map(|(i, (&p, &g))| {
                let (ps, gs) = (p.shape(), g.shape());
                assert!(ps == gs, "sgd_step: parameter {i} has shape {ps:?}, its gradient {gs:?}");
                p - g.mul_scalar(lr)
            })
            .collect();
        Bound { vars }
    }

    /// The value bound to parameter `id` (its leaf, for a binding from [`Params::bind`]).
    ///
    /// # Panics
    /// If `id` is not from the store that was bound.
    pub fn var(&self, id: ParamId) -> Var<'t> {
        self.vars[id.index()]
    }

    /// The values bound to the parameters `ids`, in that order.
    ///
    /// # Panics
    /// If an id is not from the store that was bound.
    pub fn vars(&self, ids: &[ParamId]) -> Vec<Var<'t>> {
        ids.iter().map(|&id| self.var(id)).collect()
    }

    /// The values bound to every parameter, in registration order.
    pub fn all_vars(&self) -> &[Var<'t>] {
        &self.vars
    }

    /// The number of bound parameters.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// True if the store was empty.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// The tape the parameters were bound to.
    ///
    /// # Panics
    /// If the store was empty.
    pub fn tape(&self) -> &'t Tape {
        self.vars.first().expect("an empty store was bound").tape()
    }

    /// The gradients of every parameter from one backward pass (of [`Tape::backward`] or
    /// [`Tape::grad`]); zeros for parameters the root does not reach or that were not asked for.
    pub fn grads(&self, grads: &Grads) -> ParamGrads {
        ParamGrads::from_tensors(self.vars.iter().map(|&v| grads.wrt(v)).collect())
    }
}
