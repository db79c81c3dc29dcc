"""Training statistics and logs: perplexity formatting, per-interval sums, and the run's logs:
metrics.jsonl (one JSON record per log interval and validation), train.log (every console line,
time-stamped) and, with train.tensorboard, TensorBoard scalars."""

from __future__ import annotations

import json
import math
import sys
import time
from datetime import datetime, timezone
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


# The training statistics' sums (train.statistics), after the loss's and `Interval.extra`'s in the
# step's sums: per token, the largest logit, the entropy, the confidence and p_y.
STATISTICS = ("max_logit", "entropy", "confidence", "p_target")


class Interval:
    """Sums of the training statistics since the last log line (kept on device: no per-step sync).

    A step's sums are those of the loss (loss, −log p_y, correct predictions), then of `extra`
    (e.g. distillation's parts, logged after "loss"), then with `statistics` those of STATISTICS
    (logged at the end, with the interval's peak logit).
    """

    def __init__(self, extra: tuple[str, ...] = (), statistics: bool = False):
        self.extra = extra
        self.statistics = statistics
        self.totals = None
        self.peak_logit = None  # () the largest logit seen in the interval (statistics)
        self.tokens = 0
        self.steps = 0
        self.grad_norm = 0.0
        self.start = time.perf_counter()

    def add(self, sums: torch.Tensor, n_tokens: int, grad_norm: torch.Tensor,
            peak_logit: torch.Tensor | None = None) -> None:
        self.totals = sums.detach() if self.totals is None else self.totals + sums.detach()
        if peak_logit is not None:
            self.peak_logit = peak_logit if self.peak_logit is None else torch.maximum(self.peak_logit, peak_logit)
        self.tokens += n_tokens
        self.steps += 1
        self.grad_norm = grad_norm

    def exclude(self, seconds: float) -> None:
        """Leave `seconds` (a validation) out of the interval's time, so tokens/s is training's alone."""
        self.start += seconds

    def report(self, state, *, lr: float, elapsed: float, world_size: int, confidence_penalty: float = 0.0,
               weights: dict | None = None) -> dict:
        """Averages over all ranks' tokens (`self.tokens` already counts every rank): every rank
        gets the same numbers, so decisions taken on them (divergence) agree across ranks.
        weights: tensors measured at this step (output_weight_norm, update_ratio), read here."""
        totals = self.totals.double()
        peak = self.peak_logit.double().reshape(1) if self.statistics else None
        if world_size > 1:
            dist.all_reduce(totals)
            if peak is not None:
                dist.all_reduce(peak, op=dist.ReduceOp.MAX)
        loss, nll, n_correct, *rest = (totals / max(self.tokens, 1)).tolist()
        names = self.extra + (STATISTICS if self.statistics else ())
        means = dict(zip(names, rest, strict=True))
        seconds = time.perf_counter() - self.start
        record = {"kind": "train", "step": state.step, "epoch": state.epoch, "loss": loss,
                  **{k: means[k] for k in self.extra}, "nll": nll,
                  "ppl": format_perplexity(nll), "accuracy": n_correct, "lr": lr,
                  "grad_norm": float(self.grad_norm), "tgt_tokens_per_s": self.tokens / max(seconds, 1e-9),
                  "skipped_steps": state.skipped_steps, "elapsed_s": elapsed}
        if self.statistics:
            record.update({k: means[k] for k in STATISTICS})
            record["peak_logit"] = float(peak[0])
        if confidence_penalty:
            record["confidence_penalty"] = -confidence_penalty * means["entropy"]
        record.update({name: float(value) for name, value in (weights or {}).items()})
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            record["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        self.__init__(self.extra, self.statistics)
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
    """The run's console and log files (main process only; the others are silent).

    Lines said before the run directory exists (the config, the data preparation) wait in memory and
    go into train.log once `open` is called; train.log is appended to, so a resumed run continues it.
    """

    def __init__(self, run_dir: Path, *, enabled: bool, tensorboard: bool = False):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.log_path = run_dir / "train.log"
        self.tensorboard_dir = run_dir / "tensorboard"
        self.pending: list[str] | None = []  # None once train.log is open
        self.writer = None  # made at the first record, once the run directory exists
        self.summary_writer = _summary_writer_class() if enabled and tensorboard else None

    def open(self) -> None:
        """The run directory exists: write what was said so far to train.log."""
        pending, self.pending = self.pending, None
        if self.enabled and pending:
            self._append(self.log_path, "".join(pending))

    def line(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text, file=sys.stdout)
            sys.stdout.flush()
            self.to_file(text)

    def to_file(self, text: str) -> None:
        """Append to train.log only (e.g. the error that ends a run, which the CLI prints)."""
        if not self.enabled:
            return
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        lines = "".join(f"{stamp} {line}\n" for line in text.splitlines() or [""])
        if self.pending is not None:
            self.pending.append(lines)
            return
        self._append(self.log_path, lines)

    def metrics(self, record: dict) -> None:
        if not self.enabled:
            return
        self._append(self.path, json.dumps(record) + "\n")
        if self.summary_writer is not None:
            if self.writer is None:
                self.writer = self.summary_writer(log_dir=str(self.tensorboard_dir))
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("step", "epoch"):
                    self.writer.add_scalar(f"{record['kind']}/{key}", value, global_step=record["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    @staticmethod
    def _append(path: Path, text: str) -> None:
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise UserError(f"cannot write {path}: {e.strerror or e}; free disk space, then --resume "
                            "(checkpoint_last.pt is intact)") from None


def _summary_writer_class():
    """torch.utils.tensorboard's SummaryWriter, which needs the optional `tensorboard` package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("train.tensorboard is true but the tensorboard package is not installed: "
                        'pip install -e ".[tensorboard]" (or set train.tensorboard: false)') from None
    return SummaryWriter
