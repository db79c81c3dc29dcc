#!/usr/bin/env bash
# Multi30k label-smoothing track: epsilon in {0.0, 0.1, 0.2} x seeds {1, 2, 3}, all runs side by side
# on one GPU; then beam-4 test2016 BLEU and dev calibration of each best checkpoint.
# Usage: TRANSLATE_DATA=/path/to/shared/data OUT=results_dir bash scripts/gpu_multi30k.sh [seconds]
set -euo pipefail
SECONDS_BUDGET=${1:-300}
RUNS=${RUNS:-/tmp/runs}
OUT=${OUT:-results/multi30k}
mkdir -p "$OUT" "$RUNS"
python3 -m translate prepare --config configs/multi30k_small.yaml > "$OUT/prepare.log"
for eps in 0.0 0.1 0.2; do
  for seed in 1 2 3; do
    python3 -m translate train --overwrite --config configs/multi30k_small.yaml --set "train.max_time=$SECONDS_BUDGET" \
      --set "train.label_smoothing=$eps" --set "train.seed=$seed" --set "train.out_dir=$RUNS/m30k_ls${eps}_s$seed" \
      > "$OUT/train_ls${eps}_s$seed.log" 2>&1 &
  done
done
wait
for eps in 0.0 0.1 0.2; do
  for seed in 1 2 3; do
    run="$RUNS/m30k_ls${eps}_s$seed"
    cp "$run/metrics.jsonl" "$OUT/metrics_ls${eps}_s$seed.jsonl"
    python3 -m translate eval --checkpoint "$run/checkpoint_best.pt" --beam 4 --lenpen 0.6 \
      --output "$OUT/hyp_ls${eps}_s$seed.txt" --json "$OUT/eval_ls${eps}_s$seed.json" > "$OUT/eval_ls${eps}_s$seed.log" &
    python3 scripts/calibrate.py --checkpoint "$run/checkpoint_best.pt" --output "$OUT/calib_ls${eps}_s$seed.json" \
      > "$OUT/calib_ls${eps}_s$seed.log" &
  done
done
wait
