"""Word-level knowledge distillation (Hinton et al. 2015): the loss, its temperature schedule, the teacher.

Per non-pad target token, with student logits s, teacher logits t, the gold token y:

    loss = (1 − α) · LS-CE(s, y; ε) + α · T² · KL(softmax(t/T) ‖ softmax(s/T))

normalised like the plain loss (sums here, divided by the number of non-pad target tokens by the
caller). Why T²: with q_T = softmax(s/T), p_T = softmax(t/T),

    ∂KL/∂s = (q_T − p_T) / T,   so   ∂(α · T² · KL)/∂s = α · T · (q_T − p_T)

and the soft term's gradient would shrink as 1/T² for the small logit differences that KD transfers
(q_T − p_T itself is ∝ 1/T there); T² keeps the balance between the hard and the soft term when T
changes. The raw KL is large early in training (a fresh student is far from the teacher, and at T > 1
the T² factor multiplies it): that is expected, not a fault; the gold NLL is what the divergence rule
watches and what dev perplexity is computed from.

Like `loss.linear_label_smoothed_cross_entropy`, the output projections and the loss are fused: the
(N, V) logits of the student and of the teacher exist one chunk of rows at a time, everything after
the matrix products is float32, and the gradient w.r.t. the student logits,

    (1 − α) · (p − q) + α · T · (q_T − p_T)      (p = softmax(s), q the smoothed gold target)

is computed in the same pass. The teacher runs in eval mode, without gradients, under the student's
autocast. A non-finite teacher output makes the loss non-finite: the training loop's finite check
skips that step (nothing is clamped or replaced).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from translate.batching import Batch
from translate.checkpoint import load_checkpoint
from translate.config import Config, DistillConfig, TemperatureSchedule, TrainConfig
from translate.data import file_sha256
from translate.errors import UserError
from translate.loss import CHUNK_ELEMENTS, _chunk_loss, _compiled_chunk_loss
from translate.model import Transformer
from translate.tokenizer import PAD_ID, Tokenizer

# float32 (n, V) buffers per chunk: a few more than the plain loss needs (both models' logits, the
# two tempered log-distributions), so a quarter of its rows keeps the chunk's memory alike.
KD_CHUNK_ELEMENTS = CHUNK_ELEMENTS // 4


@dataclass
class DistillSums:
    loss: torch.Tensor  # () Σ (1 − α)·LS-CE + α·T²·KL: what is minimised
    ce: torch.Tensor  # () Σ LS-CE(student, gold; ε)
    nll: torch.Tensor  # () Σ −log p(gold)
    kl: torch.Tensor  # () Σ KL(softmax(t/T) ‖ softmax(s/T)), raw
    kd_term: torch.Tensor  # () Σ α·T²·KL
    n_tokens: torch.Tensor  # () int64
    n_correct: torch.Tensor  # () int64


def linear_distillation_loss(hidden: torch.Tensor, weight: torch.Tensor, teacher_hidden: torch.Tensor,
                             teacher_weight: torch.Tensor, target: torch.Tensor, *, epsilon: float, alpha: float,
                             temperature: float, compute_dtype: torch.dtype | None = None,
                             chunk_rows: int | None = None, compiled: bool = False) -> DistillSums:
    """The KD loss sums of student logits `hidden @ weight.T` against teacher logits
    `teacher_hidden @ teacher_weight.T`, fused as `loss.linear_label_smoothed_cross_entropy` is.

    hidden (N, D) / teacher_hidden (N, D_teacher): the final decoder states of the same N non-pad
    target tokens; weight (V, D) / teacher_weight (V, D_teacher); target (N,). Gradients flow into
    hidden and weight only. compiled: the gold part's elementwise passes through torch.compile.
    """
    compute_dtype = compute_dtype or hidden.dtype
    chunk_rows = chunk_rows or max(1, KD_CHUNK_ELEMENTS // weight.shape[0])
    teacher = (teacher_hidden.detach(), teacher_weight.detach())
    settings = (epsilon, alpha, temperature, compute_dtype, chunk_rows, compiled)
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        loss, ce, nll, kl, n_correct = _LinearDistillation.apply(hidden, weight, *teacher, target, *settings)
    else:
        loss, ce, nll, kl, n_correct, _, _ = _chunked(hidden, weight, *teacher, target, *settings, with_grad=False)
    n_tokens = torch.full((), target.numel(), dtype=torch.long, device=target.device)
    return DistillSums(loss=loss, ce=ce, nll=nll, kl=kl, kd_term=alpha * temperature ** 2 * kl, n_tokens=n_tokens,
                       n_correct=n_correct)


def _chunked(hidden, weight, teacher_hidden, teacher_weight, target, epsilon, alpha, temperature, compute_dtype,
             chunk_rows, compiled, *, with_grad: bool):
    """Sums (loss, ce, nll, kl, n_correct) and, with_grad, d(loss sum)/d(hidden), d(loss sum)/d(weight)."""
    exact = torch.promote_types(compute_dtype, torch.float32)
    w, w_teacher = weight.to(compute_dtype), teacher_weight.to(compute_dtype)
    sums = torch.zeros(4, dtype=exact, device=hidden.device)  # ce, nll, n_correct, kl
    grad_hidden = torch.empty(hidden.shape, dtype=exact, device=hidden.device) if with_grad else None
    grad_weight = torch.zeros(weight.shape, dtype=exact, device=weight.device) if with_grad else None
    for start in range(0, hidden.shape[0], chunk_rows):
        rows = slice(start, start + chunk_rows)
        h = hidden[rows].to(compute_dtype)  # (n, D)
        teacher_logits = teacher_hidden[rows].to(compute_dtype) @ w_teacher.T  # (n, V)
        chunk_sums, grad = _chunk(h @ w.T, teacher_logits, target[rows], epsilon=epsilon, alpha=alpha,
                                  temperature=temperature, exact=exact, with_grad=with_grad, compiled=compiled)
        sums += chunk_sums
        if with_grad:
            grad_hidden[rows] = grad @ w
            grad_weight += grad.T @ h
    ce, nll, n_correct, kl = sums.unbind()
    loss = (1.0 - alpha) * ce + alpha * temperature ** 2 * kl
    return loss, ce, nll, kl, n_correct.long(), grad_hidden, grad_weight


def _chunk(logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor, *, epsilon: float,
           alpha: float, temperature: float, exact: torch.dtype, with_grad: bool, compiled: bool):
    """One chunk: student and teacher logits (n, V) -> (sums (4,) in `exact`: LS-CE, NLL, correct, KL;
    d(loss sum)/d(logits) (n, V) in the logits' dtype, or None)."""
    # The soft term first: the gold part below reuses the student's logits in place.
    log_q = (logits.to(exact) / temperature).log_softmax(dim=-1)  # (n, V) log softmax(s/T)
    log_p = teacher_logits.to(exact).div_(temperature).log_softmax(dim=-1)  # (n, V) log softmax(t/T)
    kl = F.kl_div(log_q, log_p, reduction="sum", log_target=True)  # Σ_rows Σ_v p (log p − log q)
    # The gold part: loss.py's LS-CE chunk, given float32 logits so that its gradient p − q stays float32.
    gold = _compiled_chunk_loss() if compiled else _chunk_loss
    gold_sums, grad = gold(logits.to(exact), target, epsilon, exact, with_grad)
    sums = torch.cat([gold_sums, kl.to(exact)[None]])
    if not with_grad:
        return sums, None
    soft = log_q.exp_().sub_(log_p.exp_())  # q_T − p_T
    grad = grad.mul_(1.0 - alpha).add_(soft, alpha=alpha * temperature)  # (1 − α)(p − q) + αT(q_T − p_T)
    return sums, grad.to(logits.dtype)


class _LinearDistillation(torch.autograd.Function):
    """Forward computes the sums and the gradients; backward scales them by the incoming gradient."""

    @staticmethod
    def forward(ctx, hidden, weight, teacher_hidden, teacher_weight, target, *settings):
        loss, ce, nll, kl, n_correct, grad_hidden, grad_weight = _chunked(
            hidden, weight, teacher_hidden, teacher_weight, target, *settings, with_grad=True)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        ctx.mark_non_differentiable(ce, nll, kl, n_correct)
        return loss, ce, nll, kl, n_correct

    @staticmethod
    def backward(ctx, grad_loss, *_):
        grad_hidden, grad_weight = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        return ((grad_hidden * grad_loss).to(hidden_dtype), (grad_weight * grad_loss).to(weight_dtype),
                None, None, None, None, None, None, None, None, None)


# ---------------------------------------------------------------------------------------------
# The temperature schedule


def training_progress(*, step: int, elapsed: float, train: TrainConfig) -> float:
    """How far training is, in [0, 1]: step / max_steps, or elapsed / max_time when only a time limit is set."""
    if train.max_steps:
        return min(1.0, step / train.max_steps)
    if train.max_time:
        return min(1.0, elapsed / train.max_time)
    return 0.0


def temperature_at(progress: float, cfg: DistillConfig) -> float:
    """T at a training progress in [0, 1]: constant, or linear from `temperature` to `temperature_end`."""
    if cfg.temperature_schedule == TemperatureSchedule.CONSTANT:
        return cfg.temperature
    return cfg.temperature + (cfg.temperature_end - cfg.temperature) * progress


# ---------------------------------------------------------------------------------------------
# The teacher


@dataclass
class Teacher:
    model: Transformer  # eval mode, no gradients, float32 weights on the training device
    cfg: Config  # the teacher's own config (from its checkpoint)
    tokenizer: Tokenizer  # the teacher's spm.model
    path: Path  # the checkpoint
    digest: str  # the checkpoint's tensor digest (translate.checkpoint)
    step: int

    @property
    def tokenizer_file(self) -> Path:
        return self.tokenizer.model_file


def load_teacher(path: str | os.PathLike, *, device: torch.device) -> Teacher:
    """The teacher of `distill.teacher` (or `distill-data --teacher`), ready to run on `device`."""
    from translate.evaluate import model_from_checkpoint  # decoding's loader; evaluate imports no training code

    path = Path(os.path.expandvars(str(path)))
    state = load_checkpoint(path)
    model, tokenizer, cfg = model_from_checkpoint(state, path, device)
    model.requires_grad_(False)
    return Teacher(model=model, cfg=cfg, tokenizer=tokenizer, path=path, digest=state["digest"], step=state["step"])


def student_config(cfg: Config, teacher: Teacher) -> Config:
    """`cfg` with data.spm_model set to the teacher's spm.model (one vocabulary for both models).

    A student setting that contradicts the teacher's vocabulary is a UserError naming the setting
    and the teacher's spm.model; checked before any data is prepared or any step taken.
    """
    d, t = cfg.data, teacher.cfg.data
    problems = [f"data.{name} is {getattr(d, name)!r} but the teacher's is {getattr(t, name)!r}"
                for name in ("src_lang", "tgt_lang", "vocab_size", "spm_model_type")
                if getattr(d, name) != getattr(t, name)]
    if d.spm_model and file_sha256(Path(d.spm_model), setting="data.spm_model") != file_sha256(
            teacher.tokenizer_file, setting="the teacher's tokenizer"):
        problems.append(f"data.spm_model is {d.spm_model!r}, another SentencePiece model")
    if teacher.cfg.model.max_positions < d.max_tokens_per_sentence + 2:
        problems.append(f"data.max_tokens_per_sentence ({d.max_tokens_per_sentence}) needs positions the "
                        f"teacher does not have (its model.max_positions is {teacher.cfg.model.max_positions})")
    if problems:
        raise UserError(f"distill.teacher {teacher.path}: the student must use the teacher's vocabulary, "
                        f"{teacher.tokenizer_file}, but " + "; ".join(problems)
                        + ". Set these as the teacher's config has them (or leave data.spm_model empty)")
    data = dataclasses.replace(d, spm_model=str(teacher.tokenizer_file.resolve()))
    return dataclasses.replace(cfg, data=data)


def teacher_hidden(teacher: Transformer, batch: Batch, *, autocast) -> torch.Tensor:
    """The teacher's final decoder states (N, D_teacher) of the batch's non-pad targets, without gradients."""
    with torch.no_grad(), autocast:
        hidden = teacher(batch.src, batch.tgt_in, batch.src == PAD_ID, return_hidden=True)  # (B, T, D_teacher)
    return hidden.flatten(0, 1).index_select(0, batch.target_index)
