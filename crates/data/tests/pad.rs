//! Zero-padding images to a common size, so data sets of different image sizes feed one model.

use ndarray::{Array3, ArrayD};
use tapestry_data::{DataError, MultiTaskDataset, TaskSpec, TaskTargets};

fn images(n: usize, h: usize, w: usize) -> MultiTaskDataset {
    let pixels: Vec<f32> = (0..n * h * w).map(|i| i as f32 + 1.0).collect();
    MultiTaskDataset::new(
        "small",
        ArrayD::from_shape_vec(vec![n, 1, h, w], pixels).unwrap(),
        vec![TaskSpec::classification("class", 3)],
        vec![TaskTargets::Classes { labels: (0..n as i64).map(|i| i % 3).collect() }],
    )
    .unwrap()
}

#[test]
fn images_are_centred_in_zeros() {
    let data = images(2, 2, 3);
    let padded = data.padded(5, 4).unwrap();
    assert_eq!(padded.inputs.shape(), &[2, 1, 5, 4]);
    // Margins 3 rows (1 above, 2 below) and 1 column (0 left, 1 right).
    #[rustfmt::skip]
    let first = [
        0.0, 0.0, 0.0, 0.0,
        1.0, 2.0, 3.0, 0.0,
        4.0, 5.0, 6.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
    ];
    let got: Vec<f32> = padded.inputs.iter().copied().collect();
    assert_eq!(got[..20], first);
    assert_eq!(got[20..].iter().sum::<f32>(), (7..=12).sum::<i32>() as f32);
    assert_eq!(padded.targets, data.targets);
    assert_eq!(data.padded(2, 3).unwrap().inputs, data.inputs, "no margin, no change");
}

#[test]
fn what_cannot_be_padded_is_refused() {
    let too_big = images(1, 4, 4).padded(3, 8).unwrap_err();
    assert!(matches!(too_big, DataError::Config(_)) && too_big.to_string().contains("4x4"));
    let table = MultiTaskDataset::new(
        "table",
        ArrayD::zeros(vec![2, 3]),
        vec![TaskSpec::classification("class", 2)],
        vec![TaskTargets::Classes { labels: vec![0, 1] }],
    )
    .unwrap();
    assert!(table.padded(4, 4).unwrap_err().to_string().contains("images"));
    let pixels = MultiTaskDataset::new(
        "pixels",
        ArrayD::zeros(vec![1, 1, 2, 2]),
        vec![TaskSpec::pixel_regression("depth")],
        vec![TaskTargets::PixelValues(Array3::zeros((1, 2, 2)))],
    )
    .unwrap();
    assert!(pixels.padded(4, 4).unwrap_err().to_string().contains("per-pixel"));
}
