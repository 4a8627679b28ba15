"""One model run the way the daemon runs it: letterbox → ONNX Runtime → decode + NMS.

Evaluation and benchmarking both go through here, so their numbers describe the same code path
(the daemon's ``edged.preprocess``, backend and ``edged.postprocess``), not a look-alike.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from pydantic import BaseModel

from edged.backends.base import BackendError, load_backend
from edged.labels import BadNames, labels_from_metadata
from edged.postprocess.decoders import (
    DecodeParams,
    Detections,
    OutputLayout,
    UnsupportedLayoutError,
    decode,
    detect_layout,
)
from edged.postprocess.raw_heads import raw_head_of
from edged.preprocess import Letterbox, TensorWriter
from edged.tools.backend_choice import backend_name, options_for, split_backend
from edged.tools.errors import ToolError


class StageSeconds(NamedTuple):
    """How long each step of one :meth:`ModelRunner.timed_detect` took."""

    preprocess: float
    infer: float
    postprocess: float

    @property
    def total(self) -> float:
        return self.preprocess + self.infer + self.postprocess


class ModelRunner:
    """A loaded model plus preallocated input buffers; not thread-safe (one per process)."""

    def __init__(
        self,
        model_path: str | Path,
        options: BaseModel | None,
        params: DecodeParams,
        num_classes: int | None = None,
        backend: str | None = None,
    ) -> None:
        """``model_path`` runs on ``backend`` (default: by its suffix or ``name:`` prefix, see
        :mod:`edged.tools.backend_choice`); ``options`` of another backend are not used."""
        _, path = split_backend(model_path)
        if not path.is_file():
            raise ToolError(f"{path}: no such model file")
        self.backend_name = backend_name(model_path, backend)
        wanted = type(options_for(self.backend_name))
        if not isinstance(options, wanted):  # carry the thread budget over to this backend
            given = options.model_dump(exclude_unset=True) if options is not None else {}
            threads = given.pop("intra_op_threads", None) or given.pop("threads", None)
            options = options_for(self.backend_name, threads, **given)
        try:
            self.backend = load_backend(self.backend_name, path, options, warmup_runs=0)
        except BackendError as exc:
            raise ToolError(str(exc)) from None
        try:
            names = labels_from_metadata(self.backend.metadata)
        except BadNames as exc:
            raise ToolError(f"{path.name}: {exc}") from None
        if num_classes is None and names is not None:
            num_classes = len(names)
        self.head = raw_head_of(self.backend.metadata)  # cut at its head by the ORT rewrites
        try:
            self.layout: OutputLayout = detect_layout(
                self.backend.output_shapes, num_classes, self.head
            )
        except UnsupportedLayoutError as exc:
            raise ToolError(f"{path.name}: {exc}") from None
        self.names = names
        self.params = params
        spec = self.backend.input
        self.input_size = (spec.width, spec.height)
        # The daemon's preprocessing, in whatever layout the (rewritten) model takes.
        self._writer = TensorWriter(spec.layout)
        self._tensor = np.empty(spec.shape, spec.dtype)

    def preprocess(self, image_bgr: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        box = self._writer.write(image_bgr, self._tensor, key=0)
        return self._tensor, box

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        return self.backend.infer(tensor)

    def postprocess(self, outputs: list[np.ndarray], box: Letterbox) -> Detections:
        return decode(outputs, self.layout, self.params, self.input_size, box, self.head)

    def detect(self, image_bgr: np.ndarray) -> Detections:
        tensor, box = self.preprocess(image_bgr)
        return self.postprocess(self.infer(tensor), box)

    def timed_detect(self, image_bgr: np.ndarray) -> StageSeconds:
        """:meth:`detect`, timing each step (benchmarks; the detections are dropped)."""
        t0 = time.perf_counter()
        tensor, box = self.preprocess(image_bgr)
        t1 = time.perf_counter()
        outputs = self.infer(tensor)
        t2 = time.perf_counter()
        self.postprocess(outputs, box)
        t3 = time.perf_counter()
        return StageSeconds(t1 - t0, t2 - t1, t3 - t2)

    def close(self) -> None:
        self.backend.close()
