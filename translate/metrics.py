"""Training statistics and logs: perplexity formatting, per-interval sums, the JSONL metrics file."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from translate.errors import UserError


def format_perplexity(nll: float) -> str | float:
    """exp(nll), as a float when it fits, else in scientific notation computed in log space; never capped."""
    if not math.isfinite(nll):
        return str(math.exp(nll)) if nll == -math.inf else "inf" if nll > 0 else "nan"
    if nll < 700:
        return float(f"{math.exp(nll):.6g}")
    exponent10 = nll / math.log(10)
    whole = math.floor(exponent10)
    return f"{10 ** (exponent10 - whole):.3f}e+{whole}"


class Interval:
    """Sums of the training statistics since the last log line (kept on device: no per-step sync)."""

    def __init__(self, extra: tuple[str, ...] = ()):
        self.extra = extra  # names of the sums after (loss, nll, n_correct), logged per token after "loss"
        self.totals = None
        self.tokens = 0
        self.steps = 0
        self.grad_norm = 0.0
        self.start = time.perf_counter()

    def add(self, sums: torch.Tensor, n_tokens: int, grad_norm: torch.Tensor) -> None:
        self.totals = sums.detach() if self.totals is None else self.totals + sums.detach()
        self.tokens += n_tokens
        self.steps += 1
        self.grad_norm = grad_norm

    def report(self, state, *, lr: float, elapsed: float, world_size: int) -> dict:
        """Averages over all ranks' tokens (`self.tokens` already counts every rank): every rank
        gets the same numbers, so decisions taken on them (divergence) agree across ranks."""
        totals = self.totals.double()
        if world_size > 1:
            dist.all_reduce(totals)
        loss, nll, n_correct, *extra = (totals / max(self.tokens, 1)).tolist()
        seconds = time.perf_counter() - self.start
        record = {"kind": "train", "step": state.step, "epoch": state.epoch, "loss": loss,
                  **dict(zip(self.extra, extra, strict=True)), "nll": nll,
                  "ppl": format_perplexity(nll), "accuracy": n_correct, "lr": lr,
                  "grad_norm": float(self.grad_norm), "tgt_tokens_per_s": self.tokens / max(seconds, 1e-9),
                  "skipped_steps": state.skipped_steps, "elapsed_s": elapsed}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            record["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        self.__init__(self.extra)
        return record


def format_record(record: dict) -> str:
    parts = []
    for key, value in record.items():
        if key == "kind":
            continue
        if isinstance(value, float):
            value = f"{value:.4g}" if key not in ("tgt_tokens_per_s", "elapsed_s") else f"{value:.0f}"
        parts.append(f"{key} {value}")
    return " | ".join(parts)


class RunLogger:
    def __init__(self, run_dir: Path, *, enabled: bool):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"

    def line(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text, file=sys.stdout)
            sys.stdout.flush()

    def metrics(self, record: dict) -> None:
        if self.enabled:
            try:
                with open(self.path, "a") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as e:
                raise UserError(f"cannot write {self.path}: {e.strerror or e}; free disk space, then --resume "
                                "(checkpoint_last.pt is intact)") from None
