//! A process-wide pool of large `f32` buffers.
//!
//! A training step allocates the same large buffers every step: activations, cotangents, patch
//! matrices. Taken fresh from the system allocator, each one is new memory from the kernel, and
//! the first write to every page of it is a page fault: on the reference MTL model that costs
//! about a quarter of the step. The pool keeps freed buffers of at least
//! [`Tunables::buffer_pool_min_len`](crate::tune::Tunables::buffer_pool_min_len) elements, up to
//! [`Tunables::buffer_pool_max_bytes`](crate::tune::Tunables::buffer_pool_max_bytes) in all, and hands them out
//! again for the same length, so that from the second step on the big buffers are recycled.
//!
//! - [`take`] gives a buffer of a given length whose contents are unspecified (whatever the last
//!   user left): for outputs a kernel overwrites completely.
//! - [`take_zeroed`] gives a buffer of zeros.
//! - [`Buffer`] owns a vector and gives it back to the pool when dropped.
//!
//! Buffers are matched by exact length: shapes repeat from step to step, so exact matching
//! recycles nearly everything, and a buffer never holds more memory than its length needs. The
//! pool keeps only buffers it handed out: a vector made elsewhere (a batch's inputs built afresh
//! every step, say) is freed when offered, so a long run's pool stays at the size of one step's
//! working set instead of filling its budget with one more input buffer per step. When
//! a returned buffer does not fit the budget, the buffers returned longest ago are freed to make
//! room: a run that changes shapes (a second model, another method in the same process) replaces
//! the old working set instead of being locked out by it. The
//! contents of a recycled buffer are always initialised `f32`s (no `unsafe`), so a kernel that
//! forgot to write an element would read a stale value, never undefined memory; the kernels'
//! tests check every output element.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::tune::tunables;

struct Pool {
    by_len: HashMap<usize, Vec<Vec<f32>>>,
    /// The length of every buffer returned, oldest first. Entries whose buffer was taken again
    /// are skipped when evicting (a length is evicted only while its bucket holds a buffer).
    order: VecDeque<usize>,
    /// Per length, the buffers handed out by [`take`] and not yet given back.
    out: HashMap<usize, usize>,
    bytes: usize,
    stats: PoolStats,
}

/// Counters of the pool since the process started (or the last [`clear`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Requests for a poolable length served by a recycled buffer.
    pub hits: u64,
    /// Requests for a poolable length that needed a new allocation.
    pub misses: u64,
    /// Buffers returned to the pool.
    pub returned: u64,
    /// Buffers freed to keep the pool within its byte budget (the oldest returned first), or
    /// not kept because one buffer alone exceeds it.
    pub dropped: u64,
    /// Buffers offered that the pool had not handed out (none of their length was out), freed.
    pub foreign: u64,
    /// Bytes held by the pool now.
    pub held_bytes: usize,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

fn with_pool<R>(f: impl FnOnce(&mut Pool) -> R) -> R {
    // A panic while the lock is held leaves the pool consistent (every operation is a single
    // push or pop), so a poisoned lock is still usable.
    let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let pool = guard.get_or_insert_with(|| Pool {
        by_len: HashMap::new(),
        order: VecDeque::new(),
        out: HashMap::new(),
        bytes: 0,
        stats: PoolStats::default(),
    });
    f(pool)
}

fn poolable(len: usize) -> bool {
    let t = tunables();
    t.buffer_pool_max_bytes > 0 && len >= t.buffer_pool_min_len.max(1)
}

fn recycled(len: usize) -> Option<Vec<f32>> {
    if !poolable(len) {
        return None;
    }
    with_pool(|p| {
        let v = p.by_len.get_mut(&len).and_then(Vec::pop);
        *p.out.entry(len).or_default() += 1;
        match &v {
            Some(_) => {
                p.stats.hits += 1;
                p.bytes -= len * 4;
            }
            None => p.stats.misses += 1,
        }
        v
    })
}

/// A vector of `len` elements with unspecified (but initialised) contents: a recycled buffer of
/// that length if the pool holds one, else a new zeroed one. For outputs that the caller
/// overwrites completely.
///
/// ```
/// use tapestry_kernels::buffer::take;
/// let mut y = take(3);
/// y.copy_from_slice(&[1.0, 2.0, 3.0]); // every element written before any is read
/// assert_eq!(y.len(), 3);
/// ```
pub fn take(len: usize) -> Vec<f32> {
    recycled(len).unwrap_or_else(|| vec![0.0; len])
}

/// A vector of `len` zeros, recycled from the pool when it holds a buffer of that length.
pub fn take_zeroed(len: usize) -> Vec<f32> {
    match recycled(len) {
        Some(mut v) => {
            v.fill(0.0);
            v
        }
        None => vec![0.0; len],
    }
}

/// Returns a vector to the pool (if it is long enough, a buffer of its length is out, and the
/// pool has room); otherwise frees it.
pub fn give(v: Vec<f32>) {
    let len = v.len();
    if !poolable(len) || v.capacity() != len {
        return;
    }
    let budget = tunables().buffer_pool_max_bytes;
    with_pool(|p| match p.out.get_mut(&len).filter(|n| **n > 0) {
        Some(n) => {
            *n -= 1;
            put(p, v, budget);
        }
        None => p.stats.foreign += 1,
    });
}

/// Keeps `v` in `p`, freeing the buffers returned longest ago until it fits `budget` bytes.
fn put(p: &mut Pool, v: Vec<f32>, budget: usize) {
    let len = v.len();
    if len * 4 > budget {
        p.stats.dropped += 1;
        return;
    }
    while p.bytes + len * 4 > budget {
        let Some(old) = p.order.pop_front() else { break };
        if let Some(evicted) = p.by_len.get_mut(&old).and_then(Vec::pop) {
            p.bytes -= evicted.len() * 4;
            p.stats.dropped += 1;
        }
    }
    p.bytes += len * 4;
    p.stats.returned += 1;
    p.by_len.entry(len).or_default().push(v);
    p.order.push_back(len);
    // Entries of buffers taken again linger in `order`; compact it when it grows long.
    let held: usize = p.by_len.values().map(Vec::len).sum();
    if p.order.len() > 4 * held + 64 {
        compact(p);
    }
}

/// Rebuilds `order` so that it lists each held buffer once, keeping the newest entries.
fn compact(p: &mut Pool) {
    let mut left: HashMap<usize, usize> =
        p.by_len.iter().map(|(&len, bufs)| (len, bufs.len())).collect();
    let mut kept: Vec<usize> = Vec::new();
    for &len in p.order.iter().rev() {
        if let Some(n) = left.get_mut(&len).filter(|n| **n > 0) {
            *n -= 1;
            kept.push(len);
        }
    }
    kept.reverse();
    p.order = kept.into();
}

/// The pool's counters, and the bytes it holds now.
pub fn stats() -> PoolStats {
    with_pool(|p| PoolStats { held_bytes: p.bytes, ..p.stats })
}

/// Frees every buffer the pool holds and resets its counters.
pub fn clear() {
    with_pool(|p| {
        p.by_len.clear();
        p.order.clear();
        p.out.clear();
        p.bytes = 0;
        p.stats = PoolStats::default();
    });
}

/// An owned `f32` vector that goes back to the pool when dropped.
///
/// Dereferences to `[f32]`; [`Buffer::into_vec`] takes the vector out (it then leaves the pool's
/// care for good).
#[derive(Default)]
pub struct Buffer(Vec<f32>);

impl Buffer {
    /// Wraps a vector: when the buffer is dropped, the vector is offered to the pool.
    pub fn new(v: Vec<f32>) -> Self {
        Buffer(v)
    }

    /// The vector, taken out of the pool's care.
    pub fn into_vec(mut self) -> Vec<f32> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

impl Clone for Buffer {
    fn clone(&self) -> Self {
        let mut v = take(self.0.len());
        v.copy_from_slice(&self.0);
        Buffer(v)
    }
}

impl std::ops::Deref for Buffer {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl From<Vec<f32>> for Buffer {
    fn from(v: Vec<f32>) -> Self {
        Buffer(v)
    }
}

/// Floats in a cache line (64 bytes).
const LINE: usize = 16;

/// The length of scratch that [`split_aligned`] cuts into pieces of `lens`.
pub(crate) fn aligned_len(lens: &[usize]) -> usize {
    lens.iter().map(|l| l + LINE - 1).sum()
}

/// Cuts `s` into pieces of the given lengths, each starting on a 64-byte boundary, so that a
/// 16-float vector load or store at a multiple of 16 touches one cache line, not two. `s` must
/// hold [`aligned_len`]`(&lens)` elements.
pub(crate) fn split_aligned<const N: usize>(
    mut s: &mut [f32],
    lens: [usize; N],
) -> [&mut [f32]; N] {
    lens.map(|len| {
        let skip = s.as_ptr().align_offset(LINE * std::mem::size_of::<f32>());
        let rest = std::mem::take(&mut s);
        let (piece, rest) = rest[skip.min(LINE - 1)..].split_at_mut(len);
        s = rest;
        piece
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The pool is process-wide and tests run in parallel: each test uses lengths of its own.

    #[test]
    fn a_returned_buffer_is_handed_out_again_for_the_same_length() {
        let len = (1 << 20) + 3;
        let v = take(len);
        let ptr = v.as_ptr();
        give(v);
        let again = take(len);
        assert_eq!(again.as_ptr(), ptr, "the same allocation comes back");
        assert_eq!(again.len(), len);
        let other = take(len);
        assert_ne!(other.as_ptr(), ptr, "a buffer is handed out once");
    }

    #[test]
    fn take_zeroed_clears_a_recycled_buffer() {
        let len = (1 << 20) + 5;
        let mut v = take(len);
        v.fill(7.0);
        give(v);
        let z = take_zeroed(len);
        assert!(z.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn small_buffers_are_not_pooled() {
        let len = 7;
        give(take(len));
        // Other tests may return buffers concurrently, but none of length 7.
        assert!(with_pool(|p| p.by_len.get(&len).is_none_or(|b| b.is_empty())));
    }

    #[test]
    fn a_dropped_buffer_goes_back_and_into_vec_keeps_it() {
        let len = (1 << 20) + 9;
        let b = Buffer::new(take(len));
        let ptr = b.as_ptr();
        drop(b);
        let v = Buffer::new(take(len)).into_vec();
        assert_eq!(v.as_ptr(), ptr);
        // `into_vec` took it out: dropping the empty wrapper returned nothing.
        assert!(with_pool(|p| p.by_len.get(&len).is_none_or(|b| b.is_empty())));
    }

    #[test]
    fn a_full_pool_frees_the_buffers_returned_longest_ago() {
        let mut p = Pool {
            by_len: HashMap::new(),
            order: VecDeque::new(),
            out: HashMap::new(),
            bytes: 0,
            stats: PoolStats::default(),
        };
        let budget = 4 * 300;
        put(&mut p, vec![0.0; 100], budget);
        put(&mut p, vec![0.0; 120], budget);
        assert_eq!(p.bytes, 4 * 220);
        // 150 more does not fit: the 100 (oldest) goes, the 120 stays.
        put(&mut p, vec![0.0; 150], budget);
        assert_eq!(p.bytes, 4 * 270);
        assert!(p.by_len.get(&100).is_none_or(Vec::is_empty));
        assert_eq!(p.by_len[&120].len(), 1);
        assert_eq!(p.stats.dropped, 1);
        // Larger than the whole budget: not kept, nothing evicted.
        put(&mut p, vec![0.0; 400], budget);
        assert_eq!(p.bytes, 4 * 270);
        assert_eq!(p.stats.dropped, 2);
        // A buffer taken again leaves a stale entry that eviction skips.
        let taken = p.by_len.get_mut(&120).and_then(Vec::pop).unwrap();
        p.bytes -= taken.len() * 4;
        put(&mut p, vec![0.0; 200], budget);
        assert_eq!(p.bytes, 4 * 200, "the 150 was evicted, the stale 120 entry skipped");
        assert_eq!(p.by_len[&200].len(), 1);
    }

    #[test]
    fn the_order_list_is_compacted() {
        let mut p = Pool {
            by_len: HashMap::new(),
            order: VecDeque::new(),
            out: HashMap::new(),
            bytes: 0,
            stats: PoolStats::default(),
        };
        for _ in 0..1000 {
            put(&mut p, vec![0.0; 10], 1 << 20);
            let v = p.by_len.get_mut(&10).and_then(Vec::pop).unwrap();
            p.bytes -= v.len() * 4;
        }
        assert!(p.order.len() <= 65, "order grew to {}", p.order.len());
    }

    #[test]
    fn vectors_the_pool_did_not_hand_out_are_freed_not_kept() {
        let len = (1 << 20) + 13;
        // A step that wraps a fresh input vector each time: the pool must not grow with it.
        for _ in 0..5 {
            drop(Buffer::new(vec![1.0; len]));
        }
        assert!(with_pool(|p| p.by_len.get(&len).is_none_or(|b| b.is_empty())));
        // A buffer it handed out comes back; a foreign one of that length offered while it is
        // out takes its place, and the returning one is then freed: never more than were out.
        let ours = take(len);
        give(vec![2.0; len]);
        give(ours);
        assert_eq!(with_pool(|p| p.by_len.get(&len).map_or(0, Vec::len)), 1);
        assert_eq!(take(len)[0], 2.0, "the kept buffer is the one offered first");
    }

    #[test]
    fn clones_are_independent_copies() {
        let len = (1 << 20) + 11;
        let mut a = Buffer::new(take_zeroed(len));
        a[0] = 1.0;
        let b = a.clone();
        a[0] = 2.0;
        assert_eq!(b[0], 1.0);
        assert_eq!(b.len(), len);
    }

    #[test]
    fn split_aligned_cuts_lines_apart() {
        let lens = [5, 16, 33, 0, 7];
        let mut v = vec![0.0f32; super::aligned_len(&lens) + 1];
        // An odd start, so that the pieces cannot all be aligned by chance.
        let pieces = super::split_aligned(&mut v[1..], lens);
        let mut end = 0usize;
        for (piece, &len) in pieces.iter().zip(&lens) {
            assert_eq!(piece.len(), len);
            assert_eq!(piece.as_ptr() as usize % 64, 0, "a piece starts mid-line");
            assert!(piece.as_ptr() as usize >= end, "pieces overlap");
            end = piece.as_ptr() as usize + 4 * len;
        }
    }
}
