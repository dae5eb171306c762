//! GEMM against a naive f64 reference over many shapes, strides, alpha and beta.

mod common;
use common::{assert_close, random_vec};
use tapestry_kernels::gemm::sgemm;

/// The layouts an operand can take: row-major, column-major (a transpose), or row-major with a
/// padded leading dimension.
#[derive(Clone, Copy, Debug)]
enum Layout {
    RowMajor,
    ColMajor,
    Padded,
    /// Every other element of every row: neither stride is 1.
    Strided,
}

/// Strides and buffer length for a `rows`×`cols` operand in `layout`.
fn strides(rows: usize, cols: usize, layout: Layout) -> (isize, isize, usize) {
    match layout {
        Layout::RowMajor => (cols as isize, 1, rows * cols),
        Layout::ColMajor => (1, rows as isize, rows * cols),
        Layout::Padded => ((cols + 3) as isize, 1, rows * (cols + 3)),
        Layout::Strided => ((2 * cols) as isize, 2, rows * cols * 2),
    }
}

#[allow(clippy::too_many_arguments)]
fn reference(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    (rsa, csa): (isize, isize),
    b: &[f32],
    (rsb, csb): (isize, isize),
    beta: f32,
    c: &[f32],
    (rsc, csc): (isize, isize),
) -> Vec<f64> {
    let mut out: Vec<f64> = c.iter().map(|&v| v as f64).collect();
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += a[(i as isize * rsa + p as isize * csa) as usize] as f64
                    * b[(p as isize * rsb + j as isize * csb) as usize] as f64;
            }
            let idx = (i as isize * rsc + j as isize * csc) as usize;
            let old = if beta == 0.0 { 0.0 } else { beta as f64 * c[idx] as f64 };
            out[idx] = alpha as f64 * s + old;
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn check(m: usize, k: usize, n: usize, la: Layout, lb: Layout, lc: Layout, alpha: f32, beta: f32) {
    let (rsa, csa, na) = strides(m, k, la);
    let (rsb, csb, nb) = strides(k, n, lb);
    let (rsc, csc, nc) = strides(m, n, lc);
    let a = random_vec(na, (m * 1000 + k) as u64);
    let b = random_vec(nb, (k * 1000 + n) as u64);
    let mut c = random_vec(nc, (m * 7 + n) as u64);
    if beta == 0.0 {
        // C must not be read when beta is zero.
        for (i, v) in c.iter_mut().enumerate() {
            if i % 3 == 0 {
                *v = f32::NAN;
            }
        }
    }
    let want = reference(m, k, n, alpha, &a, (rsa, csa), &b, (rsb, csb), beta, &c, (rsc, csc));
    sgemm(m, k, n, alpha, &a, rsa, csa, &b, rsb, csb, beta, &mut c, rsc, csc);
    // Padding cells of C (never written) keep their value; compare only addressed elements.
    let mut got = Vec::new();
    let mut exp = Vec::new();
    for i in 0..m {
        for j in 0..n {
            let idx = (i as isize * rsc + j as isize * csc) as usize;
            got.push(c[idx]);
            exp.push(want[idx]);
        }
    }
    let tol = 4.0 * f32::EPSILON as f64 * (k as f64).sqrt().max(1.0) * 4.0;
    assert_close(
        &got,
        &exp,
        tol,
        &format!("sgemm {m}x{k}x{n} {la:?}/{lb:?}/{lc:?} a={alpha} b={beta}"),
    );
}

#[test]
fn small_and_odd_shapes_all_layouts() {
    let sizes = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33];
    let layouts = [Layout::RowMajor, Layout::ColMajor, Layout::Padded];
    for (t, &m) in sizes.iter().enumerate() {
        for &k in &[1, 5, 16, 17] {
            for &n in &sizes {
                let la = layouts[t % 3];
                let lb = layouts[(t + n) % 3];
                let lc = layouts[(t + k) % 3];
                check(m, k, n, la, lb, lc, 1.0, 0.0);
                check(m, k, n, lb, lc, la, -0.5, 0.75);
            }
        }
    }
}

#[test]
fn transposes_of_both_operands() {
    for &(m, k, n) in &[(64, 64, 64), (10, 256, 30), (65, 33, 129), (128, 300, 10)] {
        for la in [Layout::RowMajor, Layout::ColMajor] {
            for lb in [Layout::RowMajor, Layout::ColMajor] {
                check(m, k, n, la, lb, Layout::RowMajor, 1.0, 0.0);
                check(m, k, n, la, lb, Layout::ColMajor, 2.0, 1.0);
            }
        }
    }
}

#[test]
fn large_problems_take_the_parallel_path_correctly() {
    // Above the default parallel threshold, splitting rows (m >= n) and columns (n > m).
    check(300, 200, 257, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor, 1.0, 0.0);
    check(130, 257, 400, Layout::ColMajor, Layout::RowMajor, Layout::RowMajor, 1.0, 0.5);
    check(129, 300, 331, Layout::RowMajor, Layout::ColMajor, Layout::ColMajor, 0.5, 1.0);
}

#[test]
fn many_blocks_of_p_and_columns_with_beta() {
    // The packed GEMM (AVX-512) packs B in blocks of 256 values of p by 1024 columns into one
    // buffer per thread: here 3 blocks of p times 2 blocks of columns, with partial tiles at both
    // edges, so that later blocks of p add to C in order and the buffer is refilled between
    // blocks. Elsewhere the same shapes check the matrixmultiply path.
    check(50, 600, 1100, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor, 1.0, 0.5);
    check(37, 513, 1030, Layout::ColMajor, Layout::ColMajor, Layout::Padded, -1.0, 0.0);
    check(1030, 300, 45, Layout::RowMajor, Layout::Padded, Layout::ColMajor, 0.5, 1.0);
    // Neither stride of any operand is 1: element-wise packing of B and stores of C.
    check(40, 300, 70, Layout::Strided, Layout::Strided, Layout::Strided, 1.0, 0.0);
    check(40, 300, 70, Layout::Strided, Layout::Strided, Layout::Strided, -0.5, 2.0);
}

#[test]
fn narrow_products_with_long_k_both_orientations_and_in_parallel() {
    // C with at most 32 columns (or rows), as in classifier heads: on AVX-512 panels of one or
    // two vectors of columns, tiles of 1 to 12 rows, any layout; large enough ones in parallel.
    for &(m, k, n) in &[(1, 64, 1), (13, 65, 16), (25, 100, 17), (128, 256, 10), (37, 70, 32)] {
        for (la, lb) in [(Layout::RowMajor, Layout::ColMajor), (Layout::ColMajor, Layout::Padded)] {
            check(m, k, n, la, lb, Layout::RowMajor, 1.0, 0.0);
            check(n, k, m, lb, la, Layout::ColMajor, -0.5, 0.25);
            check(m, k, n, la, lb, Layout::Padded, 2.0, 1.0);
        }
    }
    check(3000, 300, 10, Layout::RowMajor, Layout::ColMajor, Layout::RowMajor, 1.0, 0.0);
    check(20, 300, 3001, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor, 1.0, 0.5);
}

#[test]
fn k_zero_scales_c_by_beta() {
    let mut c = vec![2.0f32; 6];
    sgemm(2, 0, 3, 1.0, &[], 0, 1, &[], 3, 1, 0.5, &mut c, 3, 1);
    assert_eq!(c, vec![1.0; 6]);
    let mut c = vec![f32::NAN; 6];
    sgemm(2, 0, 3, 1.0, &[], 0, 1, &[], 3, 1, 0.0, &mut c, 3, 1);
    assert_eq!(c, vec![0.0; 6]);
}

#[test]
fn parallel_result_is_bitwise_equal_to_single_threaded() {
    let (m, k, n) = (256, 600, 1100);
    let a = random_vec(m * k, 1);
    let b = random_vec(k * n, 2);
    let mut par = vec![0.0f32; m * n];
    sgemm(m, k, n, 1.0, &a, k as isize, 1, &b, n as isize, 1, 0.0, &mut par, n as isize, 1);
    // Inside a rayon worker the kernel runs single-threaded.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let mut ser = vec![0.0f32; m * n];
    pool.install(|| {
        sgemm(m, k, n, 1.0, &a, k as isize, 1, &b, n as isize, 1, 0.0, &mut ser, n as isize, 1)
    });
    assert!(par.iter().zip(&ser).all(|(x, y)| x.to_bits() == y.to_bits()));
}

#[test]
#[should_panic(expected = "but its slice has")]
fn short_buffer_panics() {
    let a = vec![0.0f32; 5];
    let b = vec![0.0f32; 6];
    let mut c = vec![0.0f32; 4];
    sgemm(2, 3, 2, 1.0, &a, 3, 1, &b, 2, 1, 0.0, &mut c, 2, 1);
}

#[test]
fn both_engines_each_forced_on_this_thread() {
    // The packed engine needs AVX-512 (elsewhere the call takes matrixmultiply); both are
    // checked on the same shapes, serial and parallel, every layout of A and B.
    use tapestry_kernels::elementwise::{detected_isa, Isa};
    use tapestry_kernels::path::{forced, Force, GemmPath};
    for engine in [GemmPath::Packed, GemmPath::Matrixmultiply] {
        let want = if engine == GemmPath::Packed && detected_isa() != Isa::Avx512 {
            GemmPath::Matrixmultiply
        } else {
            engine
        };
        let force = Force { gemm: Some(engine), ..Force::NONE };
        for &(m, k, n) in &[(7, 17, 33), (33, 5, 9), (300, 200, 257), (130, 257, 400)] {
            for (la, lb) in
                [(Layout::RowMajor, Layout::ColMajor), (Layout::ColMajor, Layout::RowMajor)]
            {
                let ((), ran) =
                    forced(force, || check(m, k, n, la, lb, Layout::RowMajor, 1.0, 0.5));
                assert_eq!(ran.gemms(), vec![want], "{engine:?} {m}x{k}x{n}");
            }
        }
    }
}
