"""Shared pieces of scripts/bench_train.py and scripts/bench_decode.py: timing, memory, the matmul
peak, the analytic FLOPs of a training step, environment records and the JSON / Markdown output.

Analytic FLOPs of one training step of an encoder-decoder Transformer (`train_step_flops`)
-------------------------------------------------------------------------------------------
Only matrix multiplications are counted (a multiply-add = 2 FLOPs); embedding lookups, softmax,
LayerNorm, dropout, the loss and the optimizer are not. Backward costs twice the forward, so a step
is 3 × forward. Tokens are the real (non-pad) ones: padding is work the GPU does but not useful work,
so MFU is the useful share of the peak. With D = d_model, F = d_ff, V = vocabulary, L_e / L_d the
layer counts, N_s = Σ s_i and N_t = Σ t_i the non-pad source (with EOS) and target (with BOS) tokens:

    forward =  2 · N_s · L_e · (4D² + 2DF)          encoder: Q/K/V/out projections + feed-forward
             + 2 · N_s · L_d · 2D²                  decoder cross-attention K/V of the memory
             + 2 · N_t · L_d · (6D² + 2DF)          decoder: self Q/K/V/out, cross Q/out, feed-forward
             + 2 · N_t · D · V                      output projection (target tokens only)
             + 4D · L_e · Σ s_i²                    encoder self-attention: Q·Kᵀ and A·V, 2D each per pair
             + 4D · L_d · Σ t_i (t_i + 1) / 2       decoder causal self-attention: only the allowed pairs
             + 4D · L_d · Σ t_i s_i                 cross-attention
    step    =  3 · forward

The first four lines are the familiar "6 × matmul parameters × tokens" (here 2 × per forward, × 3),
per side; the last three are the attention terms, per sentence, over real tokens only.
"""

from __future__ import annotations

import gc
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from translate import runtime
from translate.errors import UserError


def train_step_flops(*, d_model: int, d_ff: int, vocab_size: int, n_encoder_layers: int, n_decoder_layers: int,
                     src_lengths, tgt_lengths) -> int:
    """FLOPs of forward + backward for sentences of non-pad lengths `src_lengths`, `tgt_lengths` (see above)."""
    D, F, V, Le, Ld = d_model, d_ff, vocab_size, n_encoder_layers, n_decoder_layers
    s = [int(x) for x in src_lengths]
    t = [int(x) for x in tgt_lengths]
    n_s, n_t = sum(s), sum(t)
    forward = (2 * n_s * Le * (4 * D * D + 2 * D * F)
               + 2 * n_s * Ld * 2 * D * D
               + 2 * n_t * Ld * (6 * D * D + 2 * D * F)
               + 2 * n_t * D * V
               + 4 * D * Le * sum(x * x for x in s)
               + 4 * D * Ld * sum(x * (x + 1) // 2 for x in t)
               + 4 * D * Ld * sum(a * b for a, b in zip(s, t)))
    return 3 * forward


class Timer:
    """Wall time of a region; on CUDA the device is synchronised at both ends, so queued work counts."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = 0.0

    def __enter__(self):
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._start


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device: torch.device) -> None:
    """Free what the previous system left and restart the peak counter."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float | None:
    """torch.cuda.max_memory_allocated since the last reset_memory, in GB (10⁹ bytes); None on the CPU."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 1e9


def write_profile(run, *, device: torch.device, path: Path, heading: str, row_limit: int = -1) -> None:
    """The operators and kernels of run() under torch.profiler, sorted by total device (or CPU) time,
    written to `path` under `heading`. Call it after the timed measurements: a profiler left running
    slows whatever is timed after it (results/bench/train_c)."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
        synchronize(device)
    sort_by = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    table = prof.key_averages().table(sort_by=sort_by, row_limit=row_limit, max_name_column_width=70)
    path.write_text(f"{heading}; sorted by {sort_by}\n\n{table}\n")


def matmul_peak_flops(device: torch.device, *, n: int, dtype: torch.dtype, repeats: int = 20) -> float:
    """Measured FLOP/s of an n×n×n matmul in `dtype` after warm-up: the denominator of MFU."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    with Timer(device) as timer:
        for _ in range(repeats):
            a @ b
    return 2 * n ** 3 * repeats / timer.seconds


def compile_whole_model(module: torch.nn.Module, **compile_options) -> torch.nn.Module:
    """The peers' compiled twins: torch.compile(dynamic=True) of the whole model, with source and target
    lengths kept independent as for translate's own compiled layers (`runtime.independent_lengths`)."""
    runtime.independent_lengths()
    return torch.compile(module, dynamic=True, **compile_options)


def marian_config(dims: dict, *, dropout: float, max_positions: int, attention_dropout: float = 0.0,
                  activation_dropout: float = 0.0):
    """A MarianConfig of the same size as translate's Transformer: post-norm, ReLU, tied joint embeddings,
    embeddings × √d, sinusoidal positions, SDPA attention; translate's special ids (pad 0, BOS 2, EOS 3).
    The three dropouts mean what translate's ModelConfig fields of the same names mean."""
    from transformers import MarianConfig
    return MarianConfig(
        vocab_size=dims["vocab_size"], d_model=dims["d_model"],
        encoder_layers=dims["n_encoder_layers"], decoder_layers=dims["n_decoder_layers"],
        encoder_attention_heads=dims["n_heads"], decoder_attention_heads=dims["n_heads"],
        encoder_ffn_dim=dims["d_ff"], decoder_ffn_dim=dims["d_ff"], activation_function="relu",
        dropout=dropout, attention_dropout=attention_dropout, activation_dropout=activation_dropout,
        max_position_embeddings=max_positions, share_encoder_decoder_embeddings=True, scale_embedding=True,
        tie_word_embeddings=True, pad_token_id=0, eos_token_id=3, bos_token_id=2,
        decoder_start_token_id=2, forced_eos_token_id=None, attn_implementation="sdpa")


def resolve_device(name: str) -> torch.device:
    """translate's rule for --device ("auto", "cpu", "cuda[:n]"); a CUDA device without a GPU exits."""
    try:
        return runtime.resolve_device(name, setting="--device", cpu_fix="--device cpu")
    except UserError as e:
        sys.exit(f"error: {e}")


def environment(device: torch.device) -> dict:
    """What a reader needs to reproduce or compare a result."""
    env = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cuda": torch.version.cuda,
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    try:
        import transformers
        env["transformers"] = transformers.__version__
    except ImportError:
        env["transformers"] = None
    return env


def error_text(error: BaseException) -> str:
    """One line for a failed system's row (the full traceback goes to stderr)."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first}"[:500]


def add_ratios(rows: list[dict], *, baseline: str, metric: str) -> None:
    """rows[i]["vs_<baseline>"] = rows[i][metric] / baseline row's metric (None when either is missing)."""
    base = next((r for r in rows if r["system"] == baseline and r.get(metric)), None)
    for row in rows:
        value = row.get(metric)
        row[f"vs_{baseline}"] = round(value / base[metric], 3) if base and value else None


def markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A Markdown table of `rows` with (key, header) columns; failed rows show their error."""
    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        if row.get("error"):
            cells = [row["system"], f"failed: {row['error']}"] + [""] * (len(columns) - 2)
        else:
            cells = [_cell(row.get(key)) for key, _ in columns]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_outputs(result: dict, table: str, *, output: Path | None, markdown: Path | None, title: str) -> None:
    """Print the table; write the JSON and the Markdown (with the environment) where asked."""
    env = result["environment"]
    header = (f"## {title}\n\n{env['device_name']} ({env['device']}), torch {env['torch']}, "
              f"transformers {env['transformers']}, {env['time']}\n\n`{env['command']}`\n")
    notes = "".join(f"\n- {note}" for note in result.get("notes", []))
    text = f"{header}\n{table}\n{notes}\n"
    print(text)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")
    if markdown:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(text)
