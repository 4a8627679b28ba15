"""ONNX Runtime on the CPU (or any configured execution provider)."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edged.backends.base import BackendError, TensorSpec
from edged.backends.onnxruntime_plugin import OnnxRuntimeOptions
from edged.backends.rewrite_cache import RewriteCache, default_cache_dir
from edged.model_files import check_external_data

log = logging.getLogger(__name__)

_GRAPH_OPT = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def allowed_cpus() -> int:
    """CPUs this process may run on (its affinity mask; cgroup quotas are not looked at)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - macOS/Windows


def default_intra_op_threads(cpus: int | None = None) -> int:
    """The thread budget when ``intra_op_threads`` is not set: one ORT thread per allowed CPU.

    The other stages get no core of their own: per frame they need a few ms of CPU (video
    decode, letterbox, decode + NMS, hand-offs), which fits in the gaps ONNX Runtime leaves
    between and inside operators, and they block (never spin) while they wait. On the 2-core
    dev VM one ORT thread instead of two would cap the pipeline at the single-thread inference
    rate (YOLOv8n FP32: ~55 ms per frame instead of ~37 ms). Set ``intra_op_threads`` (or
    ``edged run --threads``) to reserve cores, e.g. ``cpus - 1`` on a machine whose source
    decoding is heavy.
    """
    return max(1, cpus if cpus is not None else allowed_cpus())


def spins(spin_wait: bool | str, intra_op_threads: int, cpus: int | None = None) -> bool:
    """Resolve ``spin_wait``: ``auto`` spins only when a core is left for the other stages.

    Why: a spinning worker waits for the straggler of each parallel section; when the light
    stages preempt one of ORT's threads on every core, the others spin for nothing. Measured on
    2 cores, 2 threads, YOLOv8n 720p, alternating runs: spinning makes inference alone 11 %
    faster (21.6 → 23.9 FPS) but the daemon only 3 % (19.7 → 20.3 FPS, at 196 % CPU instead of
    181 %; its inference stretches from 41 to 48 ms), so off unless a core is spare.
    """
    if spin_wait == "auto":
        return intra_op_threads < (cpus if cpus is not None else allowed_cpus())
    return bool(spin_wait)


def session_options(options: OnnxRuntimeOptions) -> ort.SessionOptions:
    """A locked execution policy: explicit thread counts, sequential mode, no idle spinning.

    - Intra-op threads: ``options.intra_op_threads`` or :func:`default_intra_op_threads`.
    - Spinning (see :func:`spins`): ORT's workers spin *inside* a run only (between the
      parallel sections of one inference) and stop the moment the run returns
      (``session.force_spinning_stop``), so the wait for the next frame burns nothing. Measured
      on the 2-core VM, YOLOv8n FP32 at 2 threads: 38.3 ms with it, 43.4 ms with sleeping
      workers (ORT's default, spinning after runs too: 38.1 ms).
    - Memory pattern planning off: with it ORT keeps one block sized for every activation of the
      graph at once; without it activations come from (and go back to) the arena as the graph
      runs. YOLOv8n 640: 24 MB less private memory in the inference stage (109 → 85 MB USS after
      warm-up), no measurable change in latency on the dev VM.
    """
    so = ort.SessionOptions()
    so.graph_optimization_level = _GRAPH_OPT[options.graph_optimization]
    so.intra_op_num_threads = options.intra_op_threads or default_intra_op_threads()
    so.inter_op_num_threads = options.inter_op_threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    so.enable_mem_pattern = False
    if spins(options.spin_wait, so.intra_op_num_threads):
        so.add_session_config_entry("session.intra_op.allow_spinning", "1")
        so.add_session_config_entry("session.force_spinning_stop", "1")
    else:
        # Idle ORT worker threads otherwise spin for a while after each run and steal the
        # cores the other pipeline stages need.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


# `edged quantize` writes this metadata key into the models it produces.
PRECISION_METADATA_KEY = "edged_precision"


REWRITTEN, NOTHING_TO_REWRITE, REWRITE_FAILED = "rewritten", "nothing", "failed"


def _rewrite_apart(path: Path, copy: Path) -> str:
    """Run the rewrites in a short-lived process: REWRITTEN when it wrote ``copy``,
    NOTHING_TO_REWRITE when it finished without (nothing matched, or the graph is not one it
    can parse: the same next time), REWRITE_FAILED when it could not finish (not cached).

    Apart, because parsing and shape-inferring the graph with ``onnx`` leaves the inference
    process ~26 MB larger for good (the onnx module, heap it never returns); a process that
    exits gives everything back. Costs ~0.45 s per load of YOLOv8n (0.51 s in all, against
    0.05 s when the rewrite comes from the cache).
    """
    command = [sys.executable, "-m", "edged.backends.ort_rewrites", str(path), str(copy)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, errors="replace", timeout=REWRITE_TIMEOUT_S
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("%s: graph rewrite skipped (%s)", path.name, exc)
        return REWRITE_FAILED
    reason = (done.stderr.strip().splitlines() or [""])[-1]
    if done.returncode != 0:
        log.warning("%s: graph rewrite failed (%s)", path.name, reason or done.returncode)
        return REWRITE_FAILED
    if reason:  # it could not parse the graph: ORT gets the original (and reports on it)
        log.warning("%s: graph rewrite skipped (%s)", path.name, reason)
    if not copy.exists():
        return NOTHING_TO_REWRITE
    log.info("%s: %s", path.name, done.stdout.strip())
    return REWRITTEN


REWRITE_TIMEOUT_S = 60.0


@contextlib.contextmanager
def loadable_model(path: Path, rewrite: bool, cache: RewriteCache | None = None) -> Iterator[str]:
    """The file ``InferenceSession`` should load: ``path`` itself, or a rewritten copy.

    The copy (see :mod:`edged.backends.ort_rewrites`) is made in a temporary directory, or
    found in ``cache`` when this model was rewritten before; the model's own file, hash and
    metadata stay as they are. A model with nothing to rewrite loads from its own path.
    """
    if not rewrite:
        yield str(path)
        return
    key = cache.key(path) if cache is not None else ""
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        yield str(hit.model or path)
        return
    with tempfile.TemporaryDirectory(prefix="edged-model-") as folder:
        copy = Path(folder) / path.name
        outcome = _rewrite_apart(path, copy)
        if cache is not None and outcome != REWRITE_FAILED:
            cache.put(key, copy if outcome == REWRITTEN else None)
        yield str(copy) if outcome == REWRITTEN else str(path)


def _open_session(path: Path, options: OnnxRuntimeOptions) -> ort.InferenceSession:
    """A session on the rewritten model, or on the original when ORT refuses the rewrite."""
    so, providers = session_options(options), options.providers
    cache = RewriteCache(default_cache_dir())
    with loadable_model(path, options.graph_rewrites, cache) as source:
        try:
            return ort.InferenceSession(source, sess_options=so, providers=providers)
        except Exception as exc:  # a rewrite bug must never cost a model that works
            if source == str(path):
                raise
            cache.forget(cache.key(path))
            log.warning("%s: rewritten graph refused (%s); loading it as it is", path.name,
                        str(exc).strip().splitlines()[0] if str(exc).strip() else exc)  # fmt: skip
    return ort.InferenceSession(str(path), sess_options=so, providers=providers)


def _image_spec(path: Path, node: ort.NodeArg) -> TensorSpec:
    """Float 0–1 RGB 1×3×H×W, or uint8 RGB 1×H×W×3 (as after :mod:`ort_rewrites`), static."""
    shape, kind = node.shape, node.type
    static = len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape)
    if static and kind == "tensor(float)" and shape[:2] == [1, 3]:
        return TensorSpec(node.name, width=shape[3], height=shape[2])
    if static and kind == "tensor(uint8)" and shape[0] == 1 and shape[3] == 3:
        return TensorSpec(node.name, width=shape[2], height=shape[1], layout="NHWC", dtype="uint8")
    if kind not in ("tensor(float)", "tensor(uint8)"):
        raise BackendError(f"{path.name}: input type {kind} is neither float32 nor uint8")
    if kind == "tensor(uint8)":
        raise BackendError(
            f"{path.name}: uint8 input of shape {shape}; uint8 images must be a static 1×H×W×3 "
            "(NHWC RGB) input"
        )
    raise BackendError(
        f"{path.name}: unsupported input shape {shape}; expected a static 1×3×H×W float or "
        "1×H×W×3 uint8 image input (export with a fixed imgsz)"
    )


def precision_of(metadata: dict[str, str]) -> str:
    """``int8-static`` / ``int8-dynamic`` for models made by ``edged quantize``, else ``fp32``."""
    return metadata.get(PRECISION_METADATA_KEY, "fp32")


def requests_of(options: OnnxRuntimeOptions) -> int:
    """Sessions (frames in flight). ``auto`` is 1: two 1-thread sessions measured no faster
    than one 2-thread session in the daemon on the 2-core VM (README, "CPU runtimes")."""
    return 1 if options.requests == "auto" else options.requests


def per_session_options(options: OnnxRuntimeOptions, sessions: int) -> OnnxRuntimeOptions:
    """The thread budget split between ``sessions`` (at least one thread each)."""
    if sessions == 1:
        return options
    budget = options.intra_op_threads or default_intra_op_threads()
    return options.model_copy(update={"intra_op_threads": max(1, budget // sessions)})


def _load_session(path: Path, options: OnnxRuntimeOptions) -> ort.InferenceSession:
    try:
        return _open_session(path, options)
    except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... types
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
        raise BackendError(f"{path.name}: ONNX Runtime cannot load the model: {first_line}"
                           ) from None  # fmt: skip


class OnnxRuntimeBackend:
    """``InferenceSession``s of one model with a fixed-size image input: ``infer``/``infer_into``
    run one frame on the first; with ``requests`` > 1 ``submit``/``wait`` run up to that many
    frames side by side, each on a session of its own and a thread of ours (ORT releases the GIL
    while it runs), the thread budget split between them (see
    :class:`~edged.backends.InFlightBackend`)."""

    def __init__(self, path: Path, options: OnnxRuntimeOptions) -> None:
        check_external_data(path)  # BadModelFile: its external data lies outside its directory
        requests = requests_of(options)
        each = per_session_options(options, requests)
        self._session = _load_session(path, each)
        self.output_shapes = [
            tuple(d if isinstance(d, int) else -1 for d in o.shape)
            for o in self._session.get_outputs()
        ]
        if requests > 1 and not self.static_outputs:
            # Frames in flight write into the caller's arrays, which needs known shapes: the
            # stage would run one frame at a time on one session with a share of the threads.
            log.warning("%s: outputs of unknown shape: one session with every thread instead "
                        "of %d (requests)", path.name, requests)  # fmt: skip
            requests, each = 1, options
            self._session = _load_session(path, options)
        self.requests_in_flight = requests
        sessions = [self._session, *(_load_session(path, each) for _ in range(requests - 1))]
        self._idle: deque[ort.InferenceSession] = deque(sessions)
        self._sessions = sessions
        self._pool: ThreadPoolExecutor | None = None
        self._running: dict[Future[None], ort.InferenceSession] = {}
        if requests > 1:
            self._pool = ThreadPoolExecutor(requests, thread_name_prefix="ort")
            log.info("%s: %d ONNX Runtime sessions in flight, %d threads each", path.name,
                     requests, each.intra_op_threads)  # fmt: skip
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise BackendError(f"{path.name}: expected one image input, found {len(inputs)}")
        self.input = _image_spec(path, inputs[0])
        self._input_name = inputs[0].name
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self.precision = precision_of(self.metadata)
        self.providers = self._session.get_providers()

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        return self._session.run(None, {self._input_name: tensor})

    @property
    def static_outputs(self) -> bool:
        """True when every output shape is known, so results can be written in place."""
        return all(d > 0 for shape in self.output_shapes for d in shape)

    def infer_into(self, tensor: np.ndarray, outputs: list[np.ndarray]) -> None:
        """Run with the input read and the outputs written in place (e.g. in shared memory).

        Saves a copy of every output per frame (8.6 MB for YOLOv5's 1×25200×85).
        """
        self._run_into(self._session, tensor, outputs)

    def _run_into(self, session: ort.InferenceSession, tensor: np.ndarray,
                  outputs: list[np.ndarray]) -> None:  # fmt: skip
        binding = session.io_binding()
        binding.bind_cpu_input(self._input_name, tensor)
        for meta, out in zip(session.get_outputs(), outputs, strict=True):
            binding.bind_output(meta.name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        session.run_with_iobinding(binding)

    def submit(
        self, tensor: np.ndarray, outputs: list[np.ndarray], on_done: Callable[[], None]
    ) -> Future[None]:
        """Start one frame on an idle session (on a pool thread) and return at once;
        ``on_done`` runs on that thread when it has finished or failed."""
        if not self._idle or self._pool is None:
            raise BackendError(f"more than {self.requests_in_flight} frames submitted at once")
        session = self._idle.popleft()

        def run() -> None:
            try:
                self._run_into(session, tensor, outputs)
            finally:
                on_done()

        try:
            future = self._pool.submit(run)
        except Exception:
            self._idle.append(session)
            raise
        self._running[future] = session
        return future

    def wait(self, handle: Future[None]) -> None:
        """Until the submitted frame is done; raises what its inference raised."""
        try:
            handle.result()
        finally:
            self._idle.append(self._running.pop(handle))

    def close(self) -> None:
        if self._pool is not None:  # never free memory a running session writes into
            self._pool.shutdown(wait=True)
            self._pool = None
        self._running.clear()
        self._idle.clear()
        self._sessions = []
        self._session = None  # type: ignore[assignment]


def load_onnxruntime(path: Path, options: OnnxRuntimeOptions) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(path, options)
