//! Metrics against hand-computed values, and the task losses' masking of missing targets.

use ndarray::{arr2, Array3};
use tapestry_autodiff::{Tape, Tensor};
use tapestry_data::{TaskSpec, TaskTargets, MISSING_LABEL};
use tapestry_mtl::metrics::{
    accuracy, mean_absolute_error, mean_iou, mean_squared_error, predicted_classes,
    root_mean_squared_error, TaskMetric,
};
use tapestry_mtl::model::task_loss;

#[test]
fn accuracy_skips_ignored_labels_and_breaks_ties_to_the_first_class() {
    // Rows predict 1, 0 (tie 0/2 -> 0), 2, 1.
    let scores = [0.1, 0.8, 0.1, 0.5, 0.0, 0.5, -1.0, -2.0, 3.0, 0.0, 1.0, 0.0];
    assert_eq!(predicted_classes(&scores, 3), vec![1, 0, 2, 1]);
    assert_eq!(accuracy(&scores, 3, &[1, 2, 2, 0], -1), Some(0.5));
    assert_eq!(accuracy(&scores, 3, &[1, -1, 2, -1], -1), Some(1.0));
    assert_eq!(accuracy(&scores, 3, &[-1, -1, -1, -1], -1), None);
}

#[test]
fn regression_errors_by_hand() {
    let pred = [1.0, 2.0, 3.0, 4.0];
    let target = [1.0, 0.0, 4.0, 8.0];
    // Differences 0, 2, -1, -4: squares 0, 4, 1, 16.
    assert_eq!(mean_squared_error(&pred, &target), Some(21.0 / 4.0));
    assert_eq!(root_mean_squared_error(&pred, &target), Some((21.0f64 / 4.0).sqrt()));
    assert_eq!(mean_absolute_error(&pred, &target), Some(7.0 / 4.0));
    assert_eq!(mean_squared_error(&[], &[]), None);
}

#[test]
fn mean_iou_by_hand() {
    // Class 0: predicted at {0, 1}, labelled at {0, 3}: I = 1, U = 3.
    // Class 1: predicted at {2, 3}, labelled at {1, 2}: I = 1, U = 3.
    // Class 2: never predicted nor labelled: not counted. Position 4 is ignored.
    let predicted = [0, 0, 1, 1, 2];
    let labels = [0, 1, 1, 0, -1];
    let miou = mean_iou(&predicted, &labels, 3, -1).unwrap();
    assert!((miou - 1.0 / 3.0).abs() < 1e-12, "{miou}");
    assert_eq!(mean_iou(&[0, 1], &[0, 1], 2, -1), Some(1.0));
    assert_eq!(mean_iou(&[0], &[-1], 2, -1), None);
}

/// mIoU over a data set sums intersections and unions over batches, so it is not the mean of
/// the batches' mIoU.
#[test]
fn task_metric_accumulates_iou_over_batches() {
    let task = TaskSpec::segmentation("seg", 2, 255);
    let mut metric = TaskMetric::new(&task);
    // One image 1x2 per batch, scores [1, 2, 1, 2] laid out [N, C, H, W].
    // Batch 1: predicts [0, 1], labels [0, 0]. Batch 2: predicts [1, 1], labels [1, 255].
    let scores1 = Tensor::from_vec(&[1, 2, 1, 2], vec![1.0, 0.0, 0.0, 1.0]).unwrap();
    let labels1 = TaskTargets::PixelClasses(Array3::from_shape_vec((1, 1, 2), vec![0, 0]).unwrap());
    let scores2 = Tensor::from_vec(&[1, 2, 1, 2], vec![0.0, 0.0, 1.0, 1.0]).unwrap();
    let labels2 =
        TaskTargets::PixelClasses(Array3::from_shape_vec((1, 1, 2), vec![1, 255]).unwrap());
    metric.add_output(&task, &scores1, &labels1).unwrap();
    metric.add_output(&task, &scores2, &labels2).unwrap();
    // Class 0: I = 1, U = 2. Class 1: I = 1, U = 2 (predicted twice, labelled once, one hit).
    assert_eq!(metric.value(), Some(0.5));
    metric.add_loss(2.0, 1);
    metric.add_loss(5.0, 3);
    assert_eq!(metric.loss(), Some(17.0 / 4.0));
}

#[test]
fn task_metric_rmse_skips_masked_samples() {
    let task = TaskSpec::regression("r", 2);
    let mut metric = TaskMetric::new(&task);
    let out = Tensor::from_vec(&[2, 2], vec![1.0, 1.0, 100.0, 100.0]).unwrap();
    let targets = TaskTargets::Values {
        values: arr2(&[[0.0, 3.0], [0.0, 0.0]]),
        mask: Some(vec![true, false]),
    };
    metric.add_output(&task, &out, &targets).unwrap();
    assert_eq!(metric.value(), Some((5.0f64 / 2.0).sqrt()));
}

#[test]
fn losses_mask_missing_targets() {
    let tape = Tape::new();
    // Classification: the missing label's row does not count.
    let logits = tape.leaf(Tensor::from_vec(&[2, 2], vec![0.0, 0.0, 5.0, -5.0]).unwrap());
    let task = TaskSpec::classification("c", 2);
    let targets = TaskTargets::Classes { labels: vec![0, MISSING_LABEL] };
    let loss = task_loss(&task, logits, &targets).unwrap();
    assert!((loss.value().item() - 2f32.ln()).abs() < 1e-6);
    let g = tape.backward(loss).wrt(logits).to_vec();
    assert_eq!(&g[2..], &[0.0, 0.0]);

    // Regression: MSE over the unmasked rows only; masked rows get no gradient.
    let pred = tape.leaf(Tensor::from_vec(&[3, 2], vec![1.0, 2.0, 50.0, 60.0, 0.0, 1.0]).unwrap());
    let task = TaskSpec::regression("r", 2);
    let values = arr2(&[[0.0, 0.0], [0.0, 0.0], [2.0, 1.0]]);
    let targets = TaskTargets::Values { values, mask: Some(vec![true, false, true]) };
    let loss = task_loss(&task, pred, &targets).unwrap();
    // Squares 1, 4, 4, 0 over 4 values.
    assert!((loss.value().item() - 9.0 / 4.0).abs() < 1e-6);
    let g = tape.backward(loss).wrt(pred).to_vec();
    assert_eq!(&g[2..4], &[0.0, 0.0]);
    assert!((g[0] - 2.0 * 1.0 / 4.0).abs() < 1e-6);
    // Everything masked: loss 0, not NaN.
    let none = TaskTargets::Values { values: arr2(&[[1.0, 1.0]]), mask: Some(vec![false]) };
    let p1 = tape.leaf(Tensor::from_vec(&[1, 2], vec![3.0, 3.0]).unwrap());
    assert_eq!(task_loss(&task, p1, &none).unwrap().value().item(), 0.0);

    // Per-pixel classes: the ignore label does not count; MISSING_LABEL is treated as ignored.
    let task = TaskSpec::segmentation("s", 2, 255);
    let scores =
        tape.leaf(Tensor::from_vec(&[1, 2, 1, 3], vec![0.0, 9.0, 9.0, 0.0, -9.0, -9.0]).unwrap());
    let labels = TaskTargets::PixelClasses(
        Array3::from_shape_vec((1, 1, 3), vec![0, 255, MISSING_LABEL]).unwrap(),
    );
    let loss = task_loss(&task, scores, &labels).unwrap();
    assert!((loss.value().item() - 2f32.ln()).abs() < 1e-6);

    // Per-pixel values with L1, output [N, 1, H, W].
    let task = TaskSpec::pixel_regression("depth");
    let pred = tape.leaf(Tensor::from_vec(&[1, 1, 1, 2], vec![1.0, 4.0]).unwrap());
    let depth =
        TaskTargets::PixelValues(Array3::from_shape_vec((1, 1, 2), vec![0.0, 0.0]).unwrap());
    assert_eq!(task_loss(&task, pred, &depth).unwrap().value().item(), 2.5);
}
