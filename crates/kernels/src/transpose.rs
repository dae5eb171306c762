//! In-register transposes on AVX-512, for the kernels that must turn rows of a matrix into
//! vectors across rows: the direct convolution's output tiles (pixel vectors to channel rows), its
//! weight gradient's channels-last copy of `dy`, and the packing of a column-major B in GEMM.

/// The transpose of an 8 × 16 block held in 8 vectors, as 8 vectors: if `r[j]` holds
/// `M[j][0..16]`, output `m` holds `M[0..8][m]` in its low half and `M[0..8][m + 8]` in its high
/// half. Applied twice it gives back its input (row `m` of the output, read as the block, is
/// transposed back), so it also turns 16 rows of 8 values, paired as `(m, m + 8)`, into 8
/// vectors of 16.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) fn transpose_8x16(r: [std::arch::x86_64::__m512; 8]) -> [std::arch::x86_64::__m512; 8] {
    use std::arch::x86_64::*;
    // In each 128-bit lane L, with a, b two inputs: [a[4L], b[4L], a[4L+1], b[4L+1]] and
    // [a[4L+2], b[4L+2], a[4L+3], b[4L+3]].
    let (u01l, u01h) = (_mm512_unpacklo_ps(r[0], r[1]), _mm512_unpackhi_ps(r[0], r[1]));
    let (u23l, u23h) = (_mm512_unpacklo_ps(r[2], r[3]), _mm512_unpackhi_ps(r[2], r[3]));
    let (u45l, u45h) = (_mm512_unpacklo_ps(r[4], r[5]), _mm512_unpackhi_ps(r[4], r[5]));
    let (u67l, u67h) = (_mm512_unpacklo_ps(r[6], r[7]), _mm512_unpackhi_ps(r[6], r[7]));
    // q[e] lane L = M[0..4][4L + e]; s[e] lane L = M[4..8][4L + e].
    let q = [
        _mm512_shuffle_ps::<0x44>(u01l, u23l),
        _mm512_shuffle_ps::<0xEE>(u01l, u23l),
        _mm512_shuffle_ps::<0x44>(u01h, u23h),
        _mm512_shuffle_ps::<0xEE>(u01h, u23h),
    ];
    let s = [
        _mm512_shuffle_ps::<0x44>(u45l, u67l),
        _mm512_shuffle_ps::<0xEE>(u45l, u67l),
        _mm512_shuffle_ps::<0x44>(u45h, u67h),
        _mm512_shuffle_ps::<0xEE>(u45h, u67h),
    ];
    let mut out = [_mm512_setzero_ps(); 8];
    for e in 0..4 {
        // [q lane L, q lane L+2, s lane L, s lane L+2], then the lanes reordered to
        // [q L, s L, q L+2, s L+2]: column 4L + e in the low half, 4L + e + 8 in the high.
        let t0 = _mm512_shuffle_f32x4::<0x88>(q[e], s[e]);
        let t1 = _mm512_shuffle_f32x4::<0xDD>(q[e], s[e]);
        out[e] = _mm512_shuffle_f32x4::<0xD8>(t0, t0);
        out[4 + e] = _mm512_shuffle_f32x4::<0xD8>(t1, t1);
    }
    out
}

/// Copies `rows ≤ 16` rows of `len` floats (row `r` at `src + r·stride`) into vectors across
/// the rows: `dst[q·dst_stride + r] = row_r[q]` for every `q < len` and `r < 16`, with zeros for
/// `r ≥ rows`. Works through blocks of 16 rows by 8 values with [`transpose_8x16`].
///
/// # Safety
/// AVX-512F must be available; rows `0..rows` must be readable for `len` floats each, and `dst`
/// writable for 16 floats at each of `q·dst_stride`, `q < len`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn rows_to_lanes(
    src: *const f32,
    stride: usize,
    rows: usize,
    len: usize,
    dst: *mut f32,
    dst_stride: usize,
) {
    // SAFETY: the caller's guarantees; all 16 lanes are stored.
    unsafe { transpose_rows(src, stride, rows, len, dst, dst_stride, u16::MAX) }
}

/// The body of [`rows_to_lanes`], storing the lanes of `store`.
///
/// # Safety
/// As [`rows_to_lanes`], for the lanes of `store`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_rows(
    src: *const f32,
    stride: usize,
    rows: usize,
    len: usize,
    dst: *mut f32,
    dst_stride: usize,
    store: u16,
) {
    use std::arch::x86_64::*;
    debug_assert!(rows <= 16);
    for q0 in (0..len).step_by(8) {
        let n = 8.min(len - q0);
        let lo: __mmask16 = (1u16 << n) - 1;
        let mut r = [_mm512_setzero_ps(); 8];
        for (m, rm) in r.iter_mut().enumerate() {
            // Row m in the low half, row m + 8 in the high half; a row past `rows` is not read
            // (its mask is empty, and the pointer is never dereferenced).
            let (mlo, mhi) =
                (if m < rows { lo } else { 0 }, if m + 8 < rows { lo << 8 } else { 0 });
            // SAFETY: the masked lanes read values q0..q0 + n (n ≤ len − q0) of rows below
            // `rows`, which the caller guarantees readable. The high half is loaded from 8 floats
            // before row m + 8's value q0, so its lane 8 + i is value q0 + i of that row.
            unsafe {
                let low = _mm512_maskz_loadu_ps(mlo, src.wrapping_add(m * stride + q0));
                *rm = _mm512_mask_loadu_ps(
                    low,
                    mhi,
                    src.wrapping_add((m + 8) * stride + q0).wrapping_sub(8),
                );
            }
        }
        for (j, v) in transpose_8x16(r).into_iter().take(n).enumerate() {
            // SAFETY: q0 + j < len: the lanes of `store` at (q0 + j)·dst_stride are writable.
            unsafe { _mm512_mask_storeu_ps(dst.add((q0 + j) * dst_stride), store, v) };
        }
    }
}

/// [`rows_to_lanes`] that writes only lanes `r < rows`: `dst[q·dst_stride + r] = row_r[q]`,
/// the other lanes untouched. For a transpose into a matrix whose rows are not a multiple of 16
/// long (the Winograd convolution's channels-last output back to NCHW).
///
/// # Safety
/// As [`rows_to_lanes`], except that only `rows` floats at each `q·dst_stride` need be writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn rows_to_lanes_masked(
    src: *const f32,
    stride: usize,
    rows: usize,
    len: usize,
    dst: *mut f32,
    dst_stride: usize,
) {
    // SAFETY: the caller's guarantees, with the store mask of `rows` lanes.
    unsafe { transpose_rows(src, stride, rows, len, dst, dst_stride, ((1u32 << rows) - 1) as u16) }
}

/// Without AVX-512 the kernels that call this never run.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn rows_to_lanes(
    _src: *const f32,
    _stride: usize,
    _rows: usize,
    _len: usize,
    _dst: *mut f32,
    _dst_stride: usize,
) {
    unreachable!("the transposes need AVX-512")
}

/// Without AVX-512 the kernels that call this never run.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn rows_to_lanes_masked(
    _src: *const f32,
    _stride: usize,
    _rows: usize,
    _len: usize,
    _dst: *mut f32,
    _dst_stride: usize,
) {
    unreachable!("the transposes need AVX-512")
}
