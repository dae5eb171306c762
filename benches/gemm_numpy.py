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
    ("gemm_model/fc_forward_128x3136x256", 128, 3136, 256),
    ("gemm_model/fc_dw_3136x128x256", 3136, 128, 256),
    ("gemm_model/fc_dx_128x256x3136", 128, 256, 3136),
    ("gemm_model/head_128x256x10", 128, 256, 10),
    ("gemm_model/heads3_128x256x30", 128, 256, 30),
]


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
    for name, m, k, n in SHAPES:
        a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
        c = np.empty((m, n), dtype=np.float32)
        flops = 2 * m * n * k
        reps = max(1, int(2e8 / flops))
        np.matmul(a, b, out=c)
        samples = []
        deadline = time.perf_counter() + 3.0
        while time.perf_counter() < deadline or len(samples) < 5:
            t = CLOCK()
            for _ in range(reps):
                np.matmul(a, b, out=c)
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
