"""Attention alone, forward + backward, on the attention shapes of real training batches.

The compiled training step's profile (docs/PERFORMANCE.md) spends about a third of its GPU time in
SDPA's flash and memory-efficient kernels, far more than their FLOPs: the sentences are short (tens of
pieces), so each (sentence, head) is a small tile. This script times, on the first `--batches`
batches that `bench_train.py --config` uses, the three attentions of one encoder and one decoder layer
(encoder self-attention under the source padding mask, decoder causal self-attention, cross-attention
under the source padding mask) with each implementation in IMPLEMENTATIONS, each through
torch.compile(dynamic=True) as `train.compile` runs the layers, and reports ms per training step
(× the layer counts) and the largest difference from a float64 reference on one batch (every query
row: with key masks only, none is fully masked). The inputs are contiguous (B, H, T, dh) tensors,
where the model passes transposed views of its projections: the layouts differ from training's.

On an H200 (docs/PERFORMANCE.md, results/bench/attention_b.json) the explicit products were no faster
in total than SDPA, so `translate` keeps SDPA for training.

    python3 scripts/bench_attention.py --config configs/trainmix_postnorm.yaml --output results/x.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import bench_common as common
from bench_train import BASE, load_corpus, real_batches
from translate.model import _attention, _merge_heads
from translate.tokenizer import PAD_ID


def math_attention(q, k, v, *, mask=None, is_causal=False, score_dtype=None) -> torch.Tensor:
    """translate's `_attention` as explicit matrix products (no dropout): q (B, H, T, dh), k and v
    (B, H, S, dh) -> (B, T, D). The scores and the softmax are in `score_dtype`, by default float32 or
    wider; A·V runs in v's dtype."""
    score_dtype = score_dtype or torch.promote_types(q.dtype, torch.float32)
    with torch.autocast(q.device.type, enabled=False):
        scores = torch.matmul(q.to(score_dtype), k.to(score_dtype).transpose(-2, -1)) * q.shape[-1] ** -0.5
        if is_causal:
            T, S = scores.shape[-2:]
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril()
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        y = torch.matmul(scores.softmax(dim=-1).to(v.dtype), v)
    return _merge_heads(y)


IMPLEMENTATIONS = {
    "sdpa": lambda q, k, v, mask, causal: _attention(q, k, v, mask=mask, is_causal=causal),
    "math_f32_scores": lambda q, k, v, mask, causal: math_attention(q, k, v, mask=mask, is_causal=causal),
    "math_bf16_scores": lambda q, k, v, mask, causal: math_attention(q, k, v, mask=mask, is_causal=causal,
                                                                      score_dtype=q.dtype),
}


def attention_shapes(batch) -> list[tuple[int, int, int, torch.Tensor | None, bool]]:
    """(rows B, queries T, keys S, key mask (B, 1, 1, S) or None, causal) of the three attentions of a
    batch: encoder self, decoder causal self, cross."""
    src_mask = (batch.src != PAD_ID)[:, None, None, :]
    (B, S), T = batch.src.shape, batch.tgt_in.shape[1]
    return [(B, S, S, src_mask, False), (B, T, T, None, True), (B, T, S, src_mask, False)]


def make_inputs(shapes, *, heads: int, head_dim: int, device, dtype) -> list[tuple]:
    """Random q, k, v (leaf tensors needing gradients) and output gradient for every shape."""
    inputs = []
    for B, T, S, mask, causal in shapes:
        q, k, v = (torch.randn(B, heads, n, head_dim, device=device, dtype=dtype, requires_grad=True)
                   for n in (T, S, S))
        mask = None if mask is None else mask.to(device)
        inputs.append((q, k, v, mask, causal, torch.randn(B, T, heads * head_dim, device=device, dtype=dtype)))
    return inputs


def run_all(fn, inputs) -> None:
    """Forward and backward of fn on every prepared input."""
    for q, k, v, mask, causal, grad in inputs:
        fn(q, k, v, mask, causal).backward(grad)
        q.grad = k.grad = v.grad = None


def max_errors(fn, shape, *, heads: int, head_dim: int, device, dtype, seed: int) -> dict:
    """Largest |difference| of the output and of dq from the float64 math reference on one shape."""
    B, T, S, mask, causal = shape
    generator = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(B, heads, n, head_dim, generator=generator, dtype=torch.float64) for n in (T, S, S)]
    grad = torch.randn(B, T, heads * head_dim, generator=generator, dtype=torch.float64)
    results = []
    reference = IMPLEMENTATIONS["math_f32_scores"]  # in float64 here: its scores are at least float32
    for run_fn, run_dtype, run_device in ((fn, dtype, device), (reference, torch.float64, "cpu")):
        q, k, v = (t.to(run_device, run_dtype).requires_grad_() for t in inputs)
        out = run_fn(q, k, v, None if mask is None else mask.to(run_device), causal)
        out.backward(grad.to(run_device, run_dtype))
        results.append((out.detach().double().cpu(), q.grad.double().cpu()))
    (out, dq), (ref_out, ref_dq) = results
    return {"out": float((out - ref_out).abs().max()), "dq": float((dq - ref_dq).abs().max())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="a translate config whose training data gives the batches")
    p.add_argument("--batches", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3, help="timed passes over the batches")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--output", type=Path)
    args = p.parse_args(argv)
    device = common.resolve_device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    heads, head_dim = BASE["n_heads"], BASE["d_model"] // BASE["n_heads"]
    corpus, _ = load_corpus(argparse.Namespace(config=args.config, data_dir=None, vocab_size=None))
    batches = real_batches(corpus, max_tokens=BASE["max_tokens"], count=args.batches, seed=args.seed)
    kinds = ["encoder self", "decoder causal self", "cross"]
    per_kind = list(zip(*(attention_shapes(b) for b in batches)))  # three lists: each kind's shapes
    layers = [BASE["n_encoder_layers"], BASE["n_decoder_layers"], BASE["n_decoder_layers"]]

    rows = []
    for name, fn in IMPLEMENTATIONS.items():
        compiled = torch.compile(fn, dynamic=True)
        row = {"implementation": name}
        for kind, shapes, n_layers in zip(kinds, per_kind, layers):
            inputs = make_inputs(shapes, heads=heads, head_dim=head_dim, device=device, dtype=dtype)
            run_all(compiled, inputs)  # compiles, warms up
            common.reset_memory(device)
            held = torch.cuda.memory_allocated(device) / 1e9 if device.type == "cuda" else 0.0
            with common.Timer(device) as timer:
                for _ in range(args.repeats):
                    run_all(compiled, inputs)
            row[f"{kind} ms/step"] = 1000 * timer.seconds / (args.repeats * len(shapes)) * n_layers
            peak = common.peak_memory_gb(device)
            row[f"{kind} working GB"] = None if peak is None else peak - held  # beyond the inputs
            row[f"{kind} max error"] = max_errors(compiled, max(shapes, key=lambda s: s[0] * s[1] * s[2]),
                                                  heads=heads, head_dim=head_dim, device=device, dtype=dtype,
                                                  seed=args.seed)
        row["total ms/step"] = sum(row[f"{kind} ms/step"] for kind in kinds)
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"environment": common.environment(device), "command": " ".join(sys.argv), "batches": args.batches,
              "rows": rows}
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
