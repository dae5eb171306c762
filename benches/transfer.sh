#!/usr/bin/env bash
# Few-shot transfer on MultiDigits: test accuracy against K (examples per class) on two tasks no
# run trained (the parity of the left digit, and "left digit >= 5"), from scratch and from four
# trunks, each trained once per seed:
#   mtl     tapestry train (hard sharing, GradNorm, all three tasks), 25 epochs
#   left    tapestry train --tasks left_digit (single task), 25 epochs
#   right   tapestry train --tasks right_digit (single task), 25 epochs
#   maml    tapestry meta-train --algo maml on 5-way 5-shot episodes of the MultiDigits training
#           images labelled by their left digit (classes 0-4; 5-9 are its held-out classes),
#           with the MLP trunk's widths 256,128
# Each fine-tuning puts a fresh linear head on the trunk, freezes the trunk (scratch trains
# everything) and takes 100 full-batch Adam steps at 1e-2 on K examples per class.
#
#   benches/transfer.sh [OUT]        (default runs/transfer; about 4 minutes on one core)
set -euo pipefail
OUT=${1:-runs/transfer}
SEEDS=${SEEDS:-0,1,2,3,4}
cargo build --release -q -p tapestry-cli
T=target/release/tapestry
mkdir -p "$OUT"
for s in ${SEEDS//,/ }; do
  $T train --seed "$s" --threads 1 -q --out "$OUT/mtl-$s"
  $T train --seed "$s" --threads 1 -q --method ew --tasks left_digit --out "$OUT/left-$s"
  $T train --seed "$s" --threads 1 -q --method ew --tasks right_digit --out "$OUT/right-$s"
  $T meta-train --seed "$s" --threads 1 -q --algo maml --benchmark episodes --pool multidigits \
    --widths 256,128 --ways 5 --shots 5 --queries 10 --inner-steps 1 --inner-lr 0.1 \
    --meta-batch 10 --iterations 2000 --eval-tasks 200 --eval-steps 5 --out "$OUT/maml-$s"
done
FROM="scratch,mtl=$OUT/mtl-{seed},single-task left=$OUT/left-{seed},single-task right=$OUT/right-{seed},maml=$OUT/maml-{seed}"
for task in left_parity left_ge5; do
  $T finetune --task "$task" --from "$FROM" --shots 1,5,10,50 --seed "$SEEDS" --threads 1 \
    --out "$OUT/$task" | tail -7
done
