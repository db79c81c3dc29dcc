"""Cost of the training statistics (train.statistics, docs/DIAGNOSTICS.md) on the CPU demo.

Trains the demo model (configs/demo.yaml, its prepared data) with the training loop's own step
functions: forward + backward (`train._forward_backward`), clip, finite check, optimizer step, the
interval sums, and at the last step of each block the log record (with statistics: the weight copy
before the step, the output norm and update ratio after it). Blocks of `--block` steps alternate
statistics off / on in pairs (ABBA order, so drift and a busy neighbour fall on both), each block on
the same batches; prints the median time per step of each mode and the median and quartiles of the
per-pair ratio on / off, in wall time and in this process's CPU time (steadier than wall time when
other jobs share the cores).

    OMP_NUM_THREADS=2 python scripts/bench_diagnostics.py --pairs 10 --block 25 --output results/cpu/diagnostics.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from translate.batching import BatchStream  # noqa: E402
from translate.config import load_config  # noqa: E402
from translate.data import prepare  # noqa: E402
from translate.metrics import Interval  # noqa: E402
from translate.model import Transformer  # noqa: E402
from translate.runtime import Distributed  # noqa: E402
from translate.tokenizer import PAD_ID, Tokenizer  # noqa: E402
from translate.train import (TrainState, _build_optimizer, _forward_backward, _weight_statistics,  # noqa: E402
                             _weight_vector)

REPO = Path(__file__).resolve().parent.parent


def run_block(model, optimizer, batches, cfg, env, *, statistics_on: bool) -> tuple[float, float]:
    """Wall and CPU (this process's) seconds per step of one block, the last step logged."""
    cfg.train.statistics = statistics_on
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    interval = Interval(statistics=statistics_on)
    start, start_cpu = time.perf_counter(), time.process_time()
    for i, batch in enumerate(batches):
        n_tokens = batch.n_tgt_tokens
        sums, peak = _forward_backward(model, model.output_proj.weight, [batch], cfg, env, nullcontext(), scaler,
                                       n_tokens)
        log_step = i == len(batches) - 1
        before = _weight_vector(model) if log_step and statistics_on else None
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_norm)
        torch.stack([sums[0].isfinite(), grad_norm.isfinite()]).tolist()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        interval.add(sums, n_tokens, grad_norm, peak)
        if log_step:
            interval.report(TrainState(step=i + 1), lr=cfg.optim.lr, elapsed=0.0, world_size=1,
                            weights=_weight_statistics(model, before) if before is not None else None)
    return (time.perf_counter() - start) / len(batches), (time.process_time() - start_cpu) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    parser.add_argument("--pairs", type=int, default=10, help="ABBA pairs of blocks (each mode once per pair)")
    parser.add_argument("--block", type=int, default=25, help="steps per block")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    cfg = load_config(args.config)
    data = prepare(cfg, verbose=False)
    tokenizer = Tokenizer(data.tokenizer_file)
    torch.manual_seed(cfg.train.seed)
    model = Transformer(cfg.model, vocab_size=tokenizer.vocab_size, pad_id=PAD_ID).train()
    optimizer = _build_optimizer(model, cfg, torch.device("cpu"))
    stream = BatchStream(data.train, max_tokens=cfg.train.max_tokens, seed=cfg.train.seed, rank=0, world_size=1,
                         pin_memory=False)
    batches = [stream.get(0, i) for i in range(args.block)]
    env = Distributed()
    for _ in range(max(1, math.ceil(args.warmup / args.block))):
        run_block(model, optimizer, batches, cfg, env, statistics_on=True)
    times = {(clock, mode): [] for clock in ("wall", "cpu") for mode in (False, True)}
    ratios = {"wall": [], "cpu": []}
    for pair in range(args.pairs):
        order = (False, True) if pair % 2 == 0 else (True, False)
        seconds = {mode: run_block(model, optimizer, batches, cfg, env, statistics_on=mode) for mode in order}
        line = [f"pair {pair + 1}:"]
        for i, clock in enumerate(("wall", "cpu")):
            for mode in (False, True):
                times[clock, mode].append(seconds[mode][i])
            ratios[clock].append(seconds[True][i] / seconds[False][i])
            line.append(f"{clock} off {seconds[False][i] * 1e3:.1f} / on {seconds[True][i] * 1e3:.1f} ms per step, "
                        f"ratio {ratios[clock][-1]:.4f};")
        print(" ".join(line), flush=True)
    result = {"config": args.config, "block_steps": args.block, "pairs": args.pairs,
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    for clock in ("wall", "cpu"):
        q1, median, q3 = np.percentile(ratios[clock], [25, 50, 75])
        off, on = (statistics.median(times[clock, mode]) * 1e3 for mode in (False, True))
        result[clock] = {"ms_per_step_off": off, "ms_per_step_on": on, "ratio_median": median, "ratio_q1": q1,
                         "ratio_q3": q3, "ratios": ratios[clock]}
        print(f"{clock} time, median ms/step: off {off:.1f}, on {on:.1f}; ratio on/off median {median:.4f} "
              f"(quartiles {q1:.4f}-{q3:.4f}, {args.pairs} pairs)")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
