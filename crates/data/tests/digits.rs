//! The embedded UCI digits and MultiDigits.

use std::collections::HashSet;
use std::path::Path;

use ndarray::Axis;
use tapestry_data::{
    multidigits, parse_uci_digits, uci_digits, DataError, MultiDigitsConfig, PairedSplits,
    TaskKind, TaskTargets, UCI_DIGITS_CLASS_COUNTS,
};

fn small(seed: u64) -> MultiDigitsConfig {
    MultiDigitsConfig { seed, train_len: 600, test_len: 200, ..Default::default() }
}

fn classes(targets: &TaskTargets) -> &[i64] {
    match targets {
        TaskTargets::Classes { labels } => labels,
        other => panic!("expected classes, got {other:?}"),
    }
}

#[test]
fn embedded_digits_decode_with_the_documented_counts() {
    let digits = uci_digits().unwrap();
    assert_eq!(digits.len(), 1797);
    let mut counts = [0usize; 10];
    digits.labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, UCI_DIGITS_CLASS_COUNTS);
    // The first row of the file: a zero.
    assert_eq!(&digits.image(0)[..8], &[0, 0, 5, 13, 9, 1, 0, 0]);
    assert_eq!(digits.labels[0], 0);
    assert!(digits.pixels.iter().all(|&p| p <= 16));
}

#[test]
fn a_bad_cell_names_the_line_and_column() {
    let mut row: Vec<String> = (0..64).map(|_| "3".to_string()).collect();
    row.push("7".into());
    let good = row.join(",");
    row[10] = "x".into();
    let bad = row.join(",");
    let err = parse_uci_digits(&format!("{good}\n{bad}\n"), Path::new("digits.csv")).unwrap_err();
    assert!(matches!(err, DataError::Csv { line: 2, .. }), "{err:?}");
    assert_eq!(err.to_string(), "digits.csv, line 2, column 11: \"x\" is not an integer in 0..=16");
    let err = parse_uci_digits("1,2,3\n", Path::new("digits.csv")).unwrap_err();
    assert!(err.to_string().contains("expected 65 cells, found 3"), "{err}");
}

#[test]
fn no_source_digit_is_in_both_splits() {
    let data = multidigits(&small(3)).unwrap();
    let train: HashSet<usize> = data.train_sources.iter().flatten().copied().collect();
    let test: HashSet<usize> = data.test_sources.iter().flatten().copied().collect();
    assert!(train.is_disjoint(&test));
    // The pairs draw from the whole of each pool, not from a sliver of it.
    assert!(train.len() > 500 && test.len() > 150, "{} {}", train.len(), test.len());
    assert!(data.train_sources.iter().all(|[a, b]| a != b));
}

#[test]
fn labels_and_sums_match_the_sources() {
    let digits = uci_digits().unwrap();
    let data = multidigits(&small(4)).unwrap();
    for (set, sources) in
        [(&data.splits.train, &data.train_sources), (&data.splits.test, &data.test_sources)]
    {
        assert_eq!(set.tasks.len(), 3);
        assert_eq!(set.tasks[2].kind, TaskKind::Regression { dim: 1 });
        let left = classes(&set.targets[0]);
        let right = classes(&set.targets[1]);
        let TaskTargets::Values { values, mask: None } = &set.targets[2] else { panic!("sum") };
        for (i, &[a, b]) in sources.iter().enumerate() {
            assert_eq!(left[i], digits.labels[a] as i64);
            assert_eq!(right[i], digits.labels[b] as i64);
            assert_eq!(values[[i, 0]], (left[i] + right[i]) as f32);
        }
    }
}

/// Each image is the pixel maximum of its two sources at offsets within the documented ranges:
/// top-left corner in 0..=1, bottom-right corner's origin in 3..=4 on a 12-pixel canvas.
#[test]
fn images_are_the_maximum_of_two_shifted_digits() {
    let digits = uci_digits().unwrap();
    let PairedSplits { splits, train_sources, .. } = multidigits(&small(5)).unwrap();
    assert_eq!(splits.train.sample_shape(), &[1, 12, 12]);
    let compose = |a: usize, b: usize, o: [usize; 4]| {
        let mut canvas = [[0.0f32; 12]; 12];
        for (img, r0, c0) in [(a, o[0], o[1]), (b, o[2], o[3])] {
            for r in 0..8 {
                for c in 0..8 {
                    let v = digits.image(img)[r * 8 + c] as f32 / 16.0;
                    canvas[r0 + r][c0 + c] = canvas[r0 + r][c0 + c].max(v);
                }
            }
        }
        canvas
    };
    let mut offsets_seen = HashSet::new();
    for (i, &[a, b]) in train_sources.iter().enumerate().take(200) {
        let image = splits.train.inputs.index_axis(Axis(0), i);
        let mut found = None;
        for o in 0..16usize {
            let offsets = [o & 1, (o >> 1) & 1, 3 + ((o >> 2) & 1), 3 + ((o >> 3) & 1)];
            let canvas = compose(a, b, offsets);
            if image.iter().zip(canvas.iter().flatten()).all(|(x, y)| x == y) {
                found = Some(offsets);
                break;
            }
        }
        offsets_seen
            .insert(found.unwrap_or_else(|| panic!("image {i} is no composition of {a} and {b}")));
    }
    // Shifts vary: more than a handful of the 16 offset combinations occur.
    assert!(offsets_seen.len() > 8, "{offsets_seen:?}");
}

#[test]
fn the_same_seed_gives_the_same_data_and_another_seed_other_data() {
    let a = multidigits(&small(11)).unwrap();
    let b = multidigits(&small(11)).unwrap();
    let c = multidigits(&small(12)).unwrap();
    assert_eq!(a.splits.train.inputs, b.splits.train.inputs);
    assert_eq!(a.splits.test.inputs, b.splits.test.inputs);
    assert_eq!(a.train_sources, b.train_sources);
    assert_eq!(a.splits.train.targets, b.splits.train.targets);
    assert_ne!(a.splits.train.inputs, c.splits.train.inputs);
    assert_ne!(a.train_sources, c.train_sources);
    // The split seed, not the seed, decides the source split: no test source of one seed is a
    // training source of the other.
    let sources = |s: &[[usize; 2]]| s.iter().flatten().copied().collect::<HashSet<_>>();
    assert!(sources(&c.test_sources).is_disjoint(&sources(&a.train_sources)));
    assert!(sources(&a.test_sources).is_disjoint(&sources(&c.train_sources)));
    let pa = sources(&a.test_sources);
    let other_split = multidigits(&MultiDigitsConfig { split_seed: 1, ..small(11) }).unwrap();
    assert!(!sources(&other_split.test_sources).is_disjoint(&sources(&a.train_sources)));
    assert_ne!(sources(&other_split.test_sources), pa);
}

#[test]
fn impossible_configurations_are_refused() {
    let err = multidigits(&MultiDigitsConfig { canvas: 8, ..small(0) }).unwrap_err();
    assert!(matches!(err, DataError::Config(_)), "{err}");
    let err = multidigits(&MultiDigitsConfig { test_fraction: 1.0, ..small(0) }).unwrap_err();
    assert!(matches!(err, DataError::Config(_)), "{err}");
}

#[test]
fn runs_with_different_seeds_share_one_test_set() {
    let a = multidigits(&small(11)).unwrap();
    let c = multidigits(&small(12)).unwrap();
    assert_eq!(a.splits.test.inputs, c.splits.test.inputs);
    assert_eq!(a.splits.test.targets, c.splits.test.targets);
    assert_eq!(a.test_sources, c.test_sources);
    // The split seed decides it.
    let other = multidigits(&MultiDigitsConfig { split_seed: 1, ..small(11) }).unwrap();
    assert_ne!(other.splits.test.inputs, a.splits.test.inputs);
}
