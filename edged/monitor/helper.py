"""The shadow helper process: loads the reference variant (one thread, low CPU priority) and
checks the samples the publish stage sends, reporting each to the supervisor.

It binds its sample socket only once the model is loaded: until then (and whenever it is busy,
stopped or dead) the publish stage's sends fail at once and count as dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

from edged.config import EdgedConfig
from edged.models import ResolvedVariant
from edged.monitor.messages import ShadowReport, ShadowSample, report_endpoint, sample_endpoint
from edged.postprocess.decoders import Detections, decode

log = logging.getLogger(__name__)

POLL_MS = 500  # how often the loop looks at the stop flag and its parent


@dataclass(frozen=True)
class HelperSetup:
    config: EdgedConfig
    reference: ResolvedVariant  # already at one thread (see reference.one_thread)
    runtime_dir: Path


def lower_priority(priority: str) -> str:
    """Before any thread starts (threads inherit it). Returns what it got."""
    if priority == "idle":
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return "SCHED_IDLE"
        except (AttributeError, OSError):  # not Linux: the next best
            priority = "nice"
    if priority == "nice":
        os.nice(19 - os.nice(0))
        return "nice 19"
    return "normal priority"


class ReferenceModel:
    """The reference variant loaded through the daemon's own loader, run as the live path runs
    a frame: letterbox, infer, decode + NMS with the configured postprocess settings."""

    def __init__(self, setup: HelperSetup) -> None:
        from edged.pipeline.model_loader import load_model
        from edged.pipeline.stages.postprocess import PostprocessStage, decode_params
        from edged.postprocess.decoders import OutputLayout
        from edged.preprocess import TensorWriter

        cfg = setup.config
        self.backend, model = load_model(setup.reference, cfg.inference, 1, generation=0)
        self.params = decode_params(cfg.postprocess)
        # Each camera's own conf_threshold, as the postprocess stage decodes its frames with.
        self.camera_params = {c.id: decode_params(cfg.postprocess, c.conf_threshold)
                              for c in cfg.camera_list()}  # fmt: skip
        self.layout = OutputLayout(model.output_layout)
        self.head = PostprocessStage.head_of(model.head)
        self.writer = TensorWriter(model.input_layout)
        self.size = (model.input_width, model.input_height)
        self.tensor = np.zeros(self.backend.input.shape, self.backend.input.dtype)

    def detect(self, image: np.ndarray, camera: str) -> Detections:
        box = self.writer.write(image, self.tensor, key=0)
        params = self.camera_params.get(camera, self.params)  # a camera added since: defaults
        return decode(self.backend.infer(self.tensor), self.layout, params, self.size, box,
                      self.head)  # fmt: skip

    def close(self) -> None:
        self.backend.close()


def image_of(sample: ShadowSample, pixels: memoryview) -> np.ndarray:
    expected = sample.width * sample.height * 3
    if len(pixels) != expected:
        raise ValueError(f"frame {sample.seq}: {len(pixels)} bytes, expected {expected}")
    return np.frombuffer(pixels, np.uint8).reshape(sample.height, sample.width, 3)


def run(setup: HelperSetup, stop: threading.Event, parent_pid: int | None = None) -> int:
    from edged.monitor.budget import CostBudget
    from edged.monitor.checker import Checker

    shadow = setup.config.monitor.shadow
    try:
        model = ReferenceModel(setup)
    except Exception as exc:  # any load failure: say it, exit, be restarted
        log.error("shadow monitor: cannot load %s: %s", setup.reference.variant, exc)
        return 2
    # What one check costs, before the first frame comes (a blank frame the input's size).
    start = time.process_time()
    width, height = model.size
    model.detect(np.full((height, width, 3), 114, np.uint8), "")
    budget = CostBudget(shadow.max_cost_percent / 100, time.process_time() - start)
    checker = Checker(model.detect, budget)
    ctx = zmq.Context()
    reports = ctx.socket(zmq.PUSH)
    reports.setsockopt(zmq.SNDHWM, 100)
    reports.setsockopt(zmq.LINGER, 0)
    reports.connect(report_endpoint(setup.runtime_dir))
    samples = ctx.socket(zmq.PULL)
    samples.setsockopt(zmq.RCVHWM, 1)
    samples.setsockopt(zmq.LINGER, 0)
    samples.bind(sample_endpoint(setup.runtime_dir))
    log.info("shadow monitor: %s/%s ready (one check ≈ %.0f ms CPU)", setup.reference.name,
             setup.reference.variant, budget.expected_s * 1000)  # fmt: skip
    errors = 0
    try:
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                log.warning("the daemon is gone; stopping the shadow helper")
                break
            if not samples.poll(POLL_MS):
                continue
            header, pixels = samples.recv_multipart(copy=False)
            try:
                sample = pickle.loads(header.buffer)
                report = checker.handle(sample, image_of(sample, pixels.buffer))
            except (pickle.UnpicklingError, ValueError, AttributeError, TypeError) as exc:
                log.error("shadow monitor: unreadable sample: %s", exc)
                continue
            if report.outcome == "error":
                errors += 1
                if errors in (1, 10, 100) or errors % 1000 == 0:
                    log.error("shadow check of frame %d failed (%d so far): %s", report.seq,
                              errors, report.error)  # fmt: skip
            _send(reports, report)
    finally:
        samples.close(0)
        reports.close(0)
        ctx.term()
        model.close()
    return 0


def _send(sock: zmq.Socket, report: ShadowReport) -> None:
    with contextlib.suppress(zmq.Again):  # the supervisor is not reading: it is busy
        sock.send(pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL), zmq.NOBLOCK)


def main(setup: HelperSetup) -> None:
    """Entry point of the spawned helper process."""
    # First, before ORT or ZeroMQ start threads: they inherit the policy.
    got = lower_priority(setup.config.monitor.shadow.priority)
    from setproctitle import setproctitle

    from edged.logs import configure_logging

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # systemctl reload signals the whole service
    setproctitle("edged: shadow")
    configure_logging(setup.config.runtime.log_level, process_name="shadow")
    log.debug("shadow helper at %s", got)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    raise SystemExit(run(setup, stop, parent_pid=os.getppid()))
