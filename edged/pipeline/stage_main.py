"""Entry point of every spawned stage process: the stages of one layout group (see
edged.pipeline.layout), chained by direct calls, with the first stage's loop as the process's."""

from __future__ import annotations

import importlib
import logging
import os
import signal
from collections.abc import Callable
from typing import Protocol

import zmq
from setproctitle import setproctitle

from edged.logs import configure_logging
from edged.pipeline.layout import process_name
from edged.pipeline.messages import Frame
from edged.pipeline.stage_names import CAPTURE, INFER, POSTPROCESS, PREPROCESS, PUBLISH
from edged.pipeline.stage_runtime import StageRuntime, StageSetup, StopRequested, link_local

_MODULES = {
    CAPTURE: "edged.pipeline.stages.capture",
    PREPROCESS: "edged.pipeline.stages.preprocess",
    INFER: "edged.pipeline.stages.inference",
    POSTPROCESS: "edged.pipeline.stages.postprocess",
    PUBLISH: "edged.pipeline.stages.publish",
}


class Stage(Protocol):
    """What a stage module's ``open_stage`` returns. ``serve`` runs the process's loop when the
    stage comes first in its process; ``process`` takes a frame from the stage before it in the
    same process (capture, always first, has none); an optional ``service()`` runs every loop
    turn, frames or not, and ``serve`` passes ``after_frames`` (all of them) to its loop."""

    def process(self, frame: Frame) -> None: ...

    def serve(self, after_frames: Callable[[], None] | None = None) -> None: ...

    def close(self) -> None: ...


def main(setups: list[StageSetup]) -> None:
    # Only the supervisor reloads: `systemctl kill -s HUP edged` (or a hang-up of the terminal)
    # signals every process of the service, and SIGHUP's default action would end the stages.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    first = setups[0]
    name = process_name(first.process_group, first.tag)
    configure_logging(first.config.runtime.log_level, process_name=name)
    # `ps`/`top`/`htop` then show "edged: infer" instead of a multiprocessing command line.
    setproctitle(f"edged: {name}")
    if INFER not in first.process_group and first.config.pipeline.stage_nice:
        # Only the stages: the supervisor stays at 0 so respawned stages start from there.
        os.nice(first.config.pipeline.stage_nice)
    try:
        run_group(setups)
    except Exception:
        logging.getLogger(f"edged.{name}").exception("%s stage crashed", name)
        raise


def open_stage(rt: StageRuntime) -> Stage | None:
    """The stage object for ``rt``; None when it could not start (it told the supervisor)."""
    return importlib.import_module(_MODULES[rt.stage]).open_stage(rt)


def _every_turn(hooks: list[Callable[[], None]]) -> Callable[[], None] | None:
    """The stages' per-loop-turn work (infer: a finished swap; publish: subscriptions,
    preview), whichever stage runs the loop."""
    if not hooks:
        return None

    def run_hooks() -> None:
        for hook in hooks:
            hook()

    return run_hooks


def run_group(setups: list[StageSetup]) -> None:
    """Run the stages of one process until stopped: the first one's loop drives them all."""
    peers: list[StageRuntime] = []
    context = zmq.Context.instance()
    runtimes = [StageRuntime(setup, context, peers) for setup in setups]
    runtimes[0].install_signal_handlers()
    stages: list[Stage] = []
    try:
        for rt in runtimes:
            stage = open_stage(rt)
            if stage is None:
                return
            stages.append(stage)
        for upstream, downstream, stage in zip(runtimes, runtimes[1:], stages[1:], strict=False):
            link_local(upstream, downstream, stage.process)
        stages[0].serve(_every_turn([s.service for s in stages if hasattr(s, "service")]))
    except StopRequested:
        pass
    finally:
        for stage in reversed(stages):
            stage.close()
        for rt in runtimes:
            rt.close()
