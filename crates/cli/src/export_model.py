
import json
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

# The run this module rebuilds: preset, architecture, sample shape [C, H, W] (or [F]) and
# tasks, each {"name", "kind", "outputs"}.
RUN = json.loads(RUN_JSON)
TASKS = [t["name"] for t in RUN["tasks"]]


class GlobalAvgPool(nn.Module):
    """[B, C, H, W] -> [B, C]: the mean over each feature map."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def trunk_stages(preset, sample, hidden):
    """The preset's trunk as a list of stages, each a list of layers. Numbered in one sequence
    over all stages, the layers carry the names of the checkpoint (`trunk.1.weight`, ...)."""
    if preset == "mlp":
        features = int(np.prod(sample))
        return [
            [nn.Flatten(), nn.Linear(features, 2 * hidden), nn.ReLU()],
            [nn.Linear(2 * hidden, hidden), nn.ReLU()],
        ]
    c, h, w = sample
    if preset == "conv":
        flat = 32 * (h // 4) * (w // 4)
        return [
            [nn.Conv2d(c, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)],
            [nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)],
            [nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU()],
        ]
    if preset == "lenet":
        side = lambda s: ((s - 8) // 2 - 4) // 2
        flat = 20 * side(h) * side(w)
        return [
            [nn.Conv2d(c, 10, 9), nn.MaxPool2d(2), nn.ReLU()],
            [nn.Conv2d(10, 20, 5), nn.MaxPool2d(2), nn.ReLU()],
            [nn.Flatten(), nn.Linear(flat, 50), nn.ReLU()],
        ]
    if preset == "multitasknet":
        return [
            [nn.Conv2d(c, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)],
            [nn.Conv2d(16, 32, 3, padding=1), nn.ReLU()],
        ]
    raise ValueError(f"unknown preset {preset!r}")


def representation_width(preset, hidden):
    """The width of the trunk's vector output, or None for MultiTaskNet's 32 feature maps."""
    return {"mlp": hidden, "conv": hidden, "lenet": 50}.get(preset)


class Staged(nn.Sequential):
    """A trunk (or a tower, or an expert) as one numbered sequence of layers, runnable stage
    by stage: `stage(k)` is the layers of stage k."""

    def __init__(self, stages):
        super().__init__(*[layer for stage in stages for layer in stage])
        self.bounds = np.cumsum([0] + [len(stage) for stage in stages]).tolist()

    def stage(self, k):
        return nn.Sequential(*list(self)[self.bounds[k] : self.bounds[k + 1]])

    def stages(self):
        return len(self.bounds) - 1


def new_trunk():
    return Staged(trunk_stages(RUN["preset"], RUN["sample"], RUN["hidden"]))


def new_head(task):
    """A task's head on the trunk's representation (under `heads.<task>`)."""
    width = representation_width(RUN["preset"], RUN["hidden"])
    out = task["outputs"]
    if width is not None:
        return nn.Linear(width, out)
    if task["kind"] in ("classification", "regression"):
        return nn.Sequential(GlobalAvgPool(), nn.Linear(32, out))
    # A per-pixel head: back to the input's resolution.
    return nn.Sequential(
        nn.Conv2d(32, 16, 3, padding=1),
        nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(16, out, 1),
    )


def new_heads():
    return nn.ModuleDict(OrderedDict((t["name"], new_head(t)) for t in RUN["tasks"]))


def mix(gate, experts):
    """sum_k gate[:, k] * experts[k]: the experts' outputs mixed per sample."""
    stacked = torch.stack(experts, dim=0)
    g = gate.transpose(0, 1).reshape(gate.shape[1], gate.shape[0], *([1] * (stacked.dim() - 2)))
    return (stacked * g).sum(dim=0)


def gate_weights(gate, x):
    """softmax(W flat(x) + b) over the experts."""
    return torch.softmax(gate(x.flatten(1)), dim=1)


def outputs(heads, representations):
    return OrderedDict(
        (name, heads[name](z)) for name, z in zip(TASKS, representations)
    )


class HardSharing(nn.Module):
    """One trunk shared by every task, a head per task."""

    def __init__(self):
        super().__init__()
        self.trunk = new_trunk()
        self.heads = new_heads()

    def forward(self, x):
        z = self.trunk(x)
        return outputs(self.heads, [z] * len(TASKS))


class SoftSharing(nn.Module):
    """A tower per task (their coupling penalty acts only in training)."""

    def __init__(self):
        super().__init__()
        self.towers = nn.ModuleDict(OrderedDict((name, new_trunk()) for name in TASKS))
        self.heads = new_heads()

    def forward(self, x):
        return outputs(self.heads, [self.towers[name](x) for name in TASKS])


class CrossStitch(nn.Module):
    """A tower per task, mixed after every stage but the last by a T x T unit:
    x_i <- sum_j alpha_ij x_j."""

    def __init__(self):
        super().__init__()
        self.towers = nn.ModuleDict(OrderedDict((name, new_trunk()) for name in TASKS))
        self.heads = new_heads()
        t, depth = len(TASKS), self.towers[TASKS[0]].stages()
        self.stitch = nn.ParameterDict(
            OrderedDict((str(k), nn.Parameter(torch.eye(t))) for k in range(depth - 1))
        )

    def forward(self, x):
        xs = [x] * len(TASKS)
        depth = self.towers[TASKS[0]].stages()
        for k in range(depth):
            xs = [self.towers[name].stage(k)(z) for name, z in zip(TASKS, xs)]
            if str(k) in self.stitch:
                shape = xs[0].shape
                mixed = self.stitch[str(k)] @ torch.stack(xs, 0).reshape(len(xs), -1)
                xs = [mixed[i].reshape(shape) for i in range(len(xs))]
        return outputs(self.heads, xs)


class Mmoe(nn.Module):
    """K shared experts, mixed for each task by a softmax gate on the flattened input."""

    def __init__(self):
        super().__init__()
        k, inputs = RUN["experts"], int(np.prod(RUN["sample"]))
        self.experts_shared = nn.ModuleList([new_trunk() for _ in range(k)])
        self.gate_specific = nn.ModuleDict(
            OrderedDict((name, nn.ModuleList([nn.Linear(inputs, k)])) for name in TASKS)
        )
        self.heads = new_heads()

    def forward(self, x):
        experts = [e(x) for e in self.experts_shared]
        mixed = [mix(gate_weights(self.gate_specific[name][0], x), experts) for name in TASKS]
        return outputs(self.heads, mixed)


class Ple(nn.Module):
    """CGC (one level: the whole trunk) or PLE (a level per stage): shared experts and each
    task's own, mixed by a gate per task; below the last level a shared gate mixes all of the
    level's experts for the shared branch."""

    def __init__(self, per_stage):
        super().__init__()
        ks, kt = RUN["experts"], RUN["task_experts"]

        def expert():
            t = new_trunk()
            return t if per_stage else Staged([list(t)])

        self.experts_shared = nn.ModuleList([expert() for _ in range(ks)])
        self.experts_specific = nn.ModuleDict(
            OrderedDict((name, nn.ModuleList([expert() for _ in range(kt)])) for name in TASKS)
        )
        self.levels = self.experts_shared[0].stages()
        # The size of what each level reads, found by running the experts on a sample.
        sizes, z = [], torch.zeros(1, *RUN["sample"])
        with torch.no_grad():
            for level in range(self.levels):
                sizes.append(z[0].numel())
                z = self.experts_shared[0].stage(level)(z)
        self.gate_specific = nn.ModuleDict(
            OrderedDict(
                (name, nn.ModuleList([nn.Linear(s, ks + kt) for s in sizes])) for name in TASKS
            )
        )
        every = ks + kt * len(TASKS)
        self.gate_shared = nn.ModuleList([nn.Linear(s, every) for s in sizes[:-1]])
        self.heads = new_heads()

    def forward(self, x):
        task_inputs, shared_input = [x] * len(TASKS), x
        for level in range(self.levels):
            shared = [e.stage(level)(shared_input) for e in self.experts_shared]
            own = [
                [e.stage(level)(z) for e in self.experts_specific[name]]
                for name, z in zip(TASKS, task_inputs)
            ]
            task_inputs = [
                mix(gate_weights(self.gate_specific[name][level], z), shared + own[t])
                for t, (name, z) in enumerate(zip(TASKS, task_inputs))
            ]
            if level + 1 < self.levels:
                every = shared + [e for experts in own for e in experts]
                shared_input = mix(gate_weights(self.gate_shared[level], shared_input), every)
        return outputs(self.heads, task_inputs)


class Mtan(nn.Module):
    """A shared trunk in stages and, per task and stage, a sigmoid attention mask on the
    shared features: a_0 = s(A_0(p_0)), a_k = s(A_k([p_k ; S_k(a_{k-1} p_{k-1})]))."""

    def __init__(self):
        super().__init__()
        self.trunk = new_trunk()
        shapes, z = [], torch.zeros(1, *RUN["sample"])
        with torch.no_grad():
            for k in range(self.trunk.stages()):
                z = self.trunk.stage(k)(z)
                shapes.append(list(z.shape[1:]))

        def layer(k, shape):
            c_in = shape[0] if k == 0 else 2 * shape[0]
            return nn.Linear(c_in, shape[0]) if len(shape) == 1 else nn.Conv2d(c_in, shape[0], 1)

        self.attention = nn.ModuleDict(
            OrderedDict(
                (name, nn.ModuleList([layer(k, s) for k, s in enumerate(shapes)]))
                for name in TASKS
            )
        )
        self.heads = new_heads()

    def forward(self, x):
        shared, p = [], x
        for k in range(self.trunk.stages()):
            p = self.trunk.stage(k)(p)
            shared.append(p)
        attended = []
        for name in TASKS:
            a = None
            for k, (layer, p) in enumerate(zip(self.attention[name], shared)):
                z = p if a is None else torch.cat([p, self.trunk.stage(k)(a)], dim=1)
                a = torch.sigmoid(layer(z)) * p
            attended.append(a)
        return outputs(self.heads, attended)


def build():
    """The run's architecture, with freshly initialised parameters."""
    arch = RUN["arch"]
    if arch == "hard":
        return HardSharing()
    if arch == "soft":
        return SoftSharing()
    if arch == "cross-stitch":
        return CrossStitch()
    if arch == "mmoe":
        return Mmoe()
    if arch in ("cgc", "ple"):
        return Ple(per_stage=arch == "ple")
    if arch == "mtan":
        return Mtan()
    raise ValueError(f"unknown architecture {arch!r}")


# safetensors' dtype names, as numpy types.
DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
    "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


def read_safetensors(path):
    """Every tensor of a safetensors file, as numpy arrays: with the safetensors package when
    it is installed, else by reading the format (an 8-byte header length, a JSON header of
    dtypes, shapes and offsets, then the raw little-endian data)."""
    try:
        from safetensors.numpy import load_file
    except ImportError:
        load_file = None
    if load_file is not None:
        return load_file(str(path))
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(length))
        data = f.read()
    arrays = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        dtype = np.dtype(DTYPES[entry["dtype"]]).newbyteorder("<")
        arrays[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(entry["shape"])
    return arrays


def load(path="checkpoint.safetensors"):
    """The run's model with the checkpoint's parameters (loaded with strict=True), in eval
    mode. The optimizer's state and a weighting's own parameters (keys `optimizer.*` and
    `weighting.*`) are not part of the model and are left out."""
    arrays = read_safetensors(path)
    state = {
        name: torch.from_numpy(np.array(a, dtype=a.dtype.newbyteorder("=")))
        for name, a in arrays.items()
        if not name.startswith(("optimizer.", "weighting."))
    }
    model = build()
    model.load_state_dict(state, strict=True)
    return model.eval()


if __name__ == "__main__":
    import pathlib
    import sys

    here = pathlib.Path(__file__).resolve().parent
    checkpoint = sys.argv[1] if len(sys.argv) > 1 else here / "checkpoint.safetensors"
    model = load(checkpoint)
    count = sum(p.numel() for p in model.parameters())
    print(f"{RUN['description']}\n{count} parameters loaded from {checkpoint}")
    x = torch.zeros(2, *RUN["sample"])
    with torch.no_grad():
        for name, y in model(x).items():
            print(f"  {name}: output {list(y.shape)} for input {list(x.shape)}")
