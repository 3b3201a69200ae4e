"""The wall-clock budget of a run (``train.max_minutes``): when to stop, and where the LR decay should end.

With ``train.schedule_to_budget`` the trainer asks :meth:`TimeBudget.last_step` at every log line for the step
at which the budget will run out, estimated from the time per step over the last ``window`` steps (dev
evaluations included: they spend the budget too).  When that falls short of the planned end of the decay, the
decay is retimed to end there, so a slower machine ends with a fully decayed model rather than one stopped
mid-decay.  A machine fast enough for the planned steps never retimes.

Steps that compiled a graph (a new batch shape, the first dev evaluation) are one-off costs: the estimate
starts again after them, and needs a whole window of steps before it says anything.
"""
from __future__ import annotations

import collections
import time


class TimeBudget:
    def __init__(self, minutes: float, window: int, clock=time.perf_counter) -> None:
        """minutes: the budget, 0 = none; window: optimizer steps the step-time estimate looks back."""
        self.seconds = minutes * 60.0
        self.window = max(int(window), 1)
        self.clock = clock
        self.started = clock()
        self._marks: collections.deque[tuple[int, float]] = collections.deque()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def spent(self) -> bool:
        return self.seconds > 0 and self.elapsed() >= self.seconds

    def mark(self, step: int, restart: bool = False) -> None:
        """Record that ``step`` optimizer steps are done now; ``restart``: this step's time was a one-off
        (a compilation), so the estimate starts again from here."""
        now = self.clock()
        if restart:
            self._marks.clear()
        self._marks.append((step, now))
        while len(self._marks) > 2 and step - self._marks[1][0] >= self.window:
            self._marks.popleft()

    def seconds_per_step(self) -> float | None:
        """Over the last ``window`` steps since the last restart; None before a whole window of them."""
        if len(self._marks) < 2:
            return None
        (s0, t0), (s1, t1) = self._marks[0], self._marks[-1]
        if s1 - s0 < self.window or t1 <= t0:
            return None
        return (t1 - t0) / (s1 - s0)

    def last_step(self, step: int) -> int | None:
        """The step at which the budget runs out at the recent pace, or None (no budget, no estimate yet)."""
        rate = self.seconds_per_step()
        if self.seconds <= 0 or rate is None:
            return None
        return step + max(int((self.seconds - self.elapsed()) / rate), 0)
