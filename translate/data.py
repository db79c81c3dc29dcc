"""`translate prepare`: clean, tokenize and binarize the corpora once, into a content-keyed cache.

Layout under `data.data_dir`:

    tok-<hash>/                     keyed by the training corpus + tokenizer settings,
                                    or by the bytes of data.spm_model when given
        spm.model                   the joint SentencePiece model
        train-<hash>/               keyed by the corpus + cleaning settings
            src.tokens.npy  src.offsets.npy  tgt.tokens.npy  tgt.offsets.npy  meta.json
        valid-<hash>/ ...

Token ids of all sentences of a side are one flat array (uint16 when the vocabulary fits),
sentence `i` being `tokens[offsets[i]:offsets[i + 1]]`; both are memory-mapped when loaded, so
a 4.5M-pair corpus costs no Python objects per sentence. Each directory is written under a
temporary name and renamed when complete, so an interrupted prepare leaves no half cache.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from translate import corpus as corpora
from translate.batching import make_batches, padding_fraction
from translate.config import Config, CorpusConfig, Source
from translate.durable import sync_directory, sync_file
from translate.errors import UserError
from translate.tokenizer import EOS_ID, Tokenizer, copy_tokenizer, sample_sentences, train_tokenizer

CACHE_FORMAT = 1  # bump when the binarized layout or the cleaning rules change
CHUNK_PAIRS = 50_000  # pairs tokenized at a time


@dataclass
class TokenizedCorpus:
    """Token ids of aligned sentences; `src(i)` / `tgt(i)` exclude BOS and EOS."""

    src_tokens: np.ndarray
    src_offsets: np.ndarray
    tgt_tokens: np.ndarray
    tgt_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.src_offsets) - 1

    @property
    def src_lengths(self) -> np.ndarray:
        return np.diff(self.src_offsets)

    @property
    def tgt_lengths(self) -> np.ndarray:
        return np.diff(self.tgt_offsets)

    def src(self, i: int) -> np.ndarray:
        return self.src_tokens[self.src_offsets[i]:self.src_offsets[i + 1]]

    def tgt(self, i: int) -> np.ndarray:
        return self.tgt_tokens[self.tgt_offsets[i]:self.tgt_offsets[i + 1]]


@dataclass
class CleaningCounts:
    read: int = 0
    empty: int = 0  # either side empty after whitespace normalisation
    too_long: int = 0  # either side over data.max_tokens_per_sentence pieces
    bad_ratio: int = 0  # piece-length ratio over data.max_length_ratio
    kept: int = 0


@dataclass
class PreparedData:
    tokenizer_file: Path
    train: TokenizedCorpus
    valid: TokenizedCorpus | None
    summary: dict = field(default_factory=dict)


def prepare(cfg: Config, *, verbose: bool = True, say=None) -> PreparedData:
    """Build (or reuse) the tokenizer and the binarized train/valid caches of `cfg`; verbose: report
    progress through `say` (a function of one line; default print)."""
    log = (say or (lambda msg: print(msg, flush=True))) if verbose else (lambda msg: None)
    d = cfg.data
    tok_dir = Path(d.data_dir) / f"tok-{_hash(_tokenizer_key(cfg))}"
    tokenizer_file = tok_dir / "spm.model"
    if tokenizer_file.is_file():
        log(f"tokenizer: reusing {tokenizer_file}")
    elif d.spm_model:
        log(f"tokenizer: using {d.spm_model} (data.spm_model)")
        try:
            copy_tokenizer(Path(d.spm_model), model_file=tokenizer_file)
        except OSError as e:
            raise _cannot_write(tokenizer_file, e) from None
    else:
        log(f"tokenizer: training a {d.spm_model_type} model, vocab {d.vocab_size}, on "
            f"{corpora.describe(d.train, src_lang=d.src_lang, tgt_lang=d.tgt_lang)}")
        pairs = _normalized_pairs(d.train, cfg, desc="sampling")
        # A fixed sampling seed: runs that differ only in train.seed share one tokenizer and cache.
        sample = sample_sentences(pairs, max_sentences=d.spm_sample_sentences, seed=0)
        try:
            train_tokenizer(sample, model_file=tokenizer_file, vocab_size=d.vocab_size,
                            model_type=d.spm_model_type, character_coverage=d.spm_character_coverage)
        except OSError as e:
            raise _cannot_write(tokenizer_file, e) from None
    tokenizer = Tokenizer(tokenizer_file)

    train, train_meta = _load_or_build(cfg, "train", d.train, tokenizer, tok_dir, clean=True, log=log)
    valid = valid_meta = None
    if d.valid.source != Source.NONE:
        valid, valid_meta = _load_or_build(cfg, "valid", d.valid, tokenizer, tok_dir, clean=False, log=log)

    batches = make_batches(train.src_lengths, train.tgt_lengths, max_tokens=cfg.train.max_tokens,
                           seed=cfg.train.seed, epoch=0)
    summary = {
        "tokenizer": str(tokenizer_file),
        "vocab_size": tokenizer.vocab_size,
        "train": train_meta,
        "valid": valid_meta,
        "train_batches_per_epoch": len(batches),
        "padding_fraction": round(padding_fraction(batches, train.src_lengths, train.tgt_lengths), 4),
        "max_tokens": cfg.train.max_tokens,
    }
    return PreparedData(tokenizer_file, train, valid, summary)


def format_summary(summary: dict) -> str:
    t = summary["train"]
    c = t["counts"]
    lines = [
        f"train: {t['corpus']}",
        f"  pairs read {c['read']:,}, kept {c['kept']:,}; dropped: empty {c['empty']:,}, "
        f"too long {c['too_long']:,}, length ratio {c['bad_ratio']:,}",
        f"  tokens: source {t['src_tokens']:,}, target {t['tgt_tokens']:,}",
    ]
    if summary["valid"]:
        v = summary["valid"]
        lines.append(f"valid: {v['corpus']}: {v['counts']['kept']:,} pairs (never filtered)")
    lines += [
        f"vocabulary: {summary['vocab_size']:,} pieces ({summary['tokenizer']})",
        f"batches per epoch at max_tokens={summary['max_tokens']:,}: {summary['train_batches_per_epoch']:,}, "
        f"padding {100 * summary['padding_fraction']:.1f}%",
    ]
    return "\n".join(lines)


def target_unigram_entropy(corpus: TokenizedCorpus, *, vocab_size: int, chunk: int = 10_000_000) -> float:
    """Entropy in nats of the token frequencies of the targets the loss scores (pieces + EOS): the NLL
    per token of the best model that ignores the source and the target prefix.

        H = −Σ_v p(v) ln p(v),  p(v) = count(v) / Σ_u count(u)

    Counted in chunks, so a memory-mapped corpus of 10^8 tokens costs no 8-byte copy of it.
    """
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(corpus.tgt_tokens), chunk):
        counts += np.bincount(corpus.tgt_tokens[start:start + chunk], minlength=vocab_size)
    counts[EOS_ID] += len(corpus)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def load_split(directory: Path) -> TokenizedCorpus:
    arrays = [np.load(directory / f"{name}.npy", mmap_mode="r")
              for name in ("src.tokens", "src.offsets", "tgt.tokens", "tgt.offsets")]
    return TokenizedCorpus(*arrays)


# ---------------------------------------------------------------------------------------------


def _tokenizer_key(cfg: Config) -> dict:
    d = cfg.data
    if d.spm_model:  # a given model: its content is the key, whatever the corpus
        return {"format": CACHE_FORMAT, "spm_model_sha256": file_sha256(Path(d.spm_model), setting="data.spm_model")}
    return {
        "format": CACHE_FORMAT,
        "train": corpora.fingerprint(d.train, src_lang=d.src_lang, tgt_lang=d.tgt_lang),
        "settings": [d.vocab_size, d.spm_model_type, d.spm_sample_sentences, d.spm_character_coverage],
    }


def file_sha256(path: Path, *, setting: str) -> str:
    """SHA-256 of a file's bytes; a missing file is a UserError naming the `setting` that gave it."""
    if not path.is_file():
        raise UserError(f"{setting}: {path} does not exist")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _normalized_pairs(corpus: CorpusConfig, cfg: Config, *, desc: str):
    pairs = corpora.read_pairs(corpus, src_lang=cfg.data.src_lang, tgt_lang=cfg.data.tgt_lang)
    bar = tqdm(pairs, desc=desc, unit=" pairs", disable=not sys.stderr.isatty(), mininterval=1.0)
    return ((corpora.normalize(s), corpora.normalize(t)) for s, t in bar)


def _load_or_build(cfg: Config, split: str, corpus: CorpusConfig, tokenizer: Tokenizer, tok_dir: Path,
                   *, clean: bool, log) -> tuple[TokenizedCorpus, dict]:
    d = cfg.data
    key = {"format": CACHE_FORMAT, "corpus": corpora.fingerprint(corpus, src_lang=d.src_lang, tgt_lang=d.tgt_lang),
           "clean": [d.max_tokens_per_sentence, d.max_length_ratio] if clean else None}
    directory = tok_dir / f"{split}-{_hash(key)}"
    if (directory / "meta.json").is_file():
        log(f"{split}: reusing {directory}")
        return load_split(directory), json.loads((directory / "meta.json").read_text())
    log(f"{split}: tokenizing {corpora.describe(corpus, src_lang=d.src_lang, tgt_lang=d.tgt_lang)}")
    arrays, counts = _tokenize_corpus(_normalized_pairs(corpus, cfg, desc=split), tokenizer, cfg, clean=clean)
    if counts.kept == 0:
        raise UserError(f"the {split} corpus ({corpora.describe(corpus, src_lang=d.src_lang, tgt_lang=d.tgt_lang)}) "
                        f"is empty after cleaning: {counts.read} pairs read, {counts.empty} empty, "
                        f"{counts.too_long} too long, {counts.bad_ratio} over the length ratio; "
                        "check the files or relax data.max_tokens_per_sentence / data.max_length_ratio")
    meta = {"corpus": corpora.describe(corpus, src_lang=d.src_lang, tgt_lang=d.tgt_lang), "counts": vars(counts),
            "src_tokens": int(len(arrays["src.tokens"])), "tgt_tokens": int(len(arrays["tgt.tokens"]))}
    try:
        _write_atomically(directory, arrays, meta)
    except OSError as e:
        raise _cannot_write(directory, e) from None
    return load_split(directory), meta


def _tokenize_corpus(pairs, tokenizer: Tokenizer, cfg: Config, *, clean: bool) -> tuple[dict, CleaningCounts]:
    """Encode pairs chunk by chunk, dropping (if `clean`) empty, over-long and ill-proportioned pairs."""
    counts = CleaningCounts()
    dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
    chunks: dict[str, list[np.ndarray]] = {"src": [], "tgt": []}
    lengths: dict[str, list[np.ndarray]] = {"src": [], "tgt": []}
    buffer: list[tuple[str, str]] = []

    def flush():
        src_ids = tokenizer.encode([s for s, _ in buffer])
        tgt_ids = tokenizer.encode([t for _, t in buffer])
        kept = [(s, t) for s, t in zip(src_ids, tgt_ids) if not clean or _keep(s, t, cfg, counts)]
        counts.kept += len(kept)
        for side, column in (("src", 0), ("tgt", 1)):
            seqs = [pair[column] for pair in kept]
            side_lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
            flat = np.fromiter(itertools.chain.from_iterable(seqs), dtype=dtype, count=int(side_lengths.sum()))
            chunks[side].append(flat)
            lengths[side].append(side_lengths)
        buffer.clear()

    for src, tgt in pairs:
        counts.read += 1
        if clean and (not src or not tgt):
            counts.empty += 1
            continue
        buffer.append((src, tgt))
        if len(buffer) >= CHUNK_PAIRS:
            flush()
    if buffer:
        flush()
    arrays = {}
    for side in ("src", "tgt"):
        arrays[f"{side}.tokens"] = np.concatenate(chunks[side]) if chunks[side] else np.zeros(0, dtype)
        side_lengths = np.concatenate(lengths[side]) if lengths[side] else np.zeros(0, np.int64)
        arrays[f"{side}.offsets"] = np.concatenate([[0], np.cumsum(side_lengths)]).astype(np.int64)
    return arrays, counts


def _keep(src: list[int], tgt: list[int], cfg: Config, counts: CleaningCounts) -> bool:
    d = cfg.data
    if not src or not tgt:
        counts.empty += 1
        return False
    if max(len(src), len(tgt)) > d.max_tokens_per_sentence:
        counts.too_long += 1
        return False
    if max(len(src), len(tgt)) > d.max_length_ratio * min(len(src), len(tgt)):
        counts.bad_ratio += 1
        return False
    return True


def _write_atomically(directory: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write under `NAME.tmp`, fsync, then rename: `directory` (and its meta.json, which marks a cache
    as complete) exists only once every file is on disk, so a crash or power loss cannot leave a cache
    that looks complete but holds empty files. A failed write removes the temporary directory; one left
    by a kill is removed by the next build."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        for name, array in arrays.items():
            with open(tmp / f"{name}.npy", "wb") as f:
                np.save(f, array)
                sync_file(f)
        with open(tmp / "meta.json", "w") as f:
            f.write(json.dumps(meta, indent=2))
            sync_file(f)
        tmp.rename(directory)
        sync_directory(directory.parent)  # the rename itself
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _cannot_write(path: Path, error: OSError) -> UserError:
    return UserError(f"cannot write the data cache {path}: {error.strerror or error}; nothing half-written was "
                     "kept. Free disk space, or set data.data_dir to a writable place with room, and run again")
