"""`translate distill-data`: sequence-level knowledge distillation data (Kim & Rush 2016).

The teacher translates the source side of a config's training corpus with beam search (the decoding
of `translate eval`: its beam, length penalty and length limits come from the config's `eval`
section; on a GPU in bfloat16 with CUDA graphs unless told otherwise) and the result is written as

    PREFIX.<src>, PREFIX.<tgt>   line-aligned (plain, or .xz with --xz): the normalised sources and the
                                 teacher's translations; train on them with data.train.prefix: PREFIX
    PREFIX.distill.json          the teacher's digest and the settings; written last: the run is done

Work goes chunk by chunk (--chunk-sentences source lines) into PREFIX.parts/, each chunk written
atomically; an interrupted run, started again with the same command, decodes only the chunks that
are missing (the settings must be the same: PREFIX.parts/settings.json records them). The final
files are assembled from the chunks under temporary names and renamed into place; the parts are
removed once the JSON is written. Existing output of another run is never overwritten.
"""

from __future__ import annotations

import itertools
import json
import lzma
import os
import shutil
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from translate import corpus as corpora
from translate.config import Config, load_config
from translate.distill import load_teacher
from translate.durable import sync_directory, sync_file
from translate.errors import UserError
from translate.evaluate import _options, translate_sentences
from translate.runtime import resolve_device

SIDECAR_SUFFIX = ".distill.json"


def run_distill_data(args) -> int:
    # 1. The corpus to translate, the teacher, the decoding settings.
    cfg = load_config(args.config, args.overrides)
    d = cfg.data
    device = resolve_device(args.device, setting="--device", cpu_fix="--device cpu")
    teacher = load_teacher(args.teacher, device=device)
    if (teacher.cfg.data.src_lang, teacher.cfg.data.tgt_lang) != (d.src_lang, d.tgt_lang):
        raise UserError(f"--teacher {args.teacher} translates {teacher.cfg.data.src_lang}->{teacher.cfg.data.tgt_lang}"
                        f" but {args.config} has data.src_lang {d.src_lang!r}, data.tgt_lang {d.tgt_lang!r}")
    if args.chunk_sentences < 1:
        raise UserError(f"--chunk-sentences ({args.chunk_sentences}) must be at least 1")
    dtype = args.dtype if args.dtype != "auto" else "bfloat16" if device.type == "cuda" else "float32"
    args.cuda_graphs = device.type == "cuda" if args.cuda_graphs is None else args.cuda_graphs
    options = _options(args, cfg, device)
    model = teacher.model.to(getattr(torch, dtype))

    prefix = Path(args.output)
    suffix = ".xz" if args.xz else ""
    outputs = [Path(f"{prefix}.{lang}{suffix}") for lang in (d.src_lang, d.tgt_lang)]
    sidecar = Path(f"{prefix}{SIDECAR_SUFFIX}")
    parts = Path(f"{prefix}.parts")
    identity = {"teacher_digest": teacher.digest,
                "corpus": corpora.fingerprint(d.train, src_lang=d.src_lang, tgt_lang=d.tgt_lang),
                "src_lang": d.src_lang, "tgt_lang": d.tgt_lang, "beam": options.beam, "lenpen": options.lenpen,
                "max_len_a": options.max_len_a, "max_len_b": options.max_len_b, "dtype": dtype,
                "chunk_sentences": args.chunk_sentences}
    _claim(parts, identity, outputs=outputs, sidecar=sidecar)

    # 2. Translate the chunks not done yet.
    warnings = []
    bar = tqdm(unit=" sentences", disable=not sys.stderr.isatty(), dynamic_ncols=True, desc="distill-data")
    start, decoded, total = time.perf_counter(), 0, 0
    for number, sources in enumerate(_source_chunks(cfg, args.chunk_sentences)):
        total += len(sources)
        done = parts / f"chunk-{number:06d}.{d.tgt_lang}"
        if done.is_file():
            bar.update(len(sources))
            continue
        translations = translate_sentences(model, teacher.tokenizer, sources, options=options, device=device,
                                           warn=warnings.append)
        _write_chunk(parts, number, sources, translations, langs=(d.src_lang, d.tgt_lang))
        decoded += len(sources)
        bar.update(len(sources))
        if bar.disable:  # a log, not a terminal: one line per chunk instead of a bar
            print(f"chunk {number}: {total:,} sentences so far, "
                  f"{decoded / (time.perf_counter() - start):.1f} sentences/s", flush=True)
    bar.close()
    seconds = time.perf_counter() - start

    # 3. Assemble, record, clean up.
    for lang, output in zip((d.src_lang, d.tgt_lang), outputs):
        _assemble(sorted(parts.glob(f"chunk-*.{lang}")), output, compress=args.xz)
    record = {"teacher": str(teacher.path), "teacher_step": teacher.step, **identity,
              "source": corpora.describe(d.train, src_lang=d.src_lang, tgt_lang=d.tgt_lang), "sentences": total,
              "files": [str(p) for p in outputs], "device": str(device), "cuda_graphs": options.cuda_graphs,
              "batch_tokens": options.batch_tokens, "decoded_this_call": decoded,
              "decode_seconds_this_call": round(seconds, 3),
              "warnings": len(warnings)}
    _write_atomically(sidecar, lambda f: f.write((json.dumps(record, indent=2) + "\n").encode()))
    shutil.rmtree(parts)
    for warning in warnings[:5]:
        print(f"warning: {warning}", file=sys.stderr)
    if len(warnings) > 5:
        print(f"warning: ... {len(warnings) - 5} more", file=sys.stderr)
    rate = f", {decoded / seconds:.1f} sentences/s" if decoded else ""
    print(f"distill-data: {total:,} sentences ({decoded:,} decoded now in {seconds:.1f} s{rate}); wrote "
          f"{', '.join(map(str, outputs))} and {sidecar}. Train on it with data.train.prefix: {prefix}")
    return 0


def _claim(parts: Path, identity: dict, *, outputs: list[Path], sidecar: Path) -> None:
    """Start, or resume with the same settings; refuse to touch another run's output."""
    if sidecar.exists():
        raise UserError(f"{sidecar} exists: distill-data already wrote {', '.join(map(str, outputs))}; "
                        "choose another --output (or delete those files)")
    settings = parts / "settings.json"
    if settings.is_file():
        saved = json.loads(settings.read_text())
        changed = [k for k in identity if saved.get(k) != json.loads(json.dumps(identity[k]))]
        if changed:
            raise UserError(f"{parts} holds chunks of an unfinished run with other settings ({', '.join(changed)}); "
                            f"resume with the same teacher, corpus and settings, or delete {parts} to start afresh")
        return
    existing = [p for p in outputs if p.exists()]
    if existing:
        raise UserError(f"{', '.join(map(str, existing))} already exist(s); choose another --output (or delete them)")
    try:
        parts.mkdir(parents=True, exist_ok=True)
        _write_atomically(settings, lambda f: f.write((json.dumps(identity, indent=2) + "\n").encode()))
    except OSError as e:
        raise UserError(f"cannot write {parts}: {e.strerror or e}") from None


def _source_chunks(cfg: Config, size: int):
    """The training corpus's normalised source sentences, `size` at a time, in corpus order."""
    d = cfg.data
    sources = (corpora.normalize(src) for src, _ in corpora.read_pairs(d.train, src_lang=d.src_lang, tgt_lang=d.tgt_lang))
    while chunk := list(itertools.islice(sources, size)):
        yield chunk


def _write_chunk(parts: Path, number: int, sources: list[str], translations: list[str], *,
                 langs: tuple[str, str]) -> None:
    """The source side first, then the target side, each atomically: the target file marks the chunk done."""
    for lang, lines in zip(langs, (sources, translations)):
        content = "".join(line + "\n" for line in lines).encode()
        _write_atomically(parts / f"chunk-{number:06d}.{lang}", lambda f: f.write(content))


def _assemble(chunks: list[Path], output: Path, *, compress: bool) -> None:
    def fill(raw) -> None:
        sink = lzma.open(raw, "wb") if compress else raw
        for chunk in chunks:
            with open(chunk, "rb") as f:
                shutil.copyfileobj(f, sink)
        if compress:
            sink.close()  # the xz stream's end; `raw` stays open for the fsync

    _write_atomically(output, fill)


def _write_atomically(path: Path, fill) -> None:
    """`fill(f)` writes into an open binary file under a temporary name; then fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            fill(f)
            sync_file(f)
        os.replace(tmp, path)
        sync_directory(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {e.strerror or e}; the chunks written so far are kept: run the same "
                        "command again once there is room") from None
