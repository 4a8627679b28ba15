"""The cameras a daemon serves, as the supervisor keeps them: each camera's config, the name
suffix of its stage instances, and its shared-memory rings (frames and tensors; the outputs
ring is shared by every camera). Bookkeeping only: the supervisor creates, hands out and
unlinks the segments through it."""

from __future__ import annotations

from dataclasses import dataclass, field

from edged.config import CameraConfig, EdgedConfig
from edged.pipeline.layout import PER_CAMERA, instance_name
from edged.pipeline.messages import CAPTURE, INFER, POSTPROCESS, PREPROCESS, PUBLISH
from edged.pipeline.ring import RingSpec, SharedRing, create_ring
from edged.pipeline.stage_runtime import FRAMES, OUTPUTS, PER_CAMERA_RINGS, TENSORS, ring_key

MAX_INPUT_SIDE = 1280  # tensor slots fit inputs up to 1280×1280×3 float32

# The rings each stage attaches to (a per-camera stage: its camera's; a shared one: all).
RINGS_OF_STAGE: dict[str, tuple[str, ...]] = {
    CAPTURE: (FRAMES,),
    PREPROCESS: (FRAMES, TENSORS, OUTPUTS),
    INFER: (FRAMES, TENSORS, OUTPUTS),
    POSTPROCESS: (FRAMES, TENSORS, OUTPUTS),
    PUBLISH: (FRAMES, TENSORS, OUTPUTS),
}


def camera_ring_specs(
    config: EdgedConfig, shm_tag: str, camera: str, n: int
) -> dict[str, RingSpec]:
    """A camera's own rings (``n``: a number unique in this daemon, for the segment name)."""
    p = config.pipeline
    frame_bytes = p.max_frame_width * p.max_frame_height * 3
    return {
        ring_key(FRAMES, camera): RingSpec(f"{shm_tag}_{FRAMES}{n}", p.ring_slots, frame_bytes),
        ring_key(TENSORS, camera): RingSpec(f"{shm_tag}_{TENSORS}{n}", 4,
                                            MAX_INPUT_SIDE * MAX_INPUT_SIDE * 3 * 4),
    }  # fmt: skip


def shared_ring_specs(config: EdgedConfig, shm_tag: str) -> dict[str, RingSpec]:
    size = int(config.pipeline.max_output_mb * 1024 * 1024)
    return {OUTPUTS: RingSpec(f"{shm_tag}_{OUTPUTS}", 4, size)}


@dataclass
class CameraRun:
    """A camera the daemon serves: its config, its instances' name suffix, its rings."""

    config: CameraConfig
    tag: str
    rings: dict[str, RingSpec] = field(default_factory=dict)
    segments: list[SharedRing] = field(default_factory=list)

    def unlink(self) -> None:
        """Free its rings (the stages' mappings stay valid until they close them)."""
        for segment in self.segments:
            segment.close()
            segment.unlink()
        self.segments = []


class CameraSet(dict[str, CameraRun]):
    """The cameras by id, in the config's order, and the rings they share."""

    def __init__(self, config: EdgedConfig) -> None:
        super().__init__()
        self._config = config  # its pipeline section sizes the rings
        self.shm_tag = ""
        self.shared: dict[str, RingSpec] = {}  # outputs
        self._shared_segments: list[SharedRing] = []
        self._made = 0

    def add(self, camera: CameraConfig, tag: str) -> CameraRun:
        run = self[camera.id] = CameraRun(camera, tag)
        if self.shm_tag:  # a camera a reload adds: its rings now (at start: create_rings)
            self._make_rings(run)
        return run

    def create_rings(self, shm_tag: str) -> None:
        """Create the shared rings and every camera's (at start)."""
        self.shm_tag = shm_tag
        self.shared = shared_ring_specs(self._config, shm_tag)
        self._shared_segments = [create_ring(spec) for spec in self.shared.values()]
        for run in self.values():
            self._make_rings(run)

    def _make_rings(self, run: CameraRun) -> None:
        self._made += 1
        run.rings = camera_ring_specs(self._config, self.shm_tag, run.config.id, self._made)
        run.segments = [create_ring(spec) for spec in run.rings.values()]

    def all_rings(self) -> dict[str, RingSpec]:
        rings = dict(self.shared)
        for run in self.values():
            rings.update(run.rings)
        return rings

    def runs_of(self, camera: str) -> list[CameraRun]:
        """``camera``'s run, or every camera's for a shared stage (``camera`` "")."""
        return [self[camera]] if camera else list(self.values())

    def rings_of(self, stage: str, camera: str) -> dict[str, RingSpec]:
        """The rings ``stage`` attaches: its camera's (per-camera stages) or every camera's."""
        rings: dict[str, RingSpec] = {}
        for kind in RINGS_OF_STAGE[stage]:
            if kind not in PER_CAMERA_RINGS:
                rings[kind] = self.shared[kind]
                continue
            for run in self.runs_of(camera):
                key = ring_key(kind, run.config.id)
                rings[key] = run.rings[key]
        return rings

    def instances_of(self, stage: str) -> list[str]:
        """Every instance of ``stage`` (one per camera for capture and preprocess)."""
        if stage not in PER_CAMERA:
            return [stage]
        return [instance_name(stage, run.tag) for run in self.values()]

    def unlink_all(self) -> None:
        for segment in self._shared_segments:
            segment.close()
            segment.unlink()
        self._shared_segments = []
        for run in self.values():
            run.unlink()
