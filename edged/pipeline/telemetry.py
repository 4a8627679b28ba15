"""Turns stage events into metrics and the supervisor's view of the pipeline (pure bookkeeping)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from edged.metrics import Metrics
from edged.pipeline.messages import INFER, ModelDescriptor, StageEvent

UNKNOWN_LABEL = "unknown"  # a class id beyond the model's label list (bounded: one series)
KEEP_LABELS_FOR = 4  # model keys whose labels stay known: the active one and a few before it


@dataclass
class PipelineState:
    """What /readyz, `edged ctl status` and sd_notify STATUS report."""

    model: ModelDescriptor | None = None
    source: dict = field(default_factory=dict)
    source_connected: bool = False
    published: int = 0
    last_published_seq: int = -1
    last_published_at: float | None = None  # monotonic
    ended: bool = False
    reconnects: int = 0
    source_error: str | None = None
    subscribers: int = 0  # of detections (not preview viewers)
    recent: deque = field(default_factory=lambda: deque(maxlen=64))  # publish times

    def fps(self, now: float | None = None) -> float:
        """Published frames per second over the last few seconds."""
        now = time.monotonic() if now is None else now
        times = [t for t in tuple(self.recent) if now - t <= 5.0]  # the HTTP thread reads it
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-6)


class Telemetry:
    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.state = PipelineState()
        self._clock = clock
        self._labels_for: dict[str, tuple[str, ...]] = {}

    def set_model(self, model: ModelDescriptor) -> None:
        self.state.model = model
        self._labels_for.pop(model.key, None)  # the newest key last, even if seen before
        self._labels_for[model.key] = model.labels
        # Frames in flight may still carry the previous models' keys; older ones never come.
        for key in list(self._labels_for)[:-KEEP_LABELS_FOR]:
            del self._labels_for[key]
        self.metrics.set_active_model(model.name, model.variant, model.backend, model.precision)
        # Per-label series: this model's and the one before it (its frames may still be in
        # flight); those of older models go, so swaps do not pile series up.
        recent = list(self._labels_for.values())[-2:]
        self.metrics.retire_labels({UNKNOWN_LABEL}.union(*recent))
        self.metrics.prepare_labels(model.labels)

    def handle(self, event: StageEvent) -> None:
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(event)

    def _on_ready(self, event: StageEvent) -> None:
        # A restarted inference process loads the active model afresh, under a new key.
        model = event.data.get("model")
        if event.stage == INFER and isinstance(model, ModelDescriptor):
            self.set_model(model)

    def _on_stats(self, event: StageEvent) -> None:
        for outcome, n in event.data["counts"].items():
            if n:
                self.metrics.frames.labels(event.stage, outcome).inc(n)
        self.metrics.queue_depth.labels(event.stage).set(event.data["queue_depth"])
        for record in event.data.get("records", ()):
            self._published(record)

    def _published(self, d: dict) -> None:
        """One published frame: its latencies, detections, and the pipeline's liveness."""
        m = self.metrics
        for stage, start, end in d["timings"]:
            m.stage_latency.labels(stage).observe(end - start)
        m.end_to_end_latency.observe(d["published"] - d["captured"])
        labels = self._labels_for.get(d["model_key"], ())
        for class_id, score in zip(d["class_ids"], d["scores"], strict=True):
            label = labels[class_id] if class_id < len(labels) else UNKNOWN_LABEL
            m.count_detection(label, score)
        m.published_bytes.inc(d["bytes"])
        s = self.state
        s.published += 1
        s.last_published_seq = d["seq"]
        # The publish time itself (CLOCK_MONOTONIC is system-wide), not when the batch arrived.
        s.last_published_at = d["published"]
        s.recent.append(d["published"])

    def _on_source(self, event: StageEvent) -> None:
        d = event.data
        connected = bool(d.get("connected"))
        if connected:
            self.state.source = {k: v for k, v in d.items() if k not in ("connected", "reconnect")}
            self.metrics.source_fps.set(d.get("fps", 0))
            if d.get("reconnect"):
                self.state.reconnects += 1
                self.metrics.source_reconnects.inc()
            self.state.ended = False
        self.state.source_error = None if connected else d.get("error")
        self.state.source_connected = connected
        self.metrics.source_connected.set(1 if connected else 0)

    def _on_eos(self, event: StageEvent) -> None:
        if event.stage == "capture":
            self.state.ended = True
            self.state.source_connected = False
            self.metrics.source_connected.set(0)

    def _on_subscribers(self, event: StageEvent) -> None:
        self.state.subscribers = int(event.data["count"])
        self.metrics.subscribers.set(self.state.subscribers)

    def _on_model_reload(self, event: StageEvent) -> None:
        self.metrics.model_reloads.labels("ok" if event.data.get("ok") else "failed").inc()

    def record_swap(self, ok: bool, duration: float | None) -> None:
        self.metrics.model_swaps.labels("ok" if ok else "refused").inc()
        if ok and duration is not None:
            self.metrics.model_swap_duration.observe(duration)

    def ready(self, max_age_s: float) -> tuple[bool, str]:
        s = self.state
        if s.model is None:
            return False, "model not loaded"
        if s.ended:  # a file played to its end: nothing more will come, say so at once
            return False, f"source ended after {s.published} published frames"
        if s.source and not s.source_connected and not s.ended:
            # Capture says the source is gone: not ready now, not ready_max_age_s later.
            error = f": {s.source_error}" if s.source_error else ""
            return False, f"source disconnected{error}"
        if s.last_published_at is None:
            error = s.source_error
            return False, "no frame published yet" + (f" (source: {error})" if error else "")
        age = self._clock() - s.last_published_at
        if age > max_age_s:
            why = "source ended" if s.ended else "source disconnected" if not \
                s.source_connected else "pipeline stalled"  # fmt: skip
            return False, f"no frame published for {age:.1f}s ({why})"
        return True, f"{s.fps():.1f} fps, serving {s.model.name}/{s.model.variant}"
