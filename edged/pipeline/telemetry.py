"""Turns stage events into metrics and the supervisor's view of the pipeline (pure bookkeeping)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from edged.metrics import Metrics
from edged.pipeline.messages import (
    CAPTURE,
    INFER,
    PUBLISH,
    EndOfStream,
    InferenceReady,
    ModelDescriptor,
    ModelReloaded,
    PublishedFrame,
    SourceConnected,
    SourceLost,
    StageEvent,
    Stats,
    SubscribersChanged,
)

UNKNOWN_LABEL = "unknown"  # a class id beyond the model's label list (bounded: one series)
KEEP_LABELS_FOR = 4  # model keys whose labels stay known: the active one and a few before it


@dataclass
class PipelineState:
    """What /readyz, `edged ctl status` and sd_notify STATUS report: the whole pipeline, and
    the same for each camera in ``cameras`` (the source fields of the whole are a summary of
    the cameras': connected when all are, ended when all ended)."""

    model: ModelDescriptor | None = None
    source: dict = field(default_factory=dict)
    source_connected: bool = False
    published: int = 0
    last_published_seq: int = -1
    last_published_at: float | None = None  # monotonic
    ended: bool = False
    reconnects: int = 0
    source_error: str | None = None
    last_source_error: str | None = None  # kept after a reconnect: why it had to
    dropped: int = 0  # frames dropped (live skipping, no free slot), all stages
    errors: int = 0  # frames a stage failed on
    subscribers: int = 0  # of detections (not preview viewers)
    recent: deque = field(default_factory=lambda: deque(maxlen=64))  # publish times
    cameras: dict[str, PipelineState] = field(default_factory=dict)

    def camera(self, camera: str) -> PipelineState:
        state = self.cameras.get(camera)
        if state is None:
            state = self.cameras[camera] = PipelineState()
        return state

    def summarise_sources(self) -> None:
        """The whole pipeline's source fields from its cameras'."""
        cams = self.cameras
        if not cams:
            return
        if len(cams) == 1:
            (only,) = cams.values()
            self.source = only.source
            self.source_error = only.source_error
            self.last_source_error = only.last_source_error
        else:
            self.source = {"cameras": len(cams)}
            errors = [f"{c}: {s.source_error}" for c, s in cams.items() if s.source_error]
            self.source_error = "; ".join(errors) or None
            last = [f"{c}: {s.last_source_error}" for c, s in cams.items() if s.last_source_error]
            self.last_source_error = "; ".join(last) or None
        self.source_connected = all(s.source_connected for s in cams.values())
        self.ended = all(s.ended for s in cams.values())
        self.reconnects = sum(s.reconnects for s in cams.values())

    def note_published(self, seq: int, at: float) -> None:
        self.published += 1
        self.last_published_seq = seq
        # The publish time itself (CLOCK_MONOTONIC is system-wide), not when the batch arrived.
        self.last_published_at = at
        self.recent.append(at)

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
        self._removed: set[str] = set()

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

    def add_camera(self, camera: str) -> None:
        """A camera configured (at start or by a reload): reported before its first event."""
        self._removed.discard(camera)
        self.state.camera(camera)
        self.metrics.use_cameras(self.state.cameras)

    def remove_camera(self, camera: str) -> None:
        """A reload removed ``camera``: its frames still in flight no longer bring it back."""
        self._removed.add(camera)
        self.state.cameras.pop(camera, None)
        self.metrics.use_cameras(self.state.cameras)
        self._sources_changed()

    def _camera(self, camera: str) -> PipelineState:
        """``camera``'s state; a throwaway one for a camera a reload removed."""
        return PipelineState() if camera in self._removed else self.state.camera(camera)

    def handle(self, stage: str, event: StageEvent, camera: str = "") -> None:
        """Book ``stage``'s event (``camera``: the sending instance's camera, for a per-camera
        stage); kinds that are no telemetry (swap results...) pass by."""
        match event:
            case Stats():
                self._stats(stage, event, camera)
            case InferenceReady() if stage == INFER:
                # A restarted inference process loads the active model afresh, under a new key.
                self.set_model(event.model)
            case SourceConnected() if camera not in self._removed:
                self._source_connected(event, camera)
            case SourceLost() if camera not in self._removed:
                self._source_lost(event.error, camera)
            case EndOfStream(tracking=summary) if stage == PUBLISH and summary is not None:
                self.metrics.record_tracking(summary)  # the tracks ended with the stream
            case EndOfStream() if stage == CAPTURE:
                cam = self._camera(camera)
                cam.ended = True
                cam.source_connected = False
                self._sources_changed(camera)
            case SubscribersChanged():
                self.state.subscribers = event.count
                self.metrics.subscribers.set(event.count)
            case ModelReloaded():
                self.metrics.model_reloads.labels("ok" if event.ok else "failed").inc()

    def _stats(self, stage: str, event: Stats, camera: str) -> None:
        by_camera = event.camera_counts
        if by_camera is None:  # a stage that does not count per camera: the sender's camera
            by_camera = {camera: event.counts}
        for cam, counts in by_camera.items():
            if cam in self._removed:  # frames of a camera a reload removed, still in flight
                continue
            for outcome, n in counts.items():
                if n:
                    self.metrics.frames.labels(stage, outcome, cam).inc(n)
            own = self.state.cameras.get(cam)  # "": a frame without a camera id, the whole only
            for state in (self.state, own) if own is not None else (self.state,):
                state.dropped += counts.get("dropped", 0)
                state.errors += counts.get("error", 0)
        self.metrics.queue_depth.labels(stage).set(event.queue_depth)
        for record in event.records:
            self._published(record)

    def _published(self, d: PublishedFrame) -> None:
        """One published frame: its latencies, detections, and the pipeline's liveness."""
        m = self.metrics
        camera = d.camera
        if camera not in self._removed:  # its series went with it
            for stage, start, end in d.timings:
                m.stage_latency.labels(stage, camera).observe(end - start)
            m.end_to_end_latency.labels(camera).observe(d.published - d.captured)
            labels = self._labels_for.get(d.model_key, ())
            for class_id, score in zip(d.class_ids, d.scores, strict=True):
                label = labels[class_id] if class_id < len(labels) else UNKNOWN_LABEL
                m.count_detection(label, score, camera)
        m.published_bytes.inc(d.bytes)
        if d.tracking is not None:
            m.record_tracking(d.tracking)
        self.state.note_published(d.seq, d.published)
        self._camera(d.camera).note_published(d.seq, d.published)

    def _source_connected(self, event: SourceConnected, camera: str) -> None:
        cam = self.state.camera(camera)
        cam.source = {k: v for k, v in vars(event).items() if k != "reconnect"}
        self.metrics.source_fps.labels(camera).set(event.fps)
        if event.reconnect:
            cam.reconnects += 1
            self.metrics.source_reconnects.labels(camera).inc()
        cam.ended = False
        cam.source_error = None
        cam.source_connected = True
        self._sources_changed(camera)

    def _source_lost(self, error: str, camera: str) -> None:
        cam = self.state.camera(camera)
        cam.source_error = cam.last_source_error = error
        cam.source_connected = False
        self._sources_changed(camera)

    def _sources_changed(self, camera: str | None = None) -> None:
        self.state.summarise_sources()
        cam = self.state.cameras.get(camera) if camera is not None else None
        if cam is not None:
            self.metrics.source_connected.labels(camera).set(1 if cam.source_connected else 0)

    def record_swap(self, ok: bool, duration: float | None) -> None:
        self.metrics.model_swaps.labels("ok" if ok else "refused").inc()
        if ok and duration is not None:
            self.metrics.model_swap_duration.observe(duration)

    def ready(self, max_age_s: float) -> tuple[bool, str]:
        """Ready while one camera flows; with several, one camera down is *degraded*: still
        ready, and the reason names it."""
        s = self.state
        if s.model is None:
            return False, "model not loaded"
        if len(s.cameras) <= 1:
            return self._camera_ready(s, max_age_s)
        verdicts = {c: self._camera_ready(cam, max_age_s) for c, cam in s.cameras.items()}
        down = [f"{c}: {why}" for c, (ok, why) in verdicts.items() if not ok]
        if len(down) == len(verdicts):
            return False, "no camera flowing (" + "; ".join(down) + ")"
        line = f"{s.fps():.1f} fps, serving {s.model.name}/{s.model.variant}"
        return True, line + (f"; degraded: {'; '.join(down)}" if down else "")

    def camera_verdicts(self, max_age_s: float) -> dict[str, tuple[bool, str]]:
        """Each camera's own verdict, for the status report."""
        return {c: self._camera_ready(cam, max_age_s) for c, cam in self.state.cameras.items()}

    def _camera_ready(self, s: PipelineState, max_age_s: float) -> tuple[bool, str]:
        model = self.state.model
        if model is None:
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
        return True, f"{s.fps():.1f} fps, serving {model.name}/{model.variant}"
