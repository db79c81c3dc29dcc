"""Token-budget batches from length buckets, deterministic by (seed, epoch), and collation.

A batch's cost is `sentences × longest padded side` (source + EOS, or BOS + target, whichever is
longer), the way fairseq's `--max-tokens` counts: padded tokens per side. Batches of 8 or more
sentences hold a multiple of 8 (tensor-core friendly B·T). Sequence lengths are not rounded up:
on short-sentence corpora rounding to 8 tripled the padding (Multi30k: 7% → 23%). Sentences are sorted by length (ties broken randomly per epoch) so that a batch holds
similar lengths and padding stays low, then the batch order is shuffled.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from translate.tokenizer import BOS_ID, EOS_ID, PAD_ID

BATCH_MULTIPLE = 8  # batch sizes (when ≥ 8) are multiples of this


@dataclass
class Batch:
    src: torch.Tensor  # (B, S) source ids + EOS, right-padded
    tgt_in: torch.Tensor  # (B, T) BOS + target ids, right-padded
    tgt_out: torch.Tensor  # (B, T) target ids + EOS, right-padded
    n_tgt_tokens: int  # non-pad tokens in tgt_out
    # Where the non-pad targets are, computed on the host so that the loss can select them on the
    # device without a boolean mask (whose result size would cost a device-to-host sync).
    target_index: torch.Tensor  # (N,) positions of non-pad tokens in tgt_out.flatten()
    targets: torch.Tensor  # (N,) tgt_out.flatten()[target_index]

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) for t in (self.src, self.tgt_in, self.tgt_out)),
                     self.n_tgt_tokens, *(t.to(device, non_blocking=True) for t in (self.target_index, self.targets)))

    def pin_memory(self) -> "Batch":
        """Page-locked host copies, so that `to(cuda)` copies asynchronously."""
        return Batch(*(t.pin_memory() for t in (self.src, self.tgt_in, self.tgt_out)), self.n_tgt_tokens,
                     self.target_index.pin_memory(), self.targets.pin_memory())


def make_batches(src_lengths: np.ndarray, tgt_lengths: np.ndarray, *, max_tokens: int, seed: int,
                 epoch: int, shuffle: bool = True) -> list[np.ndarray]:
    """Index arrays, one per batch, with `len(batch) × padded longest side ≤ max_tokens`.

    Lengths are piece counts without specials. Deterministic given (seed, epoch).
    """
    rng = np.random.default_rng([seed, epoch])
    padded = np.maximum(src_lengths, tgt_lengths) + 1  # +1: EOS on the source, BOS on the target
    if len(padded) and padded.max() > max_tokens:
        raise ValueError(f"a sentence of {int(padded.max())} padded tokens exceeds max_tokens={max_tokens}")
    tie_break = rng.random(len(padded)) if shuffle else np.arange(len(padded))
    order = np.lexsort((tie_break, padded))
    batches = pack_sorted(order, padded[order], max_tokens)
    if shuffle:
        rng.shuffle(batches)
    return batches


def within_length(src_lengths: np.ndarray, tgt_lengths: np.ndarray, *, limit: int) -> np.ndarray:
    """Indices of the pairs whose longer side, with its EOS (source) or BOS (target), is at most
    `limit` tokens: what a position table of `limit` rows and a `limit`-token batch can hold."""
    return np.flatnonzero(np.maximum(src_lengths, tgt_lengths) + 1 <= limit)


def teacher_forcing_batches(src_lengths: np.ndarray, tgt_lengths: np.ndarray, *, max_positions: int,
                            max_tokens: int) -> list[np.ndarray]:
    """Unshuffled batches (indices into the corpus) of the pairs teacher forcing can score: each
    side, with EOS/BOS, within the position table and one batch. Longer pairs are left out, as
    fairseq's --skip-invalid-size-inputs-valid-test does (a dev set is never filtered when prepared:
    its cache is shared by runs with other limits)."""
    kept = within_length(src_lengths, tgt_lengths, limit=min(max_positions, max_tokens))
    return [kept[b] for b in make_batches(src_lengths[kept], tgt_lengths[kept], max_tokens=max_tokens, seed=0,
                                          epoch=0, shuffle=False)]


def pack_sorted(order: np.ndarray, sorted_padded: np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """Cut the length-sorted `order` into consecutive runs that fit the budget.

    Lengths are sorted ascending, so a run starting at `start` with its last element at `end - 1`
    costs `(end - start) × sorted_padded[end - 1]`; each run is cut as long as that fits, and when
    it holds ≥ 8 sentences its size is rounded down to a multiple of 8.
    """
    batches = []
    start, n = 0, len(order)
    while start < n:
        # Largest end with (end - start) * sorted_padded[end - 1] <= max_tokens: the per-sentence
        # width only grows, so the feasible ends form a prefix; bisect it.
        lo, hi = start + 1, n
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if (mid - start) * int(sorted_padded[mid - 1]) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        size = lo - start
        if size >= BATCH_MULTIPLE:
            size -= size % BATCH_MULTIPLE
        batches.append(order[start:start + size])
        start += size
    return batches


def shard(batches: list[np.ndarray], *, rank: int, world_size: int) -> list[np.ndarray]:
    """This rank's disjoint share; every rank gets the same count (a few batches dropped) so DDP never waits."""
    usable = len(batches) - len(batches) % world_size
    return batches[rank:usable:world_size]


def padding_fraction(batches: list[np.ndarray], src_lengths: np.ndarray, tgt_lengths: np.ndarray) -> float:
    """Padding share of all tokens in the padded (B, S) and (B, T) tensors of `batches`."""
    real = padded = 0
    for idx in batches:
        s, t = src_lengths[idx] + 1, tgt_lengths[idx] + 1
        real += int(s.sum() + t.sum())
        padded += len(idx) * int(s.max() + t.max())
    return 1.0 - real / padded if padded else 0.0


def collate(src_seqs: list[np.ndarray], tgt_seqs: list[np.ndarray]) -> Batch:
    """Pad one batch: source gets EOS, the decoder input BOS, the decoder output EOS."""
    src_tokens, src_starts, src_lengths = _flatten(src_seqs)
    tgt_tokens, tgt_starts, tgt_lengths = _flatten(tgt_seqs)
    return _collate_flat(src_tokens, src_starts, src_lengths, tgt_tokens, tgt_starts, tgt_lengths)


def collate_corpus(corpus, idx: np.ndarray) -> Batch:
    """`collate` of the pairs `idx` of a data.TokenizedCorpus, read straight from its flat token
    arrays: no Python loop over sentences (a 25k-token batch holds ~1,700 of them), so a
    background collation thread holds the GIL for little of the training step."""
    idx = np.asarray(idx, dtype=np.int64)
    src_starts, tgt_starts = corpus.src_offsets[idx], corpus.tgt_offsets[idx]
    return _collate_flat(corpus.src_tokens, src_starts, corpus.src_offsets[idx + 1] - src_starts,
                         corpus.tgt_tokens, tgt_starts, corpus.tgt_offsets[idx + 1] - tgt_starts)


def _flatten(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(all tokens, start of each sequence, length of each sequence)."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    tokens = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]) if len(seqs) else np.zeros(0, np.int64)
    return tokens, starts, lengths


def _collate_flat(src_tokens, src_starts, src_lengths, tgt_tokens, tgt_starts, tgt_lengths) -> Batch:
    """The batch of sentences i = tokens[starts[i] : starts[i] + lengths[i]] of each side."""
    rows = np.arange(len(src_lengths))
    src = _padded(src_tokens, src_starts, src_lengths, width=int(src_lengths.max()) + 1, shift=0)
    src[rows, src_lengths] = EOS_ID
    tgt_width = int(tgt_lengths.max()) + 1
    tgt_in = _padded(tgt_tokens, tgt_starts, tgt_lengths, width=tgt_width, shift=1)
    tgt_in[:, 0] = BOS_ID
    tgt_out = _padded(tgt_tokens, tgt_starts, tgt_lengths, width=tgt_width, shift=0)
    tgt_out[rows, tgt_lengths] = EOS_ID
    target_index = np.flatnonzero(tgt_out != PAD_ID)
    return Batch(torch.from_numpy(src), torch.from_numpy(tgt_in), torch.from_numpy(tgt_out),
                 int(tgt_lengths.sum()) + len(rows), torch.from_numpy(target_index),
                 torch.from_numpy(tgt_out.reshape(-1)[target_index]))


def _padded(tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray, *, width: int, shift: int) -> np.ndarray:
    """(n, width) int64, PAD_ID-filled; row i holds tokens[starts[i] : starts[i] + lengths[i]] from
    column `shift` on."""
    columns = np.arange(width, dtype=np.int64) - shift  # (width,) position within the sentence
    inside = (columns >= 0) & (columns < lengths[:, None])  # (n, width)
    out = np.full((len(starts), width), PAD_ID, dtype=np.int64)
    out[inside] = tokens[(starts[:, None] + columns)[inside]]
    return out


class BatchStream:
    """One rank's collated batches of every epoch, addressed by (epoch, position).

    The batch after the one just handed out is collated (and pinned, for asynchronous copies to
    the GPU) in a background thread while the device computes, off the training step's critical
    path; `collate_corpus` keeps the GIL that thread holds short. What a (epoch, position) holds is
    a pure function of (seed, epoch, rank, world size): prefetching changes nothing in what is
    trained on.
    """

    def __init__(self, corpus, *, max_tokens: int, seed: int, rank: int = 0, world_size: int = 1,
                 pin_memory: bool = False):
        self.corpus = corpus  # a data.TokenizedCorpus (flat token arrays and offsets)
        self.max_tokens, self.seed, self.rank, self.world_size = max_tokens, seed, rank, world_size
        self.pin_memory = pin_memory
        self._epochs: dict[int, list[np.ndarray]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collate")
        self._ahead: tuple[tuple[int, int], Future] | None = None

    def count(self, epoch: int) -> int:
        """Number of this rank's batches in `epoch`."""
        return len(self._epoch(epoch))

    def get(self, epoch: int, position: int) -> Batch:
        """The batch at `position` of `epoch`; starts preparing the following one."""
        if self._ahead is not None and self._ahead[0] == (epoch, position):
            batch = self._ahead[1].result()
        else:
            batch = self._collate(epoch, position)
        following = (epoch, position + 1) if position + 1 < self.count(epoch) else (epoch + 1, 0)
        self._ahead = (following, self._pool.submit(self._collate, *following))
        return batch

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _epoch(self, epoch: int) -> list[np.ndarray]:
        with self._lock:
            if epoch not in self._epochs:
                batches = make_batches(self.corpus.src_lengths, self.corpus.tgt_lengths,
                                       max_tokens=self.max_tokens, seed=self.seed, epoch=epoch)
                self._epochs = {e: b for e, b in self._epochs.items() if e >= epoch - 1}  # keep two
                self._epochs[epoch] = shard(batches, rank=self.rank, world_size=self.world_size)
            return self._epochs[epoch]

    def _collate(self, epoch: int, position: int) -> Batch:
        idx = self._epoch(epoch)[position]
        batch = collate_corpus(self.corpus, idx)
        return batch.pin_memory() if self.pin_memory else batch
