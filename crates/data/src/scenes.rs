//! Synthetic scenes for a three-head network: segmentation, depth and an image label.
//!
//! A scene is a few shapes (circles, squares, triangles) in front of a plain background. Each
//! shape has a depth; nearer shapes occlude farther ones, and a shape's apparent size shrinks
//! with its depth (radius proportional to `1 / depth`, jittered by up to 15%), which is the cue a
//! network can learn depth from. The segmentation target gives each pixel the class of the
//! nearest shape covering it (background 0, circle 1, square 2, triangle 3), the depth target
//! that shape's depth (the background is at [`BACKGROUND_DEPTH`]), and the image label is the
//! kind of the shape with the most visible pixels (0 circle, 1 square, 2 triangle).

use ndarray::{Array2, Array3, Array4, Axis};
use rand::Rng;

use crate::dataset::{MultiTaskDataset, Splits, TaskTargets};
use crate::error::{DataError, Result};
use crate::seeded_rng;
use crate::task::{TaskSpec, MISSING_LABEL};

/// The depth of the background; shapes lie between [`NEAREST_DEPTH`] and [`FARTHEST_DEPTH`].
pub const BACKGROUND_DEPTH: f32 = 1.0;
/// The smallest depth a shape can have.
pub const NEAREST_DEPTH: f32 = 0.3;
/// The largest depth a shape can have.
pub const FARTHEST_DEPTH: f32 = 0.9;

/// The kinds of shape; a shape of kind `k` has segmentation class `k as i64 + 1` and image label
/// `k as i64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapeKind {
    /// A disc.
    Circle = 0,
    /// An axis-aligned square.
    Square = 1,
    /// An isosceles triangle pointing up.
    Triangle = 2,
}

impl ShapeKind {
    /// All kinds, in label order.
    pub const ALL: [ShapeKind; 3] = [ShapeKind::Circle, ShapeKind::Square, ShapeKind::Triangle];

    /// The segmentation class of the kind (the background is 0).
    pub fn segmentation_class(self) -> i64 {
        self as i64 + 1
    }
}

/// One shape of a scene, in pixel coordinates (pixel `(r, c)` is sampled at its centre
/// `(r + 0.5, c + 0.5)`).
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// The kind of shape.
    pub kind: ShapeKind,
    /// The centre, `(row, column)`.
    pub center: (f32, f32),
    /// The radius of a circle, half the side of a square, half the height of a triangle.
    pub radius: f32,
    /// The depth, in `NEAREST_DEPTH..FARTHEST_DEPTH`.
    pub depth: f32,
    /// The RGB colour, each channel in `0..=1`.
    pub color: [f32; 3],
}

impl Shape {
    /// Whether the point `(row, col)` lies inside the shape.
    pub fn contains(&self, row: f32, col: f32) -> bool {
        let (dy, dx) = (row - self.center.0, col - self.center.1);
        let r = self.radius;
        match self.kind {
            ShapeKind::Circle => dy * dy + dx * dx <= r * r,
            ShapeKind::Square => dy.abs() <= r && dx.abs() <= r,
            // Apex at (cy - r, cx), base from (cy + r, cx - r) to (cy + r, cx + r).
            ShapeKind::Triangle => {
                let down = dy + r;
                (0.0..=2.0 * r).contains(&down) && dx.abs() <= down / 2.0
            }
        }
    }
}

/// One generated scene.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    /// The image, `[3, size, size]`, values in `0..=1`.
    pub image: Array3<f32>,
    /// The class of each pixel, `[size, size]`.
    pub classes: Array2<i64>,
    /// The depth of each pixel, `[size, size]`.
    pub depth: Array2<f32>,
    /// The shapes, in the order they were drawn.
    pub shapes: Vec<Shape>,
    /// The image label: the kind of the shape with the most visible pixels (ties go to the
    /// nearer shape).
    pub label: i64,
}

/// How to generate scenes.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenesConfig {
    /// The seed.
    pub seed: u64,
    /// The side of the square images.
    pub size: usize,
    /// The fewest shapes in a scene (at least 1).
    pub min_shapes: usize,
    /// The most shapes in a scene.
    pub max_shapes: usize,
    /// The amplitude of the uniform pixel noise added to the image (then clamped to `0..=1`).
    pub noise: f32,
    /// The number of training scenes.
    pub train_len: usize,
    /// The number of test scenes.
    pub test_len: usize,
}

impl Default for ScenesConfig {
    fn default() -> Self {
        ScenesConfig {
            seed: 0,
            size: 28,
            min_shapes: 1,
            max_shapes: 3,
            noise: 0.05,
            train_len: 4_000,
            test_len: 1_000,
        }
    }
}

/// The tasks of the scenes: `segmentation` (4 classes, ignore label [`MISSING_LABEL`], never
/// used by generated scenes), `depth` (per pixel, L1) and `label` (3 classes).
pub fn scenes_tasks() -> Vec<TaskSpec> {
    vec![
        TaskSpec::segmentation("segmentation", ShapeKind::ALL.len() + 1, MISSING_LABEL),
        TaskSpec::pixel_regression("depth"),
        TaskSpec::classification("label", ShapeKind::ALL.len()),
    ]
}

/// Checks a configuration.
fn check(config: &ScenesConfig) -> Result<()> {
    if config.size < 8 {
        return Err(DataError::Config(format!(
            "scenes need a size of at least 8, got {}",
            config.size
        )));
    }
    if config.min_shapes == 0 || config.min_shapes > config.max_shapes {
        return Err(DataError::Config(format!(
            "scenes need 1 <= min_shapes <= max_shapes, got {} and {}",
            config.min_shapes, config.max_shapes
        )));
    }
    if !(0.0..=1.0).contains(&config.noise) {
        return Err(DataError::Config(format!(
            "scene noise must lie in 0..=1, got {}",
            config.noise
        )));
    }
    Ok(())
}

/// Draws one scene from `rng`.
///
/// # Panics
///
/// If `config.size` is 0 or `config.min_shapes > config.max_shapes` (see [`scenes`], which
/// checks the configuration first).
pub fn generate_scene(config: &ScenesConfig, rng: &mut impl Rng) -> Scene {
    let size = config.size;
    let extent = size as f32;
    let count = rng.gen_range(config.min_shapes..=config.max_shapes);
    let shapes: Vec<Shape> = (0..count)
        .map(|_| {
            let kind = ShapeKind::ALL[rng.gen_range(0..ShapeKind::ALL.len())];
            let depth = rng.gen_range(NEAREST_DEPTH..FARTHEST_DEPTH);
            // Perspective: 0.09 * size / depth spans 0.1..0.3 of the image over the depth range.
            let radius = (0.09 * extent / depth * rng.gen_range(0.85..1.15)).max(1.5);
            let center = (rng.gen_range(0.0..extent), rng.gen_range(0.0..extent));
            let color =
                [rng.gen_range(0.35..1.0), rng.gen_range(0.35..1.0), rng.gen_range(0.35..1.0)];
            Shape { kind, center, radius, depth, color }
        })
        .collect();
    let background = [rng.gen_range(0.0..0.25), rng.gen_range(0.0..0.25), rng.gen_range(0.0..0.25)];

    // Painter's algorithm: farthest first, so nearer shapes overwrite farther ones.
    let mut order: Vec<usize> = (0..shapes.len()).collect();
    order.sort_by(|&a, &b| shapes[b].depth.total_cmp(&shapes[a].depth));
    let mut owner = Array2::<Option<usize>>::from_elem((size, size), None);
    for &s in &order {
        for ((r, c), cell) in owner.indexed_iter_mut() {
            if shapes[s].contains(r as f32 + 0.5, c as f32 + 0.5) {
                *cell = Some(s);
            }
        }
    }

    let mut image = Array3::<f32>::zeros((3, size, size));
    let mut classes = Array2::<i64>::zeros((size, size));
    let mut depth = Array2::<f32>::from_elem((size, size), BACKGROUND_DEPTH);
    let mut visible = vec![0usize; shapes.len()];
    for ((r, c), cell) in owner.indexed_iter() {
        let color = match *cell {
            Some(s) => {
                visible[s] += 1;
                classes[[r, c]] = shapes[s].kind.segmentation_class();
                depth[[r, c]] = shapes[s].depth;
                shapes[s].color
            }
            None => background,
        };
        for (channel, &value) in color.iter().enumerate() {
            let noise =
                if config.noise > 0.0 { rng.gen_range(-config.noise..=config.noise) } else { 0.0 };
            image[[channel, r, c]] = (value + noise).clamp(0.0, 1.0);
        }
    }
    // Every shape's centre lies on the canvas, so the nearest shape has at least one pixel.
    let largest = (0..shapes.len())
        .max_by(|&a, &b| {
            visible[a].cmp(&visible[b]).then(shapes[b].depth.total_cmp(&shapes[a].depth))
        })
        .expect("a scene has at least one shape");
    let label = shapes[largest].kind as i64;
    Scene { image, classes, depth, shapes, label }
}

/// Generates `len` scenes on ChaCha8 stream `stream` of `config.seed`, returning the data set and
/// the scenes' shapes.
pub fn generate_scenes(
    config: &ScenesConfig,
    len: usize,
    stream: u64,
    name: &str,
) -> Result<(MultiTaskDataset, Vec<Vec<Shape>>)> {
    check(config)?;
    let size = config.size;
    let mut rng = seeded_rng(config.seed, stream);
    let mut inputs = Array4::<f32>::zeros((len, 3, size, size));
    let mut classes = Array3::<i64>::zeros((len, size, size));
    let mut depth = Array3::<f32>::zeros((len, size, size));
    let mut labels = Vec::with_capacity(len);
    let mut shapes = Vec::with_capacity(len);
    for i in 0..len {
        let scene = generate_scene(config, &mut rng);
        inputs.index_axis_mut(Axis(0), i).assign(&scene.image);
        classes.index_axis_mut(Axis(0), i).assign(&scene.classes);
        depth.index_axis_mut(Axis(0), i).assign(&scene.depth);
        labels.push(scene.label);
        shapes.push(scene.shapes);
    }
    let targets = vec![
        TaskTargets::PixelClasses(classes),
        TaskTargets::PixelValues(depth),
        TaskTargets::Classes { labels },
    ];
    let dataset = MultiTaskDataset::new(name, inputs.into_dyn(), scenes_tasks(), targets)?;
    Ok((dataset, shapes))
}

/// The train split (stream 1 of the seed) and the test split (stream 2) of synthetic scenes.
/// Inputs are `[N, 3, size, size]`; see [`scenes_tasks`] for the tasks.
pub fn scenes(config: &ScenesConfig) -> Result<Splits> {
    let (train, _) = generate_scenes(config, config.train_len, 1, "scenes/train")?;
    let (test, _) = generate_scenes(config, config.test_len, 2, "scenes/test")?;
    Ok(Splits { train, test })
}
