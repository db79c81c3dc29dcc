"""Learning-rate schedules: a pure function of the number of optimizer updates already done.

`step` is 0 for the first update. A skipped update (non-finite gradients) does not advance it.

inverse_sqrt (fairseq), with W = warmup_steps, lr_0 = warmup_init_lr:

    lr(step) = lr_0 + (lr − lr_0) · step / W      for step < W   (linear warmup)
    lr(step) = lr · sqrt(W / step)                  for step ≥ W   (decay ∝ step^-0.5)

    W = 0 means no warmup: lr at steps 0 and 1, then lr · sqrt(1 / step).

noam (Vaswani et al. 2017, eq. 3), with s = step + 1 (the paper counts from 1):

    lr(step) = lr · d_model^-0.5 · min(s^-0.5, s · W^-1.5)

    Here `cfg.lr` is a multiplier: 1.0 reproduces the paper, whose peak at s = W = 4000 with
    d_model 512 is 512^-0.5 · 4000^-0.5 ≈ 6.99e-4.
"""

from __future__ import annotations

import math

from translate.config import OptimConfig, Schedule


def lr_at(step: int, cfg: OptimConfig, *, d_model: int) -> float:
    """Learning rate for the update after `step` updates (see the module docstring)."""
    if cfg.schedule == Schedule.NOAM:
        s = step + 1
        return cfg.lr * d_model**-0.5 * min(s**-0.5, s * cfg.warmup_steps**-1.5)
    if cfg.schedule == Schedule.INVERSE_SQRT:
        if step < cfg.warmup_steps:
            return cfg.warmup_init_lr + (cfg.lr - cfg.warmup_init_lr) * step / cfg.warmup_steps
        return cfg.lr * math.sqrt(max(cfg.warmup_steps, 1) / max(step, 1))
    raise ValueError(f"unknown schedule {cfg.schedule!r}")
