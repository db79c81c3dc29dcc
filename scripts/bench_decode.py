"""Decoding speed: `translate`'s beam search and greedy search against Hugging Face `generate`.

Equal work: EOS is disabled until a fixed output length, so both systems generate the same number of
tokens whatever the weights are (an untrained model would otherwise stop at random points):

    translate   translate.evaluate.translate_sentences (length-sorted batches of --batch-tokens source
                tokens, translate.beam.beam_search / greedy_search); the model's `decode` is wrapped to
                set the EOS logit to −inf until each sentence's limit max_len = src_len + 50, where the
                beam search itself forces EOS: src_len + 50 tokens + EOS per sentence.
    hf          MarianMTModel.generate(num_beams, length_penalty, max_new_tokens = min_new_tokens =
                the batch's longest limit + 1) on the same batches; Marian of the same dimensions,
                randomly initialised (speed does not depend on the weights at forced length).

    ct2         CTranslate2 (`translate export --format ctranslate2`, built from the same weights in a
                temporary directory) through translate.exported.translate_ctranslate2: the same pieces and
                limits, one translate_batch per output limit with min_decoding_length = max_decoding_length
                = limit + 1, so it generates exactly as many tokens as translate; one row per compute type
                (--ct2-compute-types: float32 and int8 on the CPU; float32, float16 and bfloat16 on CUDA).
                Where the package is not installed, --ct2-wheel FILE unpacks a ctranslate2 wheel (pip
                download ctranslate2 --no-deps) onto sys.path.

Both run in the same dtype (--dtype; float32 by default, like `translate eval`); CTranslate2 in its
compute type. Timed: tokenization,
batching, search and detokenization of all sentences (translate_sentences does them all; the HF rows
do the same around generate). Untimed warm-up on the first --warmup-sentences. A `translate` row
with EOS allowed (`_natural`) is the real `translate eval` setting; with an untrained model it
says little.

    TRANSLATE_DATA=/data python scripts/bench_decode.py --checkpoint runs/x/checkpoint_best.pt --output decode.json
    python scripts/bench_decode.py --spm data/tok-xxx/spm.model --output decode.json   # untrained Transformer-base
    python scripts/bench_decode.py --device cpu --tiny --spm spm.model --src some.en --output /tmp/d.json
    python scripts/bench_decode.py --checkpoint C --systems translate,ct2 --max-sentences 300 --output d.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
import zipfile
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as common  # noqa: E402
from translate import corpus as corpora  # noqa: E402
from translate.beam import NEG_INF, output_limit  # noqa: E402
from translate.config import MODEL_PRESETS, ModelConfig  # noqa: E402
from translate.evaluate import (DecodeOptions, encode_sources, load_for_inference, source_batches,  # noqa: E402
                                translate_sentences)
from translate.export import write_ctranslate2  # noqa: E402
from translate.exported import ctranslate2_nbest, translate_ctranslate2  # noqa: E402
from translate.model import Transformer  # noqa: E402
from translate.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer  # noqa: E402
from peer_marian import max_new_tokens  # noqa: E402  (the peer's generate limit, the same rule)

PROFILED_SENTENCES = 1000  # --profile: about a third of newstest2014, several full batches
TINY_DIMS = dict(d_model=32, n_heads=2, d_ff=64, n_encoder_layers=1, n_decoder_layers=1)


class ForcedLength:
    """Wraps a Transformer so that EOS cannot be chosen before a sentence's output limit.

    Each row's limit is int(max_len_a · src_len + max_len_b) capped at max_output_len, exactly as
    translate.beam.max_lengths computes it, src_len read from the padding mask passed to `decode`
    (rows follow the beam search's reordering and dropping, so the mask always matches them). At the
    limit the beam search allows only EOS, with its true log-probability, which is left untouched.
    """

    def __init__(self, model: Transformer, *, max_len_a: float, max_len_b: float):
        self.model, self.cfg = model, model.cfg
        self.max_len_a, self.max_len_b = max_len_a, max_len_b

    def encode(self, src, src_pad_mask):
        return self.model.encode(src, src_pad_mask)

    def new_cache(self, *args, **kwargs):
        return self.model.new_cache(*args, **kwargs)

    def decode(self, tgt, memory, src_pad_mask, cache):
        start = cache.length  # tokens generated before this call
        logits = self.model.decode(tgt, memory, src_pad_mask, cache)  # (N, 1, V)
        self._no_early_eos(logits[:, -1], start, (~src_pad_mask).sum(dim=1))
        return logits

    def decode_step(self, tokens, position, cache, memory_mask):
        """The static-shape step (`--cuda-graphs`), the same forcing done with tensors, inside the graph."""
        logits = self.model.decode_step(tokens, position, cache, memory_mask)  # (N, V)
        self._no_early_eos(logits, position, memory_mask.flatten(1).sum(dim=1))
        return logits

    def _no_early_eos(self, logits, position, src_len) -> None:
        """EOS's logit (N, V) to −inf where `position` (an int or a 0-dim tensor) is before the row's limit."""
        limit = (self.max_len_a * src_len.to(torch.float64) + self.max_len_b).floor().clamp(
            max=self.cfg.max_positions - 1)  # (N,)
        early = position < limit  # (N,)
        logits[:, EOS_ID] = torch.where(early, NEG_INF, logits[:, EOS_ID].float()).to(logits.dtype)


def load_model(args, device, dtype):
    """(model, tokenizer, note) from --checkpoint, or a random Transformer of --spm's vocabulary."""
    if args.checkpoint:
        model, tokenizer, _ = load_for_inference(Path(args.checkpoint), device)
        return model.to(dtype), tokenizer, f"trained checkpoint {args.checkpoint}"
    if not args.spm:
        sys.exit("error: give --checkpoint, or --spm (a SentencePiece model) for an untrained model")
    tokenizer = Tokenizer(args.spm)
    dims = TINY_DIMS if args.tiny else MODEL_PRESETS["base"]
    torch.manual_seed(args.seed)
    model = Transformer(ModelConfig(**dims), vocab_size=tokenizer.vocab_size, pad_id=PAD_ID)
    return model.to(device, dtype).eval(), tokenizer, "UNTRAINED (randomly initialised) Transformer: speed only"


def model_dims(model: Transformer, vocab_size: int) -> dict:
    c = model.cfg
    return dict(d_model=c.d_model, n_heads=c.n_heads, d_ff=c.d_ff, n_encoder_layers=c.n_encoder_layers,
                n_decoder_layers=c.n_decoder_layers, vocab_size=vocab_size)


def source_ids(tokenizer: Tokenizer, sentences: list[str], max_positions: int) -> list[list[int]]:
    """As translate_sentences prepares them: normalised, tokenized, truncated to the position table."""
    return encode_sources(tokenizer, sentences, max_source=max_positions - 1)


def run_translate(model, tokenizer, sentences, *, options: DecodeOptions, device, forced: bool) -> list[str]:
    """Translate all sentences (the timed work)."""
    wrapped = ForcedLength(model, max_len_a=options.max_len_a, max_len_b=options.max_len_b) if forced else model
    return translate_sentences(wrapped, tokenizer, sentences, options=options, device=device)


def forced_tokens(tokenizer, sentences, *, options: DecodeOptions, max_positions: int) -> int:
    """Tokens a forced run generates (EOS included): every non-empty sentence its limit + EOS."""
    ids = source_ids(tokenizer, sentences, max_positions)
    return sum(output_limit(len(s) + 1, max_len_a=options.max_len_a, max_len_b=options.max_len_b,
                            max_output_len=max_positions - 1) + 1 for s in ids if s)


def output_tokens(tokenizer, outputs: list[str]) -> int:
    """Tokens of natural outputs (EOS included), re-tokenized: approximate."""
    return sum(len(t) + 1 for t in tokenizer.encode(outputs))


def run_hf(hf_model, tokenizer, sentences, *, options: DecodeOptions, device, max_positions: int):
    """Hugging Face generate on translate's batches, forced to each batch's longest limit; returns tokens."""
    ids = source_ids(tokenizer, sentences, max_positions)
    outputs, generated = [""] * len(sentences), 0
    for batch, src in source_batches(ids, batch_tokens=options.batch_tokens):
        src = src.to(device)  # (B, S)
        n_new = max_new_tokens(src, max_len_a=options.max_len_a, max_len_b=options.max_len_b,
                               max_positions=max_positions)
        with torch.no_grad():
            out = hf_model.generate(input_ids=src, attention_mask=src != PAD_ID, num_beams=options.beam,
                                    do_sample=False, max_new_tokens=n_new, min_new_tokens=n_new,
                                    **({"length_penalty": options.lenpen} if options.beam > 1 else {}),
                                    decoder_start_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID)
        new = out[:, 1:]  # drop the decoder start token: (B, n_new)
        generated += new.numel()
        for i, row in zip(batch, new.tolist()):
            outputs[i] = tokenizer.decode([[t for t in row if t not in (EOS_ID, PAD_ID)]])[0]
    return generated


def measure(name: str, run, count, sentences, warmup: list[str], device) -> dict:
    """Time run(sentences) after an untimed run(warmup); count(sentences, result) gives the generated
    tokens, after the timing."""
    common.reset_memory(device)
    run(warmup)
    with common.Timer(device) as timer:
        result = run(sentences)
    tokens = count(sentences, result)
    return {"system": name, "sentences": len(sentences), "seconds": round(timer.seconds, 3),
            "sentences_per_s": len(sentences) / timer.seconds, "generated_tokens": tokens,
            "tokens_per_s": tokens / timer.seconds, "peak_memory_gb": common.peak_memory_gb(device), "error": None}


COLUMNS = [("system", "system"), ("seconds", "s"), ("sentences_per_s", "sent/s"), ("tokens_per_s", "gen tok/s"),
           ("generated_tokens", "gen tokens"), ("peak_memory_gb", "peak GB"), ("vs_translate", "× translate")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = os.environ.get("TRANSLATE_DATA", "")
    p.add_argument("--src", default=f"{data}/newstest/newstest2014.en" if data else None,
                   help="source sentences, one a line (default $TRANSLATE_DATA/newstest/newstest2014.en)")
    p.add_argument("--checkpoint", help="a translate checkpoint (its spm.model beside it)")
    p.add_argument("--spm", help="without --checkpoint: SentencePiece model of an untrained Transformer-base")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--tiny", action="store_true", help="tiny untrained model, few sentences, short outputs (CPU tests)")
    p.add_argument("--max-sentences", type=int, help="decode only the first N lines (tiny default 6)")
    p.add_argument("--warmup-sentences", type=int, help="untimed warm-up lines (default 200; tiny 2)")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--lenpen", type=float, default=0.6, help="translate: GNMT α; HF: its own L^α (not the same)")
    p.add_argument("--max-len-b", type=int, help="output limit src_len + B (default 50; tiny 4)")
    p.add_argument("--batch-tokens", type=int, default=8000, help="source tokens per decoding batch")
    p.add_argument("--systems", default="translate,hf,ct2", help="any of translate, hf, ct2, comma-separated")
    p.add_argument("--ct2-compute-types",
                   help="compute types of the ct2 rows, comma-separated (default: float32,int8 on the CPU; "
                        "float32,float16,bfloat16 on CUDA)")
    p.add_argument("--ct2-wheel", type=Path, help="a ctranslate2 wheel, unpacked and imported where the package "
                                                  "is not installed")
    p.add_argument("--no-greedy", action="store_true", help="skip the greedy rows")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="also translate's forced rows with static shapes and CUDA graphs (`translate eval --cuda-graphs`; "
                        "on a CPU the static shapes alone, no graph)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--profile", type=Path,
                   help=f"after the timing, a torch.profiler table of translate's forced beam row on the first "
                        f"{PROFILED_SENTENCES} sentences (and, with --cuda-graphs, of its graphs row, in FILE's "
                        "name + _graphs; kernel times inside graph replays are less reliable)")
    p.add_argument("--output", type=Path)
    p.add_argument("--markdown", type=Path)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.src:
        sys.exit("error: give --src or set TRANSLATE_DATA")
    device = common.resolve_device(args.device)
    dtype = getattr(torch, args.dtype)
    sentences = list(corpora.read_lines(corpora.find_file(Path(args.src))))
    limit = args.max_sentences or (6 if args.tiny else None)
    sentences = sentences[:limit] if limit else sentences
    warmup = sentences[: args.warmup_sentences or (2 if args.tiny else 200)]
    max_len_b = args.max_len_b if args.max_len_b is not None else (4 if args.tiny else 50)
    model, tokenizer, model_note = load_model(args, device, dtype)
    dims = model_dims(model, tokenizer.vocab_size)
    systems = {s.strip() for s in args.systems.split(",")}

    searches = [args.beam] + ([] if args.no_greedy or args.beam == 1 else [1])
    ct2_types = (args.ct2_compute_types or ("float32,float16,bfloat16" if device.type == "cuda" else "float32,int8")
                 ).split(",")
    ct2_models = {}  # the exported directory and a Translator per compute type, made on first use
    rows = []
    profiled = []  # (path, run) of translate's forced beam rows, profiled after all the timing
    for beam in searches:
        options = DecodeOptions(beam=beam, lenpen=args.lenpen if beam > 1 else 0.0, max_len_a=1.0,
                                max_len_b=max_len_b, batch_tokens=args.batch_tokens)
        search = f"beam{beam}" if beam > 1 else "greedy"
        candidates = []  # (name, run(sentences), count(sentences, what run returned))
        if "translate" in systems:
            variants = [("", options)] + ([("_graphs", replace(options, cuda_graphs=True))] if args.cuda_graphs else [])
            for suffix, o in variants:
                run = partial(run_translate, model, tokenizer, options=o, device=device, forced=True)
                candidates.append((f"translate_{search}_forced{suffix}", run,
                    lambda s, _, o=o: forced_tokens(tokenizer, s, options=o, max_positions=model.cfg.max_positions)))
                if args.profile and beam == args.beam:
                    profiled.append((args.profile.with_stem(args.profile.stem + suffix), run))
        if "hf" in systems:
            candidates.append((f"hf_{search}_forced", hf_runner(dims, model.cfg.max_positions, tokenizer,
                                                                options=options, device=device, dtype=dtype),
                               lambda _, generated: generated))
        if "ct2" in systems:
            for compute_type in ct2_types:
                candidates.append((f"ct2_{search}_forced_{compute_type}", ct2_runner(
                    ct2_models, model, tokenizer, options=options, device=device, compute_type=compute_type,
                    forced=True, wheel=args.ct2_wheel),
                    lambda _, nbests: sum(len(nbest[0][0]) for nbest in nbests if nbest)))
            if beam == args.beam:
                candidates.append((f"ct2_{search}_natural_{ct2_types[0]}", ct2_runner(
                    ct2_models, model, tokenizer, options=options, device=device, compute_type=ct2_types[0],
                    forced=False, wheel=args.ct2_wheel), lambda _, outputs: output_tokens(tokenizer, outputs)))
        if "translate" in systems and beam == args.beam:
            candidates.append((f"translate_{search}_natural", lambda s, o=options: run_translate(
                model, tokenizer, s, options=o, device=device, forced=False),
                lambda _, outputs: output_tokens(tokenizer, outputs)))
        for name, run, count in candidates:
            print(f"[bench_decode] {name} ...", file=sys.stderr, flush=True)
            try:
                rows.append(measure(name, run, count, sentences, warmup, device))
            except Exception as error:  # a failing peer must not stop the others
                traceback.print_exc()
                rows.append({"system": name, "error": common.error_text(error)})
        common.add_ratios([r for r in rows if search in r["system"]], baseline=f"translate_{search}_forced",
                          metric="sentences_per_s")
    for row in rows:  # one column name for the table: relative to translate's row of the same search
        key = next((k for k in row if k.startswith("vs_")), None)
        row["vs_translate"] = row.pop(key) if key else None

    result = {
        "benchmark": "decode",
        "environment": common.environment(device),
        "settings": {"src": args.src, "sentences": len(sentences), "model": model_note, "dims": dims,
                     "dtype": args.dtype, "beam": args.beam, "lenpen": args.lenpen, "max_len": f"src_len + {max_len_b}",
                     "batch_tokens": args.batch_tokens, "warmup_sentences": len(warmup)},
        "notes": [model_note,
                  f"forced rows: EOS disabled until src_len + {max_len_b} (translate: per sentence; HF: min_new_tokens "
                  "= max_new_tokens = the batch's longest limit + 1, so HF also pads shorter sentences of a batch)",
                  "HF's length_penalty is L^α, translate's GNMT ((5+L)/6)^α: irrelevant at forced length",
                  "ct2 rows: min = max decoding length = limit + 1 per group of equal limits, the same tokens as "
                  f"translate; {torch.get_num_threads()} CPU threads (intra_threads) like torch's",
                  "natural row: EOS allowed (the `translate eval` setting); its token count is re-tokenized output"],
        "rows": rows,
    }
    table = common.markdown_table(rows, COLUMNS)
    common.write_outputs(result, table, output=args.output, markdown=args.markdown,
                         title="Decoding speed (scripts/bench_decode.py)")
    subset = sentences[:PROFILED_SENTENCES]  # a few batches: a full trace of 3003 sentences is ~1M events
    for path, run in profiled:
        print(f"[bench_decode] profiling into {path} ...", file=sys.stderr, flush=True)
        try:
            run(warmup)
            common.write_profile(lambda run=run: run(subset), device=device, path=path,
                                 heading=f"{path.stem}: {len(subset)} sentences, {args.dtype}")
        except Exception:  # the timed rows are already written
            traceback.print_exc()
    return 0


def hf_runner(dims: dict, max_positions: int, tokenizer, *, options: DecodeOptions, device, dtype):
    """run(sentences) for a randomly initialised MarianMTModel, built on first use (inside the warm-up)."""
    holder = {}

    def run(sentences):
        if "model" not in holder:
            from transformers import MarianMTModel
            torch.manual_seed(0)
            config = common.marian_config(dims, dropout=0.0, max_positions=max_positions)
            holder["model"] = MarianMTModel(config).to(device, dtype).eval()
        return run_hf(holder["model"], tokenizer, sentences, options=options, device=device,
                      max_positions=max_positions)

    return run


def ct2_runner(holder: dict, model, tokenizer, *, options: DecodeOptions, device, compute_type: str, forced: bool,
               wheel: Path | None):
    """run(sentences) for a CTranslate2 export of `model` in `compute_type`, exported and loaded on first
    use (inside the warm-up); `holder` keeps the export and the Translators across rows. Forced, run
    returns the n-best lists (their tokens are counted); natural, the translations."""

    def run(sentences):
        if compute_type not in holder:
            ctranslate2 = import_ctranslate2(wheel)
            if "dir" not in holder:
                holder["dir"] = Path(tempfile.mkdtemp(prefix="bench_decode_ct2_")) / "model"
                write_ctranslate2(model, tokenizer, holder["dir"])
            holder[compute_type] = ctranslate2.Translator(
                str(holder["dir"]), device=device.type, device_index=device.index or 0, compute_type=compute_type,
                intra_threads=torch.get_num_threads() if device.type == "cpu" else 1)
        if forced:
            ids = source_ids(tokenizer, sentences, model.cfg.max_positions)
            return ctranslate2_nbest(holder[compute_type], tokenizer, ids, options=options,
                                     max_positions=model.cfg.max_positions, forced=True)
        return translate_ctranslate2(holder[compute_type], tokenizer, sentences, options=options,
                                     max_positions=model.cfg.max_positions)

    return run


def import_ctranslate2(wheel: Path | None):
    """The ctranslate2 module: the installed one, else `wheel` unpacked into a temporary directory on
    sys.path (a wheel is a zip of the installed files; its shared libraries come inside it)."""
    try:
        import ctranslate2
    except ImportError:
        if wheel is None:
            raise ImportError("ctranslate2 is not installed: pip install ctranslate2, or pass --ct2-wheel FILE"
                              ) from None
        target = Path(tempfile.mkdtemp(prefix="ct2_wheel_"))
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)
        sys.path.insert(0, str(target))
        import ctranslate2
    return ctranslate2


if __name__ == "__main__":
    sys.exit(main())
