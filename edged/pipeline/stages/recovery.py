"""When to load a broken model again, and when to give up on this process (pure bookkeeping).

A backend that breaks (HailoRT shut its pipeline down, the device timed out) is closed and the
same model is loaded again in the background, with a growing pause between failed attempts.
After ``max_failures`` failures in a row the inference process gives up: the supervisor then
starts a fresh one, which also opens the device afresh (a wedged driver handle does not
survive a new process).
"""

from __future__ import annotations

from dataclasses import dataclass

from edged.pipeline.backoff import Backoff

RELOAD_BACKOFF = Backoff(initial_s=1.0, max_s=10.0)  # 1, 2, 4, 8 s after failures 1-4
MAX_RELOAD_FAILURES = 5
# A load of the model this process already ran takes seconds; one still running after this is
# stuck in the driver, and only a fresh process gets past that.
RELOAD_HUNG_S = 60.0


@dataclass
class ReloadPolicy:
    backoff: Backoff = RELOAD_BACKOFF
    max_failures: int = MAX_RELOAD_FAILURES
    hung_s: float = RELOAD_HUNG_S
    failures: int = 0
    next_attempt_at: float = 0.0

    def due(self, now: float) -> bool:
        """May an attempt start now?"""
        return now >= self.next_attempt_at

    def failed(self, now: float) -> float | None:
        """An attempt failed: the pause before the next one, or None to give up."""
        self.failures += 1
        if self.exhausted:
            return None
        delay = self.backoff.delay(self.failures)
        self.next_attempt_at = now + delay
        return delay

    def hung(self, started: float, now: float) -> bool:
        """Has an attempt that started at ``started`` run too long to be waited for?"""
        return now - started > self.hung_s

    @property
    def exhausted(self) -> bool:
        """Too many failures in a row: give this process up."""
        return self.failures >= self.max_failures

    def succeeded(self) -> None:
        """The model serves again (or another one does): start from scratch next time."""
        self.failures, self.next_attempt_at = 0, 0.0
