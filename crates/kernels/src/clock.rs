//! CPU-time clocks for benchmarks on a shared machine: the time a thread, or the whole process,
//! actually ran on a CPU, which leaves out the time other processes held the cores. Linux only
//! (`clock_gettime`); elsewhere every function returns `None`.

/// The clocks `clock_gettime` knows by these ids on Linux.
#[cfg(target_os = "linux")]
const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
#[cfg(target_os = "linux")]
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn seconds(clock: i32) -> Option<f64> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable `struct timespec` (two 64-bit fields on 64-bit Linux) for
    // the duration of the call, `clock_gettime` writes nothing else, and the id is one Linux
    // defines.
    let rc = unsafe { clock_gettime(clock, &mut ts) };
    (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn seconds(_clock: i32) -> Option<f64> {
    None
}

/// Seconds of CPU time the calling thread has used, in nanosecond resolution.
pub fn thread_cpu_seconds() -> Option<f64> {
    #[cfg(target_os = "linux")]
    return seconds(CLOCK_THREAD_CPUTIME_ID);
    #[cfg(not(target_os = "linux"))]
    None
}

/// Seconds of CPU time the whole process (every thread) has used, in nanosecond resolution.
pub fn process_cpu_seconds() -> Option<f64> {
    #[cfg(target_os = "linux")]
    return seconds(CLOCK_PROCESS_CPUTIME_ID);
    #[cfg(not(target_os = "linux"))]
    None
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    fn cpu_clocks_advance_with_work() {
        let (t0, p0) =
            (super::thread_cpu_seconds().unwrap(), super::process_cpu_seconds().unwrap());
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
        let (t1, p1) =
            (super::thread_cpu_seconds().unwrap(), super::process_cpu_seconds().unwrap());
        assert!(t1 > t0 && p1 >= t1 - t0 + p0 - 1e-3, "{t0} {t1} {p0} {p1}");
    }
}
