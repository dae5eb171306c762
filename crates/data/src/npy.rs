//! `.npy` arrays, the format `np.save` writes and `np.load` reads, through the `ndarray-npy`
//! crate.

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::WriteNpyExt;

/// The bytes of a `.npy` file holding `values` (row-major) as a little-endian float32 array
/// of `shape`.
///
/// # Panics
/// If `values` does not hold `shape`'s number of elements.
pub fn f32_npy_bytes(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let array =
        ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).expect("the values fill the shape");
    let mut bytes = Vec::new();
    array.write_npy(&mut bytes).expect("writing to memory cannot fail");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray_npy::ReadNpyExt;

    #[test]
    fn written_arrays_read_back_with_their_shape_and_values() {
        let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        let bytes = f32_npy_bytes(&[2, 3, 4], &values);
        assert!(bytes.starts_with(b"\x93NUMPY"));
        let back = ArrayD::<f32>::read_npy(&bytes[..]).unwrap();
        assert_eq!(back.shape(), &[2, 3, 4]);
        assert_eq!(back.iter().copied().collect::<Vec<_>>(), values);
    }
}
