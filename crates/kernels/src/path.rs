//! Which code path the kernels take, forced per thread, and a record of the paths that ran.
//!
//! Several kernels have more than one implementation: every [`multiversion!`] kernel is
//! compiled for AVX-512, AVX2+FMA and the baseline ([`Isa`]); a convolution runs on Winograd's
//! algorithm, the direct kernel or im2col + GEMM ([`ConvPath`]); a GEMM on the packed AVX-512
//! engine or on `matrixmultiply` ([`GemmPath`]). Each picks the best that applies to the call
//! and the CPU. [`forced`] runs a closure with some of those choices made instead, for the
//! calling thread only (and for the tasks its kernels hand to the rayon pool), so a test can
//! force a path while the other tests of its binary run in parallel on theirs, and it returns
//! which paths ran:
//!
//! ```
//! use tapestry_kernels::elementwise::{self, Isa};
//! use tapestry_kernels::path::{forced, Force};
//! let x = vec![1.0f32; 1000];
//! let (total, ran) = forced(Force { isa: Some(Isa::Scalar), ..Force::NONE }, || elementwise::sum(&x));
//! assert_eq!(total, 1000.0);
//! assert_eq!(ran.isas(), vec![Isa::Scalar]);
//! ```
//!
//! A forced choice is a preference, never a risk: an instruction set the CPU lacks is lowered to
//! the best it has (AVX-512 to AVX2+FMA or the baseline), and a convolution or GEMM path that
//! cannot compute a call (a shape it does not take, or an instruction set it needs) leaves that
//! call to the path that always can, im2col + GEMM or `matrixmultiply`. [`Ran`] tells what
//! happened. Forcing wins over the process-wide defaults (`TAPESTRY_FORCE_SCALAR`,
//! `TAPESTRY_CONV_WINOGRAD`, `TAPESTRY_GEMM_PACKED`, see [`crate::tune`]).
//!
//! Cost on the hot path: while no thread is inside [`forced`], one relaxed atomic load per
//! kernel call (as a process-wide switch costs); otherwise a thread-local read per call, and a
//! write inside [`forced`].
//!
//! [`multiversion!`]: crate::simd

use std::cell::Cell;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicUsize, Ordering};

use crate::simd::{default_isa, detected_isa, Isa};

/// The algorithms of a convolution (see [`crate::conv`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvPath {
    /// Winograd F(2×2, 3×3) (AVX-512; 3x3, stride 1, channels in multiples of 16).
    Winograd,
    /// The direct kernel (AVX-512; stride 1, output channels in multiples of 16; for the weight
    /// gradient, layers of at least 64 taps).
    Direct,
    /// The direct weight gradient on rows (AVX-512; stride 1; layers of fewer than 64 taps).
    DirectRows,
    /// The direct kernels with the images of the batch as vector lanes (AVX-512; stride 1;
    /// layers whose output rows leave lanes of the rows layouts empty).
    ImageLanes,
    /// im2col + GEMM (everything; a 1x1 kernel at stride 1 without padding skips the im2col).
    Im2col,
}

/// The engines of a GEMM (see [`crate::gemm`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmPath {
    /// The packed AVX-512 GEMM (`gemm_packed.rs`).
    Packed,
    /// `matrixmultiply::sgemm`.
    Matrixmultiply,
}

/// Choices to force; `None` leaves the usual choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Force {
    /// The instruction set of the multiversioned kernels (lowered to what the CPU has).
    pub isa: Option<Isa>,
    /// The convolution algorithm, where it can compute the call (else im2col + GEMM).
    pub conv: Option<ConvPath>,
    /// The GEMM engine, where it can compute the call (else `matrixmultiply`).
    pub gemm: Option<GemmPath>,
}

impl Force {
    /// Nothing forced.
    pub const NONE: Force = Force { isa: None, conv: None, gemm: None };
}

/// The set of paths that ran, and how many tasks kernels handed to the rayon pool meanwhile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ran {
    paths: u16,
    pool_tasks: u32,
}

const ISAS: [Isa; 3] = [Isa::Scalar, Isa::Avx2Fma, Isa::Avx512];
const CONVS: [ConvPath; 5] = [
    ConvPath::Winograd,
    ConvPath::Direct,
    ConvPath::DirectRows,
    ConvPath::ImageLanes,
    ConvPath::Im2col,
];
const GEMMS: [GemmPath; 2] = [GemmPath::Packed, GemmPath::Matrixmultiply];

fn isa_bit(isa: Isa) -> u16 {
    1 << ISAS.iter().position(|&i| i == isa).expect("listed")
}

fn conv_bit(p: ConvPath) -> u16 {
    1 << (3 + CONVS.iter().position(|&c| c == p).expect("listed"))
}

fn gemm_bit(p: GemmPath) -> u16 {
    1 << (8 + GEMMS.iter().position(|&g| g == p).expect("listed"))
}

impl Ran {
    /// The instruction sets that multiversioned kernels ran on, from the baseline up.
    pub fn isas(self) -> Vec<Isa> {
        ISAS.into_iter().filter(|&i| self.paths & isa_bit(i) != 0).collect()
    }

    /// The convolution algorithms that ran, in [`ConvPath`]'s order.
    pub fn convs(self) -> Vec<ConvPath> {
        CONVS.into_iter().filter(|&c| self.paths & conv_bit(c) != 0).collect()
    }

    /// The GEMM engines that ran, in [`GemmPath`]'s order.
    pub fn gemms(self) -> Vec<GemmPath> {
        GEMMS.into_iter().filter(|&g| self.paths & gemm_bit(g) != 0).collect()
    }

    /// How many tasks the kernels handed to the rayon pool (each ran with the calling thread's
    /// choices, and what it ran is counted above).
    pub fn pool_tasks(self) -> u32 {
        self.pool_tasks
    }
}

/// One thread's choices and record. Outside [`forced`] (and the pool tasks it carries to),
/// `watched` is false and kernels neither look at the rest nor record anything.
#[derive(Clone, Copy)]
struct State {
    watched: bool,
    force: Force,
    ran: Ran,
}

const NOTHING_RAN: Ran = Ran { paths: 0, pool_tasks: 0 };
const UNWATCHED: State = State { watched: false, force: Force::NONE, ran: NOTHING_RAN };

thread_local! {
    static STATE: Cell<State> = const { Cell::new(UNWATCHED) };
}

/// How many threads are inside [`forced`] (or a task carried from one) now: while none is, a
/// kernel call reads this instead of the thread-local.
static WATCHED_THREADS: AtomicUsize = AtomicUsize::new(0);

impl Ran {
    fn merged(self, other: Ran) -> Ran {
        Ran { paths: self.paths | other.paths, pool_tasks: self.pool_tasks + other.pool_tasks }
    }
}

/// Runs `f` with the choices of `force` on this thread (and on the pool's threads for the tasks
/// its kernels fan out), then restores the choices this thread had. Returns `f`'s result and
/// the paths that ran inside it. Calls nest: the inner choices replace the outer ones, and
/// what ran inside also counts as run for the outer call.
pub fn forced<R>(force: Force, f: impl FnOnce() -> R) -> (R, Ran) {
    let _scope = Scope::enter(force);
    let out = f();
    (out, STATE.with(Cell::get).ran)
}

/// Sets a thread's choices until dropped (also on a panic), then restores the previous ones and
/// adds what ran to the previous record (and to `sink`, for a task on another thread).
struct Scope<'a> {
    saved: State,
    sink: Option<&'a Carry>,
}

impl<'a> Scope<'a> {
    fn enter(force: Force) -> Self {
        Scope::enter_into(force, None)
    }

    fn enter_into(force: Force, sink: Option<&'a Carry>) -> Self {
        WATCHED_THREADS.fetch_add(1, Ordering::Relaxed);
        let saved = STATE.with(|s| s.replace(State { watched: true, force, ran: NOTHING_RAN }));
        Scope { saved, sink }
    }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        let ran = STATE.with(Cell::get).ran;
        if let Some(sink) = self.sink {
            sink.paths.fetch_or(ran.paths, Ordering::Relaxed);
            sink.tasks.fetch_add(1 + ran.pool_tasks, Ordering::Relaxed);
        }
        STATE.with(|s| s.set(State { ran: self.saved.ran.merged(ran), ..self.saved }));
        WATCHED_THREADS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The calling thread's choices, to carry into the tasks a kernel hands to the rayon pool:
/// each task runs under [`Carry::enter`], and dropping the `Carry` adds what the tasks ran to
/// the calling thread's record.
pub(crate) struct Carry {
    /// The calling thread's choices, if it is inside [`forced`].
    force: Option<Force>,
    paths: AtomicU16,
    tasks: AtomicU32,
}

impl Carry {
    /// Captures this thread's choices.
    pub(crate) fn here() -> Self {
        Carry { force: watched(), paths: AtomicU16::new(0), tasks: AtomicU32::new(0) }
    }

    /// Applies the captured choices to the current thread until the guard is dropped (nothing,
    /// if the calling thread was not inside [`forced`]).
    pub(crate) fn enter(&self) -> Option<impl Drop + '_> {
        self.force.map(|force| Scope::enter_into(force, Some(self)))
    }
}

impl Drop for Carry {
    fn drop(&mut self) {
        if self.force.is_none() {
            return;
        }
        let ran = Ran {
            paths: self.paths.load(Ordering::Relaxed),
            pool_tasks: self.tasks.load(Ordering::Relaxed),
        };
        STATE.with(|s| {
            let mut st = s.get();
            st.ran = st.ran.merged(ran);
            s.set(st);
        });
    }
}

/// The instruction set a multiversioned kernel runs on now, recorded as run: this thread's
/// forced choice (lowered to what the CPU has), else the process-wide default.
#[inline]
pub(crate) fn isa_for_call() -> Isa {
    if WATCHED_THREADS.load(Ordering::Relaxed) == 0 {
        return default_isa();
    }
    STATE.with(|s| {
        let mut st = s.get();
        if !st.watched {
            return default_isa();
        }
        let isa = match st.force.isa {
            Some(isa) => isa.min(detected_isa()),
            None => default_isa(),
        };
        st.ran.paths |= isa_bit(isa);
        s.set(st);
        isa
    })
}

/// This thread's choices, `None` outside [`forced`] (read without the thread-local while no
/// thread is inside).
fn watched() -> Option<Force> {
    if WATCHED_THREADS.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let st = STATE.with(Cell::get);
    st.watched.then_some(st.force)
}

/// The instruction set kernels would run on now (nothing recorded).
pub(crate) fn current_isa() -> Isa {
    match watched().and_then(|f| f.isa) {
        Some(isa) => isa.min(detected_isa()),
        None => default_isa(),
    }
}

/// This thread's forced convolution algorithm, if any.
pub(crate) fn forced_conv() -> Option<ConvPath> {
    watched().and_then(|f| f.conv)
}

/// This thread's forced GEMM engine, if any.
pub(crate) fn forced_gemm() -> Option<GemmPath> {
    watched().and_then(|f| f.gemm)
}

/// Records that a convolution ran on `path`.
pub(crate) fn record_conv(path: ConvPath) {
    record(conv_bit(path));
}

/// Records that a GEMM ran on `path`.
pub(crate) fn record_gemm(path: GemmPath) {
    record(gemm_bit(path));
}

fn record(bit: u16) {
    if WATCHED_THREADS.load(Ordering::Relaxed) == 0 {
        return;
    }
    STATE.with(|s| {
        let mut st = s.get();
        if st.watched {
            st.ran.paths |= bit;
            s.set(st);
        }
    });
}
