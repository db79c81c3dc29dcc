"""Host time to collate one training batch: `collate_corpus`, which builds the padded batch from
the corpus's flat token arrays (what BatchStream runs in its background thread, where every
millisecond holding the GIL delays the training loop's kernel launches), against the per-sentence
loop it replaced (`per_sentence_collate`, kept here as the reference; tests/test_data.py checks the
two give identical batches) and against `collate` of per-sentence lists.

    TRANSLATE_DATA=/data python scripts/bench_collate.py --config configs/trainmix_postnorm.yaml
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from translate.batching import Batch, collate, collate_corpus, make_batches  # noqa: E402
from translate.config import load_config  # noqa: E402
from translate.data import prepare  # noqa: E402
from translate.tokenizer import BOS_ID, EOS_ID, PAD_ID  # noqa: E402


def per_sentence_collate(src_seqs: list[np.ndarray], tgt_seqs: list[np.ndarray]) -> Batch:
    """`batching.collate` as it was until 62a31da: one Python iteration per sentence."""
    n = len(src_seqs)
    src_width, tgt_width = max(len(s) for s in src_seqs) + 1, max(len(t) for t in tgt_seqs) + 1
    src = np.full((n, src_width), PAD_ID, dtype=np.int64)
    tgt_in = np.full((n, tgt_width), PAD_ID, dtype=np.int64)
    tgt_out = np.full((n, tgt_width), PAD_ID, dtype=np.int64)
    n_tgt = 0
    for i, (s, t) in enumerate(zip(src_seqs, tgt_seqs, strict=True)):
        src[i, :len(s)], src[i, len(s)] = s, EOS_ID
        tgt_in[i, 0], tgt_in[i, 1:len(t) + 1] = BOS_ID, t
        tgt_out[i, :len(t)], tgt_out[i, len(t)] = t, EOS_ID
        n_tgt += len(t) + 1
    target_index = np.flatnonzero(tgt_out != PAD_ID)
    return Batch(torch.from_numpy(src), torch.from_numpy(tgt_in), torch.from_numpy(tgt_out), n_tgt,
                 torch.from_numpy(target_index), torch.from_numpy(tgt_out.reshape(-1)[target_index]))


def ms_per_batch(function, batches) -> float:
    start = time.perf_counter()
    for idx in batches:
        function(idx)
    return 1000 * (time.perf_counter() - start) / len(batches)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--batches", type=int, default=60)
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    corpus = prepare(cfg, verbose=False).train
    batches = make_batches(corpus.src_lengths, corpus.tgt_lengths, max_tokens=cfg.train.max_tokens,
                           seed=cfg.train.seed, epoch=0)[:args.batches]
    sentences = sum(len(idx) for idx in batches) / len(batches)
    rows = {
        "per-sentence loop (the reference)": lambda idx: per_sentence_collate([corpus.src(i) for i in idx],
                                                                              [corpus.tgt(i) for i in idx]),
        "collate of per-sentence lists": lambda idx: collate([corpus.src(i) for i in idx],
                                                             [corpus.tgt(i) for i in idx]),
        "collate_corpus": lambda idx: collate_corpus(corpus, idx),
    }
    print(f"{len(batches)} batches of max_tokens {cfg.train.max_tokens:,} ({sentences:.0f} sentences each), ms/batch:")
    for name, function in rows.items():
        print(f"  {name}: {ms_per_batch(function, batches):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
