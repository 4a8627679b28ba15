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
