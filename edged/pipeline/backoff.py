"""Growing waits between attempts after failures in a row: one policy, parameterised by its users
(source reopening, stage restarts, reloading a broken model)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """``initial_s × factor^(n-1)`` after the n-th failure in a row, capped at ``max_s``, then
    spread by ± ``jitter`` (a fraction) so many clients retrying do not retry in step."""

    initial_s: float
    max_s: float
    factor: float = 2.0
    jitter: float = 0.0

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """The wait after ``failures`` failures in a row (1 or more)."""
        exponent = min(max(failures, 1) - 1, 64)  # bounded: no float overflow however many
        base = min(self.initial_s * self.factor**exponent, self.max_s)
        if self.jitter and rng is not None:
            return base * (1 + rng.uniform(-self.jitter, self.jitter))
        return base


class Respawn:
    """When to start a kept helper process (the MQTT bridge, the shadow monitor) again after it
    exited: ``backoff``'s delay after the n-th exit in a row, counted afresh once one ran for
    ``stable_after_s``. Its owner calls :meth:`exited` on every turn the process is down."""

    def __init__(self, backoff: Backoff, stable_after_s: float) -> None:
        self.backoff = backoff
        self.stable_after_s = stable_after_s
        self.failures = 0  # exits in a row
        self.started = 0.0
        self.due: float | None = None  # when the next start is due (None: not scheduled)

    def exited(self, now: float) -> tuple[bool, float]:
        """(start it now, the delay just scheduled: > 0 on the turn that noticed the exit)."""
        if self.due is None:
            self.failures = 1 if now - self.started > self.stable_after_s else self.failures + 1
            delay = self.backoff.delay(self.failures)
            self.due = now + delay
            return False, delay
        if now >= self.due:
            self.due = None
            return True, 0.0
        return False, 0.0
