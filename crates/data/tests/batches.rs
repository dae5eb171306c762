//! The batch iterator: coverage, determinism, partial batches and content.

use ndarray::{Array2, Array3, ArrayD, Axis, IxDyn};
use proptest::prelude::*;
use tapestry_data::{BatchOptions, DataError, MultiTaskDataset, TaskSpec, TaskTargets};

/// A data set of `n` samples whose every value encodes its sample index.
fn indexed_dataset(n: usize) -> MultiTaskDataset {
    let inputs =
        ArrayD::from_shape_fn(IxDyn(&[n, 1, 2, 3]), |d| (d[0] * 100 + d[2] * 10 + d[3]) as f32);
    let labels = (0..n).map(|i| (i % 3) as i64).collect();
    let values = Array2::from_shape_fn((n, 2), |(i, j)| i as f32 + j as f32 / 10.0);
    let mask = Some((0..n).map(|i| i % 4 != 0).collect());
    let pixels = Array3::from_shape_fn((n, 2, 3), |(i, _, _)| i as i64 % 2);
    let tasks = vec![
        TaskSpec::classification("class", 3),
        TaskSpec::regression("values", 2),
        TaskSpec::segmentation("seg", 2, -1),
    ];
    let targets = vec![
        TaskTargets::Classes { labels },
        TaskTargets::Values { values, mask },
        TaskTargets::PixelClasses(pixels),
    ];
    MultiTaskDataset::new("indexed", inputs, tasks, targets).unwrap()
}

#[test]
fn batch_size_zero_is_an_error() {
    let data = indexed_dataset(5);
    let err = data.batches(&BatchOptions::new(0, 1), 0).unwrap_err();
    assert!(matches!(err, DataError::Config(_)), "{err}");
    assert!(err.to_string().contains("batch size"), "{err}");
}

#[test]
fn batches_hold_the_rows_they_name() {
    let data = indexed_dataset(10);
    for batch in data.batches(&BatchOptions::new(4, 9), 3).unwrap() {
        assert_eq!(batch.inputs.shape()[0], batch.len());
        assert_eq!(batch.inputs_nchw().unwrap().dim(), (batch.len(), 1, 2, 3));
        for (k, &i) in batch.indices.iter().enumerate() {
            assert_eq!(batch.inputs.index_axis(Axis(0), k), data.inputs.index_axis(Axis(0), i));
            let TaskTargets::Classes { labels } = &batch.targets[0] else { panic!("not classes") };
            assert_eq!(labels[k], (i % 3) as i64);
            let TaskTargets::Values { values, mask } = &batch.targets[1] else {
                panic!("not values")
            };
            assert_eq!(values[[k, 0]], i as f32);
            assert_eq!(mask.as_ref().unwrap()[k], i % 4 != 0);
            let TaskTargets::PixelClasses(p) = &batch.targets[2] else { panic!("not pixels") };
            assert!(p.index_axis(Axis(0), k).iter().all(|&v| v == i as i64 % 2));
        }
    }
}

#[test]
fn same_seed_and_epoch_give_the_same_order_and_others_do_not() {
    let data = indexed_dataset(50);
    let order = |seed, epoch| -> Vec<usize> {
        data.batches(&BatchOptions::new(7, seed), epoch).unwrap().flat_map(|b| b.indices).collect()
    };
    assert_eq!(order(5, 2), order(5, 2));
    assert_ne!(order(5, 2), order(5, 3));
    assert_ne!(order(5, 2), order(6, 2));
    let unshuffled = BatchOptions { shuffle: false, ..BatchOptions::new(7, 5) };
    let plain: Vec<usize> = data.batches(&unshuffled, 4).unwrap().flat_map(|b| b.indices).collect();
    assert_eq!(plain, (0..50).collect::<Vec<_>>());
}

#[test]
fn the_last_partial_batch_is_kept_or_dropped() {
    let data = indexed_dataset(10);
    let kept: Vec<usize> =
        data.batches(&BatchOptions::new(4, 0), 0).unwrap().map(|b| b.len()).collect();
    assert_eq!(kept, vec![4, 4, 2]);
    let options = BatchOptions { drop_last: true, ..BatchOptions::new(4, 0) };
    let dropped: Vec<usize> = data.batches(&options, 0).unwrap().map(|b| b.len()).collect();
    assert_eq!(dropped, vec![4, 4]);
}

#[test]
fn inconsistent_targets_are_refused() {
    let inputs = ArrayD::zeros(IxDyn(&[3, 4]));
    let short = MultiTaskDataset::new(
        "short",
        inputs.clone(),
        vec![TaskSpec::classification("c", 2)],
        vec![TaskTargets::Classes { labels: vec![0, 1] }],
    );
    assert!(short.unwrap_err().to_string().contains("2 targets for 3 inputs"));
    let out_of_range = MultiTaskDataset::new(
        "range",
        inputs.clone(),
        vec![TaskSpec::classification("c", 2)],
        vec![TaskTargets::Classes { labels: vec![0, 2, -1] }],
    );
    assert!(out_of_range.unwrap_err().to_string().contains("label 2 is outside 0..2"));
    let pixels_on_a_table = MultiTaskDataset::new(
        "pixels",
        inputs.clone(),
        vec![TaskSpec::pixel_regression("depth")],
        vec![TaskTargets::PixelValues(ndarray::Array3::zeros((3, 3, 4)))],
    );
    assert!(pixels_on_a_table.is_err());
    let wrong_kind = MultiTaskDataset::new(
        "kind",
        inputs,
        vec![TaskSpec::regression("r", 1)],
        vec![TaskTargets::Classes { labels: vec![0, 1, 1] }],
    );
    assert!(wrong_kind.is_err());
}

proptest! {
    #[test]
    fn every_sample_is_visited_once(n in 0usize..60, batch_size in 1usize..20, drop_last: bool, seed: u64, epoch in 0u64..4) {
        let data = indexed_dataset(n);
        let options = BatchOptions { drop_last, ..BatchOptions::new(batch_size, seed) };
        let iter = data.batches(&options, epoch).unwrap();
        let expected_batches = if drop_last { n / batch_size } else { n.div_ceil(batch_size) };
        prop_assert_eq!(iter.len(), expected_batches);
        let batches: Vec<_> = iter.collect();
        prop_assert_eq!(batches.len(), expected_batches);
        prop_assert!(batches.iter().all(|b| b.len() == batch_size || (!drop_last && b.len() < batch_size && !b.is_empty())));
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.iter().copied()).collect();
        let visited = seen.len();
        seen.sort_unstable();
        seen.dedup();
        prop_assert_eq!(seen.len(), visited);
        let expected_visited = if drop_last { n / batch_size * batch_size } else { n };
        prop_assert_eq!(visited, expected_visited);
    }
}
