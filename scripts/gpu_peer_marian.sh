#!/usr/bin/env bash
# Peer baseline (issue #6): Hugging Face MarianMTModel of Transformer-base size, trained from scratch on
# the train-mix (the same prepared data and batches as our runs) for SECONDS of training loop, counted
# as train.max_time counts it, then decoded with beam 4 on newstest2014 and scored with sacreBLEU.
# Default 390 s: the trainmix v1 runs (docs/RESULTS.md), the ones that had the GPU to themselves.
# Usage: TRANSLATE_DATA=/path/to/shared/data OUT=results_dir [CONFIG=configs/x.yaml] bash scripts/gpu_peer_marian.sh [seconds]
# The prepare step is cached under data/: run it in an earlier call to keep it out of this one's time.
set -euo pipefail
SECONDS_BUDGET=${1:-390}
OUT=${OUT:-results/peer_marian}
CONFIG=${CONFIG:-configs/trainmix_base.yaml}  # data, batches, optimizer, schedule, dropout; the peer is post-norm
mkdir -p "$OUT"
python3 -m translate prepare --config "$CONFIG" > "$OUT/prepare.log"
python3 scripts/peer_marian.py --config "$CONFIG" --max-time "$SECONDS_BUDGET" \
  --output "$OUT/peer_marian.json" --hyp "$OUT/hyp_peer_marian.txt" --metrics "$OUT/metrics_peer_marian.jsonl" \
  > "$OUT/peer_marian.log" 2>&1
tail -n 1 "$OUT/peer_marian.log"
