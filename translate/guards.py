"""What stops a training run that has gone wrong: non-finite steps, fp16 overflow and divergence.

Called by the loop in translate/train.py: `handle_bad_step` when a step's loss or gradients are not
finite, `check_divergence` at every log interval with that interval's training NLL (no extra
device sync). Each stop is a `TrainingStopped` (a UserError: one message, exit 2) naming the likely
causes; what is saved before it is said in each function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from translate.config import Config
from translate.errors import UserError

if TYPE_CHECKING:
    from translate.train import TrainState

MIN_LOSS_SCALE = 2.0 ** -8  # an fp16 loss scale below this means the gradients overflow at any scale


class TrainingStopped(UserError):
    """Training cannot go on (divergence, collapsed loss scale); the last good state is saved."""


def handle_bad_step(state: "TrainState", cfg: Config, log, *, lr: float, grad_norm, loss_ok: bool, scaler,
                     on_stop) -> None:
    """Skip a step whose loss or gradients are not finite; stop after too many in a row."""
    what = "gradients" if loss_ok else "loss"
    if loss_ok and scaler.is_enabled():
        # fp16: an overflow in the backward pass; the scaler halves the scale and we retry.
        scaler.update()
        log.line(f"step {state.step}: fp16 gradient overflow, loss scale now {scaler.get_scale():g}")
        if scaler.get_scale() < MIN_LOSS_SCALE:
            on_stop()
            raise TrainingStopped(f"the fp16 loss scale collapsed below {MIN_LOSS_SCALE:g} at step {state.step}: "
                                  "the gradients overflow at any scale. Use train.precision: bf16 (or fp32), "
                                  "or lower optim.lr; resume from checkpoint_last.pt")
        return
    state.skipped_steps += 1
    state.consecutive_bad += 1
    log.line(f"step {state.step}: non-finite {what} (grad norm {float(grad_norm):.4g}, lr {lr:.3g}); "
             f"step skipped ({state.consecutive_bad} in a row, {state.skipped_steps} in total)")
    log.metrics({"kind": "skipped", "step": state.step, "what": what, "lr": lr, "grad_norm": float(grad_norm)})
    if state.consecutive_bad >= cfg.train.max_bad_steps:
        on_stop()
        raise TrainingStopped(
            f"training diverged: {state.consecutive_bad} consecutive steps with non-finite {what} at step "
            f"{state.step} (lr {lr:.3g}). Likely causes: optim.lr too high or optim.warmup_steps too short, "
            f"or fp16 overflow (try train.precision: bf16). The last good state is in checkpoint_last.pt")


def divergence_sign(nll: float, *, best: float, step: int, cfg: Config, unigram_entropy: float) -> str:
    """Why a log interval's training NLL counts as diverging: "rise", "unigram", or "" (it does not).

    rise: more than train.divergence_nats above the best interval so far: the loss is blowing up.
    unigram: more than train.divergence_grace_steps after warmup, no lower than the unigram entropy of
    the training targets, i.e. no better than predicting token frequencies while ignoring the source
    and the target prefix. A far too high lr often ends there rather than in a rising loss: Adam's
    steps blow the weights up, LayerNorm keeps the logits bounded, and only the output bias still
    learns. Healthy runs are below it long before warmup ends (the shipped GPU configs within ~300
    steps, the tiny CPU test model within ~80, or ~250 at a third of its lr).
    """
    if nll > best + cfg.train.divergence_nats:
        return "rise"
    if step > cfg.optim.warmup_steps + cfg.train.divergence_grace_steps and nll >= unigram_entropy:
        return "unigram"
    return ""


def check_divergence(state: "TrainState", nll: float, cfg: Config, *, unigram_entropy: float, lr: float) -> None:
    """Stop after train.divergence_patience diverging log intervals in a row (`divergence_sign`):
    finite garbage that the finite check cannot see. Training stops without saving, so
    checkpoint_last.pt keeps the last state written before the first diverging interval (validation
    does not overwrite it while intervals are diverging)."""
    if not cfg.train.divergence_nats:
        return
    sign = divergence_sign(nll, best=state.best_train_nll, step=state.step, cfg=cfg, unigram_entropy=unigram_entropy)
    state.best_train_nll = min(state.best_train_nll, nll)
    state.rising_intervals = state.rising_intervals + 1 if sign else 0
    if state.rising_intervals < cfg.train.divergence_patience:
        return
    causes = (f"Likely causes: optim.lr ({cfg.optim.lr:g}) too high, optim.warmup_steps ({cfg.optim.warmup_steps}) "
              "too short, or fp16 precision overflow (try train.precision: bf16 or fp32).")
    if sign == "rise":
        raise TrainingStopped(
            f"training diverged: the training NLL is {nll:.3g} at step {state.step}, more than train.divergence_nats "
            f"({cfg.train.divergence_nats:g}) above its best ({state.best_train_nll:.3g}) for {state.rising_intervals} "
            f"log intervals in a row (lr {lr:.3g}). {causes} checkpoint_last.pt keeps the last state saved before "
            "the rise; lower optim.lr and --resume")
    raise TrainingStopped(
        f"training failed: the training NLL is {nll:.3g} at step {state.step}, no better than the unigram entropy "
        f"of the training targets ({unigram_entropy:.3g} nats: predicting token frequencies, ignoring the source) "
        f"for {state.rising_intervals} log intervals in a row, more than train.divergence_grace_steps "
        f"({cfg.train.divergence_grace_steps}) steps after warmup (lr {lr:.3g}). {causes} (A far too low lr or a "
        "model too small can also stall there.) checkpoint_last.pt keeps the last state saved before this was "
        "detected, but no better one exists: lower optim.lr and start again (--overwrite)")
