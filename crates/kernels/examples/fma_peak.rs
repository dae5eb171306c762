//! Measures this machine's peak single-precision FMA throughput: independent chains of vector
//! FMAs in registers, no memory traffic, on 1 thread and on every core. Each figure is the best
//! of 5 runs, since a peak is what a run reaches when nothing else is running. On a shared
//! machine the wall clock also counts time other processes held the core, so the per-thread
//! figure by the thread's own CPU time (Linux) is printed too.
//!
//! `cargo run --release -p tapestry-kernels --example fma_peak`

use std::time::Instant;

/// Seconds of CPU time used by the calling thread (0 if unavailable).
fn thread_cpu_seconds() -> f64 {
    tapestry_kernels::clock::thread_cpu_seconds().unwrap_or(0.0)
}

const ITERS: u64 = 50_000_000;
const RUNS: usize = 5;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    // 12 independent accumulators cover the FMA latency (4 cycles) on two FMA ports.
    let mut acc = [_mm512_set1_ps(0.0); 12];
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm512_fmadd_ps(*r, a, b);
        }
    }
    let mut s = _mm512_set1_ps(0.0);
    for r in acc {
        s = _mm512_add_ps(s, r);
    }
    _mm512_reduce_add_ps(s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); 12];
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm256_fmadd_ps(*r, a, b);
        }
    }
    let mut out = [0.0f32; 8];
    let mut s = _mm256_set1_ps(0.0);
    for r in acc {
        s = _mm256_add_ps(s, r);
    }
    // SAFETY: `out` holds 8 f32, exactly one 256-bit store; unaligned store is allowed.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
    out.iter().sum()
}

#[cfg(target_arch = "x86_64")]
fn measure(name: &str, lanes: u64, threads: usize, f: fn(u64) -> f32) {
    let per_thread_flops = (ITERS * 12 * lanes * 2) as f64;
    let (mut best_wall, mut best_cpu) = (0.0f64, 0.0f64);
    let mut checksum = 0.0f32;
    for _ in 0..RUNS {
        let start = Instant::now();
        let results: Vec<(f32, f64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(move || {
                        let t0 = thread_cpu_seconds();
                        let v = f(ITERS);
                        (v, thread_cpu_seconds() - t0)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let secs = start.elapsed().as_secs_f64();
        best_wall = best_wall.max(per_thread_flops * threads as f64 / secs / 1e9);
        for &(_, cpu) in &results {
            if cpu > 0.0 {
                best_cpu = best_cpu.max(per_thread_flops / cpu / 1e9);
            }
        }
        checksum = results.iter().map(|r| r.0).sum();
    }
    println!(
        "{name:<8} {threads} thread(s): wall {best_wall:7.1} GFLOP/s in all ({:6.1} per thread); \
         by thread CPU time {best_cpu:6.1} per thread; best of {RUNS}   [checksum {checksum:.3}]",
        best_wall / threads as f64
    );
}

#[cfg(target_arch = "x86_64")]
fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature was detected at run time just above.
        let f: fn(u64) -> f32 = |n| unsafe { fma_avx512(n) };
        measure("AVX-512", 16, 1, f);
        measure("AVX-512", 16, cores, f);
    }
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the features were detected at run time just above.
        let f: fn(u64) -> f32 = |n| unsafe { fma_avx2(n) };
        measure("AVX2", 8, 1, f);
        measure("AVX2", 8, cores, f);
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("fma_peak measures x86-64 vector FMA units only");
}
