"""The per-step learning-rate schedule: warmup, hold, decays, and the settings it refuses."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from src.config import OptimConfig
from src.training.lr_schedule import lr_at, lr_schedule, retime

BASE = OptimConfig(lr=1e-2, warmup_steps=10, hold_steps=5, min_lr=1e-5, decay="exponential", power=2.0)


def cfg(**kw) -> OptimConfig:
    return dataclasses.replace(BASE, **kw)


def test_shape_dtype_and_lr_at_agree():
    c = cfg()
    s = lr_schedule(100, c)
    assert s.shape == (100,) and s.dtype == np.float32
    assert np.array_equal(s, np.array([lr_at(i, 100, c) for i in range(100)], dtype=np.float32))


def test_warmup_is_linear_and_reaches_lr():
    s = lr_schedule(100, cfg())
    np.testing.assert_allclose(s[:10], 1e-2 * np.arange(1, 11) / 10, rtol=1e-6)
    assert s[0] > 0


def test_hold_is_flat_at_lr():
    s = lr_schedule(100, cfg())
    np.testing.assert_allclose(s[9:15], 1e-2, rtol=1e-6)   # last warmup step and the hold phase
    assert s[15] == pytest.approx(1e-2, rel=1e-6)          # decay starts at p = 0


@pytest.mark.parametrize("decay", ["exponential", "polynomial"])
def test_decay_is_monotone_and_ends_at_min_lr(decay):
    total = 1000
    c = cfg(decay=decay)
    s = lr_schedule(total, c).astype(np.float64)
    tail = s[15:]
    assert np.all(np.diff(tail) < 0)
    assert tail[-1] > c.min_lr
    # the curve reaches min_lr one step past the end: the last value is within one step's factor of it
    assert tail[-1] == pytest.approx(c.min_lr, rel=0.02)
    assert lr_at(total, total, c) == pytest.approx(c.min_lr, rel=1e-12)
    assert lr_at(total + 50, total, c) == pytest.approx(c.min_lr, rel=1e-12)


def test_exponential_is_geometric():
    s = lr_schedule(115, cfg()).astype(np.float64)
    ratios = s[16:] / s[15:-1]
    np.testing.assert_allclose(ratios, (1e-5 / 1e-2) ** (1 / 100), rtol=1e-5)


def test_polynomial_formula_and_power():
    total, c = 115, cfg(decay="polynomial", power=2.0)
    p = np.arange(100) / 100
    np.testing.assert_allclose(lr_schedule(total, c)[15:], 1e-5 + (1e-2 - 1e-5) * (1 - p) ** 2, rtol=1e-5)
    linear = lr_schedule(total, cfg(decay="polynomial", power=1.0))
    assert linear[60] > lr_schedule(total, c)[60]


def test_constant_keeps_lr_after_warmup():
    s = lr_schedule(50, cfg(decay="constant"))
    np.testing.assert_allclose(s[9:], 1e-2, rtol=1e-6)


def test_no_warmup_no_hold():
    s = lr_schedule(10, cfg(warmup_steps=0, hold_steps=0))
    assert s[0] == pytest.approx(1e-2, rel=1e-6)
    assert np.all(np.diff(s) < 0)


def test_run_shorter_than_warmup_plus_hold_is_allowed():
    s = lr_schedule(12, cfg())      # ends inside the hold phase: no decay at all
    np.testing.assert_allclose(s[:10], 1e-2 * np.arange(1, 11) / 10, rtol=1e-6)
    np.testing.assert_allclose(s[10:], 1e-2, rtol=1e-6)
    s = lr_schedule(4, cfg())       # ends inside warmup
    np.testing.assert_allclose(s, 1e-2 * np.arange(1, 5) / 10, rtol=1e-6)


def test_resume_depends_only_on_step():
    c = cfg()
    full = lr_schedule(300, c)
    assert [lr_at(i, 300, c) for i in (0, 9, 14, 15, 150, 299)] == pytest.approx(
        [float(full[i]) for i in (0, 9, 14, 15, 150, 299)], rel=1e-6)


@pytest.mark.parametrize("kwargs, total, match", [
    (dict(min_lr=0.1), 100, "min_lr"),
    (dict(decay="cosine"), 100, "exponential, polynomial, constant"),
    (dict(lr=0.0), 100, "lr must be > 0"),
    (dict(warmup_steps=-1), 100, "warmup_steps"),
    (dict(hold_steps=-3), 100, "hold_steps"),
    (dict(min_lr=-1e-6), 100, "min_lr"),
    (dict(min_lr=0.0), 100, "exponential needs optim.min_lr > 0"),
    (dict(decay="polynomial", power=0.0), 100, "power"),
    (dict(), 0, "total_steps"),
])
def test_bad_settings_raise(kwargs, total, match):
    with pytest.raises(ValueError, match=match):
        lr_schedule(total, cfg(**kwargs))


def test_polynomial_to_zero_is_allowed_and_negative_step_is_not():
    s = lr_schedule(20, cfg(decay="polynomial", min_lr=0.0, warmup_steps=0, hold_steps=0))
    assert s[-1] > 0 and lr_at(20, 20, cfg(decay="polynomial", min_lr=0.0)) == 0.0
    with pytest.raises(ValueError, match="step"):
        lr_at(-1, 20, cfg())


@pytest.mark.parametrize("decay", ["exponential", "polynomial"])
def test_retiming_keeps_the_curve_up_to_its_step_and_ends_at_min_lr_at_its_end(decay):
    c, total = cfg(decay=decay), 1000
    plan = lr_schedule(total, c)
    r = retime(400, 700, total, c)
    s = lr_schedule(total, c, r)
    assert s.shape == plan.shape
    np.testing.assert_allclose(s[:401], plan[:401], rtol=1e-6)    # continuous: step 400 keeps its value
    assert np.all(np.diff(s[400:700].astype(np.float64)) < 0)
    np.testing.assert_allclose(s[700:], c.min_lr, rtol=1e-6)
    # the shortened curve passes through the planned values, only faster: halfway there is halfway in progress
    assert s[550] == pytest.approx(plan[400 + (999 + 1 - 400) // 2], rel=1e-3)
    assert lr_at(600, total, c, r) == pytest.approx(float(s[600]), rel=1e-6)


def test_retiming_twice_continues_from_the_first_and_can_end_later_again():
    c, total = cfg(decay="polynomial"), 1000
    first = retime(300, 600, total, c)
    second = retime(450, 900, total, c, first)
    a, b = lr_schedule(total, c, first), lr_schedule(total, c, second)
    assert b[450] == pytest.approx(a[450], rel=1e-6)             # continuous where the second begins
    assert b[899] > c.min_lr and b[900] == pytest.approx(c.min_lr)
    assert retime(450, 200, total, c, first).end == 451              # an end already past: the next step
    after_end = retime(700, 900, total, c, first)                    # the decay had ended: it stays ended
    np.testing.assert_allclose(lr_schedule(total, c, after_end)[700:], c.min_lr, rtol=1e-6)


def test_retiming_inside_warmup_is_refused():
    with pytest.raises(ValueError, match="has not begun"):
        retime(12, 50, 100, cfg())
