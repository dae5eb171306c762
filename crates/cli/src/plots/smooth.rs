//! Smoothing of noisy per-step curves, so that their trend reads.
//!
//! - [`ema`]: the exponential moving average `s₀ = x₀`, `sₖ = α·xₖ + (1 − α)·sₖ₋₁`, drawn over
//!   the faint raw curve of the losses and task weights (α = [`EMA_ALPHA`]: about the last
//!   `1/α = 10` steps carry most of the weight), on curves of [`EMA_MIN_POINTS`] or more;
//! - [`window_means`]: the mean of consecutive windows of steps, for the gradient cosines over
//!   time (each point says "over steps a..b the mean cosine was c");
//! - [`spans_decades`]: whether positive values are better read on a log axis.

/// The smoothing factor of the EMA drawn over the loss and weight curves.
pub const EMA_ALPHA: f64 = 0.1;

/// The fewest points a curve needs for its EMA to be drawn: the EMA trails its data by about
/// `1/α − 1 = 9` steps, which misleads on a short curve (there the raw points are the curve).
pub const EMA_MIN_POINTS: usize = 100;

/// The exponential moving average of the `y` of `points` with factor `alpha` (in `(0, 1]`),
/// at the same `x`. Non-finite values are skipped: they neither appear nor move the average.
pub fn ema(points: &[(f64, f64)], alpha: f64) -> Vec<(f64, f64)> {
    let mut state: Option<f64> = None;
    points
        .iter()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .map(|&(x, y)| {
            let s = match state {
                None => y,
                Some(s) => alpha * y + (1.0 - alpha) * s,
            };
            state = Some(s);
            (x, s)
        })
        .collect()
}

/// The means of `points` (x and y alike) over consecutive windows of `window` points (the last
/// one may be shorter), skipping non-finite points. A window of 1 returns the finite points.
pub fn window_means(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let finite: Vec<(f64, f64)> =
        points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    finite
        .chunks(window.max(1))
        .map(|chunk| {
            let n = chunk.len() as f64;
            let (sx, sy) = chunk.iter().fold((0.0, 0.0), |(sx, sy), p| (sx + p.0, sy + p.1));
            (sx / n, sy / n)
        })
        .collect()
}

/// The window for [`window_means`] that leaves at most `points` means of `n` points.
pub fn window_for(n: usize, points: usize) -> usize {
    n.div_ceil(points.max(1)).max(1)
}

/// Whether the finite values span at least a factor of 10 and are all positive, so that a log
/// axis shows them better than a linear one.
pub fn spans_decades(values: impl Iterator<Item = f64>) -> bool {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    lo > 0.0 && hi / lo >= 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_starts_at_the_first_value_and_follows_the_recursion() {
        let points = [(0.0, 1.0), (1.0, 2.0), (2.0, f64::NAN), (3.0, 4.0)];
        let s = ema(&points, 0.5);
        // s0 = 1, s1 = 0.5*2 + 0.5*1 = 1.5, (the NaN is skipped), s3 = 0.5*4 + 0.5*1.5 = 2.75.
        assert_eq!(s, vec![(0.0, 1.0), (1.0, 1.5), (3.0, 2.75)]);
        // α = 1 is no smoothing at all.
        assert_eq!(ema(&points, 1.0), vec![(0.0, 1.0), (1.0, 2.0), (3.0, 4.0)]);
    }

    #[test]
    fn ema_of_alternating_noise_stays_near_its_mean() {
        let points: Vec<(f64, f64)> =
            (0..200).map(|k| (k as f64, if k % 2 == 0 { 0.0 } else { 2.0 })).collect();
        let s = ema(&points, EMA_ALPHA);
        let last = s.last().unwrap().1;
        // The raw curve jumps by 2 each step; the EMA settles within 0.11 of the mean 1.
        assert!((last - 1.0).abs() < 0.11, "{last}");
    }

    #[test]
    fn window_means_average_consecutive_points() {
        let points = [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0), (3.0, 7.0), (4.0, 10.0)];
        assert_eq!(window_means(&points, 2), vec![(0.5, 2.0), (2.5, 6.0), (4.0, 10.0)]);
        assert_eq!(window_means(&points, 1), points.to_vec());
        assert_eq!(window_for(5, 2), 3);
        assert_eq!(window_for(1000, 100), 10);
        assert_eq!(window_for(10, 100), 1);
    }

    #[test]
    fn a_log_axis_only_for_positive_values_spanning_a_decade() {
        assert!(spans_decades([0.05, 0.3, 2.0].into_iter()));
        assert!(!spans_decades([0.5, 0.9, 2.0].into_iter()), "less than a factor of 10");
        assert!(!spans_decades([0.0, 0.3, 20.0].into_iter()), "a zero");
        assert!(spans_decades([0.01, f64::NAN, 1.0].into_iter()), "NaN is ignored");
    }
}
