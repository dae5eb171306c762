//! Task samplers: sinusoid regression (Finn et al., 2017; Nichol et al., 2018) and N-way K-shot
//! classification episodes from a labelled pool.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::Tensor;

use crate::error::MetaError;
use crate::task::{Split, Targets, Task};

/// Draws tasks.
pub trait TaskSampler: Send + Sync {
    /// One task, drawn with `rng`.
    fn sample(&self, rng: &mut ChaCha8Rng) -> Task;
}

/// Sinusoid regression: `y = A sin(x − φ)` with the amplitude A, phase φ and inputs x drawn
/// uniformly per task, K support and K query points.
///
/// [`Sinusoid::maml`] is the setting of MAML's reference code: A in [0.1, 5], φ in [0, π],
/// x in [−5, 5], support and query drawn independently. [`Sinusoid::reptile`] is Reptile's
/// variant: φ in [0, 2π], and each task is scored on 50 fixed points evenly spaced over
/// [−5, 5] (its support points are K of them, drawn without replacement).
#[derive(Debug, Clone, PartialEq)]
pub struct Sinusoid {
    /// The range of the amplitude.
    pub amplitude: (f32, f32),
    /// The range of the phase.
    pub phase: (f32, f32),
    /// The range of the inputs.
    pub x: (f32, f32),
    /// Points per support set.
    pub k_support: usize,
    /// Points per query set (ignored with a fixed grid: the query is the whole grid).
    pub k_query: usize,
    /// Reptile's fixed grid of inputs, if any.
    pub grid: Option<Vec<f32>>,
}

/// One sinusoid with its parameters, for the oracle baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct SinusoidTask {
    /// The task.
    pub task: Task,
    /// Its amplitude A.
    pub amplitude: f32,
    /// Its phase φ.
    pub phase: f32,
}

impl Sinusoid {
    /// MAML's setting with K support and K query points.
    pub fn maml(k: usize) -> Self {
        Sinusoid {
            amplitude: (0.1, 5.0),
            phase: (0.0, std::f32::consts::PI),
            x: (-5.0, 5.0),
            k_support: k,
            k_query: k,
            grid: None,
        }
    }

    /// Reptile's setting: K support points of a fixed grid of 50, scored on the whole grid.
    pub fn reptile(k: usize) -> Self {
        let grid = (0..50).map(|i| -5.0 + 10.0 * i as f32 / 49.0).collect();
        Sinusoid {
            phase: (0.0, 2.0 * std::f32::consts::PI),
            grid: Some(grid),
            k_query: 50,
            ..Sinusoid::maml(k)
        }
    }

    /// Checks the setting.
    ///
    /// # Errors
    /// [`MetaError::Sampler`] if K is 0 or larger than the fixed grid, or a range is empty.
    pub fn validate(&self) -> Result<(), MetaError> {
        if self.k_support == 0 || self.k_query == 0 {
            return Err(MetaError::Sampler("K must be at least 1 point per set".into()));
        }
        if let Some(grid) = &self.grid {
            if self.k_support > grid.len() {
                return Err(MetaError::Sampler(format!(
                    "K = {} support points is more than the {} points of the grid",
                    self.k_support,
                    grid.len()
                )));
            }
        }
        for (what, (lo, hi)) in
            [("amplitude", self.amplitude), ("phase", self.phase), ("x", self.x)]
        {
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                return Err(MetaError::Sampler(format!("the {what} range [{lo}, {hi}] is empty")));
            }
        }
        Ok(())
    }

    /// A task with its amplitude and phase.
    pub fn sample_with_parameters(&self, rng: &mut ChaCha8Rng) -> SinusoidTask {
        let amplitude = rng.gen_range(self.amplitude.0..=self.amplitude.1);
        let phase = rng.gen_range(self.phase.0..=self.phase.1);
        let set = |xs: Vec<f32>| {
            let ys = xs.iter().map(|&x| amplitude * (x - phase).sin()).collect();
            let n = xs.len();
            Split {
                x: Tensor::from_vec(&[n, 1], xs).expect("n values"),
                y: Targets::Values(Tensor::from_vec(&[n, 1], ys).expect("n values")),
            }
        };
        let mut draw = |n: usize| (0..n).map(|_| rng.gen_range(self.x.0..=self.x.1)).collect();
        let task = match &self.grid {
            None => {
                let support = set(draw(self.k_support));
                let query = set(draw(self.k_query));
                Task { support, query }
            }
            Some(grid) => {
                let support = grid.choose_multiple(rng, self.k_support).copied().collect();
                Task { support: set(support), query: set(grid.clone()) }
            }
        };
        SinusoidTask { task, amplitude, phase }
    }
}

impl TaskSampler for Sinusoid {
    fn sample(&self, rng: &mut ChaCha8Rng) -> Task {
        self.sample_with_parameters(rng).task
    }
}

/// N-way K-shot classification episodes from a labelled pool: a task is N classes drawn from
/// the pool's, relabelled `0..N` in a random order, with K support and Q query examples of each
/// (all distinct).
#[derive(Debug, Clone, PartialEq)]
pub struct Episodes {
    /// The examples, grouped by class: `by_class[c]` holds the flat inputs of class `c`.
    by_class: Vec<Vec<Vec<f32>>>,
    /// The shape of one input.
    sample_shape: Vec<usize>,
    /// Classes per task.
    pub ways: usize,
    /// Support examples per class.
    pub shots: usize,
    /// Query examples per class.
    pub queries: usize,
}

impl Episodes {
    /// Episodes of `ways` classes with `shots` support and `queries` query examples per class,
    /// from `inputs` (`[n, ..sample_shape]`, flat) and their `labels`, restricted to `classes`
    /// (for instance the training classes of a class split).
    ///
    /// # Errors
    /// [`MetaError::Sampler`] if N is larger than the number of classes, or a class has fewer
    /// than K + Q examples (naming it), or the inputs and labels do not match.
    pub fn new(
        inputs: &[f32],
        sample_shape: &[usize],
        labels: &[usize],
        classes: &[usize],
        (ways, shots, queries): (usize, usize, usize),
    ) -> Result<Self, MetaError> {
        let size: usize = sample_shape.iter().product();
        if size == 0 || inputs.len() != labels.len() * size {
            return Err(MetaError::Sampler(format!(
                "{} input values for {} labels of shape {sample_shape:?}",
                inputs.len(),
                labels.len()
            )));
        }
        if ways < 2 || shots == 0 || queries == 0 {
            return Err(MetaError::Sampler(format!(
                "an episode needs N >= 2 classes and K, Q >= 1 examples each (got N = {ways}, K = {shots}, Q = {queries})"
            )));
        }
        if ways > classes.len() {
            return Err(MetaError::Sampler(format!(
                "N = {ways} classes per episode, but only {} classes to draw from",
                classes.len()
            )));
        }
        let mut by_class = Vec::with_capacity(classes.len());
        for &c in classes {
            let members: Vec<Vec<f32>> = labels
                .iter()
                .enumerate()
                .filter(|(_, &l)| l == c)
                .map(|(i, _)| inputs[i * size..(i + 1) * size].to_vec())
                .collect();
            if members.len() < shots + queries {
                return Err(MetaError::Sampler(format!(
                    "class {c} has {} examples, fewer than K + Q = {}",
                    members.len(),
                    shots + queries
                )));
            }
            by_class.push(members);
        }
        Ok(Episodes { by_class, sample_shape: sample_shape.to_vec(), ways, shots, queries })
    }

    fn set(&self, examples: Vec<(&[f32], i64)>) -> Split {
        let n = examples.len();
        let mut shape = vec![n];
        shape.extend(&self.sample_shape);
        let x = examples.iter().flat_map(|(x, _)| x.iter().copied()).collect();
        Split {
            x: Tensor::from_vec(&shape, x).expect("n samples"),
            y: Targets::Classes(examples.iter().map(|&(_, y)| y).collect()),
        }
    }
}

impl TaskSampler for Episodes {
    fn sample(&self, rng: &mut ChaCha8Rng) -> Task {
        let classes: Vec<usize> =
            rand::seq::index::sample(rng, self.by_class.len(), self.ways).into_vec();
        let (mut support, mut query) = (Vec::new(), Vec::new());
        // The drawn order of the classes is their new label: shuffled ids.
        for (label, &c) in classes.iter().enumerate() {
            let members = &self.by_class[c];
            let picked = rand::seq::index::sample(rng, members.len(), self.shots + self.queries);
            for (j, i) in picked.into_iter().enumerate() {
                let example = (members[i].as_slice(), label as i64);
                if j < self.shots {
                    support.push(example);
                } else {
                    query.push(example);
                }
            }
        }
        support.shuffle(rng);
        query.shuffle(rng);
        Task { support: self.set(support), query: self.set(query) }
    }
}
