//! A seeded, shuffling, deterministic batch iterator.

use ndarray::{ArrayD, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::dataset::{MultiTaskDataset, TaskTargets};
use crate::error::{DataError, Result};

/// How to cut a data set into batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchOptions {
    /// Samples per batch; 0 is an error.
    pub batch_size: usize,
    /// Whether to visit the samples in a random order (drawn from `seed` and the epoch).
    pub shuffle: bool,
    /// The seed of the shuffle.
    pub seed: u64,
    /// Whether to drop the last batch when it has fewer than `batch_size` samples.
    pub drop_last: bool,
}

impl BatchOptions {
    /// Shuffled batches of `batch_size`, last partial batch kept.
    pub fn new(batch_size: usize, seed: u64) -> Self {
        BatchOptions { batch_size, shuffle: true, seed, drop_last: false }
    }
}

/// One batch: the inputs and targets of some samples, and which samples they are.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The inputs, `[B, ...]`.
    pub inputs: ArrayD<f32>,
    /// The targets of each task, in the data set's task order.
    pub targets: Vec<TaskTargets>,
    /// The samples' indices in the data set.
    pub indices: Vec<usize>,
}

impl Batch {
    /// The number of samples in the batch.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the batch is empty (never the case for a batch from [`BatchIter`]).
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The inputs as `[B, C, H, W]`, or `None` when they are not four-dimensional.
    pub fn inputs_nchw(&self) -> Option<ndarray::ArrayView4<'_, f32>> {
        self.inputs.view().into_dimensionality::<ndarray::Ix4>().ok()
    }
}

/// The batches of one epoch over a [`MultiTaskDataset`].
///
/// The order depends only on the options' seed and the epoch number, so the same seed, epoch
/// and data give the same batches on every machine: the permutation comes from ChaCha8 seeded
/// with `seed`, on stream `epoch`.
#[derive(Debug)]
pub struct BatchIter<'a> {
    dataset: &'a MultiTaskDataset,
    order: Vec<usize>,
    position: usize,
    batch_size: usize,
    drop_last: bool,
}

impl<'a> BatchIter<'a> {
    /// The batches of epoch `epoch`. Fails with [`DataError::Config`] when the batch size is 0.
    pub fn new(dataset: &'a MultiTaskDataset, options: &BatchOptions, epoch: u64) -> Result<Self> {
        if options.batch_size == 0 {
            return Err(DataError::Config("the batch size must be at least 1".into()));
        }
        let mut order: Vec<usize> = (0..dataset.len()).collect();
        if options.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
            rng.set_stream(epoch);
            order.shuffle(&mut rng);
        }
        Ok(BatchIter {
            dataset,
            order,
            position: 0,
            batch_size: options.batch_size,
            drop_last: options.drop_last,
        })
    }

    /// The number of batches not yet returned.
    fn remaining(&self) -> usize {
        let left = self.order.len() - self.position;
        if self.drop_last {
            left / self.batch_size
        } else {
            left.div_ceil(self.batch_size)
        }
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.remaining() == 0 {
            return None;
        }
        let end = (self.position + self.batch_size).min(self.order.len());
        let indices = self.order[self.position..end].to_vec();
        self.position = end;
        Some(Batch {
            inputs: self.dataset.inputs.select(Axis(0), &indices),
            targets: self.dataset.targets.iter().map(|t| t.select(&indices)).collect(),
            indices,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining();
        (n, Some(n))
    }
}

impl ExactSizeIterator for BatchIter<'_> {}
