//! Gradient clipping, as `torch.nn.utils.clip_grad_norm_` and `clip_grad_value_`.

use crate::grads::ParamGrads;

/// Scales all gradients by `max_norm / (norm + 1e-6)` if that is below 1, where `norm` is the
/// global L2 norm over every gradient (accumulated in f64). Returns the norm before clipping.
///
/// # Panics
/// If `max_norm` is negative or NaN.
pub fn clip_grad_norm(grads: &mut ParamGrads, max_norm: f32) -> f32 {
    assert!(max_norm >= 0.0, "clip_grad_norm needs max_norm >= 0, got {max_norm}");
    let norm = grads.norm();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        grads.scale(coef);
    }
    norm
}

/// Clamps every gradient element into `[−clip, clip]`.
///
/// # Panics
/// If `clip` is negative or NaN.
pub fn clip_grad_value(grads: &mut ParamGrads, clip: f32) {
    assert!(clip >= 0.0, "clip_grad_value needs clip >= 0, got {clip}");
    let ids: Vec<_> = grads.iter().map(|(id, _)| id).collect();
    for id in ids {
        grads.update(id, |g| g.iter_mut().for_each(|x| *x = x.clamp(-clip, clip)));
    }
}
