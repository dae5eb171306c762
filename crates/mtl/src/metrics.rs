//! Task metrics (accuracy, MSE/RMSE, mean absolute error, mean IoU) and the evaluation of a
//! model on a data set in eval mode.
//!
//! The functions on slices compute one metric on one set of predictions; [`TaskMetric`]
//! accumulates a task's metric and loss over batches (mean IoU, for one, is not a mean of
//! per-batch values: it sums intersections and unions over the whole data set first).
//!
//! ```
//! use tapestry_mtl::metrics::{accuracy, mean_iou};
//! // Two samples, three classes: predicted 2 and 0, labelled 2 and 1.
//! assert_eq!(accuracy(&[0.1, 0.2, 0.7, 0.9, 0.05, 0.05], 3, &[2, 1], -1), Some(0.5));
//! // Pixels predicted [0, 0, 1, 1], labelled [0, 1, 1, 1]: IoU 1/2 and 2/3.
//! let miou = mean_iou(&[0, 0, 1, 1], &[0, 1, 1, 1], 2, -1).unwrap();
//! assert!((miou - (0.5 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
//! ```

use tapestry_autodiff::{Tape, Tensor};
use tapestry_data::MISSING_LABEL;
use tapestry_data::{
    Batch, BatchOptions, MetricKind, MultiTaskDataset, TaskKind, TaskSpec, TaskTargets,
};
use tapestry_nn::{Ctx, Params};

use crate::error::MtlError;
use crate::model::{
    check_dataset, check_inputs, input_tensor, task_loss, ModelOutput, MultiTaskModel,
};

/// The index of the largest of `scores[start + k * stride]`, `k < classes` (the first on ties).
fn argmax(scores: &[f32], start: usize, stride: usize, classes: usize) -> usize {
    let mut best = 0;
    for k in 1..classes {
        if scores[start + k * stride] > scores[start + best * stride] {
            best = k;
        }
    }
    best
}

/// The predicted class of each row of `[N, classes]` scores.
///
/// # Panics
/// If `classes` is 0 or does not divide the number of scores.
pub fn predicted_classes(scores: &[f32], classes: usize) -> Vec<usize> {
    assert!(classes > 0 && scores.len().is_multiple_of(classes), "scores are not [N, {classes}]");
    (0..scores.len() / classes).map(|i| argmax(scores, i * classes, 1, classes)).collect()
}

/// The fraction of samples whose highest score is at their label, over the samples whose label
/// is not `ignore`; `None` if every label is ignored. `scores` is `[N, classes]` row-major.
///
/// # Panics
/// If the scores are not `[labels.len(), classes]`.
pub fn accuracy(scores: &[f32], classes: usize, labels: &[i64], ignore: i64) -> Option<f64> {
    assert_eq!(
        scores.len(),
        labels.len() * classes,
        "scores are not [{}, {classes}]",
        labels.len()
    );
    let (correct, count) = count_correct(&predicted_classes(scores, classes), labels, ignore);
    (count > 0).then(|| correct as f64 / count as f64)
}

fn count_correct(predicted: &[usize], labels: &[i64], ignore: i64) -> (u64, u64) {
    let mut correct = 0;
    let mut count = 0;
    for (&p, &l) in predicted.iter().zip(labels) {
        if l != ignore {
            count += 1;
            correct += u64::from(p as i64 == l);
        }
    }
    (correct, count)
}

/// `mean((pred − target)²)`; `None` for empty inputs.
///
/// # Panics
/// If the lengths differ.
pub fn mean_squared_error(pred: &[f32], target: &[f32]) -> Option<f64> {
    assert_eq!(pred.len(), target.len(), "prediction and target lengths differ");
    let sum: f64 = pred.iter().zip(target).map(|(&p, &t)| (p as f64 - t as f64).powi(2)).sum();
    (!pred.is_empty()).then(|| sum / pred.len() as f64)
}

/// `sqrt(mean((pred − target)²))`; `None` for empty inputs.
///
/// # Panics
/// If the lengths differ.
pub fn root_mean_squared_error(pred: &[f32], target: &[f32]) -> Option<f64> {
    mean_squared_error(pred, target).map(f64::sqrt)
}

/// `mean(|pred − target|)`; `None` for empty inputs.
///
/// # Panics
/// If the lengths differ.
pub fn mean_absolute_error(pred: &[f32], target: &[f32]) -> Option<f64> {
    assert_eq!(pred.len(), target.len(), "prediction and target lengths differ");
    let sum: f64 = pred.iter().zip(target).map(|(&p, &t)| (p as f64 - t as f64).abs()).sum();
    (!pred.is_empty()).then(|| sum / pred.len() as f64)
}

/// Mean intersection-over-union of predicted classes against labels, over the classes that
/// occur in either (`|P_c ∩ L_c| / |P_c ∪ L_c|`); positions labelled `ignore` are skipped.
/// `None` if no position counts.
///
/// # Panics
/// If the lengths differ or a prediction is `>= classes`.
pub fn mean_iou(predicted: &[usize], labels: &[i64], classes: usize, ignore: i64) -> Option<f64> {
    assert_eq!(predicted.len(), labels.len(), "prediction and label lengths differ");
    let mut iou = IouCounts::new(classes);
    iou.add(predicted, labels, ignore);
    iou.mean()
}

/// Per-class intersection and union counts.
#[derive(Debug, Clone, PartialEq)]
struct IouCounts {
    intersection: Vec<u64>,
    union: Vec<u64>,
}

impl IouCounts {
    fn new(classes: usize) -> Self {
        IouCounts { intersection: vec![0; classes], union: vec![0; classes] }
    }

    fn add(&mut self, predicted: &[usize], labels: &[i64], ignore: i64) {
        for (&p, &l) in predicted.iter().zip(labels) {
            if l == ignore {
                continue;
            }
            let l = l as usize;
            if p == l {
                self.intersection[p] += 1;
                self.union[p] += 1;
            } else {
                self.union[p] += 1;
                self.union[l] += 1;
            }
        }
    }

    fn mean(&self) -> Option<f64> {
        let present: Vec<f64> = (self.intersection.iter().zip(&self.union))
            .filter(|(_, &u)| u > 0)
            .map(|(&i, &u)| i as f64 / u as f64)
            .collect();
        (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum MetricState {
    Classes { correct: u64, count: u64 },
    Values { sum_sq: f64, sum_abs: f64, count: u64 },
    Iou(IouCounts),
}

/// Accumulates one task's loss and metric over batches.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMetric {
    kind: MetricKind,
    state: MetricState,
    loss_sum: f64,
    samples: u64,
}

impl TaskMetric {
    /// An empty accumulator for `task`'s metric.
    pub fn new(task: &TaskSpec) -> Self {
        let state = match (task.metric, &task.kind) {
            (MetricKind::MeanIou, TaskKind::PixelClassification { classes, .. })
            | (MetricKind::MeanIou, TaskKind::Classification { classes }) => {
                MetricState::Iou(IouCounts::new(*classes))
            }
            (MetricKind::Accuracy, _) => MetricState::Classes { correct: 0, count: 0 },
            _ => MetricState::Values { sum_sq: 0.0, sum_abs: 0.0, count: 0 },
        };
        TaskMetric { kind: task.metric, state, loss_sum: 0.0, samples: 0 }
    }

    /// The accumulated sums as numbers, to save an epoch in progress: the loss sum, the sample
    /// count, then the metric's sums (correct and counted labels; squared and absolute errors
    /// and their count; or each class's intersection, then each class's union). Every count is
    /// exact in an `f64` below 2^53.
    pub fn to_values(&self) -> Vec<f64> {
        let mut v = vec![self.loss_sum, self.samples as f64];
        match &self.state {
            MetricState::Classes { correct, count } => v.extend([*correct as f64, *count as f64]),
            MetricState::Values { sum_sq, sum_abs, count } => {
                v.extend([*sum_sq, *sum_abs, *count as f64])
            }
            MetricState::Iou(iou) => {
                v.extend(iou.intersection.iter().chain(&iou.union).map(|&c| c as f64))
            }
        }
        v
    }

    /// The accumulator of `task` holding `values` from [`TaskMetric::to_values`].
    ///
    /// # Errors
    /// [`MtlError::Config`] if `values` has the wrong length for the task's metric, or a count
    /// that is not a whole non-negative number.
    pub fn from_values(task: &TaskSpec, values: &[f64]) -> Result<Self, MtlError> {
        let mut metric = TaskMetric::new(task);
        let expected = 2 + match &metric.state {
            MetricState::Classes { .. } => 2,
            MetricState::Values { .. } => 3,
            MetricState::Iou(iou) => 2 * iou.intersection.len(),
        };
        let bad = || {
            MtlError::Config(format!(
                "the saved metric sums of task `{}` do not fit its metric ({} numbers where {expected} are needed, or a count that is not a whole number)",
                task.name,
                values.len()
            ))
        };
        if values.len() != expected {
            return Err(bad());
        }
        let count = |x: f64| -> Result<u64, MtlError> {
            (x >= 0.0 && x.fract() == 0.0 && x < 9.007_199_254_740_992e15)
                .then_some(x as u64)
                .ok_or_else(bad)
        };
        metric.loss_sum = values[0];
        metric.samples = count(values[1])?;
        let rest = &values[2..];
        match &mut metric.state {
            MetricState::Classes { correct, count: n } => {
                (*correct, *n) = (count(rest[0])?, count(rest[1])?);
            }
            MetricState::Values { sum_sq, sum_abs, count: n } => {
                (*sum_sq, *sum_abs, *n) = (rest[0], rest[1], count(rest[2])?);
            }
            MetricState::Iou(iou) => {
                let k = iou.intersection.len();
                for (i, &x) in rest.iter().enumerate() {
                    let c = count(x)?;
                    if i < k {
                        iou.intersection[i] = c;
                    } else {
                        iou.union[i - k] = c;
                    }
                }
            }
        }
        Ok(metric)
    }

    /// Adds a batch's loss (the batch mean), counted with weight `samples`.
    pub fn add_loss(&mut self, loss: f64, samples: usize) {
        self.loss_sum += loss * samples as f64;
        self.samples += samples as u64;
    }

    /// Adds a batch's output for `task` against its targets.
    ///
    /// Errors with [`MtlError::Targets`] if the metric does not fit the targets or the output
    /// has another size than the targets need.
    pub fn add_output(
        &mut self,
        task: &TaskSpec,
        output: &Tensor,
        targets: &TaskTargets,
    ) -> Result<(), MtlError> {
        let wrong = |message: String| MtlError::Targets { task: task.name.clone(), message };
        let out = output.as_slice();
        let classes_of = |labels: usize| {
            let ok = labels > 0 && out.len().is_multiple_of(labels);
            ok.then(|| out.len() / labels)
                .ok_or_else(|| wrong(format!("output of {} values for {labels} labels", out.len())))
        };
        match (&mut self.state, targets) {
            (MetricState::Classes { correct, count }, TaskTargets::Classes { labels }) => {
                let predicted = predicted_classes(out, classes_of(labels.len())?);
                let (c, n) = count_correct(&predicted, labels, MISSING_LABEL);
                *correct += c;
                *count += n;
            }
            (MetricState::Classes { correct, count }, TaskTargets::PixelClasses(labels)) => {
                let predicted = pixel_classes(out, labels.shape()[0], classes_of(labels.len())?);
                let labels: Vec<i64> = labels.iter().copied().collect();
                let (c, n) = count_correct(&predicted, &labels, ignore_label(task));
                *correct += c;
                *count += n;
            }
            (MetricState::Iou(iou), TaskTargets::PixelClasses(labels)) => {
                let classes = classes_of(labels.len())?;
                let predicted = pixel_classes(out, labels.shape()[0], classes);
                let labels: Vec<i64> = labels.iter().copied().collect();
                iou.add(&predicted, &labels, ignore_label(task));
            }
            (MetricState::Iou(iou), TaskTargets::Classes { labels }) => {
                let predicted = predicted_classes(out, classes_of(labels.len())?);
                iou.add(&predicted, labels, MISSING_LABEL);
            }
            (
                MetricState::Values { sum_sq, sum_abs, count },
                TaskTargets::Values { values, mask },
            ) => {
                let dim = values.ncols();
                if out.len() != values.len() {
                    return Err(wrong(format!(
                        "output of {} values for {} targets",
                        out.len(),
                        values.len()
                    )));
                }
                for (i, row) in values.rows().into_iter().enumerate() {
                    if mask.as_ref().is_some_and(|m| !m[i]) {
                        continue;
                    }
                    for (&p, &t) in out[i * dim..(i + 1) * dim].iter().zip(row.iter()) {
                        let d = p as f64 - t as f64;
                        *sum_sq += d * d;
                        *sum_abs += d.abs();
                        *count += 1;
                    }
                }
            }
            (MetricState::Values { sum_sq, sum_abs, count }, TaskTargets::PixelValues(values)) => {
                if out.len() != values.len() {
                    return Err(wrong(format!(
                        "output of {} values for {} targets",
                        out.len(),
                        values.len()
                    )));
                }
                for (&p, &t) in out.iter().zip(values.iter()) {
                    let d = p as f64 - t as f64;
                    *sum_sq += d * d;
                    *sum_abs += d.abs();
                    *count += 1;
                }
            }
            _ => {
                return Err(wrong(format!(
                    "metric {:?} does not fit targets of kind {:?}",
                    self.kind, task.kind
                )))
            }
        }
        Ok(())
    }

    /// The metric so far; `None` if nothing counted yet.
    pub fn value(&self) -> Option<f64> {
        match &self.state {
            MetricState::Classes { correct, count } => {
                (*count > 0).then(|| *correct as f64 / *count as f64)
            }
            MetricState::Values { sum_sq, sum_abs, count } => (*count > 0).then(|| {
                let n = *count as f64;
                match self.kind {
                    MetricKind::MeanAbsoluteError => sum_abs / n,
                    _ => (sum_sq / n).sqrt(),
                }
            }),
            MetricState::Iou(iou) => iou.mean(),
        }
    }

    /// The mean loss so far (batch losses weighted by batch size); `None` before any batch.
    pub fn loss(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.loss_sum / self.samples as f64)
    }

    /// The metric's kind.
    pub fn kind(&self) -> MetricKind {
        self.kind
    }
}

fn ignore_label(task: &TaskSpec) -> i64 {
    match task.kind {
        TaskKind::PixelClassification { ignore_label, .. } => ignore_label,
        _ => MISSING_LABEL,
    }
}

/// The argmax over axis 1 of `[n, classes, spatial]` scores, in `[n, spatial]` order.
fn pixel_classes(scores: &[f32], n: usize, classes: usize) -> Vec<usize> {
    let spatial = scores.len() / (n * classes).max(1);
    let mut out = Vec::with_capacity(n * spatial);
    for i in 0..n {
        for s in 0..spatial {
            out.push(argmax(scores, i * classes * spatial + s, spatial, classes));
        }
    }
    out
}

/// A model's loss and metric for each task on one data set.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEvaluation {
    /// The task's name.
    pub task: String,
    /// The mean loss over the data set (batch losses weighted by batch size).
    pub loss: Option<f64>,
    /// The metric's kind.
    pub metric: MetricKind,
    /// The metric's value; `None` if no sample counted.
    pub value: Option<f64>,
}

/// The result of [`evaluate`], or of a training epoch's running metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The number of samples seen.
    pub samples: usize,
    /// One entry per task, in task order.
    pub tasks: Vec<TaskEvaluation>,
}

impl Evaluation {
    /// The evaluation accumulated in `metrics` for `tasks`.
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn from_metrics(tasks: &[TaskSpec], metrics: &[TaskMetric], samples: usize) -> Self {
        assert_eq!(tasks.len(), metrics.len(), "one metric per task");
        Evaluation {
            samples,
            tasks: (tasks.iter().zip(metrics))
                .map(|(t, m)| TaskEvaluation {
                    task: t.name.clone(),
                    loss: m.loss(),
                    metric: m.kind(),
                    value: m.value(),
                })
                .collect(),
        }
    }

    /// The entry of the task called `name`.
    pub fn task(&self, name: &str) -> Option<&TaskEvaluation> {
        self.tasks.iter().find(|t| t.task == name)
    }
}

/// Evaluates `model` with `params` on `dataset` in eval mode (dropout off, BatchNorm on its
/// running statistics, which are not changed), in order, `batch_size` samples at a time.
///
/// Errors if the data set does not fit the model ([`MtlError::TaskCount`],
/// [`MtlError::TaskMismatch`], [`MtlError::InputShape`]), the batch size is 0, or an output
/// does not fit its task.
pub fn evaluate(
    model: &(impl MultiTaskModel + ?Sized),
    params: &Params,
    dataset: &MultiTaskDataset,
    batch_size: usize,
) -> Result<Evaluation, MtlError> {
    check_dataset(model, dataset)?;
    let tasks = model.tasks();
    let mut metrics: Vec<TaskMetric> = tasks.iter().map(TaskMetric::new).collect();
    let every: Vec<(usize, usize)> = (0..tasks.len()).map(|t| (t, t)).collect();
    measure(model, params, dataset, batch_size, &every, &mut metrics)?;
    Ok(Evaluation::from_metrics(tasks, &metrics, dataset.len()))
}

/// Evaluates task `t` of `model` on `datasets[t]` alone (one input per task; see
/// [`TaskData`](crate::multi_input::TaskData), which checks that the data sets fit), as
/// [`evaluate`] does; `samples` is the sum of the data sets' sizes.
///
/// # Errors
/// As [`evaluate`], and [`MtlError::TaskCount`] unless there is one data set per task.
pub fn evaluate_per_task(
    model: &(impl MultiTaskModel + ?Sized),
    params: &Params,
    datasets: &[MultiTaskDataset],
    batch_size: usize,
) -> Result<Evaluation, MtlError> {
    let tasks = model.tasks();
    if datasets.len() != tasks.len() {
        return Err(MtlError::TaskCount {
            dataset: "the per-task data sets".into(),
            expected: tasks.len(),
            found: datasets.len(),
        });
    }
    let mut metrics: Vec<TaskMetric> = tasks.iter().map(TaskMetric::new).collect();
    for (t, dataset) in datasets.iter().enumerate() {
        measure(model, params, dataset, batch_size, &[(t, 0)], &mut metrics)?;
    }
    let samples = datasets.iter().map(MultiTaskDataset::len).sum();
    Ok(Evaluation::from_metrics(tasks, &metrics, samples))
}

/// The outputs of `model` in eval mode (as [`evaluate`] runs it) on every sample of `dataset`,
/// in sample order: per task of the model, `[N, ...]` with the task's output shape after the
/// batch axis. Only the inputs are read, so a data set of one task's inputs serves too.
///
/// # Errors
/// [`MtlError::InputShape`] if the samples do not fit the model, and [`MtlError::Config`] for
/// an empty data set or a batch size of 0.
pub fn predict(
    model: &(impl MultiTaskModel + ?Sized),
    params: &Params,
    dataset: &MultiTaskDataset,
    batch_size: usize,
) -> Result<Vec<Tensor>, MtlError> {
    check_inputs(model, dataset)?;
    if dataset.is_empty() {
        return Err(MtlError::Config(format!(
            "data set `{}` has no samples to predict",
            dataset.name
        )));
    }
    let tasks = model.tasks().len();
    let mut values: Vec<Vec<f32>> = vec![Vec::new(); tasks];
    let mut shapes: Vec<Vec<usize>> = vec![Vec::new(); tasks];
    for_each_eval_batch(model, params, dataset, batch_size, |_, out| {
        for (t, o) in out.outputs.iter().enumerate() {
            let value = o.value();
            values[t].extend_from_slice(value.as_slice());
            shapes[t] = value.shape().to_vec();
        }
        Ok(())
    })?;
    Ok(values
        .into_iter()
        .zip(shapes)
        .map(|(v, mut shape)| {
            shape[0] = dataset.len();
            Tensor::from_vec(&shape, v).expect("one output per sample")
        })
        .collect())
}

/// Runs `model` in eval mode over `dataset` and adds, for each `(task, position)` of `reads`,
/// the task's loss and metric against the targets at that position of the data set.
fn measure(
    model: &(impl MultiTaskModel + ?Sized),
    params: &Params,
    dataset: &MultiTaskDataset,
    batch_size: usize,
    reads: &[(usize, usize)],
    metrics: &mut [TaskMetric],
) -> Result<(), MtlError> {
    let tasks = model.tasks();
    for_each_eval_batch(model, params, dataset, batch_size, |batch, out| {
        for &(t, position) in reads {
            let (spec, o, targets) = (&tasks[t], out.outputs[t], &batch.targets[position]);
            let loss = task_loss(spec, o, targets)?;
            metrics[t].add_loss(loss.value().item() as f64, batch.len());
            metrics[t].add_output(spec, &o.value(), targets)?;
        }
        Ok(())
    })
}

/// Runs `model` in eval mode (running statistics read, not changed) over `dataset` in order,
/// `batch_size` samples at a time, handing `f` each batch and the model's output on it.
fn for_each_eval_batch(
    model: &(impl MultiTaskModel + ?Sized),
    params: &Params,
    dataset: &MultiTaskDataset,
    batch_size: usize,
    mut f: impl FnMut(&Batch, &ModelOutput<'_>) -> Result<(), MtlError>,
) -> Result<(), MtlError> {
    let options = BatchOptions { batch_size, shuffle: false, seed: 0, drop_last: false };
    let mut buffers = params.buffers().clone();
    for batch in dataset.batches(&options, 0)? {
        let tape = Tape::new();
        let bound = params.bind_constant(&tape);
        let mut ctx = Ctx::eval(&bound).with_buffers(&mut buffers);
        let out = model.forward(tape.constant(input_tensor(&batch.inputs)), &mut ctx);
        f(&batch, &out)?;
    }
    Ok(())
}
