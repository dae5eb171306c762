#!/usr/bin/env bash
# The Multi-Fashion side-by-side: Tapestry and PyTorch train the same LeNet on exactly the same
# data, with the same protocol (equal weighting, Adam 1e-3, batch 256, 10 epochs, PyTorch's
# default initialisation scheme), seed by seed, interleaved in one run:
#   1. tapestry train --dataset multifashion --model lenet ... --seed S   (Tapestry's run)
#   2. tapestry export --pytorch --data RUN                              (its model.py and data)
#   3. python3 benches/multifashion_torch.py RUN --seed S                 (PyTorch on that data)
# Then one table: seconds per epoch (median over epochs) and final test accuracy per task.
#
#   benches/multifashion.sh [OUT]    (default runs/multifashion; THREADS=2, SEEDS=0,1,2, EPOCHS=10;
#                                     PYTHON: a python3 with torch and numpy)
# SHARED_INIT=1 starts PyTorch from Tapestry's initial parameters: the checkpoint of a run of the
# same seed and model that takes one SGD step at lr 1e-30, which changes no float32 parameter
# (every |θ| is far above 1e-30 · |g| / ulp), so it holds the initialisation itself.
set -euo pipefail
OUT=${1:-runs/multifashion}
THREADS=${THREADS:-2}
SEEDS=${SEEDS:-0,1,2}
EPOCHS=${EPOCHS:-10}
PYTHON=${PYTHON:-python3}
cargo build --release -q -p tapestry-cli
T=target/release/tapestry
mkdir -p "$OUT"
for s in ${SEEDS//,/ }; do
  run="$OUT/tapestry-$s"
  $T train --dataset multifashion --model lenet --method ew --optimizer adam --lr 1e-3 \
    --batch-size 256 --epochs "$EPOCHS" --cosines false --seed "$s" --threads "$THREADS" \
    -q --force --out "$run"
  $T export --pytorch --data "$run" >/dev/null
  init=()
  if [ "${SHARED_INIT:-0}" = 1 ]; then
    $T train --dataset multifashion --model lenet --method ew --optimizer sgd --lr 1e-30 \
      --batch-size 1 --limit 1 --epochs 1 --cosines false --seed "$s" -q --force --out "$OUT/init-$s"
    init=(--init "$OUT/init-$s/checkpoint.safetensors")
  fi
  "$PYTHON" benches/multifashion_torch.py "$run" --epochs "$EPOCHS" --seed "$s" \
    --threads "$THREADS" "${init[@]}" > "$OUT/torch-$s.json"
  rm -r "$run/data"
done
"$PYTHON" - "$OUT" "$SEEDS" <<'PY'
import json, pathlib, statistics, sys
out, seeds = pathlib.Path(sys.argv[1]), sys.argv[2].split(",")
rows = []
for s in seeds:
    log = [json.loads(l) for l in open(out / f"tapestry-{s}" / "metrics.jsonl")]
    epochs = [r for r in log if r["kind"] == "epoch"]
    ours = {"seconds": [e["seconds"] for e in epochs],
            "acc": {t["task"]: t["value"] for t in epochs[-1]["test"]}}
    torch = json.load(open(out / f"torch-{s}.json"))
    rows.append((s, ours, torch))
tasks = list(rows[0][1]["acc"])
print(f"seed  {'tapestry s/epoch':>16}  {'pytorch s/epoch':>15}  {'ratio':>5}  " +
      "  ".join(f"{t + ' tapestry':>20}  {t + ' pytorch':>19}" for t in tasks))
for s, ours, torch in rows:
    a, b = statistics.median(ours["seconds"]), statistics.median(torch["seconds_per_epoch"])
    print(f"{s:>4}  {a:>16.2f}  {b:>15.2f}  {a / b:>5.2f}  " + "  ".join(
        f"{ours['acc'][t]:>20.4f}  {torch['test_accuracy'][t]:>19.4f}" for t in tasks))
mean = lambda xs: sum(xs) / len(xs)
print("mean  " + " " * 42 + "  ".join(
    f"{mean([o['acc'][t] for _, o, _ in rows]):>20.4f}  {mean([p['test_accuracy'][t] for _, _, p in rows]):>19.4f}"
    for t in tasks))
print(f"({rows[0][2]['framework']}, {rows[0][2]['threads']} threads, PyTorch's initial weights: {rows[0][2]['init']})")
PY
