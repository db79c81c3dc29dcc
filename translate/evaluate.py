"""Translation with a trained model, and sacreBLEU scoring: `translate eval` and `translate translate`.

BLEU is always computed on detokenized output against the untouched reference lines (sacreBLEU's
default 13a tokenization, cased), and reported with its signature.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from translate import corpus as corpora
from translate.batching import pack_sorted
from translate.beam import beam_search, greedy_search
from translate.checkpoint import load_checkpoint
from translate.config import Config, Source, config_from_dict
from translate.errors import UserError
from translate.model import Transformer
from translate.runtime import resolve_device
from translate.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer


@dataclass
class DecodeOptions:
    beam: int = 4
    lenpen: float = 0.6
    max_len_a: float = 1.0
    max_len_b: int = 50
    batch_tokens: int = 8000
    cuda_graphs: bool = False  # decode with static shapes, each batch's step one CUDA graph (translate.decoders)


def load_for_inference(checkpoint: Path, device: torch.device,
                       dtype: torch.dtype = torch.float32) -> tuple[Transformer, Tokenizer, Config]:
    """The model (eval mode, on `device`, its weights in `dtype`), its tokenizer and config, found from
    the checkpoint alone."""
    return model_from_checkpoint(load_checkpoint(checkpoint), checkpoint, device, dtype)


def model_from_checkpoint(state: dict, checkpoint: Path, device: torch.device,
                          dtype: torch.dtype = torch.float32) -> tuple[Transformer, Tokenizer, Config]:
    """`load_for_inference` from a checkpoint already read (`load_checkpoint(checkpoint)`)."""
    cfg = config_from_dict(state["config"], source=f"the config stored in {checkpoint}")
    tokenizer_file = Path(checkpoint).parent / state["tokenizer"]
    if not tokenizer_file.is_file():
        raise UserError(f"tokenizer file {tokenizer_file} (named by checkpoint {checkpoint}) is missing; "
                        "copy the run directory's spm.model next to the checkpoint")
    tokenizer = Tokenizer(tokenizer_file)
    if tokenizer.vocab_size != state["vocab_size"]:
        raise UserError(f"tokenizer {tokenizer_file} has {tokenizer.vocab_size} pieces but checkpoint {checkpoint} "
                        f"was trained with {state['vocab_size']}: they belong to different runs")
    model = Transformer(cfg.model, vocab_size=tokenizer.vocab_size, pad_id=PAD_ID)
    model.load_state_dict(state["model"])
    return model.to(device, dtype).eval(), tokenizer, cfg


def translate_sentences(model: Transformer, tokenizer: Tokenizer, sentences: list[str], *, options: DecodeOptions,
                        device: torch.device, warn=None) -> list[str]:
    """Detokenized translations of `sentences`, in input order (an empty line gives an empty line).

    Sentences are sorted by length and decoded in batches of about `batch_tokens` source tokens. A
    sentence without any finite-scoring hypothesis (a model whose scores are NaN or −inf) gives an
    empty line and a warning.
    """
    ids = encode_sources(tokenizer, sentences, max_source=model.cfg.max_positions - 1, warn=warn)
    outputs = [""] * len(sentences)
    for batch, src in source_batches(ids, batch_tokens=options.batch_tokens):
        hypotheses = _search(model, src.to(device), options)
        for i, nbest in zip(batch, hypotheses):
            if nbest:
                outputs[i] = tokenizer.decode([nbest[0].tokens])[0]
            elif warn:
                warn(f"line {i + 1}: no translation with a finite score (the model's scores are NaN or -inf); "
                     "left empty")
    return outputs


def encode_sources(tokenizer: Tokenizer, sentences: list[str], *, max_source: int, warn=None) -> list[list[int]]:
    """Piece ids of each normalised sentence, truncated to `max_source` (room for EOS) with a warning."""
    ids = tokenizer.encode([corpora.normalize(s) for s in sentences])
    for i, seq in enumerate(ids):
        if len(seq) > max_source:
            if warn:
                warn(f"line {i + 1}: {len(seq)} source tokens, truncated to the model's limit of {max_source}")
            ids[i] = seq[:max_source]
    return ids


def source_batches(ids: list[list[int]], *, batch_tokens: int):
    """Yield (indices, src (B, S)): the non-empty sentences sorted by length, packed as training
    batches are (`batching.pack_sorted`), each row its ids + EOS, right-padded."""
    order = np.array(sorted((i for i in range(len(ids)) if ids[i]), key=lambda i: len(ids[i])), dtype=np.int64)
    widths = np.array([len(ids[i]) + 1 for i in order], dtype=np.int64)
    for batch in pack_sorted(order, widths, batch_tokens):
        rows = [ids[i] + [EOS_ID] for i in batch]
        src = np.full((len(rows), max(map(len, rows))), PAD_ID, dtype=np.int64)
        for row, seq in enumerate(rows):
            src[row, :len(seq)] = seq
        yield batch.tolist(), torch.from_numpy(src)


@torch.no_grad()
def _search(model: Transformer, src: torch.Tensor, options: DecodeOptions):
    common = dict(max_len_a=options.max_len_a, max_len_b=options.max_len_b, bos_id=BOS_ID, eos_id=EOS_ID,
                  pad_id=PAD_ID, max_output_len=model.cfg.max_positions - 1, static_shapes=options.cuda_graphs)
    if options.beam == 1:
        return greedy_search(model, src, src == PAD_ID, **common)
    return beam_search(model, src, src == PAD_ID, beam_size=options.beam, lenpen=options.lenpen, **common)


# ---------------------------------------------------------------------------------------------
# Scoring


def score(hypotheses: list[str], references: list[str]) -> dict:
    """sacreBLEU BLEU and chrF with signatures, and the hypothesis/reference length ratio."""
    from sacrebleu.metrics import BLEU, CHRF

    if not hypotheses or not any(h.strip() for h in hypotheses):
        raise UserError("the hypotheses are empty: nothing to score (did decoding produce any output?)")
    if len(hypotheses) != len(references):
        raise UserError(f"{len(hypotheses)} hypotheses but {len(references)} references: they must align line by line")
    bleu, chrf = BLEU(), CHRF()
    bleu_score = bleu.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    return {"bleu": round(bleu_score.score, 2), "bleu_signature": str(bleu.get_signature()),
            "chrf": round(chrf_score.score, 2), "chrf_signature": str(chrf.get_signature()),
            "length_ratio": round(bleu_score.sys_len / max(bleu_score.ref_len, 1), 4),
            "bleu_detail": str(bleu_score)}


@dataclass
class DevTranslations:
    """The training loop's periodic decoding of the first `eval.dev_bleu_sentences` dev pairs."""

    sources: list[str]
    references: list[str]
    hypotheses: list[str]
    bleu: float
    length_ratio: float  # hypothesis / reference length (sacreBLEU's), 0 when all are empty


def dev_translations(model: Transformer, tokenizer: Tokenizer, cfg: Config, *, device: torch.device) -> DevTranslations:
    """Translate the first `eval.dev_bleu_sentences` dev pairs (eval.dev_bleu_beam) and score them."""
    pairs = list(corpora.read_pairs(cfg.data.valid, src_lang=cfg.data.src_lang, tgt_lang=cfg.data.tgt_lang))
    pairs = pairs[:cfg.eval.dev_bleu_sentences]
    options = DecodeOptions(beam=cfg.eval.dev_bleu_beam, lenpen=cfg.eval.lenpen, max_len_a=cfg.eval.max_len_a,
                            max_len_b=cfg.eval.max_len_b, batch_tokens=cfg.eval.batch_tokens)
    was_training = model.training
    model.eval()
    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    hypotheses = translate_sentences(model, tokenizer, sources, options=options, device=device)
    model.train(was_training)
    if not any(h.strip() for h in hypotheses):
        return DevTranslations(sources, references, hypotheses, bleu=0.0, length_ratio=0.0)
    scores = score(hypotheses, references)
    return DevTranslations(sources, references, hypotheses, bleu=scores["bleu"], length_ratio=scores["length_ratio"])


def dev_bleu(model: Transformer, tokenizer: Tokenizer, cfg: Config, *, device: torch.device) -> float:
    """BLEU of the first `eval.dev_bleu_sentences` dev pairs (the training loop's periodic check)."""
    return dev_translations(model, tokenizer, cfg, device=device).bleu


# ---------------------------------------------------------------------------------------------
# Commands


def _options(args, cfg: Config, device: torch.device) -> DecodeOptions:
    options = DecodeOptions(beam=args.beam or cfg.eval.beam,
                            lenpen=cfg.eval.lenpen if args.lenpen is None else args.lenpen,
                            max_len_a=cfg.eval.max_len_a, max_len_b=cfg.eval.max_len_b,
                            batch_tokens=args.batch_tokens or cfg.eval.batch_tokens, cuda_graphs=args.cuda_graphs)
    if options.beam < 1 or options.lenpen < 0 or options.batch_tokens < 1:
        raise UserError("--beam and --batch-tokens must be positive and --lenpen not negative")
    if options.cuda_graphs and device.type != "cuda":
        raise UserError(f"--cuda-graphs needs a CUDA device, and this run decodes on {device}: "
                        "leave --cuda-graphs out, or pass --device cuda on a machine with a GPU")
    return options


def _test_pairs(args, cfg: Config) -> tuple[list[str], list[str], str]:
    d = cfg.data
    if args.src or args.ref:
        if not (args.src and args.ref):
            raise UserError("give both --src and --ref (or neither, to use the config's data.test)")
        if args.src.suffix == ".sgm":
            src, ref = corpora.read_sgm(args.src), corpora.read_sgm(args.ref)
        else:
            src = list(corpora.read_lines(corpora.find_file(args.src)))
            ref = list(corpora.read_lines(corpora.find_file(args.ref)))
        if len(src) != len(ref):
            raise UserError(f"{args.src} has {len(src)} lines but {args.ref} has {len(ref)}")
        return src, ref, f"{args.src} / {args.ref}"
    if d.test.source == Source.NONE:
        raise UserError("the checkpoint's config has no test set (data.test); pass --src and --ref")
    pairs = list(corpora.read_pairs(d.test, src_lang=d.src_lang, tgt_lang=d.tgt_lang))
    return [s for s, _ in pairs], [t for _, t in pairs], corpora.describe(d.test, src_lang=d.src_lang, tgt_lang=d.tgt_lang)


def _load(args) -> tuple[torch.device, Transformer, Tokenizer, Config, DecodeOptions]:
    """What `eval` and `translate` both start from: the device, the checkpoint's model (in --dtype),
    tokenizer and config, and the decoding options."""
    device = resolve_device(args.device, setting="--device", cpu_fix="--device cpu")
    model, tokenizer, cfg = load_for_inference(args.checkpoint, device, getattr(torch, args.dtype))
    return device, model, tokenizer, cfg, _options(args, cfg, device)


def run_eval(args) -> int:
    device, model, tokenizer, cfg, options = _load(args)
    sources, references, name = _test_pairs(args, cfg)
    start = time.perf_counter()
    hypotheses = translate_sentences(model, tokenizer, sources, options=options, device=device,
                                     warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {"checkpoint": str(args.checkpoint), "test_set": name, "sentences": len(sources),
              "beam": options.beam, "lenpen": options.lenpen, "device": str(device), "dtype": args.dtype,
              "cuda_graphs": options.cuda_graphs,
              "decode_seconds": round(seconds, 3), "sentences_per_second": round(len(sources) / seconds, 1),
              **score(hypotheses, references)}
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
    json_path = args.json or (args.output.with_suffix(".json") if args.output else None)
    if json_path:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"test set: {name} ({len(sources)} sentences), beam {options.beam}, lenpen {options.lenpen}")
    print(f"BLEU {result['bleu']:.2f}  ({result['bleu_signature']})")
    print(f"     {result['bleu_detail']}")
    print(f"chrF {result['chrf']:.2f}  ({result['chrf_signature']})")
    print(f"length ratio {result['length_ratio']:.3f}; {result['sentences_per_second']:.1f} sentences/s "
          f"({seconds:.1f} s on {device}, {args.dtype}{', CUDA graphs' if options.cuda_graphs else ''})")
    return 0


def run_translate(args) -> int:
    device, model, tokenizer, _, options = _load(args)
    if args.input:
        lines = corpora.read_lines(corpora.find_file(args.input))
    else:
        lines = _stdin_lines()
    warn = lambda m: print(f"warning: {m}", file=sys.stderr)  # noqa: E731
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= 256:
            _write(translate_sentences(model, tokenizer, chunk, options=options, device=device, warn=warn))
            chunk = []
    if chunk:
        _write(translate_sentences(model, tokenizer, chunk, options=options, device=device, warn=warn))
    return 0


def _stdin_lines():
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise UserError(f"standard input, line {number}: invalid UTF-8 at byte {e.start}") from None


def _write(lines: list[str]) -> None:
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()
