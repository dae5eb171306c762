#!/usr/bin/env python3
"""PyTorch CPU peer of the reference MTL step (benches/reference/mod.rs, benches/mtl_step.rs and
examples/step_memory.rs): conv 3->32 (k3 p1) -> ReLU -> max-pool 2 -> conv 32->64 (k3 p1) -> ReLU
-> max-pool 2 -> flatten -> linear 3136->256 -> ReLU (the shared trunk), three heads linear
256->10 with cross-entropy, batch 128 of random 3x28x28 inputs, Adam (PyTorch's default init).

One configuration per process, as the Tapestry side runs: two warm-up steps, STEP_STEPS timed
steps (default 10), then one line

    torch <method> <threads> <median wall ms> <median process CPU ms> <peak before MiB> <peak after MiB>

where the peaks are the process's VmHWM (peak resident set) after the import, the model and the
batch, and after the last step; their difference is what the step itself adds.

Methods:
  ew    the sum of the three losses, one backward;
  mgda  MGDA as the Tapestry step forms it: each task's gradient on the shared parameters
        (autograd.grad, the graph retained), their 3x3 Gram, the exact min-norm point on the
        simplex, the trunk's update sum_t alpha_t g_t and the heads' from the alpha-weighted loss
        (autograd.grad on the head parameters only).

Usage: STEP_THREADS=1 /usr/bin/python3 benches/mtl_step_torch.py ew
Nothing in the build or the tests needs Python.
"""
import itertools
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def peak_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def min_norm(gram):
    """The exact min-norm point of the convex hull of T vectors given their Gram: the best of
    the KKT points of every face of the simplex (T is 3 here, so 7 faces)."""
    t = gram.shape[0]
    best, best_val = None, float("inf")
    for k in range(1, t + 1):
        for face in itertools.combinations(range(t), k):
            idx = list(face)
            g = gram[idx][:, idx]
            a = torch.zeros(k + 1, k + 1, dtype=torch.float64)
            a[:k, :k] = g
            a[:k, k] = 1.0
            a[k, :k] = 1.0
            rhs = torch.zeros(k + 1, dtype=torch.float64)
            rhs[k] = 1.0
            try:
                sol = torch.linalg.solve(a, rhs)
            except RuntimeError:
                continue
            w = sol[:k]
            if (w < -1e-12).any():
                continue
            alpha = torch.zeros(t, dtype=torch.float64)
            alpha[idx] = w
            val = float(alpha @ gram @ alpha)
            if val < best_val:
                best, best_val = alpha, val
    return best


def main():
    method = sys.argv[1] if len(sys.argv) > 1 else "ew"
    threads = int(os.environ.get("STEP_THREADS", "1"))
    steps = int(os.environ.get("STEP_STEPS", "10"))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    trunk = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 256), nn.ReLU())
    heads = nn.ModuleList(nn.Linear(256, 10) for _ in range(3))
    shared = list(trunk.parameters())
    head_params = list(heads.parameters())
    opt = torch.optim.Adam(shared + head_params, lr=1e-4)
    x = torch.rand(128, 3, 28, 28) * 2 - 1
    ys = [torch.randint(0, 10, (128,)) for _ in range(3)]

    def step():
        z = trunk(x)
        losses = [F.cross_entropy(h(z), y) for h, y in zip(heads, ys)]
        opt.zero_grad(set_to_none=True)
        if method == "ew":
            sum(losses).backward()
        elif method == "mgda":
            grads = [torch.autograd.grad(l, shared, retain_graph=True) for l in losses]
            flat = torch.stack([torch.cat([g.reshape(-1) for g in gs]) for gs in grads])
            alpha = min_norm((flat @ flat.T).double())
            combined = (alpha.float()[:, None] * flat).sum(0)
            offset = 0
            for p in shared:
                n = p.numel()
                p.grad = combined[offset:offset + n].view_as(p).clone()
                offset += n
            weighted = sum(float(a) * l for a, l in zip(alpha, losses))
            for p, g in zip(head_params, torch.autograd.grad(weighted, head_params)):
                p.grad = g
        else:
            raise SystemExit(f"unknown method {method}; expected ew or mgda")
        opt.step()

    before = peak_mib()
    wall, cpu = [], []
    for s in range(steps + 2):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        if s >= 2:
            wall.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
    print(f"torch {method} {threads} {statistics.median(wall):.1f} "
          f"{statistics.median(cpu):.1f} {before:.1f} {peak_mib():.1f}", flush=True)


if __name__ == "__main__":
    main()
