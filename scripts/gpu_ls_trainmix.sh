#!/usr/bin/env bash
# Label-smoothing ablation on the training mix: both arms (epsilon 0.1 and 0.0, same seed) side by
# side on one GPU. MODE=train starts them, MODE=resume continues them; MODE=eval scores the best and
# the averaged last-3 checkpoints with beam 4 on newstest2014 and measures dev calibration.
# Usage: TRANSLATE_DATA=/path/to/shared/data OUT=results_dir MODE=train bash scripts/gpu_ls_trainmix.sh [seconds]
set -euo pipefail
SECONDS_BUDGET=${1:-400}
MODE=${MODE:-train}
RUNS=${RUNS:-/tmp/runs}
OUT=${OUT:-results/trainmix}
mkdir -p "$OUT" "$RUNS"
COMMON=(--set model.norm_first=true --set optim.lr=7e-4 --set train.max_steps=100000
        --set "train.max_time=$SECONDS_BUDGET" --set train.eval_every=500 --set train.save_every=500
        --set train.keep_last=5)
if [ "$MODE" != eval ]; then
  python3 -m translate prepare --config configs/trainmix_base.yaml "${COMMON[@]}" > "$OUT/prepare.log"
  flag=--overwrite; [ "$MODE" = resume ] && flag=--resume
  for eps in 0.1 0.0; do
    # max_time counts training seconds of the whole run, so a resumed run adds SECONDS_BUDGET more.
    budget=$SECONDS_BUDGET
    [ "$MODE" = resume ] && budget=$(python3 -c "import torch,sys; s=torch.load('$RUNS/ls$eps/checkpoint_last.pt',weights_only=True)['state']['train_seconds']; print(int(s)+$SECONDS_BUDGET)")
    python3 -m translate train $flag --config configs/trainmix_base.yaml "${COMMON[@]}" --set "train.max_time=$budget" \
      --set "train.label_smoothing=$eps" --set "train.out_dir=$RUNS/ls$eps" >> "$OUT/train_ls$eps.log" 2>&1 &
  done
  wait
fi
if [ "$MODE" != train ]; then
  for eps in 0.1 0.0; do
    cp "$RUNS/ls$eps/metrics.jsonl" "$OUT/metrics_ls$eps.jsonl"
    python3 -m translate average --last 3 "$RUNS/ls$eps" --output "$RUNS/ls$eps/avg.pt"
    for ckpt in best avg; do
      file="$RUNS/ls$eps/checkpoint_best.pt"; [ $ckpt = avg ] && file="$RUNS/ls$eps/avg.pt"
      python3 -m translate eval --checkpoint "$file" --beam 4 --lenpen 0.6 \
        --output "$OUT/hyp_${ckpt}_ls$eps.txt" --json "$OUT/eval_${ckpt}_ls$eps.json" > "$OUT/eval_${ckpt}_ls$eps.log"
      python3 scripts/calibrate.py --checkpoint "$file" --output "$OUT/calib_${ckpt}_ls$eps.json"
    done
  done
fi
