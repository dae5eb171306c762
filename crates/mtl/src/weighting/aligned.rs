//! Aligned-MTL (Senushkin et al., 2023): make the task gradients' matrix well-conditioned before
//! combining them. With the Gram `M = G Gᵀ = V Λ Vᵀ` (`T × T`, eigenvalues above a tolerance,
//! largest first) and `σ_min²` the smallest of them,
//!
//! ```text
//! B = σ_min · V Λ^{−½} Vᵀ,     α_t = Σ_s B_st
//! ```
//!
//! and the losses are weighed by α (LibMTL's form). `G` itself is never formed beyond its Gram,
//! so the method runs on the `T × T` matrix alone: a symmetric eigendecomposition (nalgebra's),
//! `O(T³)` on top of the per-task gradients, which cost what MGDA's do. The tolerance is
//! LibMTL's, `max λ · T · ε` with ε the f32 machine epsilon; all-zero gradients (rank 0) leave
//! the weights at 1.

use nalgebra::{DMatrix, SymmetricEigen};

use super::{check_losses, Needs, StepInput, StepWeights, Weighting, WeightingError};

/// Aligned-MTL on the shared parameters' gradients.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlignedMtl;

impl AlignedMtl {
    /// The weights α for the `T × T` Gram matrix `gram` (row-major), and the rank used.
    pub fn weights_from_gram(gram: &[f64], t: usize) -> (Vec<f64>, usize) {
        let e = SymmetricEigen::new(DMatrix::from_row_slice(t, t, gram));
        let top = e.eigenvalues.iter().fold(0.0f64, |a, &b| a.max(b));
        let tol = top * t as f64 * f64::from(f32::EPSILON);
        let kept: Vec<usize> = (0..t).filter(|&k| e.eigenvalues[k] > tol).collect();
        let Some(smallest) = kept.iter().map(|&k| e.eigenvalues[k]).reduce(f64::min) else {
            return (vec![1.0; t], 0);
        };
        let mut b = DMatrix::<f64>::zeros(t, t);
        for &k in &kept {
            let v = e.eigenvectors.column(k);
            b += (v * v.transpose()) / e.eigenvalues[k].sqrt();
        }
        b *= smallest.sqrt();
        ((0..t).map(|s| b.row(s).sum()).collect(), kept.len())
    }
}

impl Weighting for AlignedMtl {
    fn name(&self) -> &'static str {
        "aligned-mtl"
    }

    fn needs(&self) -> Needs {
        Needs { shared_gram: true, ..Needs::LOSSES }
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("aligned-mtl", input.losses)?;
        let gram = input.shared_gram("aligned-mtl")?;
        let (weights, rank) = Self::weights_from_gram(gram, input.losses.len());
        Ok(StepWeights {
            weights,
            diagnostics: vec![("aligned.rank".into(), vec![rank as f64])],
            ..Default::default()
        })
    }
}
