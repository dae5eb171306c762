//! Small helpers shared by the kernels for rayon parallelism.

/// True when the caller may fan work out over the rayon pool: we are not already inside a rayon
/// worker (no nested parallelism) and the pool has more than one thread.
pub(crate) fn may_parallelize() -> bool {
    rayon::current_thread_index().is_none() && rayon::current_num_threads() > 1
}

/// Runs `f(i)` for every `i` in `0..tasks` and returns when all are done: task 0 on the calling
/// thread, the others on the rayon pool.
///
/// A parallel iterator started from outside the pool hands all of its work to the pool and puts
/// the caller to sleep until a worker wakes it; here the caller works on its share at once and
/// only waits if a worker is still busy. For a GEMM of 256³ (about 110 µs a half on one core)
/// the wake-ups are a large part of the gain.
pub(crate) fn fork(tasks: usize, f: impl Fn(usize) + Sync) {
    if tasks == 0 {
        return;
    }
    let f = &f;
    rayon::in_place_scope(|s| {
        for i in 1..tasks {
            s.spawn(move |_| f(i));
        }
        f(0);
    });
}

/// A raw pointer that may cross threads. Users promise that concurrent accesses through copies of
/// it touch disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub(crate) *mut T);

// SAFETY: `SendPtr` is only a carrier; every use site guarantees that threads write disjoint
// elements of a buffer that outlives the parallel region.
unsafe impl<T: Send> Send for SendPtr<T> {}
// SAFETY: as above; shared copies are only used to derive pointers to disjoint elements.
unsafe impl<T: Send> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer. (A method, so that closures capture the whole `Send` wrapper.)
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// A read-only raw pointer that may cross threads.
#[derive(Clone, Copy)]
pub(crate) struct SendConstPtr<T>(pub(crate) *const T);

// SAFETY: the pointee is only read while the borrow it came from is alive.
unsafe impl<T: Sync> Send for SendConstPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for SendConstPtr<T> {}

impl<T> SendConstPtr<T> {
    /// The pointer. (A method, so that closures capture the whole `Send` wrapper.)
    pub(crate) fn get(self) -> *const T {
        self.0
    }
}
