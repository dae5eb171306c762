//! What each task of a data set asks for: its kind, the loss and the metric that fit it.

/// The label that marks a missing class label, in [`TaskTargets::Classes`](crate::TaskTargets)
/// and as the default ignore label of per-pixel classification.
pub const MISSING_LABEL: i64 = -1;

/// The kind of target a task has.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskKind {
    /// One class per sample, in `0..classes`.
    Classification {
        /// The number of classes.
        classes: usize,
    },
    /// A vector of `dim` real values per sample.
    Regression {
        /// The number of values per sample.
        dim: usize,
    },
    /// One class per pixel (semantic segmentation), in `0..classes`; pixels whose label equals
    /// `ignore_label` count in neither the loss nor the metric.
    PixelClassification {
        /// The number of classes, the background included.
        classes: usize,
        /// The label of pixels to ignore.
        ignore_label: i64,
    },
    /// One real value per pixel, such as depth.
    PixelRegression,
}

/// The loss a task is meant to be trained with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// Softmax cross-entropy (per sample, or per pixel for per-pixel classification), averaged
    /// over the labelled samples or pixels.
    CrossEntropy,
    /// Mean squared error over the unmasked values.
    Mse,
    /// Mean absolute error over the unmasked values (used for depth).
    L1,
}

/// The metric a task is meant to be reported with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// The fraction of labelled samples classified right (higher is better).
    Accuracy,
    /// Mean absolute error (lower is better).
    MeanAbsoluteError,
    /// Root mean squared error (lower is better).
    RootMeanSquaredError,
    /// Mean intersection-over-union over the classes present (higher is better).
    MeanIou,
}

impl MetricKind {
    /// Whether a larger value of the metric is better.
    pub fn higher_is_better(self) -> bool {
        matches!(self, MetricKind::Accuracy | MetricKind::MeanIou)
    }
}

/// A description of one task: its name, its kind, and the loss and metric that fit it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSpec {
    /// A short name, unique within the data set (`"left_digit"`, `"depth"`).
    pub name: String,
    /// The kind of target.
    pub kind: TaskKind,
    /// The loss to train the task with.
    pub loss: LossKind,
    /// The metric to report.
    pub metric: MetricKind,
}

impl TaskSpec {
    /// A classification task with cross-entropy loss and accuracy.
    pub fn classification(name: impl Into<String>, classes: usize) -> Self {
        TaskSpec {
            name: name.into(),
            kind: TaskKind::Classification { classes },
            loss: LossKind::CrossEntropy,
            metric: MetricKind::Accuracy,
        }
    }

    /// A regression task of `dim` values with mean squared error loss and RMSE.
    pub fn regression(name: impl Into<String>, dim: usize) -> Self {
        TaskSpec {
            name: name.into(),
            kind: TaskKind::Regression { dim },
            loss: LossKind::Mse,
            metric: MetricKind::RootMeanSquaredError,
        }
    }

    /// A per-pixel classification task with per-pixel cross-entropy and mean IoU.
    pub fn segmentation(name: impl Into<String>, classes: usize, ignore_label: i64) -> Self {
        TaskSpec {
            name: name.into(),
            kind: TaskKind::PixelClassification { classes, ignore_label },
            loss: LossKind::CrossEntropy,
            metric: MetricKind::MeanIou,
        }
    }

    /// A per-pixel regression task (such as depth) with L1 loss and mean absolute error.
    pub fn pixel_regression(name: impl Into<String>) -> Self {
        TaskSpec {
            name: name.into(),
            kind: TaskKind::PixelRegression,
            loss: LossKind::L1,
            metric: MetricKind::MeanAbsoluteError,
        }
    }
}
