"""PyTorch's side of the autodiff overhead benchmarks, on the same work as Tapestry's:

- the per-op chain of examples/op_overhead.rs and benches/autodiff.rs: a leaf x of 4 (or 64)
  elements, 999 alternating `y * x` / `y + x` ops, `sum`, backward; nanoseconds per op;
- the MLP of benches/autodiff.rs (`autodiff/mlp`): batch 64, 64 -> 128 -> 128 with ReLU, a head
  128 -> 10, loss mean((out - 0.5)^2), forward and backward; microseconds per pass.

Prints one line per measurement: the median of 7 rounds, and the range.

    python3 benches/autodiff_torch.py [--threads 1]
"""
import argparse
import statistics
import time

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=1)
args = parser.parse_args()
torch.set_num_threads(args.threads)
OPS = 1000


def rounds(f, reps, rounds=7):
    f()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reps):
            f()
        times.append((time.perf_counter() - start) / reps)
    return statistics.median(times), min(times), max(times)


def chain(n):
    x0 = torch.tensor([0.1 + 0.1 * (i % 4) for i in range(n)])

    def once():
        x = x0.clone().requires_grad_(True)
        y = x
        for i in range(OPS - 1):
            y = y * x if i % 2 == 0 else y + x
        y.sum().backward()
        return x.grad

    return once


g = torch.Generator().manual_seed(7)
w1, b1 = torch.rand(128, 64, generator=g) - 0.5, torch.rand(128, generator=g) - 0.5
w2, b2 = torch.rand(128, 128, generator=g) - 0.5, torch.rand(128, generator=g) - 0.5
head = (torch.rand(10, 128, generator=g) - 0.5) * 0.2
x = torch.rand(64, 64, generator=g) * 2 - 1
leaves = [t.requires_grad_(True) for t in (w1, b1, w2, b2, head)]


def mlp():
    for t in leaves:
        t.grad = None
    h = torch.relu(torch.nn.functional.linear(x, w1, b1))
    h = torch.relu(torch.nn.functional.linear(h, w2, b2))
    ((torch.nn.functional.linear(h, head) - 0.5) ** 2).mean().backward()


print(f"pytorch {torch.__version__}, {args.threads} thread(s)")
for n in (4, 64):
    med, lo, hi = rounds(chain(n), 20)
    print(f"chain of {OPS} ops on {n} elements: {med / OPS * 1e9:.0f} ns/op "
          f"({lo / OPS * 1e9:.0f}-{hi / OPS * 1e9:.0f})")
med, lo, hi = rounds(mlp, 500)
print(f"MLP 64x[64,128,128]+head10 forward+backward: {med * 1e6:.1f} us "
      f"({lo * 1e6:.1f}-{hi * 1e6:.1f})")
