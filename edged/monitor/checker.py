"""One sample checked in the helper: the reference's detections on the frame, compared with what
the live variant published, within the CPU budget. No sockets: the helper feeds it."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edged.monitor.agreement import compare
from edged.monitor.budget import CostBudget
from edged.monitor.messages import ShadowReport, ShadowSample
from edged.postprocess.decoders import Detections


class Checker:
    def __init__(
        self,
        detect: Callable[[np.ndarray, str], Detections],  # (image, camera id)
        budget: CostBudget,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        self.detect = detect
        self.budget = budget
        self.cpu = cpu_clock  # the whole helper process's CPU time, every thread
        self.base_cpu = self.last_cpu = cpu_clock()
        self.infer_s = 0.0  # live inference time reported since the helper was ready

    def handle(self, sample: ShadowSample, image: np.ndarray) -> ShadowReport:
        start = self.cpu()
        self.infer_s += sample.infer_s
        self.budget.earn(sample.infer_s)
        # What the helper used between samples (receiving them, its loop) counts too.
        self.budget.spend(start - self.last_cpu)
        agreement, outcome, error = None, "skipped", ""
        if self.budget.affords_check():
            try:
                ref = self.detect(image, sample.camera_id)
                agreement = compare(ref.boxes, ref.class_ids, ref.scores,
                                    sample.boxes, sample.class_ids, sample.scores)  # fmt: skip
                outcome = "checked"
            except Exception as exc:  # a bad frame or a broken backend: reported, not fatal
                outcome, error = "error", f"{type(exc).__name__}: {exc}"
            self.budget.spend(self.cpu() - start, check=True)
        self.last_cpu = self.cpu()
        return ShadowReport(
            outcome, sample.seq, sample.camera_id, sample.live_variant, agreement, sample.dropped,
            cpu_s=self.last_cpu - self.base_cpu, infer_s=self.infer_s, error=error,
        )  # fmt: skip
