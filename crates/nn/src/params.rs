//! `Params`: the persistent, named store of a model's parameters and buffers.
//!
//! A model registers each parameter once, under a PyTorch-style name (`trunk.conv1.weight`),
//! and gets a typed [`ParamId`] back. The store lives across training steps and is independent
//! of any tape: each step [`Params::bind`] places every parameter on that step's tape as a leaf
//! (see [`Bound`](crate::Bound)), and the gradients come back keyed by [`ParamId`].
//!
//! Buffers are persistent values that are not trained (BatchNorm's running statistics); they
//! live in [`Buffers`], share the name space of the parameters and are saved in checkpoints.

use std::collections::HashMap;

use tapestry_autodiff::{Tape, Tensor};

use crate::bind::Bound;
use crate::error::NnError;
use crate::util::modify;

/// The prefix reserved for optimizer state inside checkpoints; no parameter or buffer may use it.
pub const OPTIMIZER_PREFIX: &str = "optimizer.";

/// The id of a parameter in its [`Params`] store (its registration order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParamId(pub(crate) u32);

impl ParamId {
    /// The position in registration order.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The id of a buffer in its [`Buffers`] store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BufferId(pub(crate) u32);

impl BufferId {
    /// The position in registration order.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// How a buffer is stored in a checkpoint. Values are held as `f32` in memory either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferDtype {
    /// 32-bit float (running mean and variance).
    F32,
    /// 64-bit integer, as PyTorch stores counters such as `num_batches_tracked`.
    I64,
}

impl BufferDtype {
    /// The safetensors name of the dtype.
    pub fn name(self) -> &'static str {
        match self {
            BufferDtype::F32 => "F32",
            BufferDtype::I64 => "I64",
        }
    }
}

/// Joins a module prefix and a name with a dot; an empty prefix adds nothing.
///
/// ```
/// use tapestry_nn::join_name;
/// assert_eq!(join_name("trunk.conv1", "weight"), "trunk.conv1.weight");
/// assert_eq!(join_name("", "weight"), "weight");
/// ```
pub fn join_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn check_name(name: &str) -> Result<(), NnError> {
    let reason = if name.is_empty() {
        "names must not be empty"
    } else if name.starts_with(OPTIMIZER_PREFIX) {
        "the prefix `optimizer.` is reserved for optimizer state in checkpoints"
    } else if name.starts_with("__") {
        "names starting with `__` are reserved by safetensors"
    } else {
        return Ok(());
    };
    Err(NnError::InvalidName { name: name.to_string(), reason })
}

#[derive(Clone, Copy, Debug)]
enum Entry {
    Param(ParamId),
    Buffer(BufferId),
}

/// Non-trainable persistent values (BatchNorm running statistics), saved in checkpoints.
#[derive(Clone, Debug, Default)]
pub struct Buffers {
    names: Vec<String>,
    values: Vec<Tensor>,
    dtypes: Vec<BufferDtype>,
}

impl Buffers {
    /// The number of buffers.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True if there are no buffers.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value of buffer `id`.
    ///
    /// # Panics
    /// If `id` is not from this store.
    pub fn get(&self, id: BufferId) -> &Tensor {
        &self.values[id.index()]
    }

    /// The name of buffer `id`.
    ///
    /// # Panics
    /// If `id` is not from this store.
    pub fn name(&self, id: BufferId) -> &str {
        &self.names[id.index()]
    }

    /// How buffer `id` is stored in checkpoints.
    ///
    /// # Panics
    /// If `id` is not from this store.
    pub fn dtype(&self, id: BufferId) -> BufferDtype {
        self.dtypes[id.index()]
    }

    /// Replaces the value of buffer `id`; the shape must stay the same.
    ///
    /// # Panics
    /// If `id` is not from this store.
    pub fn set(&mut self, id: BufferId, value: Tensor) -> Result<(), NnError> {
        let old = &self.values[id.index()];
        if old.shape() != value.shape() {
            return Err(NnError::Shape {
                name: self.names[id.index()].clone(),
                expected: old.shape().to_vec(),
                found: value.shape().to_vec(),
            });
        }
        self.values[id.index()] = value;
        Ok(())
    }

    /// Runs `f` on the elements of buffer `id`, in place.
    ///
    /// # Panics
    /// If `id` is not from this store.
    pub fn update<R>(&mut self, id: BufferId, f: impl FnOnce(&mut [f32]) -> R) -> R {
        modify(&mut self.values[id.index()], f)
    }

    /// Every buffer id in registration order.
    pub fn ids(&self) -> impl Iterator<Item = BufferId> + '_ {
        (0..self.values.len()).map(|i| BufferId(i as u32))
    }
}

/// The persistent, named parameter store of a model (plus its [`Buffers`]).
///
/// ```
/// use tapestry_autodiff::{Tape, Tensor};
/// use tapestry_nn::Params;
///
/// let mut params = Params::new();
/// let w = params.add("trunk.fc.weight", Tensor::ones(&[2, 3])).unwrap();
/// let b = params.add("heads.left.bias", Tensor::zeros(&[2])).unwrap();
/// assert_eq!(params.select_prefix("trunk."), vec![w]);
/// assert_eq!(params.id("heads.left.bias"), Some(b));
/// assert_eq!(params.numel(), 8);
///
/// let tape = Tape::new();
/// let bound = params.bind(&tape);                 // every parameter becomes a leaf
/// let loss = bound.var(w).sum_all();
/// let grads = bound.grads(&tape.backward(loss));  // keyed by ParamId
/// assert_eq!(grads.get(w).to_vec(), vec![1.0; 6]);
/// assert_eq!(grads.get(b).to_vec(), vec![0.0; 2]); // zeros where the root does not reach
/// ```
#[derive(Clone, Debug, Default)]
pub struct Params {
    names: Vec<String>,
    values: Vec<Tensor>,
    buffers: Buffers,
    index: HashMap<String, Entry>,
}

impl Params {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn claim(&mut self, name: &str, entry: Entry) -> Result<(), NnError> {
        check_name(name)?;
        if self.index.contains_key(name) {
            return Err(NnError::DuplicateName(name.to_string()));
        }
        self.index.insert(name.to_string(), entry);
        Ok(())
    }

    /// Registers a trainable parameter under `name`.
    ///
    /// Errors if the name is taken, empty, or starts with a reserved prefix (`optimizer.`, `__`).
    pub fn add(&mut self, name: impl Into<String>, value: Tensor) -> Result<ParamId, NnError> {
        let name = name.into();
        let id = ParamId(u32::try_from(self.values.len()).expect("fewer than 2^32 parameters"));
        self.claim(&name, Entry::Param(id))?;
        self.names.push(name);
        self.values.push(value);
        Ok(id)
    }

    /// Registers a non-trainable buffer under `name`, stored in checkpoints as `dtype`.
    ///
    /// Errors as [`Params::add`].
    pub fn add_buffer(
        &mut self,
        name: impl Into<String>,
        value: Tensor,
        dtype: BufferDtype,
    ) -> Result<BufferId, NnError> {
        let name = name.into();
        let id = BufferId(u32::try_from(self.buffers.len()).expect("fewer than 2^32 buffers"));
        self.claim(&name, Entry::Buffer(id))?;
        self.buffers.names.push(name);
        self.buffers.values.push(value);
        self.buffers.dtypes.push(dtype);
        Ok(id)
    }

    /// The number of parameters (tensors, not elements; see [`Params::numel`]).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True if no parameter is registered.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The total number of parameter elements.
    pub fn numel(&self) -> usize {
        self.values.iter().map(Tensor::len).sum()
    }

    /// The number of elements of the parameters `ids`.
    ///
    /// # Panics
    /// If an id is not from this store.
    pub fn numel_of(&self, ids: &[ParamId]) -> usize {
        ids.iter().map(|&id| self.values[id.index()].len()).sum()
    }

    /// The id of the parameter called `name`.
    pub fn id(&self, name: &str) -> Option<ParamId> {
        match self.index.get(name) {
            Some(Entry::Param(id)) => Some(*id),
            _ => None,
        }
    }

    /// The id of the buffer called `name`.
    pub fn buffer_id(&self, name: &str) -> Option<BufferId> {
        match self.index.get(name) {
            Some(Entry::Buffer(id)) => Some(*id),
            _ => None,
        }
    }

    /// The name of parameter `id`.
    ///
    /// # Panics
    /// If `id` is not from this store.
    pub fn name(&self, id: ParamId) -> &str {
        &self.names[id.index()]
    }

    /// The value of parameter `id`.
    ///
    /// # Panics
    /// If `id` is not from this store.
    pub fn get(&self, id: ParamId) -> &Tensor {
        &self.values[id.index()]
    }

    /// The shape of parameter `id`.
    ///
    /// # Panics
    /// If `id` is not from this store.
    pub fn shape(&self, id: ParamId) -> &[usize] {
        self.values[id.index()].shape()
    }

    /// Replaces the value of parameter `id`; the shape must stay the same.
    ///
    /// # Panics
    /// If `id` is not from this store.
    pub fn set(&mut self, id: ParamId, value: Tensor) -> Result<(), NnError> {
        let old = &self.values[id.index()];
        if old.shape() != value.shape() {
            return Err(NnError::Shape {
                name: self.names[id.index()].clone(),
                expected: old.shape().to_vec(),
                found: value.shape().to_vec(),
            });
        }
        self.values[id.index()] = value;
        Ok(())
    }

    /// Runs `f` on the elements of parameter `id`, in place (the storage is copied first only
    /// if a live tape still shares it).
    ///
    /// # Panics
    /// If `id` is not from this store.
    pub fn update<R>(&mut self, id: ParamId, f: impl FnOnce(&mut [f32]) -> R) -> R {
        modify(&mut self.values[id.index()], f)
    }

    /// Every parameter id in registration order.
    pub fn ids(&self) -> Vec<ParamId> {
        (0..self.values.len()).map(|i| ParamId(i as u32)).collect()
    }

    /// `(id, name, value)` of every parameter in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &str, &Tensor)> + '_ {
        self.names
            .iter()
            .zip(&self.values)
            .enumerate()
            .map(|(i, (n, v))| (ParamId(i as u32), n.as_str(), v))
    }

    /// The ids of the parameters whose names start with `prefix`, in registration order.
    /// `select_prefix("trunk.")` is the shared trunk of a multi-task model.
    pub fn select_prefix(&self, prefix: &str) -> Vec<ParamId> {
        self.select(|name| name.starts_with(prefix))
    }

    /// The ids of the parameters whose names satisfy `keep`, in registration order.
    pub fn select(&self, mut keep: impl FnMut(&str) -> bool) -> Vec<ParamId> {
        self.iter().filter(|(_, n, _)| keep(n)).map(|(id, _, _)| id).collect()
    }

    /// The buffers.
    pub fn buffers(&self) -> &Buffers {
        &self.buffers
    }

    /// The buffers, mutably (layers update running statistics through this in train mode).
    pub fn buffers_mut(&mut self) -> &mut Buffers {
        &mut self.buffers
    }

    /// Places every parameter on `tape` as a leaf (gradients are computed for it). The leaves
    /// share storage with the store: while the tape lives, an optimizer step copies every
    /// parameter it updates instead of writing in place. [`Params::on_tape`] ends the tape
    /// first by construction.
    pub fn bind<'t>(&self, tape: &'t Tape) -> Bound<'t> {
        Bound::new(self.values.iter().map(|v| tape.leaf(v.clone())).collect())
    }

    /// Runs one step's recorded work: `f` gets a fresh tape, the parameters bound to it as
    /// leaves, and the buffers (for BatchNorm's running statistics). The tape is dropped before
    /// this returns, and `R` cannot hold a value of it, so the optimizer step that follows
    /// updates the parameters in place: the fast path is the only path.
    ///
    /// ```
    /// use tapestry_autodiff::Tensor;
    /// use tapestry_nn::optim::{Optimizer, Sgd};
    /// use tapestry_nn::Params;
    ///
    /// let mut params = Params::new();
    /// let w = params.add("w", Tensor::from(vec![1.0, -2.0])).unwrap();
    /// let grads = params.on_tape(|tape, bound, _buffers| {
    ///     let loss = (bound.var(w) * bound.var(w)).sum_all();
    ///     bound.grads(&tape.backward(loss))
    /// });
    /// Sgd::new(0.25).step(&mut params, &grads);
    /// assert_eq!(params.get(w).to_vec(), vec![0.5, -1.0]);
    /// ```
    pub fn on_tape<R>(
        &mut self,
        f: impl for<'t> FnOnce(&'t Tape, &Bound<'t>, &mut Buffers) -> R,
    ) -> R {
        let tape = Tape::new();
        let bound = self.bind(&tape);
        f(&tape, &bound, &mut self.buffers)
    }

    /// Places every parameter on `tape` as a constant (no gradients): for evaluation.
    pub fn bind_constant<'t>(&self, tape: &'t Tape) -> Bound<'t> {
        Bound::new(self.values.iter().map(|v| tape.constant(v.clone())).collect())
    }
}
