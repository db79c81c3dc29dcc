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

The fused training loss also returns, read off the passes it already makes, the statistics that
show how peaked the model is (docs/DIAGNOSTICS.md): per row, the largest logit m, the entropy
H(p) = −Σ_v p_v log p_v, the confidence max_v p_v and p_y; and it can add the confidence penalty
−β·H(p) (Pereyra et al. 2017) to each row's loss.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch


@dataclass
class LossSums:
    loss: torch.Tensor  # () float32: Σ smoothed loss over non-pad targets
    nll: torch.Tensor  # () float32: Σ −log p(target) over non-pad targets
    n_tokens: torch.Tensor  # () int64: number of non-pad targets
    n_correct: torch.Tensor  # () int64: non-pad targets where argmax p == target
    # Diagnostics, from the fused loss with statistics=True (else None); float32 sums over the rows.
    max_logit: torch.Tensor | None = None  # () Σ of each row's largest logit
    peak_logit: torch.Tensor | None = None  # () the largest logit of any row (a max, not a sum)
    entropy: torch.Tensor | None = None  # () Σ H(p) in nats
    confidence: torch.Tensor | None = None  # () Σ max_v p_v
    p_target: torch.Tensor | None = None  # () Σ p_y
    penalty: torch.Tensor | None = None  # () Σ −β·H(p): the confidence penalty's part of `loss`
    row_confidence: torch.Tensor | None = None  # (N,) max_v p_v of each row, with rows=True (calibration)
    row_correct: torch.Tensor | None = None  # (N,) bool: argmax p == target, with rows=True


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
                                        chunk_rows: int | None = None, compiled: bool = False,
                                        confidence_penalty: float = 0.0, statistics: bool = False,
                                        rows: bool = False) -> LossSums:
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
    compiled: run each chunk's elementwise passes through torch.compile (`train.compile`; measured by
    `scripts/bench_loss.py [--compiled]`, results in docs/PERFORMANCE.md).
    confidence_penalty: β of the confidence penalty: each row's loss becomes smoothed CE − β·H(p),
    with its exact gradient; `LossSums.penalty` is that part.
    statistics: also return the diagnostics sums (`LossSums.max_logit` ...); the entropy costs one
    more pass over each chunk, except with gradients computed in float32 (`_chunked_loss`).
    rows: also return each row's confidence and correctness (for calibration bins; implies statistics).
    """
    compute_dtype = compute_dtype or hidden.dtype
    chunk_rows = chunk_rows or max(1, CHUNK_ELEMENTS // weight.shape[0])
    # The penalty needs the entropy, and the other statistics then cost next to nothing more.
    options = _ChunkOptions(epsilon=epsilon, penalty=confidence_penalty,
                            statistics=statistics or rows or confidence_penalty != 0.0, rows=rows)
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        loss, nll, n_correct, extra, row_values = _LinearSmoothedCrossEntropy.apply(
            hidden, weight, target, options, compute_dtype, chunk_rows, compiled)
    else:
        loss, nll, n_correct, extra, row_values, _, _ = _chunked_loss(hidden, weight, target, options, compute_dtype,
                                                                      chunk_rows, with_grad=False, compiled=compiled)
    # torch.full fills on the device; torch.tensor(n, device=cuda) would copy from the host and sync.
    n_tokens = torch.full((), target.numel(), dtype=torch.long, device=target.device)
    sums = LossSums(loss=loss, nll=nll, n_tokens=n_tokens, n_correct=n_correct)
    if options.statistics:
        sums.max_logit, sums.entropy, sums.confidence, sums.p_target, sums.peak_logit = extra.float().unbind()
    if options.penalty:
        sums.penalty = extra[1].float() * -options.penalty
    if rows:
        sums.row_confidence, sums.row_correct = row_values[:, 0].float(), row_values[:, 1] > 0
    return sums


@dataclass(frozen=True)
class _ChunkOptions:
    """What each chunk computes besides the smoothed loss (hashable: torch.compile guards on it)."""

    epsilon: float
    penalty: float = 0.0  # β of the confidence penalty
    statistics: bool = False  # the diagnostics sums (needed by the penalty: they hold Σ H)
    rows: bool = False  # per-row confidence and correctness
    # The entropy from the backward matmul (`_chunked_loss`) instead of a pass over the chunk: set there
    # when the gradient is computed in float32 or float64 and without the penalty (which needs H first).
    entropy_from_gradient: bool = False


EXTRA = 5  # the chunk's extra sums: Σ max logit, Σ H, Σ confidence, Σ p_y, then max logit (a max)


def _chunked_loss(hidden, weight, target, options: _ChunkOptions, compute_dtype, chunk_rows: int, *,
                  with_grad: bool, compiled: bool = False):
    """Loss sums, the extra sums (EXTRA,) or an empty tensor, the rows' (confidence, correct) (N, 2) or
    an empty tensor, and, with_grad, d(loss sum)/d(hidden) (N, D) and d(loss sum)/d(weight) (V, D), in float32.

    The entropy from the gradient: Σ_v p_v·logit_v = h·(p @ W), and p @ W = (p − q) @ W + q @ W, where
    (p − q) @ W is the hidden gradient the backward pass computes anyway and q @ W = (1 − ε)·W_y +
    (ε / V)·Σ_v W_v; so H = log Z − h·(p @ W) costs (n, D) work instead of a pass over (n, V). Only
    when that gradient is exact (float32/64): a bf16 p @ W would put ~0.4% of |logit| into H.
    """
    N = hidden.shape[0]
    w = weight.to(compute_dtype)
    exact = torch.promote_types(compute_dtype, torch.float32)  # float32, or float64 when computing in it
    late = with_grad and options.statistics and not options.penalty and compute_dtype == exact
    if late:
        options = dataclasses.replace(options, entropy_from_gradient=True)
        smoothed_target_w = (options.epsilon / weight.shape[0]) * w.sum(dim=0)  # (D,) the ε/V part of q @ W
    chunk_fn = _compiled_chunk_pass() if compiled else _chunk_pass
    sums = torch.zeros(3, dtype=exact, device=hidden.device)  # loss, nll, n_correct
    extra = torch.zeros(EXTRA if options.statistics else 0, dtype=exact, device=hidden.device)
    if options.statistics:
        extra[-1] = -math.inf
    row_values = torch.empty((N if options.rows else 0, 2), dtype=exact, device=hidden.device)
    grad_hidden = torch.empty(hidden.shape, dtype=exact, device=hidden.device) if with_grad else None
    grad_weight = torch.zeros(weight.shape, dtype=exact, device=weight.device) if with_grad else None
    for start in range(0, N, chunk_rows):
        h = hidden[start : start + chunk_rows].to(compute_dtype)  # (n, D)
        chunk_sums, grad, chunk_rows_values = chunk_fn(h @ w.T, target[start : start + chunk_rows], options, exact,
                                                       with_grad)
        sums += chunk_sums[:3]
        if options.statistics:
            extra[:-1] += chunk_sums[3:-1]
            extra[-1] = torch.maximum(extra[-1], chunk_sums[-1])
        if options.rows:
            row_values[start : start + chunk_rows] = chunk_rows_values[:, :2]
        if with_grad:
            grad_h = grad @ w  # (n, D)
            grad_hidden[start : start + chunk_rows] = grad_h
            grad_weight += grad.T @ h
        if late:
            y = target[start : start + chunk_rows]
            p_w = grad_h + (1.0 - options.epsilon) * w[y] + smoothed_target_w  # (n, D) p @ W
            extra[1] += (chunk_rows_values[:, 2] - torch.linalg.vecdot(h, p_w)).sum()
    loss, nll, n_correct = sums.unbind()
    return loss, nll, n_correct.long(), extra, row_values, grad_hidden, grad_weight


def _chunk_pass(logits: torch.Tensor, target: torch.Tensor, options: _ChunkOptions, exact: torch.dtype,
                with_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """One chunk: logits (n, V) in the compute dtype, target (n,) -> (sums in `exact`: smoothed loss
    (with the penalty), NLL, correct predictions, then with options.statistics the EXTRA sums;
    d(loss sum)/d(logits) (n, V) in the compute dtype, or None; with options.rows or
    options.entropy_from_gradient, (n, 3) each row's confidence, correctness and log Z, else None).

    Every pass over the (n, V) float32 chunk is memory-bound and together they cost more GPU time than
    the model's matmuls (docs/PERFORMANCE.md, profile): one float32 buffer, updated in place, and each
    quantity read off a pass that already exists (max and argmax together, on the compute-dtype logits;
    the float32 cast fused with the shift; the mean and the target's logit from the shifted logits;
    log Z from the sum of the exponentials the gradient needs anyway) instead of logsumexp's own
    temporaries. Compiled (`compiled=True` above), Inductor fuses these passes further. The entropy
    needs the shifted logits and their exponentials at once: one more buffer and one more pass, unless
    `_chunked_loss` takes it from the gradient (options.entropy_from_gradient; its Σ H is then 0 here).
    """
    V = logits.shape[-1]
    epsilon, penalty = options.epsilon, options.penalty
    top, prediction = logits.max(dim=-1)  # (n,): the shift for a stable exp; the argmax for accuracy
    # logits − max: in place when already float32 (the CPU), else cast in the same pass (bf16 on the GPU)
    shifted = logits.sub_(top[:, None]) if logits.dtype == exact else logits - top[:, None].to(exact)
    target_shifted = shifted.gather(-1, target[:, None]).squeeze(-1)
    mean_shifted = shifted.mean(dim=-1)
    direct_entropy = options.statistics and not options.entropy_from_gradient
    unnormalised = shifted.exp() if direct_entropy else shifted.exp_()  # exp(logits − max)
    sum_exp = unnormalised.sum(dim=-1)
    log_sum = sum_exp.log()  # log Z − max
    nll = log_sum - target_shifted  # −log p_y
    smooth = log_sum - mean_shifted  # mean_v(−log p_v)
    loss = (1.0 - epsilon) * nll + epsilon * smooth
    correct = prediction == target
    confidence = sum_exp.reciprocal()  # max_v p_v = exp(0) / Σ exp(s)
    extra = []
    top = top.to(exact)
    if direct_entropy:
        # H = −Σ_v p_v log p_v = log Z − Σ_v p_v·logit_v, with p_v = exp(s_v) / Σ exp(s), s = logits − max
        # (the product in place when the penalty's gradient does not need the shifted logits again)
        weighted = torch.linalg.vecdot(unnormalised, shifted) if penalty else shifted.mul_(unnormalised).sum(dim=-1)
        entropy = log_sum - weighted / sum_exp
        loss = loss - penalty * entropy
    if options.statistics:
        entropy_sum = entropy.sum() if direct_entropy else top.new_zeros(())
        extra = [top.sum(), entropy_sum, confidence.sum(), (-nll).exp().sum(), top.max()]
    sums = torch.stack([loss.sum(), nll.sum(), correct.sum().to(exact), *extra])
    row_values = (torch.stack([confidence, correct.to(exact), top + log_sum], dim=-1)
                  if options.rows or options.entropy_from_gradient else None)
    if not with_grad:
        return sums, None, row_values
    # d/dlogits of (1 − ε)(−log p_y) + ε·mean_v(−log p_v) = p − (1 − ε)·onehot(y) − ε/V, in place;
    # with the penalty, d(−β·H)/dlogit_v = β·p_v·(log p_v + H), log p_v = s_v − log Z, so
    # p_v becomes p_v·(1 + β·(s_v − log Z + H)).
    if penalty:
        grad = shifted.sub_((log_sum - entropy)[:, None]).mul_(penalty).add_(1.0).mul_(unnormalised)
        grad = grad.mul_(confidence[:, None]).sub_(epsilon / V)
    else:
        grad = unnormalised.mul_(confidence[:, None]).sub_(epsilon / V)
    grad.scatter_add_(-1, target[:, None], grad.new_full((target.numel(), 1), -(1.0 - epsilon)))
    return sums, grad.to(logits.dtype), row_values


def _chunk_loss(logits: torch.Tensor, target: torch.Tensor, epsilon: float, exact: torch.dtype, with_grad: bool
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The plain label-smoothed chunk (`_chunk_pass` without statistics or penalty): (sums (3,), gradient
    or None), as translate/distill.py uses it for its gold part."""
    sums, grad, _ = _chunk_pass(logits, target, _ChunkOptions(epsilon=epsilon), exact, with_grad)
    return sums, grad


@functools.cache
def _compiled_chunk_pass():
    """`_chunk_pass` through torch.compile, built on first use (dynamic: the last chunk is shorter)."""
    return torch.compile(_chunk_pass, dynamic=True)


@functools.cache
def _compiled_chunk_loss():
    """`_chunk_loss` through torch.compile, built on first use (dynamic: the last chunk is shorter)."""
    return torch.compile(_chunk_loss, dynamic=True)


class _LinearSmoothedCrossEntropy(torch.autograd.Function):
    """Forward computes the loss sums and their gradients; backward scales them by the incoming gradient."""

    @staticmethod
    def forward(ctx, hidden, weight, target, options, compute_dtype, chunk_rows, compiled):
        loss, nll, n_correct, extra, row_values, grad_hidden, grad_weight = _chunked_loss(
            hidden, weight, target, options, compute_dtype, chunk_rows, with_grad=True, compiled=compiled)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        ctx.mark_non_differentiable(nll, n_correct, extra, row_values)
        return loss, nll, n_correct, extra, row_values

    @staticmethod
    def backward(ctx, grad_loss, _grad_nll, _grad_correct, _grad_extra, _grad_rows):
        grad_hidden, grad_weight = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        return ((grad_hidden * grad_loss).to(hidden_dtype), (grad_weight * grad_loss).to(weight_dtype),
                None, None, None, None, None)
