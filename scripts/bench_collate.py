"""Host time to collate one training batch: the per-sentence `collate` of lists against
`collate_corpus`, which reads the corpus's flat token arrays (what BatchStream runs in its
background thread, where every millisecond holding the GIL delays the training loop's launches).

    TRANSLATE_DATA=/data python scripts/bench_collate.py --config configs/trainmix_postnorm.yaml
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from translate.batching import collate, collate_corpus, make_batches  # noqa: E402
from translate.config import load_config  # noqa: E402
from translate.data import prepare  # noqa: E402


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
    lists = ms_per_batch(lambda idx: collate([corpus.src(i) for i in idx], [corpus.tgt(i) for i in idx]), batches)
    flat = ms_per_batch(lambda idx: collate_corpus(corpus, idx), batches)
    print(f"{len(batches)} batches of max_tokens {cfg.train.max_tokens:,} ({sentences:.0f} sentences each): "
          f"collate of per-sentence lists {lists:.1f} ms/batch, collate_corpus {flat:.1f} ms/batch "
          f"({lists / flat:.0f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
