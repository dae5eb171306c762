//! Prints how long each data set takes to build, and a 1-nearest-neighbour baseline on
//! MultiDigits that shows how much of each task a plain pixel distance already solves.
//!
//! Run with `cargo run --release -p tapestry-data --example data_figures`.

use std::time::Instant;

use ndarray::Axis;
use tapestry_data::{
    multidigits, multifashion, read_mnist_folder, scenes, uci_digits, MultiDigitsConfig,
    MultiFashionConfig, ScenesConfig, TaskTargets, FASHION_MNIST_DIR,
};

fn labels(targets: &TaskTargets) -> &[i64] {
    match targets {
        TaskTargets::Classes { labels } => labels,
        _ => unreachable!("MultiDigits' first two tasks are classifications"),
    }
}

fn main() -> Result<(), tapestry_data::DataError> {
    let start = Instant::now();
    let digits = uci_digits()?;
    println!(
        "UCI digits: {} decoded in {:.1} ms",
        digits.len(),
        start.elapsed().as_secs_f64() * 1e3
    );

    let start = Instant::now();
    let data = multidigits(&MultiDigitsConfig::default())?;
    let (train, test) = (&data.splits.train, &data.splits.test);
    println!(
        "MultiDigits: {} train + {} test images {:?} built in {:.1} ms",
        train.len(),
        test.len(),
        train.sample_shape(),
        start.elapsed().as_secs_f64() * 1e3
    );

    // 1-nearest neighbour (squared pixel distance) for every test image.
    let start = Instant::now();
    let flat = |d: &tapestry_data::MultiTaskDataset| {
        d.inputs.to_shape((d.len(), d.sample_shape().iter().product::<usize>())).unwrap().to_owned()
    };
    let (xtr, xte) = (flat(train), flat(test));
    let nearest: Vec<usize> = xte
        .axis_iter(Axis(0))
        .map(|q| {
            let distances = xtr
                .axis_iter(Axis(0))
                .map(|t| t.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>());
            distances.enumerate().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0
        })
        .collect();
    for task in 0..2 {
        let (ltr, lte) = (labels(&train.targets[task]), labels(&test.targets[task]));
        let right = nearest.iter().zip(lte).filter(|&(&n, &l)| ltr[n] == l).count();
        println!(
            "  1-NN {}: accuracy {:.3}",
            train.tasks[task].name,
            right as f64 / test.len() as f64
        );
    }
    let (TaskTargets::Values { values: str_, .. }, TaskTargets::Values { values: ste, .. }) =
        (&train.targets[2], &test.targets[2])
    else {
        unreachable!("MultiDigits' third task is a regression")
    };
    let mse =
        nearest.iter().enumerate().map(|(i, &n)| (str_[[n, 0]] - ste[[i, 0]]).powi(2)).sum::<f32>()
            / test.len() as f32;
    let mean = ste.iter().sum::<f32>() / test.len() as f32;
    let var = ste.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / test.len() as f32;
    println!(
        "  1-NN digit_sum: RMSE {:.2} (predicting the mean: {:.2}); {:.1} s",
        mse.sqrt(),
        var.sqrt(),
        start.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    let scene_data = scenes(&ScenesConfig::default())?;
    println!(
        "Scenes: {} train + {} test images {:?} built in {:.1} ms",
        scene_data.train.len(),
        scene_data.test.len(),
        scene_data.train.sample_shape(),
        start.elapsed().as_secs_f64() * 1e3
    );

    if std::path::Path::new(FASHION_MNIST_DIR).is_dir() {
        let start = Instant::now();
        let folder = read_mnist_folder(FASHION_MNIST_DIR)?;
        println!(
            "Fashion-MNIST: {} + {} images read in {:.2} s",
            folder.train.labels.len(),
            folder.test.labels.len(),
            start.elapsed().as_secs_f64()
        );
        let start = Instant::now();
        let fashion = multifashion(&MultiFashionConfig::default())?;
        println!(
            "Multi-Fashion: {} train + {} test images {:?} built in {:.2} s (reading the gzipped IDX files included)",
            fashion.splits.train.len(),
            fashion.splits.test.len(),
            fashion.splits.train.sample_shape(),
            start.elapsed().as_secs_f64()
        );
    } else {
        println!("Multi-Fashion: skipped, {FASHION_MNIST_DIR} does not exist");
    }
    Ok(())
}
