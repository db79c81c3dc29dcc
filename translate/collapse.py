"""Collapse detection: a model that has stopped translating and says one thing, or loops.

A collapsed model puts nearly all of its probability on one token whatever the input (one-hot
predictions), so its greedy translations of different sentences come out the same, or one piece
repeated until the length limit. At each validation the training loop measures, on the greedy dev
hypotheses that dev BLEU decodes anyway (`hypothesis_statistics`):

- identical_share: the share of sentences whose hypothesis equals the hypothesis of a sentence with
  a different source (a dev set's repeated sources do not count);
- looping_share: the share of hypotheses in which one piece (the hypothesis re-encoded with the run's
  SentencePiece model) occurs LOOP_RUN or more times in a row;
- distinct_bigrams: distinct piece bigrams / all piece bigrams over the hypotheses;
- length_ratio: hypothesis / reference length (sacreBLEU's, as dev BLEU computes it).

The rule (`collapse_signs`), at every validation:

1. sure and wrong: the dev entropy is below ENTROPY_FLOOR nats while the dev NLL is above NLL_FLOOR
   nats. A model that sure of itself should be right: with a dev perplexity above e it is not, so
   it is not certain because it learned, it collapsed. (A model that did learn its dev set, e.g. the
   demo without label smoothing, may have such an entropy, and then a low NLL.)
2. identical: identical_share above IDENTICAL_LIMIT, from a sure model;
3. looping: looping_share above LOOPING_LIMIT, from a sure model.

"A sure model": a mean dev confidence above CONFIDENT. An untrained model also repeats its most
frequent pieces and says the same thing for every sentence, but it is unsure of every prediction
(its entropy is near that of the token frequencies); that is not a collapse, it has not learned yet.

Any sign is a warning in the log (train.stop_on_collapse: true stops the run instead);
distinct_bigrams and length_ratio are reported for a person to read, not acted on.
"""

from __future__ import annotations

from collections import Counter

ENTROPY_FLOOR = 0.05  # nats: mean dev prediction entropy
NLL_FLOOR = 1.0  # nats: mean dev NLL (perplexity e)
IDENTICAL_LIMIT = 0.5
LOOPING_LIMIT = 0.5
LOOP_RUN = 4  # a piece this many times in a row is a loop
CONFIDENT = 0.5  # mean dev confidence (max probability) above which a model counts as sure

REMEDIES = ("label smoothing (train.label_smoothing 0.1) or a confidence penalty (train.confidence_penalty), "
            "a lower optim.lr or a longer optim.warmup_steps, gradient clipping (optim.clip_norm 1.0), and extra "
            "decay on the output layer (optim.output_weight_decay)")


def hypothesis_statistics(sources: list[str], hypotheses: list[str], pieces: list[list[int]]) -> dict:
    """identical_share, looping_share and distinct_bigrams of greedy hypotheses (`pieces`: each
    hypothesis's token ids)."""
    n = max(len(hypotheses), 1)
    sources_of: dict[str, set[str]] = {}
    for source, hypothesis in zip(sources, hypotheses):
        sources_of.setdefault(hypothesis, set()).add(source)
    identical = sum(len(sources_of[h]) > 1 for h in hypotheses)
    bigrams = Counter((a, b) for ids in pieces for a, b in zip(ids, ids[1:]))
    total = sum(bigrams.values())
    return {"identical_share": identical / n, "looping_share": sum(map(_loops, pieces)) / n,
            "distinct_bigrams": len(bigrams) / total if total else 0.0}


def _loops(ids: list[int]) -> bool:
    run = 1
    for previous, current in zip(ids, ids[1:]):
        run = run + 1 if current == previous else 1
        if run >= LOOP_RUN:
            return True
    return False


def collapse_signs(record: dict) -> list[str]:
    """What in a validation record (its entropy, nll, confidence and `hypothesis_statistics`) says collapse."""
    signs = []
    if "entropy" in record and record["entropy"] < ENTROPY_FLOOR and record["nll"] > NLL_FLOOR:
        signs.append(f"dev entropy {record['entropy']:.3g} nats (below {ENTROPY_FLOOR}) with a dev NLL of "
                     f"{record['nll']:.3g} (above {NLL_FLOOR}): sure and wrong")
    if record.get("confidence", 0.0) <= CONFIDENT:
        return signs
    if record.get("identical_share", 0.0) > IDENTICAL_LIMIT:
        signs.append(f"{record['identical_share']:.0%} of the greedy dev translations are identical to another "
                     f"sentence's (above {IDENTICAL_LIMIT:.0%}) at a mean confidence of {record['confidence']:.2f}")
    if record.get("looping_share", 0.0) > LOOPING_LIMIT:
        signs.append(f"{record['looping_share']:.0%} repeat one piece {LOOP_RUN}+ times in a row "
                     f"(above {LOOPING_LIMIT:.0%}) at a mean confidence of {record['confidence']:.2f}")
    return signs


def collapse_message(signs: list[str], *, step: int) -> str:
    return (f"the model looks collapsed at step {step}: " + "; ".join(signs) + f". Remedies: {REMEDIES}")
