"""Training throughput of Transformer-base: `translate` against Hugging Face Marian and nn.Transformer.

Every system trains the same model size (d 512, d_ff 2048, 8 heads, 6 + 6 layers, joint vocabulary,
tied embeddings, dropout 0.1, label smoothing 0.1; bf16 autocast on CUDA; AdamW β (0.9, 0.98),
ε 1e-9, no weight decay, fused on CUDA; gradient clipping at 1.0) on the same sequence of real
token-bucketed batches (`translate.batching.make_batches`), eager and under torch.compile(dynamic=True)
(duck sizing off: `translate.runtime`, the same for every system):

    translate            translate.model.Transformer + translate.loss, the step of translate/train.py
                         (autocast forward to decoder states, fused projection + loss over the non-pad
                         targets, loss sum / tokens, backward, clip, finite check, step)
    translate_unfused    the same with the loss before the fused projection: (B, T, V) logits, the
                         reference loss on them (a lever measured in the same run; not a peer)
    hf_marian            transformers.MarianMTModel, loss F.cross_entropy(label_smoothing, ignore_index=pad)
    nn_transformer       torch.nn.Transformer (batch_first) + embeddings × √d, sinusoidal positions,
                         tied output projection, the same F.cross_entropy loss
    (each with a `_compiled` twin: for translate, `train.compile`'s per-layer compilation and compiled
    loss passes; for the peers, the whole model)

All three are post-norm (the paper's layout; Marian and nn.Transformer's default). The first
`--warmup` batches, then the next `--steps` batches once, are untimed (compilation included: the
rehearsal of the timed batches makes every recompilation fall before the timing); then those `--steps`
batches are timed, the same ones for every system. Batches start on the host and are copied to the
device inside the step, as in train.py. See docs/PERFORMANCE.md and the FLOPs formula in scripts/bench_common.py.

    TRANSLATE_DATA=/data python scripts/bench_train.py --config configs/trainmix_base.yaml --output train.json
    python scripts/bench_train.py --synthetic-batches --output train.json
    python scripts/bench_train.py --device cpu --tiny --synthetic-batches --output /tmp/t.json
"""

from __future__ import annotations

import argparse
import math
import sys
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as common  # noqa: E402
from translate.batching import Batch, collate, collate_corpus, make_batches  # noqa: E402
from translate.config import Config, ModelConfig, OptimConfig  # noqa: E402
from translate.loss import label_smoothed_cross_entropy  # noqa: E402
from translate.model import Transformer, sinusoidal_positions  # noqa: E402
from translate.runtime import compile_layers  # noqa: E402
from translate.tokenizer import EOS_ID, PAD_ID  # noqa: E402
from translate.train import _build_optimizer, batch_loss  # noqa: E402
from peer_marian import forward_logits  # noqa: E402  (the peer's own forward: no decoder padding mask)

SYSTEMS = ["translate", "translate_compiled", "hf_marian", "hf_marian_compiled", "nn_transformer",
           "nn_transformer_compiled", "translate_unfused"]
BASE = dict(d_model=512, n_heads=8, d_ff=2048, n_encoder_layers=6, n_decoder_layers=6, vocab_size=32000,
            max_tokens=25000, steps=50, warmup=100, matmul_n=8192)
TINY = dict(d_model=64, n_heads=4, d_ff=128, n_encoder_layers=2, n_decoder_layers=2, vocab_size=1000,
            max_tokens=600, steps=3, warmup=1, matmul_n=256)
DROPOUT, LABEL_SMOOTHING, LR, BETAS, EPS, CLIP = 0.1, 0.1, 7e-4, (0.9, 0.98), 1e-9, 1.0
MAX_POSITIONS = 1024
OPTIM = OptimConfig(lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0, clip_norm=CLIP)  # every system's AdamW


# ---------------------------------------------------------------------------------------------
# Batches


def load_corpus(args):
    """(TokenizedCorpus, vocab size) from --data-dir (a tok-*/train-* cache) or --config (translate prepare)."""
    from translate.data import load_split, prepare
    from translate.tokenizer import Tokenizer
    if args.config:
        from translate.config import load_config
        prepared = prepare(load_config(args.config), verbose=True)
        return prepared.train, Tokenizer(prepared.tokenizer_file).vocab_size
    directory = Path(args.data_dir)
    if not (directory / "src.tokens.npy").is_file():
        sys.exit(f"error: --data-dir {directory} is not a prepared cache (expected tok-*/train-*/src.tokens.npy)")
    spm_file = directory.parent / "spm.model"
    vocab = Tokenizer(spm_file).vocab_size if spm_file.is_file() else args.vocab_size
    return load_split(directory), vocab


def real_batches(corpus, *, max_tokens: int, count: int, seed: int) -> list[Batch]:
    """The first `count` batches of epoch 0, exactly as translate/train.py would make them."""
    index = make_batches(corpus.src_lengths, corpus.tgt_lengths, max_tokens=max_tokens, seed=seed, epoch=0)
    if len(index) < count:
        sys.exit(f"error: the corpus gives {len(index)} batches of {max_tokens} tokens; "
                 f"--warmup + --steps needs {count}: lower --warmup or --steps")
    return [collate_corpus(corpus, idx) for idx in index[:count]]


def synthetic_batches(*, vocab_size: int, max_tokens: int, count: int, seed: int, max_len: int = 250) -> list[Batch]:
    """Random ids with WMT-like lengths: source ~ lognormal (median ≈ 25 pieces, long tail to max_len),
    target ≈ 1.1 × source ± 15%, bucketed by make_batches like real data."""
    rng = np.random.default_rng(seed)
    n = max(2000, count * max_tokens // 20)  # enough sentences for `count` batches
    src_len = np.clip(np.rint(rng.lognormal(math.log(25), 0.6, n)), 1, max_len).astype(np.int64)
    tgt_len = np.clip(np.rint(src_len * rng.normal(1.1, 0.15, n)), 1, max_len).astype(np.int64)
    index = make_batches(src_len, tgt_len, max_tokens=max_tokens, seed=seed, epoch=0)[:count]
    first_id = EOS_ID + 1

    def ids(length):
        return rng.integers(first_id, vocab_size, length, dtype=np.int64)

    return [collate([ids(src_len[i]) for i in idx], [ids(tgt_len[i]) for i in idx]) for idx in index]


# ---------------------------------------------------------------------------------------------
# Systems: each builds (model, step function); step(batch) does one full optimizer step


def translate_system(dims: dict, device: torch.device, autocast, *, compile_model: bool, fused_loss: bool = True):
    model_cfg = ModelConfig(d_model=dims["d_model"], n_heads=dims["n_heads"], d_ff=dims["d_ff"],
                            n_encoder_layers=dims["n_encoder_layers"], n_decoder_layers=dims["n_decoder_layers"],
                            dropout=DROPOUT, attention_dropout=0.0, activation_dropout=0.0, norm_first=False,
                            share_embeddings=True, max_positions=MAX_POSITIONS)
    cfg = Config(model=model_cfg, optim=OPTIM)
    model = Transformer(cfg.model, vocab_size=dims["vocab_size"], pad_id=PAD_ID).to(device).train()
    optimizer = _build_optimizer(model, cfg, device)
    if compile_model:  # train.compile: each layer and the loss's elementwise passes
        compile_layers(model)

    def loss_sums(batch: Batch):
        if fused_loss:  # train.py's: decoder states of non-pad targets -> fused projection + loss
            return batch_loss(model, model.output_proj.weight, batch, epsilon=LABEL_SMOOTHING, autocast=autocast,
                              compiled=compile_model)
        with autocast:  # before: (B, T, V) logits, then the reference loss (boolean-mask selection)
            logits = model(batch.src, batch.tgt_in, batch.src == PAD_ID)
        return label_smoothed_cross_entropy(logits, batch.tgt_out, epsilon=LABEL_SMOOTHING, pad_id=PAD_ID)

    def step(batch: Batch) -> torch.Tensor:  # translate/train.py's loop body, single process, no scaler (bf16)
        batch = batch.to(device)
        sums = loss_sums(batch)
        (sums.loss / batch.n_tgt_tokens).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        loss_ok, grads_ok = torch.stack([sums.loss.isfinite(), grad_norm.isfinite()]).tolist()  # train.py's one sync
        if loss_ok and grads_ok:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return sums.nll.detach() / batch.n_tgt_tokens

    return model, step


def _peer_step(model, forward, optimizer, device, autocast, vocab_size):
    """The step of a peer: PyTorch's label-smoothed cross-entropy (HF's convention), no finite check."""
    def step(batch: Batch) -> torch.Tensor:
        batch = batch.to(device)
        with autocast:
            logits = forward(batch)  # (B, T, V)
        loss = F.cross_entropy(logits.float().view(-1, vocab_size), batch.tgt_out.view(-1), ignore_index=PAD_ID,
                               label_smoothing=LABEL_SMOOTHING, reduction="sum")
        (loss / batch.n_tgt_tokens).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach() / batch.n_tgt_tokens
    return step


def _adam(model, device):
    """translate's AdamW (train._build_optimizer: fused on CUDA) with the benchmark's settings."""
    return _build_optimizer(model, Config(optim=OPTIM), device)


def hf_marian_system(dims: dict, device: torch.device, autocast, *, compile_model: bool):
    from transformers import MarianMTModel
    model = MarianMTModel(common.marian_config(dims, dropout=DROPOUT, max_positions=MAX_POSITIONS)).to(device).train()
    optimizer = _adam(model, device)
    train_model = common.compile_whole_model(model) if compile_model else model
    return model, _peer_step(model, lambda b: forward_logits(train_model, b), optimizer, device, autocast,
                             dims["vocab_size"])


class TorchTransformer(nn.Module):
    """nn.Transformer with the paper's embeddings: E·√d + sinusoidal positions, output tied to E."""

    def __init__(self, dims: dict):
        super().__init__()
        D = dims["d_model"]
        self.scale = math.sqrt(D)
        self.embed = nn.Embedding(dims["vocab_size"], D, padding_idx=PAD_ID)
        nn.init.normal_(self.embed.weight, std=D ** -0.5)
        self.register_buffer("positions", sinusoidal_positions(MAX_POSITIONS, D), persistent=False)
        self.dropout = nn.Dropout(DROPOUT)
        self.transformer = nn.Transformer(
            d_model=D, nhead=dims["n_heads"], num_encoder_layers=dims["n_encoder_layers"],
            num_decoder_layers=dims["n_decoder_layers"], dim_feedforward=dims["d_ff"], dropout=DROPOUT,
            batch_first=True)

    def _embed(self, tokens):
        return self.dropout(self.embed(tokens) * self.scale + self.positions[: tokens.shape[1]])

    def forward(self, src, tgt_in):
        src_pad = src == PAD_ID  # (B, S)
        T = tgt_in.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(T, device=src.device)  # (T, T)
        hidden = self.transformer(self._embed(src), self._embed(tgt_in), tgt_mask=causal, tgt_is_causal=True,
                                  src_key_padding_mask=src_pad, memory_key_padding_mask=src_pad)
        return F.linear(hidden, self.embed.weight)  # (B, T, V)


def nn_transformer_system(dims: dict, device: torch.device, autocast, *, compile_model: bool):
    model = TorchTransformer(dims).to(device).train()
    optimizer = _adam(model, device)
    train_model = common.compile_whole_model(model) if compile_model else model
    return model, _peer_step(model, lambda b: train_model(b.src, b.tgt_in), optimizer, device, autocast,
                             dims["vocab_size"])


BUILDERS = {"translate": translate_system, "hf_marian": hf_marian_system, "nn_transformer": nn_transformer_system,
            "translate_unfused": lambda *a, **k: translate_system(*a, **k, fused_loss=False)}


# ---------------------------------------------------------------------------------------------
# Measurement


def build(system: str, dims: dict, device, autocast, seed: int):
    """(model, step) of a system, `_compiled` or not, from the same seed."""
    torch.manual_seed(seed)
    base, compiled = system.removesuffix("_compiled"), system.endswith("_compiled")
    return BUILDERS[base](dims, device, autocast, compile_model=compiled)


def timed_work(timed: list[Batch], dims: dict) -> dict:
    """Target and source tokens (non-pad) and model FLOPs of the timed batches: the same for every system."""
    return {"tgt": sum(b.n_tgt_tokens for b in timed), "src": sum(int((b.src != PAD_ID).sum()) for b in timed),
            "flops": sum(batch_flops(b, dims) for b in timed)}


def rehearse(step, warmup: list[Batch], timed: list[Batch]) -> None:
    """The untimed steps before a timing: one per batch of `warmup`, then one per batch of `timed`."""
    for batch in warmup + timed:
        step(batch)


def measure(system: str, dims: dict, warmup: list[Batch], timed: list[Batch], work: dict, *, device, autocast,
            peak_flops: float, seed: int) -> dict:
    """One untimed optimizer step per batch of `warmup` and then of `timed` (a rehearsal), then one
    timed step per batch of `timed` (whose tokens and FLOPs are `work`, from `timed_work`).

    The rehearsal makes a compiled system meet every batch shape it is timed on before the timing,
    whatever its compiler guards on: a length's alignment to 8, duck sizing, and Inductor's size
    thresholds (results/bench/train_e.log: the guard 512·T·B ≥ 5,242,880 recompiled the compiled
    nn.Transformer, most likely inside the timed steps, after a warm-up that covered the alignment classes).
    """
    common.reset_memory(device)
    model, step = build(system, dims, device, autocast, seed)
    with common.Timer(device) as warm:
        rehearse(step, warmup, timed)
    losses = []
    with common.Timer(device) as timer:
        for batch in timed:
            losses.append(step(batch))
    n_steps = len(timed)
    tgt, src, flops = work["tgt"], work["src"], work["flops"]
    seconds = timer.seconds
    row = {
        "system": system,
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": n_steps,
        "seconds": round(seconds, 4),
        "ms_per_step": 1000 * seconds / n_steps,
        "tgt_tokens_per_s": tgt / seconds,
        "src_tgt_tokens_per_s": (src + tgt) / seconds,
        "peak_memory_gb": common.peak_memory_gb(device),
        "flops_per_step": flops / n_steps,
        "achieved_tflops": flops / seconds / 1e12,
        "mfu": flops / seconds / peak_flops,
        "warmup_seconds": round(warm.seconds, 2),
        "mean_nll": float(torch.stack(losses).float().mean()),  # sanity: all systems ≈ ln V at the start
        "error": None,
    }
    del model, step
    return row


def write_profile(system: str, dims: dict, warmup: list[Batch], batches: list[Batch], *, device, autocast,
                  seed: int, path: Path) -> None:
    """Operators and kernels of the timed steps of `system` (built, warmed up and rehearsed afresh,
    as `measure` does). Run after every system is timed: the profiler is not left running under
    anyone's timing."""
    _, step = build(system, dims, device, autocast, seed)
    rehearse(step, warmup, batches)

    def timed_steps():
        for batch in batches:
            step(batch)

    common.write_profile(timed_steps, device=device, path=path, heading=f"{system}: {len(batches)} steps")


def batch_flops(batch: Batch, dims: dict) -> int:
    return common.train_step_flops(
        d_model=dims["d_model"], d_ff=dims["d_ff"], vocab_size=dims["vocab_size"],
        n_encoder_layers=dims["n_encoder_layers"], n_decoder_layers=dims["n_decoder_layers"],
        src_lengths=(batch.src != PAD_ID).sum(1).tolist(), tgt_lengths=(batch.tgt_out != PAD_ID).sum(1).tolist())


COLUMNS = [("system", "system"), ("tgt_tokens_per_s", "tgt tok/s"), ("src_tgt_tokens_per_s", "src+tgt tok/s"),
           ("ms_per_step", "ms/step"), ("peak_memory_gb", "peak GB"), ("mfu", "MFU"),
           ("vs_translate", "× translate eager"), ("warmup_seconds", "warm-up s"), ("mean_nll", "mean NLL")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_mutually_exclusive_group()
    data.add_argument("--config", help="a translate config: its training data is prepared (or reused) and batched")
    data.add_argument("--data-dir", help="a prepared training cache: <data_dir>/tok-*/train-*")
    data.add_argument("--synthetic-batches", action="store_true", help="random ids with realistic lengths")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {SYSTEMS}")
    p.add_argument("--device", default="auto")
    p.add_argument("--tiny", action="store_true", help="tiny dimensions and few steps (CPU tests)")
    p.add_argument("--max-tokens", type=int, help="batch budget per side (default 25000; tiny 600)")
    p.add_argument("--steps", type=int, help="timed steps per system (default 50; tiny 3)")
    p.add_argument("--warmup", type=int,
                   help="untimed steps per system before it rehearses the timed batches, compilation included "
                        "(default 100: the timed steps are then each system's steps 151-200, past the HF peer's "
                        "slow first ~150; tiny 1)")
    p.add_argument("--vocab-size", type=int, help="vocabulary for synthetic batches (default 32000)")
    p.add_argument("--matmul-n", type=int, help="size of the square matmul that measures the peak (default 8192)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--output", type=Path, help="JSON results")
    p.add_argument("--markdown", type=Path, help="Markdown table")
    p.add_argument("--profile", type=Path, help="torch.profiler table of the first system's timed steps, "
                   "run again after all systems are timed")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    preset = TINY if args.tiny else BASE
    settings = {k: getattr(args, k) if getattr(args, k, None) is not None else v for k, v in preset.items()}
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        sys.exit(f"error: unknown systems {unknown}; choose from {SYSTEMS}")
    device = common.resolve_device(args.device)
    count = settings["warmup"] + settings["steps"]

    notes = []
    if args.config or args.data_dir:
        corpus, vocab = load_corpus(args)
        settings["vocab_size"] = vocab
        batches = real_batches(corpus, max_tokens=settings["max_tokens"], count=count, seed=args.seed)
        notes.append(f"real batches: the first {count} of epoch 0 (seed {args.seed}) of "
                     f"{args.config or args.data_dir}")
    else:
        batches = synthetic_batches(vocab_size=settings["vocab_size"], max_tokens=settings["max_tokens"],
                                    count=count, seed=args.seed)
        notes.append("synthetic batches: random ids, lognormal lengths (median 25), bucketed by make_batches")
        if len(batches) < count:
            sys.exit(f"error: only {len(batches)} synthetic batches for --warmup + --steps = {count}")
    warmup, timed = batches[:settings["warmup"]], batches[settings["warmup"]:]
    notes.append(f"warm-up, untimed: the first {len(warmup)} batches, then the {len(timed)} timed ones once "
                 "(a rehearsal: a compiled system recompiles for their shapes before the timing, not in it)")
    if device.type == "cuda":
        warmup, timed = [b.pin_memory() for b in warmup], [b.pin_memory() for b in timed]

    dims = {k: settings[k] for k in ("d_model", "n_heads", "d_ff", "n_encoder_layers", "n_decoder_layers",
                                     "vocab_size")}
    if device.type == "cuda":
        autocast = torch.autocast("cuda", dtype=torch.bfloat16)
        peak_dtype = torch.bfloat16
    else:  # translate trains in float32 on the CPU: no autocast there
        autocast = torch.autocast("cpu", enabled=False)
        peak_dtype = torch.float32
    peak = common.matmul_peak_flops(device, n=settings["matmul_n"], dtype=peak_dtype)
    notes.append(f"MFU denominator: measured {str(peak_dtype).removeprefix('torch.')} matmul "
                 f"{settings['matmul_n']}³ = {peak / 1e12:.1f} TFLOP/s")

    work = timed_work(timed, dims)
    result = {
        "benchmark": "train",
        "environment": common.environment(device),
        "settings": settings | {"dropout": DROPOUT, "label_smoothing": LABEL_SMOOTHING, "lr": LR, "betas": BETAS,
                                "eps": EPS, "clip_norm": CLIP, "autocast": "bf16" if device.type == "cuda" else None,
                                "seed": args.seed},
        "batches": {
            "timed": len(timed),
            "tgt_tokens": work["tgt"],
            "src_tokens": work["src"],
            "padded_tokens": sum(b.src.numel() + b.tgt_out.numel() for b in timed),
            "sentences": sum(b.src.shape[0] for b in timed),
        },
        "matmul_peak_flops": peak,
        "notes": notes,
        "rows": [],
    }
    for system in systems:
        print(f"[bench_train] {system} ...", file=sys.stderr, flush=True)
        try:
            row = measure(system, dims, warmup, timed, work, device=device, autocast=autocast, peak_flops=peak,
                          seed=args.seed)
        except Exception as error:  # a failing peer (missing package, compile error) must not stop the others
            traceback.print_exc()
            row = {"system": system, "error": common.error_text(error)}
        finally:
            if system.endswith("_compiled"):
                torch._dynamo.reset()
        result["rows"].append(row)
        common.reset_memory(device)
        # Written after every system: a run cut short by a time limit keeps the rows it finished.
        common.add_ratios(result["rows"], baseline="translate", metric="tgt_tokens_per_s")
        common.write_outputs(result, common.markdown_table(result["rows"], COLUMNS), output=args.output,
                             markdown=args.markdown, title="Training throughput (scripts/bench_train.py)")
    if args.profile and not result["rows"][0].get("error"):
        print(f"[bench_train] profiling {systems[0]} ...", file=sys.stderr, flush=True)
        write_profile(systems[0], dims, warmup, timed, device=device, autocast=autocast, seed=args.seed,
                      path=args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
