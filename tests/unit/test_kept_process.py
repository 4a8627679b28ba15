"""A kept helper process (the MQTT bridge's and the shadow monitor's): a real spawned process,
started again after its backoff when it exits, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal

from edged.pipeline.backoff import Backoff
from edged.pipeline.kept_process import KeptProcess


def _wait_for_signal() -> None:
    signal.pause()  # SIGTERM's default action ends it


def test_an_exited_helper_starts_again_after_its_backoff_and_stop_ends_it() -> None:
    now = [0.0]
    kept = KeptProcess("test helper", "edged-test", Backoff(initial_s=2.0, max_s=8.0), 60.0,
                       clock=lambda: now[0])  # fmt: skip
    assert not kept.due() and kept.pid is None  # never started: nothing to restart
    first = kept.start(_wait_for_signal)
    assert kept.pid == first and not kept.due()  # running
    os.kill(first, signal.SIGKILL)
    kept.process.join(30)
    assert not kept.due()  # the turn that notices the exit: 2 s to wait
    now[0] += 1.0
    assert not kept.due()
    now[0] += 1.0
    assert kept.due()  # the owner starts it now
    second = kept.start(_wait_for_signal)
    assert second != first and kept.pid == second
    kept.stop(timeout_s=30)
    assert kept.pid is None and not kept.started and not kept.due()
    assert not os.path.exists(f"/proc/{second}")  # ended and reaped
