//! What each task reads: one batch shared by every task (single input), or a batch of its own
//! data set per task (multi-input, LibMTL's `multi_input` mode).
//!
//! With one input per task, task `t` has its own data set (inputs, labels, train and test
//! split), and a step reads one batch per task: `L_t = loss_t(head_t(trunk(x_t)), y_t)`, every
//! task through the one shared trunk. The single-input case is the special case where every
//! task reads the same batch. [`TaskBatches`] says, for each task, which batch it reads and where
//! its targets are in that batch; the step runs the model once per *distinct* batch and takes
//! task `t`'s output from the pass over its own batch.
//!
//! | | single input | one input per task |
//! | --- | --- | --- |
//! | forward passes per step | 1 | T (every head runs on every batch; only task t's output on batch t is used) |
//! | representation | one `Z` (or one per task, as the model gives) | `Z_t = trunk(x_t)`, one per task |
//! | per-task gradients on the shared parameters | from one pass | from T passes, one each: still T × P |
//! | methods at the representation (MGDA-UB, GradDrop) | yes | refused ([`check_multi_input`]): there is no single `Z` |
//!
//! Each backward pass walks only the part of the tape that leads to its loss, so the unused
//! heads cost forward time only. The model's auxiliary loss (soft sharing's coupling, the trace
//! norm, task relations: functions of the parameters alone) is taken from the first pass.
//! Dropout in the pass over the `i`-th distinct batch draws from the step's seed plus `i`;
//! BatchNorm's running statistics are updated by every pass.
//!
//! A run's data are a [`TaskData`]: one data set every task reads, or one data set per task
//! holding that task alone. An epoch of one input per task lasts as many steps as the longest
//! data set has batches; a shorter data set starts over (a fresh shuffle) when it runs out, as in
//! LibMTL. Every step takes one batch of every data set, whatever the schedule trains.

use tapestry_autodiff::{Tape, Var};
use tapestry_data::{Batch, BatchIter, BatchOptions, MultiTaskDataset, TaskTargets};
use tapestry_nn::{Bound, Buffers, Ctx, Params};

use crate::error::MtlError;
use crate::metrics::{self, Evaluation};
use crate::model::{check_dataset, input_tensor, ModelOutput, MultiTaskModel};
use crate::weighting::Weighting;

/// The batches of one step: for each task, the batch it reads and the position of its targets in
/// that batch, or nothing for a task the step does not train.
///
/// ```
/// use ndarray::{Array2, ArrayD};
/// use tapestry_data::{BatchOptions, MultiTaskDataset, TaskSpec, TaskTargets};
/// use tapestry_mtl::multi_input::TaskBatches;
///
/// let data = MultiTaskDataset::new(
///     "toy",
///     ArrayD::zeros(vec![4, 2]),
///     vec![TaskSpec::regression("a", 1), TaskSpec::regression("b", 1)],
///     vec![
///         TaskTargets::Values { values: Array2::zeros((4, 1)), mask: None },
///         TaskTargets::Values { values: Array2::ones((4, 1)), mask: None },
///     ],
/// )
/// .unwrap();
/// let batch = data.batches(&BatchOptions::new(4, 0), 0).unwrap().next().unwrap();
/// let both = TaskBatches::shared(&batch); // what `&batch` converts into
/// assert_eq!(both.trained(), vec![0, 1]);
/// assert_eq!(both.only(&[1]).trained(), vec![1]);
/// ```
#[derive(Debug, Clone)]
pub struct TaskBatches<'a> {
    reads: Vec<Option<(&'a Batch, usize)>>,
}

impl<'a> TaskBatches<'a> {
    /// Every task reads `batch`; task `t`'s targets are `batch.targets[t]`.
    pub fn shared(batch: &'a Batch) -> Self {
        TaskBatches { reads: (0..batch.targets.len()).map(|t| Some((batch, t))).collect() }
    }

    /// Task `t` reads `batches[t]`, a batch of a data set holding task `t` alone (its targets are
    /// `batches[t].targets[0]`).
    pub fn per_task(batches: &'a [Batch]) -> Self {
        TaskBatches { reads: batches.iter().map(|b| Some((b, 0))).collect() }
    }

    /// The same batches, with only `tasks` trained (what a schedule drew); a task out of range
    /// is ignored.
    pub fn only(mut self, tasks: &[usize]) -> Self {
        for (t, read) in self.reads.iter_mut().enumerate() {
            if !tasks.contains(&t) {
                *read = None;
            }
        }
        self
    }

    /// The number of tasks described (trained or not).
    pub fn len(&self) -> usize {
        self.reads.len()
    }

    /// True if no task is described.
    pub fn is_empty(&self) -> bool {
        self.reads.is_empty()
    }

    /// The tasks this step trains, in task order.
    pub fn trained(&self) -> Vec<usize> {
        (0..self.reads.len()).filter(|&t| self.reads[t].is_some()).collect()
    }

    /// The batch task `t` reads, if it trains.
    pub fn batch(&self, t: usize) -> Option<&'a Batch> {
        self.reads.get(t).copied().flatten().map(|(b, _)| b)
    }

    /// Task `t`'s targets, if it trains (and its batch holds them).
    pub fn targets(&self, t: usize) -> Option<&'a TaskTargets> {
        self.reads.get(t).copied().flatten().and_then(|(b, k)| b.targets.get(k))
    }

    /// The distinct batches the trained tasks read, in order of first use, each with its tasks.
    pub fn groups(&self) -> Vec<(&'a Batch, Vec<usize>)> {
        let mut groups: Vec<(&'a Batch, Vec<usize>)> = Vec::new();
        for (t, read) in self.reads.iter().enumerate() {
            let Some((batch, _)) = *read else { continue };
            match groups.iter_mut().find(|(b, _)| std::ptr::eq(*b, batch)) {
                Some((_, tasks)) => tasks.push(t),
                None => groups.push((batch, vec![t])),
            }
        }
        groups
    }

    /// The number of samples the step reads: the sizes of its distinct batches, summed.
    pub fn samples(&self) -> usize {
        self.groups().iter().map(|(b, _)| b.len()).sum()
    }

    /// Errors unless there is one entry per model task, at least one task trains, and every
    /// trained task's batch holds its targets.
    pub(crate) fn check(&self, tasks: usize) -> Result<(), MtlError> {
        if self.reads.len() != tasks {
            return Err(MtlError::TaskCount {
                dataset: "batch".into(),
                expected: tasks,
                found: self.reads.len(),
            });
        }
        if self.reads.iter().all(Option::is_none) {
            return Err(MtlError::Config("a step must train at least one task".into()));
        }
        for (t, read) in self.reads.iter().enumerate() {
            if let Some((batch, k)) = read {
                if *k >= batch.targets.len() {
                    return Err(MtlError::Config(format!(
                        "task {t} reads the targets at position {k} of a batch that holds {}",
                        batch.targets.len()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Runs `model` in train mode once per distinct batch and returns, for the trained tasks in
    /// task order, each one's output from the pass over its own batch and the representation it
    /// read (one entry if they all read the same `Z`); the auxiliary loss of the first pass.
    pub(crate) fn forward<'t>(
        &self,
        model: &(impl MultiTaskModel + ?Sized),
        tape: &'t Tape,
        bound: &Bound<'t>,
        buffers: &mut Buffers,
        dropout_seed: u64,
    ) -> ModelOutput<'t> {
        let mut outputs: Vec<(usize, Var<'t>, Var<'t>)> = Vec::new();
        let mut aux_loss = None;
        let mut whole = None;
        let groups = self.groups();
        for (i, (batch, tasks)) in groups.iter().enumerate() {
            let x = tape.constant(input_tensor(&batch.inputs));
            let mut ctx = Ctx::train(bound)
                .with_buffers(buffers)
                .with_seed(dropout_seed.wrapping_add(i as u64));
            let out = model.forward(x, &mut ctx);
            aux_loss = aux_loss.or(out.aux_loss);
            for &t in tasks {
                let z = match out.representations[..] {
                    [z] => z,
                    _ => out.representations[t],
                };
                outputs.push((t, out.outputs[t], z));
            }
            if groups.len() == 1 && tasks.len() == self.reads.len() {
                whole = Some(out);
            }
        }
        // One batch read by every task: the model's own output, untouched.
        if let Some(out) = whole {
            return out;
        }
        outputs.sort_by_key(|&(t, _, _)| t);
        let mut representations: Vec<Var<'t>> = outputs.iter().map(|&(_, _, z)| z).collect();
        if representations.iter().all(|z| z.id() == representations[0].id()) {
            representations.truncate(1);
        }
        ModelOutput {
            representations,
            outputs: outputs.iter().map(|&(_, o, _)| o).collect(),
            aux_loss,
        }
    }
}

impl<'a> From<&'a Batch> for TaskBatches<'a> {
    fn from(batch: &'a Batch) -> Self {
        TaskBatches::shared(batch)
    }
}

/// Errors unless `weighting` can run with one input per task: a method that works at the
/// representation (MGDA-UB, GradDrop) needs one `Z` shared by every task, and with one input per
/// task each task has its own, `Z_t = trunk(x_t)`.
///
/// # Errors
/// [`MtlError::Config`] naming the method.
pub fn check_multi_input(weighting: &(impl Weighting + ?Sized)) -> Result<(), MtlError> {
    if weighting.needs().representation_gradients {
        return Err(MtlError::Config(format!(
            "method `{}` works at one representation shared by every task, and with one input per task each task has its own (choose a method on the shared parameters' gradients, such as mgda)",
            weighting.name()
        )));
    }
    Ok(())
}

/// A run's data: one data set that every task reads, or one data set per task.
#[derive(Debug, Clone, Copy)]
pub enum TaskData<'a> {
    /// Every task reads this data set (its tasks are the model's, in order).
    Shared(&'a MultiTaskDataset),
    /// Task `t` reads data set `t`, which holds task `t` alone.
    PerTask(&'a [MultiTaskDataset]),
}

impl<'a> From<&'a MultiTaskDataset> for TaskData<'a> {
    fn from(data: &'a MultiTaskDataset) -> Self {
        TaskData::Shared(data)
    }
}

impl<'a> TaskData<'a> {
    /// Errors unless the data fit `model`: as [`check_dataset`] for a shared data set; one data
    /// set per model task, each holding that task alone (same name and kind), all with samples of
    /// one shape (the model's, if it fixes one), and none empty.
    ///
    /// # Errors
    /// [`MtlError::TaskCount`], [`MtlError::TaskMismatch`], [`MtlError::InputShape`], or
    /// [`MtlError::Config`] for an empty data set.
    pub fn check(&self, model: &(impl MultiTaskModel + ?Sized)) -> Result<(), MtlError> {
        let sets = match self {
            TaskData::Shared(data) => return check_dataset(model, data),
            TaskData::PerTask(sets) => *sets,
        };
        let tasks = model.tasks();
        if sets.len() != tasks.len() {
            return Err(MtlError::TaskCount {
                dataset: "the per-task data sets".into(),
                expected: tasks.len(),
                found: sets.len(),
            });
        }
        let shape = model.input_shape().unwrap_or(sets[0].sample_shape());
        for (index, (want, set)) in tasks.iter().zip(sets).enumerate() {
            let found = match &set.tasks[..] {
                [have] if have.name == want.name && have.kind == want.kind => None,
                [have] => Some(format!("`{}` ({:?})", have.name, have.kind)),
                many => Some(format!("{} tasks", many.len())),
            };
            if let Some(found) = found {
                return Err(MtlError::TaskMismatch {
                    dataset: set.name.clone(),
                    index,
                    expected: format!("task `{}` ({:?}) alone", want.name, want.kind),
                    found,
                });
            }
            if set.sample_shape() != shape {
                return Err(MtlError::InputShape {
                    dataset: set.name.clone(),
                    expected: shape.to_vec(),
                    found: set.sample_shape().to_vec(),
                });
            }
            if set.is_empty() {
                return Err(MtlError::Config(format!("data set `{}` is empty", set.name)));
            }
        }
        Ok(())
    }

    /// The number of samples, over every data set.
    pub fn len(&self) -> usize {
        match self {
            TaskData::Shared(data) => data.len(),
            TaskData::PerTask(sets) => sets.iter().map(MultiTaskDataset::len).sum(),
        }
    }

    /// True if there is no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Evaluates `model` in eval mode, each task on the data set it reads; see
    /// [`metrics::evaluate`].
    ///
    /// # Errors
    /// As [`TaskData::check`] and [`metrics::evaluate`].
    pub fn evaluate(
        &self,
        model: &(impl MultiTaskModel + ?Sized),
        params: &Params,
        batch_size: usize,
    ) -> Result<Evaluation, MtlError> {
        match self {
            TaskData::Shared(data) => metrics::evaluate(model, params, data, batch_size),
            TaskData::PerTask(sets) => {
                self.check(model)?;
                metrics::evaluate_per_task(model, params, sets, batch_size)
            }
        }
    }

    /// The batches of epoch `epoch`.
    pub(crate) fn epoch(
        &self,
        options: &BatchOptions,
        epoch: u64,
    ) -> Result<EpochBatches<'a>, MtlError> {
        match self {
            TaskData::Shared(data) => Ok(EpochBatches::Shared(data.batches(options, epoch)?)),
            TaskData::PerTask(sets) => {
                let mut per_task = Vec::with_capacity(sets.len());
                for (t, set) in sets.iter().enumerate() {
                    // Task t's batch order: its own seed, a stream per epoch and pass.
                    let options = BatchOptions {
                        seed: options
                            .seed
                            .wrapping_add((t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                        ..options.clone()
                    };
                    let iter = set.batches(&options, epoch << 32)?;
                    if iter.len() == 0 {
                        return Err(MtlError::Config(format!(
                            "data set `{}` has {} samples, fewer than one batch of {} with the last partial batch dropped",
                            set.name,
                            set.len(),
                            options.batch_size
                        )));
                    }
                    per_task.push(Cycling { set, options, epoch, pass: 0, iter });
                }
                let steps = per_task.iter().map(|c| c.iter.len()).max().unwrap_or(0);
                Ok(EpochBatches::PerTask { per_task, steps })
            }
        }
    }
}

/// One data set's batches, starting over with a fresh shuffle when they run out.
#[derive(Debug)]
pub(crate) struct Cycling<'a> {
    set: &'a MultiTaskDataset,
    options: BatchOptions,
    epoch: u64,
    pass: u64,
    iter: BatchIter<'a>,
}

impl Cycling<'_> {
    fn next_batch(&mut self) -> Batch {
        if let Some(batch) = self.iter.next() {
            return batch;
        }
        self.pass += 1;
        self.iter = self
            .set
            .batches(&self.options, (self.epoch << 32) | self.pass)
            .expect("the batch size was checked when the epoch began");
        self.iter.next().expect("the data set has at least one batch")
    }
}

/// The batches of one epoch.
#[derive(Debug)]
pub(crate) enum EpochBatches<'a> {
    /// One batch per step, read by every task.
    Shared(BatchIter<'a>),
    /// One batch per task per step, for `steps` steps.
    PerTask { per_task: Vec<Cycling<'a>>, steps: usize },
}

/// The owned batches of one step.
#[derive(Debug)]
pub(crate) enum StepBatches {
    Shared(Batch),
    PerTask(Vec<Batch>),
}

impl StepBatches {
    /// The step's view: which batch each task reads.
    pub(crate) fn view(&self) -> TaskBatches<'_> {
        match self {
            StepBatches::Shared(batch) => TaskBatches::shared(batch),
            StepBatches::PerTask(batches) => TaskBatches::per_task(batches),
        }
    }
}

impl Iterator for EpochBatches<'_> {
    type Item = StepBatches;

    fn next(&mut self) -> Option<StepBatches> {
        match self {
            EpochBatches::Shared(iter) => iter.next().map(StepBatches::Shared),
            EpochBatches::PerTask { per_task, steps } => {
                if *steps == 0 {
                    return None;
                }
                *steps -= 1;
                Some(StepBatches::PerTask(per_task.iter_mut().map(Cycling::next_batch).collect()))
            }
        }
    }
}
