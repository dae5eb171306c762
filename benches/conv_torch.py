#!/usr/bin/env python3
"""PyTorch CPU figures for the shapes of benches/conv.rs, benches/pool.rs and
benches/elementwise.rs: conv2d forward, dX and dW (aten's convolution_backward, as autograd
calls it), 2x2 max-pool forward and backward, ReLU forward and backward, at 1 and 2 threads.
Prints the median and best time per call. BENCH_THREADS=1 (or 2) picks one thread count;
BENCH_ONLY=conv (or pool, relu, or a comma-separated list) runs only those groups.

Usage: /usr/bin/python3 benches/conv_torch.py
Nothing in the build or the tests needs Python.
"""
import os
import statistics
import time

# REPORT_CLOCK=cpu times by this thread's CPU time (meaningful at one thread only), leaving out
# the time other processes ran on a shared machine.
CLOCK = time.thread_time if os.environ.get("REPORT_CLOCK") == "cpu" else time.perf_counter

import torch


def median_time(fn, budget=2.0):
    fn()
    reps = 1
    t = CLOCK()
    fn()
    one = CLOCK() - t
    reps = max(1, int(0.05 / max(one, 1e-7)))
    samples = []
    deadline = time.perf_counter() + budget
    while time.perf_counter() < deadline or len(samples) < 5:
        t = CLOCK()
        for _ in range(reps):
            fn()
        samples.append((CLOCK() - t) / reps)
    return statistics.median(samples), min(samples)


def report(name, times, flops=None, nbytes=None):
    def rate(secs):
        if flops:
            return f"{flops / secs / 1e9:8.1f} GFLOP/s"
        if nbytes:
            return f"{nbytes / secs / 1e9:8.1f} GB/s"
        return ""
    med, best = times
    print(f"{name:44s} median {med * 1e6:10.1f} us {rate(med)}   best {best * 1e6:10.1f} us "
          f"{rate(best)}", flush=True)


def conv_benches():
    for label, cin, hw, cout in (("3to32_28x28", 3, 28, 32), ("32to64_14x14", 32, 14, 64)):
        for n in (32, 128):
            x = torch.rand(n, cin, hw, hw) * 2 - 1
            w = torch.rand(cout, cin, 3, 3) * 2 - 1
            b = torch.rand(cout) * 2 - 1
            dy = torch.rand(n, cout, hw, hw) * 2 - 1
            flops = 2 * n * cout * hw * hw * cin * 9
            args = ([1, 1], [1, 1], [1, 1], False, [0, 0], 1)
            with torch.no_grad():
                fwd = median_time(lambda: torch.nn.functional.conv2d(x, w, b, 1, 1))
                dx = median_time(lambda: torch.ops.aten.convolution_backward(
                    dy, x, w, [cout], *args, [True, False, False]))
                dw = median_time(lambda: torch.ops.aten.convolution_backward(
                    dy, x, w, [cout], *args, [False, True, True]))
            report(f"conv_{label}/forward/b{n}", fwd, flops)
            report(f"conv_{label}/dx/b{n}", dx, flops)
            report(f"conv_{label}/dw/b{n}", dw, flops)


def pool_benches():
    for label, c, hw in (("32x28x28", 32, 28), ("64x14x14", 64, 14)):
        for n in (32, 128):
            x = torch.rand(n, c, hw, hw)
            y, idx = torch.nn.functional.max_pool2d(x, 2, 2, return_indices=True)
            dy = torch.rand_like(y)
            nbytes = 4 * x.numel() + 8 * y.numel()
            with torch.no_grad():
                fwd = median_time(lambda: torch.nn.functional.max_pool2d(
                    x, 2, 2, return_indices=True))
                bwd = median_time(lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                    dy, x, [2, 2], [2, 2], [0, 0], [1, 1], False, idx))
            report(f"pool2x2_{label}/max_forward/b{n}", fwd, nbytes=nbytes)
            report(f"pool2x2_{label}/max_backward/b{n}", bwd, nbytes=nbytes)


def relu_benches():
    for n in (32, 128):
        x = torch.rand(n, 32, 28, 28) * 2 - 1
        dy = torch.rand_like(x)
        y = torch.empty_like(x)
        with torch.no_grad():
            fwd = median_time(lambda: torch.clamp_min(x, 0, out=y))
            bwd = median_time(lambda: torch.ops.aten.threshold_backward(dy, x, 0))
        report(f"relu/forward/{n}x32x28x28", fwd, nbytes=8 * x.numel())
        report(f"relu/backward/{n}x32x28x28", bwd, nbytes=12 * x.numel())


def main():
    print(f"# torch {torch.__version__}, mkldnn: {torch.backends.mkldnn.is_available()}")
    for threads in [int(t) for t in os.environ.get("BENCH_THREADS", "1,2").split(",")]:
        torch.set_num_threads(threads)
        print(f"## {threads} thread(s)", flush=True)
        only = os.environ.get("BENCH_ONLY", "conv,pool,relu").split(",")
        for name, bench in (("conv", conv_benches), ("pool", pool_benches),
                            ("relu", relu_benches)):
            if name in only:
                bench()


if __name__ == "__main__":
    main()
