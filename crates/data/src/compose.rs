//! Two small images on one canvas: the MultiMNIST construction shared by MultiDigits and
//! Multi-Fashion.

use rand::Rng;

/// Where the two items of a composed image go and how far each may move.
#[derive(Clone, Debug)]
pub(crate) struct PairLayout {
    /// The side of the square canvas.
    pub canvas: usize,
    /// The side of the square source images.
    pub item: usize,
    /// The largest shift, in pixels, along each axis.
    pub max_shift: usize,
    /// The value of each source byte: `v as f32 / max_value`, where `max_value` maps to 1.
    values: [f32; 256],
}

impl PairLayout {
    /// A layout whose source byte `max_value` becomes the pixel value 1.
    pub fn new(canvas: usize, item: usize, max_shift: usize, max_value: f32) -> Self {
        let values = std::array::from_fn(|v| v as f32 / max_value);
        PairLayout { canvas, item, max_shift, values }
    }

    /// Whether both items fit on the canvas at every shift.
    pub fn fits(&self) -> bool {
        self.canvas >= self.item + self.max_shift
    }

    /// Draws the top-left corners of the two items: the first item sits in the canvas's top-left
    /// corner and moves right and down by `0..=max_shift` pixels, the second sits in the
    /// bottom-right corner and moves left and up by `0..=max_shift` pixels (each axis drawn on
    /// its own).
    pub fn draw_offsets(&self, rng: &mut impl Rng) -> [(usize, usize); 2] {
        let far = self.canvas - self.item;
        let s = self.max_shift;
        [
            (rng.gen_range(0..=s), rng.gen_range(0..=s)),
            (far - rng.gen_range(0..=s), far - rng.gen_range(0..=s)),
        ]
    }

    /// Writes the two items into `canvas` (`self.canvas` squared values, which must be zero),
    /// taking the pixel-wise maximum where they overlap.
    pub fn compose(&self, canvas: &mut [f32], items: [&[u8]; 2], offsets: [(usize, usize); 2]) {
        debug_assert_eq!(canvas.len(), self.canvas * self.canvas);
        for (item, (row0, col0)) in items.into_iter().zip(offsets) {
            debug_assert_eq!(item.len(), self.item * self.item);
            for (r, src_row) in item.chunks_exact(self.item).enumerate() {
                let start = (row0 + r) * self.canvas + col0;
                let dst_row = &mut canvas[start..start + self.item];
                for (d, &s) in dst_row.iter_mut().zip(src_row) {
                    *d = d.max(self.values[s as usize]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn compose_places_items_and_keeps_the_maximum() {
        let layout = PairLayout::new(3, 2, 1, 1.0);
        let mut canvas = vec![0.0; 9];
        layout.compose(&mut canvas, [&[1, 2, 3, 9], &[5, 1, 1, 1]], [(0, 0), (1, 1)]);
        assert_eq!(canvas, vec![1.0, 2.0, 0.0, 3.0, 9.0, 1.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn offsets_stay_in_their_corners_and_cover_every_shift() {
        let layout = PairLayout::new(36, 28, 4, 1.0);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut seen = [[false; 9]; 2];
        for _ in 0..2000 {
            let [a, b] = layout.draw_offsets(&mut rng);
            for v in [a.0, a.1] {
                assert!(v <= 4);
                seen[0][v] = true;
            }
            for v in [b.0, b.1] {
                assert!((4..=8).contains(&v));
                seen[1][v] = true;
            }
        }
        assert!(seen[0][..5].iter().all(|&s| s));
        assert!(seen[1][4..].iter().all(|&s| s));
    }
}
