#!/usr/bin/env bash
# Training-loop speed as users get it (issue #5): `translate train` and the HF peer (scripts/peer_marian.py),
# one after another, each alone on the GPU for SECONDS of training loop with CONFIG's full recipe (its
# dropouts, batches, optimizer) and no periodic validation (EVAL_EVERY=n: validate, and for translate
# save checkpoints, every n steps, as real runs do); then the median target tokens/s of each one's
# logged intervals after step SKIP (the peer's first ~200 steps run about 2x slower than later; a
# compiled loop compiles in its first steps), and the ratios.
# SYSTEMS picks the loops, in order: translate, translate_compiled (`translate train` with
# train.compile=true, COMPILED_SECONDS of loop: compiling comes out of its clock), peer_marian.
# The benchmark (scripts/bench_train.py) times isolated steps; this times the loops themselves.
# Usage: TRANSLATE_DATA=/path/to/shared/data OUT=results_dir bash scripts/gpu_loop_speed.sh [seconds]
set -euo pipefail
SECONDS_BUDGET=${1:-120}
COMPILED_SECONDS=${COMPILED_SECONDS:-$SECONDS_BUDGET}
CONFIG=${CONFIG:-configs/trainmix_postnorm.yaml}
SYSTEMS=${SYSTEMS:-translate peer_marian}
SKIP=${SKIP:-200}
OUT=${OUT:-results/loop_speed}
RUNS=${RUNS:-/tmp/loop_runs}
NEVER=1000000  # steps: no periodic validation or checkpoint inside the timed loop
EVAL_EVERY=${EVAL_EVERY:-$NEVER}
for system in $SYSTEMS; do  # every name checked before any GPU time is spent
  case $system in
    translate | translate_compiled | peer_marian) ;;
    *) echo "unknown system in SYSTEMS: $system (translate, translate_compiled, peer_marian)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT" "$RUNS"
python3 -m translate prepare --config "$CONFIG" > "$OUT/prepare.log"

translate_loop() {  # translate_loop <name> <seconds> [--set key=value ...]
  local name=$1 seconds=$2
  shift 2
  python3 -m translate train --overwrite --config "$CONFIG" --set "train.max_time=$seconds" \
    --set "train.eval_every=$EVAL_EVERY" --set "train.save_every=$EVAL_EVERY" --set "train.out_dir=$RUNS/$name" "$@" \
    > "$OUT/$name.log" 2>&1
  cp "$RUNS/$name/metrics.jsonl" "$OUT/metrics_$name.jsonl"
}

for system in $SYSTEMS; do
  case $system in
    translate) translate_loop translate "$SECONDS_BUDGET" ;;
    translate_compiled) translate_loop translate_compiled "$COMPILED_SECONDS" --set train.compile=true ;;
    peer_marian)
      python3 scripts/peer_marian.py --config "$CONFIG" --max-time "$SECONDS_BUDGET" --eval-every "$EVAL_EVERY" \
        --output "$OUT/peer_marian.json" --hyp "$OUT/hyp_peer_marian.txt" --metrics "$OUT/metrics_peer_marian.jsonl" \
        > "$OUT/peer_marian.log" 2>&1 ;;
  esac
done
PYTHONPATH=scripts python3 - "$OUT" "$SKIP" $SYSTEMS <<'PY' | tee "$OUT/loop_speed.txt"
import statistics, sys
from pathlib import Path
from report_common import read_jsonl, split_records
out, skip, names = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
rates = {}
for name in names:
    train, _ = split_records(read_jsonl(out / f"metrics_{name}.jsonl"))
    after = [r["tgt_tokens_per_s"] for r in train if r["step"] > skip]
    if not after:  # e.g. a compiled loop whose compilation took most of its seconds
        print(f"{name}: {train[-1]['step'] if train else 0} steps logged, no interval after step {skip}: no rate")
        continue
    rates[name] = statistics.median(after)
    print(f"{name}: {train[-1]['step']} steps logged; median target tokens/s after step {skip}: "
          f"{rates[name]:,.0f} over {len(after)} intervals")
# every loop against the peer, then every translate variant against the eager loop
pairs = [(n, "peer_marian") for n in names if n != "peer_marian"]
pairs += [(n, "translate") for n in names if n not in ("translate", "peer_marian")]
for name, reference in pairs:
    if name in rates and reference in rates:
        print(f"{name} / {reference}: {rates[name] / rates[reference]:.2f}x")
PY
