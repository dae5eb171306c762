#!/usr/bin/env python3
"""PyTorch CPU peer of examples/hvp_report.rs: Hessian-vector product time against gradient
time, by double backward, on the same two models and shapes, printing the same table.

Models (10-class cross-entropy, mean over a batch of 128; HVP w.r.t. all parameters along a
random direction v, uniform in [-1, 1]):
  mlp:  input [128, 256] -> linear 256->256 -> tanh -> linear 256->10
  conv: input [128, 3, 28, 28] -> conv 3->32 (k3 p1) -> ReLU -> max-pool 2 -> conv 32->64
        (k3 p1) -> ReLU -> max-pool 2 -> flatten -> linear 3136->256 -> ReLU -> linear 256->10
        (the reference model of benches/mtl_step.rs with a single head)

Gradient: forward, torch.autograd.grad(loss, params). HVP: forward,
g = torch.autograd.grad(loss, params, create_graph=True), then
torch.autograd.grad(sum((g_i * v_i).sum()), params). Median and best time per call, sampled as
benches/conv_torch.py does; BENCH_BUDGET seconds per measurement (default 2). A second table
splits the HVP into phases; a check line compares the HVP on a small batch with a central
finite difference of gradients along v (for the conv model along v on the output layer only,
as examples/hvp_report.rs explains).

BENCH_THREADS=1 (or 2) picks one thread count (default 1,2); HVP_MODEL=mlp (or conv) one model.
REPORT_CLOCK=cpu times by this thread's CPU time (meaningful at one thread only).
HVP_COMPARE=DIR compares, in float64, PyTorch's HVP with ours on the small check problems that
`HVP_DUMP=DIR cargo run --release --example hvp_report` wrote (same weights, input and v).

Usage: /usr/bin/python3 benches/hvp_torch.py
       BENCH_THREADS=1 REPORT_CLOCK=cpu python3 benches/hvp_torch.py
Nothing in the build or the tests needs Python.
"""
import os
import statistics
import time

# REPORT_CLOCK=cpu times by this thread's CPU time (meaningful at one thread only), leaving out
# the time other processes ran on a shared machine.
CPU = os.environ.get("REPORT_CLOCK") == "cpu"
CLOCK = time.thread_time if CPU else time.perf_counter

import numpy as np
import torch
import torch.nn.functional as F

BATCH = 128
CLASSES = 10
BUDGET = float(os.environ.get("BENCH_BUDGET", "2"))


def median_time(fn, budget=BUDGET):
    fn()
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


class Problem:
    """A model's parameters, one batch of inputs and labels, and a direction v."""

    def __init__(self, kind, batch, seed, dtype=torch.float32):
        gen = torch.Generator().manual_seed(seed)
        self.kind = kind

        def uniform(shape, bound=1.0):
            return (torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1) * bound

        if kind == "mlp":
            shapes, inp = [(256, 256), (CLASSES, 256)], (batch, 256)
        else:
            shapes = [(32, 3, 3, 3), (64, 32, 3, 3), (256, 3136), (CLASSES, 256)]
            inp = (batch, 3, 28, 28)
        self.params = []
        for shape in shapes:
            # PyTorch's default initialisation of nn.Linear and nn.Conv2d: U(+-1/sqrt(fan_in)).
            bound = 1 / np.sqrt(np.prod(shape[1:]))
            self.params.append(uniform(shape, bound).requires_grad_())
            self.params.append(uniform((shape[0],), bound).requires_grad_())
        self.x = uniform(inp)
        self.labels = torch.randint(0, CLASSES, (batch,), generator=gen)
        self.v = [uniform(p.shape) for p in self.params]

    def loss(self, p):
        if self.kind == "mlp":
            logits = F.linear(torch.tanh(F.linear(self.x, p[0], p[1])), p[2], p[3])
        else:
            h = F.max_pool2d(F.relu(F.conv2d(self.x, p[0], p[1], padding=1)), 2)
            h = F.max_pool2d(F.relu(F.conv2d(h, p[2], p[3], padding=1)), 2).flatten(1)
            logits = F.linear(F.relu(F.linear(h, p[4], p[5])), p[6], p[7])
        return F.cross_entropy(logits, self.labels)

    def grad_at(self, params):
        return torch.autograd.grad(self.loss(params), params)

    def hvp(self, v):
        g = torch.autograd.grad(self.loss(self.params), self.params, create_graph=True)
        dot = sum((gi * vi).sum() for gi, vi in zip(g, v))
        return torch.autograd.grad(dot, self.params)

    def check_direction(self):
        """v for the MLP; v on the output layer only for the conv model (no kink moves)."""
        last = len(self.v) - 2
        return [vi if self.kind == "mlp" or i >= last else torch.zeros_like(vi)
                for i, vi in enumerate(self.v)]


def hvp_phases(problem, budget):
    phases = [[] for _ in range(5)]
    deadline = time.perf_counter() + budget
    checksum = 0.0
    while time.perf_counter() < deadline or len(phases[0]) < 5:
        t0 = CLOCK()
        loss = problem.loss(problem.params)
        t1 = CLOCK()
        g = torch.autograd.grad(loss, problem.params, create_graph=True)
        t2 = CLOCK()
        dot = sum((gi * vi).sum() for gi, vi in zip(g, problem.v))
        t3 = CLOCK()
        hv = torch.autograd.grad(dot, problem.params)
        t4 = CLOCK()
        checksum += sum(h[(0,) * h.dim()].item() for h in hv)
        del hv, dot, g, loss
        t5 = CLOCK()
        for i, d in enumerate((t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            phases[i].append(d)
    return [statistics.median(p) for p in phases], checksum


def norm(ts):
    return float(np.sqrt(sum(float((t.double() ** 2).sum()) for t in ts)))


def fd_error(problem, v, hv, eps):
    def shifted(sign):
        params = [(p + sign * eps * vi).detach().requires_grad_()
                  for p, vi in zip(problem.params, v)]
        return problem.grad_at(params)
    plus, minus = shifted(1.0), shifted(-1.0)
    diff = [(a.double() - b.double()) / (2 * eps) - h.double() for a, b, h in zip(plus, minus, hv)]
    return norm(diff) / norm(hv)


def compare(directory, kind):
    """Our HVP (written by hvp_report with HVP_DUMP) against PyTorch's, in float64."""
    path = os.path.join(directory, kind)
    shapes = {}
    with open(os.path.join(path, "shapes.txt")) as f:
        for line in f:
            name, *dims = line.split()
            shapes[name] = [int(d) for d in dims]

    def load(name):
        data = np.fromfile(os.path.join(path, f"{name}.bin"), dtype="<f4")
        return torch.from_numpy(data.reshape(shapes[name]).astype(np.float64))

    n = sum(1 for name in shapes if name.startswith("p"))
    problem = Problem(kind, 1, 0, torch.float64)
    problem.params = [load(f"p{i}").requires_grad_() for i in range(n)]
    problem.v = [load(f"v{i}") for i in range(n)]
    problem.x = load("x")
    with open(os.path.join(path, "labels.txt")) as f:
        problem.labels = torch.tensor([int(t) for t in f.read().split()])
    ours = [load(f"hv{i}") for i in range(n)]
    theirs = problem.hvp(problem.v)
    err = norm([a - b for a, b in zip(ours, theirs)]) / norm(theirs)
    print(f"# {kind} ours (f32) vs PyTorch (f64) on {path}, batch {problem.x.shape[0]}, along v: "
          f"|Hv_ours - Hv_torch| / |Hv_torch| = {err:.2e} (|Hv| = {norm(theirs):.4e})",
          flush=True)


def main():
    kinds = os.environ.get("HVP_MODEL", "mlp,conv").replace("all", "mlp,conv").split(",")
    directory = os.environ.get("HVP_COMPARE")
    if directory:
        for kind in kinds:
            compare(directory, kind)
        return
    clock = "cpu" if CPU else "wall"
    print(f"# torch {torch.__version__}, mkldnn: {torch.backends.mkldnn.is_available()}, "
          f"clock {clock}, {BUDGET:g} s per measurement, times in ms", flush=True)
    print(f"{'model':6} {'engine':9} {'threads':>7} {'clock':>5} {'grad_med':>10} "
          f"{'grad_best':>10} {'hvp_med':>10} {'hvp_best':>10} {'ratio_med':>9} "
          f"{'ratio_best':>9}", flush=True)
    notes = []
    for threads in [int(t) for t in os.environ.get("BENCH_THREADS", "1,2").split(",")]:
        torch.set_num_threads(threads)
        for kind in kinds:
            problem = Problem(kind, BATCH, 0)
            checksum = [0.0]

            def grad():
                g = problem.grad_at(problem.params)
                checksum[0] += sum(t[(0,) * t.dim()].item() for t in g)

            def hvp():
                hv = problem.hvp(problem.v)
                checksum[0] += sum(t[(0,) * t.dim()].item() for t in hv)

            g_med, g_best = median_time(grad)
            h_med, h_best = median_time(hvp)
            print(f"{kind:6} {'torch':9} {threads:>7} {clock:>5} {g_med * 1e3:10.3f} "
                  f"{g_best * 1e3:10.3f} {h_med * 1e3:10.3f} {h_best * 1e3:10.3f} "
                  f"{h_med / g_med:9.2f} {h_best / g_best:9.2f}", flush=True)
            (fwd, rec, dot, second, drop), c = hvp_phases(problem, BUDGET / 2)
            checksum[0] += c
            n_params = sum(p.numel() for p in problem.params)
            notes.append(
                f"# {kind} ({n_params} parameters, {threads} thread(s)) HVP phases, median ms: "
                f"forward {fwd * 1e3:.3f} | recorded backward {rec * 1e3:.3f} | dot "
                f"{dot * 1e3:.3f} | second backward {second * 1e3:.3f} | drop {drop * 1e3:.3f} "
                f"| sum {(fwd + rec + dot + second + drop) * 1e3:.3f}")
            small = Problem(kind, 8 if kind == "mlp" else 2, 1)
            v = small.check_direction()
            hv = small.hvp(v)
            # Exponents printed as Rust prints them (1e-2, not 1e-02).
            errors = ", ".join(f"eps {eps:.0e}: {fd_error(small, v, hv, eps):.2e}"
                               for eps in (1e-2, 3e-3, 1e-3)).replace("e-0", "e-")
            along = "v" if kind == "mlp" else "v on the output layer"
            notes.append(
                f"# {kind} check, batch {small.x.shape[0]}, along {along}: |Hv - FD| / |Hv|, "
                f"FD = (g(p + eps v) - g(p - eps v)) / 2 eps: {errors} (|Hv| = {norm(hv):.4e})")
            notes.append(f"# {kind} checksum {checksum[0]:.6e}")
    for note in notes:
        print(note, flush=True)


if __name__ == "__main__":
    main()
