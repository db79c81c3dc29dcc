"""Peer baseline (issue #6): Hugging Face `MarianMTModel` trained from scratch the way HF users train
it, on the same data and for the same wall-clock budget as a `translate` run, then scored the same way.

What is the same as `translate train` + `translate eval`:

- data: `translate.data.prepare(cfg)` of the config given by --config and --set (parsed as the CLI
  parses them), so the same joint SentencePiece vocabulary and the same token ids; batches from
  `translate.batching.make_batches(train.max_tokens, seed, epoch)`, epoch after epoch. This is the
  analogue of HF's `group_by_length` with a token budget instead of a fixed batch size;
- size: d_model, d_ff, heads, layers from the config; tied joint embeddings, embeddings × √d,
  sinusoidal positions, ReLU, SDPA attention (`bench_common.marian_config`); dropout,
  attention_dropout and activation_dropout map one to one;
- optimisation: AdamW (fused on CUDA) with the config's lr, betas, eps and weight decay; the
  inverse-sqrt schedule (`transformers.get_inverse_sqrt_schedule`: equal to `translate.schedule.lr_at`
  except that warmup starts at 0, not optim.warmup_init_lr); clipping at optim.clip_norm; bf16
  autocast on CUDA, fp32 on the CPU; label smoothing train.label_smoothing;
- the budget: --max-time seconds of the training loop, checked before each step, as train.max_time
  is. translate's clock counts the whole loop, validations (dev NLL, dev BLEU) and checkpoint
  saves included, and so does this one by default; --exclude-eval-time counts training steps only.
  Both clocks are recorded. The peer's validation is dev NLL alone (no dev BLEU, no checkpoint
  files), so of an equal budget it spends a little more on training steps than translate does;
- scoring: test pairs read as `translate eval` reads them (data.test, or --src/--ref), sources
  normalised, tokenized and length-batched by `translate.evaluate.encode_sources/source_batches`,
  sacreBLEU BLEU and chrF with signatures by `translate.evaluate.score`; the model of the lowest dev
  NLL (kept on the CPU), decoded in fp32 like `translate eval`.

What is HF's own (the "usual recipe" of Seq2SeqTrainer, written out as a loop so that neither
`datasets` nor `accelerate` is needed):

- labels = target + EOS with pad → -100; decoder_input_ids = BOS + target (what
  `shift_tokens_right(labels)` gives with decoder_start_token_id = BOS); no decoder attention mask;
- loss `transformers.trainer_pt_utils.LabelSmoother(epsilon)` on fp32 logits (accelerate's autocast
  wrapper returns fp32 outputs; Marian's logits are fp32 anyway after its fp32 `final_logits_bias`),
  averaged over the batch's non-pad tokens; backward → clip → step → schedule step → zero_grad;
  no finite check (training stops at a log step whose loss is not finite, keeping the best weights);
- HF's initialisation (normal(0, 0.02) weights, zero biases); post-norm, as Marian only has that:
  a config with model.norm_first = true (the train-mix runs) is recorded but cannot be followed;
- AdamW parameter groups as Trainer makes them: no weight decay on biases and LayerNorm weights;
- `generate(num_beams, length_penalty, early_stopping=False)`, pad and BOS banned (opus-mt's
  `bad_words_ids`), EOS forced at the length limit (`forced_eos_token_id`), on translate eval's
  batches of eval.batch_tokens source tokens cut to at most 256 sentences per generate call.

Decoding length: translate limits each sentence to int(max_len_a · src_len + max_len_b) tokens plus
EOS (src_len with its EOS); generate takes one max_new_tokens per batch, so each batch gets the
limit of its longest source, + 1 for the EOS. Batches are length-sorted, so the difference is small.

Length penalty: HF ranks finished beams by logprob / L^α, L = generated tokens including EOS;
translate by GNMT's logprob / ((5 + L) / 6)^α. They differ: locally ((5 + L) / 6)^α grows like
L^(α · L / (5 + L)), so GNMT α = 0.6 acts like L^0.5 at L = 25. HF α = 0.6 (--lenpen, the
default here) therefore favours length a little more than translate's 0.6, and much less than
HF's own default of 1.0.

Extra work the peer does that HF's Trainer does not: the training NLL (logsumexp − target logit, no
gradient, one pass over the logits) for the metrics; dev NLL is plain NLL per non-pad target token.

    TRANSLATE_DATA=/data python scripts/peer_marian.py --config configs/trainmix_base.yaml --max-time 390 \\
        --output peer.json --hyp peer.hyp.txt
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as common  # noqa: E402
from translate.batching import Batch, BatchStream, collate_corpus, teacher_forcing_batches  # noqa: E402
from translate.beam import output_limit  # noqa: E402
from translate.config import Config, OptimConfig, Precision, Schedule, config_to_dict, load_config  # noqa: E402
from translate.data import TokenizedCorpus, prepare  # noqa: E402
from translate.errors import UserError  # noqa: E402
from translate.evaluate import _test_pairs, encode_sources, score, source_batches  # noqa: E402
from translate.metrics import format_perplexity  # noqa: E402
from translate.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer  # noqa: E402

IGNORE_INDEX = -100  # HF's label for "no loss here"
HF_LENPEN = 0.6  # α of HF's L^α (see the module docstring)
MAX_BATCH_SENTENCES = 256  # decoding: at most this many sentences (× beam rows) per generate call


# ---------------------------------------------------------------------------------------------
# Model, optimizer, schedule, loss


def build_model(cfg: Config, vocab_size: int):
    from transformers import MarianMTModel

    m = cfg.model
    dims = dict(vocab_size=vocab_size, d_model=m.d_model, n_heads=m.n_heads, d_ff=m.d_ff,
                n_encoder_layers=m.n_encoder_layers, n_decoder_layers=m.n_decoder_layers)
    config = common.marian_config(dims, dropout=m.dropout, attention_dropout=m.attention_dropout,
                                  activation_dropout=m.activation_dropout, max_positions=m.max_positions)
    return MarianMTModel(config)


def build_optimizer(model: torch.nn.Module, optim: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with Trainer's groups: weight decay on everything trainable but biases and LayerNorm weights."""
    norm_ids = {id(p) for module in model.modules() if isinstance(module, torch.nn.LayerNorm)
                for p in module.parameters()}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # not the frozen sinusoids
    decay = [p for n, p in trainable if "bias" not in n and id(p) not in norm_ids]
    no_decay = [p for n, p in trainable if "bias" in n or id(p) in norm_ids]
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas, eps=optim.eps, fused=device.type == "cuda")


def build_schedule(optimizer: torch.optim.Optimizer, optim: OptimConfig):
    """HF's inverse-sqrt schedule: lr · step / W during warmup, then lr · sqrt(W / step), as translate's."""
    from transformers import get_inverse_sqrt_schedule

    if optim.schedule != Schedule.INVERSE_SQRT:
        raise UserError(f"optim.schedule {optim.schedule.value!r}: the peer has HF's inverse_sqrt only")
    return get_inverse_sqrt_schedule(optimizer, num_warmup_steps=optim.warmup_steps)


def hf_labels(tgt_out: torch.Tensor) -> torch.Tensor:
    """Target + EOS with padding replaced by -100, as DataCollatorForSeq2Seq pads labels."""
    return tgt_out.masked_fill(tgt_out == PAD_ID, IGNORE_INDEX)


def nll_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Σ −log p(label) over labels ≠ -100, in fp32: logsumexp − the label's logit, one pass over V.
    Masked with `where`, not by boolean indexing: no host sync, no copy of the logits."""
    logits = logits.float()  # (B, T, V) (a no-op for Marian, whose logits are fp32)
    keep = labels != IGNORE_INDEX  # (B, T)
    target_logit = logits.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)  # (B, T)
    return torch.where(keep, logits.logsumexp(-1) - target_logit, 0.0).sum()


def forward_logits(model, batch: Batch) -> torch.Tensor:
    return model(input_ids=batch.src, attention_mask=batch.src != PAD_ID, decoder_input_ids=batch.tgt_in,
                 use_cache=False).logits  # (B, T, V)


# ---------------------------------------------------------------------------------------------
# Data and dev NLL


def epoch_batches(corpus: TokenizedCorpus, *, max_tokens: int, seed: int, pin_memory: bool = False):
    """(epoch, Batch) forever: translate's batches of epoch 0, 1, 2, ... in train.py's order, from the
    same `BatchStream` (collated and pinned ahead in a background thread, as for translate)."""
    stream = BatchStream(corpus, max_tokens=max_tokens, seed=seed, pin_memory=pin_memory)
    epoch = 0
    while True:
        for position in range(stream.count(epoch)):
            yield epoch, stream.get(epoch, position)
        epoch += 1


@torch.no_grad()
def dev_nll(model, corpus: TokenizedCorpus, *, max_tokens: int, max_positions: int, device: torch.device,
            autocast) -> tuple[float, int]:
    """(NLL per non-pad target token, token count) under teacher forcing, dropout off, over the pairs
    that fit, as translate's dev loss (`batching.teacher_forcing_batches`)."""
    model.eval()
    total, tokens = torch.zeros((), dtype=torch.float64, device=device), 0
    for idx in teacher_forcing_batches(corpus.src_lengths, corpus.tgt_lengths, max_positions=max_positions,
                                       max_tokens=max_tokens):
        batch = collate_corpus(corpus, idx).to(device)
        with autocast:
            logits = forward_logits(model, batch)
        total += nll_sum(logits, hf_labels(batch.tgt_out)).double()
        tokens += batch.n_tgt_tokens
    model.train()
    return float(total) / tokens, tokens


def cpu_copy(model) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# Training


def train(model, data, cfg: Config, *, device, autocast, max_time: float, exclude_eval_time: bool, log_every: int,
          eval_every: int, log) -> dict:
    """The loop; returns its summary with `best_state`, the CPU weights of the lowest dev NLL."""
    from transformers.trainer_pt_utils import LabelSmoother

    smoother = LabelSmoother(epsilon=cfg.train.label_smoothing)
    optimizer = build_optimizer(model, cfg.optim, device)
    schedule = build_schedule(optimizer, cfg.optim)
    batches = epoch_batches(data.train, max_tokens=cfg.train.max_tokens, seed=cfg.train.seed,
                            pin_memory=device.type == "cuda")
    model.train()

    step, epoch, trained_epoch, stopped = 0, 0, 0, ""
    best = {"nll": math.inf, "step": None}
    best_state, last_eval_step = None, None
    interval_sums, interval_tokens, interval_start = torch.zeros(2, device=device), 0, 0.0
    tokens_per_s = []
    eval_seconds = 0.0

    def validate():
        nonlocal eval_seconds, best_state, last_eval_step
        start = time.perf_counter()
        nll, tokens = dev_nll(model, data.valid, max_tokens=cfg.train.max_tokens,
                              max_positions=cfg.model.max_positions, device=device, autocast=autocast)
        if nll < best["nll"]:
            best.update(nll=nll, step=step)
            best_state = cpu_copy(model)
        common.synchronize(device)
        seconds = time.perf_counter() - start
        eval_seconds += seconds
        last_eval_step = step
        log({"kind": "valid", "step": step, "nll": nll, "ppl": format_perplexity(nll), "tokens": tokens,
             "best_nll": best["nll"], "best_step": best["step"], "eval_s": round(seconds, 3), **clocks()})

    loop_start = time.perf_counter()

    def clocks() -> dict:
        elapsed = time.perf_counter() - loop_start
        return {"elapsed_s": round(elapsed, 3), "train_s": round(elapsed - eval_seconds, 3)}

    while True:
        # 1. Stop before a step, as translate's _stop_reason does.
        elapsed = time.perf_counter() - loop_start - (eval_seconds if exclude_eval_time else 0.0)
        if cfg.train.max_steps and step >= cfg.train.max_steps:
            stopped = f"reached train.max_steps ({cfg.train.max_steps})"
        elif max_time and elapsed >= max_time:
            stopped = f"reached --max-time ({max_time:g} s, {'training only' if exclude_eval_time else 'whole loop'})"
        if stopped:
            break
        epoch, batch = next(batches)
        if cfg.train.max_epochs and epoch >= cfg.train.max_epochs:
            stopped = f"reached train.max_epochs ({cfg.train.max_epochs})"
            break
        # 2. Forward under autocast, HF's label-smoothed loss (mean over non-pad tokens), backward.
        batch = batch.to(device)
        labels = hf_labels(batch.tgt_out)  # (B, T)
        with autocast:
            logits = forward_logits(model, batch)  # (B, T, V)
        loss = smoother({"logits": logits.float()}, labels)
        loss.backward()
        # 3. Clip, step, schedule, zero_grad (Trainer's order).
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_norm or math.inf)
        lr = optimizer.param_groups[0]["lr"]  # this step's (the schedule moves on below)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        step, trained_epoch = step + 1, epoch
        with torch.no_grad():
            interval_sums += torch.stack([loss.detach() * batch.n_tgt_tokens, nll_sum(logits.detach(), labels)])
        interval_tokens += batch.n_tgt_tokens
        # 4. Log (the only host sync of the step), validate.
        if step % log_every == 0:
            loss_mean, nll_mean = (interval_sums / interval_tokens).tolist()
            now = clocks()
            rate = interval_tokens / max(now["train_s"] - interval_start, 1e-9)
            tokens_per_s.append(rate)
            log({"kind": "train", "step": step, "epoch": epoch, "loss": loss_mean, "nll": nll_mean,
                 "ppl": format_perplexity(nll_mean), "lr": lr, "grad_norm": float(grad_norm),
                 "tgt_tokens_per_s": rate, **now})
            interval_sums.zero_()
            interval_tokens, interval_start = 0, now["train_s"]
            if not math.isfinite(loss_mean):
                stopped = f"non-finite training loss at step {step}"
                break
        if step % eval_every == 0:
            validate()

    common.synchronize(device)
    end = clocks()
    if last_eval_step != step and not stopped.startswith("non-finite"):
        validate()  # after the budget, as translate validates once more at the end
    return {"steps": step, "epoch": trained_epoch, "stopped": stopped, "loop_seconds": end["elapsed_s"],
            "train_seconds": end["train_s"], "eval_seconds_in_loop": round(end["elapsed_s"] - end["train_s"], 3),
            "tgt_tokens_per_s_median": statistics.median(tokens_per_s) if tokens_per_s else None,
            "best": {"step": best["step"], "dev_nll": best["nll"], "dev_ppl": format_perplexity(best["nll"])},
            "best_state": best_state}


# ---------------------------------------------------------------------------------------------
# Decoding


def max_new_tokens(src: torch.Tensor, *, max_len_a: float, max_len_b: int, max_positions: int) -> int:
    """The batch's generate limit: translate's int(a · src_len + b) for its longest source (EOS
    counted, as beam.max_lengths counts it), capped like translate's, + 1 for the EOS itself."""
    longest = int((src != PAD_ID).sum(1).max())
    return output_limit(longest, max_len_a=max_len_a, max_len_b=max_len_b, max_output_len=max_positions - 1) + 1


def generation_config(*, beam: int, lenpen: float, max_new_tokens: int):
    from transformers import GenerationConfig

    beam_only = dict(length_penalty=lenpen, early_stopping=False) if beam > 1 else {}
    return GenerationConfig(num_beams=beam, max_new_tokens=max_new_tokens, do_sample=False,
                            decoder_start_token_id=BOS_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
                            pad_token_id=PAD_ID, forced_eos_token_id=EOS_ID, bad_words_ids=[[PAD_ID], [BOS_ID]],
                            **beam_only)


@torch.no_grad()
def translate_sentences(model, tokenizer: Tokenizer, sentences: list[str], *, cfg: Config, beam: int, lenpen: float,
                        batch_tokens: int, device: torch.device) -> list[str]:
    """Detokenized translations in input order (empty line → empty line), on translate's length-sorted batches."""
    model.eval()
    max_positions = cfg.model.max_positions
    ids = encode_sources(tokenizer, sentences, max_source=max_positions - 1,
                         warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    outputs = [""] * len(sentences)
    for batch, src in source_batches(ids, batch_tokens=batch_tokens):
        for start in range(0, len(batch), MAX_BATCH_SENTENCES):
            rows = src[start:start + MAX_BATCH_SENTENCES]
            rows = rows[:, :int((rows != PAD_ID).sum(1).max())].to(device)  # (b, S) drop all-pad columns
            n_new = max_new_tokens(rows, max_len_a=cfg.eval.max_len_a, max_len_b=cfg.eval.max_len_b,
                                   max_positions=max_positions)
            gen = generation_config(beam=beam, lenpen=lenpen, max_new_tokens=n_new)
            out = model.generate(input_ids=rows, attention_mask=rows != PAD_ID,
                                 generation_config=gen)  # (b, ≤ 1 + n_new): the decoder start, then the output
            for i, row in zip(batch[start:start + MAX_BATCH_SENTENCES], out[:, 1:].tolist()):
                tokens = row[:row.index(EOS_ID)] if EOS_ID in row else row
                outputs[i] = tokenizer.decode([tokens])[0]
    return outputs


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, type=Path, help="a translate config (as `translate train --config`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, as `translate train --set`; repeatable")
    p.add_argument("--max-time", type=float, help="seconds of training (default train.max_time; 0 = no limit)")
    p.add_argument("--exclude-eval-time", action="store_true",
                   help="count only training steps against --max-time (translate counts the whole loop)")
    p.add_argument("--log-every", type=int, help="steps between train records (default train.log_every)")
    p.add_argument("--eval-every", type=int, help="steps between dev NLL evaluations (default train.eval_every)")
    p.add_argument("--beam", type=int, help="beam size (default eval.beam)")
    p.add_argument("--lenpen", type=float, default=HF_LENPEN, help="HF length penalty α of L^α (default 0.6)")
    p.add_argument("--batch-tokens", type=int, help="source tokens per decoding batch (default eval.batch_tokens)")
    p.add_argument("--src", type=Path, help="test source file; default: the config's data.test")
    p.add_argument("--ref", type=Path, help="reference file matching --src")
    p.add_argument("--output", required=True, type=Path, help="result JSON")
    p.add_argument("--hyp", required=True, type=Path, help="detokenized test hypotheses, one a line")
    p.add_argument("--metrics", type=Path, help="JSON lines of train/valid records (default: --output with .jsonl)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except UserError as e:
        print(f"peer_marian: error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    import transformers

    # 1. Config, device, data: as translate train.
    cfg = load_config(args.config, args.overrides)
    if cfg.train.update_freq != 1:
        raise UserError(f"train.update_freq ({cfg.train.update_freq}): the peer takes one batch per step")
    max_time = cfg.train.max_time if args.max_time is None else args.max_time
    if not (max_time or cfg.train.max_steps or cfg.train.max_epochs):
        raise UserError("no stopping rule: give --max-time or set train.max_steps / train.max_epochs")
    device = common.resolve_device(cfg.train.device)
    if device.type == "cuda" and cfg.train.precision == Precision.FP16:
        raise UserError("train.precision fp16: the peer runs bf16 (or fp32); HF's fp16 needs a GradScaler")
    use_bf16 = device.type == "cuda" and cfg.train.precision == Precision.BF16
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()
    data = prepare(cfg, verbose=True)
    if data.valid is None:
        raise UserError("the peer keeps the weights of the best dev NLL: the config needs data.valid")
    tokenizer = Tokenizer(data.tokenizer_file)
    sources, references, test_name = _test_pairs(args, cfg)  # read before training: fail early

    # 2. Model and training.
    transformers.set_seed(cfg.train.seed)
    model = build_model(cfg, tokenizer.vocab_size).to(device)
    metrics_path = args.metrics or args.output.with_suffix(".jsonl")
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text("")

    def log(record: dict) -> None:
        line = json.dumps(record)
        print(line, flush=True)
        with open(metrics_path, "a") as f:
            f.write(line + "\n")

    summary = train(model, data, cfg, device=device, autocast=autocast, max_time=max_time,
                    exclude_eval_time=args.exclude_eval_time, log_every=args.log_every or cfg.train.log_every,
                    eval_every=args.eval_every or cfg.train.eval_every, log=log)
    best_state = summary.pop("best_state")

    # 3. Test set with the best weights, fp32, timed like `translate eval` (tokenize → detokenize).
    if best_state is not None:
        model.load_state_dict(best_state)
    beam = args.beam or cfg.eval.beam
    batch_tokens = args.batch_tokens or cfg.eval.batch_tokens
    with common.Timer(device) as decoding:
        hypotheses = translate_sentences(model, tokenizer, sources, cfg=cfg, beam=beam, lenpen=args.lenpen,
                                         batch_tokens=batch_tokens, device=device)
    decode_seconds = decoding.seconds
    args.hyp.parent.mkdir(parents=True, exist_ok=True)
    args.hyp.write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
    test = {"test_set": test_name, "sentences": len(sources), "beam": beam, "lenpen": args.lenpen,
            "lenpen_formula": "logprob / L^alpha (HF), not GNMT", "batch_tokens": batch_tokens,
            "decode_seconds": round(decode_seconds, 3),
            "sentences_per_second": round(len(sources) / decode_seconds, 1)}
    test.update(score(hypotheses, references) if any(h.strip() for h in hypotheses)
                else {"bleu": 0.0, "chrf": 0.0, "note": "every hypothesis is empty"})

    result = {
        "system": "hf_marian_peer",
        **summary,
        "budget": {"max_time": max_time, "clock": "training steps only" if args.exclude_eval_time else
                   "whole training loop, dev evaluations included (translate's train.max_time)"},
        "test": test,
        "parameters": sum(p.numel() for p in model.parameters()),
        "recipe": {"model": "MarianMTModel, post-norm, tied embeddings, scale_embedding, sinusoidal, sdpa",
                   "translate_norm_first_ignored": cfg.model.norm_first,
                   "loss": f"transformers LabelSmoother(epsilon={cfg.train.label_smoothing})",
                   "optimizer": "torch.optim.AdamW (fused on CUDA), Trainer's weight-decay groups",
                   "schedule": f"get_inverse_sqrt_schedule(warmup {cfg.optim.warmup_steps})",
                   "precision": "bf16 autocast" if use_bf16 else "fp32", "decode_precision": "fp32"},
        "environment": common.environment(device),
        "data": data.summary,
        "config": config_to_dict(cfg),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"peer: {summary['steps']} steps in {summary['train_seconds']:.0f} s of training "
          f"({summary['loop_seconds']:.0f} s loop; {summary['stopped']}); "
          f"best dev NLL {summary['best']['dev_nll']:.4g} at step {summary['best']['step']}; "
          f"test BLEU {test['bleu']}, chrF {test['chrf']} "
          f"({test['sentences_per_second']} sentences/s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
