"""Reading sentence pairs from the corpora a config can name.

Every reader yields `(src, tgt)` string pairs, streaming, in corpus order:
- `files`: two line-aligned plain-text files, transparently decompressed when `.gz` / `.xz`;
- `sgm`: WMT `.sgm` test sets (`<seg>` contents in document order, XML entities unescaped);
- `huggingface`: `datasets.load_dataset(...)` splits with the `{"translation": {lang: text}}` schema,
  or a directory written by `save_to_disk`;
- `synthetic`: the project's own generated demo corpus (`translate.synthetic`).
Problems a user can fix (missing file, unequal line counts, invalid UTF-8, no network) raise
`UserError` naming the file and line.
"""

from __future__ import annotations

import bz2
import gzip
import html
import lzma
import os
import re
from collections.abc import Iterator
from pathlib import Path

from translate.config import CorpusConfig, Source
from translate.errors import UserError

Pair = tuple[str, str]
_COMPRESSED_SUFFIXES = (".gz", ".xz", ".bz2")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufeff]")


def normalize(text: str) -> str:
    """Collapse whitespace runs to one space, strip, and drop control characters and BOMs."""
    return " ".join(_CONTROL_CHARS.sub("", text).split())


def read_pairs(corpus: CorpusConfig, *, src_lang: str, tgt_lang: str) -> Iterator[Pair]:
    """Raw `(src, tgt)` pairs of `corpus` (only the trailing newline removed)."""
    pairs = _read_source(corpus, src_lang=src_lang, tgt_lang=tgt_lang)
    if corpus.max_pairs:
        pairs = (pair for i, pair in zip(range(corpus.max_pairs), pairs))
    return pairs


def describe(corpus: CorpusConfig, *, src_lang: str, tgt_lang: str) -> str:
    """A short human-readable name for logs and summaries."""
    if corpus.source == Source.FILES:
        src, tgt = corpus_paths(corpus, src_lang=src_lang, tgt_lang=tgt_lang)
        return f"{src} + {tgt}"
    if corpus.source == Source.SGM:
        return f"{corpus.src_file} + {corpus.tgt_file}"
    if corpus.source == Source.HUGGINGFACE:
        return f"huggingface {corpus.hf_name}/{corpus.hf_config} [{corpus.hf_split}]"
    if corpus.source == Source.SYNTHETIC:
        return f"synthetic ({corpus.size} pairs, seed {corpus.seed})"
    return "none"


def fingerprint(corpus: CorpusConfig, *, src_lang: str, tgt_lang: str) -> dict:
    """What identifies the corpus's content, for cache keys: settings plus file sizes and mtimes."""
    key: dict = {"corpus": {k: str(v) for k, v in vars(corpus).items()}, "langs": [src_lang, tgt_lang]}
    if corpus.source in (Source.FILES, Source.SGM):
        paths = corpus_paths(corpus, src_lang=src_lang, tgt_lang=tgt_lang)
        key["files"] = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in paths]
    if corpus.source == Source.SYNTHETIC:
        from translate.synthetic import SYNTHETIC_VERSION

        key["synthetic_version"] = SYNTHETIC_VERSION
    return key


def _read_source(corpus: CorpusConfig, *, src_lang: str, tgt_lang: str) -> Iterator[Pair]:
    if corpus.source == Source.FILES:
        src, tgt = corpus_paths(corpus, src_lang=src_lang, tgt_lang=tgt_lang)
        return read_aligned_files(src, tgt)
    if corpus.source == Source.SGM:
        src, tgt = corpus_paths(corpus, src_lang=src_lang, tgt_lang=tgt_lang)
        return iter(_zip_exact(read_sgm(src), read_sgm(tgt), src, tgt))
    if corpus.source == Source.HUGGINGFACE:
        return read_huggingface(corpus, src_lang=src_lang, tgt_lang=tgt_lang)
    if corpus.source == Source.SYNTHETIC:
        return read_synthetic(corpus, src_lang=src_lang, tgt_lang=tgt_lang)
    raise UserError("no corpus configured (source: none)")


# ---------------------------------------------------------------------------------------------
# Local files


def expand_path(text: str) -> Path:
    """Expand `~` and `$VAR` / `${VAR}`; an unset variable is an error, not a literal path."""
    expanded = os.path.expanduser(os.path.expandvars(text))
    unset = re.findall(r"\$\{?(\w+)\}?", expanded)
    if unset:
        raise UserError(f"path {text!r} uses the environment variable ${unset[0]}, which is not set: "
                        f"export {unset[0]}=... or give the path directly")
    return Path(expanded)


def find_file(path: Path) -> Path:
    """`path` itself, or its compressed sibling (`.gz`, `.xz`, `.bz2`) when only that exists."""
    if path.is_file():
        return path
    for suffix in _COMPRESSED_SUFFIXES:
        candidate = path.with_name(path.name + suffix)
        if candidate.is_file():
            return candidate
    raise UserError(f"corpus file not found: {path} (also looked for {', '.join(_COMPRESSED_SUFFIXES)}); "
                    "check the path in the config or pass it with --set data.<split>.prefix=...")


def corpus_paths(corpus: CorpusConfig, *, src_lang: str, tgt_lang: str) -> tuple[Path, Path]:
    if corpus.src_file and corpus.tgt_file:
        return find_file(expand_path(corpus.src_file)), find_file(expand_path(corpus.tgt_file))
    prefix = str(expand_path(corpus.prefix))
    return find_file(Path(f"{prefix}.{src_lang}")), find_file(Path(f"{prefix}.{tgt_lang}"))


def open_text(path: Path):
    """Open for reading bytes, decompressing by suffix."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    if path.suffix == ".xz":
        return lzma.open(path, "rb")
    if path.suffix == ".bz2":
        return bz2.open(path, "rb")
    return open(path, "rb")


def read_lines(path: Path) -> Iterator[str]:
    """Lines of `path` without their line ends; invalid UTF-8 or a truncated archive is a UserError."""
    with open_text(path) as f:
        line_number = 0
        try:
            for line_number, raw in enumerate(f, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise UserError(f"{path}, line {line_number}: invalid UTF-8 at byte {e.start} "
                                    "(convert the file with iconv -f <encoding> -t utf-8)") from None
                if line_number == 1:
                    text = text.removeprefix("\ufeff")
                yield text.rstrip("\r\n")
        except (EOFError, lzma.LZMAError, gzip.BadGzipFile, OSError) as e:
            raise UserError(f"{path}: compressed file is truncated or corrupt after line {line_number} ({e}); "
                            "re-download or re-compress it") from None


def count_lines(path: Path) -> int:
    return sum(1 for _ in read_lines(path))


def read_aligned_files(src: Path, tgt: Path) -> Iterator[Pair]:
    """Pairs of lines; unequal line counts are an error naming both files and counts."""
    yield from _zip_exact(read_lines(src), read_lines(tgt), src, tgt)


def _zip_exact(src_lines, tgt_lines, src: Path, tgt: Path) -> Iterator[Pair]:
    src_iter, tgt_iter = iter(src_lines), iter(tgt_lines)
    n = 0
    sentinel = object()
    while True:
        s = next(src_iter, sentinel)
        t = next(tgt_iter, sentinel)
        if s is sentinel and t is sentinel:
            return
        if s is sentinel or t is sentinel:
            n_src = n + (0 if s is sentinel else 1 + sum(1 for _ in src_iter))
            n_tgt = n + (0 if t is sentinel else 1 + sum(1 for _ in tgt_iter))
            raise UserError(f"corpus sides are not aligned: {src} has {n_src} lines but {tgt} has {n_tgt}; "
                            "both files must have one sentence per line, in the same order")
        n += 1
        yield s, t


_SEG = re.compile(r"<seg[^>]*>(.*?)</seg>", re.IGNORECASE | re.DOTALL)


def read_sgm(path: Path) -> list[str]:
    """The `<seg>` contents of a WMT .sgm file, in order, with XML entities unescaped."""
    text = "\n".join(read_lines(path))
    segments = [html.unescape(s).strip() for s in _SEG.findall(text)]
    if not segments:
        raise UserError(f"{path}: no <seg> elements found; is this really an .sgm file?")
    return segments


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets and the synthetic corpus


def read_huggingface(corpus: CorpusConfig, *, src_lang: str, tgt_lang: str) -> Iterator[Pair]:
    """Pairs from a `datasets` split with the WMT schema `{"translation": {"de": ..., "en": ...}}`."""
    dataset = _load_huggingface_split(corpus)
    if "translation" not in dataset.column_names:
        raise UserError(f"dataset {corpus.hf_name} split {corpus.hf_split} has columns {dataset.column_names}; "
                        "expected a 'translation' column of {language: text}")
    for i, row in enumerate(dataset):
        translation = row["translation"]
        if src_lang not in translation or tgt_lang not in translation:
            raise UserError(f"dataset {corpus.hf_name} row {i}: translation has languages {sorted(translation)}, "
                            f"not {src_lang} and {tgt_lang}")
        yield translation[src_lang] or "", translation[tgt_lang] or ""


def _load_huggingface_split(corpus: CorpusConfig):
    import datasets  # heavy; imported only on this path

    local_dir = Path(os.path.expanduser(corpus.hf_name))
    if local_dir.is_dir():
        loaded = datasets.load_from_disk(str(local_dir))
        if isinstance(loaded, datasets.DatasetDict):
            if corpus.hf_split not in loaded:
                raise UserError(f"{local_dir} has splits {list(loaded)}, not {corpus.hf_split!r}")
            return loaded[corpus.hf_split]
        return loaded
    try:
        return datasets.load_dataset(corpus.hf_name, corpus.hf_config or None, split=corpus.hf_split,
                                     data_files=corpus.hf_data_files or None)
    except ConnectionError:
        raise UserError(f"cannot download {corpus.hf_name}: no network; pass local files with "
                        "--set data.train.source=files --set data.train.prefix=PATH/train "
                        "(and likewise data.valid / data.test)") from None
    except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as e:
        raise UserError(f"cannot load dataset {corpus.hf_name!r} ({corpus.hf_config}, {corpus.hf_split}): {e}") from None


def read_synthetic(corpus: CorpusConfig, *, src_lang: str, tgt_lang: str) -> Iterator[Pair]:
    from translate.synthetic import generate_pairs

    if {src_lang, tgt_lang} != {"en", "de"}:
        raise UserError(f"the synthetic corpus is English-German; data.src_lang/tgt_lang are {src_lang}/{tgt_lang}")
    for en, de in generate_pairs(corpus.size, seed=corpus.seed):
        yield (en, de) if src_lang == "en" else (de, en)
