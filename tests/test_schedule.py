"""Exact values of the learning-rate schedules."""

import math

import pytest

from translate.config import OptimConfig, Schedule
from translate.schedule import lr_at


def inverse_sqrt(**kw) -> OptimConfig:
    settings = {"lr": 1e-3, "warmup_steps": 1000, "warmup_init_lr": 1e-7, **kw}
    return OptimConfig(schedule=Schedule.INVERSE_SQRT, **settings)


def test_inverse_sqrt_warmup_peak_and_decay():
    cfg = inverse_sqrt()
    assert lr_at(0, cfg, d_model=512) == 1e-7
    assert lr_at(500, cfg, d_model=512) == pytest.approx(1e-7 + (1e-3 - 1e-7) / 2, rel=1e-12)
    assert lr_at(999, cfg, d_model=512) < 1e-3
    assert lr_at(1000, cfg, d_model=512) == pytest.approx(1e-3, rel=1e-12)
    assert lr_at(4000, cfg, d_model=512) == pytest.approx(5e-4, rel=1e-12)
    assert lr_at(250_000, cfg, d_model=512) == pytest.approx(1e-3 * math.sqrt(1000 / 250_000), rel=1e-12)
    # d_model plays no part in inverse_sqrt.
    assert lr_at(4000, cfg, d_model=1024) == lr_at(4000, cfg, d_model=512)


def test_inverse_sqrt_without_warmup():
    cfg = inverse_sqrt(warmup_steps=0)
    assert lr_at(0, cfg, d_model=512) == 1e-3
    assert lr_at(1, cfg, d_model=512) == 1e-3
    assert lr_at(4, cfg, d_model=512) == pytest.approx(5e-4, rel=1e-12)
    assert lr_at(100, cfg, d_model=512) == pytest.approx(1e-4, rel=1e-12)


def test_inverse_sqrt_is_continuous_at_the_peak():
    cfg = inverse_sqrt(warmup_steps=4000, lr=7e-4)
    assert lr_at(3999, cfg, d_model=512) == pytest.approx(7e-4, rel=1e-3)
    assert max(lr_at(s, cfg, d_model=512) for s in range(0, 10_000, 7)) <= 7e-4


def test_noam_paper_values():
    cfg = OptimConfig(schedule=Schedule.NOAM, lr=1.0, warmup_steps=4000)
    # s = step + 1; lr = 512^-0.5 · min(s^-0.5, s · 4000^-1.5)
    assert lr_at(0, cfg, d_model=512) == pytest.approx(512**-0.5 * 4000**-1.5, rel=1e-12)
    assert lr_at(1999, cfg, d_model=512) == pytest.approx(512**-0.5 * 2000 * 4000**-1.5, rel=1e-12)
    peak = lr_at(3999, cfg, d_model=512)
    assert peak == pytest.approx(6.99e-4, abs=5e-7)
    assert peak == pytest.approx(512**-0.5 * 4000**-0.5, rel=1e-12)
    assert max(lr_at(s, cfg, d_model=512) for s in range(0, 20_000, 3)) == pytest.approx(peak, rel=1e-12)
    assert lr_at(15_999, cfg, d_model=512) == pytest.approx(peak / 2, rel=1e-12)


def test_noam_lr_is_a_multiplier_and_d_model_scales():
    paper = OptimConfig(schedule=Schedule.NOAM, lr=1.0, warmup_steps=4000)
    doubled = OptimConfig(schedule=Schedule.NOAM, lr=2.0, warmup_steps=4000)
    assert lr_at(10_000, doubled, d_model=512) == pytest.approx(2 * lr_at(10_000, paper, d_model=512), rel=1e-12)
    expected = lr_at(10_000, paper, d_model=512) / math.sqrt(2)
    assert lr_at(10_000, paper, d_model=1024) == pytest.approx(expected, rel=1e-12)
