"""Checks exported runs: for each RUN given, imports RUN/model.py, loads RUN's checkpoint with
strict=True, runs the module on the test inputs `tapestry eval --outputs RUN/outputs` wrote and
compares each task's output with Tapestry's. Prints one line per task with the relative error
max|torch - tapestry| / max|tapestry| and exits 1 if any exceeds the tolerance.

    python3 export_check.py TOLERANCE RUN [RUN ...]
"""
import importlib.util
import pathlib
import sys

import numpy as np
import torch

torch.set_num_threads(1)
tolerance = float(sys.argv[1])
worst = 0.0
for i, run in enumerate(map(pathlib.Path, sys.argv[2:])):
    spec = importlib.util.spec_from_file_location(f"exported_{i}", run / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.load(run / "checkpoint.safetensors")
    outputs = run / "outputs"
    shared = outputs / "inputs.npy"
    cache = {}
    for task in module.TASKS:
        path = shared if shared.exists() else outputs / f"inputs.{task}.npy"
        if path not in cache:
            with torch.no_grad():
                cache[path] = net(torch.from_numpy(np.load(path)))
        ours = cache[path][task].numpy()
        theirs = np.load(outputs / f"outputs.{task}.npy")
        if ours.shape != theirs.shape:
            print(f"{run} {task}: shape {ours.shape} where Tapestry gives {theirs.shape}")
            sys.exit(1)
        scale = max(float(np.abs(theirs).max()), 1e-30)
        error = float(np.abs(ours.astype(np.float64) - theirs).max()) / scale
        worst = max(worst, error)
        print(f"{run.name} {task}: {ours.shape[0]} samples, relative error {error:.2e}")
print(f"worst relative error {worst:.2e} (tolerance {tolerance:.0e})")
sys.exit(0 if worst <= tolerance else 1)
