//! Synthetic scenes: determinism and agreement of segmentation, depth and label with occlusion.

use ndarray::Axis;
use tapestry_data::{
    generate_scenes, scenes, DataError, ScenesConfig, Shape, TaskKind, TaskTargets,
    BACKGROUND_DEPTH,
};

fn config(seed: u64) -> ScenesConfig {
    ScenesConfig { seed, train_len: 60, test_len: 20, ..Default::default() }
}

#[test]
fn the_same_seed_gives_the_same_scenes_and_another_seed_others() {
    let a = scenes(&config(1)).unwrap();
    let b = scenes(&config(1)).unwrap();
    let c = scenes(&config(2)).unwrap();
    assert_eq!(a.train.inputs, b.train.inputs);
    assert_eq!(a.train.targets, b.train.targets);
    assert_eq!(a.test.inputs, b.test.inputs);
    assert_ne!(a.train.inputs, c.train.inputs);
    assert_ne!(a.train.inputs, a.test.inputs.slice_axis(Axis(0), (0..20).into()).to_owned());
}

#[test]
fn tasks_and_shapes_are_as_documented() {
    let data = scenes(&config(3)).unwrap();
    assert_eq!(data.train.inputs.shape(), &[60, 3, 28, 28]);
    let names: Vec<&str> = data.train.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["segmentation", "depth", "label"]);
    assert_eq!(
        data.train.tasks[0].kind,
        TaskKind::PixelClassification { classes: 4, ignore_label: -1 }
    );
    assert_eq!(data.train.tasks[1].kind, TaskKind::PixelRegression);
    assert!(data.train.inputs.iter().all(|&v| (0.0..=1.0).contains(&v)));
}

/// Recomputes every pixel's class and depth from the shapes by a z-buffer (nearest covering
/// shape wins) and the label from the visible areas, and compares with the generated targets.
#[test]
fn segmentation_depth_and_label_agree_with_occlusion() {
    let cfg = ScenesConfig { max_shapes: 5, ..config(4) };
    let (data, shapes) = generate_scenes(&cfg, 200, 1, "check").unwrap();
    let TaskTargets::PixelClasses(classes) = &data.targets[0] else { panic!("segmentation") };
    let TaskTargets::PixelValues(depth) = &data.targets[1] else { panic!("depth") };
    let TaskTargets::Classes { labels } = &data.targets[2] else { panic!("label") };
    let mut occluded_pixels = 0;
    let mut label_counts = [0usize; 3];
    for (i, scene) in shapes.iter().enumerate() {
        assert!((1..=5).contains(&scene.len()));
        let mut visible = vec![0usize; scene.len()];
        for r in 0..28 {
            for c in 0..28 {
                let covering: Vec<&Shape> =
                    scene.iter().filter(|s| s.contains(r as f32 + 0.5, c as f32 + 0.5)).collect();
                occluded_pixels += covering.len().saturating_sub(1);
                let nearest = (0..scene.len())
                    .filter(|&k| scene[k].contains(r as f32 + 0.5, c as f32 + 0.5))
                    .min_by(|&a, &b| scene[a].depth.total_cmp(&scene[b].depth));
                match nearest {
                    Some(k) => {
                        visible[k] += 1;
                        assert_eq!(classes[[i, r, c]], scene[k].kind as i64 + 1);
                        assert_eq!(depth[[i, r, c]], scene[k].depth);
                        assert!(depth[[i, r, c]] < BACKGROUND_DEPTH);
                        for ch in 0..3 {
                            let v = data.inputs[[i, ch, r, c]];
                            assert!((v - scene[k].color[ch]).abs() <= cfg.noise + 1e-6);
                        }
                    }
                    None => {
                        assert_eq!(classes[[i, r, c]], 0);
                        assert_eq!(depth[[i, r, c]], BACKGROUND_DEPTH);
                    }
                }
            }
        }
        let most = *visible.iter().max().unwrap();
        assert!(most > 0);
        let candidates: Vec<i64> = (0..scene.len())
            .filter(|&k| visible[k] == most)
            .map(|k| scene[k].kind as i64)
            .collect();
        assert!(candidates.contains(&labels[i]), "scene {i}: {visible:?} {labels:?}");
        label_counts[labels[i] as usize] += 1;
    }
    // The scenes do overlap, and every label occurs.
    assert!(occluded_pixels > 1000, "{occluded_pixels}");
    assert!(label_counts.iter().all(|&n| n > 20), "{label_counts:?}");
}

#[test]
fn nearer_shapes_look_bigger() {
    let (_, shapes) = generate_scenes(&config(5), 300, 1, "sizes").unwrap();
    let all: Vec<&Shape> = shapes.iter().flatten().collect();
    let near: Vec<f32> = all.iter().filter(|s| s.depth < 0.45).map(|s| s.radius).collect();
    let far: Vec<f32> = all.iter().filter(|s| s.depth > 0.75).map(|s| s.radius).collect();
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    assert!(near.len() > 50 && far.len() > 50);
    assert!(mean(&near) > 1.6 * mean(&far), "{} {}", mean(&near), mean(&far));
}

#[test]
fn bad_configurations_are_refused() {
    for bad in [
        ScenesConfig { min_shapes: 0, ..config(0) },
        ScenesConfig { min_shapes: 4, max_shapes: 3, ..config(0) },
        ScenesConfig { size: 4, ..config(0) },
        ScenesConfig { noise: 2.0, ..config(0) },
    ] {
        assert!(matches!(scenes(&bad), Err(DataError::Config(_))), "{bad:?}");
    }
}
