"""The MAML sinusoid meta-iteration in PyTorch, for timing beside examples/maml_sinusoid.rs.

The same protocol: a 1-40-40-1 ReLU network, K = 10 support and 10 query points per task
(amplitude in [0.1, 5], phase in [0, pi], x in [-5, 5]), one inner SGD step at 0.01, meta-batch
25, Adam at 1e-3. The inner step is written the way learn2learn and higher do it:
`torch.autograd.grad(support_loss, params, create_graph=True)` (MAML) or without
`create_graph` (first-order MAML), then a functional forward at `params - lr * grads`; each
task's query loss is backpropagated inside the meta-batch loop.

    TORCH_THREADS=2 MAML_ITERS=2000 python3 benches/maml_torch.py

Prints milliseconds per meta-iteration for MAML and first-order MAML, and the peak RSS.
"""
import os
import resource
import time

import numpy as np
import torch

torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
ITERS = int(os.environ.get("MAML_ITERS", "2000"))
K, META_BATCH, INNER_LR = 10, 25, 0.01
rng = np.random.default_rng(17)


def task():
    a, phase = rng.uniform(0.1, 5.0), rng.uniform(0.0, np.pi)
    xs = rng.uniform(-5.0, 5.0, size=(2 * K, 1)).astype(np.float32)
    ys = (a * np.sin(xs - phase)).astype(np.float32)
    t = torch.from_numpy
    return t(xs[:K]), t(ys[:K]), t(xs[K:]), t(ys[K:])


def forward(p, x):
    x = torch.relu(x @ p[0].T + p[1])
    x = torch.relu(x @ p[2].T + p[3])
    return x @ p[4].T + p[5]


def run(first_order):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(1, 40), torch.nn.ReLU(), torch.nn.Linear(40, 40),
                              torch.nn.ReLU(), torch.nn.Linear(40, 1))
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    start = time.perf_counter()
    for _ in range(ITERS):
        opt.zero_grad()
        for _ in range(META_BATCH):
            xs, ys, xq, yq = task()
            support = torch.nn.functional.mse_loss(forward(params, xs), ys)
            grads = torch.autograd.grad(support, params, create_graph=not first_order)
            fast = [p - INNER_LR * g for p, g in zip(params, grads)]
            query = torch.nn.functional.mse_loss(forward(fast, xq), yq) / META_BATCH
            query.backward()
        opt.step()
    return (time.perf_counter() - start) / ITERS * 1e3


for name, fo in [("maml", False), ("fomaml", True)]:
    ms = run(fo)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch {name}: {ms:.3f} ms per meta-iteration ({ITERS} iterations, "
          f"{torch.get_num_threads()} threads), peak RSS {peak:.0f} MB")
