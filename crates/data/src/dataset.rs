//! The in-memory multi-task data set: one input array, one target store per task.

use ndarray::{Array2, Array3, ArrayD, Axis, Ix4};
use rand::seq::SliceRandom;

use crate::batch::{BatchIter, BatchOptions};
use crate::error::{DataError, Result};
use crate::seeded_rng;
use crate::task::{TaskKind, TaskSpec, MISSING_LABEL};

/// The targets of one task for every sample of a data set (or of a batch), indexed by sample
/// along the first axis.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskTargets {
    /// One class label per sample; [`MISSING_LABEL`] marks a sample without a label, which
    /// counts in neither the task's loss nor its metric.
    Classes {
        /// The labels, `[N]`.
        labels: Vec<i64>,
    },
    /// `dim` real values per sample, `[N, dim]`.
    Values {
        /// The values; where the mask is `false` they are 0 and meaningless.
        values: Array2<f32>,
        /// `Some(mask)` when some samples have no target: `mask[i]` is `false` for those, which
        /// count in neither the task's loss nor its metric. `None` means all are present.
        mask: Option<Vec<bool>>,
    },
    /// One class label per pixel, `[N, H, W]`; the task's `ignore_label` marks pixels to skip.
    PixelClasses(Array3<i64>),
    /// One real value per pixel, `[N, H, W]`.
    PixelValues(Array3<f32>),
}

impl TaskTargets {
    /// The number of samples.
    pub fn len(&self) -> usize {
        match self {
            TaskTargets::Classes { labels } => labels.len(),
            TaskTargets::Values { values, .. } => values.nrows(),
            TaskTargets::PixelClasses(a) => a.len_of(Axis(0)),
            TaskTargets::PixelValues(a) => a.len_of(Axis(0)),
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The targets of the given samples, in the given order.
    ///
    /// # Panics
    ///
    /// If an index is out of range.
    pub fn select(&self, indices: &[usize]) -> TaskTargets {
        match self {
            TaskTargets::Classes { labels } => {
                TaskTargets::Classes { labels: indices.iter().map(|&i| labels[i]).collect() }
            }
            TaskTargets::Values { values, mask } => TaskTargets::Values {
                values: values.select(Axis(0), indices),
                mask: mask.as_ref().map(|m| indices.iter().map(|&i| m[i]).collect()),
            },
            TaskTargets::PixelClasses(a) => TaskTargets::PixelClasses(a.select(Axis(0), indices)),
            TaskTargets::PixelValues(a) => TaskTargets::PixelValues(a.select(Axis(0), indices)),
        }
    }

    /// The number of samples that count for the task: labelled classes, unmasked values, and
    /// every sample of a per-pixel task.
    pub fn present(&self) -> usize {
        match self {
            TaskTargets::Classes { labels } => {
                labels.iter().filter(|&&l| l != MISSING_LABEL).count()
            }
            TaskTargets::Values { mask: Some(m), .. } => m.iter().filter(|&&p| p).count(),
            _ => self.len(),
        }
    }
}

/// A multi-task data set held in memory: inputs `[N, ...]` (images as `[N, C, H, W]`, tables as
/// `[N, F]`), and for each task its description and its targets.
///
/// Build one with [`MultiTaskDataset::new`], which checks that everything fits together; the
/// fields stay public for reading.
#[derive(Clone, Debug)]
pub struct MultiTaskDataset {
    /// A name for messages and logs (`"multidigits/train"`).
    pub name: String,
    /// The inputs, `[N, ...]`.
    pub inputs: ArrayD<f32>,
    /// The tasks, in the order of `targets`.
    pub tasks: Vec<TaskSpec>,
    /// The targets of each task.
    pub targets: Vec<TaskTargets>,
}

impl MultiTaskDataset {
    /// Checks and assembles a data set.
    ///
    /// Fails with [`DataError::Inconsistent`] when the inputs have no sample axis, a target store
    /// is missing, has another number of samples than the inputs, does not match its task's
    /// kind (per-pixel targets need image inputs `[N, C, H, W]` and the shape `[N, H, W]`), holds a class label out of
    /// range, or when two tasks share a name.
    pub fn new(
        name: impl Into<String>,
        inputs: ArrayD<f32>,
        tasks: Vec<TaskSpec>,
        targets: Vec<TaskTargets>,
    ) -> Result<Self> {
        let name = name.into();
        let bad = |message: String| DataError::Inconsistent { dataset: name.clone(), message };
        if inputs.ndim() < 2 {
            return Err(bad(format!(
                "inputs need a sample axis and at least one more, got shape {:?}",
                inputs.shape()
            )));
        }
        if tasks.len() != targets.len() {
            return Err(bad(format!("{} tasks but {} target stores", tasks.len(), targets.len())));
        }
        let n = inputs.len_of(Axis(0));
        let spatial = (inputs.ndim() >= 3).then(|| &inputs.shape()[inputs.ndim() - 2..]);
        for (i, (task, target)) in tasks.iter().zip(&targets).enumerate() {
            if tasks[..i].iter().any(|t| t.name == task.name) {
                return Err(bad(format!("two tasks are named {:?}", task.name)));
            }
            if target.len() != n {
                return Err(bad(format!(
                    "task {:?} has {} targets for {} inputs",
                    task.name,
                    target.len(),
                    n
                )));
            }
            let fits = match (&task.kind, target) {
                (TaskKind::Classification { classes }, TaskTargets::Classes { labels }) => {
                    if let Some(l) = labels
                        .iter()
                        .find(|&&l| l != MISSING_LABEL && (l < 0 || l >= *classes as i64))
                    {
                        return Err(bad(format!(
                            "task {:?}: label {l} is outside 0..{classes}",
                            task.name
                        )));
                    }
                    true
                }
                (TaskKind::Regression { dim }, TaskTargets::Values { values, mask }) => {
                    values.ncols() == *dim && mask.as_ref().is_none_or(|m| m.len() == n)
                }
                (
                    TaskKind::PixelClassification { classes, ignore_label },
                    TaskTargets::PixelClasses(a),
                ) => {
                    if let Some(l) =
                        a.iter().find(|&&l| l != *ignore_label && (l < 0 || l >= *classes as i64))
                    {
                        return Err(bad(format!(
                            "task {:?}: pixel label {l} is outside 0..{classes}",
                            task.name
                        )));
                    }
                    Some(&a.shape()[1..]) == spatial
                }
                (TaskKind::PixelRegression, TaskTargets::PixelValues(a)) => {
                    Some(&a.shape()[1..]) == spatial
                }
                _ => false,
            };
            if !fits {
                return Err(bad(format!(
                    "task {:?} of kind {:?} does not fit its targets (inputs {:?})",
                    task.name,
                    task.kind,
                    inputs.shape()
                )));
            }
        }
        Ok(MultiTaskDataset { name, inputs, tasks, targets })
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.inputs.len_of(Axis(0))
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of one input sample (`[C, H, W]` for images, `[F]` for tables).
    pub fn sample_shape(&self) -> &[usize] {
        &self.inputs.shape()[1..]
    }

    /// The position of the task with this name.
    pub fn task_index(&self, name: &str) -> Option<usize> {
        self.tasks.iter().position(|t| t.name == name)
    }

    /// The inputs as `[N, C, H, W]`, or `None` when they are not four-dimensional.
    pub fn inputs_nchw(&self) -> Option<ndarray::ArrayView4<'_, f32>> {
        self.inputs.view().into_dimensionality::<Ix4>().ok()
    }

    /// A new data set holding the given samples, in the given order.
    ///
    /// # Panics
    ///
    /// If an index is out of range.
    pub fn subset(&self, name: impl Into<String>, indices: &[usize]) -> MultiTaskDataset {
        MultiTaskDataset {
            name: name.into(),
            inputs: self.inputs.select(Axis(0), indices),
            tasks: self.tasks.clone(),
            targets: self.targets.iter().map(|t| t.select(indices)).collect(),
        }
    }

    /// The same data set with every image `[C, H, W]` zero-padded, centred, to
    /// `[C, height, width]` (the extra row or column of an odd margin goes below or right), so
    /// that data sets of different image sizes can feed one model.
    ///
    /// Fails with [`DataError::Config`] when the inputs are not images `[N, C, H, W]`, an image
    /// is larger than `height` x `width`, or a task has per-pixel targets (which would need
    /// padding too).
    pub fn padded(&self, height: usize, width: usize) -> Result<MultiTaskDataset> {
        let config =
            |message: String| DataError::Config(format!("data set {:?}: {message}", self.name));
        let images = self.inputs_nchw().ok_or_else(|| {
            config(format!("only images [N, C, H, W] can be padded, not {:?}", self.inputs.shape()))
        })?;
        let (n, c, h, w) = images.dim();
        if h > height || w > width {
            return Err(config(format!("images of {h}x{w} cannot be padded to {height}x{width}")));
        }
        if let Some(t) = self
            .targets
            .iter()
            .position(|t| matches!(t, TaskTargets::PixelClasses(_) | TaskTargets::PixelValues(_)))
        {
            return Err(config(format!(
                "task {:?} has per-pixel targets, which padding would misalign",
                self.tasks[t].name
            )));
        }
        let (top, left) = ((height - h) / 2, (width - w) / 2);
        let mut padded = ndarray::Array4::<f32>::zeros((n, c, height, width));
        for ((i, k, r, col), &v) in images.indexed_iter() {
            padded[[i, k, top + r, left + col]] = v;
        }
        Ok(MultiTaskDataset {
            name: self.name.clone(),
            inputs: padded.into_dyn(),
            tasks: self.tasks.clone(),
            targets: self.targets.clone(),
        })
    }

    /// The samples split at random (drawn with `seed`) into a training set and a test set of
    /// `len * test_fraction` samples (rounded), named `{name}/train` and `{name}/test`.
    pub(crate) fn random_splits(&self, test_fraction: f64, seed: u64) -> Splits {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut seeded_rng(seed, 0));
        let n_test = (self.len() as f64 * test_fraction).round() as usize;
        let (test_rows, train_rows) = order.split_at(n_test);
        Splits {
            train: self.subset(format!("{}/train", self.name), train_rows),
            test: self.subset(format!("{}/test", self.name), test_rows),
        }
    }

    /// The batches of one epoch; see [`BatchOptions`]. Fails when the batch size is 0.
    pub fn batches(&self, options: &BatchOptions, epoch: u64) -> Result<BatchIter<'_>> {
        BatchIter::new(self, options, epoch)
    }
}

/// Refuses a test fraction outside `0..1`.
pub(crate) fn check_test_fraction(test_fraction: f64) -> Result<()> {
    if !(0.0..1.0).contains(&test_fraction) {
        return Err(DataError::Config(format!(
            "the test fraction must lie in 0..1, got {test_fraction}"
        )));
    }
    Ok(())
}

/// A train and a test split of one data set, with the same tasks.
#[derive(Clone, Debug)]
pub struct Splits {
    /// The training split.
    pub train: MultiTaskDataset,
    /// The test split.
    pub test: MultiTaskDataset,
}
