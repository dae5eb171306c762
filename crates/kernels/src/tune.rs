//! Every tunable of the kernels in one place.
//!
//! Each value has a default measured on the development machine (2 cores of an AVX-512 Xeon) and
//! can be overridden by an environment variable, read once, the first time any kernel asks:
//!
//! | field | variable | default |
//! | --- | --- | --- |
//! | [`Tunables::gemm_par_min_flops`] | `TAPESTRY_GEMM_PAR_MIN_FLOPS` | 2·128³ |
//! | [`Tunables::gemm_block_align`] | `TAPESTRY_GEMM_BLOCK_ALIGN` | 16 |
//! | [`Tunables::gemm_packed`] | `TAPESTRY_GEMM_PACKED` | 1 (0: matrixmultiply instead) |
//! | [`Tunables::gemm_kc`] | `TAPESTRY_GEMM_KC` | 256 |
//! | [`Tunables::gemm_mc`] | `TAPESTRY_GEMM_MC` | 120 |
//! | [`Tunables::gemm_nc`] | `TAPESTRY_GEMM_NC` | 1024 |
//! | [`Tunables::conv_par_min_flops`] | `TAPESTRY_CONV_PAR_MIN_FLOPS` | 2·64³ |
//! | [`Tunables::conv_dw_group_cols`] | `TAPESTRY_CONV_DW_GROUP_COLS` | 2048 |
//! | [`Tunables::conv_winograd`] | `TAPESTRY_CONV_WINOGRAD` | 1 (0: the direct kernel instead) |
//! | [`Tunables::conv_winograd_tiles`] | `TAPESTRY_CONV_WINOGRAD_TILES` | 196 |
//! | [`Tunables::conv_rows_compact`] | `TAPESTRY_CONV_ROWS_COMPACT` | 1 (0: padded rows always) |
//! | [`Tunables::pool_par_min_elems`] | `TAPESTRY_POOL_PAR_MIN_ELEMS` | 2¹⁶ |
//! | [`Tunables::elementwise_par_min_len`] | `TAPESTRY_ELEMENTWISE_PAR_MIN_LEN` | 2¹⁸ |
//! | [`Tunables::elementwise_chunk`] | `TAPESTRY_ELEMENTWISE_CHUNK` | 2¹⁴ |
//! | [`Tunables::buffer_pool_min_len`] | `TAPESTRY_BUFFER_POOL_MIN_LEN` | 2¹⁴ |
//! | [`Tunables::buffer_pool_max_bytes`] | `TAPESTRY_BUFFER_POOL_MAX_BYTES` | 2³⁰ (1 GiB; 0 turns the pool off) |
//!
//! A variable that does not parse as an unsigned integer is ignored (the default stays).

use std::sync::OnceLock;

/// The kernels' tunables. Obtain the process-wide values with [`tunables`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tunables {
    /// GEMM problems with fewer FLOPs (2·m·n·k) than this run on one thread.
    pub gemm_par_min_flops: usize,
    /// Rows (or columns) of C given to one rayon task are a multiple of this, so that blocks
    /// line up with the micro-kernel's tile.
    pub gemm_block_align: usize,
    /// With AVX-512, 1 runs GEMM on our packed GEMM (`gemm_packed.rs`: a 12×32 or 12×16
    /// micro-kernel, one block of C per thread); 0 runs it on `matrixmultiply`, as without
    /// AVX-512.
    pub gemm_packed: usize,
    /// Packed GEMM: values of `p` per block (the panel of B a micro-kernel walks is `kc`×32
    /// floats and should stay in L1; A is read in place).
    pub gemm_kc: usize,
    /// Packed GEMM: at most this many rows of C per work item (rounded down to a multiple of 12).
    pub gemm_mc: usize,
    /// Packed GEMM: columns of B per packed block (rounded down to a multiple of 32); a block of
    /// `kc`×`nc` floats, two of them in flight, should stay in L2.
    pub gemm_nc: usize,
    /// Convolutions with fewer FLOPs than this run on one thread.
    pub conv_par_min_flops: usize,
    /// The weight gradient lays the patch matrices of several images side by side, up to about
    /// this many columns (output pixels), and multiplies them in one GEMM.
    pub conv_dw_group_cols: usize,
    /// With AVX-512, 1 runs 3x3 convolutions at stride 1 whose channels come in multiples of 16
    /// by Winograd's F(2×2, 3×3) (`conv_winograd.rs`); 0 runs them on the direct kernel.
    pub conv_winograd: usize,
    /// Winograd convolution: about this many 2×2 output tiles per block of images at 96
    /// channels in and out together, fewer in proportion for more channels (rows of the block's
    /// 16 GEMMs; the block's transformed input and output should stay in L2). The weight
    /// gradient takes blocks of half as many.
    pub conv_winograd_tiles: usize,
    /// With 1, the rows kernels (`conv_direct.rs`) lay out the pixels of layers whose output
    /// rows fill their vectors better in compact rows, read and written in place; 0 keeps every
    /// layer in padded rows.
    pub conv_rows_compact: usize,
    /// Pooling over fewer input elements than this runs on one thread.
    pub pool_par_min_elems: usize,
    /// Elementwise kernels over fewer elements than this run on one thread.
    pub elementwise_par_min_len: usize,
    /// Elements per rayon task in elementwise kernels, and per partial sum in reductions (this
    /// fixes the order of reductions, independent of the thread count).
    pub elementwise_chunk: usize,
    /// Buffers of at least this many elements are recycled by [`crate::buffer`]; smaller ones
    /// are left to the system allocator, which recycles them well on its own.
    pub buffer_pool_min_len: usize,
    /// The most bytes [`crate::buffer`] keeps for reuse; 0 turns the pool off.
    pub buffer_pool_max_bytes: usize,
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            gemm_par_min_flops: 2 * 128 * 128 * 128,
            gemm_block_align: 16,
            gemm_packed: 1,
            gemm_kc: 256,
            gemm_mc: 120,
            gemm_nc: 1024,
            conv_par_min_flops: 2 * 64 * 64 * 64,
            conv_dw_group_cols: 2048,
            conv_winograd: 1,
            conv_winograd_tiles: 196,
            conv_rows_compact: 1,
            pool_par_min_elems: 1 << 16,
            elementwise_par_min_len: 1 << 18,
            elementwise_chunk: 1 << 14,
            buffer_pool_min_len: 1 << 14,
            buffer_pool_max_bytes: 1 << 30,
        }
    }
}

impl Tunables {
    /// The defaults with every `TAPESTRY_*` override from the environment applied.
    pub fn from_env() -> Self {
        let mut t = Tunables::default();
        let read = |name: &str, slot: &mut usize| {
            if let Some(v) = std::env::var(name).ok().and_then(|s| s.trim().parse::<usize>().ok()) {
                *slot = v;
            }
        };
        read("TAPESTRY_GEMM_PAR_MIN_FLOPS", &mut t.gemm_par_min_flops);
        read("TAPESTRY_GEMM_BLOCK_ALIGN", &mut t.gemm_block_align);
        read("TAPESTRY_GEMM_PACKED", &mut t.gemm_packed);
        read("TAPESTRY_GEMM_KC", &mut t.gemm_kc);
        read("TAPESTRY_GEMM_MC", &mut t.gemm_mc);
        read("TAPESTRY_GEMM_NC", &mut t.gemm_nc);
        read("TAPESTRY_CONV_PAR_MIN_FLOPS", &mut t.conv_par_min_flops);
        read("TAPESTRY_CONV_DW_GROUP_COLS", &mut t.conv_dw_group_cols);
        read("TAPESTRY_CONV_WINOGRAD", &mut t.conv_winograd);
        read("TAPESTRY_CONV_WINOGRAD_TILES", &mut t.conv_winograd_tiles);
        read("TAPESTRY_CONV_ROWS_COMPACT", &mut t.conv_rows_compact);
        read("TAPESTRY_POOL_PAR_MIN_ELEMS", &mut t.pool_par_min_elems);
        read("TAPESTRY_ELEMENTWISE_PAR_MIN_LEN", &mut t.elementwise_par_min_len);
        read("TAPESTRY_ELEMENTWISE_CHUNK", &mut t.elementwise_chunk);
        read("TAPESTRY_BUFFER_POOL_MIN_LEN", &mut t.buffer_pool_min_len);
        read("TAPESTRY_BUFFER_POOL_MAX_BYTES", &mut t.buffer_pool_max_bytes);
        t.gemm_block_align = t.gemm_block_align.max(1);
        t.gemm_kc = t.gemm_kc.max(1);
        t.elementwise_chunk = t.elementwise_chunk.max(1);
        t
    }
}

/// The process-wide tunables: the defaults plus environment overrides, read on first use.
pub fn tunables() -> &'static Tunables {
    static TUNABLES: OnceLock<Tunables> = OnceLock::new();
    TUNABLES.get_or_init(Tunables::from_env)
}
