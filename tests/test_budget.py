"""The wall-clock budget: the step-time estimate and the step at which the budget runs out."""
from __future__ import annotations

import itertools

from src.training.budget import TimeBudget


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_pace_over_the_recent_window_predicts_the_last_step():
    clock = Clock()
    budget = TimeBudget(minutes=1.0, window=10, clock=clock)
    assert budget.last_step(0) is None                      # no estimate before any steps
    for step in range(1, 21):                               # 1 s/step, then 2 s/step
        clock.now += 1.0 if step <= 10 else 2.0
        budget.mark(step)
    assert budget.seconds_per_step() == 2.0                  # only the last 10 steps count
    assert budget.last_step(20) == 20 + (60 - 30) // 2
    assert not budget.spent()
    clock.now = 60.0
    assert budget.spent() and budget.last_step(20) == 20


def test_a_compiling_step_restarts_the_estimate():
    clock = Clock()
    budget = TimeBudget(minutes=10.0, window=4, clock=clock)
    for step in range(1, 10):
        clock.now += 30.0 if step == 5 else 1.0              # step 5 compiled a new shape
        budget.mark(step, restart=step == 5)
        if step == 8:
            assert budget.seconds_per_step() is None         # 3 steps since the restart: no estimate yet
    assert budget.seconds_per_step() == 1.0                  # step 5's 30 s are not in it
    assert budget.last_step(9) == 9 + (600 - 38)


def test_no_budget_never_runs_out_and_an_estimate_needs_a_whole_window():
    clock = Clock()
    budget = TimeBudget(minutes=0.0, window=10, clock=clock)
    for step in itertools.islice(itertools.count(1), 30):
        clock.now += 1.0
        budget.mark(step)
    assert budget.last_step(30) is None and not budget.spent()
    short = TimeBudget(minutes=1.0, window=10, clock=clock)
    short.mark(1)
    clock.now += 1.0
    short.mark(10)                                           # 9 steps: under a window
    assert short.seconds_per_step() is None
