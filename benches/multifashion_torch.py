"""PyTorch's side of the Multi-Fashion side-by-side (benches/multifashion.sh): trains the model a
Tapestry run exported (`tapestry export --pytorch --data RUN`: RUN/model.py and RUN/data) on
exactly the data that run trained on, with the same protocol, and prints one JSON line with
seconds per epoch and the final test accuracy of each task.

Protocol (Tapestry's `--method ew --optimizer adam --lr 1e-3 --batch-size 256`): the module of
model.py freshly initialised by PyTorch's defaults (Tapestry draws from the same distributions,
with its own generator), Adam(lr=1e-3) on the sum of the tasks' cross-entropies (equal
weighting), batches of 256 in a new random order each epoch, the last partial batch kept, test
accuracy after the last epoch.

    python3 benches/multifashion_torch.py RUN --epochs 10 --seed 0 --threads 2

`--init CHECKPOINT` starts from the parameters of a Tapestry checkpoint instead (loaded by
model.py with strict=True): with the initial parameters of Tapestry's run, both frameworks start
from the same weights, and only the batch order and the arithmetic differ.
"""
import argparse
import importlib.util
import json
import pathlib
import time

import numpy as np
import torch

parser = argparse.ArgumentParser()
parser.add_argument("run", type=pathlib.Path)
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--batch-size", type=int, default=256)
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--init", type=pathlib.Path, help="start from this checkpoint's parameters")
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)

spec = importlib.util.spec_from_file_location("exported", args.run / "model.py")
exported = importlib.util.module_from_spec(spec)
spec.loader.exec_module(exported)
net = exported.load(args.init).train() if args.init else exported.build()


def split(prefix):
    data = args.run / "data"
    x = torch.from_numpy(np.load(data / f"{prefix}images.npy"))
    labels = np.genfromtxt(data / f"{prefix}labels.csv", delimiter=",", names=True, dtype=np.int64)
    y = {t: torch.from_numpy(np.ascontiguousarray(labels[t])) for t in exported.TASKS}
    return x, y


train_x, train_y = split("")
test_x, test_y = split("test_")
optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
loss_fn = torch.nn.CrossEntropyLoss()
seconds = []
n = train_x.shape[0]
for epoch in range(args.epochs):
    net.train()
    start = time.perf_counter()
    order = torch.randperm(n)
    for b in range(0, n, args.batch_size):
        idx = order[b : b + args.batch_size]
        outputs = net(train_x[idx])
        loss = sum(loss_fn(outputs[t], train_y[t][idx]) for t in exported.TASKS)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds.append(time.perf_counter() - start)

net.eval()
correct = {t: 0 for t in exported.TASKS}
with torch.no_grad():
    for b in range(0, test_x.shape[0], 1024):
        outputs = net(test_x[b : b + 1024])
        for t in exported.TASKS:
            correct[t] += int((outputs[t].argmax(1) == test_y[t][b : b + 1024]).sum())
accuracy = {t: c / test_x.shape[0] for t, c in correct.items()}
print(json.dumps({
    "framework": f"pytorch {torch.__version__}",
    "seed": args.seed,
    "threads": args.threads,
    "init": str(args.init) if args.init else "pytorch",
    "seconds_per_epoch": seconds,
    "test_accuracy": accuracy,
}))
