#!/usr/bin/env python3
"""GEMM throughput of numpy (OpenBLAS) at the shapes of benches/gemm.rs, for comparison.

Runs each shape at 1 and 2 threads (a fresh process per thread count, since OpenBLAS reads
OPENBLAS_NUM_THREADS at load time) and prints the median and best GFLOP/s over repeated runs. BENCH_THREADS=1 (or 2) picks one
thread count.

Usage (Debian's numpy with OpenBLAS loaded in place of the reference BLAS):
    LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread \
        OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 benches/gemm_numpy.py
Nothing in the build or the tests needs Python.
"""
import ctypes
import os
import statistics
import subprocess
import sys
import time

# REPORT_CLOCK=cpu times by this thread's CPU time (meaningful at one thread only), leaving out
# the time other processes ran on a shared machine.
CLOCK = time.thread_time if os.environ.get("REPORT_CLOCK") == "cpu" else time.perf_counter

SHAPES = [
    ("gemm_square/64", 64, 64, 64),
    ("gemm_square/128", 128, 128, 128),
    ("gemm_square/256", 256, 256, 256),
    ("gemm_square/512", 512, 512, 512),
    ("gemm_square/1024", 1024, 1024, 1024),
    ("gemm_model/fc_forward_x_wt_128x3136x256", 128, 3136, 256),
    ("gemm_model/fc_dx_g_w_128x256x3136", 128, 256, 3136),
    ("gemm_model/fc_dw_gt_x_256x128x3136", 256, 128, 3136),
    ("gemm_model/head_x_wt_128x256x10", 128, 256, 10),
    ("gemm_model/heads3_x_wt_3x128x256x10", 128, 256, 10),
]

# How benches/gemm.rs stores A and B for each shape ("t": the transpose of a row-major matrix,
# as the autodiff passes W^T and g^T), and how many products one call makes.
LAYOUTS = {
    "gemm_model/fc_forward_x_wt_128x3136x256": ("", "t", 1),
    "gemm_model/fc_dw_gt_x_256x128x3136": ("t", "", 1),
    "gemm_model/head_x_wt_128x256x10": ("", "t", 1),
    "gemm_model/heads3_x_wt_3x128x256x10": ("", "t", 3),
}


def blas_core():
    """The kernel family OpenBLAS chose, when OpenBLAS is what numpy loaded."""
    for line in open("/proc/self/maps"):
        path = line.split()[-1]
        if "libopenblas" in path:
            try:
                lib = ctypes.CDLL(path)
                lib.openblas_get_corename.restype = ctypes.c_char_p
                return lib.openblas_get_corename().decode()
            except (OSError, AttributeError):
                continue
    return "not OpenBLAS"


def run_child():
    import numpy as np

    rng = np.random.default_rng(0)
    print(f"# numpy {np.__version__}, BLAS core: {blas_core()}, "
          f"threads: {os.environ.get('OPENBLAS_NUM_THREADS')}", flush=True)
    def stored(rows, cols, how):
        # A transposed operand is the transpose view of a row-major [cols, rows] array.
        if how == "t":
            return rng.uniform(-1, 1, (cols, rows)).astype(np.float32).T
        return rng.uniform(-1, 1, (rows, cols)).astype(np.float32)

    for name, m, k, n in SHAPES:
        la, lb, calls = LAYOUTS.get(name, ("", "", 1))
        a = stored(m, k, la)
        bs = [stored(k, n, lb) for _ in range(calls)]
        cs = [np.empty((m, n), dtype=np.float32) for _ in range(calls)]
        flops = 2 * m * n * k * calls

        def call():
            for b, c in zip(bs, cs):
                np.matmul(a, b, out=c)

        reps = max(1, int(2e8 / flops))
        call()
        samples = []
        deadline = time.perf_counter() + 3.0
        while time.perf_counter() < deadline or len(samples) < 5:
            t = CLOCK()
            for _ in range(reps):
                call()
            samples.append((CLOCK() - t) / reps)
        med, best = statistics.median(samples), min(samples)
        print(f"{name:44s} median {med * 1e6:10.1f} us {flops / med / 1e9:8.1f} GFLOP/s"
              f"   best {best * 1e6:10.1f} us {flops / best / 1e9:8.1f} GFLOP/s", flush=True)


def main():
    if os.environ.get("GEMM_NUMPY_CHILD"):
        run_child()
        return
    for threads in [int(t) for t in os.environ.get("BENCH_THREADS", "1,2").split(",")]:
        env = dict(os.environ, GEMM_NUMPY_CHILD="1", OPENBLAS_NUM_THREADS=str(threads),
                   OMP_NUM_THREADS=str(threads))
        subprocess.run([sys.executable, __file__], env=env, check=True)


if __name__ == "__main__":
    main()
