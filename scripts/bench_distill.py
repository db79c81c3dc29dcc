"""The cost of word-level distillation: a KD training step against a plain one, same student, same batches.

Each arm runs in its own process (so that its peak resident memory is its own), the arms alternate
`--repeats` times (so that a busy machine slows both alike), and each process times `--steps` real
training steps of the config's corpus after `--warmup` untimed ones: the step of translate/train.py
(forward to decoder states, fused projection + loss, backward, clip, AdamW step), with a teacher
forward and the fused KD loss (translate/distill.py) in the `kd` arm. The student is the config's
model; the teacher a model of `--teacher-config`'s size (default: the same config), freshly
initialised: its weights do not change the work.

    python scripts/bench_distill.py --config configs/demo.yaml --steps 40 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from translate.batching import collate_corpus, make_batches  # noqa: E402
from translate.config import load_config  # noqa: E402
from translate.data import prepare  # noqa: E402
from translate.model import Transformer  # noqa: E402
from translate.tokenizer import PAD_ID  # noqa: E402
from translate.train import KDStep, _build_optimizer, batch_loss  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_arm(args) -> dict:
    """One process, one arm: {"arm", "ms_per_step", "rss_before_mb", "peak_rss_mb", "tokens_per_step"}."""
    torch.manual_seed(1)
    cfg = load_config(args.config)
    data = prepare(cfg, verbose=False)
    vocab = int(data.summary["vocab_size"])
    index = make_batches(data.train.src_lengths, data.train.tgt_lengths, max_tokens=cfg.train.max_tokens, seed=1,
                         epoch=0)[: args.warmup + args.steps]
    batches = [collate_corpus(data.train, idx) for idx in index]
    student = Transformer(cfg.model, vocab_size=vocab, pad_id=PAD_ID)
    optimizer = _build_optimizer(student, cfg, torch.device("cpu"))
    kd = None
    if args.arm == "kd":
        teacher_cfg = load_config(args.teacher_config or args.config)
        teacher = Transformer(teacher_cfg.model, vocab_size=vocab, pad_id=PAD_ID).eval().requires_grad_(False)
        kd = KDStep(teacher, alpha=0.5, temperature=2.0)
    rss_before = peak_rss_mb()
    times = []
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        sums = batch_loss(student, student.output_proj.weight, batch, epsilon=0.1, autocast=nullcontext(), kd=kd)
        (sums.loss / batch.n_tgt_tokens).backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    tokens = sum(b.n_tgt_tokens for b in batches[args.warmup:]) / args.steps
    return {"arm": args.arm, "ms_per_step": 1000 * statistics.fmean(times), "rss_before_mb": rss_before,
            "peak_rss_mb": peak_rss_mb(), "tokens_per_step": tokens}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--teacher-config", default="", help="the teacher's size (default: --config's model)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="processes per arm, alternating")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arm", choices=["plain", "kd"], help=argparse.SUPPRESS)  # one child process
    args = parser.parse_args(argv)
    if args.arm:
        torch.set_num_threads(args.threads)
        print(json.dumps(run_arm(args)))
        return 0
    prepare(load_config(args.config), verbose=True)  # once, before the timed children
    results: dict[str, list[dict]] = {"plain": [], "kd": []}
    for repeat in range(args.repeats):
        for arm in ("plain", "kd"):
            child = [sys.executable, __file__, "--arm", arm, "--config", args.config, "--steps", str(args.steps),
                     "--warmup", str(args.warmup), "--threads", str(args.threads)]
            if args.teacher_config:
                child += ["--teacher-config", args.teacher_config]
            out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
            results[arm].append(json.loads(out.strip().splitlines()[-1]))
            print(f"repeat {repeat + 1} {arm}: {results[arm][-1]}", flush=True)
    plain, kd = (statistics.median(r["ms_per_step"] for r in results[a]) for a in ("plain", "kd"))
    peak = {a: max(r["peak_rss_mb"] for r in results[a]) for a in results}
    before = {a: max(r["rss_before_mb"] for r in results[a]) for a in results}
    print(f"median ms/step over {args.repeats} processes x {args.steps} steps "
          f"(~{results['plain'][0]['tokens_per_step']:.0f} target tokens/step, {args.threads} threads):")
    print(f"  plain {plain:.1f}  kd {kd:.1f}  (x{kd / plain:.2f}; per process: "
          f"plain {[round(r['ms_per_step'], 1) for r in results['plain']]}, kd {[round(r['ms_per_step'], 1) for r in results['kd']]})")
    print(f"peak RSS MB: plain {peak['plain']:.0f}  kd {peak['kd']:.0f}  (before the first step: plain "
          f"{before['plain']:.0f}, kd {before['kd']:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
