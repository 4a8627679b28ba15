"""The helper's CPU budget: a share of the live path's inference time, as a token bucket."""

from __future__ import annotations


class CostBudget:
    """Credit grows by ``fraction`` of every live inference second reported, and every CPU
    second the helper spends (checks and all its overhead) is taken off it; a check runs only
    when the credit covers what a check is expected to cost. So over any stretch the helper's
    CPU stays within ``fraction`` of the inference time plus at most ``burst`` checks' worth:
    the credit is capped, so a quiet hour is not spent in one go."""

    def __init__(self, fraction: float, expected_s: float, burst: float = 2.0) -> None:
        if not 0 < fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")
        self.fraction = fraction
        self.expected_s = max(expected_s, 1e-6)  # one check's CPU, learnt as checks run
        self.burst = burst
        self.credit = 0.0

    def earn(self, infer_s: float) -> None:
        cap = self.burst * self.expected_s
        self.credit = min(self.credit + self.fraction * max(infer_s, 0.0), cap)

    def affords_check(self) -> bool:
        return self.credit >= self.expected_s

    def spend(self, cpu_s: float, check: bool = False) -> None:
        """CPU the helper used; ``check``: a check's own cost, which updates the expectation."""
        self.credit -= max(cpu_s, 0.0)
        if check:  # slow to follow, so one slow check (a cold cache) does not stall the next
            self.expected_s = 0.8 * self.expected_s + 0.2 * max(cpu_s, 1e-6)
