"""Calibration of next-token predictions under teacher forcing: ECE, confidence, entropy.

For every non-pad target token, confidence = max_v p(v | prefix, source) and correct = (argmax =
target). The expected calibration error over B equal-width confidence bins is

    ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b|

(Guo et al. 2017). Label smoothing is expected to lower it (Müller et al. 2019).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from translate.batching import collate_corpus, teacher_forcing_batches
from translate.data import TokenizedCorpus
from translate.tokenizer import PAD_ID


@dataclass
class CalibrationStats:
    """Per-bin sums, so batches can be accumulated before the ratios are taken."""

    n_bins: int = 15
    count: np.ndarray = field(default=None)
    confidence_sum: np.ndarray = field(default=None)
    correct_sum: np.ndarray = field(default=None)
    entropy_sum: float = 0.0
    nll_sum: float = 0.0

    def __post_init__(self):
        for name in ("count", "confidence_sum", "correct_sum"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(self.n_bins))

    def add(self, confidence: np.ndarray, correct: np.ndarray) -> None:
        bins = np.minimum((confidence * self.n_bins).astype(int), self.n_bins - 1)  # confidence 1.0 -> last bin
        self.count += np.bincount(bins, minlength=self.n_bins)
        self.confidence_sum += np.bincount(bins, weights=confidence, minlength=self.n_bins)
        self.correct_sum += np.bincount(bins, weights=correct.astype(float), minlength=self.n_bins)

    def summary(self) -> dict:
        n = self.count.sum()
        nonempty = self.count > 0
        accuracy = np.divide(self.correct_sum, self.count, out=np.zeros(self.n_bins), where=nonempty)
        confidence = np.divide(self.confidence_sum, self.count, out=np.zeros(self.n_bins), where=nonempty)
        ece = float(np.sum(self.count / n * np.abs(accuracy - confidence)))
        return {"ece": ece, "tokens": int(n), "accuracy": float(self.correct_sum.sum() / n),
                "mean_confidence": float(self.confidence_sum.sum() / n), "mean_entropy": self.entropy_sum / n,
                "nll": self.nll_sum / n, "bins": {"count": self.count.astype(int).tolist(),
                                                  "accuracy": accuracy.tolist(), "confidence": confidence.tolist()}}


def bin_sums(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = 15) -> torch.Tensor:
    """On the tensors' device, float64 (3, n_bins): per bin the count, Σ confidence and Σ correct, binned
    as `CalibrationStats.add` bins (so that several processes' sums can be added before `from_bin_sums`)."""
    bins = (confidence.double() * n_bins).long().clamp_(max=n_bins - 1)
    values = torch.stack([torch.ones_like(confidence, dtype=torch.float64), confidence.double(), correct.double()])
    return torch.zeros(3, n_bins, dtype=torch.float64, device=confidence.device).index_add_(1, bins, values)


def from_bin_sums(sums: torch.Tensor) -> CalibrationStats:
    count, confidence_sum, correct_sum = sums.cpu().numpy()
    return CalibrationStats(n_bins=sums.shape[1], count=count, confidence_sum=confidence_sum, correct_sum=correct_sum)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    stats = CalibrationStats(n_bins=n_bins)
    stats.add(np.asarray(confidence, dtype=float), np.asarray(correct))
    return stats.summary()["ece"]


@torch.no_grad()
def calibration(model, corpus: TokenizedCorpus, *, device: torch.device, max_tokens: int = 8000,
                n_bins: int = 15) -> dict:
    """ECE, accuracy, mean confidence / entropy and NLL of `model` on `corpus` (teacher forcing)."""
    model.eval()
    stats = CalibrationStats(n_bins=n_bins)
    for idx in teacher_forcing_batches(corpus.src_lengths, corpus.tgt_lengths, max_positions=model.cfg.max_positions,
                                       max_tokens=max_tokens):  # pairs that fit, as in validation
        batch = collate_corpus(corpus, idx).to(device)
        logits = model(batch.src, batch.tgt_in, batch.src == PAD_ID)  # (B, T, V)
        keep = batch.tgt_out != PAD_ID  # (B, T)
        log_probs = torch.log_softmax(logits[keep].float(), dim=-1)  # (N, V)
        probs = log_probs.exp()
        confidence, prediction = probs.max(dim=-1)
        target = batch.tgt_out[keep]
        stats.add(confidence.cpu().numpy().astype(float), (prediction == target).cpu().numpy())
        stats.entropy_sum += float(-(probs * log_probs).sum(dim=-1).sum())
        stats.nll_sum += float(-log_probs.gather(1, target[:, None]).sum())
    return stats.summary()
