//! Small helpers shared by the kernels for rayon parallelism.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::path::Carry;

thread_local! {
    /// Set while this thread, not a rayon worker, runs the first task of a [`fork`].
    static IN_FORK: Cell<bool> = const { Cell::new(false) };
}

/// True when the caller may fan work out over the rayon pool: the pool has more than one thread
/// and we are not already inside a parallel region, neither on a rayon worker nor in the task a
/// [`fork`] runs on its calling thread (no nested parallelism).
pub(crate) fn may_parallelize() -> bool {
    rayon::current_thread_index().is_none()
        && !IN_FORK.with(Cell::get)
        && rayon::current_num_threads() > 1
}

/// Runs `f(i)` for every `i` in `0..tasks` and returns when all are done: task 0 on the calling
/// thread, the others on the rayon pool.
///
/// Two things make this faster than a parallel iterator for work of tens of microseconds,
/// measured on the 2-core development machine with `cargo run --release -p tapestry-kernels
/// --example fork_probe`:
///
/// - A parallel iterator started from outside the pool hands all of its work to the pool and
///   puts the caller to sleep; here the caller works on its share at once.
/// - When its share is done, the caller spins until the other tasks report that they are done,
///   instead of going to sleep until rayon wakes it. A fork and join of an empty task took 20 µs
///   (median) with rayon's sleep and wake, 1.5 µs with the spin.
///
/// The spin yields its time slice after a while, so a task that is slow to start (a rayon worker
/// asleep takes 50–70 µs to wake on that machine) does not burn the caller's core.
pub(crate) fn fork(tasks: usize, f: impl Fn(usize) + Sync) {
    if tasks == 0 {
        return;
    }
    let f = &f;
    let done = AtomicUsize::new(0);
    let done = &done;
    // The tasks on the pool run with the paths the calling thread forces, if any.
    let carry = Carry::here();
    let carry = &carry;
    rayon::in_place_scope(|s| {
        for i in 1..tasks {
            s.spawn(move |_| {
                // Counted on drop, so that a panicking task still releases the spin below (the
                // scope then passes the panic on).
                let _done = CountOnDrop(done);
                let _paths = carry.enter();
                f(i);
            });
        }
        {
            // Task 0 is part of the parallel region: a kernel it calls must not fork again (its
            // tasks would queue behind the busy workers while this thread waited for them).
            let _in_fork = InFork::enter();
            f(0);
        }
        let mut spins = 0u32;
        while done.load(Ordering::Acquire) < tasks - 1 {
            if spins < 1 << 14 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    });
}

/// Calls `f(state, range)` for consecutive ranges of `block` items of `0..items` (the last may
/// be shorter), in parallel through [`fork`]: one task per thread of the pool, each with its own
/// `state` from `init` (scratch space), taking ranges from a shared counter, so that a thread on
/// a busy core takes fewer (the caller works too and joins by spinning). What `f` computes on a
/// range must not depend on which thread runs it.
pub(crate) fn for_each_range<S>(
    items: usize,
    block: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, std::ops::Range<usize>) + Sync,
) {
    let block = block.max(1);
    let ranges = items.div_ceil(block);
    let next = AtomicUsize::new(0);
    fork(rayon::current_num_threads().clamp(1, ranges.max(1)), |_| {
        let mut state = init();
        loop {
            let r = next.fetch_add(1, Ordering::Relaxed);
            if r >= ranges {
                break;
            }
            f(&mut state, r * block..((r + 1) * block).min(items));
        }
    });
}

/// [`for_each_range`] over the `piece`-long pieces of `out`, `block` pieces at a time: calls
/// `f(i, piece_i)` for every piece `i` (the last may be shorter).
pub(crate) fn for_each_piece_mut<T: Send>(
    out: &mut [T],
    piece: usize,
    block: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let piece = piece.max(1);
    let len = out.len();
    let ptr = SendPtr(out.as_mut_ptr());
    for_each_range(
        len.div_ceil(piece),
        block,
        || (),
        |(), range| {
            for i in range {
                let (start, end) = (i * piece, ((i + 1) * piece).min(len));
                // SAFETY: pieces are disjoint ranges of `out`, each visited once, and `out` stays
                // mutably borrowed until `for_each_range` returns.
                f(i, unsafe { std::slice::from_raw_parts_mut(ptr.get().add(start), end - start) });
            }
        },
    );
}

/// Calls `f(i, piece)` for each `chunk`-long piece `i` of `out` (the last may be shorter): the
/// pieces are split into one contiguous run per thread of the pool, run through
/// [`for_each_piece_mut`] (so the caller takes a run and joins by spinning). Which thread
/// handles a piece does not change what `f` computes on it.
pub(crate) fn for_each_chunk_mut(
    out: &mut [f32],
    chunk: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    let pieces = out.len().div_ceil(chunk.max(1));
    let per = pieces.div_ceil(rayon::current_num_threads().clamp(1, pieces.max(1)));
    for_each_piece_mut(out, chunk, per, f);
}

/// Marks this thread as inside a fork until dropped (also when the task panics), restoring the
/// mark it had before.
struct InFork(bool);

impl InFork {
    fn enter() -> Self {
        InFork(IN_FORK.with(|f| f.replace(true)))
    }
}

impl Drop for InFork {
    fn drop(&mut self) {
        IN_FORK.with(|f| f.set(self.0));
    }
}

/// Adds one to a counter when dropped.
struct CountOnDrop<'a>(&'a AtomicUsize);

impl Drop for CountOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// A raw pointer that may cross threads. Users promise that concurrent accesses through copies of
/// it touch disjoint elements.
pub(crate) struct SendPtr<T>(pub(crate) *mut T);

// By hand: derived, they would ask `T: Copy`, and a pointer copies whatever it points to.
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SendPtr<T> {}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_task_of_a_fork_may_fork_again() {
        // Task 0 runs on the calling thread, which is not a rayon worker; it must not fan out
        // either, or a kernel it calls would queue work behind the busy workers and wait.
        let flags: Vec<std::sync::Mutex<Option<bool>>> =
            (0..4).map(|_| std::sync::Mutex::new(None)).collect();
        fork(flags.len(), |i| *flags[i].lock().unwrap() = Some(may_parallelize()));
        for (i, f) in flags.iter().enumerate() {
            assert_eq!(*f.lock().unwrap(), Some(false), "task {i}");
        }
        // And the flag does not outlive the fork.
        assert_eq!(may_parallelize(), rayon::current_num_threads() > 1);
    }
}
