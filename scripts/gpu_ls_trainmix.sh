#!/usr/bin/env bash
# Label-smoothing ablation on the training mix: one run per epsilon in EPS (same config, same seed).
#   MODE=train   start the arms (fresh run directories), MODE=resume continue them,
#   MODE=eval    score the best and the averaged last-3 checkpoints with beam 4 on newstest2014 and
#                measure dev calibration, MODE=train_eval does train then eval in one go.
#   PARALLEL=1   the arms train side by side on the GPU (v1-v3); by default one after another, each
#                alone on the GPU for SECONDS of training (train.max_time).
#   STEPS=n      each arm stops at step n instead of at SECONDS (to give an arm the steps another one
#                reached in its SECONDS), with the clock only as a safety net at twice SECONDS.
# Usage: TRANSLATE_DATA=/path/to/shared/data OUT=results_dir MODE=train bash scripts/gpu_ls_trainmix.sh [seconds]
#   v3:  PARALLEL=1 MODE=train ... 440, then MODE=eval
#   v4:  CONFIG=configs/trainmix_postnorm.yaml EPS=0.1 MODE=train_eval ... 280,
#        then the same with EPS=0.0 STEPS=<the step the first arm reached>
#   v5:  CONFIG=configs/trainmix_postnorm.yaml EPS=0.1 MODE=train ... 480, then EPS=0.0 STEPS=<its step>,
#        then EPS="0.1 0.0" MODE=eval
set -euo pipefail
SECONDS_BUDGET=${1:-400}
MODE=${MODE:-train}
CONFIG=${CONFIG:-configs/trainmix_base.yaml}
EPS=${EPS:-0.1 0.0}
PARALLEL=${PARALLEL:-0}
STEPS=${STEPS:-}
RUNS=${RUNS:-/tmp/runs}
OUT=${OUT:-results/trainmix}
mkdir -p "$OUT" "$RUNS"

train_arm() {  # train_arm <epsilon>
  local eps=$1 flag=--overwrite budget=$SECONDS_BUDGET limits=()
  if [ "$MODE" = resume ]; then
    flag=--resume  # max_time counts training seconds of the whole run: a resumed run adds SECONDS_BUDGET
    budget=$(python3 -c "import torch,sys; s=torch.load(sys.argv[1], weights_only=True)['state']['train_seconds']; print(int(s) + int(sys.argv[2]))" \
      "$RUNS/ls$eps/checkpoint_last.pt" "$SECONDS_BUDGET")
  fi
  limits=(--set "train.max_time=$budget")
  [ -n "$STEPS" ] && limits=(--set "train.max_steps=$STEPS" --set "train.max_time=$((2 * budget))")
  python3 -m translate train $flag --config "$CONFIG" "${limits[@]}" --set "train.label_smoothing=$eps" \
    --set "train.out_dir=$RUNS/ls$eps" >> "$OUT/train_ls$eps.log" 2>&1
}

eval_arm() {  # eval_arm <epsilon>
  local eps=$1 run=$RUNS/ls$1 file
  cp "$run/metrics.jsonl" "$OUT/metrics_ls$eps.jsonl"
  python3 -m translate average --last 3 "$run" --output "$run/avg.pt" | tee -a "$OUT/eval.out"
  for ckpt in best avg; do
    file="$run/checkpoint_best.pt"; [ $ckpt = avg ] && file="$run/avg.pt"
    python3 -m translate eval --checkpoint "$file" --beam 4 --lenpen 0.6 \
      --output "$OUT/hyp_${ckpt}_ls$eps.txt" --json "$OUT/eval_${ckpt}_ls$eps.json" > "$OUT/eval_${ckpt}_ls$eps.log"
    python3 scripts/calibrate.py --checkpoint "$file" --output "$OUT/calib_${ckpt}_ls$eps.json" | tee -a "$OUT/eval.out"
  done
}

if [ "$MODE" != eval ]; then
  python3 -m translate prepare --config "$CONFIG" > "$OUT/prepare.log"
  pids=()
  for eps in $EPS; do
    if [ "$PARALLEL" = 1 ]; then train_arm "$eps" & pids+=($!); else train_arm "$eps"; fi
  done
  for pid in "${pids[@]}"; do wait "$pid"; done  # a failed arm fails the script
  for eps in $EPS; do tail -n 2 "$OUT/train_ls$eps.log"; done
fi
if [ "$MODE" = eval ] || [ "$MODE" = train_eval ]; then
  for eps in $EPS; do eval_arm "$eps"; done
fi
