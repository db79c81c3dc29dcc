"""Label-smoothed cross-entropy, as sums over the non-pad target tokens.

For a target y and model distribution p over V classes, smoothing spreads ε over all classes:

    q_v = (1 − ε) · [v = y] + ε / V
    loss = −Σ_v q_v log p_v = (1 − ε) · (−log p_y) + ε · mean_v(−log p_v)

This ε/V convention is PyTorch's `F.cross_entropy(label_smoothing=ε)` and Marian's, HF's and
OpenNMT-py's; fairseq puts ε/(V − 1) on the non-target classes instead, a difference that is
negligible at V = 32k. Comparisons between runs should use `nll`, not the smoothed `loss`, which has
an ε-dependent floor.

Padding positions are removed before anything is computed, so they touch neither term, their
gradient is exactly zero, and non-finite logits there cannot leak in (NaN × 0 mask = NaN would).
The caller normalises: loss / n_tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LossSums:
    loss: torch.Tensor  # () float32: Σ smoothed loss over non-pad targets
    nll: torch.Tensor  # () float32: Σ −log p(target) over non-pad targets
    n_tokens: torch.Tensor  # () int64: number of non-pad targets
    n_correct: torch.Tensor  # () int64: non-pad targets where argmax p == target


def label_smoothed_cross_entropy(logits: torch.Tensor, target: torch.Tensor, *, epsilon: float,
                                 pad_id: int) -> LossSums:
    """logits (..., V) of any float dtype, target (...) long -> float32 sums over non-pad targets."""
    keep = target != pad_id  # (...)
    logits = logits[keep].float()  # (N, V) real tokens only, upcast for a stable log_softmax
    target = target[keep]  # (N,)
    lprobs = logits.log_softmax(dim=-1)  # (N, V)
    nll = -lprobs.gather(-1, target[:, None]).squeeze(-1)  # (N,)  −log p_y
    smooth = -lprobs.mean(dim=-1)  # (N,)  mean_v(−log p_v)
    loss = (1.0 - epsilon) * nll + epsilon * smooth  # (N,)
    return LossSums(
        loss=loss.sum(),
        nll=nll.sum(),
        n_tokens=keep.sum(),
        n_correct=(logits.argmax(dim=-1) == target).sum(),
    )
