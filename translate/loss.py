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

import functools
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


# ---------------------------------------------------------------------------------------------
# Training: the output projection and the loss fused, chunk by chunk

CHUNK_ELEMENTS = 1 << 27  # float32 logits per chunk: 512 MB (4096 rows at V = 32k)


def linear_label_smoothed_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, *,
                                        epsilon: float, compute_dtype: torch.dtype | None = None,
                                        chunk_rows: int | None = None, compiled: bool = False) -> LossSums:
    """The loss of `logits = hidden @ weight.T` without ever holding all the logits.

    hidden (N, D): final decoder states of the N non-pad target tokens only (the caller selects
    them with `Batch.target_index`, computed on the host, so no device sync is needed);
    weight (V, D): the output projection; target (N,). The matrix products run in `compute_dtype`
    (bf16 under mixed precision, as autocast would), everything after them in float32.

    Equal to `label_smoothed_cross_entropy(hidden @ weight.T, target)` (tests/test_loss.py), but the
    (N, V) float32 logits exist one chunk of rows at a time: at N = 25k, V = 32k that is 0.5 GB
    instead of ~10 GB for logits, log-probabilities and their gradient. With gradients enabled the
    gradient is computed in the same pass (dloss/dlogits = softmax − q, q the smoothed target), as
    fused linear + cross-entropy kernels do, so the chunk's logits are never recomputed.
    compiled: run each chunk's elementwise passes through torch.compile (`train.compile`; on the H100
    18.1 → 8.6 ms per forward + backward at N 22.6k, `scripts/bench_loss.py [--compiled]`, docs/PERFORMANCE.md).
    """
    compute_dtype = compute_dtype or hidden.dtype
    chunk_rows = chunk_rows or max(1, CHUNK_ELEMENTS // weight.shape[0])
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        loss, nll, n_correct = _LinearSmoothedCrossEntropy.apply(hidden, weight, target, epsilon, compute_dtype,
                                                                 chunk_rows, compiled)
    else:
        loss, nll, n_correct, _, _ = _chunked_loss(hidden, weight, target, epsilon, compute_dtype, chunk_rows,
                                                   with_grad=False, compiled=compiled)
    # torch.full fills on the device; torch.tensor(n, device=cuda) would copy from the host and sync.
    n_tokens = torch.full((), target.numel(), dtype=torch.long, device=target.device)
    return LossSums(loss=loss, nll=nll, n_tokens=n_tokens, n_correct=n_correct)


def _chunked_loss(hidden, weight, target, epsilon: float, compute_dtype, chunk_rows: int, *, with_grad: bool,
                  compiled: bool = False):
    """Loss sums and, with_grad, d(loss sum)/d(hidden) (N, D) and d(loss sum)/d(weight) (V, D), in float32."""
    N = hidden.shape[0]
    w = weight.to(compute_dtype)
    exact = torch.promote_types(compute_dtype, torch.float32)  # float32, or float64 when computing in it
    chunk_fn = _compiled_chunk_loss() if compiled else _chunk_loss
    sums = torch.zeros(3, dtype=exact, device=hidden.device)  # loss, nll, n_correct
    grad_hidden = torch.empty(hidden.shape, dtype=exact, device=hidden.device) if with_grad else None
    grad_weight = torch.zeros(weight.shape, dtype=exact, device=weight.device) if with_grad else None
    for start in range(0, N, chunk_rows):
        h = hidden[start : start + chunk_rows].to(compute_dtype)  # (n, D)
        chunk_sums, grad = chunk_fn(h @ w.T, target[start : start + chunk_rows], epsilon, exact, with_grad)
        sums += chunk_sums
        if with_grad:
            grad_hidden[start : start + chunk_rows] = grad @ w
            grad_weight += grad.T @ h
    loss, nll, n_correct = sums.unbind()
    return loss, nll, n_correct.long(), grad_hidden, grad_weight


def _chunk_loss(logits: torch.Tensor, target: torch.Tensor, epsilon: float, exact: torch.dtype, with_grad: bool
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One chunk: logits (n, V) in the compute dtype, target (n,) -> (sums (3,) in `exact`: smoothed loss,
    NLL, correct predictions; d(loss sum)/d(logits) (n, V) in the compute dtype, or None).

    Every pass over the (n, V) float32 chunk is memory-bound and together they cost more GPU time than
    the model's matmuls (docs/PERFORMANCE.md, profile): one float32 buffer, updated in place, and each
    quantity read off a pass that already exists (max and argmax together, on the compute-dtype logits;
    the float32 cast fused with the shift; the mean and the target's logit from the shifted logits;
    log Z from the sum of the exponentials the gradient needs anyway) instead of logsumexp's own
    temporaries. Compiled (`compiled=True` above), Inductor fuses these passes further.
    """
    V = logits.shape[-1]
    top, prediction = logits.max(dim=-1)  # (n,): the shift for a stable exp; the argmax for accuracy
    # logits − max: in place when already float32 (the CPU), else cast in the same pass (bf16 on the GPU)
    shifted = logits.sub_(top[:, None]) if logits.dtype == exact else logits - top[:, None].to(exact)
    target_shifted = shifted.gather(-1, target[:, None]).squeeze(-1)
    mean_shifted = shifted.mean(dim=-1)
    unnormalised = shifted.exp_()  # exp(logits − max)
    sum_exp = unnormalised.sum(dim=-1)
    log_sum = sum_exp.log()  # log Z − max
    nll = log_sum - target_shifted  # −log p_y
    smooth = log_sum - mean_shifted  # mean_v(−log p_v)
    correct = (prediction == target).sum()
    sums = torch.stack([((1.0 - epsilon) * nll + epsilon * smooth).sum(), nll.sum(), correct.to(exact)])
    if not with_grad:
        return sums, None
    # d/dlogits of (1 − ε)(−log p_y) + ε·mean_v(−log p_v) = p − (1 − ε)·onehot(y) − ε/V, in place.
    grad = unnormalised.mul_(sum_exp.reciprocal()[:, None]).sub_(epsilon / V)
    grad.scatter_add_(-1, target[:, None], grad.new_full((target.numel(), 1), -(1.0 - epsilon)))
    return sums, grad.to(logits.dtype)


@functools.cache
def _compiled_chunk_loss():
    """`_chunk_loss` through torch.compile, built on first use (dynamic: the last chunk is shorter)."""
    return torch.compile(_chunk_loss, dynamic=True)


class _LinearSmoothedCrossEntropy(torch.autograd.Function):
    """Forward computes the loss sums and their gradients; backward scales them by the incoming gradient."""

    @staticmethod
    def forward(ctx, hidden, weight, target, epsilon, compute_dtype, chunk_rows, compiled):
        loss, nll, n_correct, grad_hidden, grad_weight = _chunked_loss(
            hidden, weight, target, epsilon, compute_dtype, chunk_rows, with_grad=True, compiled=compiled)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        ctx.mark_non_differentiable(nll, n_correct)
        return loss, nll, n_correct

    @staticmethod
    def backward(ctx, grad_loss, _grad_nll, _grad_correct):
        grad_hidden, grad_weight = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        return ((grad_hidden * grad_loss).to(hidden_dtype), (grad_weight * grad_loss).to(weight_dtype),
                None, None, None, None, None)
