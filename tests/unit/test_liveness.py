"""Which stage processes count as stuck for the systemd watchdog (pure bookkeeping)."""

from __future__ import annotations

from edged.pipeline.liveness import Liveness


def test_a_process_that_stops_reporting_is_stuck_and_one_that_reports_is_not() -> None:
    live = Liveness(silence_s=5.0, start_grace_s=120.0)
    live.started("infer", 0.0)
    live.started("capture", 0.0)
    live.heard("infer", 10.0)
    live.heard("capture", 10.0)
    assert live.stuck(["infer", "capture"], 14.0) == []
    live.heard("capture", 14.0)
    assert live.stuck(["infer", "capture"], 16.0) == ["infer"]


def test_a_new_process_has_its_start_grace_then_must_report() -> None:
    live = Liveness(silence_s=5.0, start_grace_s=60.0)
    live.started("infer", 100.0)  # loading a model: no report yet
    assert live.stuck(["infer"], 150.0) == []
    assert live.stuck(["infer"], 161.0) == ["infer"]
    live.heard("infer", 161.0)
    live.started("infer", 200.0)  # restarted: the grace starts again, old reports forgotten
    assert live.stuck(["infer"], 230.0) == []


def test_only_running_processes_are_judged() -> None:
    live = Liveness(silence_s=5.0, start_grace_s=10.0)
    live.started("publish", 0.0)
    assert live.stuck([], 1000.0) == []  # a dead one is the restart logic's business
