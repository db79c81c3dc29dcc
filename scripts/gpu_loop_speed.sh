#!/usr/bin/env bash
# Training-loop speed as users get it (issue #5): `translate train` and the HF peer (scripts/peer_marian.py),
# one after another, each alone on the GPU for SECONDS of training loop with CONFIG's full recipe (its
# dropouts, batches, optimizer) and no periodic validation (EVAL_EVERY=n: validate, and for translate
# save checkpoints, every n steps, as real runs do); then the median target tokens/s of each one's
# logged intervals after step SKIP (the peer's first ~200 steps run about 2x slower than later).
# The benchmark (scripts/bench_train.py) times isolated steps; this times the loops themselves.
# Usage: TRANSLATE_DATA=/path/to/shared/data OUT=results_dir bash scripts/gpu_loop_speed.sh [seconds]
set -euo pipefail
SECONDS_BUDGET=${1:-120}
CONFIG=${CONFIG:-configs/trainmix_postnorm.yaml}
SKIP=${SKIP:-200}
OUT=${OUT:-results/loop_speed}
RUNS=${RUNS:-/tmp/loop_runs}
NEVER=1000000  # steps: no periodic validation or checkpoint inside the timed loop
EVAL_EVERY=${EVAL_EVERY:-$NEVER}
mkdir -p "$OUT" "$RUNS"
python3 -m translate prepare --config "$CONFIG" > "$OUT/prepare.log"
python3 -m translate train --overwrite --config "$CONFIG" --set "train.max_time=$SECONDS_BUDGET" \
  --set "train.eval_every=$EVAL_EVERY" --set "train.save_every=$EVAL_EVERY" --set "train.out_dir=$RUNS/translate" \
  > "$OUT/translate.log" 2>&1
cp "$RUNS/translate/metrics.jsonl" "$OUT/metrics_translate.jsonl"
python3 scripts/peer_marian.py --config "$CONFIG" --max-time "$SECONDS_BUDGET" --eval-every "$EVAL_EVERY" \
  --output "$OUT/peer_marian.json" --hyp "$OUT/hyp_peer_marian.txt" --metrics "$OUT/metrics_peer_marian.jsonl" \
  > "$OUT/peer_marian.log" 2>&1
PYTHONPATH=scripts python3 - "$OUT" "$SKIP" <<'PY' | tee "$OUT/loop_speed.txt"
import statistics, sys
from pathlib import Path
from report_common import read_jsonl, split_records
out, skip = Path(sys.argv[1]), int(sys.argv[2])
rates = {}
for name in ("translate", "peer_marian"):
    train, _ = split_records(read_jsonl(out / f"metrics_{name}.jsonl"))
    rates[name] = [r["tgt_tokens_per_s"] for r in train if r["step"] > skip]
    last = train[-1]["step"]
    print(f"{name}: {last} steps logged; median target tokens/s after step {skip}: "
          f"{statistics.median(rates[name]):,.0f} over {len(rates[name])} intervals")
print(f"translate / peer: {statistics.median(rates['translate']) / statistics.median(rates['peer_marian']):.2f}x")
PY
