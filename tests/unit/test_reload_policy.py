"""The inference stage's recovery from a broken backend: retry pauses, and when to give up."""

from __future__ import annotations

from edged.pipeline.backoff import Backoff
from edged.pipeline.stages.recovery import ReloadPolicy


def test_failed_attempts_wait_longer_each_time_then_give_up() -> None:
    policy = ReloadPolicy(backoff=Backoff(1.0, 5.0), max_failures=4)
    assert policy.due(0.0)
    assert policy.failed(100.0) == 1.0
    assert not policy.due(100.5) and policy.due(101.0)
    assert policy.failed(101.0) == 2.0
    assert policy.failed(103.0) == 4.0
    assert not policy.exhausted
    assert policy.failed(108.0) is None  # the fourth failure in a row: give the process up
    assert policy.exhausted


def test_the_last_pause_repeats_and_a_success_starts_over() -> None:
    policy = ReloadPolicy(backoff=Backoff(1.0, 3.0), max_failures=10)
    pauses = [policy.failed(0.0) for _ in range(4)]
    assert pauses == [1.0, 2.0, 3.0, 3.0]
    policy.succeeded()
    assert policy.due(0.0) and policy.failures == 0
    assert policy.failed(50.0) == 1.0


def test_the_defaults_pause_1_2_4_8_s_and_give_up_at_the_fifth_failure() -> None:
    """What the README promises."""
    policy = ReloadPolicy()
    assert [policy.failed(0.0) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, None]


def test_an_attempt_is_hung_only_past_its_limit() -> None:
    policy = ReloadPolicy(hung_s=60.0)
    assert not policy.hung(started=100.0, now=160.0)
    assert policy.hung(started=100.0, now=160.5)
