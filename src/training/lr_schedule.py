"""Per-step learning rate: linear warmup → hold → decay to ``min_lr`` (pure numpy).

The value for optimizer step ``i`` (0-based) depends only on ``(i, total_steps, cfg)``, so a resumed run
that restores its step counter continues exactly the same curve.

Phases, with ``W = warmup_steps``, ``H = hold_steps`` and ``D = total_steps - W - H`` decay steps:

* warmup, ``i < W``: ``lr * (i + 1) / W`` (the first step already moves; step ``W - 1`` uses ``lr``);
* hold, ``W <= i < W + H``: ``lr``;
* decay, with progress ``p = (i - W - H) / D`` in ``[0, 1)``:

  - ``exponential``: ``lr * (min_lr / lr) ** p``, a geometric curve (a constant factor per step, the per-step
    form of NVIDIA's per-epoch ``gamma``) that would reach ``min_lr`` at ``p = 1``, i.e. one step after the end;
  - ``polynomial``: ``min_lr + (lr - min_lr) * (1 - p) ** power``;
  - ``constant``: ``lr``;
  - ``piecewise``: ``lr_values[k]`` from step ``boundaries[k-1]`` on (TensorFlow's piecewise-constant schedule;
    warmup, hold and retiming do not apply).

``warmup_steps + hold_steps`` may exceed ``total_steps``: the run then simply ends inside warmup or hold (useful
for short smoke-test runs with the full recipe's config); there is no decay phase.  ``lr_at`` for a step at or
beyond ``total_steps`` stays at the curve's end point (``min_lr`` once a decay phase has run).

A :class:`Retiming` moves the end of the decay (``train.schedule_to_budget``: a wall-clock budget that ends the
run early should end the decay too).  From its step ``at`` on, the progress runs on linearly from the value
it had there to 1 at step ``end``, so the curve keeps its shape and is continuous at ``at``; steps from ``end``
on use the end point.  Three numbers describe it, so a checkpoint can carry it and a resumed run continue it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.config import OptimConfig

DECAYS = ("exponential", "polynomial", "constant", "piecewise")


def check_schedule(total_steps: int, cfg: OptimConfig) -> None:
    """Raise ValueError naming the first bad setting (a schedule that could not be what the user meant)."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not cfg.lr > 0:
        raise ValueError(f"optim.lr must be > 0, got {cfg.lr}")
    if cfg.warmup_steps < 0 or cfg.hold_steps < 0:
        raise ValueError(f"optim.warmup_steps and optim.hold_steps must be >= 0, "
                         f"got {cfg.warmup_steps} and {cfg.hold_steps}")
    if cfg.decay not in DECAYS:
        raise ValueError(f"optim.decay must be one of {', '.join(DECAYS)}; got {cfg.decay!r}")
    if cfg.decay == "constant":
        return
    if cfg.decay == "piecewise":
        if len(cfg.lr_values) != len(cfg.boundaries) + 1 or list(cfg.boundaries) != sorted(set(cfg.boundaries)):
            raise ValueError(f"optim.decay=piecewise needs increasing optim.boundaries and one more optim.lr_values; "
                             f"got {list(cfg.boundaries)} and {list(cfg.lr_values)}")
        return
    if cfg.min_lr < 0:
        raise ValueError(f"optim.min_lr must be >= 0, got {cfg.min_lr}")
    if cfg.min_lr > cfg.lr:
        raise ValueError(f"optim.min_lr ({cfg.min_lr}) must not exceed optim.lr ({cfg.lr})")
    if cfg.decay == "exponential" and cfg.min_lr == 0:
        raise ValueError("optim.decay=exponential needs optim.min_lr > 0 (a geometric curve never reaches 0); "
                         "use decay=polynomial to end at 0")
    if cfg.decay == "polynomial" and not cfg.power > 0:
        raise ValueError(f"optim.power must be > 0 for polynomial decay, got {cfg.power}")


@dataclass(frozen=True)
class Retiming:
    """Decay progress ``progress`` at step ``at``, reaching 1 at step ``end`` (``at < end``).  Steps before
    ``at`` keep the planned curve: a run retimes only its future."""
    at: int
    progress: float
    end: int


def _progress(steps: np.ndarray, total_steps: int, cfg: OptimConfig, retiming: Retiming | None) -> np.ndarray:
    """Decay progress of decay-phase ``steps``: 0 at the first decay step, 1 at the end (may exceed 1)."""
    start = cfg.warmup_steps + cfg.hold_steps
    p = (steps - start) / (total_steps - start)
    if retiming is not None:
        late = steps >= retiming.at
        p[late] = retiming.progress + (1.0 - retiming.progress) * (steps[late] - retiming.at) / (
            retiming.end - retiming.at)
    return p


def retime(step: int, end: int, total_steps: int, cfg: OptimConfig, current: Retiming | None = None) -> Retiming:
    """The retiming that, from ``step`` on, ends the decay at ``end`` (at least ``step + 1``), continuing the
    curve that ``current`` describes.  ``step`` must be past warmup and hold (where the decay has begun)."""
    check_schedule(total_steps, cfg)
    if step < cfg.warmup_steps + cfg.hold_steps or cfg.warmup_steps + cfg.hold_steps >= total_steps:
        raise ValueError(f"step {step}: the decay has not begun (warmup + hold = "
                         f"{cfg.warmup_steps + cfg.hold_steps} steps of {total_steps})")
    # float32-exact, as a checkpoint stores it, so a resumed run continues the very same curve
    p = float(np.float32(min(_progress(np.array([step]), total_steps, cfg, current)[0], 1.0)))
    return Retiming(at=int(step), progress=p, end=max(int(end), int(step) + 1))


def _values(steps: np.ndarray, total_steps: int, cfg: OptimConfig,
            retiming: Retiming | None = None) -> np.ndarray:
    """Float64 learning rates for integer ``steps`` (any shape, all >= 0); the one formula both APIs use."""
    warmup, hold = cfg.warmup_steps, cfg.hold_steps
    n_decay = total_steps - warmup - hold
    steps = steps.astype(np.int64)
    if cfg.decay == "piecewise":
        return np.asarray(cfg.lr_values, dtype=np.float64)[np.searchsorted(cfg.boundaries, steps, side="right")]
    out = np.full(steps.shape, float(cfg.lr))
    if warmup > 0:
        in_warmup = steps < warmup
        out[in_warmup] = cfg.lr * (steps[in_warmup] + 1) / warmup
    if cfg.decay == "constant":
        return out
    p_all = _progress(steps, total_steps, cfg, retiming) if n_decay > 0 else np.zeros(steps.shape)
    after = (steps >= total_steps) | (p_all >= 1.0)
    in_decay = (steps >= warmup + hold) & ~after
    if n_decay > 0 and in_decay.any():
        p = p_all[in_decay]
        if cfg.decay == "exponential":
            out[in_decay] = cfg.lr * (cfg.min_lr / cfg.lr) ** p
        else:
            out[in_decay] = cfg.min_lr + (cfg.lr - cfg.min_lr) * (1.0 - p) ** cfg.power
    # past the end of a schedule that has a decay phase: stay at its end point
    out[after & (n_decay > 0)] = cfg.min_lr
    return out


def lr_at(step: int, total_steps: int, cfg: OptimConfig, retiming: Retiming | None = None) -> float:
    """Learning rate used by optimizer step ``step`` (0-based) of a ``total_steps``-step run."""
    check_schedule(total_steps, cfg)
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return float(_values(np.array([step]), total_steps, cfg, retiming)[0])


def lr_schedule(total_steps: int, cfg: OptimConfig, retiming: Retiming | None = None) -> np.ndarray:
    """All per-step learning rates: (total_steps,) float32, element ``i`` for optimizer step ``i``.

    This is the array handed to the optimizer as its dynamic learning rate (indexed by ``global_step``).
    """
    check_schedule(total_steps, cfg)
    return _values(np.arange(total_steps), total_steps, cfg, retiming).astype(np.float32)
