"""A joint SentencePiece tokenizer for both languages, with fixed special ids.

Ids: pad = 0, unk = 1, bos = 2, eos = 3; the learned pieces follow. The source sentence is encoded
as `pieces + [eos]`; the decoder reads `[bos] + pieces` and predicts `pieces + [eos]`.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from translate.errors import UserError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


class Tokenizer:
    """A thin wrapper around a SentencePiece model file."""

    def __init__(self, model_file: str | Path):
        self.model_file = Path(model_file)
        if not self.model_file.is_file():
            raise UserError(f"tokenizer file not found: {self.model_file} (it is written by `translate prepare`; "
                            "keep it next to the checkpoint's data directory)")
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(str(self.model_file))
        except (OSError, RuntimeError) as e:
            raise UserError(f"tokenizer file {self.model_file} is not a valid SentencePiece model: {e}") from None
        if (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id()) != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise UserError(f"tokenizer {self.model_file} has special ids other than pad=0 unk=1 bos=2 eos=3")

    @property
    def vocab_size(self) -> int:
        return self.sp.GetPieceSize()

    def encode(self, sentences: list[str]) -> list[list[int]]:
        """Piece ids of each sentence, without BOS/EOS."""
        return self.sp.Encode(sentences, out_type=int)

    def decode(self, ids: list[list[int]]) -> list[str]:
        """Detokenized text of each id list (special ids are dropped)."""
        return [self.sp.Decode([i for i in seq if i > EOS_ID]) for seq in ids]


def sample_sentences(pairs: Iterable[tuple[str, str]], *, max_sentences: int, seed: int) -> list[str]:
    """A uniform sample (reservoir sampling) of sentences from both sides of `pairs`."""
    rng = random.Random(seed)
    sample: list[str] = []
    seen = 0
    for pair in pairs:
        for sentence in pair:
            if not sentence:
                continue
            seen += 1
            if len(sample) < max_sentences:
                sample.append(sentence)
            else:
                j = rng.randrange(seen)
                if j < max_sentences:
                    sample[j] = sentence
    return sample


def train_tokenizer(sentences: list[str], *, model_file: Path, vocab_size: int, model_type: str,
                    character_coverage: float) -> Tokenizer:
    """Train a SentencePiece model on `sentences` and write it to `model_file`."""
    if not sentences:
        raise UserError("cannot train a tokenizer: the training corpus has no non-empty sentences")
    model = io.BytesIO()
    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        # A small corpus may support fewer pieces than asked; take what it supports, reported later.
        hard_vocab_limit=False,
        input_sentence_size=0,  # use every sentence given: sampling happened already
        max_sentence_length=16384,
        num_threads=4,
        minloglevel=2,
    )
    _write_model(model.getvalue(), model_file)
    return Tokenizer(model_file)


def copy_tokenizer(source: Path, *, model_file: Path) -> Tokenizer:
    """Install an existing SentencePiece model (`data.spm_model`, e.g. a teacher's) as `model_file`."""
    Tokenizer(source)  # a missing or invalid model, or other special ids, fail here with the source's name
    _write_model(Path(source).read_bytes(), model_file)
    return Tokenizer(model_file)


def _write_model(content: bytes, model_file: Path) -> None:
    tmp = model_file.with_suffix(".tmp")
    try:  # atomically: a later run trusts any spm.model it finds
        model_file.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(content)
        tmp.replace(model_file)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
