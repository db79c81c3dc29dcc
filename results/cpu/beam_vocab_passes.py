"""Beam search's per-step work over the (rows × V) log-probabilities, on the CPU: a tiny decoder (d 64,
one layer) with the real 32k vocabulary, so the vocabulary-sized passes dominate as they would beside a
fast GPU decoder. 64 random sentences of 28 tokens, untrained (every output runs to its limit
src_len + 50: 4,992 tokens), beam 4 and greedy, default and static-shape search. Prints the median seconds of 3 runs and a digest of the hypotheses (tokens and
scores), which must not change between two versions of translate/beam.py that claim the same results.
Run from the repository root: OMP_NUM_THREADS=2 python results/cpu/beam_vocab_passes.py"""
import hashlib
import statistics
import sys
import time

import torch

sys.path.insert(0, ".")
from translate.beam import beam_search, greedy_search  # noqa: E402
from translate.config import ModelConfig  # noqa: E402
from translate.model import Transformer  # noqa: E402

PAD, BOS, EOS, V = 0, 2, 3, 32000
torch.manual_seed(0)
model = Transformer(ModelConfig(d_model=64, n_heads=2, d_ff=128, n_encoder_layers=1, n_decoder_layers=1),
                    vocab_size=V, pad_id=PAD).eval()
src = torch.randint(4, V, (64, 28))
src[:, -1] = EOS
mask = src == PAD
common = dict(max_len_a=1.0, max_len_b=50, bos_id=BOS, eos_id=EOS, pad_id=PAD, max_output_len=1000)


def digest(hypotheses) -> str:
    text = repr([[(h.tokens, round(h.score, 5)) for h in hs] for hs in hypotheses])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


for name, search, options in [("beam 4", beam_search, dict(beam_size=4, lenpen=0.6)),
                              ("greedy", greedy_search, {})]:
    for static in (False, True):
        run = lambda: search(model, src, mask, static_shapes=static, **options, **common)  # noqa: E731
        run()
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            result = run()
            seconds.append(time.perf_counter() - start)
        tokens = sum(len(hs[0].tokens) for hs in result)
        print(f"{name:7} {'static' if static else 'default':8} {statistics.median(seconds):.3f} s "
              f"(runs {', '.join(f'{s:.3f}' for s in seconds)}), {tokens} tokens, hypotheses {digest(result)}")
